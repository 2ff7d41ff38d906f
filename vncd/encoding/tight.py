# -*- test-case-name: tests.vncd.test_encoding -*-
"""Tight encoding (7): fill, palette or full colour, zlib or JPEG.

A rectangle is cut into pieces at most :data:`MAX_WIDTH` pixels wide
(rfbproto's limit) and :data:`MAX_PIECE_PIXELS` in area.  Each piece is

* **fill** when all its pixels are equal;
* **palette** (BasicCompression + PaletteFilter) when it has at most 256
  colours: 1-bit indices for two colours, bytes otherwise;
* otherwise **JPEG** (through Pillow) when the caller allows it
  (:attr:`EncodeParams.jpeg_quality` set, 16 or 32 bits per pixel), else
  full-colour **copy** (BasicCompression, no filter).

Every compressed piece starts a fresh zlib stream and sets the control
byte's reset bit for the stream it uses, so its bytes depend only on its
pixels: one encoding serves every client.  The gradient filter is not
used (noVNC cannot decode it).  Knows nothing about connections.
"""

from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image

from vncd.encoding import TIGHT, EncodedRect, EncodeParams, rect_header
from vncd.encoding.convert import PixelConverter, converter_for
from vncd.encoding import parallel, speedups
from vncd.encoding.deflate import deflate_stream

__all__ = ["encode_tight", "compact_length", "MAX_WIDTH", "FILL", "JPEG",
           "FILTER_BIT", "COPY_FILTER", "PALETTE_FILTER", "GRADIENT_FILTER"]

#: Widest Tight rectangle rfbproto allows.
MAX_WIDTH = 2048

#: Most pixels in one piece: keeps a piece's uncompressed data (at most
#: 4 bytes a pixel) at 512 KiB, far under the 4 MiB that Tight's 22-bit
#: compact length can describe, while leaving strips of a 1920-pixel
#: wide screen whole.
MAX_PIECE_PIXELS = 128 * 1024

#: Data shorter than this is sent uncompressed (rfbproto).
MIN_COMPRESS = 12

#: Largest palette of the palette filter.
MAX_PALETTE = 256

#: Pixels sampled before counting colours exactly: a sample with more
#: than :data:`MAX_PALETTE` colours proves the piece is full colour
#: without sorting all of it (photos, video).
COLOUR_SAMPLE = 4096

#: Pieces smaller than this are never sent as JPEG: the JFIF headers
#: (about 600 bytes) outweigh any gain.
JPEG_MIN_PIXELS = 1024

#: Longest value of the compact length (three bytes, 22 bits).
MAX_COMPACT_LENGTH = (1 << 22) - 1

FILL = 0x80
JPEG = 0x90
FILTER_BIT = 0x40
COPY_FILTER = 0
PALETTE_FILTER = 1
GRADIENT_FILTER = 2

#: zlib streams used for full-colour and palette data (the numbers are
#: free: every piece resets the stream it uses).
_COPY_STREAM = 0
_PALETTE_STREAM = 1


def compact_length(n: int) -> bytes:
    """Tight's 1-3 byte length code."""
    if not 0 <= n <= MAX_COMPACT_LENGTH:
        raise ValueError(f"length {n} does not fit Tight's compact length")
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return bytes([0x80 | (n & 0x7F), n >> 7])
    return bytes([0x80 | (n & 0x7F), 0x80 | ((n >> 7) & 0x7F), n >> 14])


def _basic(stream: int, filter_id: int | None, prefix: bytes, data: bytes, level: int) -> bytes:
    ctl = (1 << stream) | (stream << 4)
    head = bytes([ctl]) if filter_id is None else bytes([ctl | FILTER_BIT, filter_id])
    if len(data) < MIN_COMPRESS:
        return head + prefix + data
    z = deflate_stream(data, level, fast=True)
    return head + prefix + compact_length(len(z)) + z


def _keys(region: np.ndarray) -> np.ndarray:
    """24-bit colour keys (R | G << 8 | B << 16) of an RGBX region, flattened."""
    return (region.view("<u4")[..., 0] & 0xFFFFFF).ravel()


def _distinct(keys: np.ndarray) -> np.ndarray:
    ordered = np.sort(keys)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


class _PaletteIndexer:
    """Maps colour keys to palette indices through a 2**24-entry table.

    The table (16 MiB of zeros, allocated on first use; only the pages a
    palette touches ever become resident) is cleared again after every
    lookup, so no call sees what an earlier one wrote: a piece's path
    through :func:`_palette` depends on its own pixels alone, never on
    what was encoded before it in the process.  A missing key maps to 0,
    so every result is still checked against the palette.  One table
    per thread: pieces are encoded in parallel (:func:`encode_tight`).
    """

    def __init__(self) -> None:
        self._table: np.ndarray | None = None

    def __call__(self, keys: np.ndarray, colours: np.ndarray) -> np.ndarray | None:
        """Indices of ``keys`` into ``colours``, or None if some key is missing."""
        if self._table is None:
            self._table = np.zeros(1 << 24, dtype=np.uint8)
        table = self._table
        table[colours] = np.arange(colours.size, dtype=np.uint8)
        try:
            idx = table[keys]
        finally:
            table[colours] = 0
        if not np.array_equal(colours[idx], keys):
            return None
        return idx


_local = threading.local()


def _indexer(keys: np.ndarray, colours: np.ndarray) -> np.ndarray | None:
    """This thread's :class:`_PaletteIndexer` lookup."""
    indexer = getattr(_local, "indexer", None)
    if indexer is None:
        indexer = _local.indexer = _PaletteIndexer()
    return indexer(keys, colours)


def _palette(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(colour keys, index of each pixel) when there are at most 256 colours.

    A sample is counted first: more than :data:`MAX_PALETTE` colours in it
    proves the piece is full colour without sorting all of it; a sample
    that happens to hold every colour gives the palette without a sort.
    """
    step = max(1, keys.size // COLOUR_SAMPLE)
    colours = _distinct(keys[::step])
    if colours.size > MAX_PALETTE:
        return None
    idx = _indexer(keys, colours)
    if idx is None:
        colours = _distinct(keys)
        if colours.size > MAX_PALETTE:
            return None
        idx = _indexer(keys, colours)
    return colours, idx


def _key_pixels(colours: np.ndarray) -> np.ndarray:
    """An ``(n, 1, 4)`` RGBX array of colour keys."""
    rgbx = np.zeros((colours.size, 1, 4), dtype=np.uint8)
    rgbx[:, 0, 0] = colours & 0xFF
    rgbx[:, 0, 1] = (colours >> 8) & 0xFF
    rgbx[:, 0, 2] = colours >> 16
    return rgbx


def _jpeg(region: np.ndarray, params: EncodeParams) -> bytes:
    # Pillow's JPEG encoder reads RGBX itself: no RGB copy of the pixels
    # (which cost twice the encoding), and none at all for full-width pieces.
    h, w = region.shape[:2]
    image = Image.frombuffer("RGBX", (w, h), np.ascontiguousarray(region), "raw", "RGBX", 0, 1)
    buf = io.BytesIO()
    options = {"quality": params.jpeg_quality}
    if params.jpeg_subsampling is not None:
        options["subsampling"] = params.jpeg_subsampling
    image.save(buf, "JPEG", **options)
    data = buf.getvalue()
    return bytes([JPEG]) + compact_length(len(data)) + data


def _colours(region: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted colour keys, index of each pixel) when ``region`` has at most
    :data:`MAX_PALETTE` colours, else None.

    With the C extension one pass that stops at the first colour too many
    (a photograph: after a few pixels); numpy otherwise (a solid check,
    then :func:`_palette`).  Both give the same answer.
    """
    if speedups.module is not None:
        found = speedups.module.tight_palette(region, MAX_PALETTE)
        if found is None:
            return None
        keys, indices = found
        return np.frombuffer(keys, dtype=np.uint32), np.frombuffer(indices, dtype=np.uint8)
    keys = _keys(region)
    if (keys == keys[0]).all():
        return keys[:1], np.zeros(keys.size, dtype=np.uint8)
    return _palette(keys)


def _piece(region: np.ndarray, conv: PixelConverter, params: EncodeParams) -> bytes:
    pal = _colours(region)
    if pal is not None and pal[0].size == 1:
        return bytes([FILL]) + conv.tpixels(region[:1, :1]).tobytes()
    h, w = region.shape[:2]
    if pal is not None:
        colours, indices = pal
        if colours.size == 2:
            data = np.packbits(indices.reshape(h, w), axis=1).tobytes()
        else:
            data = indices.tobytes()
        prefix = (bytes([colours.size - 1])
                  + conv.tpixels(_key_pixels(colours)).tobytes())
        return _basic(_PALETTE_STREAM, PALETTE_FILTER, prefix, data, params.compress_level)
    if (params.jpeg_quality is not None and conv.pf.bits_per_pixel in (16, 32)
            and h * w >= JPEG_MIN_PIXELS):
        return _jpeg(region, params)
    return _basic(_COPY_STREAM, None, b"", conv.tpixel_bytes(region), params.compress_level)


def encode_tight(frame: np.ndarray, x: int, y: int, w: int, h: int,
                 params: EncodeParams) -> EncodedRect:
    """Tight rectangles covering ``frame[y:y+h, x:x+w]``.

    The pieces are encoded in parallel (:mod:`vncd.encoding.parallel`):
    each depends on its own pixels only.
    """
    conv = converter_for(params.pf)
    boxes = []
    for px in range(x, x + w, MAX_WIDTH):
        pw = min(MAX_WIDTH, x + w - px)
        rows = max(1, MAX_PIECE_PIXELS // pw)
        for py in range(y, y + h, rows):
            boxes.append((px, py, pw, min(rows, y + h - py)))
    if len(boxes) * MAX_PIECE_PIXELS // 2 > w * h:
        # Small pieces (a narrow or short rectangle): not worth a hand-off.
        pieces = [_piece(frame[py:py + ph, px:px + pw], conv, params)
                  for px, py, pw, ph in boxes]
    else:
        pieces = parallel.map_ordered(
            lambda b: _piece(frame[b[1]:b[1] + b[3], b[0]:b[0] + b[2]], conv, params), boxes)
    out = []
    for (px, py, pw, ph), piece in zip(boxes, pieces):
        out.append(rect_header(px, py, pw, ph, TIGHT))
        out.append(piece)
    return EncodedRect(b"".join(out), count=len(boxes))
