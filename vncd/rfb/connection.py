# -*- test-case-name: tests.vncd.test_rfb_server -*-
"""What the server and client connection objects share: buffers and the event loop.

:class:`Connection` owns the input and output buffers, the queue of
events not yet returned, and the state machine; its :meth:`~Connection.next_event`
runs the handler of the current state (a subclass method that consumes
bytes, queues replies and events, and returns :data:`NEED_DATA` when the
buffer is short) until there is an event to return or nothing more can
happen.  A :class:`~vncd.rfb.errors.RemoteProtocolError` from a handler
closes the connection; the end of the peer's stream is clean only
between messages after initialisation.

This module knows nothing about which side it plays, sockets or TLS.
"""

from __future__ import annotations

import enum
from typing import Callable, ClassVar, Mapping

from vncd.rfb.errors import LocalProtocolError, RemoteProtocolError
from vncd.rfb.events import CLOSED, NEED_DATA, PAUSED
from vncd.rfb.states import StateMachine

__all__ = ["Connection"]


class Connection:
    """Base of :class:`~vncd.rfb.server.ServerConnection` and
    :class:`~vncd.rfb.client.ClientConnection`.

    Subclasses set the class attributes below, ``HANDLERS`` last (after
    their methods exist).
    """

    #: Who is at the other end, for messages ("client" or "server").
    PEER: ClassVar[str]
    #: The table's FAIL input, CLOSED, RUNNING and waiting-for-TLS states.
    FAIL: ClassVar[enum.Enum]
    CLOSED_STATE: ClassVar[enum.Enum]
    RUNNING_STATE: ClassVar[enum.Enum]
    TLS_STATE: ClassVar[enum.Enum]
    #: States in which the caller must act before anything more is parsed.
    PAUSED_STATES: ClassVar[frozenset]
    #: The handler (a method, called with the connection) of each state that
    #: reads bytes.  One table per class: a connection builds no bound methods.
    HANDLERS: ClassVar[Mapping[enum.Enum, Callable[["Connection"], object]]]

    def __init__(self, table: Mapping, initial: enum.Enum) -> None:
        self._machine = StateMachine(table, initial)
        self._in = bytearray()
        self._out = bytearray()
        self._pending: list[object] = []
        self._eof = False

    @property
    def state(self):
        return self._machine.state

    # -- bytes ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer (``b""`` means the peer closed)."""
        state = self._machine.state
        if state is self.TLS_STATE:
            raise LocalProtocolError("bytes fed to the RFB layer while TLS is being negotiated")
        if state is self.CLOSED_STATE:
            return
        if not data:
            self._eof = True
            return
        self._buffer(data)

    def _buffer(self, data: bytes) -> None:
        self._in += data

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _peek(self, n: int) -> bytes | None:
        if len(self._in) < n:
            return None
        return bytes(self._in[:n])

    def _take(self, n: int) -> bytes | None:
        data = self._peek(n)
        if data is not None:
            del self._in[:n]
        return data

    # -- events ----------------------------------------------------------------

    def next_event(self):
        """The next event, or :data:`NEED_DATA`, :data:`PAUSED`, :data:`CLOSED`.

        Raises :class:`RemoteProtocolError` when the peer broke the
        protocol; any reply the protocol prescribes is then queued in
        :meth:`data_to_send` and the connection is closed.
        """
        machine = self._machine
        while not self._pending:
            state = machine.state
            if state is self.CLOSED_STATE:
                return CLOSED
            if state in self.PAUSED_STATES:
                return PAUSED
            try:
                self._before_parsing()
                progress = self.HANDLERS[state](self)
            except RemoteProtocolError:
                if machine.state is not self.CLOSED_STATE:
                    machine.process(self.FAIL)
                self._pending.clear()
                raise
            if progress is NEED_DATA:
                if not self._eof:
                    return NEED_DATA
                machine.process(self.FAIL)
                if state is self.RUNNING_STATE and self._between_messages():
                    return CLOSED
                raise RemoteProtocolError(
                    f"the {self.PEER} closed the connection in state {state.value}")
        return self._pending.pop(0)

    def _before_parsing(self) -> None:
        """A hook run before each handler (the server checks its input limit)."""

    def _between_messages(self) -> bool:
        """True when no message is partly received (a clean place to stop)."""
        return not self._in

    def close(self) -> None:
        """Stop: nothing more is parsed or produced."""
        if self.state is not self.CLOSED_STATE:
            self._machine.process(self.FAIL)
        self._pending.clear()

    def _remote_error(self, reason: str, reply: bytes = b"") -> None:
        """Queue ``reply`` and raise: the peer broke the protocol."""
        self._out += reply
        raise RemoteProtocolError(reason)
