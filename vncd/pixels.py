"""RFB pixel formats: the 16-byte PIXEL_FORMAT structure and its rules.

Screens hold their framebuffer as a numpy array of shape ``(height, width,
4)``, dtype ``uint8``, channels ``R, G, B, X`` (see :data:`FB_CHANNELS`).
A :class:`PixelFormat` says how a client wants pixels on the wire; the
conversion itself lives in :mod:`vncd.encoding.convert`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["PixelFormat", "PixelFormatError", "FB_CHANNELS", "DEFAULT_FORMAT"]

#: Channel order of every framebuffer array in vncd.
FB_CHANNELS = "RGBX"

_STRUCT = struct.Struct(">BBBBHHHBBB3x")


class PixelFormatError(ValueError):
    """A client sent a pixel format vncd cannot serve (the reason says why)."""


@dataclass(frozen=True)
class PixelFormat:
    bits_per_pixel: int
    depth: int
    big_endian: bool
    true_colour: bool
    red_max: int
    green_max: int
    blue_max: int
    red_shift: int
    green_shift: int
    blue_shift: int

    SIZE = 16

    @classmethod
    def from_bytes(cls, data: bytes) -> "PixelFormat":
        """Parse and validate the 16-byte structure (raises :class:`PixelFormatError`)."""
        if len(data) != cls.SIZE:
            raise PixelFormatError(f"pixel format must be 16 bytes, got {len(data)}")
        bpp, depth, be, tc, rmax, gmax, bmax, rs, gs, bs = _STRUCT.unpack(data)
        pf = cls(bpp, depth, bool(be), bool(tc), rmax, gmax, bmax, rs, gs, bs)
        pf.validate()
        return pf

    def to_bytes(self) -> bytes:
        return _STRUCT.pack(
            self.bits_per_pixel, self.depth, int(self.big_endian), int(self.true_colour),
            self.red_max, self.green_max, self.blue_max,
            self.red_shift, self.green_shift, self.blue_shift,
        )

    @property
    def bytes_per_pixel(self) -> int:
        return self.bits_per_pixel // 8

    def validate(self) -> None:
        if self.bits_per_pixel not in (8, 16, 32):
            raise PixelFormatError(
                f"bits-per-pixel {self.bits_per_pixel} is not supported (8, 16 or 32)")
        if not 1 <= self.depth <= self.bits_per_pixel:
            raise PixelFormatError(
                f"depth {self.depth} does not fit {self.bits_per_pixel} bits per pixel")
        if not self.true_colour:
            return
        for colour, cmax, shift in (("red", self.red_max, self.red_shift),
                                    ("green", self.green_max, self.green_shift),
                                    ("blue", self.blue_max, self.blue_shift)):
            if cmax == 0 or cmax & (cmax + 1):
                raise PixelFormatError(f"{colour}-max {cmax} is not 2**n - 1")
            if (cmax << shift) >= (1 << self.bits_per_pixel):
                raise PixelFormatError(
                    f"{colour} channel (max {cmax}, shift {shift}) does not fit"
                    f" {self.bits_per_pixel} bits per pixel")

    def fits_cpixel(self) -> bool:
        """True when ZRLE/Tight may send this 32-bpp format as 3-byte CPIXELs."""
        if self.bits_per_pixel != 32 or self.depth > 24 or not self.true_colour:
            return False
        mask = ((self.red_max << self.red_shift) | (self.green_max << self.green_shift)
                | (self.blue_max << self.blue_shift))
        return mask < (1 << 24) or (mask & 0xFF) == 0


#: The server's native format, announced in ServerInit: 32 bpp, depth 24,
#: little-endian true colour, red in bits 16-23 (what QEMU and TigerVNC use).
DEFAULT_FORMAT = PixelFormat(32, 24, False, True, 255, 255, 255, 16, 8, 0)
