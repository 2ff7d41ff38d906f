# -*- test-case-name: tests.vncd.test_rfb_client -*-
"""Test doubles for code built on the RFB cores (vncd's tests and embedders').

* :class:`MemoryPeer` and :func:`converse` join two sans-I/O stacks (or
  bare connections) in memory and run them until neither has anything
  left to say -- a bounded number of rounds, so a broken peer cannot
  make a test spin.
* :class:`FakeDisplay` and :class:`RecordingUpdates` stand in for
  :class:`vncd.updates.Display` and its ``ClientUpdates`` and record
  every call the server makes.

Nothing here touches sockets or a reactor.
"""

from __future__ import annotations

from typing import Callable

from vncd.pixels import DEFAULT_FORMAT
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.events import CLOSED, NEED_DATA, PAUSED, ClientInitReceived

__all__ = ["MemoryPeer", "converse", "FakeDisplay", "RecordingUpdates", "MAX_ROUNDS"]

#: A full handshake with TLS takes under a dozen exchanges; anything still
#: talking after this many rounds is stuck.
MAX_ROUNDS = 64


class MemoryPeer:
    """One end of an in-memory connection: a stack and what it reported.

    ``on_event(peer, event)`` is called for every event (after it is
    recorded); the default answers ClientInit with a 64x48 ServerInit so
    a server side reaches the message phase.
    """

    def __init__(self, stack, on_event: Callable | None = None) -> None:
        self.stack = stack
        self.events: list[object] = []
        self.error: RemoteProtocolError | None = None
        self.closed = False
        self.received = bytearray()
        self._on_event = on_event or _answer_client_init

    def feed(self, data: bytes) -> None:
        """Deliver bytes from the other end (ignored once this end stopped)."""
        self.received += data
        if self.error is not None or self.closed:
            return
        try:
            self.stack.receive_data(data)
        except RemoteProtocolError as e:
            self.error = e
            return
        self.drain()

    def drain(self) -> None:
        """Take every event the stack has ready."""
        while self.error is None and not self.closed:
            try:
                event = self.stack.next_event()
            except RemoteProtocolError as e:
                self.error = e
                return
            if event is NEED_DATA or event is PAUSED:
                return
            if event is CLOSED:
                self.closed = True
                return
            self.events.append(event)
            self._on_event(self, event)

    def of_type(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]


def _answer_client_init(peer: MemoryPeer, event) -> None:
    if isinstance(event, ClientInitReceived):
        rfb = getattr(peer.stack, "rfb", peer.stack)
        rfb.send_server_init(64, 48, DEFAULT_FORMAT, "memory")


def converse(a: MemoryPeer, b: MemoryPeer, max_rounds: int = MAX_ROUNDS) -> None:
    """Move bytes both ways until both ends are quiet."""
    a.drain()
    b.drain()
    for _ in range(max_rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = src.stack.data_to_send()
            if data:
                moved = True
                dst.feed(data)
        if not moved:
            return
    raise AssertionError(f"the two ends were still talking after {max_rounds} rounds")


class RecordingUpdates:
    """A ``ClientUpdates`` that records every call as ``(method, args)``."""

    def __init__(self, display: "FakeDisplay", info, sink) -> None:
        self.display = display
        self.info = info
        self.sink = sink
        self.calls: list[tuple[str, tuple]] = []
        self.closed = False

    def _record(name):
        def method(self, *args):
            self.calls.append((name, args))
        method.__name__ = name
        return method

    set_pixel_format = _record("set_pixel_format")
    set_encodings = _record("set_encodings")
    request_update = _record("request_update")
    enable_continuous_updates = _record("enable_continuous_updates")
    client_fence = _record("client_fence")
    key_event = _record("key_event")
    qemu_key_event = _record("qemu_key_event")
    pointer_event = _record("pointer_event")
    cut_text = _record("cut_text")
    set_desktop_size = _record("set_desktop_size")
    writable = _record("writable")
    del _record

    def close(self) -> None:
        self.closed = True
        self.calls.append(("close", ()))


class FakeDisplay:
    """A display of a fixed size that records registrations and attachments."""

    def __init__(self, width: int = 64, height: int = 48, name: str = "fake") -> None:
        self.width = width
        self.height = height
        self.name = name
        self.registered: list[object] = []
        self.unregistered: list[object] = []
        self.attached: list[RecordingUpdates] = []

    def register(self, info) -> None:
        self.registered.append(info)

    def unregister(self, info) -> None:
        self.unregistered.append(info)

    def attach(self, info, sink) -> RecordingUpdates:
        updates = RecordingUpdates(self, info, sink)
        self.attached.append(updates)
        return updates
