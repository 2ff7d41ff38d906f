# -*- test-case-name: tests.vncd.test_reactor -*-
"""The reactor the ``vncd`` command runs: Twisted's epoll reactor, minus a log context per event.

Twisted's ``EPollReactor`` runs every read or write event inside
``log.callWithLogger``: it asks the connection for its ``logPrefix()``,
copies the legacy log context dictionary, pushes it on a context stack
and pops it again -- five Python calls and two dictionaries for each
event, whether or not anything is logged.  A short exchange such as an
RFB handshake is a handful of events, so that wrapper was about a tenth
of the Python work of a connection that only shakes hands.

:class:`Reactor` dispatches the same events without that context and
keeps Twisted's handling of everything else exactly: a hang-up without
pending input disconnects the selectable (cleanly when it was being
read), an input event calls ``doRead``, an output event ``doWrite``
unless the read disconnected it, a descriptor whose ``fileno()`` is -1
is dropped, and an exception raised by any of them is logged as a
failure (with the selectable's log prefix as the ``system``, as
Twisted's wrapper puts it) and disconnects that selectable alone.  What
it loses is only the ambient ``system`` of log events emitted during a
successful event, which vncd's log lines never print.

Only :func:`install` puts it in place, and only the ``vncd`` command
calls that (before anything imports ``twisted.internet.reactor``);
programs that embed vncd, and trial, keep the reactor they chose.

This module knows nothing about RFB or vncd's services.
"""

from __future__ import annotations

import errno
import sys

from twisted.internet import epollreactor, posixbase
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.python import log

__all__ = ["Reactor", "install"]

#: What ``_doReadOrWrite`` reports for a descriptor whose fileno() is -1.
_NO_FILEDESC = posixbase._NO_FILEDESC

#: The longest sleep Twisted's ``timeout`` allows: epoll_wait takes
#: milliseconds in a C int.
_LONGEST_SLEEP = 2147483


class Reactor(epollreactor.EPollReactor):
    """``EPollReactor`` whose events run without Twisted's per-event log context."""

    def doPoll(self, timeout: float | None) -> None:
        if timeout is None:
            timeout = -1
        selectables = self._selectables
        try:
            events = self._poller.poll(timeout, len(selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                self._dispatch(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                # Twisted's callWithLogger: a failure outside the
                # selectable's own methods is logged, the loop goes on.
                log.err(system=_log_prefix(selectable))

    doIteration = doPoll

    # -- timed calls: Twisted's, minus the work of an iteration with none due

    def runUntilCurrent(self) -> None:
        """Twisted's ``runUntilCurrent``, entered only when it has something to do.

        Most iterations of a busy server are I/O events with no thread
        call queued, no new timed call, no timed call due and nothing to
        tidy; Twisted still makes five calls to find that out.
        """
        pending = self._pendingTimedCalls
        if (self.threadCallQueue or self._newTimedCalls or self._justStopped
                or (pending and pending[0].time <= self.seconds())
                or (self._cancellations > 50 and self._cancellations > len(pending) >> 1)):
            super().runUntilCurrent()

    def timeout(self) -> float | None:
        """Twisted's ``timeout``: how long the next poll may sleep."""
        if self._newTimedCalls:
            self._insertNewDelayedCalls()
        pending = self._pendingTimedCalls
        if not pending:
            return None
        delay = pending[0].time - self.seconds()
        if delay <= 0:
            return 0
        return delay if delay < _LONGEST_SLEEP else _LONGEST_SLEEP

    def _dispatch(self, selectable, fd: int, event: int) -> None:
        """Twisted's ``_doReadOrWrite``, its failures logged under the selectable's prefix."""
        why = None
        in_read = False
        if event & self._POLL_DISCONNECTED and not (event & self._POLL_IN):
            # A hang-up with no input left: clean if we were reading (maybe
            # a half-close), an error otherwise.
            if fd in self._reads:
                in_read = True
                why = CONNECTION_DONE
            else:
                why = CONNECTION_LOST
        else:
            try:
                if selectable.fileno() == -1:
                    why = _NO_FILEDESC
                else:
                    if event & self._POLL_IN:
                        why = selectable.doRead()
                        in_read = True
                    if not why and event & self._POLL_OUT:
                        why = selectable.doWrite()
                        in_read = False
            except BaseException:
                why = sys.exc_info()[1]
                log.err(system=_log_prefix(selectable))
        if why:
            self._disconnectSelectable(selectable, why, in_read)


def _log_prefix(selectable) -> str:
    """The selectable's ``logPrefix()``, as Twisted's wrapper would name it."""
    try:
        return selectable.logPrefix()
    except KeyboardInterrupt:
        raise
    except BaseException:
        return "(buggy logPrefix method)"


def install() -> Reactor:
    """Make :class:`Reactor` Twisted's global reactor (before anything imports one)."""
    from twisted.internet.main import installReactor

    reactor = Reactor()
    installReactor(reactor)
    return reactor
