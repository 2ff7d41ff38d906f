"""vncd.service: displays started from an Invocation, on real loopback sockets.

Each test starts a service with the real reactor, talks to it with
vncd's own client (or a raw socket), and stops it; every wait is bounded
by trial's timeout and the client's own.
"""

from __future__ import annotations

import os
import socket

import numpy as np
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

import creds
from compat.config import DisplayConfig, Invocation, ListenAddress
from creds.objects import ObjectError
from tests.tools import free_display, free_port
from tests.vncd.test_vencrypt import PASSWORD, shared_pki
from vncd.client import ClientOptions, RFBClientError, connect, fetch_framebuffer
from vncd.rfb import messages as m
from vncd.screens.array import ArrayScreen
from vncd.service import StartupError, start

#: Seconds any one client operation may take in these tests.
CLIENT_TIMEOUT = 10

#: Seconds between looks at the server's state while waiting on it.
POLL = 0.02


def pattern_screen(width=96, height=40) -> ArrayScreen:
    """A screen whose every pixel differs from its neighbours (catches misplaced rects)."""
    ys, xs = np.mgrid[0:height, 0:width]
    fb = np.zeros((height, width, 4), dtype=np.uint8)
    fb[..., 0] = (xs * 7) % 256
    fb[..., 1] = (ys * 13) % 256
    fb[..., 2] = (xs * ys) % 256
    return ArrayScreen(framebuffer=fb, name="pattern")


def tcp(port: int, host: str = "127.0.0.1") -> ListenAddress:
    return ListenAddress("tcp", host, port)


def display(source="-vnc test", **kw) -> DisplayConfig:
    kw.setdefault("id", "default")
    return DisplayConfig(source=source, **kw)


class ServiceCase(TestCase):
    timeout = 30

    def setUp(self):
        self.pki = shared_pki(self)

    def serve(self, *displays, registry=None, screen=None):
        screen = screen or pattern_screen()
        service = start(reactor, registry or self.pki.registry,
                        Invocation(displays=list(displays)), screen=screen)
        self.addCleanup(service.stop)
        return service

    async def fetch(self, address, options=None, *, close=True, **kw):
        """Connect, fetch the whole screen, and (unless ``close`` is false) disconnect."""
        client = await connect(reactor, address, options or ClientOptions(), timeout=CLIENT_TIMEOUT)
        try:
            return client, await defer.Deferred.fromCoroutine(fetch_framebuffer(client, **kw))
        finally:
            if close:
                client.close()
                await client.closed

    def assertScreen(self, rgbx, screen):
        self.assertEqual(rgbx[..., :3].tolist(), screen.framebuffer[..., :3].tolist())


class PlainTests(ServiceCase):

    async def test_none(self):
        """A display without security serves the screen's exact pixels."""
        port = free_port()
        screen = pattern_screen()
        self.serve(display(listen=(tcp(port),)), screen=screen)
        client, rgbx = await self.fetch(tcp(port))
        self.assertEqual(client.server_init.name, "pattern")
        self.assertScreen(rgbx, screen)
        self.assertEqual(screen.connections[0].security, "None")

    async def test_password_secret(self):
        """password-secret: the right password gets in, a wrong one is refused."""
        port = free_port()
        registry = self.pki.registry
        if "vncpw" not in registry:
            registry.create("secret", {"id": "vncpw", "data": PASSWORD.decode()})
        self.serve(display(listen=(tcp(port),), password_secret="vncpw"))
        await self.fetch(tcp(port), ClientOptions(password=PASSWORD))
        with self.assertRaises(RFBClientError) as cm:
            await self.fetch(tcp(port), ClientOptions(password=b"guessed"))
        self.assertEqual(cm.exception.kind, "auth")

    async def test_password_on_without_password(self):
        """password=on with no password set refuses everyone."""
        port = free_port()
        service = self.serve(display(listen=(tcp(port),), password=True))
        with self.assertRaises(RFBClientError) as cm:
            await self.fetch(tcp(port), ClientOptions(password=b""))
        self.assertEqual(cm.exception.kind, "auth")
        service.display("default").server.security.set_password(b"now-set")
        await self.fetch(tcp(port), ClientOptions(password=b"now-set"))

    async def test_unix_socket(self):
        """unix:PATH listens there, replacing a stale socket; stop() removes it."""
        path = os.path.abspath(self.mktemp())
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        service = self.serve(display(listen=(ListenAddress("unix", path),)))
        self.assertEqual(service.display("default").addresses, [(f"unix:{path}", False)])
        await self.fetch(ListenAddress("unix", path))
        await service.stop()
        self.assertFalse(os.path.exists(path))

    async def test_all_interfaces(self):
        """An empty host listens on every interface of each allowed family."""
        port = free_port("0.0.0.0")
        service = self.serve(display(listen=(tcp(port, ""),), ipv4=True))
        self.assertEqual(service.display("default").addresses, [(f"0.0.0.0:{port}", False)])
        await self.fetch(tcp(port))

    async def test_ipv6(self):
        """[::1]:N listens on IPv6 only (v6-only socket)."""
        try:
            port = free_port("::1")
        except OSError:
            raise self.skipTest("no IPv6 loopback on this machine")
        service = self.serve(display(listen=(tcp(port, "::1"),)))
        self.assertEqual(service.display("default").addresses, [(f"[::1]:{port}", False)])
        await self.fetch(tcp(port, "::1"))

    async def test_port_search_with_to(self):
        """With to=, a taken port makes the next one be used, announced like QEMU."""
        n = free_display()
        busy = socket.socket()
        busy.bind(("127.0.0.1", 5900 + n))
        busy.listen()
        self.addCleanup(busy.close)
        if socket.socket().connect_ex(("127.0.0.1", 5901 + n)) == 0:
            raise self.skipTest("the next port is taken too")
        service = self.serve(display(listen=(tcp(5900 + n),), to=n + 1))
        self.assertEqual(service.notices, [f"VNC server running on 127.0.0.1:{5901 + n}"])
        await self.fetch(tcp(5901 + n))

    async def test_stop_drops_clients(self):
        """stop() closes the listener and every connected client."""
        port = free_port()
        service = self.serve(display(listen=(tcp(port),)))
        client = await connect(reactor, tcp(port), ClientOptions(), timeout=CLIENT_TIMEOUT)
        await service.stop()
        await client.closed
        with self.assertRaises(RFBClientError) as cm:
            await connect(reactor, tcp(port), ClientOptions(), timeout=CLIENT_TIMEOUT)
        self.assertEqual(cm.exception.kind, "connect")

    async def test_none_display(self):
        """``-vnc none`` starts a display that listens nowhere."""
        service = self.serve(display(listen=()))
        self.assertEqual(service.display("default").addresses, [])


class TLSTests(ServiceCase):

    async def test_x509_with_client_certificate(self):
        """With verify-peer and authz alice gets in and her DN and TLS details are recorded."""
        port = free_port()
        screen = pattern_screen()
        self.serve(display(listen=(tcp(port),), tls_creds="x509v", tls_authz="allow-alice"),
                   screen=screen)
        alice = ClientOptions(tls_creds=self.pki.registry.get("c-alice"), hostname="localhost")
        client, rgbx = await self.fetch(tcp(port), alice)
        self.assertScreen(rgbx, screen)
        self.assertEqual(client.tls_info.peer_name, "C=UK,CN=localhost")
        info = screen.connections[-1]
        self.assertEqual((info.security, info.subtype, info.peer_dn, info.rfb_version),
                         ("VeNCrypt", "X509None", "C=UK,CN=alice", "3.8"))
        self.assertIn(info.tls_version, ("TLSv1.2", "TLSv1.3"))

    async def test_served_objects_cannot_be_deleted(self):
        """Credentials and the password secret of a serving display are held in the
        registry until the service stops; its authz object is not (looked up per client)."""
        registry = creds.new_registry()
        registry.create("tls-creds-x509", {"id": "tls0", "dir": self.pki.server_dir,
                                           "endpoint": "server"})
        registry.create("secret", {"id": "pw", "data": PASSWORD.decode()})
        registry.create("authz-simple", {"id": "az", "identity": "C=UK,CN=alice"})
        service = start(reactor, registry, Invocation(displays=[display(
            listen=(tcp(free_port()),), tls_creds="tls0", password_secret="pw",
            tls_authz="az")]), screen=pattern_screen())
        for obj_id in ("tls0", "pw"):
            e = self.assertRaises(ObjectError, registry.delete, obj_id)
            self.assertEqual(e.message, f"object '{obj_id}' is in use, can not be deleted"
                                        " (held by VNC display 'default')")
        registry.delete("az")
        await service.stop()
        registry.delete("tls0")
        registry.delete("pw")

    async def test_x509_refusals(self):
        """bob (authz), a client without certificate, and a wrong host name all fail."""
        port = free_port()
        self.serve(display(listen=(tcp(port),), tls_creds="x509v", tls_authz="allow-alice"))
        reg = self.pki.registry
        for creds_id, hostname in (("c-bob", "localhost"), ("c-nocert", "localhost"),
                                   ("c-alice", "vnc.example.org")):
            with self.assertRaises(RFBClientError) as cm:
                await self.fetch(tcp(port), ClientOptions(tls_creds=reg.get(creds_id),
                                                          hostname=hostname))
            self.assertIn(cm.exception.kind, ("tls", "closed"), creds_id)

    async def test_anon_with_password(self):
        """Anonymous TLS with a password: TLSVnc."""
        port = free_port()
        registry = self.pki.registry
        if "vncpw" not in registry:
            registry.create("secret", {"id": "vncpw", "data": PASSWORD.decode()})
        self.serve(display(listen=(tcp(port),), tls_creds="anon", password_secret="vncpw"))
        client, _ = await self.fetch(tcp(port), ClientOptions(
            tls_creds=registry.get("c-anon"), password=PASSWORD))
        self.assertEqual(client.tls_info.protocol_version, "TLSv1.2")

    async def test_plain_client_meets_vencrypt(self):
        """A client without TLS credentials is told the server needs VeNCrypt."""
        port = free_port()
        self.serve(display(listen=(tcp(port),), tls_creds="anon"))
        with self.assertRaises(RFBClientError) as cm:
            await self.fetch(tcp(port))
        self.assertEqual(cm.exception.kind, "security")


class ReverseTests(ServiceCase):

    async def test_reverse_connects_to_a_listening_viewer(self):
        """reverse=on connects out; the viewer listening there gets the screen."""
        from twisted.internet.protocol import Factory
        from vncd.client import RFBClient

        got = defer.Deferred()

        class ViewerFactory(Factory):
            def buildProtocol(self, addr):
                viewer = RFBClient(ClientOptions())
                viewer.ready.addCallback(lambda _: got.callback(viewer))
                return viewer

        port = reactor.listenTCP(0, ViewerFactory(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        screen = pattern_screen()
        self.serve(display(listen=(tcp(port.getHost().port),), reverse=True), screen=screen)
        viewer = await got
        rgbx = await defer.Deferred.fromCoroutine(fetch_framebuffer(viewer))
        self.assertScreen(rgbx, screen)
        viewer.close()
        await viewer.closed


class StartupErrorTests(SynchronousTestCase):

    def setUp(self):
        self.pki = shared_pki(self)

    def fails(self, config, registry=None) -> StartupError:
        with self.assertRaises(StartupError) as cm:
            start(reactor, registry or self.pki.registry, Invocation(displays=[config]),
                  screen=pattern_screen())
        return cm.exception

    def test_qemu_messages(self):
        """QEMU's start-up checks and wording, naming the option as typed."""
        port = free_port()
        cases = [
            (dict(tls_creds="nope"), "No TLS credentials with id 'nope'"),
            (dict(tls_creds="allow-alice"), "Object with id 'allow-alice' is not TLS credentials"),
            (dict(tls_creds="c-alice"), "Expected TLS credentials for a server endpoint"),
            (dict(tls_authz="allow-alice"), "'tls-authz' provided but TLS is not enabled"),
            (dict(ipv4=False, ipv6=False), "Cannot disable IPv4 and IPv6 at same time"),
        ]
        for kw, message in cases:
            error = self.fails(display(source="-vnc :1,x", listen=(tcp(port),), **kw))
            self.assertEqual(error.message, message)
            self.assertEqual(error.source, "-vnc :1,x")
            self.assertTrue(str(error).startswith("-vnc :1,x: "))

    def test_sasl(self):
        """SASL is refused at start-up: vncd does not offer it."""
        error = self.fails(display(listen=(tcp(free_port()),), sasl=True))
        self.assertIn("SASL", error.message)

    def test_authz_that_cannot_take_effect(self):
        """tls-authz with anonymous creds or verify-peer=off refuses to start (QEMU ignores it)."""
        error = self.fails(display(listen=(tcp(free_port()),), tls_creds="anon",
                                   tls_authz="allow-alice"))
        self.assertIn("anonymous", error.message)
        error = self.fails(display(listen=(tcp(free_port()),), tls_creds="x509n",
                                   tls_authz="allow-alice"))
        self.assertIn("verify-peer=off", error.message)

    def test_port_taken(self):
        """A taken port without to= is QEMU's "Failed to find an available port"."""
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        self.addCleanup(busy.close)
        error = self.fails(display(listen=(tcp(busy.getsockname()[1]),)))
        self.assertEqual(error.message, "Failed to find an available port: Address already in use")

    def test_unix_path_impossible(self):
        """A UNIX socket in a missing directory names the path and the reason."""
        error = self.fails(display(listen=(ListenAddress("unix", "/nonexistent/dir/s"),)))
        self.assertEqual(error.message,
                         "Failed to bind socket to /nonexistent/dir/s: No such file or directory")

    def test_reverse_refused(self):
        """reverse=on to a port where nobody listens fails like QEMU."""
        port = free_port()
        error = self.fails(display(listen=(tcp(port),), reverse=True))
        self.assertEqual(error.message,
                         f"Failed to connect to '127.0.0.1:{port}': Connection refused")

    def test_unresolvable_host(self):
        """An unresolvable host name is QEMU's "address resolution failed"."""
        error = self.fails(display(listen=(tcp(5903, "nosuchhost.invalid"),)))
        self.assertTrue(error.message.startswith(
            "address resolution failed for nosuchhost.invalid:5903: "), error.message)


class KeyDelayTests(ServiceCase):
    """key-delay-ms reaches the display: a press and a release sent together arrive
    together without a delay, and the release waits behind the press with one."""

    async def keys_after_sending(self, key_delay_ms):
        """Send a key press and release at once; wait until the display has read
        both; the key events the screen has by then."""
        port = free_port()
        got = []
        screen = pattern_screen()
        screen.on_key = got.append
        service = self.serve(display(listen=(tcp(port),), key_delay_ms=key_delay_ms),
                             screen=screen)
        pacer = service.display("default").server.display.input_pacer
        client = await connect(reactor, tcp(port), ClientOptions(), timeout=CLIENT_TIMEOUT)
        self.addCleanup(client.close)
        client.send(m.KeyEvent(True, 0x61), m.KeyEvent(False, 0x61))
        for _ in range(int(CLIENT_TIMEOUT / POLL)):
            if len(got) + len(pacer) == 2:
                break
            await task.deferLater(reactor, POLL, lambda: None)
        return [e.down for e in got]

    async def test_long_delay_holds_the_release(self):
        """With key-delay-ms=10000 the release is still waiting once the press arrived."""
        self.assertEqual(await self.keys_after_sending(10_000), [True])

    async def test_no_delay(self):
        """With key-delay-ms=0 both key events arrive at once."""
        self.assertEqual(await self.keys_after_sending(0), [True, False])


class ServedAddressTests(ServiceCase):

    def served(self, *displays):
        screen = pattern_screen()
        self.serve(*displays, screen=screen)
        return [str(a) for a in screen.served_addresses], screen.listen_addresses

    def test_x509_with_websocket(self):
        """The screen learns each address with its security: VeNCrypt's subtype, and
        for the WebSocket listener that it runs over TLS and what it asks."""
        port, ws_port = free_port(), free_port()
        served, plain = self.served(display(listen=(tcp(port),), websocket=(tcp(ws_port),),
                                            tls_creds="x509n"))
        self.assertEqual(served, [f"127.0.0.1:{port} (VeNCrypt X509None)",
                                  f"127.0.0.1:{ws_port} (WebSocket over TLS, no authentication)"])
        self.assertEqual(plain, [f"127.0.0.1:{port}", f"127.0.0.1:{ws_port}"])

    def test_client_certificates_required(self):
        """x509 with verify-peer=on says that clients need a certificate, on both listeners."""
        port, ws_port = free_port(), free_port()
        served, _ = self.served(display(listen=(tcp(port),), websocket=(tcp(ws_port),),
                                        tls_creds="x509v"))
        self.assertEqual(served, [
            f"127.0.0.1:{port} (VeNCrypt X509None, client certificate required)",
            f"127.0.0.1:{ws_port} (WebSocket over TLS, client certificate required,"
            " no authentication)"])

    def test_words_not_type_names(self):
        """Without TLS the security is said in words ("no authentication", "VNC
        password"), never RFB's ambiguous type name "None"."""
        ports = free_port(), free_port(), free_port()
        served, _ = self.served(
            display(listen=(tcp(ports[0]),)),
            display(id="pw", listen=(tcp(ports[1]),), websocket=(tcp(ports[2]),),
                    password=True))
        self.assertEqual(served, [f"127.0.0.1:{ports[0]} (no authentication)",
                                  f"127.0.0.1:{ports[1]} (VNC password)",
                                  f"127.0.0.1:{ports[2]} (WebSocket, VNC password)"])
        self.assertFalse(any("None" in text for text in served))


class ReleaseTests(ServiceCase):

    async def test_ports_released_after_failed_start(self):
        """A failed start releases the ports earlier displays opened (on the next turn)."""
        good = free_port()
        with self.assertRaises(StartupError):
            start(reactor, self.pki.registry, Invocation(displays=[
                display(listen=(tcp(good),)),
                display(id="vnc2", listen=(tcp(free_port()),), tls_creds="nope")]),
                screen=pattern_screen())
        await task.deferLater(reactor, 0, lambda: None)
        probe = socket.socket()
        self.addCleanup(probe.close)
        probe.bind(("127.0.0.1", good))


class BindTests(SynchronousTestCase):

    def test_unavailable_address_is_skipped(self):
        """An address this host does not have is skipped when another one binds."""
        from vncd.listen import _bind_all
        bound = _bind_all([(socket.AF_INET, "192.0.2.77"), (socket.AF_INET, "127.0.0.1")], 0)
        self.addCleanup(lambda: [s.close() for s in bound])
        self.assertEqual([s.getsockname()[0] for s in bound], ["127.0.0.1"])

    def test_only_unavailable_addresses_fail(self):
        """When no address can be bound the error is raised."""
        from vncd.listen import _bind_all
        with self.assertRaises(OSError):
            _bind_all([(socket.AF_INET, "192.0.2.77"), (socket.AF_INET, "192.0.2.78")], 0)
