"""Tests for the testcard screen: the security state it draws, and how often it redraws."""

import numpy as np
from PIL import Image, ImageDraw
from twisted.internet.task import Clock
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.vncd.test_updates_helpers import RecordingSink, Setup, Viewer
from vncd import __version__
from vncd import encoding as enc
from vncd.info import ConnectionInfo
from vncd.screens.base import KeyEvent, PointerEvent, ScreenError, ServedAddress
from vncd.screens.testcard import (
    AMBER, BACKGROUND, BARS, GREEN, MAX_REDRAWS_PER_SECOND, RED, TestcardScreen,
)

#: 2026-11-27 12:34:56 UTC.
NOW = 1795782896.0

SECURE = ConnectionInfo(peer="192.0.2.7:50123", security="VeNCrypt", subtype="X509None",
                        tls_version="TLSv1.3", tls_cipher="TLS_AES_256_GCM_SHA384",
                        peer_dn="CN=alice,O=Example,C=GB", state="authenticated", shared=True)
ANONYMOUS = ConnectionInfo(peer="[2001:db8::5]:40000", security="VeNCrypt", subtype="TLSNone",
                           tls_version="TLSv1.2", tls_cipher="ADH-AES256-GCM-SHA384",
                           state="authenticated", shared=False)
CLEAR = ConnectionInfo(peer="198.51.100.3:1234", security="VncAuth", state="authenticated",
                       shared=True)


class DamageLog:
    def __init__(self, screen):
        self.rects = []
        screen.add_listener(self)

    def screen_damaged(self, screen, rect):
        self.rects.append(rect)


def card(**kw):
    clock = Clock()
    clock.advance(NOW)
    return TestcardScreen(reactor=clock, **kw), clock


def line_pixels(tc, panel_name, index, text, colour):
    """An independent rendering of one text line where the testcard puts it."""
    panel = tc.panels[panel_name]
    image = Image.new("RGB", (panel.width, panel.height), BACKGROUND)
    y = tc.margin // 2 + index * tc.line_height
    ImageDraw.Draw(image).text((tc.margin, y), text, fill=colour, font=tc.font)
    box = np.asarray(image)[y:y + tc.line_height]
    shown = tc.framebuffer[panel.y + y:panel.y + y + tc.line_height,
                           panel.x:panel.x + panel.width, :3]
    return box, shown


class FirstFrameTests(SynchronousTestCase):
    def test_ready_client_is_drawn_at_once(self):
        """A connection that finishes its handshake is drawn with its final security state
        before its first update, without waiting for the redraw rate limit."""
        tc, clock = card()
        tc.start()
        clock.advance(0)
        info = ConnectionInfo(peer="192.0.2.9:4000")
        tc.add_connection(info)
        clock.advance(1 / MAX_REDRAWS_PER_SECOND)
        self.assertNotIn("X509None", repr(tc.panels["info"].lines))
        info.security, info.subtype, info.state = "VeNCrypt", "X509None", "authenticated"
        info.tls_version, info.tls_cipher = "TLSv1.3", "TLS_AES_128_GCM_SHA256"
        setup = Setup(screen=tc)
        sink = RecordingSink()
        client = setup.display.attach(info, sink)
        self.assertNotIn("X509None", repr(tc.panels["info"].lines))
        client.request_update(False, 0, 0, tc.width, tc.height)
        self.assertIn("X509None", repr(tc.panels["info"].lines))
        # The first update this client receives already shows it.
        setup.settle()
        viewer = Viewer(sink, tc.width, tc.height)
        self.assertTrue(viewer.read(), "no update was sent")
        panel = tc.panels["info"]
        self.assertTrue(np.array_equal(
            viewer.decoder.rgbx()[panel.y:panel.y + panel.height, :, :3],
            tc.framebuffer[panel.y:panel.y + panel.height, :, :3]))


class DrawingTests(SynchronousTestCase):
    def test_security_state_is_drawn(self):
        """Each listen address with its security, and each client's address, security
        type and subtype, TLS version and cipher and certificate name are drawn, each
        line exactly where the testcard lists it."""
        tc, clock = card()
        tc.set_served_addresses([ServedAddress("127.0.0.1:5901", "VeNCrypt X509None"),
                                 ServedAddress("[::1]:5901", "VNC password")])
        for info in (SECURE, ANONYMOUS, CLEAR):
            tc.add_connection(info)
        tc.redraw()
        texts = [t for t, _ in tc.panels["info"].lines]
        expected = [
            "Listening on:", "    127.0.0.1:5901 (VeNCrypt X509None)",
            "    [::1]:5901 (VNC password)", "Clients (3):",
            "192.0.2.7:50123  authenticated, shared  [verified]",
            "    security: VeNCrypt / X509None    TLS: TLSv1.3 TLS_AES_256_GCM_SHA384",
            "    peer certificate: CN=alice,O=Example,C=GB",
            "[2001:db8::5]:40000  authenticated, exclusive  [encrypted]",
            "    security: VeNCrypt / TLSNone    TLS: TLSv1.2 ADH-AES256-GCM-SHA384",
            "    peer certificate: none",
            "198.51.100.3:1234  authenticated, shared  [NOT ENCRYPTED]",
            "    security: VncAuth    TLS: none",
            "    peer certificate: none",
        ]
        self.assertEqual(texts, expected)
        colours = {4: GREEN, 6: (235, 235, 235), 7: AMBER, 10: RED}
        for index, colour in colours.items():
            drawn, shown = line_pixels(tc, "info", index, expected[index], colour)
            self.assertTrue(np.array_equal(drawn, shown), expected[index])
        self.assertTrue((shown != BACKGROUND).any())

    def test_verdict_colours(self):
        """The mark is green for a verified certificate, amber for TLS without one, red for none."""
        tc, _ = card()
        for info, colour in ((SECURE, GREEN), (ANONYMOUS, AMBER), (CLEAR, RED)):
            tc.connections = [info]
            tc.redraw()
            self.assertEqual(tc.panels["info"].lines[3][1], colour)

    def test_title_clock_and_bars(self):
        """The version, the UTC time and the colour bars are on the card."""
        tc, _ = card()
        self.assertEqual(tc.panels["title"].lines[0][0], f"vncd {__version__}")
        self.assertEqual(tc.panels["clock"].lines[0][0], "2026-11-27 12:34:56 UTC")
        _, top, width, bars, _ = tc._bars_box
        for i, colour in enumerate(BARS):
            x = (2 * i + 1) * width // (2 * len(BARS))
            self.assertEqual(tuple(tc.framebuffer[top + bars // 2, x, :3]), colour)

    def test_input_events(self):
        """Recent input is listed; a run of pointer moves counts once."""
        tc, clock = card()
        tc.key_event(KeyEvent(True, 0x61, None, "192.0.2.7:50123"))
        for x in range(10):
            tc.pointer_event(PointerEvent(0, x, 5, "192.0.2.7:50123"))
        tc.key_event(KeyEvent(False, 0x61, 30, "192.0.2.7:50123"))
        clock.advance(1)
        texts = [t for t, _ in tc.panels["events"].lines]
        self.assertEqual(texts, [
            "Last input:",
            "    12:34:56  192.0.2.7:50123  key down 0x0061 a",
            "    12:34:56  192.0.2.7:50123  pointer 9,5 buttons 00000000",
            "    12:34:56  192.0.2.7:50123  key up 0x0061 a keycode 30"])

    def test_too_small(self):
        """A testcard too small for its text is refused."""
        self.assertRaises(ScreenError, TestcardScreen, 200, 100, reactor=Clock())

    def test_scales(self):
        """Other sizes get the same panels, scaled."""
        tc, _ = card(width=1920, height=1080)
        self.assertEqual(tc.panels["events"].y + tc.panels["events"].height, 1080)
        self.assertEqual(tc.panels["title"].lines[0][0], f"vncd {__version__}")


class RedrawTests(SynchronousTestCase):
    def test_clock_every_second(self):
        """Running, the card redraws only the clock panel each second."""
        tc, clock = card()
        log = DamageLog(tc)
        tc.start()
        log.rects.clear()
        for _ in range(3):
            clock.advance(1)
        clock_panel = tc.panels["clock"]
        box = (clock_panel.x, clock_panel.y, clock_panel.width, clock_panel.height)
        self.assertEqual(log.rects, [box] * 3)
        tc.stop()
        clock.advance(5)
        self.assertEqual(len(log.rects), 3)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_connection_changes_noticed(self):
        """A connection's fields changing (handshake progress) are redrawn within a second."""
        tc, clock = card()
        tc.start()
        info = ConnectionInfo(peer="127.0.0.1:9")
        tc.add_connection(info)
        clock.advance(1)
        self.assertIn("[negotiating]", tc.panels["info"].lines[3][0])
        info.security, info.state = "VncAuth", "authenticated"
        clock.advance(1)
        self.assertIn("[NOT ENCRYPTED]", tc.panels["info"].lines[3][0])
        tc.stop()

    def test_rate_limit(self):
        """A burst of input causes at most a few redraws a second."""
        tc, clock = card()
        log = DamageLog(tc)
        for i in range(100):
            tc.key_event(KeyEvent(True, 0x41 + i % 26, None, "c"))
            clock.advance(0.01)
        self.assertLessEqual(len(log.rects), MAX_REDRAWS_PER_SECOND + 1)
        clock.advance(1)
        self.assertTrue(tc.panels["events"].lines[-1][0].endswith("key down 0x0056 V"))


class DisplayTests(SynchronousTestCase):
    def test_display_connections_appear(self):
        """Connections registered with a display appear on its testcard and go when closed."""
        tc, clock = card()
        st = Setup(screen=tc)
        st.clock = clock
        st.display.reactor = clock
        client, sink, viewer = st.client([enc.RAW], peer="203.0.113.9:7")
        clock.advance(1)
        self.assertEqual(tc.panels["info"].lines[2][0], "Clients (1):")
        self.assertIn("203.0.113.9:7", tc.panels["info"].lines[3][0])
        client.request_update(False, 0, 0, tc.width, tc.height)
        clock.advance(0)
        viewer.read()
        self.assertTrue(np.array_equal(viewer.rgbx()[..., :3], tc.framebuffer[..., :3]))
        st.display.unregister(client.info)
        clock.advance(1)
        self.assertEqual(tc.panels["info"].lines[2][0], "Clients (0):")


class OverSocketsTests(TestCase):
    """The testcard served for real: a client's first frame shows that client."""

    timeout = 30

    async def test_first_frame_shows_the_client(self):
        """vncd's own client, capturing once over loopback, finds its own address and
        security verdict drawn in the frame it receives."""
        from twisted.internet import reactor

        from compat.config import DisplayConfig, Invocation, ListenAddress
        from creds import new_registry
        from tests.tools import free_port
        from vncd.client import ClientOptions, connect, fetch_framebuffer
        from vncd.screens.testcard import client_lines, protection
        from vncd.service import start

        port = free_port()
        address = ListenAddress("tcp", "127.0.0.1", port)
        tc = TestcardScreen(reactor=reactor)
        service = start(reactor, new_registry(), Invocation(displays=[DisplayConfig(
            id="default", source=f"-vnc 127.0.0.1:{port - 5900}", listen=(address,))]),
            screen=tc)
        self.addCleanup(service.stop)
        client = await connect(reactor, address, ClientOptions(), timeout=20)
        self.addCleanup(client.close)
        rgbx = await Deferred.fromCoroutine(fetch_framebuffer(client))
        [info] = tc.connections
        self.assertEqual(info.peer, f"127.0.0.1:{client.transport.getHost().port}")
        # The client's line sits after "Listening on:", the address and "Clients (1):".
        text, colour = client_lines(info)[0], protection(info)[1]
        expected, _ = line_pixels(tc, "info", 3, text, colour)
        panel = tc.panels["info"]
        y = panel.y + tc.margin // 2 + 3 * tc.line_height
        got = rgbx[y:y + tc.line_height, panel.x:panel.x + panel.width, :3]
        self.assertTrue(np.array_equal(got, expected), text)
