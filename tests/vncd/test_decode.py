"""Tests for the sans-I/O FramebufferUpdate decoder (vncd.encoding.decode)."""

import struct
import tracemalloc
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vncd import encoding as enc
from vncd.encoding import EncodeParams, messages, pseudo, rect_header
from vncd.encoding.convert import converter_for
from vncd.encoding.decode import (
    MAX_CURSOR_SIDE, MAX_NAME_LENGTH, NEED_DATA, CursorChanged, DecodeError,
    DesktopNameChanged, DesktopSizeChanged, FramebufferDecoder, LedStateChanged,
    PointerMotionChanged, QemuExtendedKeyEventSupported, RectDecoded, UpdateComplete,
)
from vncd.encoding.raw import encode_raw
from vncd.encoding.zrle import encode_zrle
from vncd.pixels import DEFAULT_FORMAT, PixelFormat

W, H = 64, 48


def update(*rects: bytes, count: int | None = None) -> bytes:
    return messages.framebuffer_update(len(rects) if count is None else count) + b"".join(rects)


def events_of(decoder: FramebufferDecoder, data: bytes) -> list:
    decoder.receive_data(data)
    out = []
    while True:
        event = decoder.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)
        if isinstance(event, UpdateComplete):
            return out


def frame(seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (H, W, 4), dtype=np.uint8)


class ApiTests(SynchronousTestCase):
    def test_byte_at_a_time(self):
        """Fed one byte at a time, the decoder asks for more until the update is whole."""
        f = frame()
        data = update(encode_raw(f, 0, 0, W, H, EncodeParams(DEFAULT_FORMAT)).data)
        decoder = FramebufferDecoder(W, H, DEFAULT_FORMAT)
        seen = []
        for i in range(len(data)):
            decoder.receive_data(data[i:i + 1])
            while (event := decoder.next_event()) is not NEED_DATA:
                seen.append(event)
        self.assertEqual(seen, [RectDecoded(0, 0, W, H, enc.RAW), UpdateComplete()])
        self.assertTrue(np.array_equal(decoder.values, converter_for(DEFAULT_FORMAT).values(f)))

    def test_trailing_data(self):
        """Bytes after the update are handed back, and a following update decodes next."""
        f = frame()
        first = update(encode_raw(f, 0, 0, 4, 4, EncodeParams(DEFAULT_FORMAT)).data)
        second = update(encode_raw(f, 4, 4, 4, 4, EncodeParams(DEFAULT_FORMAT)).data)
        decoder = FramebufferDecoder(W, H, DEFAULT_FORMAT)
        self.assertFalse(decoder.in_update)
        events = events_of(decoder, first + second + b"\x02")
        self.assertIsInstance(events[-1], UpdateComplete)
        self.assertFalse(decoder.in_update)
        self.assertEqual(decoder.trailing_data, second + b"\x02")
        events = events_of(decoder, decoder.trailing_data)
        self.assertEqual(events[0], RectDecoded(4, 4, 4, 4, enc.RAW))
        self.assertEqual(decoder.trailing_data, b"\x02")

    def test_in_update(self):
        """in_update is true from the update's first byte until it completes."""
        decoder = FramebufferDecoder(W, H, DEFAULT_FORMAT)
        self.assertEqual(events_of(decoder, b"\x00\x00"), [])
        self.assertTrue(decoder.in_update)
        self.assertEqual(events_of(decoder, b"\x00\x00"), [UpdateComplete()])
        self.assertFalse(decoder.in_update)

    def test_last_rect(self):
        """LastRect ends an update announced with 65535 rectangles."""
        decoder = FramebufferDecoder(W, H, DEFAULT_FORMAT)
        data = update(pseudo.led_state(2), pseudo.last_rect(), count=messages.UNKNOWN_RECT_COUNT)
        self.assertEqual(events_of(decoder, data + b"more"),
                         [LedStateChanged(2), UpdateComplete()])
        self.assertEqual(decoder.trailing_data, b"more")

    def test_pseudo_events(self):
        """Pseudo-encodings become events; the framebuffer follows size changes."""
        decoder = FramebufferDecoder(W, H, DEFAULT_FORMAT)
        data = update(pseudo.desktop_name("hello"), pseudo.qemu_extended_key_event(),
                      rect_header(1, 0, 0, 0, enc.QEMU_POINTER_MOTION_CHANGE),
                      pseudo.desktop_size(100, 50))
        self.assertEqual(events_of(decoder, data),
                         [DesktopNameChanged("hello"), QemuExtendedKeyEventSupported(),
                          PointerMotionChanged(True), DesktopSizeChanged(100, 50),
                          UpdateComplete()])
        self.assertEqual(decoder.values.shape, (50, 100))

    def test_extended_desktop_size(self):
        """ExtendedDesktopSize resizes, except for a refused client request."""
        decoder = FramebufferDecoder(W, H, DEFAULT_FORMAT)
        refused = pseudo.extended_desktop_size(1, 1, 300, 200, [(0, 0, 0, 300, 200, 0)])
        events = events_of(decoder, update(refused))
        self.assertEqual(events[0], DesktopSizeChanged(300, 200, True, 1, 1,
                                                       ((0, 0, 0, 300, 200, 0),)))
        self.assertEqual(decoder.values.shape, (H, W))
        events_of(decoder, update(pseudo.extended_desktop_size(0, 0, 30, 20, [])))
        self.assertEqual(decoder.values.shape, (20, 30))

    def test_cursor(self):
        """A cursor arrives as RGBA with alpha 255 where the mask is set."""
        rgba = np.zeros((3, 10, 4), dtype=np.uint8)
        rgba[..., :3] = (10, 20, 30)
        rgba[1, 9, 3] = 255
        rgba[2, 0, 3] = 255
        decoder = FramebufferDecoder(W, H, DEFAULT_FORMAT)
        event = events_of(decoder, update(pseudo.cursor(rgba, 4, 2, DEFAULT_FORMAT)))[0]
        self.assertIsInstance(event, CursorChanged)
        self.assertEqual((event.hot_x, event.hot_y), (4, 2))
        self.assertTrue(np.array_equal(event.rgba, rgba))

    def test_set_pixel_format_keeps_picture(self):
        """Changing the client format converts the pixels already held."""
        f = frame()
        decoder = FramebufferDecoder(W, H, DEFAULT_FORMAT)
        events_of(decoder, update(encode_raw(f, 0, 0, W, H, EncodeParams(DEFAULT_FORMAT)).data))
        pf = PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0)
        decoder.set_pixel_format(pf)
        self.assertTrue(np.array_equal(decoder.values, converter_for(pf).values(f)))

    def test_colour_map(self):
        """Colour-map pixels are shown through the entries the server sent."""
        pf = PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)
        decoder = FramebufferDecoder(2, 1, pf)
        decoder.set_colour_map_entries(3, [(0xFFFF, 0, 0x1234)])
        events_of(decoder, update(rect_header(0, 0, 2, 1, enc.RAW) + b"\x03\x09"))
        self.assertEqual(decoder.rgbx()[0].tolist(), [[255, 0, 0x12, 0], [0, 0, 0, 0]])

    def test_tight_gradient(self):
        """Tight's gradient filter (used by other servers) is undone exactly."""
        values = np.array([[10, 200], [30, 5]], dtype=np.int64)
        pred = np.zeros_like(values)
        v = np.pad(values, ((1, 0), (1, 0)))
        diff = np.zeros_like(values)
        for i in range(2):
            for j in range(2):
                p = min(255, max(0, v[i, j + 1] + v[i + 1, j] - v[i, j]))
                pred[i, j] = p
                diff[i, j] = (values[i, j] - p) & 255
        tp = np.zeros((2, 2, 3), dtype=np.uint8)
        tp[..., 0] = diff
        z = zlib.compress(tp.tobytes())
        data = rect_header(0, 0, 2, 2, enc.TIGHT) + bytes([0x40, 2, len(z)]) + z
        decoder = FramebufferDecoder(2, 2, DEFAULT_FORMAT)
        events_of(decoder, update(data))
        self.assertEqual(decoder.rgbx()[..., 0].tolist(), values.tolist())


class ErrorTests(SynchronousTestCase):
    def fails(self, data, message, width=W, height=H, pf=DEFAULT_FORMAT):
        decoder = FramebufferDecoder(width, height, pf)
        with self.assertRaises(DecodeError) as cm:
            events_of(decoder, data)
        self.assertIn(message, str(cm.exception))
        self.assertRaises(DecodeError, decoder.next_event)
        self.assertRaises(DecodeError, decoder.receive_data, b"")

    def test_not_an_update(self):
        """A message that is not a FramebufferUpdate is refused."""
        self.fails(b"\x02\x00\x00\x00", "not a FramebufferUpdate")

    def test_unknown_encoding(self):
        """An encoding the decoder does not know ends decoding (its length is unknown)."""
        self.fails(update(rect_header(0, 0, 1, 1, 4)), "unknown encoding 4")

    def test_outside(self):
        """A rectangle beyond the framebuffer is refused before its data is read."""
        self.fails(update(rect_header(60, 0, 5, 1, enc.RAW)), "outside")

    def test_copyrect_source_outside(self):
        """A CopyRect from outside the framebuffer is refused."""
        self.fails(update(rect_header(0, 0, 4, 4, enc.COPYRECT) + struct.pack(">HH", 62, 0)),
                   "CopyRect source")

    def test_corrupt_zlib(self):
        """Corrupt compressed data is a decode error, not a zlib exception."""
        data = rect_header(0, 0, 2, 2, enc.ZLIB) + struct.pack(">I", 4) + b"\x00\x01\x02\x03"
        self.fails(update(data), "corrupt Zlib data")

    def test_zlib_length_bound(self):
        """A compressed length impossible for the rectangle is refused before any wait."""
        self.fails(update(rect_header(0, 0, 1, 1, enc.ZLIB) + struct.pack(">I", 2 ** 31)),
                   "impossible")

    def test_zlib_expansion_bound(self):
        """Compressed data that inflates beyond the rectangle is refused."""
        body = zlib.compress(b"\x00" * 100000)
        self.fails(update(rect_header(0, 0, 2, 2, enc.ZLIB) + struct.pack(">I", len(body)) + body),
                   "expands beyond")

    def test_zrle_leftover(self):
        """ZRLE tile data longer than the tiles is refused."""
        body = zlib.compress(b"\x01\x00\x00\x00\x99")
        self.fails(update(rect_header(0, 0, 2, 2, enc.ZRLE) + struct.pack(">I", len(body)) + body),
                   "left over")

    def test_zrle_bad_subencoding(self):
        """Reserved ZRLE subencodings are refused."""
        body = zlib.compress(b"\x11")
        self.fails(update(rect_header(0, 0, 2, 2, enc.ZRLE) + struct.pack(">I", len(body)) + body),
                   "invalid ZRLE subencoding 17")

    def test_tight_too_wide(self):
        """Tight rectangles wider than 2048 pixels are refused."""
        self.fails(update(rect_header(0, 0, 2049, 1, enc.TIGHT)), "exceeds 2048", width=3000)

    def test_tight_bad_control(self):
        """Tight control 0xA0 (neither fill nor JPEG) is refused."""
        self.fails(update(rect_header(0, 0, 2, 2, enc.TIGHT) + b"\xa0"), "compression control")

    def test_tight_palette_index(self):
        """A Tight palette index past the palette is refused."""
        data = rect_header(0, 0, 2, 1, enc.TIGHT) + b"\x40\x01\x02" + bytes(9) + b"\x00\x07"
        self.fails(update(data), "beyond the palette")

    def test_tight_bad_jpeg(self):
        """Data that is not a JPEG of the rectangle's size is refused."""
        self.fails(update(rect_header(0, 0, 2, 2, enc.TIGHT) + b"\x90\x03abc"), "JPEG")

    def test_hextile_subrect_outside(self):
        """A Hextile subrectangle outside its tile is refused."""
        data = rect_header(0, 0, 4, 4, enc.HEXTILE) + b"\x0e" + bytes(8) + b"\x01\x33\x11"
        self.fails(update(data), "outside its tile")

    def test_hextile_without_background(self):
        """A first Hextile tile without a background is refused."""
        self.fails(update(rect_header(0, 0, 4, 4, enc.HEXTILE) + b"\x00"), "background")

    def test_name_too_long(self):
        """A desktop name beyond the limit is refused before it is read."""
        data = rect_header(0, 0, 0, 0, enc.DESKTOP_NAME) + struct.pack(">I", MAX_NAME_LENGTH + 1)
        self.fails(update(data), "desktop name")

    def test_cursor_too_big(self):
        """A cursor beyond the limit is refused before its pixels are read."""
        side = MAX_CURSOR_SIDE + 1
        self.fails(update(rect_header(0, 0, side, 1, enc.CURSOR)), "cursor")

    def test_framebuffer_too_big(self):
        """A desktop size beyond the pixel limit is refused."""
        decoder = FramebufferDecoder(W, H, DEFAULT_FORMAT, max_pixels=10000)
        self.assertRaises(DecodeError, events_of, decoder, update(pseudo.desktop_size(200, 200)))

    def test_initial_size_checked(self):
        """The size given at creation is checked against the limit too."""
        self.assertRaises(DecodeError, FramebufferDecoder, 200, 200, DEFAULT_FORMAT,
                          max_pixels=10000)


ENCODINGS = [enc.RAW, enc.COPYRECT, enc.HEXTILE, enc.ZLIB, enc.ZRLE, enc.TIGHT, enc.CURSOR,
             enc.DESKTOP_SIZE, enc.EXTENDED_DESKTOP_SIZE, enc.DESKTOP_NAME, enc.QEMU_LED_STATE,
             enc.LAST_RECT, enc.QEMU_EXTENDED_KEY_EVENT, enc.QEMU_POINTER_MOTION_CHANGE, 99]

#: Peak Python/numpy allocation allowed while decoding garbage into a 64x48
#: framebuffer: legitimate work needs well under a megabyte.
GARBAGE_PEAK = 8 * 1024 * 1024


@st.composite
def payloads(draw, number):
    """Random bytes, or random bytes behind the right framing so they reach the
    inner parser of the encoding (a zlib stream, a Tight control byte)."""
    junk = draw(st.binary(max_size=600))
    style = draw(st.sampled_from(["raw", "wrapped"]))
    if style == "raw":
        return junk
    if number in (enc.ZLIB, enc.ZRLE):
        z = zlib.compress(junk)
        return struct.pack(">I", len(z)) + z
    if number == enc.TIGHT:
        ctl = draw(st.integers(0, 255))
        z = zlib.compress(junk)
        length = draw(st.sampled_from([len(z), len(junk)]))
        filt = draw(st.sampled_from([b"", b"\x00", b"\x01\x01", b"\x01\xff", b"\x02"]))
        return bytes([ctl]) + filt + bytes([0x80 | (length & 0x7F), length >> 7]) + z
    return junk


@st.composite
def garbage_updates(draw):
    number = draw(st.sampled_from(ENCODINGS))
    inside = draw(st.booleans())
    if inside:
        x, y = draw(st.integers(0, 8)), draw(st.integers(0, 8))
        w, h = draw(st.integers(1, W - 8)), draw(st.integers(1, H - 8))
    else:
        x, y = draw(st.integers(0, 70)), draw(st.integers(0, 50))
        w, h = draw(st.integers(0, 70)), draw(st.integers(0, 50))
    count = draw(st.integers(1, 3))
    head = struct.pack(">BxH", 0, count)
    return head + rect_header(x, y, w, h, number) + draw(payloads(number)) + draw(
        st.binary(max_size=200))


class GarbageTests(SynchronousTestCase):
    @settings(max_examples=400, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(garbage_updates(), st.sampled_from([DEFAULT_FORMAT,
                                              PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0),
                                              PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)]),
           st.integers(1, 64))
    def test_garbage(self, data, pf, chunk):
        """Garbage for every decoder yields events, NEED_DATA or DecodeError -- nothing
        else -- and never allocates more than a few megabytes."""
        decoder = FramebufferDecoder(W, H, pf)
        tracemalloc.start()
        try:
            for i in range(0, len(data), chunk):
                decoder.receive_data(data[i:i + chunk])
                while True:
                    event = decoder.next_event()
                    if event is NEED_DATA or isinstance(event, UpdateComplete):
                        break
        except DecodeError:
            pass
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        self.assertLess(peak, GARBAGE_PEAK)

    @settings(max_examples=100, deadline=None)
    @given(st.integers(0, 2 ** 32 - 1), st.integers(1, 4000))
    def test_truncated_zrle(self, seed, cut):
        """A valid ZRLE update cut short just waits for the rest."""
        f = frame(seed % 1000)
        data = update(b"".join(encode_zrle(f, 0, 0, W, H, EncodeParams(DEFAULT_FORMAT))
                               .chunks(False)))
        decoder = FramebufferDecoder(W, H, DEFAULT_FORMAT)
        cut = min(cut, len(data) - 1)
        decoder.receive_data(data[:cut])
        self.assertIs(decoder.next_event(), NEED_DATA)
        self.assertEqual(events_of(decoder, data[cut:])[-1], UpdateComplete())
