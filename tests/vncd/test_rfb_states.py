"""The handshake transition tables, checked cell by cell."""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vncd.rfb.errors import LocalProtocolError
from vncd.rfb.states import (
    CLIENT_TRANSITIONS, SERVER_TRANSITIONS, ClientInput, ClientState, ServerInput,
    ServerState, StateMachine,
)

TABLES = [
    (SERVER_TRANSITIONS, ServerState, ServerInput),
    (CLIENT_TRANSITIONS, ClientState, ClientInput),
]


def reachable(table, start):
    seen, todo = {start}, [start]
    while todo:
        state = todo.pop()
        for (src, _), dst in table.items():
            if src is state and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return seen


class TransitionTableTests(SynchronousTestCase):

    @given(st.sampled_from(TABLES).flatmap(
        lambda t: st.tuples(st.just(t), st.sampled_from(list(t[1])), st.sampled_from(list(t[2])))))
    def test_every_cell(self, case):
        """Each (state, input) either moves to the table's state or raises and stays put."""
        (table, states, inputs), state, event = case
        machine = StateMachine(table, state)
        if (state, event) in table:
            self.assertIs(machine.process(event), table[(state, event)])
            self.assertIs(machine.state, table[(state, event)])
        else:
            self.assertRaises(LocalProtocolError, machine.process, event)
            self.assertIs(machine.state, state)

    def test_all_cells_exhaustively(self):
        """Every cell of both tables, enumerated (the same rule, without sampling)."""
        for table, states, inputs in TABLES:
            for state in states:
                for event in inputs:
                    machine = StateMachine(table, state)
                    if (state, event) in table:
                        machine.process(event)
                        self.assertIs(machine.state, table[(state, event)])
                    else:
                        with self.assertRaises(LocalProtocolError):
                            machine.process(event)
                        self.assertIs(machine.state, state)

    def test_every_state_can_fail_and_closed_is_final(self):
        """FAIL leads every live state to CLOSED; nothing leaves CLOSED."""
        for table, states, inputs in TABLES:
            closed, fail = states.CLOSED, inputs.FAIL
            for state in states:
                if state is not closed:
                    self.assertIs(table[(state, fail)], closed)
            self.assertEqual([k for k in table if k[0] is closed], [])

    def test_every_state_is_reachable(self):
        """No state in either table is unreachable from the start."""
        self.assertEqual(reachable(SERVER_TRANSITIONS, ServerState.AWAIT_VERSION),
                         set(ServerState))
        self.assertEqual(reachable(CLIENT_TRANSITIONS, ClientState.AWAIT_VERSION),
                         set(ClientState))

    def test_server_admits_only_through_authentication(self):
        """AWAIT_CLIENT_INIT is reached only by AUTHENTICATED; VeNCrypt only via TLS."""
        into_init = {k for k, v in SERVER_TRANSITIONS.items()
                     if v is ServerState.AWAIT_CLIENT_INIT}
        self.assertEqual({event for _, event in into_init}, {ServerInput.AUTHENTICATED})
        sources = {state for state, _ in into_init}
        self.assertNotIn(ServerState.AWAIT_VENCRYPT_VERSION, sources)
        self.assertNotIn(ServerState.AWAIT_VENCRYPT_SUBTYPE, sources)
        leaving_subtype = {v for (s, _), v in SERVER_TRANSITIONS.items()
                           if s is ServerState.AWAIT_VENCRYPT_SUBTYPE}
        self.assertEqual(leaving_subtype, {ServerState.TLS_HANDSHAKE, ServerState.CLOSED})
