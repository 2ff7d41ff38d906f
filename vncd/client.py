# -*- test-case-name: tests.vncd.test_client -*-
"""vncd's own RFB client, for Twisted programs, the tests and ``vncd-capture``.

:class:`RFBClient` is a Twisted protocol around the sans-I/O
:class:`~vncd.rfb.client.ClientConnection` and its VeNCrypt TLS layer
(:class:`~vncd.rfb.stack.RFBStack`).  It speaks None, VNC authentication
and VeNCrypt with client-endpoint credentials from :mod:`creds` -- the
server's certificate and host name are checked by the TLS session's
``check_credentials()``, and a client certificate is presented when the
credentials directory has one.  :func:`connect` opens a connection and
fires once ServerInit has arrived; :func:`fetch_framebuffer` asks for the
whole screen and returns it as an RGBX array.

Every failure is an :class:`RFBClientError` whose :attr:`~RFBClientError.kind`
says what went wrong (``connect``, ``refused``, ``auth``, ``security``,
``tls``, ``protocol``, ``closed``, ``timeout``), so callers can react
without parsing messages.

This module never looks inside a certificate; TLS goes through
:class:`creds.session.TLSSession`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

# creds configures OpenSSL when first imported, which must happen before
# twisted.internet.endpoints loads pyOpenSSL (see creds._openssl_config).
from creds.session import HandshakeStatus, TLSSession  # isort: skip
from creds.tlscreds import Endpoint  # isort: skip
from vncd.tlsalerts import certificate_alert_words  # isort: skip

import numpy as np
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.protocol import Protocol

from vncd.encoding import (
    COPYRECT, DESKTOP_SIZE, EXTENDED_DESKTOP_SIZE, HEXTILE, LAST_RECT, RAW, TIGHT, ZLIB, ZRLE,
)
from vncd.encoding.decode import RectDecoded, UpdateComplete
from vncd.rfb import messages as m
from vncd.rfb.client import ClientConnection, ClientSecurity, SecurityNegotiationError
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.events import (
    CLOSED, NEED_DATA, PAUSED, AuthenticationFailed, Refused, ServerInitReceived,
)
from vncd.rfb.limits import Limits
from vncd.rfb.stack import RFBStack, TLSEstablished
from vncd.rfb.tls import CredentialsRejected, TLSFailed

__all__ = [
    "RFBClient", "RFBClientError", "ClientOptions", "connect", "fetch_framebuffer",
    "LOSSLESS_ENCODINGS", "MAX_FULL_REQUESTS",
]

#: What :func:`fetch_framebuffer` asks for: lossless encodings only (no
#: JPEG quality level is sent, so Tight never goes lossy), best first.
LOSSLESS_ENCODINGS = (ZRLE, TIGHT, HEXTILE, ZLIB, COPYRECT, RAW,
                      DESKTOP_SIZE, EXTENDED_DESKTOP_SIZE, LAST_RECT)

#: Requests :func:`fetch_framebuffer` makes before giving up on a server
#: that never covers the whole screen (a resize while we wait costs one,
#: an ExtendedDesktopSize-only reply another).
MAX_FULL_REQUESTS = 16


class RFBClientError(Exception):
    """A client-side failure; ``kind`` classifies it, ``str()`` explains it."""

    KINDS = ("connect", "refused", "auth", "security", "tls", "protocol", "closed", "timeout")

    def __init__(self, kind: str, message: str, *, certificate: bool = False) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown error kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        #: For ``tls``: the handshake completed but the server's certificate
        #: was rejected (the message is the creds check's text).
        self.certificate = certificate


#: The advice when a server leaves right after the TLS handshake without
#: saying why (vncd and QEMU check client certificates only then).
_LEFT_AFTER_TLS = (
    "the server closed the connection right after the TLS handshake: it probably"
    " refused our certificate (check that the server trusts the CA that signed it and"
    " that our name is in its tls-authz list)")


def _tls_session(stack: Any):
    tls = getattr(stack, "tls", None)
    return getattr(tls, "session", None)


def _refused_certificate(stack: Any) -> RFBClientError | None:
    """The server's alert, if it told us that it refused our certificate."""
    session = _tls_session(stack)
    alert = getattr(session, "alert", None)
    if alert is None:
        return None
    words = certificate_alert_words(alert)
    if words is not None and session.has_own_certificate:
        return RFBClientError("tls", f"the server refused our certificate ({words})")
    if words is not None:
        return RFBClientError("tls", f"the server wants a client certificate ({words});"
                                     " give one (--tls-creds-dir with client-cert.pem)")
    return RFBClientError("tls", f"the server ended TLS with the alert '{alert}'")


def _classify(error: RemoteProtocolError, stack: Any = None) -> RFBClientError:
    if isinstance(error, TLSFailed):
        refused = _refused_certificate(stack)
        if refused is not None:
            return refused
    if isinstance(error, CredentialsRejected):
        return RFBClientError("tls", error.reason, certificate=True)
    if isinstance(error, TLSFailed):
        return RFBClientError("tls", error.reason)
    if isinstance(error, SecurityNegotiationError):
        return RFBClientError("security", error.reason)
    return RFBClientError("protocol", error.reason)


@dataclass(frozen=True)
class ClientOptions:
    """How to talk to one server.

    ``tls_creds`` is a client-endpoint credentials object (x509 or anon)
    or ``None``; ``hostname`` is what the server's certificate must name.
    """

    password: bytes | None = field(default=None, repr=False)
    tls_creds: object | None = None
    hostname: str | None = None
    shared: bool = True
    max_minor: int = 8
    limits: Limits | None = None

    def security(self) -> ClientSecurity:
        kind = getattr(self.tls_creds, "kind", None)
        return ClientSecurity(tls=kind, password=self.password)

    def tls_factory(self) -> Callable[[], TLSSession] | None:
        if self.tls_creds is None:
            return None
        creds, hostname = self.tls_creds, self.hostname
        return lambda: TLSSession(creds, Endpoint.CLIENT, hostname=hostname)


class RFBClient(Protocol):
    """One RFB connection, client side.

    :attr:`ready` fires with the :class:`~vncd.rfb.events.ServerInitReceived`
    event (or fails with :class:`RFBClientError`); :attr:`closed` fires when
    the connection is gone.  ``on_event`` sees every event after ServerInit
    (rectangles, bells, cut text ...).
    """

    def __init__(self, options: ClientOptions,
                 on_event: Callable[[object], None] | None = None) -> None:
        self.options = options
        self.on_event = on_event
        self.ready: defer.Deferred = defer.Deferred(self._cancel_ready)
        self.closed: defer.Deferred = defer.Deferred()
        self.server_init: ServerInitReceived | None = None
        #: The TLS session's details once VeNCrypt established it.
        self.tls_info = None
        self._stack: RFBStack | None = None
        self._waiters: list[defer.Deferred] = []
        self._error: RFBClientError | None = None

    @property
    def connection(self) -> ClientConnection:
        return self._stack.rfb

    @property
    def framebuffer(self):
        """The decoder holding the framebuffer (``rgbx()``, ``width``, ``height``)."""
        return self._stack.rfb.framebuffer

    @property
    def error(self) -> RFBClientError | None:
        """Why the connection failed or was given up, once it has."""
        return self._error

    # -- Twisted --------------------------------------------------------------

    def connectionMade(self) -> None:
        # Input events are a few bytes each: Nagle's algorithm would hold
        # them for the server's delayed ACK (40 ms on Linux).
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        opts = self.options
        rfb = ClientConnection(opts.security(), shared=opts.shared, max_minor=opts.max_minor,
                               limits=opts.limits)
        self._stack = RFBStack(rfb, opts.tls_factory())

    def dataReceived(self, data: bytes) -> None:
        try:
            self._stack.receive_data(data)
            self._process()
        except RemoteProtocolError as e:
            self._fail(_classify(e, self._stack))
        self._flush()

    def connectionLost(self, reason=None) -> None:
        error = self._error or self._closed_after_tls() or RFBClientError(
            "closed", "the server closed the connection" + (
                "" if self.server_init is not None else " during the handshake"))
        if not self.ready.called:
            self.ready.errback(error)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(error)
        self.closed.callback(None)

    # -- requests ---------------------------------------------------------------

    def send(self, *messages) -> None:
        """Send client messages (after :attr:`ready`)."""
        for message in messages:
            self._stack.rfb.send(message)
        self._flush()

    def next_update(self) -> defer.Deferred:
        """A Deferred firing (with None) when the next FramebufferUpdate is complete."""
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def abort(self, error: RFBClientError) -> None:
        """Give up on the connection now (a timeout, a stop): :attr:`ready`
        fails with ``error`` if it has not fired, and the socket is dropped."""
        if self._error is None:
            self._error = error
        if self.transport is not None:
            self.transport.abortConnection()

    def _cancel_ready(self, _deferred) -> None:
        """``ready.cancel()``: stop the handshake (the connection goes too)."""
        if self.transport is not None:
            self.transport.abortConnection()

    # -- internals ------------------------------------------------------------

    def _process(self) -> None:
        while True:
            event = self._stack.next_event()
            if event is NEED_DATA or event is PAUSED:
                return
            if event is CLOSED:
                self.transport.loseConnection()
                return
            self._handle(event)

    def _handle(self, event) -> None:
        if isinstance(event, ServerInitReceived):
            self.server_init = event
            self.ready.callback(event)
        elif isinstance(event, TLSEstablished):
            self.tls_info = event.info
        elif isinstance(event, AuthenticationFailed):
            self._fail(RFBClientError("auth", f"authentication failed: {event.reason}"))
        elif isinstance(event, Refused):
            self._fail(RFBClientError("refused", f"the server refused: {event.reason}"))
        elif self.server_init is not None:
            if self.on_event is not None:
                self.on_event(event)
            if isinstance(event, UpdateComplete):
                waiters, self._waiters = self._waiters, []
                for waiter in waiters:
                    waiter.callback(None)

    def _closed_after_tls(self) -> RFBClientError | None:
        """A close right after a TLS handshake in which we showed a certificate."""
        session = _tls_session(self._stack)
        if session is None or self.server_init is not None:
            return None
        if session.handshake_status is not HandshakeStatus.COMPLETE \
                or not session.has_own_certificate:
            return None
        return RFBClientError("tls", _LEFT_AFTER_TLS)

    def _fail(self, error: RFBClientError) -> None:
        if self._error is None:
            self._error = error
        if self.transport is not None:
            self._flush()
            self.transport.loseConnection()

    def _flush(self) -> None:
        data = self._stack.data_to_send() if self._stack is not None else b""
        if data and self.transport is not None:
            self.transport.write(data)


def connect(reactor, address, options: ClientOptions, *, timeout: float = 30,
            handshake_timeout: float | None = None, on_event=None) -> defer.Deferred:
    """Connect to ``address`` (a :class:`compat.config.ListenAddress`-like
    object with ``kind``, ``host``, ``port``) and fire with the
    :class:`RFBClient` once ServerInit has arrived.

    ``timeout`` bounds the TCP (or UNIX) connect; ``handshake_timeout``,
    when given, the time from connected to ServerInit (a server that
    accepts and then says nothing fails with kind ``timeout``).
    Cancelling the Deferred drops the connection at whatever stage it is.
    """
    if address.kind == "unix":
        endpoint = UNIXClientEndpoint(reactor, address.host, timeout=timeout)
    else:
        try:
            endpoint = HostnameEndpoint(reactor, address.host, address.port, timeout=timeout)
        except ValueError as e:
            return defer.fail(RFBClientError("connect", f"cannot connect to {address}: {e}"))
    client = RFBClient(options, on_event=on_event)

    def connected(_):
        if handshake_timeout is not None:
            timer = reactor.callLater(handshake_timeout, client.abort, RFBClientError(
                "timeout", f"no ServerInit from {address} within {handshake_timeout:g} s"))

            def disarm(result):
                if timer.active():
                    timer.cancel()
                return result

            client.ready.addBoth(disarm)
        return client.ready.addCallback(lambda _: client)

    def not_connected(failure):
        failure.trap(ConnectError, DNSLookupError)
        error = failure.value
        osError = getattr(error, "osError", None)
        reason = os.strerror(osError) if isinstance(osError, int) else str(error).rstrip(".")
        raise RFBClientError("connect", f"cannot connect to {address}: {reason}")

    d = connectProtocol(endpoint, client)
    d.addCallbacks(connected, not_connected)
    return d


async def fetch_framebuffer(client: RFBClient,
                            encodings=LOSSLESS_ENCODINGS) -> np.ndarray:
    """Ask for the whole screen until every pixel has arrived; the RGBX array.

    The first request (and the first after a resize) is non-incremental,
    which marks the whole screen as wanted; later ones are incremental, so
    a server that answers a non-incremental request with an
    ExtendedDesktopSize-only update (as rfbproto allows) then sends the
    pixels.  Losslessness is the caller's choice of ``encodings`` (the
    default has no JPEG quality level, so nothing lossy is ever sent).
    """
    fb = client.framebuffer
    covered = {"mask": np.zeros((fb.height, fb.width), dtype=bool), "resized": True}

    def track(event):
        fb = client.framebuffer
        if covered["mask"].shape != (fb.height, fb.width):
            covered["mask"] = np.zeros((fb.height, fb.width), dtype=bool)
            covered["resized"] = True
        if isinstance(event, RectDecoded):
            covered["mask"][event.y:event.y + event.height, event.x:event.x + event.width] = True

    previous = client.on_event

    def on_event(event):
        track(event)
        if previous is not None:
            previous(event)

    client.on_event = on_event
    try:
        client.send(m.SetEncodings(tuple(encodings)))
        for _ in range(MAX_FULL_REQUESTS):
            fb = client.framebuffer
            incremental = not covered["resized"]
            covered["resized"] = False
            client.send(m.FramebufferUpdateRequest(incremental, 0, 0, fb.width, fb.height))
            await client.next_update()
            mask = covered["mask"]
            if mask.shape == (fb.height, fb.width) and mask.all():
                return client.framebuffer.rgbx()
        raise RFBClientError("protocol", f"the server did not send the whole screen in "
                                         f"{MAX_FULL_REQUESTS} updates")
    finally:
        client.on_event = previous
