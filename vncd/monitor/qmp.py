# -*- test-case-name: tests.vncd.monitor.test_qmp -*-
"""One QMP connection, sans-I/O: bytes in, requests out, replies and events in order.

The session's life is one table (:data:`TRANSITIONS`): the greeting is
sent at once, then only ``qmp_capabilities`` is accepted
(*negotiating*); after it succeeds, every command is (*commands*);
*closed* ends it.  Events reach a connection only in *commands*, as in
QEMU.

:class:`QMPConnection` cuts the input into messages
(:mod:`vncd.monitor.jsonstream`), checks each message's envelope with
QEMU 7.2's rules and words (``QMP input must be a JSON object``,
``QMP input member 'foo' is unexpected`` ...), answers
``qmp_capabilities`` itself, and queues every other command as a
:class:`Request`.  Requests are handed out one at a time
(:meth:`next_request`) and answered with :meth:`reply` or
:meth:`reply_error`, so replies leave in the order the requests came,
even when a command finishes later (an ``object-add`` loading
certificates off the reactor thread).  Messages that fail before
dispatch (bad JSON, bad envelope) wait their turn in the same queue.

Deliberate difference: vncd does not offer out-of-band execution (the
``oob`` capability); QEMU offers it on monitors with an I/O thread.

This module knows nothing about the commands themselves, sockets or
Twisted.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

from vncd.monitor.jsonstream import JSONStream, dumps
from vncd.monitor.limits import MonitorLimits
from vncd.monitor.schema import QMPError
from vncd.rfb.errors import LocalProtocolError

__all__ = ["QMPState", "QMPInput", "TRANSITIONS", "QMPConnection", "Request",
           "CAPABILITIES", "NEGOTIATION_REQUIRED", "ALREADY_NEGOTIATED"]


class QMPState(enum.Enum):
    #: Greeting sent; only ``qmp_capabilities`` is accepted.
    NEGOTIATING = "negotiating"
    #: Capabilities negotiated; commands run and events are delivered.
    COMMANDS = "commands"
    #: The connection is over; nothing more is read or sent.
    CLOSED = "closed"


class QMPInput(enum.Enum):
    #: ``qmp_capabilities`` succeeded.
    NEGOTIATED = "negotiated"
    #: Either side closed the connection.
    CLOSE = "close"


#: (state, input) -> next state.
TRANSITIONS: Mapping[tuple[QMPState, QMPInput], QMPState] = {
    (QMPState.NEGOTIATING, QMPInput.NEGOTIATED): QMPState.COMMANDS,
    (QMPState.NEGOTIATING, QMPInput.CLOSE): QMPState.CLOSED,
    (QMPState.COMMANDS, QMPInput.CLOSE): QMPState.CLOSED,
}

#: Capabilities vncd offers in its greeting (QEMU's socket monitors offer
#: ``oob``; vncd runs every command in order).
CAPABILITIES: tuple[str, ...] = ()

#: What a command other than ``qmp_capabilities`` gets before negotiation.
NEGOTIATION_REQUIRED = "Expecting capabilities negotiation with 'qmp_capabilities'"

#: What ``qmp_capabilities`` gets after negotiation.
ALREADY_NEGOTIATED = "Capabilities negotiation is already complete, command ignored"

#: The members a request may have besides ``execute`` (QEMU 7.2).
_ENVELOPE = ("execute", "arguments", "id")


@dataclass
class Request:
    """One message from the client, waiting for its answer.

    ``command`` and ``arguments`` are set for a well-formed request;
    ``error`` instead for a message that failed before dispatch.
    ``has_id``/``id`` echo the client's ``id`` member.
    """

    command: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    has_id: bool = False
    id: Any = None
    error: QMPError | None = None
    answered: bool = False


class QMPConnection:
    """The server side of one QMP connection (see the module docstring).

    ``version`` is the ``QMP.version`` member of the greeting (the reply
    of ``query-version``).  ``pretty`` writes multi-line JSON, like
    QEMU's ``-mon pretty=on``.
    """

    def __init__(self, version: Mapping[str, Any], *, limits: MonitorLimits | None = None,
                 pretty: bool = False) -> None:
        self.limits = limits or MonitorLimits()
        self.state = QMPState.NEGOTIATING
        self._pretty = pretty
        self._stream = JSONStream(self.limits)
        self._requests: deque[Request] = deque()
        self._current: Request | None = None
        self._out = bytearray()
        self._send({"QMP": {"version": dict(version), "capabilities": list(CAPABILITIES)}})

    def _fire(self, event: QMPInput) -> None:
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"no QMP transition for {event.name} in state {self.state.name}") from None

    # -- input ----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; complete messages join the request queue."""
        if self.state is QMPState.CLOSED:
            return
        for message in self._stream.feed(data):
            if message.error is not None:
                self._requests.append(Request(error=QMPError(message.error)))
            else:
                self._requests.append(_request(message.value))

    @property
    def pending(self) -> int:
        """Requests read and not yet answered (the caller stops reading at the limit)."""
        return len(self._requests) + (self._current is not None)

    def next_request(self) -> Request | None:
        """The next request to run, or None (none queued, or one still unanswered).

        Bad messages and ``qmp_capabilities`` are answered here on the way.
        """
        while self._current is None and self._requests and self.state is not QMPState.CLOSED:
            request = self._requests.popleft()
            if request.error is not None:
                self._answer(request, error=request.error)
            elif request.command == "qmp_capabilities":
                self._capabilities(request)
            elif self.state is QMPState.NEGOTIATING:
                self._answer(request, error=QMPError(NEGOTIATION_REQUIRED, "CommandNotFound"))
            else:
                self._current = request
                return request
        return None

    def _capabilities(self, request: Request) -> None:
        if self.state is QMPState.COMMANDS:
            self._answer(request, error=QMPError(ALREADY_NEGOTIATED, "CommandNotFound"))
            return
        try:
            _check_capabilities(request.arguments)
        except QMPError as e:
            self._answer(request, error=e)
            return
        self._fire(QMPInput.NEGOTIATED)
        self._answer(request, value={})

    # -- answers and events --------------------------------------------------------

    def reply(self, request: Request, value: Any) -> None:
        """Answer the current request with its return value."""
        self._finish(request)
        self._answer(request, value=value)

    def reply_error(self, request: Request, error: QMPError) -> None:
        """Answer the current request with an error."""
        self._finish(request)
        self._answer(request, error=error)

    def _finish(self, request: Request) -> None:
        if request is not self._current:
            raise LocalProtocolError("a QMP reply for a request that is not the current one")
        self._current = None

    def _answer(self, request: Request, *, value: Any = None,
                error: QMPError | None = None) -> None:
        request.answered = True
        if self.state is QMPState.CLOSED:
            return
        if error is not None:
            message: dict[str, Any] = {"error": {"class": error.error_class, "desc": error.desc}}
        else:
            message = {"return": value}
        if request.has_id:
            message["id"] = request.id
        self._send(message)

    def send_event(self, name: str, data: Mapping[str, Any] | None,
                   timestamp: tuple[int, int]) -> bool:
        """Send an event if capabilities are negotiated; True if it was sent."""
        if self.state is not QMPState.COMMANDS:
            return False
        message: dict[str, Any] = {"event": name}
        if data is not None:
            message["data"] = dict(data)
        message["timestamp"] = {"seconds": timestamp[0], "microseconds": timestamp[1]}
        self._send(message)
        return True

    def _send(self, message: Mapping[str, Any]) -> None:
        # QEMU's monitor_puts turns every "\n" it writes into "\r\n", so
        # each message (and each line of a pretty one) ends with CR LF.
        text = dumps(message, pretty=self._pretty) + "\n"
        self._out += text.replace("\n", "\r\n").encode("ascii")

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def output_size(self) -> int:
        """Bytes queued and not yet taken by :meth:`data_to_send`."""
        return len(self._out)

    def close(self) -> None:
        """Nothing more is read, answered or sent."""
        if self.state is not QMPState.CLOSED:
            self._fire(QMPInput.CLOSE)
        self._requests.clear()
        self._current = None


def _request(value: Any) -> Request:
    """Check a message's envelope as QEMU 7.2 does (``qmp_dispatch_check_obj``)."""
    if not isinstance(value, dict):
        return Request(error=QMPError("QMP input must be a JSON object"))
    request = Request(has_id="id" in value, id=value.get("id"))
    for name, member in value.items():
        if name == "execute":
            if not isinstance(member, str):
                request.error = QMPError("QMP input member 'execute' must be a string")
                return request
        elif name == "arguments":
            if not isinstance(member, dict):
                request.error = QMPError("QMP input member 'arguments' must be an object")
                return request
        elif name not in _ENVELOPE:
            request.error = QMPError(f"QMP input member '{name}' is unexpected")
            return request
    if "execute" not in value:
        request.error = QMPError("QMP input lacks member 'execute'")
        return request
    request.command = value["execute"]
    request.arguments = dict(value.get("arguments", {}))
    return request


def _check_capabilities(arguments: Mapping[str, Any]) -> None:
    """``qmp_capabilities``'s one optional argument, ``enable``: a list of capabilities."""
    for name in arguments:
        if name != "enable":
            raise QMPError(f"Parameter '{name}' is unexpected")
    enable = arguments.get("enable", [])
    if not isinstance(enable, list):
        raise QMPError("Invalid parameter type for 'enable', expected: array")
    for index, capability in enumerate(enable):
        if not isinstance(capability, str):
            raise QMPError(f"Invalid parameter type for 'enable[{index}]', expected: string")
        if capability != "oob":
            # QEMU 7.2's enum check names a list element 'null'.
            raise QMPError(f"Parameter 'null' does not accept value '{capability}'")
        if capability not in CAPABILITIES:
            raise QMPError(f"Capability '{capability}' not available")
