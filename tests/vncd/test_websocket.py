"""RFB over WebSocket (ws and wss): the sans-I/O layer, the server edge, loopback."""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase
from wsproto import ConnectionType, WSConnection
from wsproto.utilities import RemoteProtocolError as WSProtocolError
from wsproto.events import (
    AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, RejectConnection, Request,
    TextMessage,
)

from creds.session import TLSSession
from creds.tlscreds import Endpoint
from tests.tools import free_port
from tests.vncd.test_service import ServiceCase, display, tcp
from tests.vncd.test_vencrypt import PASSWORD, shared_pki
from vncd.rfb.client import ClientConnection, ClientSecurity
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.events import CLOSED, NEED_DATA, PAUSED, ServerInitReceived
from vncd.rfb.security import SecurityConfig, auth_for
from vncd.rfb.testing import FakeDisplay
from vncd.rfb.tls import TLSLayer
from vncd.server import DisplayServer
from vncd.websocket import MAX_HANDSHAKE_BYTES, OuterStack, WebSocketLayer


def upgrade_request(subprotocols=("binary",), target="/websockify") -> tuple[WSConnection, bytes]:
    client = WSConnection(ConnectionType.CLIENT)
    return client, client.send(Request(host="localhost", target=target,
                                       subprotocols=list(subprotocols)))


def client_events(client: WSConnection, data: bytes) -> list:
    client.receive_data(data)
    return list(client.events())


class WebSocketLayerTests(SynchronousTestCase):

    def test_upgrade_with_binary(self):
        """A noVNC-style request gets 101 with the binary subprotocol, then RFB flows."""
        layer = WebSocketLayer()
        layer.send(b"RFB 003.008\n")
        self.assertEqual(layer.data_to_send(), b"", "RFB waits for the upgrade")
        client, request = upgrade_request()
        self.assertEqual(layer.receive_data(request), b"")
        events = client_events(client, layer.data_to_send())
        self.assertEqual(events[0], AcceptConnection(subprotocol="binary"))
        self.assertEqual(events[1], BytesMessage(data=b"RFB 003.008\n", message_finished=True,
                                                 frame_finished=True))
        self.assertEqual(layer.receive_data(client.send(BytesMessage(data=b"RFB 003.008\n"))),
                         b"RFB 003.008\n")
        self.assertEqual(layer.target, "/websockify")

    def test_upgrade_without_subprotocol(self):
        """A request offering no subprotocol is accepted without one."""
        layer = WebSocketLayer()
        client, request = upgrade_request(())
        layer.receive_data(request)
        self.assertEqual(client_events(client, layer.data_to_send()),
                         [AcceptConnection(subprotocol=None)])

    def test_other_subprotocols_refused(self):
        """Offering only subprotocols other than binary gets 400."""
        layer = WebSocketLayer()
        client, request = upgrade_request(("chat",))
        with self.assertRaises(RemoteProtocolError):
            layer.receive_data(request)
        self.assertTrue(layer.data_to_send().startswith(b"HTTP/1.1 400 "))

    def test_plain_http_refused(self):
        """A plain HTTP GET (no upgrade) gets 400 and an error."""
        layer = WebSocketLayer()
        with self.assertRaises(RemoteProtocolError):
            layer.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(layer.data_to_send().startswith(b"HTTP/1.1 400 "))
        self.assertTrue(layer.closed)

    def test_handshake_size_limit(self):
        """More than MAX_HANDSHAKE_BYTES before the upgrade completes is refused."""
        layer = WebSocketLayer()
        layer.receive_data(b"GET / HTTP/1.1\r\n")
        with self.assertRaises(RemoteProtocolError):
            layer.receive_data(b"X-Pad: " + b"a" * MAX_HANDSHAKE_BYTES)

    def test_text_frames_refused(self):
        """A text frame closes the WebSocket with 1003 (unsupported data)."""
        layer = WebSocketLayer()
        client, request = upgrade_request()
        layer.receive_data(request)
        client_events(client, layer.data_to_send())
        with self.assertRaises(RemoteProtocolError):
            layer.receive_data(client.send(TextMessage(data="RFB")))
        (close,) = client_events(client, layer.data_to_send())
        self.assertEqual(close.code, 1003)

    def test_ping_and_close(self):
        """Pings are answered; a close frame is answered and ends the layer."""
        layer = WebSocketLayer()
        client, request = upgrade_request()
        layer.receive_data(request)
        client_events(client, layer.data_to_send())
        layer.receive_data(client.send(Ping(payload=b"hi")))
        self.assertEqual(client_events(client, layer.data_to_send()), [Pong(payload=b"hi")])
        layer.receive_data(client.send(CloseConnection(code=1000)))
        self.assertTrue(layer.closed)
        self.assertIsInstance(client_events(client, layer.data_to_send())[0], CloseConnection)

    def test_non_ascii_headers_refused(self):
        """An upgrade request whose Host or token headers are not ASCII gets 400 and a
        protocol error (found by fuzzing: wsproto's UnicodeDecodeError escaped)."""
        _, request = upgrade_request()
        for bad in (request.replace(b"Host: localhost", "Host: h\u00f4te".encode("latin-1")),
                    request.replace(b"Protocol: binary", b"Protocol: binary\xcc;\xe4")):
            self.assertNotEqual(bad, request)
            layer = WebSocketLayer()
            with self.assertRaises(RemoteProtocolError) as caught:
                layer.receive_data(bad)
            self.assertIn("not ASCII", caught.exception.reason)
            self.assertTrue(layer.data_to_send().startswith(b"HTTP/1.1 400 "))
            self.assertTrue(layer.closed)

    @given(st.binary(max_size=500))
    def test_garbage(self, data):
        """Garbage before or after the upgrade yields bytes or RemoteProtocolError only."""
        for upgraded in (False, True):
            layer = WebSocketLayer()
            if upgraded:
                layer.receive_data(upgrade_request()[1])
            try:
                layer.receive_data(data)
            except RemoteProtocolError:
                pass


class WSClient:
    """An RFB client inside a WebSocket client (inside TLS when given a session)."""

    def __init__(self, password=None, tls_session=None, max_minor=8):
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.tls = TLSLayer(tls_session) if tls_session is not None else None
        self.rfb = ClientConnection(ClientSecurity(password=password), max_minor=max_minor)
        self.events = []
        self.error = None
        self.upgraded = False
        #: WebSocket bytes waiting for the TLS handshake, and bytes for the wire.
        self._pending = b""
        self._out = b""
        self._to_ws(self.ws.send(Request(host="localhost", target="/", subprotocols=["binary"])))

    def _to_ws(self, data):
        if self.tls is None:
            self._out += data
        elif self.tls.established:
            self.tls.send(data)
        else:
            self._pending += data

    def wire_out(self) -> bytes:
        out, self._out = self._out, b""
        if self.tls is not None:
            out += self.tls.data_to_send()
        return out

    def wire_in(self, data: bytes) -> None:
        if self.tls is not None:
            data = self.tls.receive_data(data)
            if self.tls.established and self._pending:
                self.tls.send(self._pending)
                self._pending = b""
        if not data:
            return
        try:
            self.ws.receive_data(data)
            events = list(self.ws.events())
        except WSProtocolError as e:
            self.error = e
            return
        for event in events:
            if isinstance(event, AcceptConnection):
                self.upgraded = True
            elif isinstance(event, RejectConnection):
                self.error = "rejected"
            elif isinstance(event, BytesMessage):
                self.rfb.receive_data(event.data)
        try:
            while (event := self.rfb.next_event()) not in (NEED_DATA, PAUSED, CLOSED):
                self.events.append(event)
        except RemoteProtocolError as e:
            self.error = e
        out = self.rfb.data_to_send()
        if out:
            self._to_ws(self.ws.send(BytesMessage(data=out)))


class WebSocketServerTests(SynchronousTestCase):
    """The server protocol's WebSocket listener over a StringTransport."""

    def run_client(self, kind=None, password=False, client_password=None):
        security = SecurityConfig(auth_for(kind, password), PASSWORD if password else None)
        pki = shared_pki(self)
        server = DisplayServer(FakeDisplay(), security, reactor=MemoryReactorClock(),
                               tls_session=pki.server_session("x509n") if kind else None)
        proto = server.factory(websocket=True).buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.5", 1000))
        proto.makeConnection(transport)
        session = pki.client_session("c-nocert")() if kind else None
        client = WSClient(password=client_password, tls_session=session)
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
        return proto, client

    def test_rfb_inside(self):
        """RFB runs inside the WebSocket; the RFB greeting waits for the upgrade."""
        proto, client = self.run_client()
        self.assertTrue(client.upgraded)
        self.assertEqual(len([e for e in client.events if isinstance(e, ServerInitReceived)]), 1)
        self.assertTrue(proto.info.websocket)

    def test_websocket_uses_plain_security(self):
        """A VeNCrypt display's WebSocket is wss carrying VNC authentication, not VeNCrypt."""
        proto, client = self.run_client(kind="x509", password=True, client_password=PASSWORD)
        self.assertIsNone(client.error)
        self.assertEqual(len([e for e in client.events if isinstance(e, ServerInitReceived)]), 1)
        self.assertEqual(proto.info.security, "VncAuth")
        self.assertIsNone(proto.info.subtype)
        self.assertIn(proto.info.tls_version, ("TLSv1.2", "TLSv1.3"))


class WebSocketLoopbackTests(ServiceCase):

    async def run_ws(self, port, tls_session=None, password=None):
        done = defer.Deferred()
        client = WSClient(password=password, tls_session=tls_session)

        class Pump(Protocol):
            def connectionMade(self):
                self.transport.write(client.wire_out())

            def dataReceived(self, data):
                try:
                    client.wire_in(data)
                except RemoteProtocolError as e:
                    client.error = e
                out = client.wire_out()
                if out:
                    self.transport.write(out)
                if client.error or any(isinstance(e, ServerInitReceived) for e in client.events):
                    self.transport.loseConnection()

            def connectionLost(self, reason):
                done.callback(client)

        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10), Pump())
        return await done

    async def test_ws(self):
        """A plain WebSocket listener serves RFB to a WebSocket client."""
        port, ws_port = free_port(), free_port()
        service = self.serve(display(listen=(tcp(port),), websocket=(tcp(ws_port),)))
        self.assertIn((f"127.0.0.1:{ws_port}", True), service.display("default").addresses)
        client = await self.run_ws(ws_port)
        self.assertIsNone(client.error)
        self.assertTrue(client.upgraded)
        self.assertTrue(any(isinstance(e, ServerInitReceived) for e in client.events))

    async def test_wss_with_authz(self):
        """With tls-creds the WebSocket port is TLS-only (wss), checked against tls-authz."""
        port, ws_port = free_port(), free_port()
        registry = self.pki.registry
        if "vncpw" not in registry:
            registry.create("secret", {"id": "vncpw", "data": PASSWORD.decode()})
        self.serve(display(listen=(tcp(port),), websocket=(tcp(ws_port),), tls_creds="x509v",
                           tls_authz="allow-alice", password_secret="vncpw"))

        def session(creds_id):
            return TLSSession(registry.get(creds_id), Endpoint.CLIENT, hostname="localhost")

        alice = await self.run_ws(ws_port, session("c-alice"), password=PASSWORD)
        self.assertIsNone(alice.error)
        self.assertTrue(any(isinstance(e, ServerInitReceived) for e in alice.events))
        bob = await self.run_ws(ws_port, session("c-bob"), password=PASSWORD)
        self.assertFalse(bob.upgraded)
        plain = await self.run_ws(ws_port)
        self.assertFalse(plain.upgraded)


class OuterStackTests(SynchronousTestCase):

    def test_plain_outer_stack(self):
        """Without TLS the outer stack is just the WebSocket layer."""
        outer = OuterStack()
        self.assertIsNone(outer.tls)
        self.assertIsNone(outer.new_tls_info())
        client, request = upgrade_request()
        self.assertEqual(outer.receive_data(request), b"")
        self.assertIsInstance(client_events(client, outer.data_to_send())[0], AcceptConnection)

    def test_wss_close(self):
        """Closing a wss connection sends a WebSocket close frame, then TLS close_notify."""
        pki = shared_pki(self)
        outer = OuterStack(pki.server_session("x509n"))
        tls = TLSLayer(pki.client_session("c-nocert")())
        ws, request = upgrade_request()
        events = []
        sent_request = False
        for _ in range(20):
            data = tls.data_to_send()
            if data:
                outer.receive_data(data)
            back = outer.data_to_send()
            if back:
                plain = tls.receive_data(back)
                if plain:
                    events += client_events(ws, plain)
            if tls.established and not sent_request:
                tls.send(request)
                sent_request = True
            elif not data and not back:
                break
        self.assertIsInstance(events[0], AcceptConnection)
        self.assertIsNotNone(outer.new_tls_info())
        outer.close()
        plain = tls.receive_data(outer.data_to_send())
        self.assertIsInstance(client_events(ws, plain)[-1], CloseConnection)
        self.assertTrue(tls.peer_closed)
