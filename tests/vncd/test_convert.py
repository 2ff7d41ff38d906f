"""Tests for pixel-format conversion (vncd.encoding.convert)."""

import numpy as np
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from vncd.encoding.convert import COLOUR_MAP_SIZE, PixelConverter, converter_for
from vncd.pixels import DEFAULT_FORMAT, PixelFormat

#: BGR233 as an 8-bit true-colour format.
BGR233 = PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6)
RGB565_BE = PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0)
NOVNC = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)
HIGH_BYTES = PixelFormat(32, 24, True, True, 255, 255, 255, 24, 16, 8)
COLOUR_MAP_8 = PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)
COLOUR_MAP_16 = PixelFormat(16, 16, True, False, 0, 0, 0, 0, 0, 0)


def rgbx(*pixels):
    """A 1-row RGBX array of (r, g, b) pixels."""
    out = np.zeros((1, len(pixels), 4), dtype=np.uint8)
    out[0, :, :3] = pixels
    return out


@st.composite
def pixel_formats(draw):
    """Every valid true-colour format: 8/16/32 bpp, any maxima and shifts, both byte orders."""
    bpp = draw(st.sampled_from([8, 16, 32]))
    channels = []
    for _ in range(3):
        bits = draw(st.integers(1, min(16, bpp)))
        shift = draw(st.integers(0, bpp - bits))
        channels.append(((1 << bits) - 1, shift))
    depth = draw(st.integers(1, bpp))
    (rm, rs), (gm, gs), (bm, bs) = channels
    return PixelFormat(bpp, depth, draw(st.booleans()), True, rm, gm, bm, rs, gs, bs)


@st.composite
def separate_formats(draw):
    """Valid true-colour formats whose channels do not share bits (every real format)."""
    bpp = draw(st.sampled_from([8, 16, 32]))
    widths = []
    room = bpp - 2
    for i in range(3):
        bits = draw(st.integers(1, min(16, room)))
        widths.append(bits)
        room = room - bits + 1
    order = draw(st.permutations([0, 1, 2]))
    free = bpp - sum(widths)
    shifts = [0, 0, 0]
    pos = 0
    for channel in order:
        gap = draw(st.integers(0, free))
        free -= gap
        pos += gap
        shifts[channel] = pos
        pos += widths[channel]
    maxes = [(1 << b) - 1 for b in widths]
    return PixelFormat(bpp, draw(st.integers(1, bpp)), draw(st.booleans()), True,
                       *maxes, *shifts)


frames = st.integers(1, 6).flatmap(lambda w: st.integers(1, 5).flatmap(
    lambda h: st.binary(min_size=w * h * 4, max_size=w * h * 4).map(
        lambda b: np.frombuffer(b, dtype=np.uint8).reshape(h, w, 4).copy())))


class KnownValueTests(SynchronousTestCase):
    def test_default_format_bytes(self):
        """The server format puts blue, green, red, 0 in memory order (little-endian 0x00RRGGBB)."""
        conv = PixelConverter(DEFAULT_FORMAT)
        self.assertEqual(conv.raw(rgbx((0x11, 0x22, 0x33))), bytes([0x33, 0x22, 0x11, 0]))

    def test_x_channel_is_not_sent(self):
        """Whatever the framebuffer's X byte holds, unused pixel bits are zero."""
        frame = rgbx((1, 2, 3))
        frame[..., 3] = 0xEE
        self.assertEqual(PixelConverter(DEFAULT_FORMAT).raw(frame), bytes([3, 2, 1, 0]))

    def test_big_endian_32(self):
        """A big-endian format with red in the top byte writes R, G, B, 0."""
        self.assertEqual(PixelConverter(HIGH_BYTES).raw(rgbx((0x11, 0x22, 0x33))),
                         bytes([0x11, 0x22, 0x33, 0]))

    def test_rgb565_big_endian(self):
        """RGB565: white is 0xFFFF, pure red 0xF800, and the bytes are big-endian."""
        conv = PixelConverter(RGB565_BE)
        self.assertEqual(conv.raw(rgbx((255, 255, 255), (255, 0, 0), (0, 0, 255))),
                         bytes([0xFF, 0xFF, 0xF8, 0x00, 0x00, 0x1F]))

    def test_rounding(self):
        """Channels scale with rounding: 128 of 255 is 16 of 31 (not 15)."""
        conv = PixelConverter(RGB565_BE)
        self.assertEqual(int(conv.values(rgbx((128, 0, 0)))[0, 0]), 16 << 11)

    def test_bgr233(self):
        """BGR233: red in bits 0-2, green 3-5, blue 6-7."""
        conv = PixelConverter(BGR233)
        self.assertEqual(conv.raw(rgbx((255, 0, 0), (0, 255, 0), (0, 0, 255))),
                         bytes([0x07, 0x38, 0xC0]))

    def test_cpixel_low_bytes(self):
        """ZRLE CPIXELs of the server format are the three low bytes (B, G, R)."""
        conv = PixelConverter(DEFAULT_FORMAT)
        self.assertEqual(conv.cpixel_size, 3)
        self.assertEqual(conv.cpixels(rgbx((1, 2, 3))).tobytes(), bytes([3, 2, 1]))

    def test_cpixel_high_bytes(self):
        """With the colours in the top three bytes, CPIXELs are those bytes."""
        conv = PixelConverter(HIGH_BYTES)
        self.assertEqual(conv.cpixels(rgbx((1, 2, 3))).tobytes(), bytes([1, 2, 3]))

    def test_cpixel_not_compact(self):
        """16-bit formats have full-size CPIXELs."""
        self.assertEqual(PixelConverter(RGB565_BE).cpixel_size, 2)

    def test_tpixel_rgb(self):
        """Tight TPIXELs of a 24-bit-depth format are R, G, B whatever the shifts."""
        for pf in (DEFAULT_FORMAT, NOVNC, HIGH_BYTES):
            conv = PixelConverter(pf)
            self.assertEqual(conv.tpixel_size, 3)
            self.assertEqual(conv.tpixels(rgbx((1, 2, 3))).tobytes(), bytes([1, 2, 3]))

    def test_tpixel_needs_depth_24(self):
        """A 32-bpp format of depth 16 sends whole pixels to Tight."""
        pf = PixelFormat(32, 16, False, True, 31, 63, 31, 11, 5, 0)
        self.assertEqual(PixelConverter(pf).tpixel_size, 4)

    def test_converter_cache(self):
        """converter_for returns one shared converter per format."""
        self.assertIs(converter_for(RGB565_BE), converter_for(RGB565_BE))


class ColourMapTests(SynchronousTestCase):
    def test_palette_entries(self):
        """The palette has 256 BGR233 entries with full-scale 16-bit intensities."""
        entries = PixelConverter(COLOUR_MAP_8).colour_map_entries()
        self.assertEqual(len(entries), COLOUR_MAP_SIZE)
        self.assertEqual(entries[0], (0, 0, 0))
        self.assertEqual(entries[7], (65535, 0, 0))
        self.assertEqual(entries[0x38], (0, 65535, 0))
        self.assertEqual(entries[0xC0], (0, 0, 65535))
        self.assertEqual(entries[255], (65535, 65535, 65535))

    def test_indices(self):
        """Colour-map pixels are BGR233 indices into that palette."""
        conv = PixelConverter(COLOUR_MAP_8)
        self.assertEqual(conv.raw(rgbx((255, 0, 0), (0, 0, 255), (255, 255, 255))),
                         bytes([0x07, 0xC0, 0xFF]))

    def test_wide_colour_map_pixels(self):
        """A 16-bit colour-map format carries the index in a big-endian 16-bit pixel."""
        conv = PixelConverter(COLOUR_MAP_16)
        self.assertEqual(conv.raw(rgbx((255, 255, 255))), bytes([0x00, 0xFF]))

    def test_client_palette_lookup(self):
        """Decoding a colour-map pixel looks it up in the client's map; past its end is black."""
        conv = PixelConverter(COLOUR_MAP_8)
        cmap = np.array([[10, 20, 30], [40, 50, 60]], dtype=np.uint8)
        out = conv.rgbx_from_values(np.array([[1, 0, 9]], dtype=np.uint32), cmap)
        self.assertEqual(out[0, :, :3].tolist(), [[40, 50, 60], [10, 20, 30], [0, 0, 0]])

    def test_palette_round_trip(self):
        """Every colour maps to an index whose palette colour is within one BGR233 step."""
        conv = PixelConverter(COLOUR_MAP_8)
        rng = np.random.default_rng(3)
        frame = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
        table = np.array(conv.colour_map_entries(), dtype=np.uint32) >> 8
        shown = conv.rgbx_from_values(conv.values(frame), table.astype(np.uint8))
        err = np.abs(shown[..., :3].astype(int) - frame[..., :3].astype(int))
        self.assertLessEqual(int(err[..., :2].max()), 255 // 7 // 2 + 1)
        self.assertLessEqual(int(err[..., 2].max()), 255 // 3 // 2 + 1)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(pixel_formats(), frames)
    def test_values_match_arithmetic(self, pf, frame):
        """For every format, a pixel value is each channel scaled and shifted into place."""
        pf.validate()
        values = PixelConverter(pf).values(frame)
        f = frame.astype(np.int64)
        expected = np.zeros(frame.shape[:2], dtype=np.int64)
        for ch, cmax, shift in ((0, pf.red_max, pf.red_shift), (1, pf.green_max, pf.green_shift),
                                (2, pf.blue_max, pf.blue_shift)):
            expected |= ((f[..., ch] * cmax + 127) // 255) << shift
        self.assertTrue(np.array_equal(values.astype(np.int64), expected))

    @settings(max_examples=150, deadline=None)
    @given(pixel_formats(), frames)
    def test_wire_round_trip(self, pf, frame):
        """Wire bytes read back to the same values, in the format's byte order."""
        conv = PixelConverter(pf)
        wire = conv.wire(frame)
        self.assertEqual(wire.shape, frame.shape[:2] + (pf.bytes_per_pixel,))
        self.assertTrue(np.array_equal(conv.values_from_wire(wire), conv.values(frame)))
        order = ">" if pf.big_endian else "<"
        packed = conv.values(frame).astype(f"{order}u{pf.bytes_per_pixel}").tobytes()
        self.assertEqual(wire.tobytes(), packed)

    @settings(max_examples=100, deadline=None)
    @given(separate_formats(), frames)
    def test_rgb_round_trip_is_idempotent(self, pf, frame):
        """What a client of a format with separate channel bits sees converts back to
        exactly the same pixel values."""
        pf.validate()
        conv = PixelConverter(pf)
        seen = conv.rgbx_of(frame)
        self.assertTrue(np.array_equal(conv.values(seen), conv.values(frame)))

    @settings(max_examples=100, deadline=None)
    @given(pixel_formats(), frames)
    def test_cpixel_tpixel_round_trip(self, pf, frame):
        """CPIXELs and TPIXELs read back to the pixel values they came from."""
        conv = PixelConverter(pf)
        values = conv.values(frame)
        self.assertTrue(np.array_equal(conv.values_from_cpixels(conv.cpixels(frame)), values))
        self.assertTrue(np.array_equal(conv.values_from_tpixels(conv.tpixels(frame)), values))
        self.assertTrue(np.array_equal(conv.cpixels_from_values(values), conv.cpixels(frame)))
        self.assertTrue(np.array_equal(conv.tpixels_from_values(values), conv.tpixels(frame)))

    def test_eight_bit_channels_exact(self):
        """Formats with 8-bit channels reproduce the framebuffer exactly."""
        rng = np.random.default_rng(5)
        frame = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
        for pf in (DEFAULT_FORMAT, NOVNC, HIGH_BYTES):
            seen = PixelConverter(pf).rgbx_of(frame)
            self.assertTrue(np.array_equal(seen[..., :3], frame[..., :3]))


class WordShuffleTests(SynchronousTestCase):
    """The whole-word fast paths give what moving channel by channel gives."""

    def test_fast_layouts_match_channel_moves(self):
        from vncd.encoding.convert import PixelConverter
        rng = np.random.default_rng(11)
        frame = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
        for pf in (DEFAULT_FORMAT, PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16),
                   PixelFormat(32, 24, True, True, 255, 255, 255, 0, 8, 16),
                   PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0)):
            conv = PixelConverter(pf)
            for region in (frame, frame[3:30, 5:50], frame[:, ::2]):
                expected = np.zeros(region.shape[:2] + (4,), dtype=np.uint8)
                for channel, position in enumerate(conv._byte_positions):
                    expected[..., position] = region[..., channel]
                self.assertTrue(np.array_equal(conv.wire(region), expected), pf)
                self.assertEqual(conv.raw(region, b"head"), b"head" + expected.tobytes())

    def test_large_raw_reuses_its_buffer_safely(self):
        """Two large Raw conversions in a row: the second does not change the first."""
        from vncd.encoding import convert
        conv = convert.converter_for(DEFAULT_FORMAT)
        size = convert.SCRATCH_MIN // 4 + 1
        a = np.full((1, size, 4), 7, dtype=np.uint8)
        first = conv.raw(a)
        second = conv.raw(np.zeros_like(a))
        self.assertEqual(first, bytes([7, 7, 7, 0]) * size)
        self.assertEqual(second, bytes(4 * size))

    def test_allocator_keeps_large_buffers(self):
        """On glibc (Debian) the allocator setting took effect at import."""
        import platform
        from vncd.encoding import convert
        if platform.libc_ver()[0] != "glibc":
            raise SkipTest("not glibc")
        self.assertTrue(convert._kept)
        self.assertTrue(convert.keep_large_buffers())

    def test_tpixel_bytes_match_tpixels(self):
        """Tight's packed TPIXELs: the same bytes as the array, for any region."""
        rng = np.random.default_rng(12)
        frame = rng.integers(0, 256, (30, 41, 4), dtype=np.uint8)
        for pf in (DEFAULT_FORMAT, PixelFormat(32, 24, True, True, 255, 255, 255, 0, 8, 16),
                   PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)):
            conv = PixelConverter(pf)
            for region in (frame, frame[2:20, 3:33], frame[:, ::3], frame[:0]):
                self.assertEqual(conv.tpixel_bytes(region), conv.tpixels(region).tobytes())
