"""vncd's Twisted RFB client against vncd's server over loopback sockets."""

from __future__ import annotations

import numpy as np
from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase

from compat.config import ListenAddress
from tests.tools import free_port
from tests.vncd.test_service import CLIENT_TIMEOUT, ServiceCase, display, pattern_screen, tcp
from tests.vncd.test_vencrypt import PASSWORD
from vncd.client import ClientOptions, RFBClientError, connect, fetch_framebuffer
from vncd.encoding import HEXTILE, RAW, TIGHT, ZLIB, ZRLE
from vncd.encoding.decode import RectDecoded, UpdateComplete
from vncd.rfb import messages as m


class ClientTests(ServiceCase):

    def secret(self):
        registry = self.pki.registry
        if "vncpw" not in registry:
            registry.create("secret", {"id": "vncpw", "data": PASSWORD.decode()})
        return "vncpw"

    async def test_security_matrix(self):
        """None, VncAuth, TLSNone, TLSVnc, X509None and X509Vnc all deliver the screen."""
        reg = self.pki.registry
        alice = reg.get("c-alice")
        cases = [
            ({}, ClientOptions(), "None", None),
            ({"password_secret": self.secret()}, ClientOptions(password=PASSWORD), "VncAuth", None),
            ({"tls_creds": "anon"}, ClientOptions(tls_creds=reg.get("c-anon")), "VeNCrypt",
             "TLSNone"),
            ({"tls_creds": "anon", "password_secret": "vncpw"},
             ClientOptions(tls_creds=reg.get("c-anon"), password=PASSWORD), "VeNCrypt", "TLSVnc"),
            ({"tls_creds": "x509v"}, ClientOptions(tls_creds=alice, hostname="localhost"),
             "VeNCrypt", "X509None"),
            ({"tls_creds": "x509v", "password_secret": "vncpw"},
             ClientOptions(tls_creds=alice, hostname="127.0.0.1", password=PASSWORD),
             "VeNCrypt", "X509Vnc"),
        ]
        for config, options, security, subtype in cases:
            port = free_port()
            screen = pattern_screen(40, 30)
            service = self.serve(display(listen=(tcp(port),), **config), screen=screen)
            client, rgbx = await self.fetch(tcp(port), options)
            self.assertScreen(rgbx, screen)
            info = screen.connections[0]
            self.assertEqual((info.security, info.subtype), (security, subtype))
            await service.stop()

    async def test_every_version_over_loopback(self):
        """RFB 3.3, 3.7 and 3.8 clients (and 3.7 with X509Vnc) get the screen over a socket."""
        port, tls_port = free_port(), free_port()
        screen = pattern_screen(32, 16)
        secret = self.secret()
        self.serve(display(listen=(tcp(port),), password_secret=secret), screen=screen)
        for minor in (3, 7, 8):
            client, rgbx = await self.fetch(tcp(port), ClientOptions(password=PASSWORD,
                                                                     max_minor=minor))
            self.assertEqual(client.connection.minor, minor)
            self.assertScreen(rgbx, screen)
        self.serve(display(id="vnc2", listen=(tcp(tls_port),), tls_creds="x509v",
                           password_secret=secret), screen=screen)
        alice = self.pki.registry.get("c-alice")
        client, rgbx = await self.fetch(tcp(tls_port), ClientOptions(
            tls_creds=alice, hostname="localhost", password=PASSWORD, max_minor=7))
        self.assertEqual(client.connection.minor, 7)
        self.assertScreen(rgbx, screen)

    async def test_error_kinds(self):
        """Failures carry a kind: auth, security, tls, refused."""
        reg = self.pki.registry
        port = free_port()
        self.serve(display(listen=(tcp(port),), tls_creds="x509v",
                           password_secret=self.secret()))
        cases = [
            (ClientOptions(tls_creds=reg.get("c-alice"), hostname="localhost",
                           password=b"guessed"), "auth"),
            (ClientOptions(password=PASSWORD), "security"),
            (ClientOptions(tls_creds=reg.get("c-anon"), password=PASSWORD), "security"),
            (ClientOptions(tls_creds=reg.get("c-otherca"), hostname="localhost",
                           password=PASSWORD), "tls"),
            (ClientOptions(tls_creds=reg.get("c-alice"), hostname="other.example",
                           password=PASSWORD), "tls"),
        ]
        for options, kind in cases:
            with self.assertRaises(RFBClientError) as cm:
                await connect(reactor, tcp(port), options, timeout=CLIENT_TIMEOUT)
            self.assertEqual(cm.exception.kind, kind, cm.exception.message)

    async def test_refused_by_version(self):
        """A 3.3 client refused by a VeNCrypt server reports the server's reason."""
        port = free_port()
        self.serve(display(listen=(tcp(port),), tls_creds="anon"))
        with self.assertRaises(RFBClientError) as cm:
            await connect(reactor, tcp(port), ClientOptions(max_minor=3), timeout=CLIENT_TIMEOUT)
        self.assertEqual(cm.exception.kind, "refused")
        self.assertIn("RFB protocol 3.7 or later", cm.exception.message)

    async def test_connect_error(self):
        """Nobody listening is a "connect" error naming the address."""
        port = free_port()
        with self.assertRaises(RFBClientError) as cm:
            await connect(reactor, tcp(port), ClientOptions(), timeout=CLIENT_TIMEOUT)
        self.assertEqual(cm.exception.kind, "connect")
        self.assertIn(f"127.0.0.1:{port}", cm.exception.message)

    async def test_closed_during_handshake(self):
        """A server that hangs up during the handshake is a "closed" error."""

        class HangUp(Protocol):
            def connectionMade(self):
                self.transport.write(b"RFB 003.008\n")
                self.transport.loseConnection()

        port = reactor.listenTCP(0, Factory.forProtocol(HangUp), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        with self.assertRaises(RFBClientError) as cm:
            await connect(reactor, tcp(port.getHost().port), ClientOptions(),
                          timeout=CLIENT_TIMEOUT)
        self.assertEqual(cm.exception.kind, "closed")

    async def test_each_encoding(self):
        """The whole screen arrives intact in Raw, Hextile, Zlib, ZRLE and Tight."""
        port = free_port()
        screen = pattern_screen(150, 70)
        self.serve(display(listen=(tcp(port),)), screen=screen)
        for encoding in (RAW, HEXTILE, ZLIB, ZRLE, TIGHT):
            seen = []
            client = await connect(reactor, tcp(port), ClientOptions(), timeout=CLIENT_TIMEOUT,
                                   on_event=seen.append)
            rgbx = await defer.Deferred.fromCoroutine(
                fetch_framebuffer(client, encodings=(encoding,)))
            self.assertScreen(rgbx, screen)
            self.assertEqual({e.encoding for e in seen if isinstance(e, RectDecoded)},
                             {encoding})
            client.close()
            await client.closed

    async def test_updates_follow_changes(self):
        """After the first screen, a change on the server arrives with an incremental request."""
        port = free_port()
        screen = pattern_screen(64, 64)
        self.serve(display(listen=(tcp(port),)), screen=screen)
        client, _ = await self.fetch(tcp(port), close=False)
        screen.update(np.full((8, 8, 3), 200, dtype=np.uint8), 10, 20)
        client.send(m.FramebufferUpdateRequest(True, 0, 0, 64, 64))
        await client.next_update()
        self.assertEqual(client.framebuffer.rgbx()[20:28, 10:18, :3].tolist(),
                         [[[200, 200, 200]] * 8] * 8)
        client.close()
        await client.closed

    async def test_unix_and_exclusive(self):
        """The client reaches a UNIX socket and sends the shared flag it was given."""
        path = self.mktemp()
        screen = pattern_screen()
        self.serve(display(listen=(ListenAddress("unix", path),)), screen=screen)
        client = await connect(reactor, ListenAddress("unix", path),
                               ClientOptions(shared=False), timeout=CLIENT_TIMEOUT)
        self.assertEqual(screen.connections[0].shared, False)
        client.close()
        await client.closed


class NextUpdateTests(SynchronousTestCase):

    def test_waiters_fail_when_the_connection_goes(self):
        """A pending next_update() fails with "closed" when the connection is lost."""
        from vncd.client import RFBClient
        client = RFBClient(ClientOptions())
        waiter = client.next_update()
        client.connectionLost(None)
        failure = self.failureResultOf(waiter, RFBClientError)
        self.assertEqual(failure.value.kind, "closed")
        self.failureResultOf(client.ready, RFBClientError)
        self.assertIsNone(self.successResultOf(client.closed))

    def test_update_complete_fires_waiters(self):
        """UpdateComplete after ServerInit fires every waiter once."""
        from vncd.client import RFBClient
        from vncd.pixels import DEFAULT_FORMAT
        from vncd.rfb.events import ServerInitReceived
        client = RFBClient(ClientOptions())
        client._handle(ServerInitReceived(1, 1, DEFAULT_FORMAT, "x"))
        waiters = [client.next_update(), client.next_update()]
        client._handle(UpdateComplete())
        for waiter in waiters:
            self.assertIsNone(self.successResultOf(waiter))
