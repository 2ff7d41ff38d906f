"""The sans-I/O server handshake, byte for byte, for every version and security."""

from __future__ import annotations

import struct

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vncd.pixels import DEFAULT_FORMAT
from vncd.rfb import vncauth
from vncd.rfb.errors import LocalProtocolError, RemoteProtocolError
from vncd.rfb.events import (
    CLOSED, NEED_DATA, PAUSED, AuthenticationFailed, AuthenticationSucceeded,
    ClientInitReceived, Refused, SecurityTypeChosen, StartTLS, VersionAgreed,
)
from vncd.rfb.limits import Limits
from vncd.rfb.messages import KeyEvent
from vncd.rfb.security import SecurityConfig, auth_for
from vncd.rfb.server import AUTH_FAILED_REASON, ServerConnection
from vncd.rfb.states import ServerState

CHALLENGE = bytes(range(16))
PASSWORD = b"password"
#: rfbproto's DES of CHALLENGE under "password" (checked against openssl).
RESPONSE = bytes.fromhex("b866924125c8eebb9debc1db61c538e2")


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def reason_bytes(text: str) -> bytes:
    raw = text.encode()
    return u32(len(raw)) + raw


def server(kind=None, password=False, value=PASSWORD, limits=None) -> ServerConnection:
    security = SecurityConfig(auth_for(kind, password), value if password else None)
    conn = ServerConnection(security, limits, random_bytes=lambda n: CHALLENGE[:n])
    return conn


def feed(conn: ServerConnection, data: bytes) -> list:
    """Feed ``data`` (if any) and return the events up to the next sentinel."""
    if data:
        conn.receive_data(data)
    events = []
    while True:
        event = conn.next_event()
        if event in (NEED_DATA, PAUSED, CLOSED):
            return events
        events.append(event)


def version(minor: int) -> bytes:
    return b"RFB 003.%03d\n" % minor


class GreetingTests(SynchronousTestCase):

    def test_announces_38(self):
        """A new connection first sends ``RFB 003.008\\n``."""
        self.assertEqual(server().data_to_send(), b"RFB 003.008\n")

    def test_needs_twelve_bytes(self):
        """Eleven bytes of the client's version are not enough to act on."""
        conn = server()
        conn.data_to_send()
        self.assertEqual(feed(conn, b"RFB 003.008"), [])
        self.assertEqual(conn.data_to_send(), b"")
        self.assertIs(conn.next_event(), NEED_DATA)


class NoneSecurityTests(SynchronousTestCase):

    def start(self, minor):
        conn = server()
        conn.data_to_send()
        return conn, feed(conn, version(minor))

    def test_38(self):
        """RFB 3.8 with None: type list [1], choice, SecurityResult 0, ClientInit."""
        conn, events = self.start(8)
        self.assertEqual(events, [VersionAgreed(8)])
        self.assertEqual(conn.data_to_send(), b"\x01\x01")
        self.assertEqual(feed(conn, b"\x01"),
                         [SecurityTypeChosen(1), AuthenticationSucceeded()])
        self.assertEqual(conn.data_to_send(), u32(0))
        self.assertEqual(feed(conn, b"\x01"), [ClientInitReceived(shared=True)])
        self.assertIs(conn.next_event(), PAUSED)
        conn.send_server_init(640, 480, DEFAULT_FORMAT, "vncd")
        self.assertEqual(conn.data_to_send(), struct.pack(">HH", 640, 480)
                         + DEFAULT_FORMAT.to_bytes() + u32(4) + b"vncd")
        self.assertIs(conn.state, ServerState.RUNNING)

    def test_37_has_no_security_result(self):
        """RFB 3.7 with None goes from the choice straight to ClientInit."""
        conn, _ = self.start(7)
        self.assertEqual(conn.data_to_send(), b"\x01\x01")
        self.assertEqual(feed(conn, b"\x01"),
                         [SecurityTypeChosen(1), AuthenticationSucceeded()])
        self.assertEqual(conn.data_to_send(), b"")
        self.assertEqual(feed(conn, b"\x00"), [ClientInitReceived(shared=False)])

    def test_33_server_names_the_type(self):
        """RFB 3.3: the server sends U32 1 and waits for ClientInit."""
        conn, events = self.start(3)
        self.assertEqual(events, [VersionAgreed(3), SecurityTypeChosen(1),
                                  AuthenticationSucceeded()])
        self.assertEqual(conn.data_to_send(), u32(1))
        self.assertEqual(feed(conn, b"\x01"), [ClientInitReceived(shared=True)])

    def test_34_to_36_are_33(self):
        """Clients announcing 3.4, 3.5 or 3.6 are served as 3.3."""
        for minor in (4, 5, 6):
            conn, events = self.start(minor)
            self.assertEqual(events[0], VersionAgreed(3))
            self.assertEqual(conn.data_to_send(), u32(1))

    def test_server_name_is_utf8_and_cut(self):
        """The desktop name is UTF-8 and cut to the ServerInit name limit."""
        conn = server(limits=Limits(max_server_name=5))
        conn.data_to_send()
        feed(conn, version(8) + b"\x01\x01")
        conn.data_to_send()
        conn.send_server_init(1, 1, DEFAULT_FORMAT, "vncé-display")
        self.assertEqual(conn.data_to_send()[20:], u32(5) + "vncé".encode())
        conn = server(limits=Limits(max_server_name=4))
        feed(conn, version(8) + b"\x01\x01")
        conn.data_to_send()
        conn.send_server_init(1, 1, DEFAULT_FORMAT, "vncé-display")
        self.assertEqual(conn.data_to_send()[20:], u32(3) + b"vnc", "never half a character")


class VncAuthTests(SynchronousTestCase):

    def start(self, minor, **kw):
        conn = server(password=True, **kw)
        conn.data_to_send()
        feed(conn, version(minor))
        return conn

    def test_38_success(self):
        """3.8: type list [2], the challenge, the right response, SecurityResult 0."""
        conn = self.start(8)
        self.assertEqual(conn.data_to_send(), b"\x01\x02")
        self.assertEqual(feed(conn, b"\x02"), [SecurityTypeChosen(2)])
        self.assertEqual(conn.data_to_send(), CHALLENGE)
        self.assertEqual(feed(conn, RESPONSE), [AuthenticationSucceeded()])
        self.assertEqual(conn.data_to_send(), u32(0))
        self.assertIs(conn.state, ServerState.AWAIT_CLIENT_INIT)

    def test_38_failure_reason(self):
        """3.8: a wrong response gets U32 1 and QEMU's 22-byte reason, NUL included."""
        conn = self.start(8)
        feed(conn, b"\x02")
        conn.data_to_send()
        events = feed(conn, bytes(16))
        self.assertEqual(events, [AuthenticationFailed("wrong VNC password")])
        self.assertEqual(conn.data_to_send(),
                         u32(1) + u32(22) + b"Authentication failed\0")
        self.assertEqual(len(AUTH_FAILED_REASON), 22)
        self.assertIs(conn.next_event(), CLOSED)

    def test_37_failure_has_no_reason(self):
        """3.7: a wrong response gets U32 1 alone."""
        conn = self.start(7)
        feed(conn, b"\x02")
        conn.data_to_send()
        feed(conn, bytes(16))
        self.assertEqual(conn.data_to_send(), u32(1))

    def test_33(self):
        """3.3: the server sends U32 2 and the challenge itself; failure is U32 1."""
        conn = self.start(3)
        self.assertEqual(conn.data_to_send(), u32(2) + CHALLENGE)
        self.assertEqual(feed(conn, RESPONSE), [AuthenticationSucceeded()])
        self.assertEqual(conn.data_to_send(), u32(0))
        conn = self.start(3)
        conn.data_to_send()
        feed(conn, bytes(16))
        self.assertEqual(conn.data_to_send(), u32(1))

    def test_unset_password_refuses_everyone(self):
        """password=on with no password set refuses even the empty password's response."""
        conn = self.start(8, value=None)
        feed(conn, b"\x02")
        conn.data_to_send()
        events = feed(conn, vncauth.challenge_response(b"", CHALLENGE))
        self.assertEqual(events, [AuthenticationFailed("no VNC password is set")])
        self.assertEqual(conn.data_to_send()[:4], u32(1))

    def test_empty_password_refused_by_the_core(self):
        """Were an empty password ever supplied, the core refuses every response,
        the empty password's included (defence in depth behind SecurityConfig)."""

        class LeakySecurity:
            auth = auth_for(None, True)
            password = b""

        for password in (b"", b"\0" * 8):
            LeakySecurity.password = password
            conn = ServerConnection(LeakySecurity(), random_bytes=lambda n: CHALLENGE)
            feed(conn, version(8) + b"\x02")
            conn.data_to_send()
            events = feed(conn, vncauth.challenge_response(b"", CHALLENGE))
            self.assertEqual(events, [AuthenticationFailed("the VNC password is empty")])
            self.assertEqual(conn.data_to_send()[:4], u32(1))

    def test_password_set_at_run_time(self):
        """A password set on the SecurityConfig applies to the next response checked."""
        security = SecurityConfig(auth_for(None, True), None)
        conn = ServerConnection(security, random_bytes=lambda n: CHALLENGE)
        feed(conn, version(8) + b"\x02")
        security.set_password(PASSWORD)
        self.assertEqual(feed(conn, RESPONSE), [AuthenticationSucceeded()])

    def test_only_eight_password_bytes_count(self):
        """Characters after the eighth do not change the key (VNC's DES key is 8 bytes)."""
        conn = self.start(8, value=PASSWORD + b"-ignored")
        feed(conn, b"\x02")
        self.assertEqual(feed(conn, RESPONSE), [AuthenticationSucceeded()])


class VeNCryptTests(SynchronousTestCase):

    def start(self, kind, password=False, minor=8):
        conn = server(kind, password)
        conn.data_to_send()
        feed(conn, version(minor))
        return conn

    def test_wire_for_each_subtype(self):
        """Each creds/password combination offers VeNCrypt 0.2 with QEMU's one subtype."""
        cases = {("anon", False): 257, ("anon", True): 258,
                 ("x509", False): 260, ("x509", True): 261}
        for (kind, password), subtype in cases.items():
            for minor in (7, 8):
                conn = self.start(kind, password, minor)
                self.assertEqual(conn.data_to_send(), b"\x01\x13")
                self.assertEqual(feed(conn, b"\x13"), [SecurityTypeChosen(19)])
                self.assertEqual(conn.data_to_send(), b"\x00\x02")
                self.assertEqual(feed(conn, b"\x00\x02"), [])
                self.assertEqual(conn.data_to_send(), b"\x00\x01" + u32(subtype))
                self.assertEqual(feed(conn, u32(subtype)), [StartTLS(subtype)])
                self.assertEqual(conn.data_to_send(), b"\x01")
                self.assertIs(conn.next_event(), PAUSED)
                conn.tls_established()
                if password:
                    self.assertEqual(conn.data_to_send(), CHALLENGE)
                    self.assertEqual(feed(conn, RESPONSE), [AuthenticationSucceeded()])
                    self.assertEqual(conn.data_to_send(), u32(0))
                else:
                    self.assertEqual(feed(conn, b""), [AuthenticationSucceeded()])
                    self.assertEqual(conn.data_to_send(), u32(0))
                self.assertIs(conn.state, ServerState.AWAIT_CLIENT_INIT)

    def test_acknowledgements_have_opposite_senses(self):
        """The version ack is 0 for yes; the subtype ack is 1 for yes (and 1/0 for no)."""
        conn = self.start("x509")
        feed(conn, b"\x13\x00\x02")
        self.assertEqual(conn.data_to_send()[-6:-4], b"\x00\x01")
        feed(conn, u32(260))
        self.assertEqual(conn.data_to_send(), b"\x01")

    def test_bad_version_is_refused_with_1(self):
        """A client asking for VeNCrypt 0.1 (or 0.3) gets 1 and the connection ends."""
        for bad in (b"\x00\x01", b"\x00\x03", b"\x01\x02"):
            conn = self.start("anon")
            feed(conn, b"\x13")
            conn.data_to_send()
            with self.assertRaises(RemoteProtocolError):
                feed(conn, bad)
            self.assertEqual(conn.data_to_send(), b"\x01")
            self.assertIs(conn.state, ServerState.CLOSED)

    def test_wrong_subtype_is_refused_with_0(self):
        """A subtype other than the offered one gets 0 and the connection ends."""
        conn = self.start("x509")
        feed(conn, b"\x13\x00\x02")
        conn.data_to_send()
        with self.assertRaises(RemoteProtocolError) as cm:
            feed(conn, u32(257))
        self.assertIn("257", cm.exception.reason)
        self.assertEqual(conn.data_to_send(), b"\x00")

    def test_starttls_injection(self):
        """Bytes pipelined after the subtype choice close the connection, without TLS."""
        conn = self.start("x509")
        feed(conn, b"\x13\x00\x02")
        conn.data_to_send()
        with self.assertRaises(RemoteProtocolError) as cm:
            feed(conn, u32(260) + b"\x01")
        self.assertIn("STARTTLS injection", cm.exception.reason)
        self.assertEqual(conn.data_to_send(), b"\x00")
        self.assertIs(conn.state, ServerState.CLOSED)

    def test_33_client_is_refused_with_a_reason(self):
        """An RFB 3.3 client gets U32 0 and a reason, never a downgrade to VncAuth."""
        conn = server("x509", True)
        conn.data_to_send()
        events = feed(conn, version(3))
        wire = conn.data_to_send()
        self.assertEqual(wire[:4], u32(0))
        (length,) = struct.unpack(">I", wire[4:8])
        reason = wire[8:].decode()
        self.assertEqual(len(reason), length)
        self.assertIn("VeNCrypt X509Vnc", reason)
        self.assertIn("3.7", reason)
        self.assertEqual([type(e) for e in events], [VersionAgreed, Refused])
        self.assertIs(conn.state, ServerState.CLOSED)

    def test_bytes_during_tls_are_a_bug(self):
        """Feeding the RFB layer while TLS is negotiated is a LocalProtocolError."""
        conn = self.start("anon")
        feed(conn, b"\x13\x00\x02" + u32(257))
        with self.assertRaises(LocalProtocolError):
            conn.receive_data(b"\x16\x03\x01")


class RefusalTests(SynchronousTestCase):

    def test_wrong_type_38(self):
        """Choosing a type that was not offered: U32 1 + QEMU's reason (3.8)."""
        conn = server()
        feed(conn, version(8))
        conn.data_to_send()
        with self.assertRaises(RemoteProtocolError):
            feed(conn, b"\x02")
        self.assertEqual(conn.data_to_send(), u32(1) + u32(22) + AUTH_FAILED_REASON)

    def test_wrong_type_37(self):
        """Choosing a type that was not offered: U32 1 alone (3.7)."""
        conn = server("x509")
        feed(conn, version(7))
        conn.data_to_send()
        with self.assertRaises(RemoteProtocolError):
            feed(conn, b"\x01")
        self.assertEqual(conn.data_to_send(), u32(1))

    def test_unsupported_version(self):
        """3.9, 3.2, 4.0 and 3.889 get U32 0 and a reason naming the version."""
        for raw, shown in ((b"RFB 003.009\n", "3.9"), (b"RFB 003.002\n", "3.2"),
                           (b"RFB 004.000\n", "4.0"), (b"RFB 003.889\n", "3.889")):
            conn = server()
            conn.data_to_send()
            with self.assertRaises(RemoteProtocolError):
                feed(conn, raw)
            wire = conn.data_to_send()
            self.assertEqual(wire[:4], u32(0))
            text = wire[8:].decode()
            self.assertEqual(struct.unpack(">I", wire[4:8])[0], len(text))
            self.assertIn(shown, text)

    def test_malformed_version(self):
        """A version string that is not ``RFB xxx.yyy\\n`` gets U32 0 and a reason."""
        tls_hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00"
        for raw in (b"GET / HTTP/1.", b"RFB 3.8\n    ", tls_hello):
            conn = server()
            conn.data_to_send()
            with self.assertRaises(RemoteProtocolError):
                feed(conn, raw[:12])
            self.assertEqual(conn.data_to_send(),
                             u32(0) + reason_bytes("Invalid RFB ProtocolVersion message"))

    def test_deny_in_each_version(self):
        """A denied client gets the failure form of its version, with the reason."""
        expected = {3: u32(0), 7: b"\x00", 8: b"\x00"}
        for minor, head in expected.items():
            conn = server("x509")
            conn.data_to_send()
            conn.deny("go away")
            events = feed(conn, version(minor))
            self.assertEqual(events, [VersionAgreed(minor), Refused("go away")])
            self.assertEqual(conn.data_to_send(), head + reason_bytes("go away"))
            self.assertIs(conn.next_event(), CLOSED)

    def test_deny_after_version_is_a_bug(self):
        """deny() once the version has been processed is a LocalProtocolError."""
        conn = server()
        feed(conn, version(8))
        self.assertRaises(LocalProtocolError, conn.deny, "late")

    def test_eof_during_handshake(self):
        """The client closing before ServerInit is a RemoteProtocolError naming the state."""
        conn = server(password=True)
        feed(conn, version(8) + b"\x02" + b"\x00" * 5)
        conn.receive_data(b"")
        with self.assertRaises(RemoteProtocolError) as cm:
            conn.next_event()
        self.assertIn("await-vnc-response", cm.exception.reason)

    def test_eof_after_init(self):
        """The client closing between messages is a clean CLOSED."""
        conn = server()
        feed(conn, version(8) + b"\x01\x01")
        conn.send_server_init(1, 1, DEFAULT_FORMAT, "")
        self.assertEqual(feed(conn, KeyEvent(True, 65).encode()), [KeyEvent(True, 65)])
        conn.receive_data(b"")
        self.assertIs(conn.next_event(), CLOSED)

    def test_misuse(self):
        """Out-of-order calls from the caller raise LocalProtocolError."""
        conn = server("anon")
        self.assertRaises(LocalProtocolError, conn.tls_established)
        self.assertRaises(LocalProtocolError, conn.send_server_init, 1, 1, DEFAULT_FORMAT, "")

    def test_receive_buffer_limit(self):
        """More unparsed input than the limit allows is a RemoteProtocolError."""
        limits = Limits(max_cut_text=16, max_encodings=4)
        conn = server(limits=limits)
        feed(conn, version(8) + b"\x01\x01")
        conn.send_server_init(1, 1, DEFAULT_FORMAT, "")
        conn.receive_data(b"\x06\x00\x00\x00" + u32(10) + b"x")
        conn.receive_data(b"y" * limits.max_receive_buffer)
        with self.assertRaises(RemoteProtocolError):
            conn.next_event()
        self.assertLessEqual(len(conn._in), limits.max_receive_buffer)


def _handshake_scripts():
    """(config, bytes that lead to each state) for every reachable reading state."""
    v8 = version(8)
    scripts = [
        ((None, False), b""),
        ((None, False), v8),
        ((None, False), v8 + b"\x01"),
        ((None, True), v8 + b"\x02"),
        (("x509", False), v8 + b"\x13"),
        (("x509", True), v8 + b"\x13\x00\x02"),
        ((None, True), version(3)),
        ((None, False), version(7) + b"\x01"),
    ]
    return scripts


class GarbageTests(SynchronousTestCase):

    @settings(max_examples=300)
    @given(st.sampled_from(_handshake_scripts()), st.binary(max_size=200),
           st.lists(st.integers(1, 40), max_size=8))
    def test_garbage_in_any_state(self, script, garbage, cuts):
        """Garbage in any handshake state yields events or RemoteProtocolError, nothing else."""
        (kind, password), prefix = script
        conn = server(kind, password, limits=Limits(max_cut_text=64, max_encodings=8))
        feed(conn, prefix)
        pieces, rest = [], garbage
        for cut in cuts:
            pieces.append(rest[:cut])
            rest = rest[cut:]
        pieces.append(rest)
        try:
            for piece in pieces:
                if conn.state is ServerState.TLS_HANDSHAKE:
                    break
                events = feed(conn, piece)
                if any(isinstance(e, ClientInitReceived) for e in events):
                    conn.send_server_init(8, 8, DEFAULT_FORMAT, "")
        except RemoteProtocolError:
            self.assertIs(conn.state, ServerState.CLOSED)
        limit = Limits(max_cut_text=64, max_encodings=8).max_receive_buffer
        self.assertLessEqual(len(conn._in), limit)

    @given(st.sampled_from([(None, False), (None, True), ("anon", False), ("x509", True)]),
           st.sampled_from([3, 7, 8]), st.data())
    def test_chunking_does_not_matter(self, config, minor, data):
        """Feeding a valid handshake in any split gives the same bytes and events."""
        kind, password = config
        script = version(minor)
        if minor != 3:
            script += bytes([19 if kind else (2 if password else 1)])
        if kind:
            script += b"\x00\x02" + u32(auth_for(kind, password).subtype)

        def run(chunks):
            conn = server(kind, password)
            out, events = conn.data_to_send(), []
            for chunk in chunks:
                events += feed(conn, chunk)
                out += conn.data_to_send()
            return out, events

        whole = run([script])
        cut = data.draw(st.lists(st.integers(0, len(script)), max_size=6).map(sorted))
        chunks = [script[a:b] for a, b in zip([0, *cut], [*cut, len(script)])]
        self.assertEqual(run(chunks), whole)
