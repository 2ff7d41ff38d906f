# -*- test-case-name: tests.vncd.test_logsummary -*-
"""Repeated log lines summarised per source, so a flood cannot flood the log.

A password brute force used to write two lines per attempt (75,380 lines
in 20 s).  :class:`LogSummary` decides, for each event a caller wants to
log, whether to log it in full or to count it:

* the first event of every distinct ``(source, kind)`` is logged in full;
* repeats within :data:`~vncd.rfb.limits.LOG_SUMMARY_WINDOW` seconds of
  it are counted, and when the window ends :meth:`LogSummary.due` returns
  one :class:`Summary` for them ("127.0.0.2: 5,012 more refusals
  (authentication failed) in the last 10 s"); a new window starts, in
  which repeats are counted again, until a window passes without any --
  then the next event is logged in full again;
* at most :data:`~vncd.rfb.limits.LOG_MAX_TRACKED` pairs are tracked;
  events of a pair that finds the table full are counted together under
  :data:`OTHER_SOURCES`.

So one source adds at most one full line and one summary line per kind
and window, and neither memory nor the number of lines grows with the
number of sources.  ``kind`` must come from a fixed set chosen by the
caller (never from peer data), or the bound is lost.

The module is sans-I/O: the clock is passed in, :meth:`LogSummary.record`
answers and :meth:`LogSummary.due` hands back summaries; the caller logs
them and schedules the next call from :meth:`LogSummary.next_due`.  It
knows nothing about VNC, sockets, Twisted or log backends.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Callable

from vncd.rfb.limits import LOG_MAX_TRACKED, LOG_SUMMARY_WINDOW

__all__ = ["LogSummary", "Summary", "OTHER_SOURCES"]

#: The source under which events are counted once the table is full.
OTHER_SOURCES = "other addresses"


@dataclass(frozen=True)
class Summary:
    """Events of one kind from one source that were counted, not logged."""

    source: str
    count: int
    #: What was counted, plural: ``refusals (authentication failed)``.
    what: str
    #: Length of the window they were counted in.
    seconds: float

    def __str__(self) -> str:
        return f"{self.source}: {self.count:,} more {self.what} in the last {self.seconds:.0f} s"


@dataclass
class _Window:
    what: str
    started: float
    count: int = 0


class LogSummary:
    """Which events to log in full and which to count (see the module docstring)."""

    def __init__(self, clock: Callable[[], float], *, window: float = LOG_SUMMARY_WINDOW,
                 max_tracked: int = LOG_MAX_TRACKED) -> None:
        if window < 0 or max_tracked < 0:
            raise ValueError("window and max_tracked must not be negative")
        self._clock = clock
        self._window = window
        self._max_tracked = max_tracked
        # Oldest window first: a window that starts again moves to the end.
        self._windows: collections.OrderedDict[tuple[str, str], _Window] = \
            collections.OrderedDict()

    def __len__(self) -> int:
        """The ``(source, kind)`` pairs tracked now."""
        return len(self._windows)

    def record(self, source: str, kind: str, what: str) -> bool:
        """One event: True if it is to be logged in full, False if it was counted.

        ``what`` names such events in the plural, for the summary.  Call
        :meth:`due` first, so windows that ended are closed.
        """
        key = (source, kind)
        window = self._windows.get(key)
        if window is None and len(self._windows) >= self._max_tracked:
            key = (OTHER_SOURCES, kind)
            window = self._windows.get(key)
        if window is None:
            self._windows[key] = _Window(what, self._clock())
            return True
        window.count += 1
        return False

    def due(self) -> list[Summary]:
        """Summaries of the windows that have ended; quiet pairs are forgotten."""
        now = self._clock()
        out = []
        while self._windows:
            key, window = next(iter(self._windows.items()))
            if window.started + self._window > now:
                break
            del self._windows[key]
            if window.count:
                out.append(Summary(key[0], window.count, window.what, now - window.started))
                self._windows[key] = _Window(window.what, now)
        return out

    def next_due(self) -> float | None:
        """When :meth:`due` next has work (a clock value), or None when nothing is tracked."""
        if not self._windows:
            return None
        return next(iter(self._windows.values())).started + self._window

    def flush(self) -> list[Summary]:
        """Every pending count as a summary now, and forget everything (at shutdown)."""
        now = self._clock()
        out = [Summary(source, window.count, window.what, now - window.started)
               for (source, _), window in self._windows.items() if window.count]
        self._windows.clear()
        return out
