# -*- test-case-name: tests.vncd.test_server -*-
"""The Twisted edge of the RFB server: one protocol per client, one
:class:`DisplayServer` per ``-vnc`` display.

:class:`RFBServerProtocol` pumps bytes between its transport and a
sans-I/O :class:`~vncd.rfb.stack.RFBStack` (RFB, then VeNCrypt TLS, then
RFB inside it), turns the events into calls on the display's
``ClientUpdates`` after ServerInit, and is the ``sink`` those updates
write to.  Where the connection stands -- handshaking, serving, paused
because the transport's buffer is full, closing, cut, closed -- is one
:class:`~vncd.rfb.states.StateMachine` over :data:`vncd.lifecycle.TRANSITIONS`;
everything the protocol does once per connection happens on a transition
of it.  It is a streaming producer for its transport: when the transport's
buffer is full it stops reading the client and holds further output in
one :class:`PendingOutput`, and when the transport drains it tells the
updates object it may write again -- so damage for a slow client is
coalesced by the updates object instead of queued here.

:class:`DisplayServer` holds what the connections of one display share:
the display, the security configuration, the TLS session factory, the
:class:`~vncd.rfb.limits.Limits`, QEMU's share policy and
``connections=`` rule (with fair eviction, below), the
authentication-failure throttle, the connection log and the observers.

Observers (the monitor's QMP events) are objects in
:attr:`DisplayServer.observers` with three methods, each called with the
display server and the connection's :class:`~vncd.info.ConnectionInfo`.
QEMU 7.2, watched over QMP while clients connected through None, VNC
authentication, X509None, ws and wss, emits:

* ``VNC_CONNECTED`` as soon as it accepts a connection, before a byte is
  exchanged -- before the RFB version, the VeNCrypt TLS handshake, and on
  a WebSocket listener before the upgrade and (wss) the TLS handshake --,
  so also for clients that are refused, fail authentication or TLS, or
  close at once: :meth:`client_connected` on ``accepted``;
* ``VNC_INITIALIZED`` once ServerInit has been sent, so only for clients
  past authentication and the share policy: :meth:`client_initialized`
  on ``server-init-sent``;
* ``VNC_DISCONNECTED`` exactly once for every connection it announced,
  whatever ended it; when a newcomer pushes out a negotiating client
  (``connections=``), the newcomer's ``VNC_CONNECTED`` comes before the
  other's ``VNC_DISCONNECTED``: :meth:`client_disconnected` when the
  connection leaves the live states (we close, we cut, the client
  closes, the transport reports it lost), in the same order.

An observer that raises is logged once and otherwise ignored; the
connection goes on.

Fair eviction: QEMU drops the oldest negotiating client when more than
``connections=`` negotiate, so one address opening connections fast
pushes out everyone else.  vncd counts unfinished handshakes per
*source* -- an IPv4 address, an IPv6 network of
:attr:`~vncd.rfb.limits.Limits.ipv6_source_prefix` bits, or "unix" for
every UNIX-socket peer --: beyond
:attr:`~vncd.rfb.limits.Limits.max_handshakes_per_source` a source's own
oldest handshake is dropped, and beyond ``connections=`` the oldest
handshake of the source holding the most is (of sources holding equally
many, the one with the oldest handshake: with one handshake per source,
QEMU's rule).

The connection log (connected, refused, failed, dropped, disconnected)
goes through :class:`ConnectionLog`, which summarises repeats per source
(:mod:`vncd.logsummary`).

The reactor is always passed in (tests use ``MemoryReactorClock``).
This module never looks inside a certificate: TLS sessions come from a
factory built by :mod:`vncd.service` from the creds objects.
"""

from __future__ import annotations

import collections
import enum
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from vncd.info import ConnectionInfo
from vncd.lifecycle import HANDSHAKE, LIVE, PAUSED, TRANSITIONS, Life, LifeInput
from vncd.logsummary import LogSummary
from vncd.pixels import DEFAULT_FORMAT
from vncd.rfb import messages as msg
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.events import (
    CLOSED, NEED_DATA, PAUSED as STACK_PAUSED, AuthenticationFailed, AuthenticationSucceeded,
    ClientInitReceived, Refused, SecurityTypeChosen, StartTLS, VersionAgreed,
)
from vncd.rfb.limits import Limits
from vncd.rfb.security import SECURITY_LABELS, SecurityConfig, SecurityType, VeNCryptSubtype
from vncd.rfb.server import ServerConnection
from vncd.rfb.stack import RFBStack, TLSEstablished
from vncd.rfb.states import StateMachine
from vncd.rfb.tls import CredentialsRejected, TLSFailed
from vncd.tlsalerts import certificate_alert_words
from vncd.websocket import OuterStack

__all__ = [
    "SHARE_POLICIES", "ShareMode", "AuthThrottle", "ConnectionLog", "LineKind",
    "DisplayServer", "RFBServerProtocol", "RFBServerFactory", "PendingOutput", "peer_text",
    "address_info", "source_of",
]

log = Logger(namespace="vncd.server")

#: QEMU's ``share=`` values.
SHARE_POLICIES = ("allow-exclusive", "force-shared", "ignore")

#: Sent (with the protocol's failure form) to an address the throttle blocks.
THROTTLED_REASON = "Too many authentication failures from this address; try again later"

#: Server messages at least this long on a connection without TLS or
#: WebSocket go to the transport without passing through the RFB stack's
#: buffer: two copies of every large update (8 MB for a Raw 1080p frame)
#: saved.  Smaller messages are gathered there as before.
DIRECT_WRITE_MIN = 64 * 1024

#: When the transport resumes us, held-back output is handed to it until it
#: holds about this much, even past its own high-water mark: the bands of
#: a large update then leave several per send (the transport gathers them
#: without copying) instead of one per pause and resume.  Bytes already
#: made, so the bound on what a connection holds does not change.
RESUME_HANDOFF = 1024 * 1024


class ShareMode(enum.Enum):
    """Where a connection stands for QEMU's share and connection-count rules."""

    CONNECTING = "connecting"
    SHARED = "shared"
    EXCLUSIVE = "exclusive"
    DISCONNECTED = "disconnected"


def peer_text(address) -> str:
    """``127.0.0.1:5901``, ``[::1]:5901`` or ``unix`` for a Twisted address."""
    return _text(*address_info(address))


def address_info(address) -> tuple[str, str, str]:
    """QEMU's ``VncBasicInfo`` of a Twisted address: ``(host, service, family)``."""
    if isinstance(address, IPv6Address):
        return address.host, str(address.port), "ipv6"
    if isinstance(address, IPv4Address):
        return address.host, str(address.port), "ipv4"
    if isinstance(address, UNIXAddress):
        name = address.name or ""
        return "", os.fsdecode(name), "unix"
    return "", "", "unknown"


def _text(host: str, service: str, family: str) -> str:
    """:func:`peer_text` of an :func:`address_info` triple."""
    if family == "ipv6":
        return f"[{host}]:{service}"
    if family == "ipv4":
        return f"{host}:{service}"
    return "unix"


def _describe(address) -> tuple[str, str, str, str]:
    """:func:`peer_text` and :func:`address_info` of ``address`` together
    (each connection describes both of its ends)."""
    info = address_info(address)
    return (_text(*info), *info)


def source_of(address, limits: Limits) -> str:
    """Who a peer counts as for fair eviction and the log summary: its IPv4
    address, its IPv6 network (``2001:db8:1:2::/64``), or ``unix``."""
    if isinstance(address, IPv6Address):
        try:
            ip = ipaddress.IPv6Address(address.host.split("%", 1)[0])
        except ValueError:
            return address.host
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        network = ipaddress.IPv6Network((ip, limits.ipv6_source_prefix), strict=False)
        return str(network)
    if isinstance(address, IPv4Address):
        return address.host
    return "unix"


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


class LineKind(enum.Enum):
    """What a connection log line reports; the value names repeats in a summary."""

    CONNECTED = "connections"
    DISCONNECTED = "disconnections"
    REFUSED = "refusals"
    TOO_MANY = "refusals (too many clients connecting)"
    AUTHENTICATION_FAILED = "refusals (authentication failed)"
    TLS_FAILURE = "TLS failures"
    CERTIFICATE_REFUSED = "refusals (certificate refused)"
    PROTOCOL_ERROR = "protocol errors"
    DROPPED = "drops"
    CLOSING = "closes"


class ConnectionLog:
    """The connection lines of one service's displays, repeats summarised per
    source by a :class:`~vncd.logsummary.LogSummary` on the reactor's clock.

    A timer reports the counts of each window when it ends;
    :meth:`close` reports what is pending and stops the timer.
    """

    def __init__(self, reactor, limits: Limits | None = None) -> None:
        limits = limits or Limits()
        self._reactor = reactor
        self._summary = LogSummary(reactor.seconds, window=limits.log_summary_window,
                                   max_tracked=limits.log_max_tracked)
        self._timer = None

    def line(self, source: str, kind: LineKind, text: str, /, *, detail: str = "",
             **fields) -> None:
        """Log ``text`` (a Twisted format string over ``fields``) unless it is a
        repeat of ``kind`` from ``source``; ``detail`` (a bounded, server-chosen
        string) makes lines with different details count apart."""
        self._report(self._summary.due())
        # The members' own attributes: ``.value`` and ``.name`` are
        # Python-level descriptors, and this runs twice per connection.
        what = f"{kind._value_} ({detail})" if detail else kind._value_
        if self._summary.record(source, f"{kind._name_} {detail}", what):
            log.info(text, **fields)
        self._schedule()

    def close(self) -> None:
        """Report every pending count now and stop the timer (the service stops)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._report(self._summary.flush())

    def _report(self, summaries) -> None:
        for summary in summaries:
            log.info("{summary}", summary=summary)

    def _schedule(self) -> None:
        if self._timer is not None and self._timer.active():
            return
        due = self._summary.next_due()
        if due is not None:
            self._timer = self._reactor.callLater(max(0.0, due - self._reactor.seconds()),
                                                  self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._report(self._summary.due())
        self._schedule()


class DisplayServer:
    """What every connection to one display shares (QEMU's ``VncDisplay``).

    ``display`` provides ``width``, ``height``, ``name``, ``register``,
    ``unregister`` and ``attach`` (see :mod:`vncd.updates`).
    ``tls_session`` makes a server-endpoint TLS session for VeNCrypt
    (``None`` without ``tls-creds``).  ``connections`` and ``share``
    follow QEMU: at most ``connections`` clients may be negotiating (one
    is dropped when a newcomer exceeds it, chosen fairly: see the module
    docstring) and at most that many may be in shared mode after
    ClientInit (the newcomer is dropped).  ``throttle`` and
    ``connection_log`` may be shared by several displays.
    """

    def __init__(self, display, security: SecurityConfig, *, reactor,
                 tls_session: Callable[[], object] | None = None,
                 limits: Limits | None = None, share: str = "allow-exclusive",
                 connections: int = 32, throttle: AuthThrottle | None = None,
                 connection_log: ConnectionLog | None = None,
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
        self.connection_log = connection_log or ConnectionLog(reactor, self.limits)
        self.random_bytes = random_bytes
        #: Every live connection, oldest first (the order eviction uses).
        self.clients: list[RFBServerProtocol] = []
        #: Objects told about connections: ``client_connected``,
        #: ``client_initialized`` and ``client_disconnected``, each called
        #: with this server and the connection's ConnectionInfo.
        self.observers: list = []
        self._failed_observers: list = []
        #: Unfinished handshakes per source (kept by the clients' life transitions).
        self._handshakes: collections.Counter[str] = collections.Counter()

    def factory(self, *, websocket: bool = False) -> "RFBServerFactory":
        """A protocol factory for one listener (plain RFB, or ``websocket``) of this display."""
        return RFBServerFactory(self, websocket=websocket)

    def count(self, mode: ShareMode) -> int:
        return sum(1 for c in self.clients if c.share_mode is mode)

    def clients_info(self) -> list[ConnectionInfo]:
        """The ConnectionInfo of every live client, in connection order."""
        return [client.info for client in self.clients]

    # -- QEMU's connection and share rules -------------------------------

    def accepts(self, address) -> bool:
        """Whether a connection from ``address`` may start a handshake: not when
        its source already holds :attr:`Limits.max_handshakes_per_source`
        unfinished ones (it is then closed at once, with a log line, before
        anything else is spent on it)."""
        source = source_of(address, self.limits)
        limit = self.limits.max_handshakes_per_source
        if self._handshakes.get(source, 0) < limit:
            return True
        self.connection_log.line(
            source, LineKind.TOO_MANY, "{peer}: refused: more than {limit} clients from"
            " {source} are connecting", peer=peer_text(address), limit=limit, source=source)
        return False

    def connected(self, client: "RFBServerProtocol") -> None:
        """A client was accepted: announce it, then make room if too many negotiate."""
        self.clients.append(client)
        self._handshakes[client.source] += 1
        self._notify("client_connected", client.info)
        if sum(self._handshakes.values()) > self.connections:
            handshaking = [c for c in self.clients if c.life in HANDSHAKE]
            _fair_victim(handshaking).drop(f"more than {self.connections} clients are connecting")

    def handshake_ended(self, client: "RFBServerProtocol") -> None:
        """A client left the handshake (ServerInit sent, or gone): its source holds one less."""
        left = self._handshakes[client.source] - 1
        if left:
            self._handshakes[client.source] = left
        else:
            del self._handshakes[client.source]

    def admit(self, client: "RFBServerProtocol", shared: bool) -> bool:
        """Apply the share policy to a ClientInit; False means drop ``client``."""
        if self.share == "allow-exclusive":
            if not shared:
                for other in list(self.clients):
                    if other is not client and other.share_mode in (
                            ShareMode.SHARED, ShareMode.EXCLUSIVE):
                        other.drop("another client asked for exclusive access")
            elif self.count(ShareMode.EXCLUSIVE) > 0:
                client.drop_reason = "another client has exclusive access"
                return False
        elif self.share == "force-shared" and not shared:
            client.drop_reason = "exclusive access is not allowed (share=force-shared)"
            return False
        client.info.shared = shared
        if self.count(ShareMode.SHARED) > self.connections:
            client.drop_reason = f"more than {self.connections} shared clients"
            return False
        return True

    def initialized(self, client: "RFBServerProtocol") -> None:
        """A client was sent ServerInit: announce it."""
        self._notify("client_initialized", client.info)

    def disconnected(self, client: "RFBServerProtocol") -> None:
        """A client left the live states: it no longer counts (QEMU marks it at once)."""
        if client in self.clients:
            self.clients.remove(client)
            self._notify("client_disconnected", client.info)

    def close_all(self) -> None:
        """Drop every client (service shutdown)."""
        for client in list(self.clients):
            client.drop("the server is stopping")

    def _notify(self, method: str, info: ConnectionInfo) -> None:
        if not self.observers:
            return
        for observer in list(self.observers):
            try:
                getattr(observer, method)(self, info)
            except Exception:
                if any(o is observer for o in self._failed_observers):
                    continue
                self._failed_observers = [o for o in self._failed_observers
                                          if any(o is x for x in self.observers)]
                self._failed_observers.append(observer)
                log.failure("observer {observer!r} failed in {method}; the connection goes"
                            " on and its further failures are not logged",
                            level=LogLevel.error, observer=observer, method=method)


def _fair_victim(handshaking: list["RFBServerProtocol"]) -> "RFBServerProtocol":
    """The oldest handshake of the source holding the most (``handshaking`` is oldest first)."""
    counts = collections.Counter(c.source for c in handshaking)
    most = max(counts.values())
    return next(c for c in handshaking if counts[c.source] == most)


class RFBServerFactory(Factory):
    """Builds :class:`RFBServerProtocol` for one listener of a :class:`DisplayServer`."""

    #: The service logs what it listens on; Twisted's "Starting factory" is noise.
    noisy = False

    def __init__(self, server: DisplayServer, *, websocket: bool = False) -> None:
        self.server = server
        self.websocket = websocket

    def buildProtocol(self, addr):
        if not self.server.accepts(addr):
            return None
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


@dataclass
class PendingOutput:
    """Bytes on their way to the client that the transport has not taken."""

    #: Size of the ``transport.write()`` under way: if it makes the
    #: transport pause us, it counts as held by the transport.
    writing: int = 0
    #: While paused: what the transport holds, an upper bound (its
    #: high-water mark plus the write that crossed it).
    in_transport: int = 0
    #: While paused: output held back here, as written (large updates are
    #: kept as the encoder's own bytes objects, never copied together).
    queued: list = field(default_factory=list)
    #: Bytes in :attr:`queued`.
    queued_bytes: int = 0

    def __len__(self) -> int:
        return self.in_transport + self.queued_bytes

    def paused(self, high_water: int) -> None:
        """The transport paused us during (or after) a write."""
        self.in_transport = high_water + self.writing

    def queue(self, data: bytes) -> None:
        """Hold ``data`` back until the transport resumes us."""
        self.queued.append(data)
        self.queued_bytes += len(data)

    def take(self) -> list:
        """The held-back chunks, in order, for the transport again; nothing counts
        as held any more."""
        chunks = self.queued
        self.queued = []
        self.queued_bytes = 0
        self.in_transport = 0
        return chunks


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
        self._life = StateMachine(TRANSITIONS, Life.NEW)
        self._outer: OuterStack | None = None
        self._stack: RFBStack | None = None
        self._output = PendingOutput()
        #: Why the server decided to drop this client, for the log.
        self.drop_reason: str | None = None
        self.info: ConnectionInfo | None = None
        #: Who this client counts as for fair eviction and the log summary.
        self.source = "unknown"
        self.updates = None
        self._peer_host: str | None = None
        self._timeout = None
        self._close_timer = None
        #: The TLS handshake has completed and the client has sent nothing
        #: since: if it leaves now, it most likely refused our certificate.
        self._quiet_since_tls = False

    @property
    def life(self) -> Life:
        """Where the connection stands (:class:`vncd.lifecycle.Life`)."""
        return self._life.state

    @property
    def share_mode(self) -> ShareMode:
        """QEMU's share mode, derived: connecting until admitted, then the
        mode ClientInit asked for, disconnected once no longer live."""
        if self._life.state not in LIVE:
            return ShareMode.DISCONNECTED
        if self.info.shared is None:
            return ShareMode.CONNECTING
        return ShareMode.SHARED if self.info.shared else ShareMode.EXCLUSIVE

    def _fire(self, event: LifeInput) -> None:
        """Move the connection's life; do what entering or leaving states means."""
        before = self._life.state
        after = self._life.process(event)
        if before in HANDSHAKE and after not in HANDSHAKE:
            self._cancel_handshake_timer()
            self.server.handshake_ended(self)
        if event is LifeInput.ACCEPTED:
            self.server.connected(self)
        elif event is LifeInput.SERVER_INIT_SENT:
            self.server.initialized(self)
        elif before in LIVE and after not in LIVE:
            self.server.disconnected(self)

    def _log(self, kind: LineKind, text: str, /, *, detail: str = "", **fields) -> None:
        self.server.connection_log.line(self.source, kind, "{peer}: " + text, detail=detail,
                                        peer=self.info.peer, **fields)

    # -- connection lifetime ----------------------------------------------

    def connectionMade(self) -> None:
        server = self.server
        peer, host = self.transport.getPeer(), self.transport.getHost()
        self.source = source_of(peer, server.limits)
        peer_text_, peer_host_text, peer_service, peer_family = _describe(peer)
        local_text, local_host, local_service, local_family = _describe(host)
        self._peer_host = peer_host_text if peer_family in ("ipv4", "ipv6") else None
        self.info = ConnectionInfo(
            peer=peer_text_, local=local_text, websocket=self._websocket,
            connected_at=server.reactor.seconds(), host=peer_host_text, service=peer_service,
            family=peer_family, local_host=local_host, local_service=local_service,
            local_family=local_family)
        server.display.register(self.info)
        rfb = ServerConnection(self._security, server.limits, random_bytes=server.random_bytes)
        tls = server.tls_session if self._security.auth.uses_tls else None
        self._stack = RFBStack(rfb, tls)
        if self._websocket:
            self._outer = OuterStack(server.tls_session)
        if server.throttle.blocked(self._peer_host):
            rfb.deny(THROTTLED_REASON)
        self._timeout = server.reactor.callLater(server.limits.handshake_timeout,
                                                 self._handshake_timed_out)
        self.transport.registerProducer(self, True)
        # No Nagle delay (QEMU sets the same on its VNC sockets): an update,
        # a bell or a cursor change leaves when it is flushed, not when the
        # client has acknowledged the previous segment.
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            try:
                no_delay(True)
            except OSError:
                pass
        self._fire(LifeInput.ACCEPTED)
        self._flush()

    def dataReceived(self, data: bytes) -> None:
        if self._life.state not in LIVE:
            return
        try:
            if self._outer is not None:
                data = self._outer.receive_data(data)
                self._note_outer_tls()
                if self._outer.closed:
                    self._peer_closed()
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
        state = self._life.state
        if state in LIVE:
            self._log(LineKind.DISCONNECTED, "disconnected{during}",
                      during=" during the handshake" if state in HANDSHAKE else "")
        self._fire(LifeInput.LOST)
        self._cancel_handshake_timer()
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        self._close_timer = None
        self._stack.rfb.close()
        if self.updates is not None:
            updates, self.updates = self.updates, None
            updates.close()
        self.info.state = "closed"
        self.server.display.unregister(self.info)

    # -- events -----------------------------------------------------------

    def _process(self) -> None:
        stack = self._stack
        while self._life.state in LIVE:
            event = stack.next_event()
            if event is NEED_DATA or event is STACK_PAUSED:
                break
            if event is CLOSED:
                self._peer_closed()
                break
            if self._quiet_since_tls or type(event) is TLSEstablished:
                self._note_client_step(event)
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
        self.info.tls_group = tls.group_name
        self.info.peer_dn = tls.peer_name
        log.debug("{peer}: TLS {version} {cipher} {group} peer {dn}", peer=self.info.peer,
                  version=tls.protocol_version, cipher=tls.cipher_name, group=tls.group_name,
                  dn=tls.peer_name)

    def _on_authenticated(self, event: AuthenticationSucceeded) -> None:
        # Only proof of a secret clears an address's failures: a display
        # without authentication must not launder guesses made at another.
        if self._security.auth.inner is SecurityType.VNC or self.info.peer_dn is not None:
            self.server.throttle.succeeded(self._peer_host)

    def _on_auth_failed(self, event: AuthenticationFailed) -> None:
        self._log(LineKind.AUTHENTICATION_FAILED, "authentication failed: {reason}",
                  reason=event.reason)
        self.server.throttle.failed(self._peer_host)
        self._close_after_flush(event.reason)

    def _on_refused(self, event: Refused) -> None:
        self._log(LineKind.REFUSED, "refused: {reason}", reason=event.reason)
        self._close_after_flush(event.reason)

    def _on_client_init(self, event: ClientInitReceived) -> None:
        server = self.server
        if not server.admit(self, event.shared):
            self.drop(self.drop_reason or "refused by the share policy")
            return
        display = server.display
        self._stack.rfb.send_server_init(display.width, display.height, DEFAULT_FORMAT,
                                         display.name or "")
        info = self.info
        info.state = "authenticated"
        self._fire(LifeInput.SERVER_INIT_SENT)
        security = " ".join(part for part in (info.security, info.subtype) if part)
        if security in ("", "None"):
            security = "no authentication"
        tls = f", {info.tls_version} {info.tls_cipher}" if info.tls_version else ""
        dn = f", client certificate {info.peer_dn}" if info.peer_dn else ""
        share = "shared" if info.shared else "exclusive"
        details = f"{security}{tls}{dn}, {share}"
        self._log(LineKind.CONNECTED, "connected ({details})", detail=details, details=details)
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
        if self._life.state not in LIVE:
            return
        if (len(data) >= DIRECT_WRITE_MIN and self._outer is None
                and self._stack.tls is None):
            # A large update on a plain connection: no layer changes its
            # bytes, so after whatever the stack holds it goes to the
            # wire as it is, without being copied through the stack.
            self._flush()
            if self._life.state in LIVE:
                self._send_wire(data)
            return
        self._stack.send(data)

    def flush(self) -> None:
        """Send what :meth:`write` queued in the stack (one update's messages together)."""
        self._flush()

    def output_buffered(self) -> int:
        """Bytes queued towards the client, an upper bound.

        While the transport accepts output its buffer is below its
        high-water mark and counts as nothing; once it has paused us it
        holds at most that mark plus the write that crossed it, and our own
        queue holds the rest.
        """
        return len(self._output)

    def close(self, reason: str) -> None:
        """Close the connection after sending what is queued (called by ClientUpdates)."""
        if self._life.state not in LIVE:
            return
        self._log(LineKind.CLOSING, "closing: {reason}", reason=reason)
        self._close_after_flush(reason)

    # -- IPushProducer (the transport pauses us when its buffer is full) -----

    def pauseProducing(self) -> None:
        if self._life.state in PAUSED:
            # Twisted asks again for every write above its high-water mark
            # (resumeProducing hands chunks over while paused): already done.
            return
        self._fire(LifeInput.TRANSPORT_PAUSED)
        self._output.paused(getattr(self.transport, "bufferSize", 0))
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._fire(LifeInput.TRANSPORT_RESUMED)
        chunks = self._output.take()
        handed = 0
        for i, chunk in enumerate(chunks):
            if self._life.state in PAUSED:
                if handed >= RESUME_HANDOFF:
                    # The transport holds enough: the rest waits once more.
                    for rest in chunks[i:]:
                        self._output.queue(rest)
                    break
                # Paused again, but with little in hand: this chunk goes
                # too, and counts as held by the transport.
                self._output.in_transport += len(chunk)
            self._write_transport(chunk)
            handed += len(chunk)
        if self._life.state in PAUSED:
            return
        self.transport.resumeProducing()
        if self.updates is not None:
            self.updates.writable()

    def stopProducing(self) -> None:
        """The transport is going away; ``connectionLost`` follows and does the work."""

    # -- output and closing -------------------------------------------------

    def _wire_bytes(self, *, closing: bool = False) -> bytes:
        """Everything queued for the wire; with ``closing``, the layers' closing
        bytes too (TLS close_notify, a WebSocket close frame), after the RFB
        bytes they carry."""
        if closing:
            self._stack.close()
        data = self._stack.data_to_send()
        if self._outer is not None:
            self._outer.send(data)
            if closing and not self._outer.closed:
                self._outer.close()
            data = self._outer.data_to_send()
        return data

    def _flush(self) -> None:
        if self._life.state not in LIVE:
            return
        data = self._wire_bytes()
        if data:
            self._send_wire(data)

    def _send_wire(self, data: bytes) -> None:
        """Bytes for the wire: to the transport, or held back while it has paused us."""
        if self._life.state in PAUSED:
            self._output.queue(data)
            if self._output.queued_bytes > self.server.limits.max_pending_output:
                self.drop(f"more than {self.server.limits.max_pending_output} bytes of output"
                          " queued: the client is not reading")
        else:
            self._write_transport(data)

    def _write_transport(self, data: bytes) -> None:
        """Write to the transport, noting the size in case it pauses us meanwhile."""
        self._output.writing = len(data)
        try:
            self.transport.write(data)
        finally:
            self._output.writing = 0

    def _note_client_step(self, event) -> None:
        """Whether the client has done anything since the TLS handshake.

        Without a password the server reports success on its own right
        after TLS (VeNCrypt X509None/TLSNone): that is not the client's step.
        """
        if isinstance(event, TLSEstablished):
            self._quiet_since_tls = True
        elif not (isinstance(event, AuthenticationSucceeded)
                  and self._security.auth.inner is not SecurityType.VNC):
            self._quiet_since_tls = False

    def _left_after_tls(self, reason: str) -> bool:
        """Log why a client that leaves right after the TLS handshake probably left."""
        if not self._quiet_since_tls:
            return False
        self._log(LineKind.TLS_FAILURE, "{what} ({reason}): {advice}",
                  what=_LEFT_AFTER_TLS, reason=reason, advice=_LEFT_AFTER_TLS_ADVICE)
        self._close_after_flush(_LEFT_AFTER_TLS)
        return True

    def _client_refused_certificate(self, error: RemoteProtocolError) -> bool:
        """Log a client's certificate alert as the refusal of our certificate it is."""
        if not isinstance(error, TLSFailed):
            return False
        layers = [self._stack.tls, self._outer.tls if self._outer is not None else None]
        alerts = [getattr(getattr(layer, "session", None), "alert", None) for layer in layers]
        words = next((w for w in map(certificate_alert_words, alerts) if w), None)
        if words is None:
            return False
        self._log(LineKind.TLS_FAILURE, "the client refused this server's certificate"
                  " ({words}): {advice}", words=words, advice=_CHECK_OUR_CERTIFICATE)
        self._close_after_flush(error.reason)
        return True

    def _failed(self, error: RemoteProtocolError) -> None:
        if self._client_refused_certificate(error):
            return
        if (error.reason.startswith(_CLIENT_CLOSED) or isinstance(error, TLSFailed)) \
                and not isinstance(error, CredentialsRejected) \
                and self._left_after_tls(error.reason):
            return
        kind, words = _FAILURE_KINDS.get(type(error), (LineKind.PROTOCOL_ERROR, "protocol error"))
        self._log(kind, "{failure}: {reason}", failure=words, reason=error.reason)
        if isinstance(error, CredentialsRejected):
            self.server.throttle.failed(self._peer_host)
        self._close_after_flush(error.reason)

    def _peer_closed(self) -> None:
        """The client ended the session inside the stream (TLS close_notify, WebSocket close)."""
        if self._life.state in LIVE and self._left_after_tls("it sent close_notify"):
            return
        if self._life.state in LIVE:
            self._log(LineKind.DISCONNECTED, "disconnected{during}",
                      during=" during the handshake" if self._life.state in HANDSHAKE else "")
        self._close_after_flush("the client closed the connection", LifeInput.PEER_CLOSED)

    def _close_after_flush(self, reason: str, event: LifeInput = LifeInput.WE_CLOSE) -> None:
        if self._life.state not in LIVE:
            return
        last = self._wire_bytes(closing=True)
        self.drop_reason = self.drop_reason or reason
        self._fire(event)
        self.transport.unregisterProducer()
        data = b"".join(self._output.take()) + last
        if data:
            self.transport.write(data)
        self.transport.loseConnection()
        self._close_timer = self.server.reactor.callLater(
            self.server.limits.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        """The client did not take our last bytes in time: cut it."""
        self._close_timer = None
        self._fire(LifeInput.DROPPED)
        self.transport.abortConnection()

    def drop(self, reason: str) -> None:
        """Disconnect at once, without waiting for queued output (QEMU's disconnect)."""
        if self._life.state not in LIVE:
            return
        self._log(LineKind.DROPPED, "dropped: {reason}", reason=reason)
        self.drop_reason = reason
        self._fire(LifeInput.DROPPED)
        self.transport.unregisterProducer()
        self.transport.abortConnection()

    def _handshake_timed_out(self) -> None:
        self._timeout = None
        state = self._stack.rfb.state.value
        self.drop(f"no ServerInit after {self.server.limits.handshake_timeout:g} s"
                  f" (stalled in {state})")

    def _cancel_handshake_timer(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None


#: How the log names each kind of remote failure.
#: How the RFB layer words a client's leaving in the middle of a step.
_CLIENT_CLOSED = "the client closed the connection"

#: What a client leaving right after the TLS handshake usually means: it
#: checked our certificate only then (gtk-vnc, vncd-capture, TigerVNC) and
#: did not like it.  vncd cannot know for sure: the client sends no reason.
_LEFT_AFTER_TLS = "the client closed the connection right after the TLS handshake"
_CHECK_OUR_CERTIFICATE = (
    "check that the name the client connects to is in the certificate's subjectAltName"
    " (DNS name or IP address), that the client trusts the CA that signed it (gtk-vnc"
    " reads /etc/pki/CA/cacert.pem or ~/.pki/CA/cacert.pem), and that the certificate is"
    " within its validity dates")
_LEFT_AFTER_TLS_ADVICE = "it probably refused this server's certificate; " + _CHECK_OUR_CERTIFICATE

_FAILURE_KINDS: dict[type, tuple[LineKind, str]] = {
    TLSFailed: (LineKind.TLS_FAILURE, "TLS failure"),
    CredentialsRejected: (LineKind.CERTIFICATE_REFUSED, "certificate refused"),
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
