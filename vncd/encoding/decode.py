# -*- test-case-name: tests.vncd.test_decode -*-
"""Decoding FramebufferUpdate messages: a sans-I/O decoder for RFB clients.

:class:`FramebufferDecoder` holds one connection's framebuffer and its
decoding state (the Zlib and ZRLE zlib streams, Tight's four streams,
the colour map) and decodes every encoding and pseudo-encoding that
vncd's encoders produce, plus Tight's gradient filter and the QEMU
pointer-motion pseudo-encoding that other servers send.

How an RFB client uses it (h11 style, bytes in, events out)::

    decoder = FramebufferDecoder(width, height, pixel_format)
    # The client's message parser sees message type 0 at the front of its
    # buffer: it hands over everything from that byte on.
    decoder.receive_data(buffer)
    while True:
        event = decoder.next_event()
        if event is NEED_DATA:
            break                  # feed more bytes with receive_data()
        if isinstance(event, UpdateComplete):
            buffer = decoder.trailing_data   # belongs to the next message
            break
        ...                        # RectDecoded, DesktopSizeChanged, ...

While an update is in progress (``decoder.in_update``), every byte the
client receives goes to :meth:`FramebufferDecoder.receive_data`; once
:class:`UpdateComplete` has been returned, :attr:`trailing_data` holds the
bytes that followed the update and the decoder waits for the next one.

Pixels are kept as pixel values of the client's format
(:attr:`FramebufferDecoder.values`, ``(h, w)`` uint32);
:meth:`FramebufferDecoder.rgbx` renders them as an RGBX array.  Call
:meth:`~FramebufferDecoder.set_pixel_format` when the client sends
SetPixelFormat and :meth:`~FramebufferDecoder.set_colour_map_entries`
when the server sends SetColourMapEntries.

Errors: anything the server sends that cannot be decoded -- an unknown
encoding, a rectangle outside the framebuffer, corrupt compressed data,
a length beyond the limits below -- raises :class:`DecodeError`, and the
decoder is unusable afterwards (the connection must be closed, since the
byte stream can no longer be followed).  Nothing a server sends makes
the decoder allocate more than the limits allow: every length is checked
before bytes are waited for, and every decompression is bounded by the
size the rectangle can legitimately have.

This module knows nothing about sockets, Twisted or the rest of RFB.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Generator, Union

import numpy as np
from PIL import Image

from vncd.encoding import (
    COPYRECT, CURSOR, DESKTOP_NAME, DESKTOP_SIZE, EXTENDED_DESKTOP_SIZE, HEXTILE,
    LAST_RECT, QEMU_EXTENDED_KEY_EVENT, QEMU_LED_STATE, QEMU_POINTER_MOTION_CHANGE,
    RAW, TIGHT, ZLIB, ZRLE,
)
from vncd.encoding.convert import PixelConverter
from vncd.pixels import PixelFormat

__all__ = [
    "FramebufferDecoder", "DecodeError", "NEED_DATA",
    "RectDecoded", "DesktopSizeChanged", "CursorChanged", "DesktopNameChanged",
    "LedStateChanged", "QemuExtendedKeyEventSupported", "PointerMotionChanged",
    "UpdateComplete", "Event",
    "MAX_FRAMEBUFFER_PIXELS", "MAX_CURSOR_SIDE", "MAX_NAME_LENGTH",
]

#: Largest framebuffer accepted: 8K UHD is 33 M pixels; the pixel values
#: take 4 bytes each, so this bounds the decoder at 256 MiB.
MAX_FRAMEBUFFER_PIXELS = 64 * 1024 * 1024

#: Widest and tallest cursor accepted (X servers allow 256x256 cursors;
#: anything larger is not a cursor).
MAX_CURSOR_SIDE = 1024

#: Longest desktop name accepted (QEMU formats names into 1 KiB; 64 KiB
#: leaves room for any sensible UTF-8 name).
MAX_NAME_LENGTH = 64 * 1024

#: Slack allowed above the uncompressed size of a zlib-compressed
#: rectangle: deflate's stored blocks add 5 bytes per 64 KiB, flushes a
#: few more; twice the data plus 4 KiB is far beyond any real stream.
_ZLIB_SLACK = 4096

#: Widest Tight rectangle (rfbproto).
TIGHT_MAX_WIDTH = 2048


class DecodeError(ValueError):
    """The server sent something that cannot be decoded (the message says what)."""


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: Returned by :meth:`FramebufferDecoder.next_event` when more bytes are needed.
NEED_DATA = _Sentinel("NEED_DATA")


@dataclass(frozen=True)
class RectDecoded:
    """Pixels of this rectangle were written into the framebuffer."""

    x: int
    y: int
    width: int
    height: int
    encoding: int


@dataclass(frozen=True)
class DesktopSizeChanged:
    """DesktopSize or ExtendedDesktopSize.

    For DesktopSize, ``extended`` is false and reason, status and screens
    are zero/empty.  When ``status`` is not 0 (a refused SetDesktopSize)
    the framebuffer is unchanged.
    """

    width: int
    height: int
    extended: bool = False
    reason: int = 0
    status: int = 0
    #: ``(id, x, y, width, height, flags)`` per screen.
    screens: tuple = ()


@dataclass(frozen=True)
class CursorChanged:
    """New cursor shape: ``rgba`` is ``(h, w, 4)`` uint8, alpha 0 or 255."""

    hot_x: int
    hot_y: int
    rgba: np.ndarray = field(compare=False)


@dataclass(frozen=True)
class DesktopNameChanged:
    name: str


@dataclass(frozen=True)
class LedStateChanged:
    """QEMU LED state: bit 0 Scroll Lock, bit 1 Num Lock, bit 2 Caps Lock."""

    state: int


@dataclass(frozen=True)
class QemuExtendedKeyEventSupported:
    """The server accepts QEMU extended key events (raw keycodes)."""


@dataclass(frozen=True)
class PointerMotionChanged:
    """QEMU pointer motion change: absolute (True) or relative coordinates."""

    absolute: bool


@dataclass(frozen=True)
class UpdateComplete:
    """The FramebufferUpdate is over; :attr:`~FramebufferDecoder.trailing_data` follows it."""


Event = Union[RectDecoded, DesktopSizeChanged, CursorChanged, DesktopNameChanged,
              LedStateChanged, QemuExtendedKeyEventSupported, PointerMotionChanged,
              UpdateComplete]

# A parser is a generator that yields either an int (the number of bytes it
# needs; the driver sends them back) or an event (sent on to the caller).
_Parser = Generator[Union[int, object], Union[bytes, None], None]

_RECT = struct.Struct(">HHHHi")

# Hextile subencoding bits.
_HX_RAW, _HX_BG, _HX_FG, _HX_ANY, _HX_COLOURED = 1, 2, 4, 8, 16


class FramebufferDecoder:
    """One connection's framebuffer and decoding state (see the module docstring)."""

    def __init__(self, width: int, height: int, pf: PixelFormat, *,
                 max_pixels: int = MAX_FRAMEBUFFER_PIXELS) -> None:
        self.max_pixels = max_pixels
        self._check_size(width, height)
        self.width = width
        self.height = height
        self.pf = pf
        self._conv = PixelConverter(pf)
        #: Pixel values of the client's format, ``(height, width)`` uint32.
        self.values = np.zeros((height, width), dtype=np.uint32)
        #: The colour map set by SetColourMapEntries, ``(n, 3)`` uint8.
        self.colour_map = np.zeros((0, 3), dtype=np.uint8)
        self._zlib = None
        self._zrle = None
        self._tight: list = [None, None, None, None]
        self._buf = bytearray()
        self._pos = 0
        self._parser: _Parser | None = None
        self._want: int | None = None
        self._broken: DecodeError | None = None
        #: Bytes after the end of the last complete update.
        self.trailing_data = b""

    # -- state the client changes --------------------------------------------

    def _check_size(self, width: int, height: int) -> None:
        if width * height > self.max_pixels:
            raise DecodeError(f"framebuffer {width}x{height} exceeds the limit of "
                              f"{self.max_pixels} pixels")

    def set_pixel_format(self, pf: PixelFormat) -> None:
        """The client sent SetPixelFormat: later rectangles use ``pf``.

        The pixels already held are converted, so :meth:`rgbx` stays right.
        """
        rgbx = self.rgbx()
        self.pf = pf
        self._conv = PixelConverter(pf)
        self.values = self._conv.values(rgbx).astype(np.uint32)

    def set_colour_map_entries(self, first: int, colours) -> None:
        """SetColourMapEntries: ``colours`` are (r, g, b) 16-bit intensities."""
        colours = np.asarray(colours, dtype=np.uint32).reshape(-1, 3)
        end = first + len(colours)
        if end > 65536:
            raise DecodeError("colour map entries past index 65535")
        if end > len(self.colour_map):
            grown = np.zeros((end, 3), dtype=np.uint8)
            grown[:len(self.colour_map)] = self.colour_map
            self.colour_map = grown
        self.colour_map[first:end] = colours >> 8

    def rgbx(self) -> np.ndarray:
        """The framebuffer as an ``(h, w, 4)`` RGBX array (X = 0)."""
        cmap = None if self.pf.true_colour else self.colour_map
        return self._conv.rgbx_from_values(self.values, cmap)

    # -- bytes in, events out ---------------------------------------------------

    @property
    def in_update(self) -> bool:
        """True between the first byte of an update and its UpdateComplete."""
        return self._parser is not None

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server, starting with a FramebufferUpdate's type byte."""
        if self._broken is not None:
            raise self._broken
        if self._parser is None and self._pos == len(self._buf):
            self._buf = bytearray()
            self._pos = 0
        self._buf += data

    def next_event(self) -> Event | _Sentinel:
        """The next event, or :data:`NEED_DATA`."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._next()
        except DecodeError as exc:
            self._broken = exc
            self._parser = None
            raise

    def _next(self):
        if self._parser is None:
            if len(self._buf) - self._pos < 1:
                return NEED_DATA
            self._parser = self._update()
            self._want = None
            reply = None
        else:
            reply = None
            if self._want is not None:
                if len(self._buf) - self._pos < self._want:
                    return NEED_DATA
                reply = bytes(self._buf[self._pos:self._pos + self._want])
                self._pos += self._want
                self._want = None
        while True:
            try:
                item = self._parser.send(reply)
            except StopIteration:
                raise DecodeError("update parser ended without completing") from None
            if isinstance(item, int):
                if len(self._buf) - self._pos < item:
                    self._want = item
                    self._compact()
                    return NEED_DATA
                reply = bytes(self._buf[self._pos:self._pos + item])
                self._pos += item
                continue
            if isinstance(item, UpdateComplete):
                self._parser = None
                self.trailing_data = bytes(self._buf[self._pos:])
                self._buf = bytearray()
                self._pos = 0
            return item

    def _compact(self) -> None:
        if self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[:self._pos]
            self._pos = 0

    # -- parsers ------------------------------------------------------------------

    def _update(self) -> _Parser:
        head = yield 4
        if head[0] != 0:
            raise DecodeError(f"message type {head[0]} is not a FramebufferUpdate")
        (count,) = struct.unpack(">H", head[2:4])
        remaining = count
        while remaining:
            x, y, w, h, enc = _RECT.unpack((yield 12))
            if enc == LAST_RECT:
                break
            yield from self._rect(x, y, w, h, enc)
            remaining -= 1
        yield UpdateComplete()

    def _rect(self, x, y, w, h, enc) -> _Parser:
        pixel_encodings = {RAW: self._raw, COPYRECT: self._copyrect, HEXTILE: self._hextile,
                           ZLIB: self._zlib_rect, ZRLE: self._zrle_rect, TIGHT: self._tight_rect}
        if enc in pixel_encodings:
            if x + w > self.width or y + h > self.height:
                raise DecodeError(f"rectangle {w}x{h} at {x},{y} (encoding {enc}) lies outside "
                                  f"the {self.width}x{self.height} framebuffer")
            yield from pixel_encodings[enc](x, y, w, h)
            yield RectDecoded(x, y, w, h, enc)
        elif enc == DESKTOP_SIZE:
            self._resize(w, h)
            yield DesktopSizeChanged(w, h)
        elif enc == EXTENDED_DESKTOP_SIZE:
            (n,) = struct.unpack(">B3x", (yield 4))
            raw = (yield 16 * n) if n else b""
            screens = tuple(struct.iter_unpack(">IHHHHI", raw))
            if not (x == 1 and y != 0):
                self._resize(w, h)
            yield DesktopSizeChanged(w, h, True, x, y, screens)
        elif enc == CURSOR:
            yield from self._cursor(x, y, w, h)
        elif enc == DESKTOP_NAME:
            (n,) = struct.unpack(">I", (yield 4))
            if n > MAX_NAME_LENGTH:
                raise DecodeError(f"desktop name of {n} bytes exceeds the limit of "
                                  f"{MAX_NAME_LENGTH}")
            name = (yield n) if n else b""
            yield DesktopNameChanged(name.decode("utf-8", "replace"))
        elif enc == QEMU_LED_STATE:
            yield LedStateChanged((yield 1)[0])
        elif enc == QEMU_EXTENDED_KEY_EVENT:
            yield QemuExtendedKeyEventSupported()
        elif enc == QEMU_POINTER_MOTION_CHANGE:
            yield PointerMotionChanged(bool(x))
        else:
            raise DecodeError(f"unknown encoding {enc}")

    def _resize(self, w: int, h: int) -> None:
        self._check_size(w, h)
        if (w, h) != (self.width, self.height):
            self.width, self.height = w, h
            self.values = np.zeros((h, w), dtype=np.uint32)

    def _pixels(self, data: bytes, w: int, h: int) -> np.ndarray:
        arr = np.frombuffer(data, dtype=np.uint8).reshape(h, w, self._conv.bpp)
        return self._conv.values_from_wire(arr)

    def _raw(self, x, y, w, h) -> _Parser:
        n = w * h * self._conv.bpp
        if n:
            self.values[y:y + h, x:x + w] = self._pixels((yield n), w, h)

    def _copyrect(self, x, y, w, h) -> _Parser:
        sx, sy = struct.unpack(">HH", (yield 4))
        if sx + w > self.width or sy + h > self.height:
            raise DecodeError(f"CopyRect source {w}x{h} at {sx},{sy} lies outside the "
                              "framebuffer")
        self.values[y:y + h, x:x + w] = self.values[sy:sy + h, sx:sx + w]

    def _hextile(self, x, y, w, h) -> _Parser:
        bpp = self._conv.bpp
        bg = fg = None
        for ty in range(y, y + h, 16):
            th = min(16, y + h - ty)
            for tx in range(x, x + w, 16):
                tw = min(16, x + w - tx)
                mask = (yield 1)[0]
                tile = self.values[ty:ty + th, tx:tx + tw]
                if mask & _HX_RAW:
                    tile[:] = self._pixels((yield tw * th * bpp), tw, th)
                    continue
                if mask & _HX_BG:
                    bg = self._value((yield bpp))
                if bg is None:
                    raise DecodeError("Hextile tile without a background colour")
                tile[:] = bg
                if mask & _HX_FG:
                    fg = self._value((yield bpp))
                if not mask & _HX_ANY:
                    continue
                n = (yield 1)[0]
                if not n:
                    continue
                coloured = bool(mask & _HX_COLOURED)
                if not coloured and fg is None:
                    raise DecodeError("Hextile subrectangles without a foreground colour")
                rec = bpp + 2 if coloured else 2
                data = yield n * rec
                recs = np.frombuffer(data, dtype=np.uint8).reshape(n, rec)
                xy, wh = recs[:, -2].tolist(), recs[:, -1].tolist()
                colours = (self._conv.values_from_wire(recs[:, :bpp]).tolist() if coloured
                           else [fg] * n)
                for c, p, s in zip(colours, xy, wh):
                    sx, sy, sw, sh = p >> 4, p & 15, (s >> 4) + 1, (s & 15) + 1
                    if sx + sw > tw or sy + sh > th:
                        raise DecodeError("Hextile subrectangle outside its tile")
                    tile[sy:sy + sh, sx:sx + sw] = c

    def _value(self, data: bytes) -> int:
        return int(self._conv.values_from_wire(np.frombuffer(data, dtype=np.uint8))[()])

    def _inflate(self, stream, data: bytes, limit: int, what: str) -> bytes:
        try:
            out = stream.decompress(data, limit + 1)
        except zlib.error as exc:
            raise DecodeError(f"corrupt {what} data: {exc}") from None
        if len(out) > limit or stream.unconsumed_tail:
            raise DecodeError(f"{what} data expands beyond {limit} bytes")
        return out

    def _zlib_length(self, raw_size: int, what: str) -> _Parser:
        (n,) = struct.unpack(">I", (yield 4))
        if n > 2 * raw_size + _ZLIB_SLACK:
            raise DecodeError(f"{what} length {n} is impossible for a rectangle of "
                              f"{raw_size} bytes")
        return n

    def _zlib_rect(self, x, y, w, h) -> _Parser:
        size = w * h * self._conv.bpp
        n = yield from self._zlib_length(size, "Zlib")
        data = (yield n) if n else b""
        if self._zlib is None:
            self._zlib = zlib.decompressobj()
        out = self._inflate(self._zlib, data, size, "Zlib")
        if len(out) != size:
            raise DecodeError(f"Zlib rectangle has {len(out)} bytes of pixels, not {size}")
        if size:
            self.values[y:y + h, x:x + w] = self._pixels(out, w, h)

    def _zrle_rect(self, x, y, w, h) -> _Parser:
        bpc = self._conv.cpixel_size
        tiles = -(-w // 64) * -(-h // 64)
        bound = tiles * (1 + 127 * bpc) + w * h * (bpc + 1)
        n = yield from self._zlib_length(bound, "ZRLE")
        data = (yield n) if n else b""
        if self._zrle is None:
            self._zrle = zlib.decompressobj()
        out = self._inflate(self._zrle, data, bound, "ZRLE")
        _ZrleReader(self, out, bpc).decode(x, y, w, h)

    def _tight_rect(self, x, y, w, h) -> _Parser:
        if w > TIGHT_MAX_WIDTH:
            raise DecodeError(f"Tight rectangle {w} pixels wide exceeds {TIGHT_MAX_WIDTH}")
        ctl = (yield 1)[0]
        for i in range(4):
            if ctl & (1 << i):
                self._tight[i] = None
        comp = ctl >> 4
        tpx = self._conv.tpixel_size
        region = self.values[y:y + h, x:x + w]
        if comp == 8:
            region[:] = self._tpixel_values((yield tpx), 1)[0]
            return
        if comp == 9:
            if self.pf.bits_per_pixel not in (16, 32):
                raise DecodeError("Tight JPEG for a pixel format of "
                                  f"{self.pf.bits_per_pixel} bits per pixel")
            n = yield from self._compact_length()
            region[:] = self._jpeg((yield n), w, h)
            return
        if comp & 8:
            raise DecodeError(f"invalid Tight compression control 0x{ctl:02x}")
        stream = comp & 3
        filter_id = (yield 1)[0] if comp & 4 else 0
        if filter_id == 0:
            size = w * h * tpx
            data = yield from self._tight_data(stream, size)
            if size:
                region[:] = self._tpixel_values(data, w * h).reshape(h, w)
        elif filter_id == 1:
            ncol = (yield 1)[0] + 1
            palette = self._tpixel_values((yield ncol * tpx), ncol)
            size = -(-w // 8) * h if ncol == 2 else w * h
            data = yield from self._tight_data(stream, size)
            if not size:
                return
            raw = np.frombuffer(data, dtype=np.uint8)
            if ncol == 2:
                idx = np.unpackbits(raw.reshape(h, -1), axis=1)[:, :w]
            else:
                idx = raw.reshape(h, w)
                if int(idx.max()) >= ncol:
                    raise DecodeError("Tight palette index beyond the palette")
            region[:] = palette[idx]
        elif filter_id == 2:
            if self.pf.bits_per_pixel not in (16, 32):
                raise DecodeError("Tight gradient filter for a pixel format of "
                                  f"{self.pf.bits_per_pixel} bits per pixel")
            size = w * h * tpx
            data = yield from self._tight_data(stream, size)
            if size:
                region[:] = self._ungradient(self._tpixel_values(data, w * h).reshape(h, w))
        else:
            raise DecodeError(f"unknown Tight filter {filter_id}")

    def _compact_length(self) -> _Parser:
        value = 0
        for i in range(3):
            b = (yield 1)[0]
            if i == 2:
                return value | (b << 14)
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                return value
        return value

    def _tight_data(self, stream: int, size: int) -> _Parser:
        if size < 12:
            return (yield size) if size else b""
        n = yield from self._compact_length()
        if n > 2 * size + _ZLIB_SLACK:
            raise DecodeError(f"Tight length {n} is impossible for {size} bytes of data")
        data = (yield n) if n else b""
        if self._tight[stream] is None:
            self._tight[stream] = zlib.decompressobj()
        out = self._inflate(self._tight[stream], data, size, "Tight")
        if len(out) != size:
            raise DecodeError(f"Tight data has {len(out)} bytes, not {size}")
        return out

    def _tpixel_values(self, data: bytes, n: int) -> np.ndarray:
        arr = np.frombuffer(data, dtype=np.uint8).reshape(n, self._conv.tpixel_size)
        return self._conv.values_from_tpixels(arr)

    def _jpeg(self, data: bytes, w: int, h: int) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format != "JPEG" or image.size != (w, h):
                    raise DecodeError(f"Tight JPEG is not a {w}x{h} JPEG image")
                rgb = np.asarray(image.convert("RGB"))
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"corrupt Tight JPEG data: {exc}") from None
        rgbx = np.zeros((h, w, 4), dtype=np.uint8)
        rgbx[..., :3] = rgb
        return self._conv.values(rgbx)

    def _ungradient(self, diff: np.ndarray) -> np.ndarray:
        """Undo Tight's gradient filter.

        Each pixel is predicted from its left, upper and upper-left
        neighbours (clamped to the channel's range), so a pixel depends on
        the one before it in its row: the work goes anti-diagonal by
        anti-diagonal (all pixels with the same ``row + column``), every
        channel at once.  The planes are stored skewed -- pixel ``(i, j)``
        at column ``i + j`` -- so each diagonal and its neighbours are
        plain slices.
        """
        lay = self._conv.layout
        h, w = diff.shape
        channels = ((lay.red_max, lay.red_shift), (lay.green_max, lay.green_shift),
                    (lay.blue_max, lay.blue_shift))
        cmax = np.array([[c] for c, _ in channels], dtype=np.int32)
        rows = np.arange(h)[:, None]
        cols = rows + np.arange(w)[None, :]
        # Skewed diffs, channel first and the diagonal contiguous:
        # d[channel, i + j, i] belongs to pixel (i, j).
        d = np.zeros((3, h + w, h), dtype=np.int32)
        for ch, (c, shift) in enumerate(channels):
            d[ch, cols, rows] = (diff >> shift) & c
        # Skewed values with a zero border: v[channel, i + j + 2, i + 1] is
        # pixel (i, j); row 0 and every row's first two columns stay zero.
        v = np.zeros((3, h + w + 2, h + 1), dtype=np.int32)
        pred = np.empty((3, min(h, w)), dtype=np.int32)
        for k in range(h + w - 1):
            lo, hi = max(0, k - w + 1), min(k, h - 1) + 1
            p = pred[:, :hi - lo]
            left = v[:, k + 1]
            np.add(left[:, lo + 1:hi + 1], left[:, lo:hi], out=p)
            p -= v[:, k, lo:hi]
            np.minimum(p, cmax, out=p)
            np.maximum(p, 0, out=p)
            p += d[:, k, lo:hi]
            np.bitwise_and(p, cmax, out=v[:, k + 2, lo + 1:hi + 1])
        out = np.zeros((h, w), dtype=np.uint32)
        for ch, (_, shift) in enumerate(channels):
            out |= v[ch, cols + 2, rows + 1].astype(np.uint32) << shift
        return out

    def _cursor(self, hot_x, hot_y, w, h) -> _Parser:
        if w > MAX_CURSOR_SIDE or h > MAX_CURSOR_SIDE:
            raise DecodeError(f"cursor {w}x{h} exceeds {MAX_CURSOR_SIDE}x{MAX_CURSOR_SIDE}")
        if not (w and h):
            yield CursorChanged(hot_x, hot_y, np.zeros((h, w, 4), dtype=np.uint8))
            return
        pixels = self._pixels((yield w * h * self._conv.bpp), w, h)
        mask = np.frombuffer((yield -(-w // 8) * h), dtype=np.uint8).reshape(h, -1)
        cmap = None if self.pf.true_colour else self.colour_map
        rgba = self._conv.rgbx_from_values(pixels, cmap)
        rgba[..., 3] = np.unpackbits(mask, axis=1)[:, :w] * 255
        yield CursorChanged(hot_x, hot_y, rgba)


class _ZrleReader:
    """Parses one rectangle's decompressed ZRLE tile stream.

    Raw, solid and packed-palette tiles are whole-array operations.  Run
    tiles are the costly kind (a smooth picture has runs of one or two
    pixels): every byte position of the tile's possible extent is first
    read, vectorised, as if a run started there -- its length and where
    the next run would start -- and then a short loop hops from run to
    run over those tables, so the Python work per run is three list look-ups.
    """

    #: Bytes of a run tile examined at first; the window grows eightfold
    #: (up to the tile's largest possible size) when the runs go beyond it.
    #: Most run tiles of desktops fit in a few hundred bytes.
    FIRST_WINDOW = 1024

    def __init__(self, dec: FramebufferDecoder, data: bytes, bpc: int) -> None:
        self.dec = dec
        self.data = data
        self.bytes = np.frombuffer(data, dtype=np.uint8)
        self.pos = 0
        self.bpc = bpc

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError("ZRLE tile data ends early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def cpixels(self, n: int) -> np.ndarray:
        raw = np.frombuffer(self.take(n * self.bpc), dtype=np.uint8).reshape(n, self.bpc)
        return self.dec._conv.values_from_cpixels(raw)

    def decode(self, x: int, y: int, w: int, h: int) -> None:
        values = self.dec.values
        for ty in range(y, y + h, 64):
            th = min(64, y + h - ty)
            for tx in range(x, x + w, 64):
                tw = min(64, x + w - tx)
                self.tile(values[ty:ty + th, tx:tx + tw], tw, th)
        if self.pos != len(self.data):
            raise DecodeError(f"{len(self.data) - self.pos} bytes of ZRLE data left over")

    def tile(self, tile: np.ndarray, tw: int, th: int) -> None:
        n = tw * th
        sub = self.take(1)[0]
        if sub == 0:
            tile[:] = self.cpixels(n).reshape(th, tw)
        elif sub == 1:
            tile[:] = self.cpixels(1)[0]
        elif 2 <= sub <= 16:
            palette = self.cpixels(sub)
            bits = 1 if sub == 2 else 2 if sub <= 4 else 4
            row = -(-tw * bits // 8)
            packed = np.frombuffer(self.take(row * th), dtype=np.uint8).reshape(th, row)
            unpacked = np.unpackbits(packed, axis=1).reshape(th, -1, bits)
            weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint8)
            idx = (unpacked * weights).sum(axis=2)[:, :tw]
            if int(idx.max()) >= sub:
                raise DecodeError("ZRLE palette index beyond the palette")
            tile[:] = palette[idx]
        elif sub == 128:
            starts, lengths = self.runs(n, palette=False)
            heads = self.bytes[starts[:, None] + np.arange(self.bpc)]
            tile[:] = np.repeat(self.dec._conv.values_from_cpixels(heads),
                                lengths).reshape(th, tw)
        elif sub >= 130:
            palette = self.cpixels(sub - 128)
            starts, lengths = self.runs(n, palette=True)
            index = self.bytes[starts] & 0x7F
            if int(index.max()) >= len(palette):
                raise DecodeError("ZRLE palette index beyond the palette")
            tile[:] = np.repeat(palette[index], lengths).reshape(th, tw)
        else:
            raise DecodeError(f"invalid ZRLE subencoding {sub}")

    def runs(self, n: int, palette: bool) -> tuple[np.ndarray, np.ndarray]:
        """The runs of one run tile: where each starts (absolute offsets) and
        its length in pixels; they cover exactly ``n`` pixels."""
        head = 1 if palette else self.bpc
        # A run takes its head and at least one length byte and covers at
        # least one pixel; each 255 length byte adds 255 pixels.
        bound = n * (head + 1) + n // 255 + 1
        start = self.pos
        size = min(self.FIRST_WINDOW, bound)
        while True:
            window = self.bytes[start:start + size]
            found = self._hop(window, n, head, palette)
            if found is not None:
                break
            if size >= bound or start + size >= len(self.data):
                raise DecodeError("ZRLE tile data ends early")
            size = min(bound, size * 8)
        starts, lengths, end = found
        self.pos = start + end
        return starts + start, lengths

    @staticmethod
    def _hop(window: np.ndarray, n: int, head: int, palette: bool):
        """``(starts, lengths, end)`` of the runs inside ``window``, or None
        when they go past its end; raises on runs that overshoot the tile."""
        size = len(window)
        offsets = np.arange(size)
        # First byte other than 255 at or after each offset (size if none).
        first = np.where(window != 255, offsets, size)
        first = np.minimum.accumulate(first[::-1])[::-1]
        count = offsets + head
        inside = count < size
        stop = np.full(size, size)
        stop[inside] = first[count[inside]]
        complete = stop < size
        last = np.zeros(size, dtype=np.int64)
        last[complete] = window[stop[complete]]
        lengths = 1 + 255 * (stop - count) + last
        nexts = stop + 1
        if palette:
            single = window < 128
            lengths = np.where(single, 1, lengths)
            nexts = np.where(single, offsets + 1, nexts)
            complete |= single
        lengths = np.where(complete, lengths, 0)
        nexts = np.where(complete, nexts, size)
        hop, length = nexts.tolist(), lengths.tolist()
        starts = []
        filled = offset = 0
        while filled < n:
            if offset >= size:
                return None
            starts.append(offset)
            filled += length[offset]
            offset = hop[offset]
        if filled != n:
            raise DecodeError("ZRLE run longer than its tile")
        found = np.array(starts, dtype=np.int64)
        return found, lengths[found], offset
