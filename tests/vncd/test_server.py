"""The Twisted server protocol over StringTransport, with a fake display and a
memory reactor: events to ClientUpdates calls, connection info, share policy,
QEMU's connections= rule, back-pressure."""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.internet.testing import EventLoggingObserver
from twisted.trial.unittest import SynchronousTestCase

from vncd.pixels import PixelFormat
from vncd.rfb import messages as m
from vncd.rfb.client import ClientConnection, ClientSecurity
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.events import NEED_DATA, PAUSED, CLOSED, ServerInitReceived
from vncd.lifecycle import Life
from vncd.rfb.limits import Limits
from vncd.rfb.security import SecurityConfig, auth_for
from vncd.rfb.stack import RFBStack
from vncd.rfb.testing import FakeDisplay
from vncd.server import DisplayServer, ShareMode, peer_text, source_of

PASSWORD = b"password"


class Client:
    """A sans-I/O client driving one server protocol over a StringTransport."""

    def __init__(self, server: DisplayServer, host="192.0.2.10", port=40000, *,
                 password=None, shared=True, max_minor=8, address=None, local=None,
                 tls=None, tls_session=None):
        self.transport = StringTransport(
            peerAddress=address or IPv4Address("TCP", host, port),
            hostAddress=local or IPv4Address("TCP", "127.0.0.1", 5900))
        self.rfb = ClientConnection(ClientSecurity(tls=tls, password=password), shared=shared,
                                    max_minor=max_minor)
        if tls_session is not None:
            self.rfb = RFBStack(self.rfb, tls_session)
        self.events = []
        self.error = None
        self.proto = server.factory().buildProtocol(self.transport.getPeer())
        #: True when the factory refused the connection at accept.
        self.refused = self.proto is None
        if not self.refused:
            self.proto.makeConnection(self.transport)

    def pump(self, rounds=20):
        for _ in range(rounds):
            out = self.transport.value()
            self.transport.clear()
            if out:
                self.rfb.receive_data(out)
            try:
                while (event := self.rfb.next_event()) not in (NEED_DATA, PAUSED, CLOSED):
                    self.events.append(event)
            except RemoteProtocolError as e:
                self.error = e
                return self
            data = self.rfb.data_to_send()
            if data and not self.transport.disconnecting:
                self.proto.dataReceived(data)
            if not out and not data:
                return self
        return self

    def send(self, *messages):
        for message in messages:
            self.rfb.send(message)
        self.proto.dataReceived(self.rfb.data_to_send())
        return self

    def lose(self):
        self.proto.connectionLost(None)

    @property
    def updates(self):
        return self.proto.updates

    @property
    def dropped(self):
        return self.refused or self.transport.disconnecting


def display_server(password=False, **kw):
    reactor = kw.pop("reactor", MemoryReactorClock())
    security = SecurityConfig(auth_for(None, password), PASSWORD if password else None)
    return DisplayServer(FakeDisplay(), security, reactor=reactor, **kw)


class ProtocolTests(SynchronousTestCase):

    def test_handshake_and_info(self):
        """A client gets to ServerInit; the display saw register, then attach with live info."""
        server = display_server(password=True)
        client = Client(server, password=PASSWORD).pump()
        (init,) = [e for e in client.events if isinstance(e, ServerInitReceived)]
        self.assertEqual((init.width, init.height, init.name), (64, 48, "fake"))
        display = server.display
        (info,) = display.registered
        self.assertEqual(info.peer, "192.0.2.10:40000")
        self.assertEqual(info.local, "127.0.0.1:5900")
        self.assertEqual((info.rfb_version, info.security, info.state, info.shared),
                         ("3.8", "VncAuth", "authenticated", True))
        (updates,) = display.attached
        self.assertIs(updates.info, info)
        self.assertIs(updates.sink, client.proto)

    def test_messages_become_calls(self):
        """Every client message becomes the matching ClientUpdates call."""
        server = display_server()
        client = Client(server).pump()
        pf = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
        client.send(m.SetPixelFormat(pf), m.SetEncodings((16, 0, -223)),
                    m.FramebufferUpdateRequest(True, 1, 2, 3, 4), m.KeyEvent(True, 65),
                    m.PointerEvent(5, 6, 7), m.ClientCutText(b"txt"),
                    m.QEMUExtendedKeyEvent(False, 66, 48),
                    m.EnableContinuousUpdates(True, 0, 0, 64, 48),
                    m.ClientFence(3, b"ab"),
                    m.SetDesktopSize(80, 60, [m.Screen(1, 0, 0, 80, 60, 0)]))
        self.assertEqual(client.updates.calls, [
            ("set_pixel_format", (pf,)),
            ("set_encodings", ([16, 0, -223],)),
            ("request_update", (True, 1, 2, 3, 4)),
            ("key_event", (True, 65)),
            ("pointer_event", (5, 6, 7)),
            ("cut_text", (b"txt",)),
            ("qemu_key_event", (False, 66, 48)),
            ("enable_continuous_updates", (True, 0, 0, 64, 48)),
            ("client_fence", (3, b"ab")),
            ("set_desktop_size", (80, 60, [(1, 0, 0, 80, 60, 0)])),
        ])

    def test_update_requests_are_clipped(self):
        """Requests reaching past the screen are clipped to it (64x48 here)."""
        server = display_server()
        client = Client(server).pump()
        client.send(m.FramebufferUpdateRequest(False, 60, 40, 100, 100),
                    m.FramebufferUpdateRequest(True, 200, 200, 5, 5),
                    m.EnableContinuousUpdates(True, 10, 0, 0xFFFF, 0xFFFF))
        self.assertEqual(client.updates.calls, [
            ("request_update", (False, 60, 40, 4, 8)),
            ("request_update", (True, 64, 48, 0, 0)),
            ("enable_continuous_updates", (True, 10, 0, 54, 48)),
        ])

    def test_sink(self):
        """Bytes written to the sink reach the transport; close() closes after them."""
        server = display_server()
        client = Client(server).pump()
        client.updates.sink.write(b"\x02")
        client.updates.sink.flush()
        self.assertEqual(client.transport.value(), b"\x02")
        client.updates.sink.close("test over")
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(client.proto.drop_reason, "test over")

    def test_connection_lost(self):
        """On disconnect the updates are closed and the display unregisters the client."""
        server = display_server()
        client = Client(server).pump()
        info = server.display.registered[0]
        client.lose()
        self.assertTrue(client.updates is None)
        self.assertTrue(server.display.attached[0].closed)
        self.assertEqual(server.display.unregistered, [info])
        self.assertEqual(info.state, "closed")
        self.assertEqual(server.clients, [])

    def test_protocol_error_closes_and_logs(self):
        """A malformed message closes the connection and logs the peer and reason."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        server = display_server()
        client = Client(server).pump()
        client.proto.dataReceived(b"\x09")
        self.assertTrue(client.transport.disconnecting)
        texts = [e["log_format"].format(**e) for e in observer]
        self.assertTrue(any("192.0.2.10:40000" in t and "unknown client message type 9" in t
                            for t in texts), texts)

    def test_auth_failure_is_logged_without_secret(self):
        """A failed VNC authentication is logged with the peer; the password never is."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        server = display_server(password=True)
        server.security.set_password(b"zq9-Lk2w")
        client = Client(server, password=b"guessed").pump()
        self.assertTrue(client.dropped)
        texts = [e["log_format"].format(**e) for e in observer]
        self.assertIn("192.0.2.10:40000: authentication failed: wrong VNC password", texts)
        self.assertFalse([t for t in texts if "zq9-Lk2w" in t or "guessed" in t])

    def test_peer_text(self):
        """Peers are shown as host:port, [v6]:port, or unix."""
        self.assertEqual(peer_text(IPv6Address("TCP", "::1", 5)), "[::1]:5")
        self.assertEqual(peer_text(UNIXAddress("/tmp/s")), "unix")

    def test_addresses_described_once_as_each_helper_would(self):
        """Each end of a connection is described in one call; the text and the
        QEMU fields are those peer_text and address_info give, for every family."""
        from vncd.server import _describe, address_info

        for address in (IPv4Address("TCP", "127.0.0.1", 5901),
                        IPv6Address("TCP", "fe80::1%lo", 6),
                        UNIXAddress(b"/run/vnc.sock"), UNIXAddress(None), object()):
            self.assertEqual(_describe(address), (peer_text(address), *address_info(address)))
        self.assertEqual(_describe(IPv6Address("TCP", "::1", 5)),
                         ("[::1]:5", "::1", "5", "ipv6"))
        self.assertEqual(_describe(UNIXAddress(b"/run/vnc.sock")),
                         ("unix", "", "/run/vnc.sock", "unix"))
        self.assertEqual(peer_text(object()), "unix")


class BackPressureTests(SynchronousTestCase):

    def test_pause_queues_and_stops_reading(self):
        """A paused transport stops reading; output is queued and counted, then flushed."""
        server = display_server()
        client = Client(server).pump()
        proto, tr = client.proto, client.transport
        proto.pauseProducing()
        self.assertEqual(tr.producerState, "paused")
        proto.write(b"x" * 1000)
        proto.flush()
        self.assertEqual(tr.value(), b"")
        self.assertGreaterEqual(proto.output_buffered(), 1000)
        proto.resumeProducing()
        self.assertEqual(tr.value(), b"x" * 1000)
        self.assertEqual(tr.producerState, "producing")
        self.assertEqual(proto.output_buffered(), 0)
        self.assertEqual(client.updates.calls[-1], ("writable", ()))

    def test_large_writes_keep_their_order(self):
        """Large messages skip the stack's buffer but not their turn: while paused they
        wait with the small ones, and when the transport fills up again part way
        through the queue with RESUME_HANDOFF in hand, the rest waits for the
        next resume."""
        from vncd import server as server_module
        from vncd.server import DIRECT_WRITE_MIN
        self.patch(server_module, "RESUME_HANDOFF", DIRECT_WRITE_MIN)
        server = display_server()
        client = Client(server).pump()
        proto, tr = client.proto, client.transport
        big1, big2 = b"a" * DIRECT_WRITE_MIN, b"b" * (DIRECT_WRITE_MIN + 1)
        proto.write(b"1")
        proto.flush()
        proto.write(big1)
        proto.flush()
        self.assertEqual(tr.value(), b"1" + big1)
        tr.clear()
        proto.pauseProducing()
        for data in (b"2", big1, b"3", big2):
            proto.write(data)
            proto.flush()
        self.assertEqual(tr.value(), b"")
        self.assertGreaterEqual(proto.output_buffered(), 2 + len(big1) + len(big2))
        real_write, filled = tr.write, []

        def write_and_fill(data):
            real_write(data)
            if len(data) >= DIRECT_WRITE_MIN and not filled:
                filled.append(data)
                proto.pauseProducing()

        tr.write = write_and_fill
        proto.resumeProducing()
        self.assertEqual(tr.value(), b"2" + big1)
        self.assertIs(proto.life, Life.PAUSED)
        self.assertGreaterEqual(proto.output_buffered(), 1 + len(big2))
        proto.resumeProducing()
        self.assertEqual(tr.value(), b"2" + big1 + b"3" + big2)
        self.assertIs(proto.life, Life.SERVING)
        self.assertEqual(proto.output_buffered(), 0)

    def test_resume_hands_over_up_to_the_handoff(self):
        """On resume, held-back chunks keep going to a transport that paused
        again until it holds RESUME_HANDOFF; they count as held by it."""
        from vncd.server import DIRECT_WRITE_MIN, RESUME_HANDOFF
        server = display_server()
        client = Client(server).pump()
        proto, tr = client.proto, client.transport
        tr.clear()
        proto.pauseProducing()
        band = DIRECT_WRITE_MIN * 4
        chunks = [bytes([65 + i]) * band for i in range(2 * RESUME_HANDOFF // band + 2)]
        for data in chunks:
            proto.write(data)
        proto.flush()
        real_write = tr.write

        def write_and_fill(data):
            real_write(data)
            if proto.life is not Life.PAUSED:   # every write fills the transport again
                proto.pauseProducing()

        tr.write = write_and_fill
        proto.resumeProducing()
        handed = RESUME_HANDOFF // band + (RESUME_HANDOFF % band > 0)
        self.assertEqual(tr.value(), b"".join(chunks[:handed]))
        self.assertIs(proto.life, Life.PAUSED)
        self.assertGreaterEqual(proto.output_buffered(), sum(map(len, chunks)))
        tr.write = real_write
        proto.resumeProducing()
        self.assertEqual(tr.value(), b"".join(chunks))
        self.assertEqual(proto.output_buffered(), 0)

    def test_paused_twice_is_paused_once(self):
        """Twisted asks a paused producer to pause again for each write past its
        high-water mark: nothing changes, the count of held bytes included."""
        server = display_server()
        client = Client(server).pump()
        proto = client.proto
        proto.pauseProducing()
        proto.write(b"x" * 1000)
        proto.flush()
        held = proto.output_buffered()
        proto.pauseProducing()
        self.assertIs(proto.life, Life.PAUSED)
        self.assertEqual(proto.output_buffered(), held)
        proto.resumeProducing()
        self.assertIs(proto.life, Life.SERVING)

    def test_registered_as_streaming_producer(self):
        """The protocol registers with its transport as a streaming producer."""
        server = display_server()
        client = Client(server)
        self.assertIs(client.transport.producer, client.proto)
        self.assertTrue(client.transport.streaming)


class ShareTests(SynchronousTestCase):

    def test_allow_exclusive(self):
        """allow-exclusive: an exclusive client drops the others; then shared ones are refused."""
        server = display_server()
        a = Client(server, port=1).pump()
        b = Client(server, port=2).pump()
        waiting = Client(server, port=3)
        self.assertFalse(a.dropped or b.dropped)
        exclusive = Client(server, port=4, shared=False).pump()
        self.assertTrue(a.dropped and b.dropped)
        self.assertFalse(waiting.dropped, "a client still connecting is left alone")
        self.assertIs(exclusive.proto.share_mode, ShareMode.EXCLUSIVE)
        late = Client(server, port=5).pump()
        self.assertTrue(late.dropped)
        self.assertIsNone(late.proto.updates)

    def test_force_shared(self):
        """force-shared: a client asking for exclusive access is dropped; shared ones stay."""
        server = display_server(share="force-shared")
        a = Client(server, port=1).pump()
        exclusive = Client(server, port=2, shared=False).pump()
        self.assertTrue(exclusive.dropped)
        self.assertFalse(a.dropped)

    def test_ignore(self):
        """ignore: the shared flag changes nothing."""
        server = display_server(share="ignore")
        a = Client(server, port=1, shared=False).pump()
        b = Client(server, port=2, shared=False).pump()
        c = Client(server, port=3).pump()
        self.assertFalse(a.dropped or b.dropped or c.dropped)
        self.assertEqual(b.proto.info.shared, False)
        self.assertEqual(c.proto.info.shared, True)

    def test_unknown_policy(self):
        """An unknown share policy is refused at construction."""
        self.assertRaises(ValueError, display_server, share="sometimes")


class ConnectionLimitTests(SynchronousTestCase):

    def test_oldest_connecting_client_is_dropped(self):
        """connections=2: a third negotiating client makes the oldest negotiating one go."""
        server = display_server(connections=2)
        done = Client(server, port=1).pump()
        first = Client(server, port=2)
        second = Client(server, port=3)
        third = Client(server, port=4)
        self.assertTrue(first.dropped)
        self.assertFalse(second.dropped or third.dropped or done.dropped)
        self.assertIn("connecting", first.proto.drop_reason)

    def test_too_many_shared_clients(self):
        """connections=2: a third shared client is dropped after its ClientInit."""
        server = display_server(connections=2)
        a = Client(server, port=1).pump()
        b = Client(server, port=2).pump()
        c = Client(server, port=3).pump()
        self.assertFalse(a.dropped or b.dropped)
        self.assertTrue(c.dropped)
        self.assertIn("shared", c.proto.drop_reason)

    def test_default_is_32(self):
        """QEMU's default of 32 connections."""
        self.assertEqual(display_server().connections, 32)

    def test_disconnected_clients_free_their_slot(self):
        """A client that left no longer counts."""
        server = display_server(connections=1)
        a = Client(server, port=1).pump()
        a.lose()
        b = Client(server, port=2).pump()
        self.assertFalse(b.dropped)


class UnixPeerTests(SynchronousTestCase):

    def test_unix_socket_peer(self):
        """A UNIX-socket client is shown as "unix"."""
        server = display_server()
        client = Client(server, address=UNIXAddress("/tmp/vnc.sock")).pump()
        self.assertEqual(client.proto.info.peer, "unix")
        self.assertIsNone(client.error)


class Recorder:
    """An observer writing down every call as (method, peer, server)."""

    def __init__(self):
        self.calls = []

    def client_connected(self, server, info):
        self.calls.append(("connected", info.peer, server))

    def client_initialized(self, server, info):
        self.calls.append(("initialized", info.peer, server))

    def client_disconnected(self, server, info):
        self.calls.append(("disconnected", info.peer, server))

    def names(self):
        return [(method, peer) for method, peer, _ in self.calls]


class ObserverTests(SynchronousTestCase):

    def observed(self, **kw):
        server = display_server(**kw)
        recorder = Recorder()
        server.observers.append(recorder)
        return server, recorder

    def test_session(self):
        """connected at accept (before any byte), initialized after ServerInit, then
        disconnected once."""
        server, recorder = self.observed()
        client = Client(server, port=1)
        self.assertEqual(recorder.names(), [("connected", "192.0.2.10:1")])
        client.pump()
        self.assertEqual(recorder.names()[-1], ("initialized", "192.0.2.10:1"))
        client.lose()
        self.assertEqual(recorder.names(), [("connected", "192.0.2.10:1"),
                                            ("initialized", "192.0.2.10:1"),
                                            ("disconnected", "192.0.2.10:1")])
        self.assertTrue(all(s is server for _, _, s in recorder.calls))

    def test_refused_client(self):
        """A failed password: connected, then disconnected once (when we close, not again
        when the transport goes); never initialized."""
        server, recorder = self.observed(password=True)
        client = Client(server, password=b"wrong").pump()
        self.assertEqual([m for m, _ in recorder.names()], ["connected", "disconnected"])
        client.lose()
        self.assertEqual([m for m, _ in recorder.names()], ["connected", "disconnected"])

    def test_eviction_order(self):
        """connections=1: the newcomer is announced before the client it pushes out leaves."""
        server, recorder = self.observed(connections=1)
        Client(server, port=1)
        Client(server, port=2)
        self.assertEqual(recorder.names(), [("connected", "192.0.2.10:1"),
                                            ("connected", "192.0.2.10:2"),
                                            ("disconnected", "192.0.2.10:1")])

    def test_share_policy_refusal(self):
        """A client refused by the share policy is connected and disconnected, not initialized."""
        server, recorder = self.observed(share="force-shared")
        client = Client(server, shared=False).pump()
        self.assertTrue(client.dropped)
        self.assertEqual([m for m, _ in recorder.names()], ["connected", "disconnected"])

    def test_websocket_announced_at_accept(self):
        """A WebSocket connection is announced at accept, before its upgrade."""
        server, recorder = self.observed()
        proto = server.factory(websocket=True).buildProtocol(None)
        proto.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.5", 7)))
        self.assertEqual(recorder.names(), [("connected", "192.0.2.5:7")])
        self.assertTrue(proto.info.websocket)

    def test_raising_observer(self):
        """An observer that raises is logged once; the connection and other observers go on."""
        class Broken:
            def __getattr__(self, name):
                raise RuntimeError("monitor is broken")

        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        server, recorder = self.observed()
        server.observers.insert(0, Broken())
        a = Client(server, port=1).pump()
        b = Client(server, port=2).pump()
        self.assertFalse(a.dropped or b.dropped)
        for client in (a, b):
            self.assertTrue(any(isinstance(e, ServerInitReceived) for e in client.events))
        self.assertEqual([m for m, _ in recorder.names()],
                         ["connected", "initialized", "connected", "initialized"])
        failures = [e for e in observer if e.get("log_failure") is not None]
        self.assertEqual(len(failures), 1)
        self.assertIn("client_connected", failures[0]["log_format"].format(**failures[0]))
        self.flushLoggedErrors(RuntimeError)

    def test_clients_info(self):
        """clients_info lists live clients in connection order; closing ones are gone."""
        server = display_server(password=True)
        a = Client(server, port=1, password=PASSWORD).pump()
        b = Client(server, port=2)
        c = Client(server, port=3, password=b"wrong").pump()
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(server.clients_info(), [a.proto.info, b.proto.info])


class StructuredInfoTests(SynchronousTestCase):

    def test_ipv4(self):
        """Peer and listener as QEMU's VncBasicInfo: host, service (a string), family."""
        info = Client(display_server(), host="192.0.2.10", port=40000).proto.info
        self.assertEqual((info.host, info.service, info.family), ("192.0.2.10", "40000", "ipv4"))
        self.assertEqual((info.local_host, info.local_service, info.local_family),
                         ("127.0.0.1", "5900", "ipv4"))
        self.assertEqual((info.peer, info.local), ("192.0.2.10:40000", "127.0.0.1:5900"))

    def test_ipv6(self):
        """An IPv6 peer has no brackets in host; the text form keeps them."""
        info = Client(display_server(), address=IPv6Address("TCP", "2001:db8::7", 5555),
                      local=IPv6Address("TCP", "::1", 5901)).proto.info
        self.assertEqual((info.host, info.service, info.family), ("2001:db8::7", "5555", "ipv6"))
        self.assertEqual((info.local_host, info.local_service, info.local_family),
                         ("::1", "5901", "ipv6"))
        self.assertEqual(info.peer, "[2001:db8::7]:5555")

    def test_unix(self):
        """A UNIX-socket peer: empty host and service, family unix; the listener's path."""
        info = Client(display_server(), address=UNIXAddress(None),
                      local=UNIXAddress(b"/run/vnc.sock")).proto.info
        self.assertEqual((info.host, info.service, info.family), ("", "", "unix"))
        self.assertEqual((info.local_host, info.local_service, info.local_family),
                         ("", "/run/vnc.sock", "unix"))
        self.assertEqual(info.peer, "unix")


class FairEvictionTests(SynchronousTestCase):

    def test_flood_does_not_push_out_other_addresses(self):
        """One address opening 200 connections never drops another address's handshake."""
        server = display_server(connections=4)
        legit = Client(server, host="192.0.2.1")
        flood = [Client(server, host="198.51.100.9", port=p) for p in range(200)]
        self.assertFalse(legit.dropped)
        self.assertEqual(sum(not c.dropped for c in flood), 3)
        self.assertEqual([c.dropped for c in flood[-3:]], [False] * 3, "the newest stay")
        self.assertFalse(any(c.refused for c in flood), "connections=4 acts before the"
                                                        " per-source limit of 16")
        legit.pump()
        self.assertEqual(len([e for e in legit.events if isinstance(e, ServerInitReceived)]), 1)

    def test_per_source_limit(self):
        """A source holding max_handshakes_per_source handshakes has further ones refused
        at accept (no protocol is built); other sources are unaffected."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        server = display_server(limits=Limits(max_handshakes_per_source=3))
        same = [Client(server, host="198.51.100.9", port=p) for p in range(5)]
        other = Client(server, host="192.0.2.1")
        self.assertEqual([c.refused for c in same], [False, False, False, True, True])
        self.assertFalse(any(c.dropped for c in same[:3]))
        self.assertFalse(other.dropped)
        texts = [e["log_format"].format(**e) for e in observer]
        self.assertIn("198.51.100.9:3: refused: more than 3 clients from 198.51.100.9"
                      " are connecting", texts)
        same[0].lose()
        self.assertFalse(Client(server, host="198.51.100.9", port=9).refused)

    def test_finished_handshakes_do_not_count(self):
        """Clients past ServerInit from the same address do not use up its handshakes."""
        server = display_server(limits=Limits(max_handshakes_per_source=2))
        done = [Client(server, port=p).pump() for p in range(5)]
        pending = [Client(server, port=10 + p) for p in range(2)]
        self.assertFalse(any(c.dropped for c in done + pending))

    def test_one_handshake_per_source_is_qemus_rule(self):
        """With one handshake per address, the oldest goes (QEMU's rule)."""
        server = display_server(connections=2)
        clients = [Client(server, host=f"192.0.2.{i}") for i in range(1, 4)]
        self.assertEqual([c.dropped for c in clients], [True, False, False])

    def test_unix_peers_are_one_source(self):
        """Every UNIX-socket peer counts as the same source."""
        server = display_server(limits=Limits(max_handshakes_per_source=2))
        clients = [Client(server, address=UNIXAddress(None)) for _ in range(3)]
        self.assertEqual([c.refused for c in clients], [False, False, True])

    def test_ipv6_network_is_one_source(self):
        """IPv6 peers in one /64 count as one source; another /64 is another source."""
        server = display_server(limits=Limits(max_handshakes_per_source=2))
        same = [Client(server, address=IPv6Address("TCP", f"2001:db8:1:2::{i}", 1))
                for i in (0xa, 0xb, 0xc)]
        other = Client(server, address=IPv6Address("TCP", "2001:db8:1:3::1", 1))
        self.assertEqual([c.refused for c in same], [False, False, True])
        self.assertFalse(other.dropped)
        self.assertEqual(same[1].proto.source, "2001:db8:1:2::/64")

    def test_source_of(self):
        """Sources: the IPv4 address, an IPv4-mapped IPv6 address as IPv4, a /64, unix."""
        limits = Limits()
        self.assertEqual(source_of(IPv4Address("TCP", "10.1.2.3", 9), limits), "10.1.2.3")
        self.assertEqual(source_of(IPv6Address("TCP", "::ffff:10.1.2.3", 9), limits),
                         "10.1.2.3")
        self.assertEqual(source_of(IPv6Address("TCP", "fe80::1%lo", 9), limits), "fe80::/64")
        self.assertEqual(source_of(IPv6Address("TCP", "2001:db8::1", 9),
                                   Limits(ipv6_source_prefix=128)), "2001:db8::1/128")
        self.assertEqual(source_of(UNIXAddress(b"/s"), limits), "unix")


class LifeTests(SynchronousTestCase):
    """The protocol moves through vncd.lifecycle's table."""

    def test_session(self):
        """NEW, HANDSHAKING, SERVING, PAUSED, SERVING, CLOSING, CLOSED."""
        server = display_server()
        proto = server.factory().buildProtocol(None)
        self.assertIs(proto.life, Life.NEW)
        client = Client(server)
        self.assertIs(client.proto.life, Life.HANDSHAKING)
        client.pump()
        self.assertIs(client.proto.life, Life.SERVING)
        client.proto.pauseProducing()
        self.assertIs(client.proto.life, Life.PAUSED)
        client.proto.resumeProducing()
        self.assertIs(client.proto.life, Life.SERVING)
        client.proto.close("test over")
        self.assertIs(client.proto.life, Life.CLOSING)
        self.assertIs(client.proto.share_mode, ShareMode.DISCONNECTED)
        client.lose()
        self.assertIs(client.proto.life, Life.CLOSED)

    def test_handshake_completes_while_paused(self):
        """Bytes read before a pause may finish the handshake: ServerInit waits in the queue."""
        server = display_server()
        client = Client(server, max_minor=7)   # 3.7 None: ClientInit follows the choice
        rfb, proto, tr = client.rfb, client.proto, client.transport
        rfb.receive_data(tr.value())
        tr.clear()
        while rfb.next_event() is not NEED_DATA:
            pass
        proto.dataReceived(rfb.data_to_send())   # version
        rfb.receive_data(tr.value())
        tr.clear()
        while rfb.next_event() is not NEED_DATA:
            pass
        proto.pauseProducing()
        self.assertIs(proto.life, Life.HANDSHAKING_PAUSED)
        proto.dataReceived(rfb.data_to_send())   # security choice, ClientInit
        self.assertIs(proto.life, Life.PAUSED)
        self.assertEqual(tr.value(), b"")
        self.assertGreater(proto.output_buffered(), 0)
        proto.resumeProducing()
        self.assertIs(proto.life, Life.SERVING)
        rfb.receive_data(tr.value())
        events = []
        while (event := rfb.next_event()) is not NEED_DATA:
            events.append(event)
        self.assertTrue(any(isinstance(e, ServerInitReceived) for e in events))

    def test_close_timer_cuts(self):
        """A closing client that does not take our last bytes is cut after close_timeout."""
        reactor = MemoryReactorClock()
        server = display_server(password=True, reactor=reactor, limits=Limits(close_timeout=2))
        client = Client(server, password=b"wrong").pump()
        self.assertIs(client.proto.life, Life.CLOSING)
        reactor.advance(2)
        self.assertIs(client.proto.life, Life.ABORTED)
        self.assertTrue(client.transport.disconnected)
        client.lose()
        self.assertIs(client.proto.life, Life.CLOSED)

    def test_no_handshake_timer_after_close(self):
        """Closing during the handshake stops the handshake timer (the close timer takes over)."""
        reactor = MemoryReactorClock()
        server = display_server(password=True, reactor=reactor)
        client = Client(server, password=b"wrong").pump()
        client.lose()
        self.assertEqual([c for c in reactor.getDelayedCalls()
                          if c.func == client.proto._handshake_timed_out], [])

    def test_calls_after_close_are_ignored(self):
        """write(), close() and drop() on a connection that is no longer live do nothing."""
        server = display_server()
        client = Client(server).pump()
        client.proto.close("first")
        client.transport.clear()
        client.proto.write(b"late")
        client.proto.flush()
        client.proto.close("second")
        client.proto.drop("third")
        self.assertEqual(client.transport.value(), b"")
        self.assertEqual(client.proto.drop_reason, "first")


class ConnectionLogTests(SynchronousTestCase):

    def texts(self, observer):
        return [e["log_format"].format(**e) for e in observer
                if e.get("log_namespace") == "vncd.server"]

    def test_repeats_are_summarised(self):
        """Wrong passwords from one address: one full line, then one summary per window;
        another address's first failure is logged in full."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        reactor = MemoryReactorClock()
        server = display_server(password=True, reactor=reactor,
                                limits=Limits(auth_failures_before_block=1000))
        for port in range(50):
            Client(server, host="198.51.100.7", port=port, password=b"wrong").pump().lose()
        Client(server, host="192.0.2.99", password=b"wrong").pump()
        reactor.advance(10)
        texts = self.texts(observer)
        flood = [t for t in texts if t.startswith("198.51.100.7")]
        self.assertEqual(flood, [
            "198.51.100.7:0: authentication failed: wrong VNC password",
            "198.51.100.7: 49 more refusals (authentication failed) in the last 10 s",
        ])
        self.assertIn("192.0.2.99:40000: authentication failed: wrong VNC password", texts)

    def test_throttled_client_is_one_line(self):
        """A throttled address's refusal is logged once per connection, not twice."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        server = display_server(password=True, limits=Limits(auth_failures_before_block=1,
                                                             log_summary_window=0))
        Client(server, host="198.51.100.7", password=b"wrong").pump().lose()
        Client(server, host="198.51.100.7", password=PASSWORD, port=2).pump().lose()
        refused = [t for t in self.texts(observer) if t.startswith("198.51.100.7:2:")]
        self.assertEqual(refused, [
            "198.51.100.7:2: refused: Too many authentication failures from this address;"
            " try again later"])

    def test_service_stop_reports_pending_counts(self):
        """ConnectionLog.close reports counts whose window has not ended yet."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        reactor = MemoryReactorClock()
        server = display_server(reactor=reactor)
        for port in range(3):
            Client(server, port=port).lose()
        server.connection_log.close()
        self.assertIn("192.0.2.10: 2 more disconnections in the last 0 s",
                      self.texts(observer))
        self.assertEqual(reactor.getDelayedCalls(), [])


class TLSGroupTests(SynchronousTestCase):
    """The negotiated key-exchange group reaches ConnectionInfo (real TLS, in memory)."""

    def test_vencrypt(self):
        """X509None: info.tls_group is the group the TLS session negotiated."""
        from tests.vncd.test_vencrypt import shared_pki

        pki = shared_pki(self)
        server = DisplayServer(FakeDisplay(), SecurityConfig(auth_for("x509", False)),
                               reactor=MemoryReactorClock(),
                               tls_session=pki.server_session("x509v"))
        client = Client(server, tls="x509", tls_session=pki.client_session("c-alice")).pump()
        self.assertIsNone(client.error)
        info = client.proto.info
        self.assertEqual(info.tls_version, "TLSv1.3")
        self.assertIsNotNone(info.tls_group)
        self.assertEqual(info.tls_group, client.rfb.tls.session.group_name)
        self.assertEqual(info.peer_dn, "C=UK,CN=alice")

    def test_wss(self):
        """wss: the outer TLS session's group is recorded too."""
        from tests.vncd.test_vencrypt import shared_pki
        from tests.vncd.test_websocket import WSClient

        pki = shared_pki(self)
        server = DisplayServer(FakeDisplay(), SecurityConfig(auth_for("x509", False)),
                               reactor=MemoryReactorClock(),
                               tls_session=pki.server_session("x509v"))
        proto = server.factory(websocket=True).buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.5", 1000))
        proto.makeConnection(transport)
        client = WSClient(tls_session=pki.client_session("c-alice")())
        for _ in range(20):
            data = client.wire_out()
            if data:
                proto.dataReceived(data)
            out = transport.value()
            transport.clear()
            if out:
                client.wire_in(out)
            if not data and not out:
                break
        self.assertTrue(any(isinstance(e, ServerInitReceived) for e in client.events))
        self.assertIsNotNone(proto.info.tls_group)
        self.assertEqual(proto.info.tls_group, client.tls.session.group_name)


class WebSocketCloseTests(SynchronousTestCase):

    def test_refusal_reason_before_close_frame(self):
        """A wrong password over ws: the client reads the failure reason, then the close frame."""
        from tests.vncd.test_websocket import WSClient
        from vncd.rfb.events import AuthenticationFailed

        server = display_server(password=True)
        proto = server.factory(websocket=True).buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.5", 1000))
        proto.makeConnection(transport)
        client = WSClient(password=b"wrong")
        for _ in range(20):
            data = client.wire_out()
            if data:
                proto.dataReceived(data)
            out = transport.value()
            transport.clear()
            if out:
                client.wire_in(out)
            if not data and not out:
                break
        self.assertTrue(transport.disconnecting)
        failed = [e for e in client.events if isinstance(e, AuthenticationFailed)]
        self.assertEqual(len(failed), 1, client.events)
        self.assertIn("Authentication failed", failed[0].reason)


class OneWritePerPassTests(SynchronousTestCase):
    """With a real Display: what one pass of the update engine writes reaches
    the transport in one write (each small write was a send of its own, and
    behind Nagle's algorithm a wait for the client's acknowledgement: Tight
    with JPEG delivered half its frames)."""

    def setUp(self):
        from vncd.encoding import DESKTOP_NAME, RAW
        from vncd.screens.base import Screen
        from vncd.updates import Display
        reactor = MemoryReactorClock()
        # Two tile rows, together under DIRECT_WRITE_MIN (larger Raw
        # rectangles go to the transport directly, after the header).
        self.screen = Screen(96, 96)
        display = Display(self.screen, reactor=reactor)
        security = SecurityConfig(auth_for(None, False), None)
        self.reactor = reactor
        self.client = Client(DisplayServer(display, security, reactor=reactor)).pump()
        self.client.send(m.SetEncodings([RAW, DESKTOP_NAME]))
        self.writes = []
        transport = self.client.transport
        original = transport.write

        def counting(data):
            self.writes.append(len(data))
            original(data)
        transport.write = counting

    def test_update_and_bell_in_one_write(self):
        self.screen.set_name("renamed")
        self.screen.bell()
        self.client.send(m.FramebufferUpdateRequest(False, 0, 0, 96, 96))
        self.reactor.advance(0)
        # The bell went when it rang; then the update: header, name, the pixels.
        self.assertEqual(len(self.writes), 2, self.writes)
        self.assertGreater(self.writes[1], 96 * 96 * 4)
        self.client.pump()
        self.assertTrue(any(type(e).__name__ == "Bell" for e in self.client.events),
                        self.client.events)

    def test_no_nagle_delay(self):
        """Connections turn Nagle's algorithm off, as QEMU does on VNC sockets."""
        calls = []
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.5", 7))
        transport.setTcpNoDelay = calls.append
        proto = display_server().factory().buildProtocol(transport.getPeer())
        proto.makeConnection(transport)
        self.assertEqual(calls, [True])
