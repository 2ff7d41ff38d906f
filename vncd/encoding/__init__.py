"""RFB encodings: encoding numbers, the encoders and the decoders.

Encoders turn a rectangle of a framebuffer (numpy ``(h, w, 4)`` uint8,
channels R, G, B, X) into the bytes of one or more FramebufferUpdate
rectangles for one client pixel format.  They work on whole arrays
(numpy, zlib, Pillow) and never loop over pixels in Python.  Their
output depends only on the pixels, the pixel format and the levels the
client asked for -- never on a connection's history -- so one encoding
of a region serves every client that wants the same thing (see
:class:`EncodedRect` for the one per-connection detail, the zlib stream
header).

Modules:

* :mod:`~vncd.encoding.convert` -- pixel-format conversion, colour maps.
* :mod:`~vncd.encoding.raw`, :mod:`~vncd.encoding.copyrect`,
  :mod:`~vncd.encoding.hextile`, :mod:`~vncd.encoding.zlib`,
  :mod:`~vncd.encoding.zrle`, :mod:`~vncd.encoding.tight` -- encoders.
* :mod:`~vncd.encoding.pseudo` -- pseudo-encoding rectangles.
* :mod:`~vncd.encoding.messages` -- the server-to-client messages that
  carry them.
* :mod:`~vncd.encoding.decode` -- decoders for all of the above (the
  project's RFB client and the round-trip tests use them).

This package knows nothing about sockets, Twisted, TLS or clients: it is
bytes and arrays in, bytes out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vncd.pixels import PixelFormat

__all__ = [
    "RAW", "COPYRECT", "RRE", "HEXTILE", "ZLIB", "TIGHT", "ZRLE",
    "DESKTOP_SIZE", "LAST_RECT", "CURSOR", "QEMU_POINTER_MOTION_CHANGE",
    "QEMU_EXTENDED_KEY_EVENT", "QEMU_AUDIO", "QEMU_LED_STATE", "DESKTOP_NAME",
    "EXTENDED_DESKTOP_SIZE", "FENCE", "CONTINUOUS_UPDATES",
    "COMPRESS_LEVEL_0", "COMPRESS_LEVEL_9", "QUALITY_LEVEL_0", "QUALITY_LEVEL_9",
    "FINE_QUALITY_0", "FINE_QUALITY_100", "SUBSAMPLING_1X", "SUBSAMPLING_16X",
    "ENCODING_NAMES", "EncodeParams", "EncodedRect", "rect_header",
]

# Encodings that carry pixels.
RAW = 0
COPYRECT = 1
RRE = 2
HEXTILE = 5
ZLIB = 6
TIGHT = 7
ZRLE = 16

# Pseudo-encodings (rfbproto numbering).
DESKTOP_SIZE = -223
LAST_RECT = -224
CURSOR = -239
QEMU_POINTER_MOTION_CHANGE = -257
QEMU_EXTENDED_KEY_EVENT = -258
QEMU_AUDIO = -259
QEMU_LED_STATE = -261
DESKTOP_NAME = -307
EXTENDED_DESKTOP_SIZE = -308
FENCE = -312
CONTINUOUS_UPDATES = -313

#: Compression level pseudo-encodings: -256 is level 0 ... -247 level 9.
COMPRESS_LEVEL_0 = -256
COMPRESS_LEVEL_9 = -247
#: JPEG quality level pseudo-encodings: -32 is level 0 ... -23 level 9.
QUALITY_LEVEL_0 = -32
QUALITY_LEVEL_9 = -23
#: Fine-grained JPEG quality: -512 is quality 0 ... -412 quality 100.
FINE_QUALITY_0 = -512
FINE_QUALITY_100 = -412
#: JPEG chroma subsampling: -768 (none, 4:4:4) ... -763 (16x).
SUBSAMPLING_1X = -768
SUBSAMPLING_16X = -763

ENCODING_NAMES = {
    RAW: "Raw", COPYRECT: "CopyRect", RRE: "RRE", HEXTILE: "Hextile",
    ZLIB: "Zlib", TIGHT: "Tight", ZRLE: "ZRLE",
    DESKTOP_SIZE: "DesktopSize", LAST_RECT: "LastRect", CURSOR: "Cursor",
    QEMU_POINTER_MOTION_CHANGE: "QEMUPointerMotionChange",
    QEMU_EXTENDED_KEY_EVENT: "QEMUExtendedKeyEvent", QEMU_AUDIO: "QEMUAudio",
    QEMU_LED_STATE: "QEMULEDState", DESKTOP_NAME: "DesktopName",
    EXTENDED_DESKTOP_SIZE: "ExtendedDesktopSize", FENCE: "Fence",
    CONTINUOUS_UPDATES: "ContinuousUpdates",
}

_RECT_HEADER = struct.Struct(">HHHHi")


def rect_header(x: int, y: int, w: int, h: int, encoding: int) -> bytes:
    """The 12-byte header that starts every FramebufferUpdate rectangle."""
    return _RECT_HEADER.pack(x, y, w, h, encoding)


@dataclass(frozen=True)
class EncodeParams:
    """Everything besides the pixels that an encoder's output depends on.

    Frozen and hashable: it is part of the key of the shared cache of
    encoded rectangles.
    """

    pf: PixelFormat
    #: zlib level 0-9 (the client's compression-level pseudo-encoding,
    #: or the server's default).
    compress_level: int = 1
    #: JPEG quality 0-100 when Tight may use JPEG for this rectangle,
    #: ``None`` for lossless only.
    jpeg_quality: int | None = None
    #: JPEG chroma subsampling in Pillow's terms (0 = 4:4:4, 1 = 4:2:2,
    #: 2 = 4:2:0), or ``None`` for Pillow's default.
    jpeg_subsampling: int | None = None


@dataclass(frozen=True)
class EncodedRect:
    """One or more complete FramebufferUpdate rectangles, ready to send.

    ``data`` is the rectangles' bytes and ``count`` how many rectangles
    they are.  When ``stream`` is set (Zlib and ZRLE, whose rfbproto
    definition uses one zlib stream per connection), there is exactly
    one rectangle: ``head`` is its 12-byte header and ``data`` a
    raw-deflate body made by a fresh compressor and ended with a sync
    flush.  The 4-byte length is added at send time by :meth:`chunks`,
    together with the 2-byte zlib header on the connection's first use
    of that stream.  The body therefore depends on the pixels alone and
    any number of connections can share it.
    """

    data: bytes
    count: int = 1
    #: Encoding number whose per-connection zlib stream ``data`` continues.
    stream: int | None = None
    #: Rectangle header of a ``stream`` rectangle.
    head: bytes = b""

    #: The zlib header: deflate, 32 KiB window, no preset dictionary.
    ZLIB_HEADER = b"\x78\x01"

    @property
    def size(self) -> int:
        return len(self.data) + len(self.head) + 6

    def chunks(self, stream_started: bool) -> list[bytes]:
        """The bytes to write for a connection whose stream has (not) started.

        Writing the chunks in order sends the rectangles; the shared body
        is written as it is, never copied.
        """
        if self.stream is None:
            return [self.data]
        if stream_started:
            return [self.head + struct.pack(">I", len(self.data)), self.data]
        return [self.head + struct.pack(">I", len(self.data) + 2) + self.ZLIB_HEADER, self.data]
