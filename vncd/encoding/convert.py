# -*- test-case-name: tests.vncd.test_convert -*-
"""Pixel-format conversion between vncd framebuffers and client formats.

A framebuffer is a numpy ``(h, w, 4)`` uint8 array with channels R, G, B,
X (:mod:`vncd.pixels`).  A :class:`PixelConverter` turns (parts of) one
into the pixel values and wire bytes of one RFB pixel format, for every
format a client may ask for: 8, 16 or 32 bits per pixel, any channel
maxima and shifts, either byte order, and colour-map formats.

Channel scaling is ``round(v * max / 255)`` on the way out and
``round(c * 255 / max)`` on the way back, so a format with 8-bit
channels round-trips exactly.

Colour-map formats: like QEMU, vncd does not let the client's colour map
drive anything; it picks a fixed 256-entry palette laid out as BGR233
(red in bits 0-2, green in bits 3-5, blue in bits 6-7 of the index),
converts pixels to indices into it, and tells the client the palette
with SetColourMapEntries (:meth:`PixelConverter.colour_map_entries`).

Conversions use lookup tables and byte shuffles over whole arrays; the
common 32-bit formats with byte-aligned channels are pure byte moves.

This module knows nothing about encodings, sockets or clients.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
from PIL import Image

from vncd.pixels import PixelFormat

__all__ = ["PixelConverter", "COLOUR_MAP_SIZE", "colour_map_format", "converter_for"]

#: Entries in the palette vncd gives colour-map clients (BGR233: 8 bits).
COLOUR_MAP_SIZE = 256

_LEVELS = np.arange(256, dtype=np.uint32)


def colour_map_format(pf: PixelFormat) -> PixelFormat:
    """The true-colour layout vncd uses for the indices of a colour-map format."""
    return PixelFormat(pf.bits_per_pixel, pf.depth, pf.big_endian, True, 7, 7, 3, 0, 3, 6)


def _scale_lut(cmax: int, shift: int) -> np.ndarray:
    """8-bit intensity -> channel value already shifted into place."""
    return (((_LEVELS * cmax + 127) // 255) << shift).astype(np.uint32)


def _expand_lut(cmax: int) -> np.ndarray:
    """Channel value 0..cmax -> 8-bit intensity."""
    c = np.arange(cmax + 1, dtype=np.uint64)
    return ((c * 255 + cmax // 2) // cmax).astype(np.uint8)


class PixelConverter:
    """Converts RGBX arrays to one pixel format (and pixel values back).

    ``values()`` gives pixel values as native ``uint32`` (one per pixel,
    handy for palettes and comparisons); ``wire()`` gives the bytes of
    each pixel as the client expects them; ``cpixels()`` / ``tpixels()``
    give ZRLE's CPIXELs and Tight's TPIXELs.  The ``*_from_values``
    variants serialise values that were computed earlier (palettes).
    """

    def __init__(self, pf: PixelFormat) -> None:
        self.pf = pf
        #: The layout actually used: ``pf`` itself, or the BGR233 index
        #: layout for colour-map formats.
        self.layout = pf if pf.true_colour else colour_map_format(pf)
        lay = self.layout
        #: Bytes per pixel on the wire.
        self.bpp = pf.bytes_per_pixel
        self._luts = (_scale_lut(lay.red_max, lay.red_shift),
                      _scale_lut(lay.green_max, lay.green_shift),
                      _scale_lut(lay.blue_max, lay.blue_shift))
        self._dtype = {1: np.dtype(np.uint8),
                       2: np.dtype(">u2" if pf.big_endian else "<u2"),
                       4: np.dtype(">u4" if pf.big_endian else "<u4")}[self.bpp]
        #: For 32-bpp formats whose channels are whole bytes: the wire byte
        #: position of R, G and B (a pure byte shuffle), else ``None``.
        self._byte_positions = self._find_byte_positions()
        #: Wire byte positions that make up a ZRLE CPIXEL.
        self.cpixel_positions = self._find_cpixel_positions()
        #: Bytes in a ZRLE CPIXEL.
        self.cpixel_size = len(self.cpixel_positions)
        #: True when Tight sends 3-byte R, G, B TPIXELs.
        self.tpixel_rgb = (pf.true_colour and pf.bits_per_pixel == 32 and pf.depth == 24
                           and pf.red_max == pf.green_max == pf.blue_max == 255)
        #: Bytes in a Tight TPIXEL.
        self.tpixel_size = 3 if self.tpixel_rgb else self.bpp

    @property
    def byte_positions(self) -> tuple[int, int, int] | None:
        """For 32-bpp formats whose channels are whole bytes: the wire byte
        positions of R, G and B; else ``None``."""
        return self._byte_positions

    def _find_byte_positions(self) -> tuple[int, int, int] | None:
        lay = self.layout
        if lay.bits_per_pixel != 32:
            return None
        shifts = (lay.red_shift, lay.green_shift, lay.blue_shift)
        if (lay.red_max, lay.green_max, lay.blue_max) != (255, 255, 255):
            return None
        if any(s % 8 for s in shifts) or len(set(shifts)) != 3:
            return None
        if lay.big_endian:
            return tuple(3 - s // 8 for s in shifts)
        return tuple(s // 8 for s in shifts)

    def _find_cpixel_positions(self) -> tuple[int, ...]:
        if not self.pf.fits_cpixel():
            return tuple(range(self.bpp))
        lay = self.pf
        mask = ((lay.red_max << lay.red_shift) | (lay.green_max << lay.green_shift)
                | (lay.blue_max << lay.blue_shift))
        least = mask < (1 << 24)
        if lay.big_endian:
            return (1, 2, 3) if least else (0, 1, 2)
        return (0, 1, 2) if least else (1, 2, 3)

    # -- framebuffer -> client ------------------------------------------------

    def values(self, rgbx: np.ndarray) -> np.ndarray:
        """Pixel values (native uint32) of an ``(h, w, 4)`` RGBX array."""
        if self._byte_positions is not None:
            wire = self.wire(rgbx)
            return wire.view(self._dtype)[..., 0].astype(np.uint32, copy=False)
        lr, lg, lb = self._luts
        out = lr[rgbx[..., 0]]
        out |= lg[rgbx[..., 1]]
        out |= lb[rgbx[..., 2]]
        return out

    def wire(self, rgbx: np.ndarray) -> np.ndarray:
        """Wire bytes, ``(h, w, bpp)`` uint8, of an RGBX array."""
        if self._byte_positions is not None:
            out = np.empty(rgbx.shape[:2] + (4,), dtype=np.uint8)
            self._shuffle_into(rgbx, out)
            return out
        return self.wire_from_values(self.values(rgbx))

    def _shuffle_into(self, rgbx: np.ndarray, out: np.ndarray) -> None:
        """Write the wire bytes of a 32-bit byte-aligned format into ``out``
        (``(h, w, 4)`` uint8, contiguous), the padding byte 0.

        The two layouts nearly every client uses are whole-word operations:
        B, G, R, X (vncd's default and QEMU's) is the pixel read as a
        big-endian word shifted right by a byte; R, G, B, X is the pixel
        with its X byte cleared.  Others move channel by channel.
        """
        pos = self._byte_positions
        if rgbx.shape[0] and rgbx.shape[1] and rgbx.strides[-1] == 1 \
                and rgbx.strides[-2] == 4:
            words = out.view("<u4")[..., 0]
            if pos == (2, 1, 0):
                np.right_shift(rgbx.view(">u4")[..., 0], 8, out=words, casting="unsafe")
                return
            if pos == (0, 1, 2):
                np.bitwise_and(rgbx.view("<u4")[..., 0], 0xFFFFFF, out=words,
                               casting="unsafe")
                return
        spare = ({0, 1, 2, 3} - set(pos)).pop()
        out[..., spare] = 0
        out[..., pos[0]] = rgbx[..., 0]
        out[..., pos[1]] = rgbx[..., 1]
        out[..., pos[2]] = rgbx[..., 2]

    def wire_from_values(self, values: np.ndarray) -> np.ndarray:
        """Wire bytes, ``values.shape + (bpp,)``, of pixel values."""
        packed = np.ascontiguousarray(values, dtype=self._dtype)
        return packed.view(np.uint8).reshape(values.shape + (self.bpp,))

    def raw(self, rgbx: np.ndarray, prefix: bytes = b"") -> bytes:
        """The Raw encoding of an RGBX array: its wire bytes in scanline order,
        after ``prefix`` (a rectangle header).

        The pixels are converted straight into the buffer that becomes the
        result: for a 1080p frame that is one 8 MB buffer fewer to fault in
        and copy than converting first and concatenating after.
        """
        h, w = rgbx.shape[:2]
        size = len(prefix) + h * w * self.bpp
        out = _scratch(size)
        out[:len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        body = out[len(prefix):].reshape(h, w, self.bpp)
        if self._byte_positions is not None:
            # The words start at an offset of len(prefix) (12): numpy copes
            # with the unaligned uint32 view.
            self._shuffle_into(rgbx, body)
        else:
            body[...] = self.wire(rgbx)
        return out.tobytes()

    def cpixels(self, rgbx: np.ndarray) -> np.ndarray:
        """ZRLE CPIXEL bytes, ``(h, w, cpixel_size)``."""
        wire = self.wire(rgbx)
        if self.cpixel_size == self.bpp:
            return wire
        return wire[..., self.cpixel_positions[0]:self.cpixel_positions[-1] + 1]

    def cpixels_from_values(self, values: np.ndarray) -> np.ndarray:
        wire = self.wire_from_values(values)
        if self.cpixel_size == self.bpp:
            return wire
        return wire[..., self.cpixel_positions[0]:self.cpixel_positions[-1] + 1]

    def tpixels(self, rgbx: np.ndarray) -> np.ndarray:
        """Tight TPIXEL bytes, ``(h, w, tpixel_size)``."""
        if self.tpixel_rgb:
            return rgbx[..., :3]
        return self.wire(rgbx)

    def tpixel_bytes(self, rgbx: np.ndarray) -> bytes:
        """``tpixels(rgbx).tobytes()``, faster: Pillow's packer drops the X
        byte of every pixel several times faster than a strided numpy copy."""
        h, w = rgbx.shape[:2]
        if not self.tpixel_rgb or not h or not w:
            return self.tpixels(rgbx).tobytes()
        pixels = np.ascontiguousarray(rgbx)
        return Image.frombuffer("RGBX", (w, h), pixels, "raw", "RGBX", 0, 1).tobytes("raw", "RGB")

    def tpixels_from_values(self, values: np.ndarray) -> np.ndarray:
        if self.tpixel_rgb:
            lay = self.layout
            out = np.empty(values.shape + (3,), dtype=np.uint8)
            out[..., 0] = (values >> lay.red_shift) & 0xFF
            out[..., 1] = (values >> lay.green_shift) & 0xFF
            out[..., 2] = (values >> lay.blue_shift) & 0xFF
            return out
        return self.wire_from_values(values)

    def colour_map_entries(self) -> list[tuple[int, int, int]]:
        """The palette of a colour-map format, as SetColourMapEntries colours
        (16-bit intensities) for indices 0..255."""
        i = np.arange(COLOUR_MAP_SIZE)
        red = (i & 7) * 65535 // 7
        green = ((i >> 3) & 7) * 65535 // 7
        blue = ((i >> 6) & 3) * 65535 // 3
        return list(zip(red.tolist(), green.tolist(), blue.tolist()))

    # -- client -> framebuffer --------------------------------------------------

    def values_from_wire(self, data: np.ndarray) -> np.ndarray:
        """Pixel values of wire bytes shaped ``(..., bpp)`` uint8."""
        flat = np.ascontiguousarray(data, dtype=np.uint8)
        return flat.view(self._dtype)[..., 0].astype(np.uint32)

    def values_from_cpixels(self, data: np.ndarray) -> np.ndarray:
        """Pixel values of CPIXEL bytes shaped ``(..., cpixel_size)``."""
        if self.cpixel_size == self.bpp:
            return self.values_from_wire(data)
        wire = np.zeros(data.shape[:-1] + (4,), dtype=np.uint8)
        wire[..., self.cpixel_positions[0]:self.cpixel_positions[-1] + 1] = data
        return self.values_from_wire(wire)

    def values_from_tpixels(self, data: np.ndarray) -> np.ndarray:
        """Pixel values of TPIXEL bytes shaped ``(..., tpixel_size)``."""
        if not self.tpixel_rgb:
            return self.values_from_wire(data)
        lay = self.layout
        d = data.astype(np.uint32)
        return ((d[..., 0] << lay.red_shift) | (d[..., 1] << lay.green_shift)
                | (d[..., 2] << lay.blue_shift))

    def rgbx_from_values(self, values: np.ndarray,
                         colour_map: np.ndarray | None = None) -> np.ndarray:
        """An RGBX array (X = 0) from pixel values.

        For colour-map formats ``colour_map`` is an ``(n, 3)`` uint8 array
        of the client's current map (indices past its end are black); by
        default vncd's own BGR233 palette.
        """
        out = np.zeros(values.shape + (4,), dtype=np.uint8)
        if not self.pf.true_colour and colour_map is not None:
            n = len(colour_map)
            table = np.zeros((n + 1, 3), dtype=np.uint8)
            table[:n] = colour_map
            out[..., :3] = table[np.minimum(values, n)]
            return out
        lay = self.layout
        for ch, cmax, shift in ((0, lay.red_max, lay.red_shift),
                                (1, lay.green_max, lay.green_shift),
                                (2, lay.blue_max, lay.blue_shift)):
            out[..., ch] = _expand_lut(cmax)[(values >> shift) & cmax]
        return out

    def rgbx_of(self, rgbx: np.ndarray) -> np.ndarray:
        """What a client of this format sees of an RGBX array (X = 0)."""
        return self.rgbx_from_values(self.values(rgbx))


#: Raw outputs at least this large are converted in a per-thread scratch
#: buffer that is kept and reused; up to this size it is kept (a 4K screen).
SCRATCH_MIN = 1 << 20
SCRATCH_MAX = 64 << 20

_scratch_local = threading.local()


def _scratch(size: int) -> np.ndarray:
    """A ``size``-byte uint8 buffer to convert into before ``tobytes()``.

    Large ones are reused, per thread: a fresh 8 MB buffer freed right after
    its ``tobytes()`` copy makes the C allocator hand the memory back to the
    system and fault it in again for the next frame, which costs three
    times the conversion itself.
    """
    if not SCRATCH_MIN <= size <= SCRATCH_MAX:
        return np.empty(size, dtype=np.uint8)
    buf = getattr(_scratch_local, "buf", None)
    if buf is None or buf.size < size:
        buf = _scratch_local.buf = np.empty(size, dtype=np.uint8)
    return buf[:size]


#: glibc ``mallopt`` parameters (malloc.h) and the values
#: :func:`keep_large_buffers` sets: blocks up to 32 MiB (a 4K frame's
#: pixels) come from the heap, and up to 128 MiB of free heap is kept.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_MMAP_THRESHOLD = 32 << 20
KEEP_TRIM_THRESHOLD = 128 << 20

_kept = False


def keep_large_buffers() -> bool:
    """Make the C allocator keep frame-sized blocks instead of returning them.

    Each update of a large screen allocates a few frame-sized byte strings
    (the encoded rectangle, the bytes on their way to the socket) and frees
    them one frame later.  With glibc's defaults a free block that size is
    unmapped or trimmed off the heap, and the next frame's allocation
    faults every page in again: for Raw at 1080p that was 40 % of vncd's
    CPU per update (27 -> 15 ms per 1080p Raw screen, 21 -> 28 screens/s).
    It raises glibc's mmap and trim thresholds (``mallopt``) so such blocks
    are reused.  Called when this module is imported: set later, after the
    heap has taken its shape, it saved only a third as much.  The cost is
    that up to :data:`KEEP_TRIM_THRESHOLD` of freed memory may stay with
    the process (a program embedding vncd gets the same setting).  Does
    nothing (False) on other C libraries.
    """
    global _kept
    if _kept:
        return True
    _kept = True
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD))


#: Converters kept for reuse: every distinct format a client has asked
#: for recently.  Real viewers use a handful; the bound only stops a
#: client cycling through formats from growing the table.
CONVERTER_CACHE_SIZE = 64


@functools.lru_cache(maxsize=CONVERTER_CACHE_SIZE)
def converter_for(pf: PixelFormat) -> PixelConverter:
    """A (shared, immutable) converter for ``pf``."""
    return PixelConverter(pf)


keep_large_buffers()
