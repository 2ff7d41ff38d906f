"""Tests for damage tracking and per-client updates (vncd.updates)."""

import numpy as np
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.vncd.test_updates_helpers import Message, Setup, pixels_events
from vncd import encoding as enc
from vncd.encoding import messages
from vncd.encoding.decode import (
    CursorChanged, DesktopNameChanged, DesktopSizeChanged, LedStateChanged,
    QemuExtendedKeyEventSupported, RectDecoded,
)
from vncd.pixels import PixelFormat
from vncd.screens.array import ArrayScreen
from vncd.screens.base import Cursor, CutTextEvent, KeyEvent, PointerEvent, ScreenArea
from vncd.updates import TILE, UpdateConfig, choose_encoding

RICH = [enc.ZRLE, enc.COPYRECT, enc.EXTENDED_DESKTOP_SIZE, enc.DESKTOP_SIZE, enc.CURSOR,
        enc.DESKTOP_NAME, enc.QEMU_LED_STATE, enc.QEMU_EXTENDED_KEY_EVENT, enc.FENCE,
        enc.CONTINUOUS_UPDATES]


def paint(setup, x, y, w, h, colour, damage=True):
    setup.screen.framebuffer[y:y + h, x:x + w, :3] = colour
    if damage:
        setup.screen.damage(x, y, w, h)
    setup.settle()


def same_picture(test, viewer, screen):
    test.assertTrue(np.array_equal(viewer.rgbx()[..., :3], screen.framebuffer[..., :3]))


def synced(client, viewer):
    """Bring a client up to date with one full request (which a client of
    ExtendedDesktopSize sees answered by the layout, then the pixels)."""
    client.request_update(False, 0, 0, client.width, client.height)
    viewer.read()


def rects(update):
    return [(e.x, e.y, e.width, e.height) for e in pixels_events(update)]


def covered(update, width, height):
    """Whether the pixel rectangles of ``update`` (and nothing else) cover the screen."""
    mask = np.zeros((height, width), dtype=bool)
    for x, y, w, h in rects(update):
        mask[y:y + h, x:x + w] = True
    return len(rects(update)) == len(update) and bool(mask.all())


class DamageTests(SynchronousTestCase):
    def test_only_changed_tiles(self):
        """Reported damage is compared with the snapshot; only tiles that changed are sent."""
        st = Setup(300, 200)
        client, sink, viewer = st.client([enc.RAW])
        client.request_update(False, 0, 0, 300, 200)
        viewer.read()
        client.request_update(True, 0, 0, 300, 200)
        paint(st, 70, 70, 2, 2, (9, 9, 9), damage=False)
        paint(st, 200, 150, 3, 3, (1, 2, 3), damage=False)
        st.screen.damage()
        st.settle()
        update, = viewer.updates()
        self.assertEqual(rects(update), [(64, 64, 64, 64), (192, 128, 64, 64)])
        same_picture(self, viewer, st.screen)

    def test_unchanged_damage_sends_nothing(self):
        """Damage that changed no pixel answers no waiting request and keeps the generation."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW])
        client.request_update(False, 0, 0, 200, 150)
        viewer.read()
        generation = st.display.generation
        client.request_update(True, 0, 0, 200, 150)
        st.screen.damage()
        st.settle()
        self.assertEqual(viewer.read(), [])
        self.assertEqual(st.display.generation, generation)

    def test_unreported_change_is_not_seen(self):
        """Pixels changed without damage are not sent (the snapshot is what clients get)."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW])
        paint(st, 0, 0, 10, 10, (200, 0, 0), damage=False)
        client.request_update(False, 0, 0, 200, 150)
        viewer.read()
        self.assertEqual(viewer.rgbx()[0, 0, :3].tolist(), [0, 0, 0])

    def test_compare_tiles(self):
        """compare() marks each 64x64 tile holding a difference, edge tiles included."""
        st = Setup(130, 70)
        live = st.screen.framebuffer.copy()
        live[69, 129, 0] = 1
        live[0, 64, 3] = 1
        mask = st.display.compare(live, (0, 0, 2, 3))
        self.assertEqual(mask.tolist(), [[False, True, False], [False, False, True]])


class RequestTests(SynchronousTestCase):
    def test_incremental_waits(self):
        """An incremental request with nothing changed waits; a change answers it."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW])
        client.request_update(False, 0, 0, 200, 150)
        viewer.read()
        client.request_update(True, 0, 0, 200, 150)
        self.assertEqual(viewer.read(), [])
        paint(st, 5, 5, 5, 5, (1, 1, 1))
        self.assertEqual([rects(u) for u in viewer.updates()], [[(0, 0, 64, 64)]])

    def test_one_update_per_request(self):
        """Changes after an update wait for the next request."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW])
        client.request_update(False, 0, 0, 200, 150)
        paint(st, 5, 5, 5, 5, (1, 1, 1))
        self.assertEqual(len(viewer.updates()), 1)
        paint(st, 100, 100, 5, 5, (2, 2, 2))
        self.assertEqual(viewer.updates(), [])
        client.request_update(True, 0, 0, 200, 150)
        self.assertEqual(len(viewer.updates()), 1)
        same_picture(self, viewer, st.screen)

    def test_area_widened_to_tiles(self):
        """A request for part of a tile gets the whole tile; other tiles stay dirty."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW])
        client.request_update(False, 10, 10, 5, 5)
        update, = viewer.updates()
        self.assertEqual(rects(update), [(0, 0, 64, 64)])
        client.request_update(True, 0, 0, 200, 150)
        # The rest of the first tile row, then the two rows below as one
        # Raw rectangle.
        self.assertEqual(rects(viewer.updates()[0]), [(64, 0, 136, 64), (0, 64, 200, 86)])

    def test_requests_merge(self):
        """Several requests before an update are answered by one update covering them all."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW])
        client.request_update(False, 0, 0, 200, 150)
        viewer.read()
        client.request_update(True, 0, 0, 10, 10)
        client.request_update(True, 150, 100, 10, 10)
        paint(st, 0, 0, 200, 150, (7, 7, 7))
        self.assertEqual(len(viewer.updates()), 1)

    def test_empty_request_gets_pseudo_only(self):
        """An empty requested area is answered by pseudo-encodings alone."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW, enc.QEMU_LED_STATE])
        client.request_update(False, 0, 0, 200, 150)
        viewer.read()
        st.screen.set_led_state(4)
        client.request_update(True, 0, 0, 0, 0)
        self.assertEqual(viewer.updates(), [[LedStateChanged(4)]])

    def test_rows_of_tiles(self):
        """Dirty tiles go as runs within one tile row, at most 2048 pixels wide."""
        st = Setup(2200, 70)
        client, sink, viewer = st.client([enc.RAW])
        client.request_update(False, 0, 0, 2200, 70)
        self.assertEqual(rects(viewer.updates()[0]),
                         [(0, 0, 2048, 64), (2048, 0, 152, 64), (0, 64, 2048, 6),
                          (2048, 64, 152, 6)])


class EncodingChoiceTests(SynchronousTestCase):
    def test_choice(self):
        """The client's first usable encoding wins, except that Zlib gives way to Tight/ZRLE."""
        cases = {
            (enc.RAW, enc.HEXTILE, enc.ZRLE): enc.RAW,
            (enc.HEXTILE, enc.RAW, enc.ZRLE): enc.HEXTILE,
            (enc.ZLIB, enc.TIGHT): enc.TIGHT,
            (enc.ZLIB, enc.HEXTILE, enc.ZRLE): enc.HEXTILE,
            (enc.TIGHT, enc.ZRLE): enc.TIGHT,
            (enc.ZRLE, enc.TIGHT): enc.ZRLE,
            (enc.HEXTILE, enc.ZLIB): enc.HEXTILE,
            (enc.ZLIB, enc.HEXTILE, enc.RAW): enc.ZLIB,
            (enc.CURSOR, -999, enc.ZLIB): enc.ZLIB,
            (enc.COPYRECT, enc.CURSOR): enc.RAW,
            (): enc.RAW,
        }
        for encodings, expected in cases.items():
            self.assertEqual(choose_encoding(encodings), expected, encodings)

    def test_levels(self):
        """Compression level, quality level, fine quality and subsampling are read."""
        st = Setup()
        client, _, _ = st.client([enc.TIGHT, enc.COMPRESS_LEVEL_0 + 6, enc.QUALITY_LEVEL_0 + 9,
                                  enc.SUBSAMPLING_1X + 1])
        self.assertEqual((client.encoding, client.compress_level, client.jpeg_quality,
                          client.jpeg_subsampling), (enc.TIGHT, 6, 95, 2))
        client.set_encodings([enc.TIGHT, enc.QUALITY_LEVEL_0 + 1, enc.FINE_QUALITY_0 + 42])
        self.assertEqual((client.compress_level, client.jpeg_quality), (None, 42))


class FlowControlTests(SynchronousTestCase):
    def test_stalled_client_is_coalesced(self):
        """A client that stops reading gets no more than one update past the high-water
        mark however much the screen changes, then the latest picture when it drains."""
        st = Setup(256, 192, config=UpdateConfig(high_water=4096))
        client, sink, viewer = st.client([enc.ZRLE, enc.FENCE, enc.CONTINUOUS_UPDATES])
        client.enable_continuous_updates(True, 0, 0, 256, 192)
        viewer.read()
        sink.stalled = True
        rng = np.random.default_rng(0)
        sizes = []
        for _ in range(60):
            st.screen.framebuffer[...] = rng.integers(0, 256, (192, 256, 4), dtype=np.uint8)
            st.screen.damage()
            st.settle()
            sizes.append(len(sink.data))
        one_update = sizes[0]
        self.assertLess(sizes[-1], 4096 + 2 * one_update)
        self.assertEqual(sizes[-1], sizes[1])
        sink.stalled = False
        sink.drain()
        client.writable()
        viewer.read()
        same_picture(self, viewer, st.screen)

    def test_memory_stays_bounded(self):
        """A stalled client's state does not grow: one tile mask, nothing queued."""
        st = Setup(256, 192, config=UpdateConfig(high_water=0))
        client, sink, viewer = st.client([enc.RAW])
        sink.stalled = True
        client.request_update(False, 0, 0, 256, 192)
        written = len(sink.data)
        for i in range(200):
            paint(st, i % 250, i % 190, 5, 2, (i % 256, 0, 0))
            st.screen.set_clipboard(b"x" * 1000)
            st.screen.bell()
        self.assertEqual(len(sink.data), written)
        self.assertEqual(client.dirty.shape, (3, 4))
        self.assertEqual(client.pending.queued, [])
        self.assertEqual(client.pending.cut_text, b"x" * 1000)

    def test_clipboard_and_bell_coalesce(self):
        """While blocked, only the latest clipboard and one bell wait."""
        st = Setup(config=UpdateConfig(high_water=0))
        client, sink, viewer = st.client([enc.RAW])
        sink.stalled = True
        client.request_update(False, 0, 0, 200, 150)
        for text in (b"one", b"two", b"three"):
            st.screen.set_clipboard(text)
            st.screen.bell()
        viewer.read()
        sink.drain()
        sink.stalled = False
        client.writable()
        self.assertEqual(viewer.read(), [Message("bell"), Message("cut-text", b"three")])

    def test_fence_flood_disconnects(self):
        """A client that sends fences but reads no replies is disconnected at the bound."""
        st = Setup(config=UpdateConfig(high_water=0, max_queued_messages=8))
        client, sink, viewer = st.client([enc.RAW])
        sink.stalled = True
        client.request_update(False, 0, 0, 200, 150)
        written = len(sink.data)
        for _ in range(20):
            client.client_fence(messages.FENCE_REQUEST, b"ping")
        self.assertIn("does not read", sink.closed)
        self.assertTrue(client.closed)
        self.assertEqual(len(sink.data), written)
        self.assertNotIn(client, st.display.clients)

    def test_resize_request_flood_disconnects(self):
        """Unanswered SetDesktopSize replies are bounded too."""
        st = Setup(config=UpdateConfig(max_resize_replies=4))
        client, sink, viewer = st.client([enc.EXTENDED_DESKTOP_SIZE])
        for _ in range(6):
            client.set_desktop_size(100, 100, [(0, 0, 0, 100, 100, 0)])
        self.assertIn("SetDesktopSize", sink.closed)


class ContinuousUpdateTests(SynchronousTestCase):
    def test_negotiation(self):
        """Listing Fence and ContinuousUpdates brings a fence request and EndOfContinuousUpdates."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW, enc.FENCE, enc.CONTINUOUS_UPDATES])
        self.assertEqual(viewer.read(), [Message("fence", (messages.FENCE_REQUEST, b"")),
                                         Message("end-of-continuous-updates")])
        client.set_encodings([enc.RAW, enc.FENCE, enc.CONTINUOUS_UPDATES])
        self.assertEqual(viewer.read(), [])

    def test_not_negotiated(self):
        """Enabling continuous updates without negotiating them is a protocol error."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW, enc.CONTINUOUS_UPDATES])
        client.enable_continuous_updates(True, 0, 0, 200, 150)
        self.assertIn("continuous updates", sink.closed)

    def test_updates_flow_without_requests(self):
        """Once enabled, every change in the area is sent; outside it nothing; disabling ends it."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW, enc.FENCE, enc.CONTINUOUS_UPDATES])
        viewer.read()
        client.enable_continuous_updates(True, 0, 0, 100, 100)
        self.assertEqual(len(viewer.updates()), 1)
        paint(st, 10, 10, 3, 3, (1, 1, 1))
        paint(st, 20, 20, 3, 3, (2, 2, 2))
        self.assertEqual(len(viewer.updates()), 2)
        paint(st, 150, 120, 3, 3, (3, 3, 3))
        self.assertEqual(viewer.updates(), [])
        client.enable_continuous_updates(False, 0, 0, 0, 0)
        self.assertEqual(viewer.read(), [Message("end-of-continuous-updates")])
        paint(st, 10, 10, 3, 3, (4, 4, 4))
        self.assertEqual(viewer.read(), [])

    def test_incremental_requests_ignored(self):
        """While continuous updates run, incremental requests add nothing."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW, enc.FENCE, enc.CONTINUOUS_UPDATES])
        client.enable_continuous_updates(True, 0, 0, 64, 64)
        viewer.read()
        client.request_update(True, 0, 0, 200, 150)
        paint(st, 150, 100, 3, 3, (3, 3, 3))
        self.assertEqual(viewer.updates(), [])
        client.request_update(False, 0, 0, 200, 150)
        self.assertEqual(rects(viewer.updates()[0]), [(0, 0, 200, 150)])


class FenceTests(SynchronousTestCase):
    def test_echo(self):
        """A fence request is answered with its flags (less the request bit) and payload."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW, enc.FENCE])
        viewer.read()
        flags = messages.FENCE_REQUEST | messages.FENCE_BLOCK_BEFORE | messages.FENCE_BLOCK_AFTER
        client.client_fence(flags, b"abc")
        self.assertEqual(viewer.read(), [Message("fence", (3, b"abc"))])

    def test_response_is_not_answered(self):
        """A fence without the request bit (an answer to ours) gets no reply."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW, enc.FENCE])
        viewer.read()
        client.client_fence(0, b"")
        self.assertEqual(viewer.read(), [])

    def test_sync_next(self):
        """A SyncNext fence is answered after the next message, before its update."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW, enc.FENCE])
        viewer.read()
        client.client_fence(messages.FENCE_REQUEST | messages.FENCE_SYNC_NEXT, b"s")
        self.assertEqual(viewer.read(), [])
        client.request_update(False, 0, 0, 200, 150)
        out = viewer.read()
        self.assertEqual(out[0], Message("fence", (messages.FENCE_SYNC_NEXT, b"s")))
        self.assertIsInstance(out[1], list)


class ResizeTests(SynchronousTestCase):
    def clients(self, st):
        ext, ext_sink, ext_view = st.client([enc.RAW, enc.EXTENDED_DESKTOP_SIZE, enc.DESKTOP_SIZE])
        plain, plain_sink, plain_view = st.client([enc.RAW, enc.DESKTOP_SIZE])
        old, old_sink, old_view = st.client([enc.RAW])
        for c, v in ((ext, ext_view), (plain, plain_view), (old, old_view)):
            synced(c, v)
        return (ext, ext_view), (plain, plain_view), (old, old_view)

    def test_server_resize(self):
        """A server-side resize: ExtendedDesktopSize (reason 0) alone, or DesktopSize alone,
        then at once the whole new screen; a client that cannot resize keeps its size,
        clipped."""
        st = Setup()
        (ext, ext_view), (plain, plain_view), (old, old_view) = self.clients(st)
        for c in (ext, plain, old):
            c.request_update(True, 0, 0, 200, 150)
        st.screen.resize(300, 100)
        st.screen.framebuffer[...] = 50
        st.screen.damage()
        st.settle()
        layout, pixels = ext_view.updates()
        self.assertEqual(layout, [DesktopSizeChanged(
            300, 100, True, 0, 0, ((0, 0, 0, 300, 100, 0),))])
        self.assertTrue(covered(pixels, 300, 100))
        size, pixels = plain_view.updates()
        self.assertEqual(size, [DesktopSizeChanged(300, 100)])
        self.assertTrue(covered(pixels, 300, 100))
        for v in (ext_view, plain_view):
            same_picture(self, v, st.screen)
        old_update, = old_view.updates()
        self.assertEqual(max(x + w for x, y, w, h in rects(old_update)), 200)
        self.assertEqual(max(y + h for x, y, w, h in rects(old_update)), 100)

    def test_resize_after_partial_request(self):
        """A resize answers a pending request for part of the old screen with all of the
        new one."""
        st = Setup()
        (ext, ext_view), _, _ = self.clients(st)
        ext.request_update(True, 0, 0, 10, 10)
        st.screen.resize(400, 300)
        st.settle()
        layout, pixels = ext_view.updates()
        self.assertEqual(layout[0].width, 400)
        self.assertTrue(covered(pixels, 400, 300))

    def test_non_incremental_requests_get_layout_then_pixels(self):
        """With ExtendedDesktopSize, every non-incremental request is answered by the
        current layout in an update of its own, then by the pixels."""
        st = Setup()
        client, sink, viewer = st.client([enc.RAW, enc.EXTENDED_DESKTOP_SIZE])
        for _ in range(3):
            client.request_update(False, 0, 0, 200, 150)
            layout, pixels = viewer.updates()
            self.assertEqual(layout, [DesktopSizeChanged(
                200, 150, True, 0, 0, ((0, 0, 0, 200, 150, 0),))])
            self.assertTrue(covered(pixels, 200, 150))
        same_picture(self, viewer, st.screen)
        self.assertEqual(client.updates_sent, 6)

    def test_refused(self):
        """SetDesktopSize on a fixed screen: reason 1, status 1 (prohibited), nothing changes."""
        st = Setup()
        (ext, ext_view), (plain, plain_view), _ = self.clients(st)
        ext.set_desktop_size(640, 480, [(0, 0, 0, 640, 480, 0)])
        ext.request_update(True, 0, 0, 200, 150)
        self.assertEqual(ext_view.updates(), [[DesktopSizeChanged(
            640, 480, True, 1, 1, ((0, 0, 0, 640, 480, 0),))]])
        self.assertEqual((st.display.width, st.display.height), (200, 150))
        plain.request_update(True, 0, 0, 200, 150)
        self.assertEqual(plain_view.updates(), [])

    def test_accepted(self):
        """An accepted SetDesktopSize: the requester gets its request back with reason 1,
        status 0; other clients get reason 2 or DesktopSize; the new screen follows."""
        asked = []
        screen = ArrayScreen(200, 150, on_resize=lambda w, h: asked.append((w, h)) or True)
        st = Setup(screen=screen)
        (ext, ext_view), (plain, plain_view), _ = self.clients(st)
        other, other_sink, other_view = st.client([enc.RAW, enc.EXTENDED_DESKTOP_SIZE])
        synced(other, other_view)
        layout = [(5, 0, 0, 320, 240, 0)]
        ext.set_desktop_size(320, 240, layout)
        for c in (ext, plain, other):
            c.request_update(True, 0, 0, 200, 150)
        self.assertEqual(asked, [(320, 240)])
        expected = {
            ext_view: DesktopSizeChanged(320, 240, True, 1, 0, ((5, 0, 0, 320, 240, 0),)),
            other_view: DesktopSizeChanged(320, 240, True, 2, 0, ((5, 0, 0, 320, 240, 0),)),
            plain_view: DesktopSizeChanged(320, 240)}
        for view, change in expected.items():
            size, pixels = view.updates()
            self.assertEqual(size, [change])
            self.assertTrue(covered(pixels, 320, 240))
        self.assertEqual(st.screen.layout, (ScreenArea(5, 0, 0, 320, 240),))

    def test_set_desktop_size_without_extended_desktop_size(self):
        """SetDesktopSize from a client that never listed ExtendedDesktopSize is ignored:
        no resize and no reply in a pseudo-encoding it did not ask for (found by the
        update state machine)."""
        screen = ArrayScreen(200, 150, on_resize=lambda w, h: True)
        st = Setup(screen=screen)
        client, sink, viewer = st.client([enc.RAW, enc.DESKTOP_SIZE])
        client.set_desktop_size(100, 100, [(0, 0, 0, 100, 100, 0)])
        client.request_update(False, 0, 0, 200, 150)
        (update,) = viewer.updates()
        self.assertEqual({type(e).__name__ for e in update}, {"RectDecoded"})
        self.assertEqual((st.display.width, st.display.height), (200, 150))

    def test_resize_then_encodings_change(self):
        """A resize not yet announced when the client changes its encodings is announced
        in the resize pseudo-encoding it lists now; a client listing none keeps the size
        it was told (found by fuzzing: an ExtendedDesktopSize reply was dropped and the
        client was sent rectangles outside the framebuffer it knew)."""
        for encodings, size, announced in (
                ([enc.RAW, enc.DESKTOP_SIZE], (80, 60), [DesktopSizeChanged(80, 60)]),
                ([enc.RAW], (64, 48), [])):
            screen = ArrayScreen(64, 48, on_resize=lambda w, h: True)
            st = Setup(screen=screen)
            client, sink, viewer = st.client([enc.RAW, enc.EXTENDED_DESKTOP_SIZE])
            client.set_desktop_size(80, 60, [(1, 0, 0, 80, 60, 0)])
            client.set_encodings(encodings)
            client.request_update(False, 0, 0, 80, 60)
            updates = viewer.updates()
            self.assertEqual([e for u in updates for e in u
                              if isinstance(e, DesktopSizeChanged)], announced)
            self.assertTrue(covered(updates[-1], *size))
            self.assertEqual((viewer.decoder.width, viewer.decoder.height), size)

    def test_invalid_layout(self):
        """A layout with a screen outside the requested size is refused with status 3."""
        screen = ArrayScreen(200, 150, on_resize=lambda w, h: True)
        st = Setup(screen=screen)
        client, sink, viewer = st.client([enc.RAW, enc.EXTENDED_DESKTOP_SIZE])
        client.set_desktop_size(100, 100, [(0, 50, 50, 100, 100, 0)])
        client.request_update(True, 0, 0, 200, 150)
        self.assertEqual(viewer.updates()[0][0].status, 3)
        self.assertEqual(st.display.width, 200)


class PseudoEncodingTests(SynchronousTestCase):
    def started(self, encodings):
        st = Setup()
        client, sink, viewer = st.client(encodings)
        client.request_update(False, 0, 0, 200, 150)
        first = viewer.updates()
        return st, client, viewer, first

    def test_qemu_extended_key_event_announced_once(self):
        """The QEMU extended key event is announced after SetEncodings lists it, once."""
        st, client, viewer, first = self.started([enc.RAW, enc.QEMU_EXTENDED_KEY_EVENT])
        self.assertEqual(first[0][0], QemuExtendedKeyEventSupported())
        client.set_encodings([enc.RAW, enc.QEMU_EXTENDED_KEY_EVENT])
        client.request_update(False, 0, 0, 200, 150)
        self.assertNotIn(QemuExtendedKeyEventSupported(), viewer.updates()[0])

    def test_unlisted_announcements_dropped(self):
        """Announcements still due when a client stops listing their pseudo-encodings are
        not sent (found by the update state machine: the QEMU extended key event
        announcement outlived its SetEncodings)."""
        st = Setup()
        st.screen.set_led_state(2)
        st.screen.set_cursor(Cursor(np.full((2, 2, 4), 255, np.uint8), 0, 0))
        client, sink, viewer = st.client([enc.RAW, enc.QEMU_EXTENDED_KEY_EVENT, enc.CURSOR,
                                          enc.QEMU_LED_STATE, enc.DESKTOP_NAME])
        st.screen.set_name("renamed")
        client.set_encodings([enc.RAW])
        client.request_update(False, 0, 0, 200, 150)
        (update,) = viewer.updates()
        self.assertEqual([type(e).__name__ for e in update], ["RectDecoded"])

    def test_desktop_name(self):
        """A new desktop name is sent to clients that support DesktopName, and only to them."""
        st, client, viewer, _ = self.started([enc.RAW, enc.DESKTOP_NAME])
        other, other_sink, other_view = st.client([enc.RAW])
        other.request_update(False, 0, 0, 200, 150)
        other_view.read()
        st.screen.set_name("renamed")
        client.request_update(True, 0, 0, 200, 150)
        other.request_update(True, 0, 0, 200, 150)
        self.assertEqual(viewer.updates(), [[DesktopNameChanged("renamed")]])
        self.assertEqual(other_view.updates(), [])

    def test_display_name_overrides(self):
        """A display created with a name announces that name."""
        st = Setup(name="fixed")
        self.assertEqual(st.display.name, "fixed")
        self.assertEqual(Setup().display.name, "vncd")

    def test_cursor(self):
        """Cursor shapes follow the screen; a removed cursor is sent as an empty one."""
        st, client, viewer, first = self.started([enc.RAW, enc.CURSOR])
        self.assertNotIn("CursorChanged", [type(e).__name__ for e in first[0]])
        rgba = np.zeros((4, 4, 4), dtype=np.uint8)
        rgba[1:3, 1:3] = (255, 0, 0, 255)
        st.screen.set_cursor(Cursor(rgba, 2, 1))
        client.request_update(True, 0, 0, 200, 150)
        event, = viewer.updates()[0]
        self.assertEqual((event.hot_x, event.hot_y), (2, 1))
        self.assertTrue(np.array_equal(event.rgba, rgba))
        st.screen.set_cursor(None)
        client.request_update(True, 0, 0, 200, 150)
        event, = viewer.updates()[0]
        self.assertEqual(event.rgba.shape, (0, 0, 4))

    def test_cursor_on_negotiation(self):
        """A client that starts listing Cursor gets the current shape."""
        st = Setup()
        st.screen.set_cursor(Cursor(np.full((2, 2, 4), 255, np.uint8), 0, 0))
        client, sink, viewer = st.client([enc.RAW, enc.CURSOR])
        client.request_update(False, 0, 0, 200, 150)
        self.assertIsInstance(viewer.updates()[0][0], CursorChanged)

    def test_led_state(self):
        """LED state is sent on negotiation when known, and on every change."""
        st = Setup()
        st.screen.set_led_state(2)
        client, sink, viewer = st.client([enc.RAW, enc.QEMU_LED_STATE])
        client.request_update(False, 0, 0, 200, 150)
        self.assertEqual(viewer.updates()[0][0], LedStateChanged(2))
        st.screen.set_led_state(6)
        client.request_update(True, 0, 0, 200, 150)
        self.assertEqual(viewer.updates(), [[LedStateChanged(6)]])

    def test_last_rect(self):
        """A client listing LastRect gets updates of unannounced length ending in LastRect."""
        st, client, viewer, first = self.started([enc.HEXTILE, enc.LAST_RECT])
        self.assertEqual(len(pixels_events(first[0])), 3)
        start = viewer.sink.data.index(b"\x00\x00\xff\xff")
        self.assertEqual(start, 0)


class SharingTests(SynchronousTestCase):
    def test_fan_out_encodes_once(self):
        """Clients with the same encoding and format share each encoded rectangle."""
        st = Setup(256, 128)
        views = []
        for i in range(5):
            client, sink, viewer = st.client([enc.ZRLE], peer=f"10.0.0.{i}:1")
            client.request_update(False, 0, 0, 256, 128)
            viewer.read()
            client.request_update(True, 0, 0, 256, 128)
            views.append((client, sink, viewer))
        cache = st.display.cache
        before = (cache.hits, cache.misses)
        rng = np.random.default_rng(1)
        st.screen.framebuffer[...] = rng.integers(0, 256, (128, 256, 4), dtype=np.uint8)
        st.screen.damage()
        st.settle()
        self.assertEqual(cache.misses - before[1], 2)
        self.assertEqual(cache.hits - before[0], 8)
        for client, sink, viewer in views:
            viewer.read()
            same_picture(self, viewer, st.screen)
            self.assertEqual((client.updates_sent, client.bytes_sent), (2, len(sink.data)))

    def test_formats_do_not_mix(self):
        """A client in another format gets its own encoding."""
        st = Setup()
        a, _, va = st.client([enc.ZRLE])
        b, _, vb = st.client([enc.ZRLE], pf=PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0))
        for c, v in ((a, va), (b, vb)):
            c.request_update(False, 0, 0, 200, 150)
        self.assertEqual(st.display.cache.hits, 0)
        self.assertEqual(len(st.display.cache), 6)

    def test_zlib_streams_across_updates_and_clients(self):
        """Zlib and ZRLE streams stay valid over many updates, for a client that was there
        from the start and for one that joined later."""
        for number in (enc.ZLIB, enc.ZRLE):
            st = Setup()
            early, _, early_view = st.client([number])
            early.request_update(False, 0, 0, 200, 150)
            rng = np.random.default_rng(2)
            late = late_view = None
            for step in range(6):
                if step == 3:
                    late, _, late_view = st.client([number], peer="10.1.1.1:9")
                    late.request_update(False, 0, 0, 200, 150)
                early.request_update(True, 0, 0, 200, 150)
                if late is not None:
                    late.request_update(True, 0, 0, 200, 150)
                x, y = rng.integers(0, 150), rng.integers(0, 100)
                paint(st, int(x), int(y), 40, 40, tuple(int(v) for v in rng.integers(0, 256, 3)))
                early_view.read()
                if late_view is not None:
                    late_view.read()
                    same_picture(self, late_view, st.screen)
                same_picture(self, early_view, st.screen)
            self.assertGreater(st.display.cache.hits, 0)


class ColourMapTests(SynchronousTestCase):
    def test_colour_map_client(self):
        """A colour-map client gets SetColourMapEntries before pixels and sees BGR233 colours."""
        pf = PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)
        st = Setup()
        paint(st, 0, 0, 100, 100, (255, 0, 0))
        client, sink, viewer = st.client([enc.ZRLE], pf=pf)
        client.request_update(False, 0, 0, 200, 150)
        out = viewer.read()
        self.assertEqual(out[0].kind, "colour-map")
        self.assertEqual(len(out[0].value[1]), 256)
        self.assertEqual(viewer.rgbx()[50, 50, :3].tolist(), [255, 0, 0])
        self.assertEqual(viewer.rgbx()[120, 120, :3].tolist(), [0, 0, 0])


class CopyRectTests(SynchronousTestCase):
    def test_move_sent_as_copy(self):
        """A move reaches CopyRect clients as a CopyRect and others as pixels."""
        st = Setup()
        rng = np.random.default_rng(4)
        st.screen.framebuffer[...] = rng.integers(0, 256, (150, 200, 4), dtype=np.uint8)
        st.screen.damage()
        st.settle()
        copier, _, copier_view = st.client([enc.RAW, enc.COPYRECT])
        plain, _, plain_view = st.client([enc.RAW])
        for c, v in ((copier, copier_view), (plain, plain_view)):
            c.request_update(False, 0, 0, 200, 150)
            v.read()
            c.request_update(True, 0, 0, 200, 150)
        st.screen.move(0, 10, 0, 0, 200, 140)
        st.settle()
        update, = copier_view.updates()
        self.assertEqual(update[0], RectDecoded(0, 0, 200, 140, enc.COPYRECT))
        same_picture(self, copier_view, st.screen)
        update, = plain_view.updates()
        self.assertNotIn(enc.COPYRECT, [e.encoding for e in update])
        same_picture(self, plain_view, st.screen)

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(["paint", "move", "request", "damage-all"]),
                              st.integers(0, 199), st.integers(0, 149),
                              st.integers(1, 120), st.integers(1, 100),
                              st.integers(0, 199), st.integers(0, 149)), max_size=25))
    def test_random_paint_and_move(self, ops):
        """Any mix of paints, moves and requests leaves every client with the screen's picture."""
        setup = Setup()
        clients = [setup.client(e, peer=str(i)) for i, e in enumerate(
            ([enc.RAW, enc.COPYRECT], [enc.ZRLE, enc.COPYRECT], [enc.TIGHT]))]
        for c, _, v in clients:
            c.request_update(False, 0, 0, 200, 150)
        colour = 0
        for op, x, y, w, h, x2, y2 in ops:
            w, h = min(w, 200 - max(x, x2)), min(h, 150 - max(y, y2))
            if op == "paint":
                colour += 37
                paint(setup, x, y, max(w, 1), max(h, 1), (colour % 256, x % 256, y % 256))
            elif op == "move" and w > 0 and h > 0:
                setup.screen.move(x, y, x2, y2, w, h)
                setup.settle()
            elif op == "damage-all":
                setup.screen.damage()
                setup.settle()
            for c, _, v in clients:
                if op == "request" or (x + y) % 3 == 0:
                    c.request_update(True, 0, 0, 200, 150)
                v.read()
        for c, _, v in clients:
            c.request_update(True, 0, 0, 200, 150)
            v.read()
            same_picture(self, v, setup.screen)


class InputTests(SynchronousTestCase):
    def test_events_reach_screen(self):
        """Key, QEMU key, pointer and clipboard messages reach the screen with the peer."""
        got = []
        screen = ArrayScreen(100, 100, on_key=got.append, on_pointer=got.append,
                             on_cut_text=got.append)
        st = Setup(screen=screen)
        client, _, _ = st.client([enc.RAW], peer="192.0.2.1:7")
        client.key_event(1, 0x61)
        client.qemu_key_event(0, 0x61, 30)
        client.pointer_event(5, 10, 20)
        client.cut_text(b"text")
        self.assertEqual(got, [KeyEvent(True, 0x61, None, "192.0.2.1:7"),
                               KeyEvent(False, 0x61, 30, "192.0.2.1:7"),
                               PointerEvent(5, 10, 20, "192.0.2.1:7"),
                               CutTextEvent(b"text", "192.0.2.1:7")])

    def test_failing_screen_is_logged(self):
        """A screen callback that raises is logged; the client stays connected."""
        def broken(event):
            raise RuntimeError("embedding bug")

        st = Setup(screen=ArrayScreen(100, 100, on_key=broken,
                                      on_resize=lambda w, h: 1 / 0))
        client, sink, viewer = st.client([enc.RAW, enc.EXTENDED_DESKTOP_SIZE])
        client.key_event(1, 0x61)
        client.set_desktop_size(50, 50, [(0, 0, 0, 50, 50, 0)])
        client.request_update(True, 0, 0, 100, 100)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError, ZeroDivisionError)), 2)
        self.assertFalse(client.closed)
        self.assertIsNone(sink.closed)
        self.assertEqual(viewer.updates()[0][0].status, 2)

    def test_closed_client_is_ignored(self):
        """After close(), messages are ignored and nothing is written."""
        got = []
        st = Setup(screen=ArrayScreen(100, 100, on_key=got.append))
        client, sink, _ = st.client([enc.RAW])
        client.close()
        client.key_event(1, 1)
        client.request_update(False, 0, 0, 100, 100)
        self.assertEqual((got, bytes(sink.data)), ([], b""))
        self.assertEqual(st.display.clients, [])

    def test_unregister_closes(self):
        """Unregistering a connection closes its updates and removes it from the screen."""
        st = Setup()
        client, _, _ = st.client([enc.RAW])
        self.assertEqual(st.screen.connections, [client.info])
        st.display.unregister(client.info)
        self.assertTrue(client.closed)
        self.assertEqual(st.screen.connections, [])


class LossyTests(SynchronousTestCase):
    def video(self, setup, client, frames=3, seed=0):
        """Change the top-left 128x64 pixels every 0.1 s, the client asking each time."""
        rng = np.random.default_rng(seed)
        for _ in range(frames):
            client.request_update(True, 0, 0, 200, 150)
            setup.screen.framebuffer[:64, :128] = rng.integers(0, 256, (64, 128, 4), np.uint8)
            setup.screen.damage(0, 0, 128, 64)
            setup.settle()
            setup.clock.advance(0.1)

    def test_adaptive(self):
        """Adaptive lossy: a tile that keeps changing goes JPEG, and is resent losslessly
        once it has been still for the refresh delay."""
        st = Setup(lossy=True)
        client, sink, viewer = st.client([enc.TIGHT, enc.QUALITY_LEVEL_0 + 5])
        client.request_update(False, 0, 0, 200, 150)
        viewer.read()
        client.request_update(True, 0, 0, 200, 150)
        before = len(sink.data)
        self.video(st, client)
        self.assertTrue(client.lossy.any())
        viewer.read()
        self.assertFalse(np.array_equal(viewer.rgbx()[:64, :128, :3],
                                        st.screen.framebuffer[:64, :128, :3]))
        client.request_update(True, 0, 0, 200, 150)
        st.clock.advance(2.0)
        viewer.read()
        self.assertFalse(client.lossy.any())
        same_picture(self, viewer, st.screen)
        self.assertGreater(len(sink.data), before)

    def test_first_frame_lossless(self):
        """In adaptive mode a single change is sent losslessly."""
        st = Setup(lossy=True)
        client, sink, viewer = st.client([enc.TIGHT, enc.QUALITY_LEVEL_0 + 5])
        client.request_update(False, 0, 0, 200, 150)
        self.video(st, client, frames=1)
        client.request_update(True, 0, 0, 200, 150)
        viewer.read()
        same_picture(self, viewer, st.screen)
        self.assertFalse(client.lossy.any())

    def test_non_adaptive(self):
        """Non-adaptive: full-colour areas go JPEG at once and are never refreshed."""
        st = Setup(lossy=True, non_adaptive=True)
        client, sink, viewer = st.client([enc.TIGHT, enc.QUALITY_LEVEL_0 + 5])
        client.request_update(False, 0, 0, 200, 150)
        self.video(st, client, frames=1)
        client.request_update(True, 0, 0, 200, 150)
        st.clock.advance(5)
        viewer.read()
        self.assertFalse(np.array_equal(viewer.rgbx()[:64, :128, :3],
                                        st.screen.framebuffer[:64, :128, :3]))

    def test_lossless_display(self):
        """Without lossy=on nothing is ever JPEG, whatever the client asks."""
        st = Setup()
        client, sink, viewer = st.client([enc.TIGHT, enc.QUALITY_LEVEL_0 + 5])
        client.request_update(False, 0, 0, 200, 150)
        client.request_update(True, 0, 0, 200, 150)
        self.video(st, client)
        client.request_update(True, 0, 0, 200, 150)
        viewer.read()
        same_picture(self, viewer, st.screen)
        self.assertFalse(client.lossy.any())

    def test_tile_size(self):
        """Damage is tracked in 64-pixel tiles."""
        self.assertEqual(TILE, 64)
        self.assertEqual(Setup(130, 129).display.tile_shape, (3, 3))
