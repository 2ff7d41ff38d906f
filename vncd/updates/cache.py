"""Encoded rectangles shared by the clients of a display, and cache-key numbers.

:class:`EncodeCache` holds :class:`~vncd.encoding.EncodedRect` values by
key (generation, rectangle, encoding, parameter number), bounded in
bytes.  :class:`ParamsIds` gives each distinct
:class:`~vncd.encoding.EncodeParams` a small number that is cheap to hash
in those keys.

Neither is thread-safe: both are used on the reactor thread only (the
encoders may run on pool threads, but their results are stored here by
the reactor thread).  Knows nothing about clients or screens.
"""

from __future__ import annotations

from typing import Callable

from vncd.encoding import EncodedRect, EncodeParams
from vncd.updates.config import MAX_PARAMS_IDS

__all__ = ["EncodeCache", "ParamsIds"]


class EncodeCache:
    """Encoded rectangles shared by all clients of a display, bounded in bytes.

    Keys include the display generation; :meth:`clear` is called when the
    generation changes, so no entry outlives the pixels it encodes.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: dict = {}
        self._bytes = 0
        #: Lookups answered from the cache / by encoding.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return self._bytes

    def lookup(self, key) -> EncodedRect | None:
        """The entry for ``key``, or None (counted as a miss: the caller encodes)."""
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
        else:
            self.misses += 1
        return found

    def put(self, key, value: EncodedRect) -> None:
        """Keep ``value`` (unless it alone is over the bound), evicting the oldest."""
        if value.size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._entries[key] = value
        self._bytes += value.size
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._bytes -= self._entries.pop(oldest).size

    def get(self, key, make: Callable[[], EncodedRect]) -> EncodedRect:
        """The entry for ``key``, made by ``make()`` and kept if missing."""
        found = self.lookup(key)
        if found is None:
            found = make()
            self.put(key, found)
        return found

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


class ParamsIds:
    """Small numbers standing for encoding parameter sets in cache keys."""

    def __init__(self, limit: int = MAX_PARAMS_IDS) -> None:
        self.limit = limit
        self._ids: dict[EncodeParams, int] = {}

    def __call__(self, params: EncodeParams) -> int | EncodeParams:
        """The number of ``params``; past ``limit`` distinct sets, ``params`` itself."""
        found = self._ids.get(params)
        if found is None:
            if len(self._ids) >= self.limit:
                return params
            found = self._ids[params] = len(self._ids)
        return found
