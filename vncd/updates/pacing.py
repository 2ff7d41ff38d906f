"""Input on its way from the clients to the screen: :class:`InputPacer`.

Spaces key events ``key-delay-ms`` apart as QEMU does, keeps every event
in the order the clients sent it, and holds a bounded number of them.

Knows nothing about pixels, encodings or update scheduling; a client is
only something with ``info.peer`` to name in a log line.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Callable

from twisted.logger import Logger

from vncd.screens.base import InputEvent, KeyEvent, PointerEvent

if TYPE_CHECKING:
    from vncd.updates.client import ClientUpdates

__all__ = ["InputPacer"]

log = Logger(namespace="vncd.updates")


class InputPacer:
    """One display's input on its way to the screen, key events spaced out.

    QEMU's ``key-delay-ms``: a key event goes to the screen at once when
    nothing is waiting and the previous key event left at least ``delay``
    seconds ago; otherwise it waits its turn, and consecutive key events
    leave at least ``delay`` apart (whatever reads them -- a guest's
    keyboard controller, an application polling key state -- may miss
    keys that come faster).  Pointer and clipboard events are never
    delayed on their own account, but one that arrives while key events
    wait queues behind them, so the screen sees the input in the order
    the clients sent it.  (QEMU lets pointer events overtake waiting keys,
    which can turn Ctrl+A followed by a click into a Ctrl+click.)  Pointer
    motion queued behind keys is merged: a position with the same buttons
    replaces the previous one.  At most ``limit`` events wait; further
    ones are dropped, as QEMU drops them, with one log line per overflow.
    Events already accepted are delivered even if their client has gone
    meanwhile, so its key releases still arrive.

    ``deliver(client, handler, event)`` hands one event to the screen;
    the timer comes from ``reactor.callLater``.
    """

    def __init__(self, reactor, delay: float, limit: int,
                 deliver: Callable[["ClientUpdates", Callable, InputEvent], None]) -> None:
        if delay < 0 or limit < 0:
            raise ValueError("the key delay and the queue limit must not be negative")
        self.reactor = reactor
        self.delay = delay
        self.limit = limit
        self._deliver = deliver
        self._waiting: collections.deque = collections.deque()
        self._call = None
        self._overflowing = False
        self._closed = False
        #: Events dropped because ``limit`` events were waiting.
        self.dropped = 0

    def __len__(self) -> int:
        """Events waiting."""
        return len(self._waiting)

    def submit(self, client: "ClientUpdates", handler: Callable, event: InputEvent) -> None:
        """Deliver ``event`` (with ``handler``) now, or queue it behind what waits."""
        if self._closed:
            return
        key = isinstance(event, KeyEvent)
        if not self._waiting and (not key or self._call is None):
            self._deliver(client, handler, event)
            if key:
                self._pause()
            return
        if isinstance(event, PointerEvent) and self._waiting:
            last_client, _, last = self._waiting[-1]
            if (last_client is client and isinstance(last, PointerEvent)
                    and last.buttons == event.buttons):
                self._waiting[-1] = (client, handler, event)
                return
        if len(self._waiting) >= self.limit:
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                log.warn("{count} input events are waiting for key-delay-ms: dropping input"
                         " from {peer} until they drain", count=len(self._waiting),
                         peer=client.info.peer)
            return
        self._waiting.append((client, handler, event))

    def close(self) -> None:
        """Drop whatever waits and stop the timer (the display is closing)."""
        self._closed = True
        self._waiting.clear()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _pause(self) -> None:
        """A key event left: the next one waits ``delay``."""
        if self.delay > 0 and not self._closed:
            self._call = self.reactor.callLater(self.delay, self._release)

    def _release(self) -> None:
        """The pause is over: deliver the next key event and what follows it, up
        to the key event after it."""
        self._call = None
        sent_key = False
        while self._waiting and not self._closed:
            client, handler, event = self._waiting[0]
            if isinstance(event, KeyEvent):
                if sent_key:
                    break
                sent_key = True
            self._waiting.popleft()
            self._deliver(client, handler, event)
        if not self._waiting:
            self._overflowing = False
        if sent_key:
            self._pause()
