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

Large inputs are compressed in parallel: split into pieces of at least
:data:`PARALLEL_PIECE` bytes, each compressed by its own fresh
compressor in a small thread pool (zlib releases the GIL while it
works), and the pieces' outputs concatenated.  Every piece ends with a
sync flush (byte-aligned, no final block) and starts without a
dictionary, so the concatenation is one valid deflate sequence that a
single inflater reads through; only matches across a piece boundary are
lost (well under 1 % on 1080p frames).  The pieces are as many as the CPUs
the process may run on; with one CPU the
input is compressed in the calling thread, as before.
"""

from __future__ import annotations

import zlib

from vncd.encoding import parallel

try:
    # zlib-ng (python-zlib-ng): the same deflate format from a faster
    # implementation.  For ZRLE tile streams and Tight's pixels its level
    # n + 1 gives within 2-3 % of stdlib zlib's level n sizes on 1080p
    # frames at 55-75 % of the time (desktop pictures: a third).  For the
    # Zlib encoding's 32-bit pixels it saves little and loses more size, so
    # Zlib keeps stdlib zlib (see :func:`deflate_raw`'s ``fast``).
    from zlib_ng import zlib_ng as _fast_engine
    #: Added to the client's level (1-8) to get zlib-ng's level.
    FAST_LEVEL_SHIFT = 1
except ImportError:  # pragma: no cover - zlib-ng is a dependency
    _fast_engine = zlib
    FAST_LEVEL_SHIFT = 0

#: The deflate implementation of ``fast=True`` ("zlib-ng" or "zlib").
FAST_ENGINE = "zlib-ng" if _fast_engine is not zlib else "zlib"


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


#: Smallest piece compressed on its own thread: below this the hand-off
#: costs more than the parallelism saves (a 128 KiB piece takes 1-3 ms;
#: a 1920x64 band of a Tight or Zlib update is 360-480 KiB, so it splits).
PARALLEL_PIECE = 128 * 1024


def engine_level(level: int, fast: bool) -> int:
    """The deflate engine's level for a client's compression level 0-9."""
    if level <= 0:
        return 0
    return min(9, level + FAST_LEVEL_SHIFT) if fast else level


def _compress_piece(data, level: int, wbits: int, fast: bool) -> bytes:
    engine = _fast_engine if fast else zlib
    comp = engine.compressobj(engine_level(level, fast), engine.DEFLATED, wbits)
    return comp.compress(data) + comp.flush(engine.Z_SYNC_FLUSH)


def _compress(data: bytes, level: int, header: bool, fast: bool) -> bytes:
    """Deflate (after a zlib header when ``header``) of ``data``, sync-flushed,
    in parallel pieces when it is large."""
    pieces = min(parallel.workers(), len(data) // PARALLEL_PIECE)
    if parallel.in_pool():
        pieces = 1
    if pieces < 2:
        return _compress_piece(data, level, 15 if header else -15, fast)
    view = memoryview(data)
    step = -(-len(data) // pieces)
    starts = range(0, len(data), step)
    return b"".join(parallel.map_ordered(
        lambda a: _compress_piece(view[a:a + step], level, 15 if header and a == 0 else -15,
                                  fast),
        list(starts)))


def choose_level(data: bytes, level: int) -> int:
    """``level``, or 0 when a sample of ``data`` shows deflate does not pay."""
    if not 0 < level <= SAMPLED_LEVEL_MAX or len(data) < SAMPLE_THRESHOLD:
        return level
    mid = len(data) // 2
    sample = data[mid:mid + SAMPLE_SIZE]
    if len(zlib.compress(sample, 1)) > INCOMPRESSIBLE_RATIO * len(sample):
        return 0
    return level


def deflate_raw(data: bytes, level: int, *, fast: bool = False) -> bytes:
    """Raw deflate of ``data`` from fresh compressors, ended by a sync flush.

    ``fast`` uses zlib-ng (when installed) one level up: about the same
    size in half to two thirds of the time for ZRLE and Tight data.
    """
    return _compress(data, choose_level(data, level), header=False, fast=fast)


def deflate_stream(data: bytes, level: int, *, fast: bool = False) -> bytes:
    """A zlib stream start (header + deflate) of ``data``, ended by a sync flush."""
    return _compress(data, choose_level(data, level), header=True, fast=fast)
