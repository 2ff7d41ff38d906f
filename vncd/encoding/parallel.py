# -*- test-case-name: tests.vncd.test_encoding -*-
"""A small thread pool the encoders share to use every CPU for one rectangle.

zlib, Pillow's JPEG encoder and numpy's bulk operations release the GIL,
so independent pieces of one rectangle (deflate pieces, Tight pieces),
or the rectangles of one update, encode in parallel on threads.
:func:`map_ordered` runs a function over a list of items and returns the
results in order; the calling thread works on the list too, so with one
usable CPU (``taskset``, a container's CPU set) nothing is handed off at
all.  Work started from a
pool thread runs serially in that thread: nested parallelism would only
add hand-offs, and could deadlock a pool whose threads all wait.

Knows nothing about encodings or connections.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["map_ordered", "workers", "in_pool", "MAX_THREADS"]

#: Most threads, whatever the machine (each holds a Tight palette table
#: of 16 MiB of address space, only touched pages resident).
MAX_THREADS = 8

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_size = 0
_lock = threading.Lock()
_local = threading.local()


def workers() -> int:
    """Threads one rectangle may use: the CPUs this process may run on."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cpus))


def in_pool() -> bool:
    """Whether the calling thread is one of the pool's (work stays serial there)."""
    return getattr(_local, "in_pool", False)


def _mark() -> None:
    _local.in_pool = True


def _executor(size: int) -> ThreadPoolExecutor:
    """The shared pool (rebuilt after a fork, whose child has no threads)."""
    global _pool, _pool_pid, _pool_size
    with _lock:
        if _pool is None or _pool_pid != os.getpid() or _pool_size < size:
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="vncd-encode",
                                       initializer=_mark)
            _pool_pid, _pool_size = os.getpid(), size
        return _pool


def map_ordered(fn, items: list) -> list:
    """``[fn(item) for item in items]``, spread over the pool's threads.

    The items are shared out as the threads become free, not dealt out in
    advance: on a machine whose other CPUs are busy with other programs a
    pool thread may not run for a while, and the caller then takes its
    items.  The first exception raised by ``fn`` is raised here once every
    thread has stopped working on the list.
    """
    count = 1 if in_pool() else workers()
    if count < 2 or len(items) < 2:
        return [fn(item) for item in items]
    pool = _executor(count - 1)
    results: list = [None] * len(items)
    taken = itertools.count()
    failed: list[BaseException] = []

    def drain() -> None:
        # itertools.count's next() is atomic under the GIL: each index is
        # handed to exactly one thread.
        for i in iter(taken.__next__, None):
            if i >= len(items) or failed:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as e:
                failed.append(e)
                return

    helpers = [pool.submit(drain) for _ in range(min(count - 1, len(items) - 1))]
    _local.in_pool = True  # the caller's share stays serial, as the pool's does
    try:
        drain()
    finally:
        _local.in_pool = False
        for helper in helpers:
            # A helper that has not started yet finds nothing left: skip it
            # rather than wait for a busy machine to schedule it.
            if not helper.cancel():
                helper.result()
    if failed:
        raise failed[0]
    return results
