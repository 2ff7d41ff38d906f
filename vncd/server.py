# -*- test-case-name: tests.vncd.test_server -*-
"""The Twisted edge of the RFB server: one protocol per client, one
:class:`DisplayServer` per ``-vnc`` display.

:class:`RFBServerProtocol` pumps bytes between its transport and a
sans-I/O :class:`~vncd.rfb.stack.RFBStack` (RFB, then VeNCrypt TLS, then
RFB inside it), turns the events into calls on the display's
``ClientUpdates`` after ServerInit, and is the ``sink`` those updates
write to.  It is a streaming producer for its transport: when the
transport's buffer is full it stops reading the client and holds further
output in its own queue, and when the transport drains it tells the
updates object it may write again -- so damage for a slow client is
coalesced by the updates object instead of queued here.

:class:`DisplayServer` holds what the connections of one display share:
the display, the security configuration, the TLS session factory, the
:class:`~vncd.rfb.limits.Limits`, QEMU's share policy and
``connections=`` rule, and the authentication-failure throttle.

The reactor is always passed in (tests use ``MemoryReactorClock``).
This module never looks inside a certificate: TLS sessions come from a
factory built by :mod:`vncd.service` from the creds objects.
"""

from __future__ import annotations

import collections
import enum
import os
from dataclasses import dataclass
from typing import Callable

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from vncd.info import ConnectionInfo
from vncd.pixels import DEFAULT_FORMAT
from vncd.rfb import messages as msg
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.events import (
    CLOSED, NEED_DATA, PAUSED, AuthenticationFailed, AuthenticationSucceeded,
    ClientInitReceived, Refused, SecurityTypeChosen, StartTLS, VersionAgreed,
)
from vncd.rfb.limits import Limits
from vncd.rfb.security import SECURITY_LABELS, SecurityConfig, SecurityType, VeNCryptSubtype
from vncd.rfb.server import ServerConnection
from vncd.rfb.stack import RFBStack, TLSEstablished
from vncd.rfb.tls import CredentialsRejected, TLSFailed
from vncd.websocket import OuterStack

__all__ = [
    "SHARE_POLICIES", "ShareMode", "AuthThrottle", "DisplayServer", "RFBServerProtocol",
    "RFBServerFactory", "peer_text",
]

log = Logger(namespace="vncd.server")

#: QEMU's ``share=`` values.
SHARE_POLICIES = ("allow-exclusive", "force-shared", "ignore")

#: Sent (with the protocol's failure form) to an address the throttle blocks.
THROTTLED_REASON = "Too many authentication failures from this address; try again later"


class ShareMode(enum.Enum):
    """Where a connection stands for QEMU's share and connection-count rules."""

    CONNECTING = "connecting"
    SHARED = "shared"
    EXCLUSIVE = "exclusive"
    DISCONNECTED = "disconnected"


def peer_text(address) -> str:
    """``127.0.0.1:5901``, ``[::1]:5901`` or ``unix`` for a Twisted address."""
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    return "unix"


def peer_host(address) -> str | None:
    """The host part the throttle keys on; ``None`` for UNIX sockets (not throttled)."""
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host
    return None


@dataclass
class _FailureRecord:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0
    block_length: float = 0.0


class AuthThrottle:
    """Refuses addresses that keep failing authentication (QEMU has no such thing).

    After :attr:`Limits.auth_failures_before_block` failures an address is
    refused for :attr:`Limits.auth_block_initial` seconds; every further
    failure after a block doubles the period, up to
    :attr:`Limits.auth_block_max`.  A success forgets the address; so does
    :attr:`Limits.auth_forget_after` without failures.  At most
    :attr:`Limits.auth_max_tracked` addresses are remembered (the least
    recently failing is dropped), so memory stays bounded.
    """

    def __init__(self, clock: Callable[[], float], limits: Limits) -> None:
        self._clock = clock
        self._limits = limits
        self._records: collections.OrderedDict[str, _FailureRecord] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def _current(self, host: str) -> _FailureRecord | None:
        record = self._records.get(host)
        if record is None:
            return None
        now = self._clock()
        idle = now - record.last_failure
        if idle > self._limits.auth_forget_after and now >= record.blocked_until:
            del self._records[host]
            return None
        return record

    def blocked(self, host: str | None) -> bool:
        """True while ``host`` must be refused."""
        if host is None:
            return False
        record = self._current(host)
        return record is not None and self._clock() < record.blocked_until

    def failed(self, host: str | None) -> None:
        """Record one authentication failure from ``host``."""
        if host is None:
            return
        limits = self._limits
        now = self._clock()
        record = self._current(host) or _FailureRecord()
        record.failures += 1
        record.last_failure = now
        if record.failures >= limits.auth_failures_before_block:
            if record.block_length:
                record.block_length = min(record.block_length * 2, limits.auth_block_max)
            else:
                record.block_length = min(limits.auth_block_initial, limits.auth_block_max)
            record.blocked_until = now + record.block_length
        self._records[host] = record
        self._records.move_to_end(host)
        while len(self._records) > limits.auth_max_tracked:
            self._records.popitem(last=False)

    def succeeded(self, host: str | None) -> None:
        """Forget ``host``'s failures after it authenticated."""
        if host is not None:
            self._records.pop(host, None)


class DisplayServer:
    """What every connection to one display shares (QEMU's ``VncDisplay``).

    ``display`` provides ``width``, ``height``, ``name``, ``register``,
    ``unregister`` and ``attach`` (see :mod:`vncd.updates`).
    ``tls_session`` makes a server-endpoint TLS session for VeNCrypt
    (``None`` without ``tls-creds``).  ``connections`` and ``share``
    follow QEMU: at most ``connections`` clients may be negotiating (the
    oldest one is dropped when a new one exceeds it) and at most that
    many may be in shared mode after ClientInit (the newcomer is dropped).
    """

    def __init__(self, display, security: SecurityConfig, *, reactor,
                 tls_session: Callable[[], object] | None = None,
                 limits: Limits | None = None, share: str = "allow-exclusive",
                 connections: int = 32, throttle: AuthThrottle | None = None,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if share not in SHARE_POLICIES:
            raise ValueError(f"unknown share policy {share!r}")
        if connections < 0:
            raise ValueError("connections must not be negative")
        if security.auth.uses_tls and tls_session is None:
            raise ValueError(f"{security.auth.name} needs a TLS session factory")
        self.display = display
        self.security = security
        self.reactor = reactor
        self.tls_session = tls_session
        self.limits = limits or Limits()
        self.share = share
        self.connections = connections
        self.throttle = throttle or AuthThrottle(reactor.seconds, self.limits)
        self.random_bytes = random_bytes
        #: Every live connection, oldest first (the order eviction uses).
        self.clients: list[RFBServerProtocol] = []

    def factory(self, *, websocket: bool = False) -> "RFBServerFactory":
        """A protocol factory for one listener (plain RFB, or ``websocket``) of this display."""
        return RFBServerFactory(self, websocket=websocket)

    def count(self, mode: ShareMode) -> int:
        return sum(1 for c in self.clients if c.share_mode is mode)

    # -- QEMU's connection and share rules -------------------------------

    def connected(self, client: "RFBServerProtocol") -> None:
        """A client was accepted: drop the oldest negotiating one if too many negotiate."""
        client.share_mode = ShareMode.CONNECTING
        self.clients.append(client)
        if self.count(ShareMode.CONNECTING) > self.connections:
            oldest = next(c for c in self.clients if c.share_mode is ShareMode.CONNECTING)
            oldest.drop(f"more than {self.connections} clients are connecting")

    def admit(self, client: "RFBServerProtocol", shared: bool) -> bool:
        """Apply the share policy to a ClientInit; False means drop ``client``."""
        mode = ShareMode.SHARED if shared else ShareMode.EXCLUSIVE
        if self.share == "allow-exclusive":
            if mode is ShareMode.EXCLUSIVE:
                for other in list(self.clients):
                    if other is not client and other.share_mode in (
                            ShareMode.SHARED, ShareMode.EXCLUSIVE):
                        other.drop("another client asked for exclusive access")
            elif self.count(ShareMode.EXCLUSIVE) > 0:
                client.drop_reason = "another client has exclusive access"
                return False
        elif self.share == "force-shared" and mode is ShareMode.EXCLUSIVE:
            client.drop_reason = "exclusive access is not allowed (share=force-shared)"
            return False
        client.share_mode = mode
        if self.count(ShareMode.SHARED) > self.connections:
            client.drop_reason = f"more than {self.connections} shared clients"
            return False
        return True

    def disconnected(self, client: "RFBServerProtocol") -> None:
        """A client is closing or gone: it no longer counts (QEMU marks it at once)."""
        client.share_mode = ShareMode.DISCONNECTED
        if client in self.clients:
            self.clients.remove(client)

    def close_all(self) -> None:
        """Drop every client (service shutdown)."""
        for client in list(self.clients):
            client.drop("the server is stopping")


class RFBServerFactory(Factory):
    """Builds :class:`RFBServerProtocol` for one listener of a :class:`DisplayServer`."""

    #: The service logs what it listens on; Twisted's "Starting factory" is noise.
    noisy = False

    def __init__(self, server: DisplayServer, *, websocket: bool = False) -> None:
        self.server = server
        self.websocket = websocket

    def buildProtocol(self, addr):
        proto = RFBServerProtocol(self.server, websocket=self.websocket)
        proto.factory = self
        return proto


# Client message -> ClientUpdates call.
_DISPATCH: dict[type, Callable] = {
    msg.SetPixelFormat: lambda c, m, s: c.set_pixel_format(m.pixel_format),
    msg.SetEncodings: lambda c, m, s: c.set_encodings(list(m.encodings)),
    msg.FramebufferUpdateRequest: lambda c, m, s: c.request_update(
        m.incremental, *s.clip(m.x, m.y, m.width, m.height)),
    msg.KeyEvent: lambda c, m, s: c.key_event(m.down, m.keysym),
    msg.PointerEvent: lambda c, m, s: c.pointer_event(m.buttons, m.x, m.y),
    msg.ClientCutText: lambda c, m, s: c.cut_text(m.text),
    msg.QEMUExtendedKeyEvent: lambda c, m, s: c.qemu_key_event(m.down, m.keysym, m.keycode),
    msg.EnableContinuousUpdates: lambda c, m, s: c.enable_continuous_updates(
        m.enable, *s.clip(m.x, m.y, m.width, m.height)),
    msg.ClientFence: lambda c, m, s: c.client_fence(m.flags, m.payload),
    msg.SetDesktopSize: lambda c, m, s: c.set_desktop_size(
        m.width, m.height, [screen.as_tuple() for screen in m.screens]),
}


@implementer(IPushProducer)
class RFBServerProtocol(Protocol):
    """One client: transport bytes <-> RFB stack <-> the display's ClientUpdates.

    Also the ``sink`` given to ``display.attach()``: :meth:`write`,
    :meth:`output_buffered` and :meth:`close`.

    A ``websocket`` connection runs RFB inside a WebSocket (inside TLS
    when the display has credentials: wss) and uses the display's
    WebSocket security -- None or VNC authentication, never VeNCrypt.
    """

    def __init__(self, server: DisplayServer, *, websocket: bool = False) -> None:
        self.server = server
        self._websocket = websocket
        self._security = server.security.for_websocket() if websocket else server.security
        self._outer: OuterStack | None = None
        self.share_mode = ShareMode.DISCONNECTED
        #: Why the server decided to drop this client, for the log.
        self.drop_reason: str | None = None
        self.info: ConnectionInfo | None = None
        self.updates = None
        self._stack: RFBStack | None = None
        self._peer_host: str | None = None
        self._paused = False
        self._queue = bytearray()
        self._writing = 0
        self._backlog = 0
        self._timeout = None
        self._close_timer = None
        self._closing = False
        #: True once vncd decided to close (and logged why); a close the
        #: client makes is logged in connectionLost instead.
        self._we_closed = False
        self._registered = False

    # -- connection lifetime ----------------------------------------------

    def connectionMade(self) -> None:
        server = self.server
        peer, host = self.transport.getPeer(), self.transport.getHost()
        self._peer_host = peer_host(peer)
        self.info = ConnectionInfo(peer=peer_text(peer), local=peer_text(host),
                                   websocket=self._websocket,
                                   connected_at=server.reactor.seconds())
        server.display.register(self.info)
        rfb = ServerConnection(self._security, server.limits, random_bytes=server.random_bytes)
        tls = server.tls_session if self._security.auth.uses_tls else None
        self._stack = RFBStack(rfb, tls)
        if self._websocket:
            self._outer = OuterStack(server.tls_session)
        if server.throttle.blocked(self._peer_host):
            log.info("{peer}: refused: too many authentication failures", peer=self.info.peer)
            rfb.deny(THROTTLED_REASON)
        self._timeout = server.reactor.callLater(server.limits.handshake_timeout,
                                                 self._handshake_timed_out)
        self.transport.registerProducer(self, True)
        self._registered = True
        server.connected(self)
        self._flush()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            if self._outer is not None:
                data = self._outer.receive_data(data)
                self._note_outer_tls()
                if self._outer.closed:
                    self._close_after_flush("the WebSocket was closed")
                    return
                if not data:
                    self._flush()
                    return
            self._stack.receive_data(data)
            self._process()
        except RemoteProtocolError as e:
            self._failed(e)

    def _note_outer_tls(self) -> None:
        info = self._outer.new_tls_info()
        if info is not None:
            self._on_tls_established(TLSEstablished(info))

    def connectionLost(self, reason=None) -> None:
        for timer in (self._timeout, self._close_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._timeout = self._close_timer = None
        self._closing = True
        self.server.disconnected(self)
        if self._stack is not None:
            self._stack.rfb.close()
        if self.updates is not None:
            updates, self.updates = self.updates, None
            updates.close()
        if self.info is not None:
            if not self._we_closed:
                log.info("{peer}: disconnected{during}", peer=self.info.peer,
                         during=" during the handshake" if self.info.state == "handshake" else "")
            self.info.state = "closed"
            self.server.display.unregister(self.info)

    # -- events -----------------------------------------------------------

    def _process(self) -> None:
        stack = self._stack
        while not self._closing:
            event = stack.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            if event is CLOSED:
                self._close_after_flush("the client closed the connection")
                break
            handler = _EVENT_HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
            else:
                _DISPATCH[type(event)](self.updates, event, self)
        self._flush()

    def _on_version(self, event: VersionAgreed) -> None:
        self.info.rfb_version = event.text

    def _on_security_type(self, event: SecurityTypeChosen) -> None:
        self.info.security = SECURITY_LABELS.get(event.security_type, str(event.security_type))

    def _on_start_tls(self, event: StartTLS) -> None:
        self.info.subtype = VeNCryptSubtype(event.subtype).label

    def _on_tls_established(self, event: TLSEstablished) -> None:
        tls = event.info
        self.info.tls_version = tls.protocol_version
        self.info.tls_cipher = tls.cipher_name
        self.info.peer_dn = tls.peer_name
        log.debug("{peer}: TLS {version} {cipher} peer {dn}", peer=self.info.peer,
                  version=tls.protocol_version, cipher=tls.cipher_name, dn=tls.peer_name)

    def _on_authenticated(self, event: AuthenticationSucceeded) -> None:
        # Only proof of a secret clears an address's failures: a display
        # without authentication must not launder guesses made at another.
        if self._security.auth.inner is SecurityType.VNC or self.info.peer_dn is not None:
            self.server.throttle.succeeded(self._peer_host)

    def _on_auth_failed(self, event: AuthenticationFailed) -> None:
        log.info("{peer}: authentication failed: {reason}", peer=self.info.peer,
                 reason=event.reason)
        self.server.throttle.failed(self._peer_host)
        self._close_after_flush(event.reason)

    def _on_refused(self, event: Refused) -> None:
        log.info("{peer}: refused: {reason}", peer=self.info.peer, reason=event.reason)
        self._close_after_flush(event.reason)

    def _on_client_init(self, event: ClientInitReceived) -> None:
        server = self.server
        if not server.admit(self, event.shared):
            self.drop(self.drop_reason or "refused by the share policy")
            return
        display = server.display
        self._stack.rfb.send_server_init(display.width, display.height, DEFAULT_FORMAT,
                                         display.name or "")
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        self.info.shared = self.share_mode is ShareMode.SHARED
        self.info.state = "authenticated"
        info = self.info
        security = " ".join(part for part in (info.security, info.subtype) if part)
        if security in ("", "None"):
            security = "no authentication"
        tls = f", {info.tls_version} {info.tls_cipher}" if info.tls_version else ""
        dn = f", client certificate {info.peer_dn}" if info.peer_dn else ""
        log.info("{peer}: connected ({security}{tls}{dn}, {share})", peer=info.peer,
                 security=security, tls=tls, dn=dn,
                 share="shared" if info.shared else "exclusive")
        self._flush()
        self.updates = display.attach(self.info, self)

    def clip(self, x: int, y: int, width: int, height: int) -> tuple[int, int, int, int]:
        """A requested rectangle clipped to the display's current size."""
        dw, dh = self.server.display.width, self.server.display.height
        x, y = min(x, dw), min(y, dh)
        return x, y, min(width, dw - x), min(height, dh - y)

    # -- the sink ClientUpdates writes to --------------------------------

    def write(self, data: bytes) -> None:
        """Queue a server message (after ServerInit) for the client."""
        if self._closing or self._stack is None:
            return
        self._stack.send(data)
        self._flush()

    def output_buffered(self) -> int:
        """Bytes queued towards the client, an upper bound.

        While the transport accepts output its buffer is below its
        high-water mark and counts as nothing; once it has paused us it
        holds at most that mark plus the write that crossed it, and our own
        queue holds the rest.
        """
        return len(self._queue) + (self._backlog if self._paused else 0)

    def close(self, reason: str) -> None:
        """Close the connection after sending what is queued (called by ClientUpdates)."""
        log.info("{peer}: closing: {reason}", peer=self.info.peer, reason=reason)
        self._close_after_flush(reason)

    # -- IPushProducer (the transport pauses us when its buffer is full) -----

    def pauseProducing(self) -> None:
        self._paused = True
        self._backlog = getattr(self.transport, "bufferSize", 0) + self._writing
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self._queue:
            queued = bytes(self._queue)
            self._queue.clear()
            self._write_transport(queued)
        if self._paused or self._closing:
            return
        self.transport.resumeProducing()
        if self.updates is not None:
            self.updates.writable()

    def stopProducing(self) -> None:
        self._closing = True

    # -- output and closing -------------------------------------------------

    def _flush(self) -> None:
        if self._stack is None:
            return
        data = self._stack.data_to_send()
        if self._outer is not None:
            self._outer.send(data)
            data = self._outer.data_to_send()
        if not data:
            return
        if self._paused:
            self._queue += data
            if len(self._queue) > self.server.limits.max_pending_output:
                self.drop(f"more than {self.server.limits.max_pending_output} bytes of output"
                          " queued: the client is not reading")
        else:
            self._write_transport(data)

    def _write_transport(self, data: bytes) -> None:
        """Write to the transport, noting the size in case it pauses us meanwhile."""
        self._writing = len(data)
        try:
            self.transport.write(data)
        finally:
            self._writing = 0

    def _failed(self, error: RemoteProtocolError) -> None:
        log.info("{peer}: {kind}: {reason}", peer=self.info.peer,
                 kind=_FAILURE_WORDS.get(type(error), "protocol error"), reason=error.reason)
        if isinstance(error, CredentialsRejected):
            self.server.throttle.failed(self._peer_host)
        self._close_after_flush(error.reason)

    def _close_after_flush(self, reason: str) -> None:
        if self._closing:
            return
        self._flush()
        self._stack.close()
        if self._outer is not None and not self._outer.closed:
            self._outer.close()
        self._flush()
        self._closing = self._we_closed = True
        self.server.disconnected(self)
        self.drop_reason = self.drop_reason or reason
        if self._queue:
            self._write_transport(bytes(self._queue))
            self._queue.clear()
        self._unregister()
        self.transport.loseConnection()
        self._close_timer = self.server.reactor.callLater(
            self.server.limits.close_timeout, self.transport.abortConnection)

    def drop(self, reason: str) -> None:
        """Disconnect at once, without waiting for queued output (QEMU's disconnect)."""
        if self.info is not None:
            log.info("{peer}: dropped: {reason}", peer=self.info.peer, reason=reason)
        self.drop_reason = reason
        self._closing = self._we_closed = True
        self.server.disconnected(self)
        self._unregister()
        self.transport.abortConnection()

    def _handshake_timed_out(self) -> None:
        self._timeout = None
        state = self._stack.rfb.state.value
        self.drop(f"no ServerInit after {self.server.limits.handshake_timeout:g} s"
                  f" (stalled in {state})")

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            self.transport.unregisterProducer()


#: How the log names each kind of remote failure.
_FAILURE_WORDS: dict[type, str] = {
    TLSFailed: "TLS failure",
    CredentialsRejected: "certificate refused",
}

_EVENT_HANDLERS: dict[type, Callable] = {
    VersionAgreed: RFBServerProtocol._on_version,
    SecurityTypeChosen: RFBServerProtocol._on_security_type,
    StartTLS: RFBServerProtocol._on_start_tls,
    TLSEstablished: RFBServerProtocol._on_tls_established,
    AuthenticationSucceeded: RFBServerProtocol._on_authenticated,
    AuthenticationFailed: RFBServerProtocol._on_auth_failed,
    Refused: RFBServerProtocol._on_refused,
    ClientInitReceived: RFBServerProtocol._on_client_init,
}
