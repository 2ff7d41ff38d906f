"""Unit tests for the small values of vncd.updates: Rect, TileBox, Change, Pending."""

from __future__ import annotations

import dataclasses

import numpy as np

from twisted.trial.unittest import SynchronousTestCase

from vncd.screens.base import Screen
from vncd.updates import TILE, Change, Copy, Pending, Rect, TileBox
from vncd.updates.changes import parse
from vncd.updates.rect import EMPTY
from tests.vncd.test_updates_helpers import Setup


class RectTests(SynchronousTestCase):

    def test_corners_and_area(self):
        r = Rect.corners(10, 20, 30, 60)
        self.assertEqual(r, Rect(10, 20, 20, 40))
        self.assertEqual((r.x1, r.y1, r.area), (30, 60, 800))
        self.assertFalse(r.empty)

    def test_empty(self):
        for r in (EMPTY, Rect(5, 5, 0, 3), Rect(5, 5, 3, 0), Rect(5, 5, -1, 3)):
            self.assertTrue(r.empty, r)
            self.assertEqual(r.area, 0, r)
            self.assertEqual(r.tiles(), TileBox(0, 0, 0, 0), r)
            self.assertTrue(r.tiles().empty, r)

    def test_clip(self):
        self.assertEqual(Rect(100, 50, 200, 200).clip(250, 120), Rect(100, 50, 150, 70))
        self.assertEqual(Rect(-5, -5, 10, 10).clip(100, 100), Rect(0, 0, 5, 5))
        self.assertTrue(Rect(300, 0, 10, 10).clip(250, 120).empty)
        self.assertEqual(Rect(0, 0, 10, 10).clip(100, 100), Rect(0, 0, 10, 10))

    def test_union(self):
        a, b = Rect(0, 0, 10, 10), Rect(20, 5, 10, 20)
        self.assertEqual(a.union(b), Rect(0, 0, 30, 25))
        self.assertEqual(b.union(a), Rect(0, 0, 30, 25))
        # An empty rectangle adds nothing, wherever it is.
        self.assertEqual(b.union(EMPTY), b)
        self.assertEqual(EMPTY.union(b), b)
        self.assertTrue(EMPTY.union(Rect(3, 3, 0, 0)).empty)

    def test_tiles(self):
        self.assertEqual(Rect(0, 0, TILE, TILE).tiles(), TileBox(0, 0, 1, 1))
        self.assertEqual(Rect(TILE - 1, 0, 2, 1).tiles(), TileBox(0, 0, 1, 2))
        self.assertEqual(Rect(TILE, 2 * TILE, 1, TILE + 1).tiles(), TileBox(2, 1, 4, 2))

    def test_is_a_tuple(self):
        """Screens report damage as plain (x, y, w, h) tuples; a Rect unpacks the same."""
        x, y, w, h = Rect(1, 2, 3, 4)
        self.assertEqual((x, y, w, h), (1, 2, 3, 4))
        self.assertEqual(Rect(*(1, 2, 3, 4)), Rect(1, 2, 3, 4))
        with self.assertRaises(AttributeError):
            Rect(1, 2, 3, 4).x = 5


class TileBoxTests(SynchronousTestCase):

    def test_pixels_clipped(self):
        self.assertEqual(TileBox(1, 1, 3, 4).pixels(200, 150),
                         Rect(TILE, TILE, 200 - TILE, 150 - TILE))
        self.assertEqual(TileBox(0, 0, 1, 1).pixels(1000, 1000), Rect(0, 0, TILE, TILE))

    def test_round_trip(self):
        box = TileBox(2, 3, 5, 7)
        self.assertEqual(box.pixels(10_000, 10_000).tiles(), box)

    def test_union_and_whole(self):
        self.assertEqual(TileBox(0, 0, 1, 1).union(TileBox(2, 3, 4, 5)), TileBox(0, 0, 4, 5))
        self.assertEqual(TileBox(2, 3, 4, 5).union(TileBox(0, 0, 0, 0)), TileBox(2, 3, 4, 5))
        self.assertEqual(TileBox(1, 1, 1, 1).union(TileBox(2, 3, 4, 5)), TileBox(2, 3, 4, 5))
        self.assertEqual(TileBox.whole((3, 4)), TileBox(0, 0, 3, 4))

    def test_slices(self):
        import numpy as np
        mask = np.zeros((4, 5), dtype=bool)
        mask[TileBox(1, 2, 3, 5).slices] = True
        self.assertEqual(mask.sum(), 6)
        self.assertTrue(mask[1:3, 2:5].all())


class ChangeTests(SynchronousTestCase):

    def test_members_are_the_strings_screens_send(self):
        self.assertEqual({c.value for c in Change}, {"layout", "name", "cursor", "led"})
        self.assertIs(parse("cursor"), Change.CURSOR)
        self.assertIs(parse(Change.LED), Change.LED)

    def test_unknown_kind_named(self):
        with self.assertRaises(ValueError) as caught:
            parse("wallpaper", Screen(8, 8))
        self.assertIn("'wallpaper'", str(caught.exception))
        self.assertIn("Screen", str(caught.exception))

    def test_screen_reporting_unknown_kind(self):
        """A screen that reports a change kind the display does not know is an
        error naming the kind (not silently ignored)."""
        st = Setup(64, 64)
        st.client()
        with self.assertRaises(ValueError) as caught:
            st.screen._changed("wallpaper")
        self.assertIn("wallpaper", str(caught.exception))

    def test_known_kinds_reach_the_client(self):
        from vncd import encoding as enc
        st = Setup(64, 64)
        client, _, _ = st.client((enc.RAW, enc.DESKTOP_NAME))
        st.screen.set_name("renamed")
        self.assertTrue(client.pending.name)


class PendingTests(SynchronousTestCase):

    def test_fresh_has_nothing_due(self):
        self.assertFalse(Pending().due())

    def test_every_field_makes_something_due_and_clear_undoes_it(self):
        values = {"colour_map": True, "bell": True, "cut_text": b"", "queued": [b"x"],
                  "eds": [b"y"], "desktop_size": True, "whole_screen": True, "cursor": True,
                  "name": True, "led": True, "ext_key": True,
                  "copy": Copy(0, 0, Rect(1, 1, 2, 2))}
        self.assertEqual(set(values), {f.name for f in dataclasses.fields(Pending)})
        for name, value in values.items():
            pending = Pending()
            setattr(pending, name, value)
            self.assertTrue(pending.due(), name)
            pending.clear()
            self.assertFalse(pending.due(), name)
            self.assertEqual(pending, Pending(), name)

    def test_size_due(self):
        self.assertTrue(Pending(desktop_size=True).size_due)
        self.assertTrue(Pending(eds=[b"r"]).size_due)
        self.assertFalse(Pending(cursor=True).size_due)

    def test_closed_client_has_nothing_due(self):
        from vncd import encoding as enc
        from vncd.updates import UpdateConfig
        st = Setup(64, 64, config=UpdateConfig(high_water=-1))  # never writable
        client, _, _ = st.client((enc.RAW, enc.FENCE))
        st.screen.bell()
        self.assertTrue(client.pending.bell)
        client.close()
        self.assertFalse(client.pending.due())


class RequestAreaTests(SynchronousTestCase):

    def test_empty_request_does_not_widen_the_area(self):
        """A pending request for nothing, merged with a later one, sends only the
        later one's tiles (an empty area is not a point at the origin)."""
        from vncd import encoding as enc
        from tests.vncd.test_updates_helpers import pixels_events
        st = Setup(256, 192)
        client, _, viewer = st.client([enc.RAW])
        client.request_update(False, 0, 0, 256, 192)
        viewer.read()
        client.request_update(True, 0, 0, 0, 0)
        for x, y in ((0, 0), (130, 70)):
            st.screen.framebuffer[y:y + 10, x:x + 10, :3] = 200
            st.screen.damage(x, y, 10, 10)
        st.settle()
        self.assertEqual(viewer.updates(), [])
        client.request_update(True, 128, 64, 64, 64)
        update, = viewer.updates()
        self.assertEqual([(e.x, e.y, e.width, e.height) for e in pixels_events(update)],
                         [(128, 64, 64, 64)])
        self.assertTrue(client.dirty[0, 0])


class TileMaskTests(SynchronousTestCase):
    """A client's tile masks are made when first needed, with the same meaning."""

    def test_none_before_the_first_request(self):
        """Connecting, damage, lossy refreshes and a resize allocate nothing;
        the first request then gets the whole screen, at the size of the time."""
        st = Setup(64, 64)
        client, sink, viewer = st.client()
        st.screen.framebuffer[:32] = 200
        st.screen.damage(0, 0, 64, 32)
        st.settle()
        self.assertFalse(client._refresh_lossy(np.ones(st.display.tile_shape, dtype=bool)))
        self.assertIsNone(client._dirty)
        st.screen.resize(96, 80)
        st.settle()
        self.assertIsNone(client._dirty)
        client.request_update(True, 0, 0, 64, 64)
        st.settle()
        self.assertEqual(client.dirty.shape, st.display.tile_shape)
        [update] = viewer.updates()
        self.assertTrue((viewer.rgbx()[:64, :64, :3] == st.screen.framebuffer[:64, :64, :3]).all())
        self.assertFalse(client.dirty[:1, :1].any())

    def test_damage_after_the_first_update(self):
        """Once made, the masks track damage as before."""
        st = Setup(64, 64)
        client, sink, viewer = st.client()
        client.request_update(False, 0, 0, 64, 64)
        st.settle()
        self.assertFalse(client.dirty.any())
        st.screen.framebuffer[:8, :8] = 7
        st.screen.damage(0, 0, 8, 8)
        st.settle()
        self.assertTrue(client.dirty[0, 0])


class DefaultLevelTests(SynchronousTestCase):
    """The deflate level a client gets when it names none, per encoding."""

    def level(self, encodings):
        client, _, _ = Setup(64, 64).client(encodings)
        return client._params(False)[0].compress_level

    def test_defaults(self):
        from vncd import encoding as enc
        from vncd.updates import DEFAULT_COMPRESS_LEVEL, DEFAULT_ZLIB_LEVEL
        self.assertEqual(DEFAULT_ZLIB_LEVEL, 4)
        self.assertEqual(self.level([enc.ZLIB]), DEFAULT_ZLIB_LEVEL)
        for encoding in (enc.ZRLE, enc.TIGHT, enc.HEXTILE, enc.RAW):
            self.assertEqual(self.level([encoding]), DEFAULT_COMPRESS_LEVEL, encoding)

    def test_client_level_wins(self):
        from vncd import encoding as enc
        self.assertEqual(self.level([enc.ZLIB, enc.COMPRESS_LEVEL_0 + 1]), 1)
        self.assertEqual(self.level([enc.TIGHT, enc.COMPRESS_LEVEL_0 + 6]), 6)

    def test_encoding_change_changes_the_default(self):
        """The parameters follow a later SetEncodings (they were cached per format only)."""
        from vncd import encoding as enc
        client, _, _ = Setup(64, 64).client([enc.ZLIB])
        self.assertEqual(client._params(False)[0].compress_level, 4)
        client.set_encodings([enc.ZRLE])
        self.assertEqual(client._params(False)[0].compress_level, 1)


class ExactScreen(Screen):
    """A screen that reports its changes exactly (Screen.exact_damage)."""

    exact_damage = True


class ExactDamageTests(SynchronousTestCase):
    """A screen with exact damage is served from its own framebuffer, without a compare."""

    def served(self, screen=None, encodings=None):
        """A Raw client that has had the whole screen and asked for what changes next."""
        from vncd import encoding as enc
        st = Setup(200, 150) if screen is None else Setup(screen=screen)
        client, _, viewer = st.client(encodings or [enc.RAW])
        client.request_update(False, 0, 0, 200, 150)
        st.settle()
        viewer.updates()
        client.request_update(True, 0, 0, 200, 150)
        return st, viewer

    def sent(self, st, viewer) -> list:
        """The rectangles of the one update the change brought."""
        from tests.vncd.test_updates_helpers import pixels_events
        st.settle()
        update, = viewer.updates()
        return [(e.x, e.y, e.width, e.height) for e in pixels_events(update)]

    def test_framebuffer_is_the_snapshot(self):
        st = Setup(screen=ExactScreen(200, 150))
        self.assertIs(st.display.frame, st.screen.framebuffer)
        st2 = Setup(200, 150)
        self.assertIsNot(st2.display.frame, st2.screen.framebuffer)

    def test_reported_tiles_are_sent_and_nothing_else(self):
        """Only the reported tiles are sent -- also when other pixels changed
        unreported (no compare looks for them) -- and they show the new pixels."""
        st, viewer = self.served(ExactScreen(200, 150))
        fb = st.screen.framebuffer
        fb[70:80, 130:140, :3] = 90            # tile (1, 2), reported
        fb[0:5, 0:5, :3] = 50                  # tile (0, 0), not reported
        tiles = np.zeros(st.display.tile_shape, dtype=bool)
        tiles[1, 2] = True
        generation = st.display.generation
        st.screen.damage_tiles(tiles)
        self.assertEqual(st.display.generation, generation + 1)
        self.assertEqual(self.sent(st, viewer), [(128, 64, 64, 64)])
        self.assertTrue((viewer.rgbx()[70:80, 130:140, :3] == 90).all())
        self.assertFalse((viewer.rgbx()[0:5, 0:5, :3] == 50).any())

    def test_damage_means_changed(self):
        """damage() on an exact screen marks its tiles changed without comparing."""
        st, viewer = self.served(ExactScreen(200, 150))
        st.screen.damage(10, 10, 5, 5)         # nothing drawn: still sent
        self.assertEqual(self.sent(st, viewer), [(0, 0, 64, 64)])

    def test_bad_tile_masks_refused(self):
        screen = ExactScreen(200, 150)
        for bad in (np.zeros((3, 4), dtype=np.uint8), np.zeros((2, 4), dtype=bool),
                    [[True] * 4] * 3):
            with self.assertRaises(ValueError) as cm:
                screen.damage_tiles(bad)
            self.assertIn("(3, 4)", str(cm.exception))

    def test_other_screens_compare_the_reported_tiles(self):
        """damage_tiles on a screen without exact damage means 'may have
        changed': the display compares, and unchanged tiles are not sent."""
        st, viewer = self.served()
        st.screen.framebuffer[130:140, 150:160, :3] = 33   # tile (2, 2)
        tiles = np.zeros(st.display.tile_shape, dtype=bool)
        tiles[0, 0] = tiles[2, 2] = True
        st.screen.damage_tiles(tiles)
        self.assertEqual(self.sent(st, viewer), [(128, 128, 64, 22)])

    def test_resize_rebinds_the_snapshot(self):
        st = Setup(screen=ExactScreen(200, 150))
        st.screen.resize(100, 80)
        st.settle()
        self.assertIs(st.display.frame, st.screen.framebuffer)
        self.assertEqual(st.display.tile_shape, (2, 2))
        st.screen.set_framebuffer(np.zeros((80, 100, 4), dtype=np.uint8))
        self.assertIs(st.display.frame, st.screen.framebuffer)

    def test_move_is_not_applied_twice(self):
        """Screen.move already moved the shared pixels; the display only tells clients."""
        from vncd import encoding as enc
        screen = ExactScreen(200, 150)
        fb = screen.framebuffer
        fb[0:10, 0:10, :3] = 120
        fb[10:20, 0:10, :3] = 60
        st, viewer = self.served(screen, [enc.RAW, enc.COPYRECT])
        st.screen.move(0, 0, 0, 5, 10, 10)     # rows 5-14 become the old rows 0-9
        st.settle()
        viewer.updates()
        self.assertTrue((fb[5:15, 0:10, :3] == 120).all())
        self.assertTrue((fb[15:20, 0:10, :3] == 60).all())
        self.assertTrue((viewer.rgbx()[:20, :10, :3] == fb[:20, :10, :3]).all())


class FileScreenDisplayTests(SynchronousTestCase):
    """The file screen (exact damage) through a display: the client sees each change."""

    def test_changes_in_the_file_reach_the_client(self):
        import os
        from vncd import encoding as enc
        from vncd.screens.file import FileScreen
        from tests.vncd.test_updates_helpers import pixels_events
        w, h = 150, 100
        pixels = np.random.default_rng(5).integers(0, 256, (h, w, 4), dtype=np.uint8)
        path = os.path.join(self.mktemp())
        pixels.tofile(path)
        screen = FileScreen(path, "bgrx", size=(w, h), reactor=None)
        st = Setup(screen=screen)
        self.assertTrue(st.display.exact)
        client, _, viewer = st.client([enc.RAW])
        client.request_update(False, 0, 0, w, h)
        st.settle()
        viewer.updates()
        self.assertTrue((viewer.rgbx()[..., :3] == pixels[..., 2::-1]).all())
        for step in range(4):
            client.request_update(True, 0, 0, w, h)
            y, x = (step * 37) % h, (step * 53) % w
            pixels[y, x] ^= 0xFF
            pixels.tofile(path)
            self.assertEqual(screen.look(), 1)
            st.settle()
            update, = viewer.updates()
            self.assertEqual([(e.x, e.y) for e in pixels_events(update)],
                             [(x // TILE * TILE, y // TILE * TILE)])
            self.assertTrue((viewer.rgbx()[..., :3] == pixels[..., 2::-1]).all(), step)


class RawStackingTests(SynchronousTestCase):
    """Raw sends rows of dirty tiles with the same span as one rectangle."""

    def update_rects(self, encoding, changes):
        from vncd import encoding as enc
        from tests.vncd.test_updates_helpers import pixels_events
        st = Setup(256, 200)
        client, _, viewer = st.client([encoding])
        client.request_update(False, 0, 0, 256, 200)
        st.settle()
        viewer.updates()
        client.request_update(True, 0, 0, 256, 200)
        for x, y, w, h in changes:
            st.screen.framebuffer[y:y + h, x:x + w, :3] += 1
            st.screen.damage(x, y, w, h)
        st.settle()
        update, = viewer.updates()
        self.assertTrue((viewer.rgbx()[..., :3] == st.screen.framebuffer[..., :3]).all())
        return [(e.x, e.y, e.width, e.height) for e in pixels_events(update)]

    def test_whole_screen_is_one_rectangle(self):
        from vncd import encoding as enc
        self.assertEqual(self.update_rects(enc.RAW, [(0, 0, 256, 200)]), [(0, 0, 256, 200)])

    def test_only_same_spans_one_under_the_other(self):
        """Rows 0-1 share a span, row 2 is narrower, row 3 is apart from row 1's span."""
        from vncd import encoding as enc
        changes = [(10, 10, 100, 100), (10, 130, 40, 5)]
        self.assertEqual(self.update_rects(enc.RAW, changes),
                         [(0, 0, 128, 128), (0, 128, 64, 64)])
        self.assertEqual(self.update_rects(enc.RAW, [(0, 10, 10, 5), (0, 140, 10, 5)]),
                         [(0, 0, 64, 64), (0, 128, 64, 64)])

    def test_other_encodings_keep_tile_rows(self):
        from vncd import encoding as enc
        self.assertEqual(self.update_rects(enc.HEXTILE, [(0, 0, 256, 200)]),
                         [(0, 0, 256, 64), (0, 64, 256, 64), (0, 128, 256, 64),
                          (0, 192, 256, 8)])
