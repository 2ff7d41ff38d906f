# -*- test-case-name: tests.vncd.test_websocket -*-
"""RFB over WebSocket (RFC 6455) for ``-vnc ...,websocket=``, sans-I/O.

A WebSocket listener runs ``TCP -> [TLS (wss)] -> WebSocket -> RFB``.
As in QEMU, when the display has ``tls-creds`` the whole WebSocket
connection is TLS (browsers cannot do VeNCrypt), using the same
credentials and ``tls-authz``, and the RFB security inside is plain None
or VNC authentication (:meth:`vncd.rfb.security.SecurityConfig.for_websocket`).

:class:`WebSocketLayer` is the server side of the WebSocket protocol
(wsproto does the framing): it accepts the upgrade -- answering with the
``binary`` subprotocol noVNC asks for when the client offers it --, then
carries RFB bytes in binary frames, answers pings and close frames, and
holds the RFB bytes written before the upgrade until it has happened.
:class:`OuterStack` puts the optional TLS layer under it; the Twisted
protocol in :mod:`vncd.server` talks to that.

Differences from QEMU 7.2, all more lenient: any request path is
accepted (QEMU answers 404 unless it is ``/``, while noVNC's default path
is ``/websockify``), and a request without a subprotocol is accepted
(newer QEMU does the same).

This module knows nothing about sockets, Twisted or certificates.
"""

from __future__ import annotations

from typing import Callable

import wsproto.utilities
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection, Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason

from vncd.rfb.errors import LocalProtocolError, RemoteProtocolError
from vncd.rfb.tls import TLSInfo, TLSLayer

__all__ = ["WebSocketLayer", "OuterStack", "SUBPROTOCOL", "MAX_HANDSHAKE_BYTES"]

#: The subprotocol noVNC (and QEMU) use for RFB.
SUBPROTOCOL = "binary"

#: Bytes a client may send before its upgrade request is complete.  QEMU
#: allows 4096 ("typical headers from noVNC are 512 bytes"); a browser
#: adds its cookies for the host, so vncd allows h11's default of 16 KiB.
MAX_HANDSHAKE_BYTES = 16 * 1024


class WebSocketLayer:
    """The server end of one WebSocket connection carrying RFB."""

    def __init__(self) -> None:
        self._ws = WSConnection(ConnectionType.SERVER)
        self._received = 0
        self._held = bytearray()
        self._out = bytearray()
        #: True once the upgrade was accepted.
        self.upgraded = False
        #: True once either side sent a close frame (or the peer vanished).
        self.closed = False
        #: The request path (for logs).
        self.target: str | None = None

    def receive_data(self, data: bytes) -> bytes:
        """Feed bytes from below; return the RFB bytes they carried.

        Raises :class:`RemoteProtocolError` for a bad upgrade request, a
        text frame, or a framing error (the reply, if any, is queued).
        """
        if self.closed:
            return b""
        if not self.upgraded:
            self._received += len(data)
            if self._received > MAX_HANDSHAKE_BYTES:
                self._reject(400)
                raise RemoteProtocolError(
                    f"WebSocket upgrade request longer than {MAX_HANDSHAKE_BYTES} bytes")
        payload = bytearray()
        try:
            self._ws.receive_data(data or None)
            for event in self._ws.events():
                if isinstance(event, Request):
                    self._on_request(event)
                elif isinstance(event, BytesMessage):
                    payload += event.data
                elif isinstance(event, TextMessage):
                    self._close(CloseReason.UNSUPPORTED_DATA, "RFB needs binary frames")
                    raise RemoteProtocolError("the client sent a WebSocket text frame")
                elif isinstance(event, Ping):
                    self._out += self._ws.send(event.response())
                elif isinstance(event, CloseConnection):
                    if self._ws.state is not ConnectionState.CLOSED:
                        self._out += self._ws.send(event.response())
                    self.closed = True
                    break
        except wsproto.utilities.RemoteProtocolError as e:
            hint = e.event_hint
            if isinstance(hint, RejectConnection):
                self._reject(hint.status_code)
            elif hint is not None and self._ws.state is ConnectionState.OPEN:
                self._out += self._ws.send(hint)
            self.closed = True
            raise RemoteProtocolError(f"WebSocket: {e}") from None
        except UnicodeError:
            # wsproto decodes header values as ASCII (Host as IDNA) and lets
            # the decoding error escape: a malformed request all the same.
            self._reject(400)
            raise RemoteProtocolError(
                "WebSocket upgrade request with a header that is not ASCII"
                " (or a malformed Host name)") from None
        return bytes(payload)

    def _on_request(self, request: Request) -> None:
        self.target = request.target
        if request.subprotocols and SUBPROTOCOL not in request.subprotocols:
            self._reject(400)
            raise RemoteProtocolError(
                f"the WebSocket client offers subprotocols {request.subprotocols},"
                f" not {SUBPROTOCOL!r}")
        subprotocol = SUBPROTOCOL if request.subprotocols else None
        self._out += self._ws.send(AcceptConnection(subprotocol=subprotocol))
        self.upgraded = True
        if self._held:
            self._out += self._ws.send(BytesMessage(data=bytes(self._held)))
            self._held.clear()

    def _reject(self, status: int) -> None:
        if self._ws.state is ConnectionState.CONNECTING:
            self._out += self._ws.send(RejectConnection(
                status_code=status, headers=[(b"connection", b"close")]))
        self.closed = True

    def _close(self, code: int, reason: str) -> None:
        self._out += self._ws.send(CloseConnection(code=code, reason=reason))
        self.closed = True

    def send(self, data: bytes) -> None:
        """Queue RFB bytes; held back until the upgrade has been accepted."""
        if self.closed or not data:
            return
        if not self.upgraded:
            self._held += data
        else:
            self._out += self._ws.send(BytesMessage(data=data))

    def close(self) -> None:
        """Send a normal close frame (when the connection is open)."""
        if self.upgraded and not self.closed:
            self._close(CloseReason.NORMAL_CLOSURE, "")

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out


class OuterStack:
    """``[TLS] -> WebSocket``: what lies between a WebSocket listener's socket and RFB.

    ``tls_factory`` makes a server TLS session (wss) or is ``None`` (ws).
    """

    def __init__(self, tls_factory: Callable[[], object] | None = None) -> None:
        self.tls = TLSLayer(tls_factory()) if tls_factory is not None else None
        self.websocket = WebSocketLayer()
        self._tls_reported = False

    def receive_data(self, data: bytes) -> bytes:
        """Wire bytes in, RFB bytes out (raises :class:`RemoteProtocolError`)."""
        if self.tls is not None:
            data = self.tls.receive_data(data)
            if not data:
                return b""
        return self.websocket.receive_data(data)

    def new_tls_info(self) -> TLSInfo | None:
        """The TLS session's details, once, right after it is established."""
        if self.tls is None or not self.tls.established or self._tls_reported:
            return None
        self._tls_reported = True
        return self.tls.info()

    @property
    def closed(self) -> bool:
        return self.websocket.closed

    def send(self, data: bytes) -> None:
        self.websocket.send(data)

    def close(self) -> None:
        """A WebSocket close frame, then TLS close_notify (wss)."""
        self.websocket.close()
        if self.tls is not None and self.tls.established:
            out = self.websocket.data_to_send()
            if out:
                self.tls.send(out)
            self.tls.close()

    def data_to_send(self) -> bytes:
        out = self.websocket.data_to_send()
        if self.tls is None:
            return out
        if out:
            if not self.tls.established:
                raise LocalProtocolError("WebSocket output before the TLS session is established")
            self.tls.send(out)
        return self.tls.data_to_send()
