"""Tests for the pixel encoders: round trips, byte layouts, shareable output."""

import struct
import zlib

import numpy as np
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vncd import encoding as enc
from vncd.encoding import EncodedRect, EncodeParams
from vncd.encoding.convert import converter_for
from vncd.encoding.copyrect import encode_copyrect
from vncd.encoding.decode import FramebufferDecoder, NEED_DATA, RectDecoded, UpdateComplete
from vncd.encoding.hextile import encode_hextile
from vncd.encoding.messages import framebuffer_update
from vncd.encoding.raw import encode_raw
from vncd.encoding import tight
from vncd.encoding.tight import MAX_WIDTH, compact_length, encode_tight
from vncd.encoding.zlib import encode_zlib
from vncd.encoding.zrle import encode_zrle
from vncd.pixels import DEFAULT_FORMAT, PixelFormat

ENCODERS = {enc.RAW: encode_raw, enc.HEXTILE: encode_hextile, enc.ZLIB: encode_zlib,
            enc.ZRLE: encode_zrle, enc.TIGHT: encode_tight}

FORMATS = {
    "server": DEFAULT_FORMAT,
    "novnc": PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16),
    "high-bytes-be": PixelFormat(32, 24, True, True, 255, 255, 255, 24, 16, 8),
    "rgb565-be": PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0),
    "rgb555-le": PixelFormat(16, 15, False, True, 31, 31, 31, 10, 5, 0),
    "bgr233": PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6),
    "colour-map": PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0),
    "32-depth-16": PixelFormat(32, 16, False, True, 31, 63, 31, 11, 5, 0),
}

RED = (255, 0, 0)
WHITE = (255, 255, 255)
A = (1, 2, 3)
B = (4, 5, 6)


def picture(kind: str, h: int = 150, w: int = 237, seed: int = 1) -> np.ndarray:
    """Test pictures: a desktop-like mix, noise, one colour, a gradient."""
    rng = np.random.default_rng(seed)
    f = np.zeros((h, w, 4), dtype=np.uint8)
    if kind == "desktop":
        f[..., :3] = (58, 110, 165)
        f[h // 15:h * 2 // 5, 5:w // 2, :3] = WHITE
        f[h // 12:h * 2 // 5:6, 10:w // 2 - 10:2, :3] = 0
        f[h // 2:, :, :3] = rng.integers(0, 4, (h - h // 2, w, 1)) * 60
        f[:, -9:, :3] = rng.integers(0, 256, (h, 9, 3))
        f[..., 3] = rng.integers(0, 256, (h, w))
    elif kind == "noise":
        f[...] = rng.integers(0, 256, (h, w, 4))
    elif kind == "solid":
        f[..., :3] = (12, 200, 99)
    else:
        f[..., 0] = np.arange(w) * 255 // max(1, w - 1)
        f[..., 1] = (np.arange(h) * 255 // max(1, h - 1))[:, None]
        f[..., 2] = 128
    return f


def frame_of(*rows):
    """An RGBX frame from rows of (r, g, b) pixels."""
    f = np.zeros((len(rows), len(rows[0]), 4), dtype=np.uint8)
    f[..., :3] = rows
    return f


def decode_all(decoder: FramebufferDecoder, data: bytes, chunk: int = 997) -> list:
    """Feed an update to a decoder in chunks; return its events (UpdateComplete last)."""
    events = []
    for i in range(0, len(data), chunk):
        decoder.receive_data(data[i:i + chunk])
        while True:
            event = decoder.next_event()
            if event is NEED_DATA:
                break
            events.append(event)
            if isinstance(event, UpdateComplete):
                return events
    raise AssertionError("update did not complete")


def update_bytes(rects: list[EncodedRect], started: set) -> bytes:
    """A FramebufferUpdate carrying ``rects`` for a connection whose zlib
    streams in ``started`` are already in use (updated in place)."""
    out = [framebuffer_update(sum(r.count for r in rects))]
    for r in rects:
        out += r.chunks(r.stream in started)
        if r.stream is not None:
            started.add(r.stream)
    return b"".join(out)


class RoundTripTests(SynchronousTestCase):
    def check(self, number, pf, frame, rects, params_args=()):
        decoder = FramebufferDecoder(frame.shape[1], frame.shape[0], pf)
        started = set()
        for x, y, w, h in rects:
            r = ENCODERS[number](frame, x, y, w, h, EncodeParams(pf, *params_args))
            decode_all(decoder, update_bytes([r], started))
        return decoder

    def test_every_encoding_and_format(self):
        """Every encoding decodes to exactly the converted framebuffer, in every pixel
        format and for every kind of picture, over several updates."""
        rects = [(0, 0, 237, 150), (3, 7, 100, 33), (200, 100, 37, 50), (17, 64, 1, 1)]
        for name, pf in FORMATS.items():
            conv = converter_for(pf)
            for kind in ("desktop", "noise", "solid", "gradient"):
                frame = picture(kind)
                for number in ENCODERS:
                    decoder = self.check(number, pf, frame, rects)
                    self.assertTrue(np.array_equal(decoder.values, conv.values(frame)),
                                    f"{enc.ENCODING_NAMES[number]} in {name} on {kind}")

    def test_compression_levels(self):
        """Every compression level gives the same pixels."""
        frame = picture("desktop")
        conv = converter_for(DEFAULT_FORMAT)
        for number in (enc.ZLIB, enc.ZRLE, enc.TIGHT):
            for level in (0, 1, 6, 9):
                decoder = self.check(number, DEFAULT_FORMAT, frame, [(0, 0, 237, 150)], (level,))
                self.assertTrue(np.array_equal(decoder.values, conv.values(frame)))

    def test_wide_rectangle(self):
        """A rectangle wider than Tight's limit is split and still round-trips."""
        frame = picture("desktop", h=20, w=MAX_WIDTH + 300)
        r = encode_tight(frame, 0, 0, frame.shape[1], 20, EncodeParams(DEFAULT_FORMAT))
        self.assertEqual(r.count, 2)
        decoder = FramebufferDecoder(frame.shape[1], 20, DEFAULT_FORMAT)
        events = decode_all(decoder, update_bytes([r], set()))
        self.assertEqual([(e.x, e.width) for e in events if isinstance(e, RectDecoded)],
                         [(0, MAX_WIDTH), (MAX_WIDTH, 300)])
        self.assertTrue(np.array_equal(decoder.values, converter_for(DEFAULT_FORMAT).values(frame)))

    def test_jpeg(self):
        """Tight JPEG stays within a small error of the picture at a high quality."""
        frame = picture("gradient", h=96, w=128)
        for pf in (DEFAULT_FORMAT, FORMATS["rgb565-be"]):
            r = encode_tight(frame, 0, 0, 128, 96, EncodeParams(pf, 1, 95))
            self.assertEqual(r.data[12], 0x90)
            decoder = FramebufferDecoder(128, 96, pf)
            decode_all(decoder, update_bytes([r], set()))
            got = decoder.rgbx()[..., :3].astype(int)
            want = converter_for(pf).rgbx_of(frame)[..., :3].astype(int)
            self.assertLess(float(np.abs(got - want).mean()), 4.0)

    def test_jpeg_only_for_full_colour(self):
        """With JPEG allowed, few-colour areas still go lossless (palette)."""
        frame = picture("desktop")
        r = encode_tight(frame, 0, 0, 100, 60, EncodeParams(DEFAULT_FORMAT, 1, 50))
        self.assertEqual(r.data[12] & 0xF0, 0x50)

    def test_no_jpeg_at_8_bits(self):
        """An 8-bpp client never gets JPEG, even when it is allowed."""
        frame = picture("noise", h=64, w=64)
        pf = FORMATS["bgr233"]
        r = encode_tight(frame, 0, 0, 64, 64, EncodeParams(pf, 1, 50))
        self.assertNotEqual(r.data[12] & 0xF0, 0x90)
        decoder = FramebufferDecoder(64, 64, pf)
        decode_all(decoder, update_bytes([r], set()))
        self.assertTrue(np.array_equal(decoder.values, converter_for(pf).values(frame)))

    @settings(max_examples=60, deadline=None)
    @given(st.sampled_from(sorted(ENCODERS)), st.sampled_from(sorted(FORMATS)),
           st.integers(1, 80), st.integers(1, 70), st.integers(0, 2 ** 32 - 1),
           st.sampled_from([2, 5, 256]))
    def test_random_pictures(self, number, fmt, w, h, seed, colours):
        """Random pictures of any size and colour count round-trip exactly."""
        rng = np.random.default_rng(seed)
        palette = rng.integers(0, 256, (colours, 4), dtype=np.uint8)
        frame = palette[rng.integers(0, colours, (h, w))]
        pf = FORMATS[fmt]
        decoder = self.check(number, pf, frame, [(0, 0, w, h)])
        self.assertTrue(np.array_equal(decoder.values, converter_for(pf).values(frame)))


def body(rect: EncodedRect) -> bytes:
    """The payload after the 12-byte rectangle header."""
    return rect.data[12:]


class RawLayoutTests(SynchronousTestCase):
    def test_raw(self):
        """Raw: the header, then each pixel's bytes in scanline order (rfbproto)."""
        r = encode_raw(frame_of([A, B]), 0, 0, 2, 1, EncodeParams(DEFAULT_FORMAT))
        self.assertEqual(r.data, bytes.fromhex("0000 0000 0002 0001 00000000"
                                               "03020100 06050400"))

    def test_copyrect(self):
        """CopyRect: the header, then the source position."""
        r = encode_copyrect(5, 6, 10, 20, 30, 40)
        self.assertEqual(r.data, bytes.fromhex("000a 0014 001e 0028 00000001 0005 0006"))


class HextileLayoutTests(SynchronousTestCase):
    def hextile(self, frame):
        h, w = frame.shape[:2]
        return body(encode_hextile(frame, 0, 0, w, h, EncodeParams(DEFAULT_FORMAT)))

    def test_solid_tiles(self):
        """A solid tile is its background; the next tile of that colour is one zero byte."""
        frame = frame_of(*[[RED] * 32] * 16)
        self.assertEqual(self.hextile(frame), bytes.fromhex("02 0000ff00 00"))

    def test_two_colour_tile(self):
        """A two-colour tile: majority background, one foreground, uncoloured subrects."""
        frame = frame_of([WHITE, (0, 0, 0), WHITE, WHITE], [WHITE] * 4)
        self.assertEqual(self.hextile(frame),
                         bytes.fromhex("0e ffffff00 00000000 01 10 00"))

    def test_coloured_subrects(self):
        """More colours: background plus coloured one-row subrectangles."""
        row = [WHITE] * 16
        row[3] = RED
        row[9:11] = [(0, 255, 0)] * 2
        self.assertEqual(self.hextile(frame_of(row)),
                         bytes.fromhex("1a ffffff00 02 0000ff00 30 00 00ff0000 90 10"))

    def test_raw_tile(self):
        """A tile whose subrects would not be smaller is sent raw."""
        frame = frame_of([A, B], [RED, WHITE])
        self.assertEqual(self.hextile(frame),
                         bytes.fromhex("01 03020100 06050400 0000ff00 ffffff00"))

    def test_background_after_raw_tile(self):
        """After a raw tile the background is given again."""
        frame = np.zeros((16, 32, 4), dtype=np.uint8)
        frame[0, 0, :3] = A
        frame[0, 1, :3] = B
        frame[1, 0, :3] = RED
        frame[1, 1, :3] = WHITE
        frame[2:, :16, :3] = (9, 9, 9)
        out = self.hextile(frame)
        self.assertEqual(out[-5:], bytes.fromhex("02 00000000"))


def inflate_stream(*bodies: bytes) -> bytes:
    """What a client's zlib stream yields for these rectangle bodies, the first
    one preceded by the stream header."""
    d = zlib.decompressobj()
    return b"".join(d.decompress(b) for b in (EncodedRect.ZLIB_HEADER + bodies[0],) + bodies[1:])


class ZlibLayoutTests(SynchronousTestCase):
    def test_stored_block(self):
        """Level 0: one stored deflate block and the sync-flush marker (RFC 1951)."""
        r = encode_zlib(frame_of([A]), 0, 0, 1, 1, EncodeParams(DEFAULT_FORMAT, 0))
        self.assertEqual(r.stream, enc.ZLIB)
        self.assertEqual(r.head, bytes.fromhex("0000 0000 0001 0001 00000006"))
        self.assertEqual(r.data, bytes.fromhex("00 0400 fbff 03020100 00 0000 ffff"))

    def test_framing_first_and_later(self):
        """The length covers the zlib header on a stream's first rectangle only."""
        r = encode_zlib(frame_of([A]), 0, 0, 1, 1, EncodeParams(DEFAULT_FORMAT, 0))
        first = b"".join(r.chunks(False))
        later = b"".join(r.chunks(True))
        self.assertEqual(first[12:18], struct.pack(">I", 16) + b"\x78\x01")
        self.assertEqual(later[12:16], struct.pack(">I", 14))
        self.assertEqual(first[18:], later[16:])

    def test_continuity(self):
        """Bodies from independent compressors form one valid stream, in any order."""
        frames = [picture(k, 40, 50) for k in ("desktop", "noise", "gradient")]
        rects = [encode_zlib(f, 0, 0, 50, 40, EncodeParams(DEFAULT_FORMAT, 6)) for f in frames]
        conv = converter_for(DEFAULT_FORMAT)
        for order in ((0, 1, 2), (2, 0, 1), (1, 1, 0)):
            out = inflate_stream(*(rects[i].data for i in order))
            self.assertEqual(out, b"".join(conv.raw(frames[i]) for i in order))


class ZrleLayoutTests(SynchronousTestCase):
    def tiles(self, frame):
        h, w = frame.shape[:2]
        r = encode_zrle(frame, 0, 0, w, h, EncodeParams(DEFAULT_FORMAT))
        self.assertEqual(r.head[-4:], struct.pack(">i", enc.ZRLE))
        return inflate_stream(r.data)

    def test_solid(self):
        """A one-colour tile is subencoding 1 and a 3-byte CPIXEL."""
        self.assertEqual(self.tiles(frame_of([A] * 5)), bytes.fromhex("01 030201"))

    def test_packed_palette(self):
        """Two colours: subencoding 2, the palette, 1-bit indices MSB first."""
        self.assertEqual(self.tiles(frame_of([A] * 4 + [B] * 4)),
                         bytes.fromhex("02 030201 060504 0f"))

    def test_packed_palette_4_bits(self):
        """Five colours: 4-bit indices, rows padded to whole bytes."""
        colours = [(i, i, i) for i in range(5)]
        out = self.tiles(frame_of(colours, colours[::-1]))
        self.assertEqual(out, bytes.fromhex("05 000000 010101 020202 030303 040404"
                                            "01 23 40" "43 21 00"))

    def test_plain_rle(self):
        """Plain RLE: CPIXEL then the run length as 255s and a remainder."""
        flat = [A] * 4000 + [B] * 95 + [RED]
        frame = frame_of(*[flat[i:i + 64] for i in range(0, 4096, 64)])
        self.assertEqual(self.tiles(frame),
                         bytes.fromhex("80 030201" + "ff" * 15 + "ae" "060504 5e" "0000ff 00"))

    def test_palette_rle(self):
        """Palette RLE: 128 + palette size, the palette, then index bytes (runs of one)."""
        colours = [(i, 0, 0) for i in range(17)]
        out = self.tiles(frame_of(colours + colours))
        palette = b"".join(bytes([0, 0, i]) for i in range(17))
        self.assertEqual(out, bytes([128 + 17]) + palette + bytes(range(17)) * 2)

    def test_raw_tile(self):
        """A tile of many colours and no runs is raw CPIXELs."""
        rng = np.random.default_rng(7)
        frame = rng.integers(0, 256, (3, 3, 4), dtype=np.uint8)
        out = self.tiles(frame)
        self.assertEqual(out, b"\x00" + converter_for(DEFAULT_FORMAT).cpixels(frame).tobytes())

    def test_tiles_in_order(self):
        """A 65-pixel-wide rectangle is two tiles, left then right."""
        frame = frame_of([A] * 64 + [B])
        self.assertEqual(self.tiles(frame), bytes.fromhex("01 030201 01 060504"))


class TightLayoutTests(SynchronousTestCase):
    def tight(self, frame, pf=DEFAULT_FORMAT, quality=None):
        h, w = frame.shape[:2]
        return body(encode_tight(frame, 0, 0, w, h, EncodeParams(pf, 1, quality)))

    def test_fill(self):
        """One colour: FillCompression and an R, G, B TPIXEL."""
        self.assertEqual(self.tight(frame_of(*[[RED] * 4] * 4)), bytes.fromhex("80 ff0000"))

    def test_fill_full_pixel(self):
        """Formats without 3-byte TPIXELs fill with a whole pixel."""
        pf = FORMATS["rgb565-be"]
        self.assertEqual(self.tight(frame_of([RED] * 3), pf), bytes.fromhex("80 f800"))

    def test_two_colour_palette(self):
        """Two colours: palette filter, 1-bit rows; under 12 bytes the data is not compressed."""
        self.assertEqual(self.tight(frame_of([A] * 4 + [B] * 4)),
                         bytes.fromhex("52 01 01 010203 040506 0f"))

    def test_palette_compressed(self):
        """Byte indices of 12 or more are a fresh zlib stream whose reset bit is set."""
        colours = [(i, 0, 0) for i in range(4)]
        out = self.tight(frame_of(colours * 4))
        self.assertEqual(out[:3], bytes.fromhex("52 01 03"))
        self.assertEqual(out[3:15], b"".join(bytes([i, 0, 0]) for i in range(4)))
        length = out[15]
        self.assertEqual(len(out), 16 + length)
        self.assertEqual(zlib.decompressobj().decompress(out[16:]), bytes(range(4)) * 4)

    def test_copy_filter(self):
        """More than 256 colours: basic compression, no filter byte, TPIXELs deflated."""
        rng = np.random.default_rng(2)
        frame = rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)
        out = self.tight(frame)
        self.assertEqual(out[0], 0x01)
        n = out[1] & 0x7F | (out[2] & 0x7F) << 7 if out[1] & 0x80 else out[1]
        start = 3 if out[1] & 0x80 else 2
        self.assertEqual(len(out), start + n)
        self.assertEqual(zlib.decompressobj().decompress(out[start:]),
                         frame[..., :3].tobytes())

    def test_palette_after_other_rectangles(self):
        """Colours an earlier rectangle indexed do not confuse a later palette: a colour
        that only appears between the sampled pixels is still found."""
        many = np.zeros((1, 256, 4), dtype=np.uint8)
        many[0, :, 0] = np.arange(256)
        many[0, :, 1] = 1
        self.tight(many)
        rare = np.zeros((8, 2048, 4), dtype=np.uint8)
        flat = rare.reshape(-1, 4)
        flat[:, 1] = 1
        flat[::4, 1] = 0
        flat[4001, 0] = 200
        out = self.tight(rare)
        self.assertEqual(out[:3], bytes.fromhex("52 01 02"))
        decoder = FramebufferDecoder(2048, 8, DEFAULT_FORMAT)
        decode_all(decoder, update_bytes([encode_tight(rare, 0, 0, 2048, 8,
                                                       EncodeParams(DEFAULT_FORMAT))], set()))
        self.assertTrue(np.array_equal(decoder.values, converter_for(DEFAULT_FORMAT).values(rare)))

    def test_palette_lookup_keeps_nothing(self):
        """The palette lookup leaves nothing behind in its (per-thread) table, so no
        rectangle's encoding can depend on what was encoded before it (by another test,
        in a full run).  The numpy path (the C extension's count keeps no table)."""
        from vncd.encoding import speedups
        self.patch(speedups, "module", None)
        few = frame_of(*[[A, B, RED, WHITE] * 8] * 4)
        for frame in (few, picture("desktop"), picture("noise"), few):
            h, w = frame.shape[:2]
            encode_tight(frame, 0, 0, w, h, EncodeParams(DEFAULT_FORMAT))
            self.assertFalse(tight._local.indexer._table.any())

    def test_jpeg_layout(self):
        """JPEG: control 0x90, compact length, a JFIF stream."""
        out = self.tight(picture("noise", 40, 40), quality=50)
        self.assertEqual(out[0], 0x90)
        start = 3 if out[1] & 0x80 else 2
        self.assertEqual(out[start:start + 2], b"\xff\xd8")

    def test_compact_length(self):
        """rfbproto's examples: 10000 is 90 4E; the code spans 1 to 3 bytes."""
        self.assertEqual(compact_length(10000), bytes.fromhex("904e"))
        self.assertEqual(compact_length(127), bytes.fromhex("7f"))
        self.assertEqual(compact_length(128), bytes.fromhex("8001"))
        self.assertEqual(compact_length(16383), bytes.fromhex("ff7f"))
        self.assertEqual(compact_length(16384), bytes.fromhex("808001"))
        self.assertEqual(compact_length(4194303), bytes.fromhex("ffffff"))
        self.assertRaises(ValueError, compact_length, 4194304)


class SharingTests(SynchronousTestCase):
    def test_output_depends_only_on_pixels(self):
        """Encoding the same pixels twice gives the same bytes, whatever came before."""
        frame = picture("desktop")
        for number, encoder in ENCODERS.items():
            first = encoder(frame, 0, 0, 120, 64, EncodeParams(DEFAULT_FORMAT))
            encoder(picture("noise"), 0, 0, 237, 150, EncodeParams(DEFAULT_FORMAT))
            again = encoder(frame, 0, 0, 120, 64, EncodeParams(DEFAULT_FORMAT))
            self.assertEqual(first, again, enc.ENCODING_NAMES[number])

    def test_one_encoding_serves_clients_at_different_points(self):
        """One ZRLE rectangle decodes on a fresh connection and on one whose stream
        has already carried other rectangles."""
        frame = picture("desktop")
        shared = encode_zrle(frame, 0, 0, 237, 150, EncodeParams(DEFAULT_FORMAT))
        fresh = FramebufferDecoder(237, 150, DEFAULT_FORMAT)
        busy = FramebufferDecoder(237, 150, DEFAULT_FORMAT)
        busy_started = set()
        for kind in ("noise", "gradient"):
            other = encode_zrle(picture(kind), 0, 0, 237, 150, EncodeParams(DEFAULT_FORMAT))
            decode_all(busy, update_bytes([other], busy_started))
        decode_all(fresh, update_bytes([shared], set()))
        decode_all(busy, update_bytes([shared], busy_started))
        want = converter_for(DEFAULT_FORMAT).values(frame)
        self.assertTrue(np.array_equal(fresh.values, want))
        self.assertTrue(np.array_equal(busy.values, want))


class ParallelDeflateTests(SynchronousTestCase):
    """Large inputs are deflated in pieces on threads; one inflater reads them through."""

    def setUp(self):
        from vncd.encoding import deflate
        self.deflate = deflate
        rng = np.random.default_rng(7)
        # Compressible (runs and repeats) and larger than several pieces.
        words = rng.integers(0, 40, 5 * deflate.PARALLEL_PIECE // 8, dtype=np.uint8)
        self.data = np.repeat(words, 8).tobytes() + b"tail"
        from vncd.encoding import parallel
        self.parallel = parallel
        self.patch(parallel, "workers", lambda: 4)

    def test_raw_pieces_inflate_as_one_stream(self):
        """Zlib/ZRLE bodies: a raw deflate sequence that a stream inflates whole."""
        out = self.deflate.deflate_raw(self.data, 1)
        self.assertEqual(inflate_stream(out), self.data)
        self.assertLess(len(out), len(self.data) // 4)

    def test_stream_pieces_inflate_as_one_stream(self):
        """Tight: one zlib header, then every piece (zlib-ng's, as Tight uses)."""
        out = self.deflate.deflate_stream(self.data, 6, fast=True)
        self.assertEqual(out[0], 0x78)  # one zlib header, deflate with a 32 KiB window
        self.assertEqual(zlib.decompressobj().decompress(out), self.data)

    def test_continues_an_earlier_stream(self):
        """A parallel body after an ordinary one on the same connection stream,
        from either engine (ZRLE uses zlib-ng, Zlib stdlib zlib)."""
        small = b"abc" * 100
        for fast in (False, True):
            first = self.deflate.deflate_raw(small, 1, fast=fast)
            self.assertEqual(inflate_stream(first, self.deflate.deflate_raw(self.data, 1,
                                                                            fast=not fast)),
                             small + self.data)

    def test_one_worker_is_serial(self):
        """With one CPU the output is exactly a single compressor's."""
        self.patch(self.parallel, "workers", lambda: 1)
        engine = zlib
        comp = engine.compressobj(self.deflate.engine_level(1, False), engine.DEFLATED, -15)
        self.assertEqual(self.deflate.deflate_raw(self.data, 1),
                         comp.compress(self.data) + comp.flush(engine.Z_SYNC_FLUSH))


class HextileRawRunTests(SynchronousTestCase):
    """Runs of raw tiles are copied in strides; edges, gaps and narrow tiles included."""

    def test_noise_with_solid_gaps_round_trips(self):
        rng = np.random.default_rng(9)
        frame = rng.integers(0, 256, (45, 77, 4), dtype=np.uint8)
        frame[16:32, 16:48] = 5  # two solid tiles break the second row's run
        for pf in (DEFAULT_FORMAT, FORMATS["rgb565-be"], FORMATS["bgr233"]):
            conv = converter_for(pf)
            decoder = FramebufferDecoder(80, 50, pf)
            r = encode_hextile(frame, 3, 2, 70, 40, EncodeParams(pf))
            decode_all(decoder, update_bytes([r], set()))
            self.assertTrue(np.array_equal(decoder.values[2:42, 3:73],
                                           conv.values(frame[2:42, 3:73])))


class ZrleManyColourTests(SynchronousTestCase):
    """Tiles with many colours are decided together; the bytes are what
    writing each tile on its own gives."""

    def one_by_one(self, vals, conv):
        from vncd.encoding import zrle
        h, w = vals.shape
        out = []
        for ty in range(0, h, zrle.TILE):
            for tx in range(0, w, zrle.TILE):
                tile = vals[ty:ty + zrle.TILE, tx:tx + zrle.TILE]
                out.append(zrle._tile(tile, np.unique(tile), conv))
        return b"".join(out)

    def test_same_bytes_as_tile_by_tile(self):
        from vncd.encoding.zrle import zrle_tiles
        rng = np.random.default_rng(4)
        frame = rng.integers(0, 256, (150, 200, 4), dtype=np.uint8)
        frame[:64, :64] = frame[:64, :64] // 64 * 64   # few colours
        frame[64:128, :64, :3] = frame[64:128, :1, :3]  # many colours, long runs
        frame[64:128, 64:128, :3] = frame[64:128, 64:128:2, :3].repeat(2, axis=1)  # pairs
        frame[70, 64:128, :3] = 9                     # a run of 64 in a many-colour tile
        frame[:64, 128:192] = np.repeat(frame[:64, 128:192:4], 4, axis=1)  # runs of 4
        for pf in (DEFAULT_FORMAT, FORMATS["rgb565-be"], FORMATS["32-depth-16"]):
            conv = converter_for(pf)
            for x, y, w, h in ((0, 0, 200, 150), (0, 0, 192, 128), (5, 3, 150, 100)):
                vals = conv.values(frame[y:y + h, x:x + w])
                self.assertEqual(zrle_tiles(vals, conv), self.one_by_one(vals, conv))

    def test_run_longer_than_255_in_a_plain_tile(self):
        """A 300-pixel run in a many-colour tile needs two length bytes."""
        from vncd.encoding.zrle import zrle_tiles
        rng = np.random.default_rng(5)
        frame = np.repeat(rng.integers(0, 256, (64, 32, 4), dtype=np.uint8), 2, axis=1)
        frame.reshape(-1, 4)[1000:1300, :3] = 77
        conv = converter_for(DEFAULT_FORMAT)
        vals = conv.values(frame)
        out = zrle_tiles(vals, conv)
        self.assertEqual(out[0], 0x80)
        self.assertEqual(out, self.one_by_one(vals, conv))


class ParallelTightTests(SynchronousTestCase):
    """A full-width Tight rectangle is encoded piece by piece on threads; the
    bytes are the same as with one thread."""

    def test_same_bytes_with_threads(self):
        from vncd.encoding import parallel
        frame = np.concatenate([picture("desktop", 150, 1920), picture("noise", 150, 1920),
                                picture("solid", 100, 1920)])
        params = EncodeParams(DEFAULT_FORMAT)
        self.patch(parallel, "workers", lambda: 1)
        serial = encode_tight(frame, 0, 0, 1920, 400, params)
        self.patch(parallel, "workers", lambda: 3)
        threaded = encode_tight(frame, 0, 0, 1920, 400, params)
        self.assertEqual(threaded, serial)
        self.assertGreater(serial.count, 2)

    def test_map_ordered_keeps_order_and_nests_serially(self):
        from vncd.encoding import parallel
        self.patch(parallel, "workers", lambda: 3)
        inner = []

        def work(i):
            inner.append(parallel.map_ordered(lambda j: j * i, [1, 2]))
            return i * i

        self.assertEqual(parallel.map_ordered(work, list(range(10))),
                         [i * i for i in range(10)])
        self.assertEqual(sorted(map(tuple, inner)), sorted((i, 2 * i) for i in range(10)))
