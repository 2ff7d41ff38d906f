"""Which encoder a client gets, and encoding many rectangles at once.

:data:`ENCODERS` maps encoding numbers to the encoders of
:mod:`vncd.encoding`; :func:`choose_encoding` picks one from a client's
SetEncodings list.  :func:`encode_many` encodes the rectangles of one
update, spread over the shared thread pool of
:mod:`vncd.encoding.parallel` when there are several.

Every encoded rectangle is self-contained (Zlib and ZRLE bodies come
from a fresh compressor and only the per-connection stream header is
added at send time; Tight resets the streams it uses), so rectangles may
be encoded in any order, on any thread: only the order in which they are
written matters, and that is the caller's.

Knows nothing about clients, caches or screens: frame and rectangles in,
:class:`~vncd.encoding.EncodedRect` values out.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from vncd import encoding as enc
from vncd.encoding import EncodedRect, EncodeParams, parallel, speedups
from vncd.encoding.hextile import encode_hextile
from vncd.encoding.raw import encode_raw
from vncd.encoding.tight import encode_tight
from vncd.encoding.zlib import encode_zlib
from vncd.encoding.zrle import encode_zrle
from vncd.updates.rect import Rect

__all__ = ["ENCODERS", "PARALLEL_BANDS", "choose_encoding", "encode_many"]

#: The encoders for pixel data, by encoding number.
ENCODERS: dict[int, Callable[..., EncodedRect]] = {
    enc.RAW: encode_raw, enc.HEXTILE: encode_hextile, enc.ZLIB: encode_zlib,
    enc.ZRLE: encode_zrle, enc.TIGHT: encode_tight,
}

#: Encodings whose rectangles of one update are encoded in parallel, whole
#: (see :func:`encode_many`).  Their work is zlib, Pillow and the C
#: extension's tile writers, which release the GIL.  For the 17 bands of a
#: full 1080p change on 2 idle cores (``benchmarks.engine --part bands
#: --rounds 30``, median wall / CPU ms, serial -> parallel bands): Zlib
#: 16.8 -> 13.5 / 26.8 -> 26.3, Hextile 5.1 -> 2.8 / 5.1 -> 5.4, ZRLE
#: 8.2 -> 4.6 / 8.2 -> 8.7, Tight 18.4 -> 13.4 / 21.0 -> 22.4, Tight+JPEG
#: 16.3 -> 11.9 / 16.2 -> 17.8.  Raw (0.6 ms) is too cheap to hand off.
#: Without the C extension Hextile's and ZRLE's tile analysis holds the
#: GIL (ZRLE in parallel then lost both wall time and CPU), so they join
#: only when it is built.
PARALLEL_BANDS = frozenset({enc.ZLIB, enc.TIGHT} | (
    {enc.HEXTILE, enc.ZRLE} if speedups.module is not None else set()))

#: Encodings that always beat Zlib when a client lists them too: they
#: compress the same pixels better for similar work (QEMU prefers ZRLE to
#: Zlib the same way).
_BETTER_THAN_ZLIB = (enc.TIGHT, enc.ZRLE)


def choose_encoding(encodings: Sequence[int]) -> int:
    """The encoding vncd uses for a client that listed ``encodings``.

    The client's order is its preference and is followed (RFB says so, and
    a client may list Raw or Hextile first on purpose, to save CPU on a
    fast link), except that Zlib gives way to Tight or ZRLE.  Raw when
    nothing listed can be encoded.
    """
    usable = [number for number in encodings if number in ENCODERS]
    for number in usable:
        if number == enc.ZLIB and any(n in _BETTER_THAN_ZLIB for n in usable):
            continue
        return number
    return enc.RAW


def encode_many(frame: np.ndarray, encoding: int,
                jobs: Sequence[tuple[Rect, EncodeParams]]) -> list[EncodedRect]:
    """``jobs`` (rectangle, parameters) of ``frame`` encoded with ``encoding``, in order.

    With an encoding of :data:`PARALLEL_BANDS` and at least as many jobs
    as the pool has workers (a full-screen change is 17 bands of 1920x64
    at 1080p), the jobs are spread over the pool whole, each encoded
    serially on its thread: whole rectangles are bigger units of work
    than pieces (fewer hand-offs, no per-piece stream restarts).
    Otherwise (fewer jobs than workers -- a small change -- or another
    encoding) they are encoded one after the other on the calling
    thread, where each encoder may still split its rectangle into pieces
    over the pool.
    ``frame`` must not change until this returns.
    """
    encoder = ENCODERS[encoding]
    if encoding not in PARALLEL_BANDS or len(jobs) < max(2, parallel.workers()):
        return [encoder(frame, x, y, w, h, params) for (x, y, w, h), params in jobs]
    return parallel.map_ordered(
        lambda job: encoder(frame, job[0].x, job[0].y, job[0].w, job[0].h, job[1]), list(jobs))
