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
lost (well under 1 % on 1080p frames).  The pool has one thread per CPU
the process may run on (at most :data:`MAX_THREADS`); with one CPU the
input is compressed in the calling thread, as before.
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor

__all__ = ["deflate_raw", "deflate_stream", "choose_level", "parallel_workers",
           "PARALLEL_PIECE", "MAX_THREADS"]

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
#: costs more than the parallelism saves (a 256 KiB piece takes a few ms).
PARALLEL_PIECE = 256 * 1024

#: Most compression threads, whatever the machine.
MAX_THREADS = 8

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


def parallel_workers() -> int:
    """Threads the compression may use: the CPUs this process may run on."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cpus))


def _executor(workers: int) -> ThreadPoolExecutor:
    """The shared pool (rebuilt after a fork: threads do not survive one)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < workers:
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vncd-deflate")
        _pool_pid = os.getpid()
    return _pool


def _compress_piece(data, level: int, wbits: int) -> bytes:
    comp = zlib.compressobj(level, zlib.DEFLATED, wbits)
    return comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)


def _compress(data: bytes, level: int, header: bool) -> bytes:
    """Deflate (after a zlib header when ``header``) of ``data``, sync-flushed,
    in parallel pieces when it is large."""
    workers = parallel_workers()
    pieces = min(workers, len(data) // PARALLEL_PIECE)
    if pieces < 2:
        return _compress_piece(data, level, 15 if header else -15)
    view = memoryview(data)
    step = -(-len(data) // pieces)
    bounds = [(i, min(i + step, len(data))) for i in range(0, len(data), step)]
    futures = [_executor(workers).submit(_compress_piece, view[a:b], level,
                                         15 if header and a == 0 else -15)
               for a, b in bounds[1:]]
    first = _compress_piece(view[bounds[0][0]:bounds[0][1]], level, 15 if header else -15)
    return b"".join([first, *(f.result() for f in futures)])


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
    """Raw deflate of ``data`` from fresh compressors, ended by a sync flush."""
    return _compress(data, choose_level(data, level), header=False)


def deflate_stream(data: bytes, level: int) -> bytes:
    """A zlib stream start (header + deflate) of ``data``, ended by a sync flush."""
    return _compress(data, choose_level(data, level), header=True)
