"""One QMP connection's core: greeting, negotiation, envelope checks, order, events."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from vncd.monitor.qmp import (
    ALREADY_NEGOTIATED, NEGOTIATION_REQUIRED, TRANSITIONS, QMPConnection, QMPInput, QMPState,
)
from vncd.monitor.schema import QMPError
from vncd.rfb.errors import LocalProtocolError

VERSION = {"qemu": {"major": 0, "minor": 1, "micro": 0}, "package": "vncd 0.1.0"}


def messages(conn: QMPConnection) -> list:
    return [json.loads(line) for line in conn.data_to_send().decode().splitlines() if line]


def negotiated() -> QMPConnection:
    conn = QMPConnection(VERSION)
    conn.data_to_send()
    conn.receive_data(b'{"execute": "qmp_capabilities"}')
    assert conn.next_request() is None
    conn.data_to_send()
    return conn


class StateTests(TestCase):

    def test_table(self):
        """Every state but closed can close; negotiation happens once."""
        self.assertEqual(TRANSITIONS[(QMPState.NEGOTIATING, QMPInput.NEGOTIATED)],
                         QMPState.COMMANDS)
        self.assertNotIn((QMPState.COMMANDS, QMPInput.NEGOTIATED), TRANSITIONS)
        for state in (QMPState.NEGOTIATING, QMPState.COMMANDS):
            self.assertEqual(TRANSITIONS[(state, QMPInput.CLOSE)], QMPState.CLOSED)

    def test_impossible_transition(self):
        """A transition the table lacks is a local error and leaves the state."""
        conn = negotiated()
        self.assertRaises(LocalProtocolError, conn._fire, QMPInput.NEGOTIATED)
        self.assertIs(conn.state, QMPState.COMMANDS)


class NegotiationTests(TestCase):

    def test_greeting(self):
        """The greeting carries the version and no capabilities."""
        conn = QMPConnection(VERSION)
        self.assertEqual(messages(conn), [{"QMP": {"version": VERSION, "capabilities": []}}])

    def test_commands_before_negotiation(self):
        """Commands before qmp_capabilities get QEMU's CommandNotFound, with the id."""
        conn = QMPConnection(VERSION)
        conn.data_to_send()
        conn.receive_data(b'{"execute": "query-version", "id": 7}')
        self.assertIsNone(conn.next_request())
        self.assertEqual(messages(conn), [{"error": {"class": "CommandNotFound",
                                                     "desc": NEGOTIATION_REQUIRED}, "id": 7}])

    def test_negotiate_once(self):
        """qmp_capabilities succeeds once; again it is refused."""
        conn = QMPConnection(VERSION)
        conn.data_to_send()
        conn.receive_data(b'{"execute": "qmp_capabilities"}{"execute": "qmp_capabilities"}')
        self.assertIsNone(conn.next_request())
        self.assertEqual(messages(conn), [
            {"return": {}},
            {"error": {"class": "CommandNotFound", "desc": ALREADY_NEGOTIATED}}])

    def test_oob_not_offered(self):
        """Asking for oob fails (vncd does not offer it); the session stays negotiating."""
        conn = QMPConnection(VERSION)
        conn.data_to_send()
        conn.receive_data(b'{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}')
        conn.next_request()
        self.assertEqual(messages(conn), [{"error": {"class": "GenericError",
                                                     "desc": "Capability 'oob' not available"}}])
        self.assertIs(conn.state, QMPState.NEGOTIATING)

    def test_bad_capabilities_arguments(self):
        """enable must be a list of known capabilities; nothing else is accepted."""
        cases = {
            '{"enable": "oob"}': "Invalid parameter type for 'enable', expected: array",
            '{"enable": ["x"]}': "Parameter 'null' does not accept value 'x'",
            '{"enable": [1]}': "Invalid parameter type for 'enable[0]', expected: string",
            '{"other": 1}': "Parameter 'other' is unexpected",
        }
        for arguments, desc in cases.items():
            conn = QMPConnection(VERSION)
            conn.data_to_send()
            conn.receive_data(f'{{"execute": "qmp_capabilities", "arguments": {arguments}}}'
                              .encode())
            conn.next_request()
            self.assertEqual(messages(conn)[0]["error"]["desc"], desc, arguments)


class EnvelopeTests(TestCase):

    def test_qemu_messages(self):
        """Bad envelopes get QEMU 7.2's descriptions, with the id when there is one."""
        cases = {
            b'[1]': {"error": {"class": "GenericError",
                               "desc": "QMP input must be a JSON object"}},
            b'{"foo": 1, "id": 3}': {"error": {"class": "GenericError",
                                     "desc": "QMP input member 'foo' is unexpected"}, "id": 3},
            b'{"execute": 5}': {"error": {"class": "GenericError", "desc":
                                "QMP input member 'execute' must be a string"}},
            b'{"execute": "x", "arguments": []}': {"error": {"class": "GenericError", "desc":
                                                   "QMP input member 'arguments' must be an"
                                                   " object"}},
            b'{"id": 1}': {"error": {"class": "GenericError",
                                     "desc": "QMP input lacks member 'execute'"}, "id": 1},
            b'{"exec-oob": "x"}': {"error": {"class": "GenericError",
                                   "desc": "QMP input member 'exec-oob' is unexpected"}},
            b'garbage ': {"error": {"class": "GenericError",
                                    "desc": "JSON parse error, invalid keyword 'garbage'"}},
        }
        for data, expected in cases.items():
            conn = negotiated()
            conn.receive_data(data)
            self.assertIsNone(conn.next_request(), data)
            self.assertEqual(messages(conn), [expected], data)

    def test_request(self):
        """A good request is handed out with its command, arguments and id."""
        conn = negotiated()
        conn.receive_data(b'{"execute": "query-vnc", "arguments": {"a": 1}, "id": [1, 2]}')
        request = conn.next_request()
        self.assertEqual((request.command, request.arguments, request.id),
                         ("query-vnc", {"a": 1}, [1, 2]))
        conn.reply(request, {"enabled": False})
        self.assertEqual(messages(conn), [{"return": {"enabled": False}, "id": [1, 2]}])


class OrderTests(TestCase):

    def test_one_at_a_time(self):
        """The next request waits until the current one is answered; replies keep order,
        even for a bad message queued behind a slow command."""
        conn = negotiated()
        conn.receive_data(b'{"execute": "a", "id": 1} garbage {"execute": "b", "id": 2}')
        self.assertEqual(conn.pending, 3)
        first = conn.next_request()
        self.assertIsNone(conn.next_request())
        self.assertEqual(messages(conn), [])
        conn.reply_error(first, QMPError("slow failure"))
        second = conn.next_request()
        self.assertEqual(second.id, 2)
        conn.reply(second, {})
        self.assertEqual([m.get("id") for m in messages(conn)], [1, None, 2])
        self.assertEqual(conn.pending, 0)

    def test_reply_to_wrong_request(self):
        """Answering anything but the current request is a local error."""
        conn = negotiated()
        conn.receive_data(b'{"execute": "a"}')
        request = conn.next_request()
        conn.reply(request, {})
        self.assertRaises(LocalProtocolError, conn.reply, request, {})

    def test_closed(self):
        """After close nothing is read, answered or sent."""
        conn = negotiated()
        conn.receive_data(b'{"execute": "a"}')
        request = conn.next_request()
        conn.close()
        conn.receive_data(b'{"execute": "b"}')
        self.assertIsNone(conn.next_request())
        self.assertFalse(conn.send_event("X", None, (1, 2)))
        self.assertEqual(conn.data_to_send(), b"")
        self.assertTrue(request is not None)


class EventTests(TestCase):

    def test_events_only_after_negotiation(self):
        """Events reach a connection only once it negotiated capabilities."""
        conn = QMPConnection(VERSION)
        conn.data_to_send()
        self.assertFalse(conn.send_event("VNC_CONNECTED", {"a": 1}, (10, 20)))
        self.assertEqual(conn.data_to_send(), b"")
        conn.receive_data(b'{"execute": "qmp_capabilities"}')
        conn.next_request()
        conn.data_to_send()
        self.assertTrue(conn.send_event("VNC_CONNECTED", {"a": 1}, (10, 20)))
        self.assertEqual(messages(conn), [{"event": "VNC_CONNECTED", "data": {"a": 1},
                                           "timestamp": {"seconds": 10, "microseconds": 20}}])

    def test_pretty(self):
        """pretty=True writes multi-line JSON, still one message after another."""
        conn = QMPConnection(VERSION, pretty=True)
        text = conn.data_to_send().decode()
        self.assertIn('\r\n    "QMP": {\r\n', text)
        self.assertNotIn("\n", text.replace("\r\n", ""))
        self.assertEqual(json.loads(text)["QMP"]["capabilities"], [])
        conn.receive_data(b'{"execute": "qmp_capabilities"}')
        conn.next_request()
        self.assertEqual(conn.data_to_send(), b'{\r\n    "return": {\r\n    }\r\n}\r\n')

    def test_crlf(self):
        """Every message ends with CR LF, as QEMU's monitor_puts writes it."""
        conn = QMPConnection(VERSION)
        self.assertTrue(conn.data_to_send().endswith(b"}}\r\n"))
        conn.receive_data(b'{"execute": "qmp_capabilities", "id": 1}')
        conn.next_request()
        self.assertEqual(conn.data_to_send(), b'{"return": {}, "id": 1}\r\n')


class GarbageTests(TestCase):

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=80), max_size=10))
    def test_garbage(self, chunks):
        """Arbitrary input gives one reply per message and nothing but JSON lines."""
        conn = negotiated()
        for chunk in chunks:
            conn.receive_data(chunk)
            while (request := conn.next_request()) is not None:
                conn.reply_error(request, QMPError("not here"))
        for line in conn.data_to_send().decode("ascii").splitlines():
            reply = json.loads(line)
            self.assertTrue("error" in reply or "return" in reply)
