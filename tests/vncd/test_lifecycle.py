"""The connection life transition table, checked cell by cell."""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.vncd.test_rfb_states import reachable
from vncd.lifecycle import HANDSHAKE, LIVE, PAUSED, TRANSITIONS, Life, LifeInput
from vncd.rfb.errors import LocalProtocolError
from vncd.rfb.states import StateMachine


class LifeTableTests(SynchronousTestCase):

    @given(st.sampled_from(list(Life)), st.sampled_from(list(LifeInput)))
    def test_every_cell(self, state, event):
        """Each (state, input) either moves to the table's state or raises and stays put."""
        machine = StateMachine(TRANSITIONS, state)
        if (state, event) in TRANSITIONS:
            self.assertIs(machine.process(event), TRANSITIONS[(state, event)])
            self.assertIs(machine.state, TRANSITIONS[(state, event)])
        else:
            self.assertRaises(LocalProtocolError, machine.process, event)
            self.assertIs(machine.state, state)

    def test_all_cells_exhaustively(self):
        """Every cell, enumerated: the same rule without sampling."""
        for state in Life:
            for event in LifeInput:
                machine = StateMachine(TRANSITIONS, state)
                if (state, event) in TRANSITIONS:
                    machine.process(event)
                    self.assertIs(machine.state, TRANSITIONS[(state, event)])
                else:
                    with self.assertRaises(LocalProtocolError):
                        machine.process(event)
                    self.assertIs(machine.state, state)

    def test_every_state_is_reachable(self):
        """Every state can be reached from NEW."""
        self.assertEqual(reachable(TRANSITIONS, Life.NEW), set(Life))

    def test_closed_is_final_and_lost_always_leads_there(self):
        """Nothing leaves CLOSED; a lost transport ends every accepted state in CLOSED."""
        self.assertEqual([k for k in TRANSITIONS if k[0] is Life.CLOSED], [])
        for state in set(Life) - {Life.NEW, Life.CLOSED}:
            self.assertIs(TRANSITIONS[(state, LifeInput.LOST)], Life.CLOSED)

    def test_live_states_end_three_ways(self):
        """From every live state: we close -> CLOSING, we cut -> ABORTED, lost -> CLOSED."""
        for state in LIVE:
            self.assertIs(TRANSITIONS[(state, LifeInput.WE_CLOSE)], Life.CLOSING)
            self.assertIs(TRANSITIONS[(state, LifeInput.PEER_CLOSED)], Life.CLOSING)
            self.assertIs(TRANSITIONS[(state, LifeInput.DROPPED)], Life.ABORTED)

    def test_nothing_returns_to_life(self):
        """No input leads from a state that is not live back into a live one."""
        for (state, _), after in TRANSITIONS.items():
            if state not in LIVE and state is not Life.NEW:
                self.assertNotIn(after, LIVE)

    def test_serving_only_through_server_init(self):
        """The serving states are entered from the handshake only by SERVER_INIT_SENT."""
        for (state, event), after in TRANSITIONS.items():
            if state in HANDSHAKE and after in LIVE - HANDSHAKE:
                self.assertIs(event, LifeInput.SERVER_INIT_SENT)

    def test_pause_and_resume_pair_up(self):
        """Pausing a live state and resuming returns to it; paused states resume only."""
        for state in LIVE - PAUSED:
            paused = TRANSITIONS[(state, LifeInput.TRANSPORT_PAUSED)]
            self.assertIn(paused, PAUSED)
            self.assertIs(TRANSITIONS[(paused, LifeInput.TRANSPORT_RESUMED)], state)
            self.assertNotIn((state, LifeInput.TRANSPORT_RESUMED), TRANSITIONS)
        for state in PAUSED:
            self.assertNotIn((state, LifeInput.TRANSPORT_PAUSED), TRANSITIONS)
