"""Tests for ``-screen vnc``: start-up checks, mirroring an upstream, outages and retries.

The upstream here is vncd itself serving an ArrayScreen on a UNIX socket
in this process (cheap, and every byte is vncd's own RFB server); the
real upstreams (QEMU 7.2, x11vnc) are in test_real_frontdoor.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile

import numpy as np
from hypothesis import given, settings, strategies as st
from twisted.internet import defer, reactor, task
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

import creds
from compat.config import ListenAddress, ScreenSpec
from creds.objects import ObjectError
from tests import certgen
from vncd import api
from vncd.cli import main
from vncd.client import ClientOptions
from vncd.screens import from_spec
from vncd.screens.array import ArrayScreen
from vncd.screens.base import ScreenError
from vncd.screens.vnc import (
    TRANSITIONS, UpstreamInput, UpstreamState, VncScreen, parse_server, render_outage,
)
from vncd.rfb.errors import LocalProtocolError

#: Longest wait for a loopback event (a connection, an update) in these tests.
WAIT = 15.0


def spec(**props) -> ScreenSpec:
    text = ",".join(["vnc", *(f"{k}={v}" for k, v in props.items())])
    return ScreenSpec("vnc", props, f"-screen {text}")


class FromSpecTests(SynchronousTestCase):
    def setUp(self):
        self.registry = creds.new_registry()
        self.registry.create("secret", {"id": "pw", "data": "sekrit"})
        self.registry.create("tls-creds-anon", {"id": "anon-client", "endpoint": "client"})
        self.registry.create("tls-creds-anon", {"id": "anon-server", "endpoint": "server"})
        ca = certgen.ca("screen vnc CA")
        directory = certgen.write_dir(os.path.abspath(self.mktemp()), ca=[ca])
        self.registry.create("tls-creds-x509", {"id": "x509-client", "endpoint": "client",
                                                "dir": directory})

    def error(self, **props) -> str:
        with self.assertRaises(ScreenError) as caught:
            from_spec(spec(**props), MemoryReactorClock(), self.registry)
        return str(caught.exception)

    def test_refusals(self):
        """Every -screen vnc option that cannot work is refused, naming the option."""
        cases = [
            ({}, "Parameter 'server' is missing"),
            ({"server": "localhost"},
             "Parameter 'server' expects unix:PATH, HOST:PORT or [IPV6]:PORT, not 'localhost'"),
            ({"server": "localhost:0"}, "Parameter 'server' has port 0, outside 1..65535"),
            ({"server": "host name:5900"}, "Parameter 'server' expects unix:PATH"),
            ({"server": "unix:"}, "Parameter 'server' has an empty UNIX socket path"),
            ({"server": "unix:/" + "x" * 200},
             "Parameter 'server' has a UNIX socket path longer than 107 bytes"),
            ({"server": "h:1", "colour": "red"}, "Invalid parameter 'colour'"),
            ({"server": "h:1", "password-secret": "nope"}, "No secret with id 'nope'"),
            ({"server": "h:1", "password-secret": "anon-client"},
             "Object with id 'anon-client' is not a secret"),
            ({"server": "h:1", "tls-creds": "nope"}, "No TLS credentials with id 'nope'"),
            ({"server": "h:1", "tls-creds": "pw"}, "Object with id 'pw' is not TLS credentials"),
            ({"server": "h:1", "tls-creds": "anon-server"},
             "Expected TLS credentials for a client endpoint"),
            ({"server": "unix:/run/x", "tls-creds": "x509-client"},
             "a unix: server with x509 credentials needs tls-hostname=NAME"),
            ({"server": "h:1", "tls-hostname": "h"},
             "'tls-hostname' cannot take effect without 'tls-creds'"),
            ({"server": "h:1", "shared": "maybe"}, "Parameter 'shared' expects 'on' or 'off'"),
        ]
        for props, message in cases:
            text = self.error(**props)
            self.assertTrue(text.startswith(spec(**props).source + ": " + message),
                            (props, text))

    def test_accepted(self):
        """A valid option gives a VncScreen with the address, password, credentials and flag."""
        screen = from_spec(spec(server="[::1]:5901", **{
            "password-secret": "pw", "tls-creds": "x509-client", "shared": "off"}),
            MemoryReactorClock(), self.registry)
        self.assertIsInstance(screen, VncScreen)
        self.assertEqual(screen.address, ListenAddress("tcp", "::1", 5901))
        opts = screen.options
        self.assertEqual((opts.password, opts.tls_creds.id, opts.hostname, opts.shared),
                         (b"sekrit", "x509-client", "::1", False))
        self.assertNotIn("sekrit", repr(opts))
        unix = from_spec(spec(server="unix:/run/vm.vnc", **{
            "tls-creds": "x509-client", "tls-hostname": "vm1.example"}),
            MemoryReactorClock(), self.registry)
        self.assertEqual((unix.address, unix.options.hostname),
                         (ListenAddress("unix", "/run/vm.vnc"), "vm1.example"))

    def test_holds_objects(self):
        """The secret and credentials cannot be deleted while the screen runs; after stop they can."""
        screen = from_spec(spec(server="h:1", **{"password-secret": "pw",
                                                 "tls-creds": "anon-client"}),
                           MemoryReactorClock(), self.registry)
        self.assertRaises(ObjectError, self.registry.delete, "pw")
        self.assertRaises(ObjectError, self.registry.delete, "anon-client")
        screen.stop()
        self.registry.delete("pw")
        self.registry.delete("anon-client")

    @settings(max_examples=150, deadline=None)
    @given(st.dictionaries(
        st.sampled_from(["server", "password-secret", "tls-creds", "tls-hostname", "shared",
                         "name", "size", ""]),
        st.one_of(st.text(max_size=24), st.sampled_from(
            ["unix:/x", "h:5900", "[::1]:1", "pw", "anon-client", "x509-client", "on", "off",
             "h:99999", ":", "unix:"])), max_size=5))
    def test_garbage(self, props):
        """Any properties give a screen or a ScreenError naming the option; nothing connects."""
        source = spec(**props).source
        clock = MemoryReactorClock()
        try:
            screen = from_spec(ScreenSpec("vnc", props, source), clock, self.registry)
        except ScreenError as exc:
            self.assertTrue(str(exc).startswith(source + ": "), str(exc))
        else:
            self.assertEqual((screen.state, clock.tcpClients, clock.unixClients),
                             (UpstreamState.IDLE, [], []))
            screen.stop()

    def test_command_line_refusal(self):
        """vncd exits 1 with 'vncd: -screen vnc,...: message' for a bad -screen vnc."""
        err = io.StringIO()
        status = main(["-vnc", "none", "-screen", "vnc,server=nowhere"], stdout=io.StringIO(),
                      stderr=err, reactor=MemoryReactorClock())
        self.assertEqual((status, err.getvalue()), (1, (
            "vncd: -screen vnc,server=nowhere: Parameter 'server' expects unix:PATH,"
            " HOST:PORT or [IPV6]:PORT, not 'nowhere'\n")))


class StateTableTests(SynchronousTestCase):
    def test_table(self):
        """Only the listed transitions exist; STOP ends every state; anything else is a bug."""
        screen = VncScreen(ListenAddress("unix", "/nonexistent"), ClientOptions(),
                           reactor=MemoryReactorClock())
        for state in UpstreamState:
            for event in UpstreamInput:
                screen.state = state
                if (state, event) in TRANSITIONS:
                    screen._process(event)
                    self.assertEqual(screen.state, TRANSITIONS[(state, event)])
                else:
                    self.assertRaises(LocalProtocolError, screen._process, event)
                    self.assertIs(screen.state, state)
        self.assertTrue(all(TRANSITIONS[(s, UpstreamInput.STOP)] is UpstreamState.STOPPED
                            for s in UpstreamState))

    def test_parse_server(self):
        """server= takes a port (not a display number), [IPv6] in brackets, or a UNIX path."""
        self.assertEqual(parse_server("vm.example:5901"), ListenAddress("tcp", "vm.example", 5901))
        self.assertEqual(parse_server("[fe80::1]:5900"), ListenAddress("tcp", "fe80::1", 5900))
        self.assertEqual(parse_server("unix:/a:b"), ListenAddress("unix", "/a:b"))

    def test_outage_picture(self):
        """The outage picture names the server, the reason, since when and the next attempt."""
        clock = MemoryReactorClock()
        clock.advance(86400 * 365 * 30)
        screen = VncScreen(ListenAddress("tcp", "vm.example", 5901), ClientOptions(),
                           reactor=clock)
        screen.state = UpstreamState.WAITING
        screen._unavailable("cannot connect to vm.example:5901: Connection refused")
        screen.unavailable_since -= 65
        lines = screen.outage_lines()
        self.assertEqual(lines[:2], ["server: vm.example:5901",
                                     "reason: cannot connect to vm.example:5901: Connection refused"])
        self.assertRegex(lines[2], r"since: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(1 min 5 s\)")
        self.assertEqual(lines[3], "next attempt: in 1 s (0 made so far)")
        before = screen.framebuffer.copy()
        screen._redraw_outage()
        self.assertFalse(np.array_equal(before, screen.framebuffer))
        self.assertEqual(screen.framebuffer.shape, (768, 1024, 4))
        tiny = render_outage(40, 30, "title", lines)
        self.assertEqual(tiny.shape, (30, 40, 4))
        screen.stop()


class Upstream:
    """vncd serving an ArrayScreen on a UNIX socket: the upstream of these tests."""

    def __init__(self, path: str, width: int = 96, height: int = 64) -> None:
        self.path = path
        self.keys, self.pointer, self.cut = [], [], []
        self.screen = ArrayScreen(width, height, name="upstream", reactor=reactor,
                                  on_key=self.keys.append, on_pointer=self.pointer.append,
                                  on_cut_text=self.cut.append)
        rng = np.random.default_rng(7)
        self.screen.framebuffer[..., :3] = rng.integers(0, 256, (height, width, 3))
        self.service = None

    def start(self) -> None:
        self.service = api.serve(self.screen, f"unix:{self.path}", reactor=reactor)

    def stop(self) -> defer.Deferred:
        service, self.service = self.service, None
        return service.stop() if service is not None else defer.succeed(None)


async def wait_for(predicate, what: str, timeout: float = WAIT):
    """Poll ``predicate`` on the reactor until it is true (fail after ``timeout``)."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


class MirrorTests(TestCase):
    timeout = 60

    def setUp(self):
        # UNIX socket paths are short (108 bytes); trial's temp paths are not.
        directory = tempfile.mkdtemp(prefix="vncd-sv-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "up.sock")
        self.upstream = Upstream(self.path)
        self.addCleanup(self.upstream.stop)
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def mirror(self, **kw) -> VncScreen:
        screen = VncScreen(ListenAddress("unix", self.path), ClientOptions(**kw),
                           reactor=reactor)
        self.addCleanup(screen.stop)
        screen.start()
        return screen

    def log_lines(self) -> list[str]:
        return [e["log_format"].format(**e) for e in self.events
                if e.get("log_namespace") == "vncd.screens.vnc"]

    def same(self, screen: VncScreen) -> bool:
        up = self.upstream.screen.framebuffer
        return screen.framebuffer.shape == up.shape and bool(
            (screen.framebuffer[..., :3] == up[..., :3]).all())

    async def _mirrors(self):
        self.upstream.start()
        screen = self.mirror()
        await wait_for(lambda: screen._mirroring and self.same(screen), "the first frame")
        self.assertEqual((screen.state, screen.name), (UpstreamState.CONNECTED, "upstream"))
        up = self.upstream.screen
        up.framebuffer[10:20, 30:50, :3] = (255, 128, 1)
        up.damage(30, 10, 20, 10)
        await wait_for(lambda: self.same(screen), "a changed area")
        up.resize(120, 40)
        up.framebuffer[..., :3] = 77
        up.damage()
        await wait_for(lambda: self.same(screen), "the resized screen")
        up.set_name("renamed")
        up.set_clipboard(b"from upstream")
        clipboard = []
        screen.add_listener(type("L", (), {
            "screen_damaged": lambda *a: None, "screen_moved": lambda *a: None,
            "screen_resized": lambda *a: None, "screen_changed": lambda *a: None,
            "screen_bell": lambda *a: None,
            "screen_clipboard": lambda s, sc, text: clipboard.append(text)})())
        await wait_for(lambda: screen.name == "renamed" and clipboard, "name and clipboard")
        self.assertEqual(clipboard, [b"from upstream"])
        from vncd.screens.base import CutTextEvent, KeyEvent, PointerEvent
        screen.key_event(KeyEvent(True, 0x61))
        screen.key_event(KeyEvent(False, 0x61))
        screen.pointer_event(PointerEvent(1, 500, 7))
        screen.cut_text(CutTextEvent(b"from downstream"))
        await wait_for(lambda: len(self.upstream.keys) == 2 and self.upstream.pointer
                       and self.upstream.cut, "input upstream")
        self.assertEqual([(k.down, k.keysym) for k in self.upstream.keys],
                         [(True, 0x61), (False, 0x61)])
        self.assertEqual((self.upstream.pointer[0].buttons, self.upstream.pointer[0].x,
                          self.upstream.pointer[0].y), (1, 119, 7))
        self.assertEqual(self.upstream.cut[0].text, b"from downstream")
        self.assertEqual(len(self.log_lines()), 1)
        self.assertIn("connected: 96x64 'upstream' (None)", self.log_lines()[0])

    def test_mirrors(self):
        """Pixels, changes, resizes, name and clipboard come down; keys, pointer
        (clipped to the upstream's size) and clipboard go up; one log line."""
        return defer.ensureDeferred(self._mirrors())

    async def _outage(self):
        screen = self.mirror()
        await wait_for(lambda: screen.state is UpstreamState.WAITING, "the first failure")
        self.assertIn("No such file or directory", screen.reason)
        outage = screen.framebuffer.copy()
        self.assertEqual(tuple(int(v) for v in outage[2, 2, :3]), (70, 16, 20))
        self.upstream.start()
        await wait_for(lambda: screen._mirroring and self.same(screen), "the upstream")
        await self.upstream.stop()
        await wait_for(lambda: screen.state is UpstreamState.WAITING, "the loss")
        self.assertIn("connection lost", screen.reason)
        self.assertFalse(self.same(screen))
        self.assertEqual(tuple(int(v) for v in screen.framebuffer[2, 2, :3]), (70, 16, 20))
        self.assertEqual(screen.framebuffer.shape, (64, 96, 4))
        self.upstream.start()
        await wait_for(lambda: screen._mirroring and self.same(screen), "the upstream again")
        self.assertEqual(screen.connections_made, 2)
        lines = self.log_lines()
        self.assertEqual([("unavailable" in l, "connected" in l) for l in lines],
                         [(True, False), (False, True), (True, False), (False, True)], lines)
        self.assertIn(f"upstream unix:{self.path} unavailable: cannot connect", lines[0])

    def test_outage_and_recovery(self):
        """Missing at start, then up, then gone, then back: outage picture (keeping the last
        size) while down, the upstream's pixels again after; one log line per change."""
        return defer.ensureDeferred(self._outage())

    async def _wrong_password(self):
        self.upstream.service = api.serve(self.upstream.screen,
                                          f"unix:{self.upstream.path},password-secret=pw",
                                          registry=_secret_registry(), reactor=reactor)
        screen = self.mirror(password=b"wrong")
        await wait_for(lambda: screen.state is UpstreamState.WAITING, "the refusal")
        self.assertIn("authentication failed", screen.reason)
        self.assertNotIn("wrong", " ".join(self.log_lines()))

    def test_wrong_password(self):
        """An upstream that refuses the password is an outage with the reason, logged
        without the password."""
        return defer.ensureDeferred(self._wrong_password())


def _secret_registry():
    registry = creds.new_registry()
    registry.create("secret", {"id": "pw", "data": "right"})
    return registry
