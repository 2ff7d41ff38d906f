# -*- test-case-name: tests.vncd.test_encoding -*-
"""zlib helpers shared by the Zlib, ZRLE and Tight encoders.

Each rectangle is compressed by a fresh compressor and ended with a sync
flush, so its compressed bytes depend only on its own data.  Zlib and
ZRLE use raw deflate (no zlib header; the connection's stream header is
added once at send time, see :class:`vncd.encoding.EncodedRect`); Tight
resets its streams for every rectangle, so each of its rectangles is a
complete zlib stream start (header included).

Incompressible data: deflate at any level spends ~20 ns a byte on noise
to save nothing, so a sample of each large input is compressed first
and, when it does not shrink, the input is stored (level 0), which is a
plain copy.
"""

from __future__ import annotations

import zlib

__all__ = ["deflate_raw", "deflate_stream", "choose_level"]

#: Inputs at least this long are sampled before being compressed; below
#: it the compression itself is cheap enough that sampling does not pay.
SAMPLE_THRESHOLD = 64 * 1024

#: Bytes compressed as a sample.
SAMPLE_SIZE = 16 * 1024

#: A sample that compresses to more than this fraction of its size marks
#: the input as not worth compressing: saving under 15 % costs about as
#: much CPU time as sending the pixels would take on a 100 Mbit/s link.
INCOMPRESSIBLE_RATIO = 0.85

#: Highest compression level at which sampling applies.  A client asking
#: for more (rfbproto: "high compression level can be useful in low
#: bandwidth situations") gets deflate whatever the content.
SAMPLED_LEVEL_MAX = 5


def choose_level(data: bytes, level: int) -> int:
    """``level``, or 0 when a sample of ``data`` shows deflate does not pay."""
    if not 0 < level <= SAMPLED_LEVEL_MAX or len(data) < SAMPLE_THRESHOLD:
        return level
    mid = len(data) // 2
    sample = data[mid:mid + SAMPLE_SIZE]
    if len(zlib.compress(sample, 1)) > INCOMPRESSIBLE_RATIO * len(sample):
        return 0
    return level


def deflate_raw(data: bytes, level: int) -> bytes:
    """Raw deflate of ``data`` from a fresh compressor, ended by a sync flush."""
    comp = zlib.compressobj(choose_level(data, level), zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)


def deflate_stream(data: bytes, level: int) -> bytes:
    """A zlib stream start (header + deflate) of ``data``, ended by a sync flush."""
    comp = zlib.compressobj(choose_level(data, level), zlib.DEFLATED, 15)
    return comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
