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
from vncd.rfb.security import SecurityConfig, auth_for
from vncd.rfb.testing import FakeDisplay
from vncd.server import DisplayServer, ShareMode, peer_text

PASSWORD = b"password"


class Client:
    """A sans-I/O client driving one server protocol over a StringTransport."""

    def __init__(self, server: DisplayServer, host="192.0.2.10", port=40000, *,
                 password=None, shared=True, max_minor=8, address=None):
        self.transport = StringTransport(
            peerAddress=address or IPv4Address("TCP", host, port),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 5900))
        self.proto = server.factory().buildProtocol(None)
        self.rfb = ClientConnection(ClientSecurity(password=password), shared=shared,
                                    max_minor=max_minor)
        self.events = []
        self.error = None
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
        return self.transport.disconnecting


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


class BackPressureTests(SynchronousTestCase):

    def test_pause_queues_and_stops_reading(self):
        """A paused transport stops reading; output is queued and counted, then flushed."""
        server = display_server()
        client = Client(server).pump()
        proto, tr = client.proto, client.transport
        proto.pauseProducing()
        self.assertEqual(tr.producerState, "paused")
        proto.write(b"x" * 1000)
        self.assertEqual(tr.value(), b"")
        self.assertGreaterEqual(proto.output_buffered(), 1000)
        proto.resumeProducing()
        self.assertEqual(tr.value(), b"x" * 1000)
        self.assertEqual(tr.producerState, "producing")
        self.assertEqual(proto.output_buffered(), 0)
        self.assertEqual(client.updates.calls[-1], ("writable", ()))

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
