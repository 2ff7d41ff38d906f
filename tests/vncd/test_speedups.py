"""The C extension vncd.encoding._speedups against the numpy code it replaces.

The numpy implementations are the reference: Hextile bodies must be byte
for byte the numpy encoder's (and decode to the same pixels), Raw bodies
the converter's, and the file screen's look must leave the same
framebuffer and damage.  Bad arguments to the C entry points raise
TypeError or ValueError, never crash.  Real clients decoding the C
Hextile output: tests.vncd.test_real_vncdotool (``test_encodings``, with
Hextile) and tests.vncd.test_real_gvnccapture, which run vncd with the
extension loaded.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from vncd import encoding as enc
from vncd.encoding import EncodedRect, EncodeParams, hextile, raw, speedups, tight, zrle
from vncd.encoding.convert import converter_for
from vncd.encoding.decode import FramebufferDecoder
from vncd.encoding.hextile import encode_hextile
from vncd.encoding.raw import encode_raw
from vncd.encoding.zrle import encode_zrle
from vncd.pixels import DEFAULT_FORMAT, PixelFormat
from vncd.screens.base import TILE
from vncd.screens.file import FileScreen

from tests.vncd.test_encoding import FORMATS, decode_all, update_bytes

#: bpp 8, 16 and 32, both byte orders.
HEXTILE_FORMATS = {
    "bgr233": FORMATS["bgr233"],
    "colour-map": FORMATS["colour-map"],
    "rgb565-be": FORMATS["rgb565-be"],
    "rgb555-le": FORMATS["rgb555-le"],
    "server": DEFAULT_FORMAT,
    "high-bytes-be": FORMATS["high-bytes-be"],
    "32-depth-16": FORMATS["32-depth-16"],
}

SIZES = ((1, 1), (17, 33), (64, 1920), (16, 16), (31, 47), (150, 70))


def ext():
    if speedups.module is None:
        raise SkipTest(f"the C extension is not built: {speedups.why_not}")
    return speedups.module


def picture(kind: str, h: int, w: int, seed: int = 0) -> np.ndarray:
    """RGBX test pictures: random, flat, two-colour, many-colour, mixed."""
    rng = np.random.default_rng(seed)
    f = np.zeros((h, w, 4), dtype=np.uint8)
    if kind == "random":
        f[...] = rng.integers(0, 256, (h, w, 4))
    elif kind == "flat":
        f[..., :3] = (40, 90, 200)
    elif kind == "two":
        f[..., :3] = np.where(rng.random((h, w, 1)) < 0.2, (250, 250, 250), (0, 0, 80))
    elif kind == "sparse":
        # Mostly one colour with a few dots of a second: few runs per tile.
        f[..., :3] = (7, 7, 7)
        f[rng.integers(0, h, 1 + h * w // 60), rng.integers(0, w, 1 + h * w // 60), :3] = 200
    elif kind == "many":
        f[..., :3] = rng.integers(0, 6, (h, w, 1)) * 40
    else:  # mixed: flat, text-like two-colour strokes, a photo-like block
        f[..., :3] = (58, 110, 165)
        f[h // 4:h // 2, :, :3] = 255
        f[h // 4:h // 2:3, ::2, :3] = 0
        f[h // 2:, w // 2:] = rng.integers(0, 256, (h - h // 2, w - w // 2, 4))
        f[h // 2:, :w // 2, 0] = np.arange(w // 2, dtype=np.uint8)[None, :]
    return f


class LoadedTests(SynchronousTestCase):
    def test_loaded_in_ci(self):
        """With VNCD_REQUIRE_TOOLS (CI) the extension must be there: the
        tests would otherwise pass on the numpy fallback alone."""
        if not os.environ.get("VNCD_REQUIRE_TOOLS"):
            raise SkipTest("VNCD_REQUIRE_TOOLS is not set")
        self.assertIsNotNone(speedups.module, speedups.why_not)
        self.assertIsNone(speedups.why_not)


def hextile_pixels(body: bytes, frame: np.ndarray, pf: PixelFormat) -> np.ndarray:
    """The pixel values vncd's decoder reads from a Hextile body of ``frame``."""
    h, w = frame.shape[:2]
    rect = EncodedRect(enc.rect_header(0, 0, w, h, enc.HEXTILE) + body)
    decoder = FramebufferDecoder(w, h, pf)
    decode_all(decoder, update_bytes([rect], set()))
    return decoder.values


class HextileDifferentialTests(SynchronousTestCase):
    """Without grown subrectangles the C Hextile body is the numpy encoder's,
    byte for byte; with them it decodes to the same pixels and is never
    longer."""

    def check(self, frame: np.ndarray, pf: PixelFormat, what: str) -> None:
        conv = converter_for(pf)
        want = hextile.body_numpy(frame, conv)
        self.assertEqual(hextile.body_c(frame, conv, grow=False), want, what)
        grown = hextile.body_c(frame, conv, grow=True)
        self.assertLessEqual(len(grown), len(want), what)
        if grown != want:
            self.assertTrue(np.array_equal(hextile_pixels(grown, frame, pf),
                                           conv.values(frame)), what)

    def test_pictures_sizes_formats(self):
        """Every picture kind, odd size and bpp 8/16/32 format of either byte order."""
        ext()
        for kind in ("random", "flat", "two", "sparse", "many", "mixed"):
            for h, w in SIZES:
                frame = picture(kind, h, w, seed=h * w)
                for name, pf in HEXTILE_FORMATS.items():
                    self.check(frame, pf, f"{kind} {w}x{h} {name}")

    def test_strips_join_to_the_whole(self):
        """Strips of one tile row each (every strip boundary) give the same bytes."""
        ext()
        self.patch(hextile, "STRIP_TILE_ROWS", 1)
        for kind in ("mixed", "two", "sparse"):
            frame = picture(kind, 83, 45, seed=3)
            for name, pf in HEXTILE_FORMATS.items():
                self.check(frame, pf, f"{kind} strips {name}")

    def test_frames_with_unusual_strides(self):
        """Frames that are not row-major RGBX (mirrored, transposed, reversed
        rows) take the values path and still give numpy's bytes."""
        ext()
        base = picture("mixed", 40, 50, seed=6)
        for frame in (base[:, ::-1], base.transpose(1, 0, 2), base[::-1], base[::2, ::3]):
            for name in ("server", "rgb565-be"):
                conv = converter_for(HEXTILE_FORMATS[name])
                self.assertEqual(hextile.body_c(frame, conv, grow=False),
                                 hextile.body_numpy(frame, conv))
                self.assertEqual(zrle.tiles_c(frame, conv),
                                 zrle.zrle_tiles(conv.values(frame), conv))
                got = encode_raw(frame, 0, 0, frame.shape[1], frame.shape[0], EncodeParams(
                    HEXTILE_FORMATS[name]))
                self.assertEqual(got.data[12:], conv.wire(frame).tobytes())

    def test_decodes_to_the_frame(self):
        """vncd's decoder reads the C output (through encode_hextile, at an
        offset in a larger frame) back to the converted pixels."""
        ext()
        frame = picture("mixed", 140, 130, seed=5)
        for name, pf in HEXTILE_FORMATS.items():
            conv = converter_for(pf)
            rect = encode_hextile(frame, 3, 5, 121, 131, EncodeParams(pf))
            decoder = FramebufferDecoder(130, 140, pf)
            decode_all(decoder, update_bytes([rect], set()))
            self.assertTrue(np.array_equal(decoder.values[5:136, 3:124],
                                           conv.values(frame[5:136, 3:124])), name)

    def test_grown_rectangles_are_fewer(self):
        """Blocks of colour (windows, text) take fewer, taller subrectangles:
        a real saving, not only "never longer"."""
        ext()
        frame = np.zeros((64, 64, 4), dtype=np.uint8)
        frame[..., :3] = 200
        frame[4:12, 3:9, :3] = (10, 20, 30)       # a two-colour tile's block
        frame[20:30, 18:22, :3] = (0, 0, 255)     # blocks of two colours in
        frame[21:29, 24:27, :3] = (0, 255, 0)     # one tile (coloured)
        conv = converter_for(DEFAULT_FORMAT)
        runs = hextile.body_c(frame, conv, grow=False)
        grown = hextile.body_c(frame, conv, grow=True)
        self.assertLess(len(grown), len(runs))
        self.assertTrue(np.array_equal(hextile_pixels(grown, frame, DEFAULT_FORMAT),
                                       conv.values(frame)))
        # Tile (0, 0): background, foreground, one 6x8 rectangle at (3, 4).
        self.assertEqual(grown[:12], bytes([0x0E]) + bytes([200, 200, 200, 0])
                         + bytes([30, 20, 10, 0]) + bytes([1, 0x34, 0x57]))

    def test_fallback_without_extension(self):
        """Without the extension encode_hextile gives the same pixels (numpy),
        in at least as many bytes."""
        m = ext()
        frame = picture("mixed", 70, 90, seed=2)
        params = EncodeParams(DEFAULT_FORMAT)
        with_c = encode_hextile(frame, 0, 0, 90, 70, params)
        self.patch(speedups, "module", None)
        without = encode_hextile(frame, 0, 0, 90, 70, params)
        self.assertLessEqual(len(with_c.data), len(without.data))
        self.patch(hextile, "GROW_SUBRECTS", False)
        self.patch(speedups, "module", m)
        self.assertEqual(encode_hextile(frame, 0, 0, 90, 70, params), without)


class ZrleDifferentialTests(SynchronousTestCase):
    """The C ZRLE tile stream is the numpy writer's, byte for byte."""

    def test_pictures_sizes_formats(self):
        """Every picture kind, odd size and format, strips of one tile row: numpy's bytes."""
        ext()
        # Strips of one tile row each: every strip boundary is exercised.
        self.patch(zrle, "STRIP_TILE_ROWS", 1)
        for kind in ("random", "flat", "two", "sparse", "many", "mixed"):
            for h, w in SIZES + ((65, 129), (64, 64)):
                frame = picture(kind, h, w, seed=h + w)
                for name, pf in HEXTILE_FORMATS.items():
                    conv = converter_for(pf)
                    self.assertEqual(zrle.tiles_c(frame, conv),
                                     zrle.zrle_tiles(conv.values(frame), conv),
                                     f"{kind} {w}x{h} {name}")

    def test_long_runs_and_palettes(self):
        """Runs longer than 255 (several length bytes), 16/17 and 127/128
        colours (the packed and palette-RLE limits)."""
        ext()
        conv = converter_for(DEFAULT_FORMAT)
        for colours in (2, 3, 4, 5, 16, 17, 127, 128, 300):
            vals = (np.arange(64 * 64, dtype=np.uint32) * colours // 4096)
            vals = (vals * 0x010203).reshape(64, 64)
            for v in (vals, vals.T.copy(), np.roll(vals, 7)):
                self.assertEqual(
                    speedups.module.zrle_tiles(v, 4, False, *conv.cpixel_positions[:1],
                                               conv.cpixel_size),
                    zrle.zrle_tiles(v, conv), f"{colours} colours")

    def test_fallback_without_extension(self):
        """Without the extension encode_zrle gives the same rectangle (numpy)."""
        ext()
        frame = picture("mixed", 70, 90, seed=2)
        params = EncodeParams(DEFAULT_FORMAT)
        with_c = encode_zrle(frame, 0, 0, 90, 70, params)
        self.patch(speedups, "module", None)
        self.assertEqual(encode_zrle(frame, 0, 0, 90, 70, params), with_c)


class PropertyTests(SynchronousTestCase):
    """Random small rectangles of few colours: C and numpy agree."""

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(h=st.integers(1, 70), w=st.integers(1, 70), colours=st.integers(1, 6),
           seed=st.integers(0, 2 ** 16), fmt=st.sampled_from(sorted(HEXTILE_FORMATS)))
    def test_hextile_and_zrle(self, h, w, colours, seed, fmt):
        """Hextile (runs) and ZRLE bytes equal numpy's; grown Hextile decodes the same."""
        ext()
        rng = np.random.default_rng(seed)
        palette = rng.integers(0, 256, (colours, 4), dtype=np.uint8)
        frame = palette[rng.integers(0, colours, (h, w))]
        # Blocks, so that runs repeat from row to row and tiles are mixed.
        frame[h // 3:h // 2, w // 4:w // 2] = palette[0]
        pf = HEXTILE_FORMATS[fmt]
        conv = converter_for(pf)
        want = hextile.body_numpy(frame, conv)
        self.assertEqual(hextile.body_c(frame, conv, grow=False), want)
        grown = hextile.body_c(frame, conv, grow=True)
        self.assertLessEqual(len(grown), len(want))
        self.assertTrue(np.array_equal(hextile_pixels(grown, frame, pf), conv.values(frame)))
        self.assertEqual(zrle.tiles_c(frame, conv), zrle.zrle_tiles(conv.values(frame), conv))

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(h=st.integers(1, 120), w=st.integers(1, 120), colours=st.integers(1, 300),
           seed=st.integers(0, 2 ** 16), limit=st.integers(1, 256))
    def test_tight_palette(self, h, w, colours, seed, limit):
        """tight_palette equals a plain count: the sorted distinct 24-bit keys
        and each pixel's index, or None past ``limit`` colours."""
        m = ext()
        rng = np.random.default_rng(seed)
        palette = rng.integers(0, 256, (colours, 4), dtype=np.uint8)
        frame = palette[rng.integers(0, colours, (h, w))]
        keys = (frame.view("<u4")[..., 0] & 0xFFFFFF).ravel()
        distinct, index = np.unique(keys, return_inverse=True)
        got = m.tight_palette(frame, limit)
        if distinct.size > limit:
            self.assertIsNone(got)
            return
        self.assertEqual(np.frombuffer(got[0], dtype=np.uint32).tolist(), distinct.tolist())
        self.assertEqual(np.frombuffer(got[1], dtype=np.uint8).tolist(), index.tolist())


class RawDifferentialTests(SynchronousTestCase):
    def test_same_bytes_as_converter(self):
        """raw_shuffle gives the converter's Raw bytes, for every byte order of
        the channels and for regions inside a larger frame (row stride)."""
        ext()
        frame = picture("random", 37, 53, seed=8)
        formats = [DEFAULT_FORMAT, FORMATS["novnc"], FORMATS["high-bytes-be"],
                   PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0)]
        for pf in formats:
            conv = converter_for(pf)
            self.assertIsNotNone(conv.byte_positions)
            for x, y, w, h in ((0, 0, 53, 37), (5, 3, 17, 30), (52, 36, 1, 1)):
                got = encode_raw(frame, x, y, w, h, EncodeParams(pf))
                want = conv.raw(frame[y:y + h, x:x + w], got.data[:12])
                self.assertEqual(got.data, want, (pf, x, y, w, h))

    def test_other_formats_use_numpy(self):
        """16-bit formats still encode (the converter's path), unchanged."""
        frame = picture("random", 9, 11)
        pf = FORMATS["rgb565-be"]
        got = raw.encode_raw(frame, 0, 0, 11, 9, EncodeParams(pf))
        self.assertEqual(got.data[12:], converter_for(pf).wire(frame).tobytes())


class LookDifferentialTests(SynchronousTestCase):
    """The file screen's look with the extension and with numpy agree."""

    def screens(self, fmt: str, w: int, h: int):
        path = self.mktemp()
        data = np.random.default_rng(1).integers(0, 256, (h, w, 4), dtype=np.uint8)
        with open(path, "wb") as f:
            f.write(data.tobytes())
        made = []
        for module in (speedups.module, None):
            self.patch(speedups, "module", module)
            screen = FileScreen(path, fmt, size=(w, h), reactor=Clock())
            damage = []
            screen.damage_tiles = lambda tiles, d=damage: d.append(np.argwhere(tiles).tolist())
            made.append((screen, damage))
        return path, made

    def test_same_framebuffer_and_damage(self):
        """Looks at a changing file give the same framebuffer and damage both ways."""
        ext()
        for fmt in ("bgrx", "rgbx"):
            w, h = 2 * TILE + 37, 3 * TILE + 5
            path, made = self.screens(fmt, w, h)
            for screen, _ in made[1:]:
                self.assertTrue(np.array_equal(screen.framebuffer, made[0][0].framebuffer))
            rng = np.random.default_rng(2)
            for step in range(6):
                data = np.fromfile(path, dtype=np.uint8).reshape(h, w, 4)
                if step % 3 != 2:  # change a few tiles; the third look sees nothing new
                    y = int(rng.integers(0, h))
                    data[y, int(rng.integers(0, w))] ^= 0x5A
                    data[min(h - 1, y + 20), 0] ^= 0xA5
                    data[h - 1 - y, w - 1] ^= 0x01
                data.tofile(path)
                results = []
                for module, (screen, damage) in zip((speedups.module, None), made):
                    self.patch(speedups, "module", module)
                    damage.clear()
                    changed = screen.look()
                    results.append((changed, list(damage), screen.framebuffer.copy()))
                (c1, d1, f1), (c2, d2, f2) = results
                self.assertEqual((c1, d1), (c2, d2), f"{fmt} step {step}")
                self.assertTrue(np.array_equal(f1, f2), f"{fmt} step {step}")

    def test_row_stride_of_xwd(self):
        """look_tiles reads rows further apart than 4*width (an XWD's padding)."""
        m = ext()
        h, w, stride = 20, 7, 40
        backing = np.random.default_rng(3).integers(0, 256, h * stride, dtype=np.uint8)
        src = np.ndarray((h, w, 4), dtype=np.uint8, buffer=backing, strides=(stride, 4, 1))
        fb = np.full((h, w, 4), 9, dtype=np.uint8)
        flags = m.look_tiles(src, fb, 16, 2, 1, 0, False)
        self.assertEqual(flags, b"\x01\x01")
        self.assertTrue(np.array_equal(fb[..., :3], src[..., 2::-1]))
        self.assertTrue((fb[..., 3] == 9).all())  # the fourth byte is left alone
        self.assertEqual(m.look_tiles(src, fb, 16, 2, 1, 0, False), b"\x00\x00")
        src[17, 3, 0] ^= 1   # the second tile row only: converted alone
        self.assertEqual(m.look_tiles(src, fb, 16, 2, 1, 0, False), b"\x00\x01")
        self.assertTrue(np.array_equal(fb[..., :3], src[..., 2::-1]))
        # Tiles narrower than the screen: only the tile with the change.
        src[5, 6, 1] ^= 1
        self.assertEqual(m.look_tiles(src, fb, 4, 2, 1, 0, False),
                         b"\x00\x00\x00\x01" + bytes(6))
        self.assertTrue(np.array_equal(fb[..., :3], src[..., 2::-1]))
        # The source's unused byte is not compared.
        src[..., 3] ^= 0xFF
        self.assertEqual(m.look_tiles(src, fb, 16, 2, 1, 0, False), b"\x00\x00")

    def test_every_channel_order(self):
        """Any byte order of the source: a change in any channel byte is found,
        in the right tile, and converted."""
        m = ext()
        rng = np.random.default_rng(4)
        h, w = 37, 29
        for r, g, b in ((0, 1, 2), (2, 1, 0), (1, 2, 3), (3, 2, 1), (0, 3, 1)):
            src = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
            fb = np.zeros((h, w, 4), dtype=np.uint8)
            m.look_tiles(src, fb, 8, r, g, b, True)
            self.assertTrue(np.array_equal(fb[..., :3], src[..., [r, g, b]]))
            for channel in (r, g, b):
                y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
                src[y, x, channel] ^= 0x10
                flags = m.look_tiles(src, fb, 8, r, g, b, False)
                want = np.zeros((5, 4), dtype=np.uint8)
                want[y // 8, x // 8] = 1
                self.assertEqual(flags, want.tobytes(), (r, g, b, channel))
                self.assertTrue(np.array_equal(fb[..., :3], src[..., [r, g, b]]))


class TightPaletteDifferentialTests(SynchronousTestCase):
    """tight_palette finds numpy's palette, and Tight pieces are the same bytes."""

    def numpy_colours(self, region):
        m = ext()
        self.patch(speedups, "module", None)
        try:
            return tight._colours(region)
        finally:
            self.patch(speedups, "module", m)

    def pictures(self):
        rng = np.random.default_rng(11)
        for kind in ("random", "flat", "two", "sparse", "many", "mixed"):
            for h, w in ((1, 1), (7, 13), (64, 64), (33, 200)):
                yield kind, picture(kind, h, w, seed=h + w)
        for n in (2, 3, 16, 17, 255, 256, 257, 300):
            # Exactly n colours (when the region holds them all), the X byte noisy.
            colours = rng.integers(0, 1 << 24, n, dtype=np.uint32)
            f = np.zeros((40, 50, 4), dtype=np.uint8)
            keys = colours[rng.integers(0, n, 40 * 50)]
            keys[:n] = colours[:min(n, 40 * 50)]
            f.view("<u4")[..., 0] = keys.reshape(40, 50) | (rng.integers(0, 256, (40, 50),
                                                                         dtype=np.uint32) << 24)
            yield f"{n} colours", f
        big = picture("mixed", 90, 300, seed=3)
        yield "strided", big[10:70, 40:260]
        # numpy counts a sample first (every 4th pixel here): a colour only
        # at a pixel the sample skips.
        f = picture("two", 128, 128, seed=5)
        f[77, 33, :3] = (1, 2, 3)
        yield "missed by the sample", f

    def test_same_palette_as_numpy(self):
        m = ext()
        for name, region in self.pictures():
            got, want = tight._colours(region), self.numpy_colours(region)
            if want is None:
                self.assertIsNone(got, name)
                self.assertIsNone(m.tight_palette(region, 256), name)
                continue
            self.assertIsNotNone(got, name)
            self.assertEqual(got[0].tolist(), want[0].tolist(), name)
            self.assertEqual(got[1].tolist(), want[1].tolist(), name)

    def test_same_tight_bytes(self):
        m = ext()
        for name, region in self.pictures():
            for quality in (None, 6):
                params = EncodeParams(DEFAULT_FORMAT, jpeg_quality=quality)
                h, w = region.shape[:2]
                frame = np.ascontiguousarray(region)
                with_c = tight.encode_tight(frame, 0, 0, w, h, params).data
                self.patch(speedups, "module", None)
                without = tight.encode_tight(frame, 0, 0, w, h, params).data
                self.patch(speedups, "module", m)
                self.assertEqual(with_c, without, (name, quality))

    def test_limit(self):
        """At most ``limit`` colours: the palette; one more: None."""
        m = ext()
        f = np.zeros((4, 4, 4), dtype=np.uint8)
        f[..., 0] = np.arange(16, dtype=np.uint8).reshape(4, 4)
        self.assertEqual(len(m.tight_palette(f, 16)[0]), 16 * 4)
        self.assertIsNone(m.tight_palette(f, 15))
        self.assertEqual(len(m.tight_palette(f[:1, :1], 1)[0]), 4)


class TileCompareTests(SynchronousTestCase):
    """tile_compare marks the tiles numpy's per-pixel comparison marks."""

    def reference(self, old: np.ndarray, new: np.ndarray, tile: int) -> np.ndarray:
        diff = (old != new).any(axis=2)
        h, w = diff.shape
        rows = np.logical_or.reduceat(diff, np.arange(0, h, tile), axis=0)
        return np.logical_or.reduceat(rows, np.arange(0, w, tile), axis=1)

    def test_against_numpy(self):
        """Odd sizes, tile sizes, sparse changes, views inside larger frames."""
        m = ext()
        rng = np.random.default_rng(11)
        for h, w, tile in ((1, 1, 16), (17, 33, 16), (40, 70, 16), (64, 64, 64), (23, 9, 5)):
            big = rng.integers(0, 256, (h + 3, w + 5, 4), dtype=np.uint8)
            live = big[1:h + 1, 2:w + 2]                  # a view: rows further apart
            for changes in (0, 1, 5, h * w):
                snap = np.array(live)
                for _ in range(changes):
                    y, x, c = rng.integers(0, h), rng.integers(0, w), rng.integers(0, 4)
                    snap[y, x, c] ^= 1 + rng.integers(0, 255)
                want = self.reference(snap, live, tile)
                flags = m.tile_compare(snap, live, tile)
                got = np.frombuffer(flags, dtype=np.uint8).reshape(want.shape)
                self.assertTrue(np.array_equal(got.astype(bool), want), (h, w, tile, changes))
                self.assertTrue(np.array_equal(snap, live))     # brought up to date
                self.assertFalse(any(m.tile_compare(snap, live, tile)))

    def test_without_copy(self):
        """copy=False only reports; a read-only snapshot is then fine."""
        m = ext()
        live = np.zeros((20, 20, 4), dtype=np.uint8)
        snap = live.copy()
        snap[19, 19, 0] = 1
        snap.flags.writeable = False
        self.assertEqual(m.tile_compare(snap, live, copy=False), b"\x00\x00\x00\x01")
        self.assertEqual(snap[19, 19, 0], 1)


class GarbageInputTests(SynchronousTestCase):
    """Wrong types, shapes and numbers raise TypeError or ValueError."""

    def raises(self, fn, *args, **kw):
        with self.assertRaises((TypeError, ValueError)) as cm:
            fn(*args, **kw)
        self.assertTrue(str(cm.exception))

    def test_hextile_encode(self):
        """hextile_encode refuses bad values, formats, sizes and ranges."""
        m = ext()
        ok = np.zeros((17, 33), dtype=np.uint32)
        self.assertIsInstance(m.hextile_encode(ok, 4, False), bytes)
        for values in (None, "text", [[1, 2]], 3.5,
                       np.zeros((4, 4), dtype=np.float32), np.zeros((4, 4), dtype=np.int64),
                       np.zeros((4, 4), dtype=">u4") if np.little_endian else
                       np.zeros((4, 4), dtype="<u4"),
                       np.zeros((4, 8), dtype=np.uint32)[:, ::2],     # not contiguous
                       np.zeros(16, dtype=np.uint32), np.zeros((2, 2, 2), dtype=np.uint32),
                       np.zeros((0, 5), dtype=np.uint32), np.zeros((5, 0), dtype=np.uint32),
                       np.zeros((1, 65536), dtype=np.uint8)):
            self.raises(m.hextile_encode, values, 4, False)
        for bpp in (0, 3, 8, -1):
            self.raises(m.hextile_encode, ok, bpp, False)
        for first, rows in ((-1, 1), (3, 0), (0, 3), (1, 2), (0, -2), (2, -5)):
            self.raises(m.hextile_encode, ok, 4, False, first, rows)
        self.raises(m.hextile_encode, ok, 4, False, 0, -1, "not bytes")
        self.raises(m.hextile_encode, ok)
        # The edges of the ranges are fine: no tile rows, the last one (its
        # three solid tiles keep the background of the tile before: mask 0).
        self.assertEqual(m.hextile_encode(ok, 4, False, 2, 0), b"")
        self.assertEqual(m.hextile_encode(ok, 1, True, 1, 1, b"hd"), b"hd\x00\x00\x00")
        self.assertEqual(m.hextile_encode(ok, 1, True, 0, 1), b"\x02\x00\x00\x00")

    def test_hextile_encode_rgbx(self):
        """hextile_encode_rgbx refuses bad arrays, shifts and ranges."""
        m = ext()
        ok = np.zeros((17, 33, 4), dtype=np.uint8)
        self.assertEqual(m.hextile_encode_rgbx(ok, 16, 8, 0, False, 1, 1),
                         b"\x00\x00\x00")
        for rgbx in (None, "text", np.zeros((17, 33, 3), dtype=np.uint8),
                     np.zeros((17, 33, 4), dtype=np.uint32), np.zeros((17, 33), dtype=np.uint8),
                     np.zeros((17, 66, 4), dtype=np.uint8)[:, ::2],
                     np.zeros((17, 33, 4), dtype=np.uint8)[::-1],
                     np.zeros((0, 33, 4), dtype=np.uint8), np.zeros((1, 65536, 4), np.uint8)):
            self.raises(m.hextile_encode_rgbx, rgbx, 16, 8, 0, False)
        for shifts in ((-1, 8, 0), (16, 8, 25), (32, 0, 0)):
            self.raises(m.hextile_encode_rgbx, ok, *shifts, False)
        for first, rows in ((-1, 1), (3, 0), (0, 3), (1, 2), (0, -2)):
            self.raises(m.hextile_encode_rgbx, ok, 16, 8, 0, False, first, rows)
        self.raises(m.hextile_encode_rgbx, ok, 16, 8, 0, False, 0, -1, 7)

    def test_zrle_tiles(self):
        """zrle_tiles refuses bad values, CPIXEL layouts and ranges."""
        m = ext()
        ok = np.zeros((65, 70), dtype=np.uint32)
        self.assertEqual(m.zrle_tiles(ok, 4, False, 0, 3), b"\x01\x00\x00\x00" * 4)
        self.assertEqual(m.zrle_tiles(ok, 4, False, 0, 3, 1, 1), b"\x01\x00\x00\x00" * 2)
        self.assertEqual(m.zrle_tiles(ok, 4, False, 0, 3, 2, 0), b"")
        for values in (None, "text", np.zeros((4, 4), dtype=np.float64),
                       np.zeros((4, 4), dtype=np.int16), np.zeros((4, 8), np.uint32)[:, ::2],
                       np.zeros(9, dtype=np.uint32), np.zeros((0, 3), dtype=np.uint32),
                       np.zeros((65536, 1), dtype=np.uint8)):
            self.raises(m.zrle_tiles, values, 4, False, 0, 3)
        for bpp, start, size in ((3, 0, 3), (4, 2, 3), (4, -1, 3), (2, 0, 0), (1, 0, 2)):
            self.raises(m.zrle_tiles, ok, bpp, False, start, size)
        for first, rows in ((-1, 1), (3, 0), (0, 3), (1, 2), (0, -2)):
            self.raises(m.zrle_tiles, ok, 4, False, 0, 3, first, rows)

    def test_raw_shuffle(self):
        """raw_shuffle refuses bad arrays, byte positions and prefixes."""
        m = ext()
        ok = np.zeros((3, 5, 4), dtype=np.uint8)
        self.assertEqual(len(m.raw_shuffle(b"h", ok, 2, 1, 0)), 1 + 60)
        for rgbx in (None, b"abcd", np.zeros((3, 5, 3), dtype=np.uint8),
                     np.zeros((3, 5, 4), dtype=np.uint16), np.zeros((3, 5), dtype=np.uint8),
                     np.zeros((3, 10, 4), dtype=np.uint8)[:, ::2],
                     np.zeros((4, 5, 4), dtype=np.uint8)[::-1]):
            self.raises(m.raw_shuffle, b"", rgbx, 2, 1, 0)
        for pos in ((0, 0, 1), (4, 1, 0), (-1, 1, 0), (2, 1, 9)):
            self.raises(m.raw_shuffle, b"", ok, *pos)
        self.raises(m.raw_shuffle, "text", ok, 2, 1, 0)
        self.assertEqual(m.raw_shuffle(b"", np.zeros((0, 5, 4), dtype=np.uint8), 2, 1, 0), b"")

    def test_tile_compare(self):
        """tile_compare refuses bad tiles, shapes, types and read-only snapshots."""
        m = ext()
        a, b = np.zeros((20, 6, 4), dtype=np.uint8), np.zeros((20, 6, 4), dtype=np.uint8)
        self.assertEqual(m.tile_compare(a, b), b"\x00\x00")
        for tile in (0, -16, 1 << 20):
            self.raises(m.tile_compare, a, b, tile)
        self.raises(m.tile_compare, a, b[:10])
        self.raises(m.tile_compare, a, b[:, :5])
        self.raises(m.tile_compare, a, b.astype(np.uint16))
        self.raises(m.tile_compare, None, b)
        self.raises(m.tile_compare, a, bytes(480))
        self.raises(m.tile_compare, a[:, ::-1], b)
        readonly = a.copy()
        readonly.flags.writeable = False
        self.raises(m.tile_compare, readonly, b)

    def test_tight_palette(self):
        """tight_palette refuses bad limits, shapes, types and empty regions."""
        m = ext()
        a = np.zeros((20, 6, 4), dtype=np.uint8)
        self.assertEqual(m.tight_palette(a, 1)[0], bytes(4))
        for limit in (0, -1, 257, 1 << 40):
            self.raises(m.tight_palette, a, limit)
        self.raises(m.tight_palette, a[:0], 256)
        self.raises(m.tight_palette, a[:, :0], 256)
        self.raises(m.tight_palette, a[..., :3], 256)
        self.raises(m.tight_palette, a[:, ::-1], 256)
        self.raises(m.tight_palette, a.astype(np.uint16), 256)
        self.raises(m.tight_palette, None, 256)
        self.raises(m.tight_palette, bytes(480), 256)

    def test_look_tiles(self):
        """look_tiles refuses bad tile sizes, channels, shapes and read-only buffers."""
        m = ext()
        src = np.zeros((20, 6, 4), dtype=np.uint8)
        fb = np.zeros_like(src)
        self.assertEqual(m.look_tiles(src, fb, 16, 0, 1, 2, True), b"\x01\x01")
        for tile in (0, -16, 1 << 20):
            self.raises(m.look_tiles, src, fb, tile, 0, 1, 2, False)
        self.raises(m.look_tiles, src, fb, 16, 0, 1, 4, False)
        self.raises(m.look_tiles, src, fb, 16, -1, 1, 2, False)
        self.raises(m.look_tiles, src[:10], fb, 16, 0, 1, 2, False)
        self.raises(m.look_tiles, src, fb[:, :5], 16, 0, 1, 2, False)
        readonly = np.zeros_like(src)
        readonly.flags.writeable = False
        self.raises(m.look_tiles, src, readonly, 16, 0, 1, 2, False)
        self.raises(m.look_tiles, src, bytes(480), 16, 0, 1, 2, False)
        self.raises(m.look_tiles, src, fb[:, ::-1], 16, 0, 1, 2, False)
        self.raises(m.look_tiles, src.astype(np.uint16), fb, 16, 0, 1, 2, False)
        self.raises(m.look_tiles, None, fb, 16, 0, 1, 2, False)
