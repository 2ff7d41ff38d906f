# -*- test-case-name: tests.vncd.monitor.test_server -*-
"""The Twisted edge of the monitor: listeners, connections, TLS.

Each ``-qmp``/``-monitor``/``-mon`` becomes a :class:`MonitorFactory`
listening as its chardev says (a UNIX socket with mode 0600, a TCP
socket, or standard input and output).  A :class:`MonitorProtocol`
pumps bytes between its transport and the sans-I/O cores: optionally
TLS first (:class:`vncd.rfb.tls.TLSLayer` over a
:class:`creds.session.TLSSession` made from the chardev's
``tls-creds``, with ``tls-authz`` checked before a single byte of QMP
or HMP is exchanged), then :class:`~vncd.monitor.qmp.QMPConnection` or
:class:`~vncd.monitor.hmp.HMPConnection`.  So the monitor uses the same
credentials objects, through the same session API, as the VNC displays.

Requests run one at a time through :class:`~vncd.monitor.control.Monitor`;
while :attr:`MonitorLimits.max_pending_requests` wait, the connection
stops reading.  A client that lets more than
:attr:`MonitorLimits.max_pending_output` bytes of replies and events
pile up is dropped.  A TLS client has
:attr:`MonitorLimits.tls_handshake_timeout` seconds to complete its
handshake.

Deliberate difference: QEMU serves one client per monitor at a time and
leaves the others waiting in the listen queue; vncd serves up to
:attr:`MonitorLimits.max_connections` at once.

This module never looks inside a certificate.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from compat.config import ChardevConfig, MonitorConfig
from creds.session import TLSSession
from creds.tlscreds import Endpoint
from vncd.listen import Listener, families, listen, unlink_socket
from vncd.monitor.control import Monitor
from vncd.monitor.hmp import HMPConnection, HMPInterpreter, PasswordPrompt
from vncd.monitor.limits import MonitorLimits
from vncd.monitor.qmp import QMPConnection
from vncd.monitor.schema import QMPError
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.tls import TLSLayer
from vncd.server import peer_text

__all__ = ["MonitorFactory", "MonitorProtocol", "MonitorService", "start_monitors",
           "UNIX_SOCKET_MODE", "waiting_notice"]

log = Logger(namespace="vncd.monitor")

#: Permissions of a monitor's UNIX socket: whoever can connect can
#: control vncd (create objects, change passwords, stop it).
UNIX_SOCKET_MODE = 0o600


class MonitorFactory(Factory):
    """Builds the connections of one monitor (one ``-mon``/``-qmp``/``-monitor``)."""

    noisy = False

    def __init__(self, monitor: Monitor, config: MonitorConfig, chardev: ChardevConfig, *,
                 reactor: Any, tls_session: Callable[[], TLSSession] | None = None,
                 limits: MonitorLimits | None = None) -> None:
        self.monitor = monitor
        self.config = config
        self.chardev = chardev
        self.reactor = reactor
        self.tls_session = tls_session
        self.limits = limits or MonitorLimits()
        self.connections: list[MonitorProtocol] = []
        #: Fires when the first client is connected (``wait=on``).
        self.first_client: defer.Deferred = defer.Deferred()

    @property
    def name(self) -> str:
        return f"monitor {self.chardev.id}"

    def buildProtocol(self, addr):
        if len(self.connections) >= self.limits.max_connections:
            log.info("{name}: refused a connection from {peer}: {count} clients are connected",
                     name=self.name, peer=peer_text(addr), count=len(self.connections))
            return None
        protocol = MonitorProtocol(self)
        protocol.factory = self
        return protocol


class MonitorProtocol(Protocol):
    """One monitor connection (see the module docstring)."""

    def __init__(self, factory: MonitorFactory) -> None:
        self.factory = factory
        self.monitor = factory.monitor
        self.peer = "?"
        self._tls: TLSLayer | None = None
        self._core: QMPConnection | HMPConnection | None = None
        self._interpreter: HMPInterpreter | None = None
        self._handshake_timer = None
        self._closing = False
        self._running = False
        self._paused = False
        self._quit_sent = False
        #: True while :meth:`_run`'s loop is on the stack.
        self._pumping = False
        #: True while the transport's send buffer is full (it paused us).
        self._output_paused = False
        #: Bytes written since the transport's send buffer filled up.
        self._held_output = 0

    @property
    def is_qmp(self) -> bool:
        return self.factory.config.mode == "control"

    # -- connection lifetime ------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        factory.connections.append(self)
        # The transport tells a registered producer when its send buffer
        # fills (pauseProducing) and drains (resumeProducing): that is how
        # the monitor measures what a client leaves unread.
        self.transport.registerProducer(self, True)
        self.peer = ("stdio" if factory.chardev.backend == "stdio"
                     else peer_text(self.transport.getPeer()))
        if factory.tls_session is not None:
            self._tls = TLSLayer(factory.tls_session())
            self._handshake_timer = factory.reactor.callLater(
                factory.limits.tls_handshake_timeout, self._handshake_timed_out)
            log.info("{name}: {peer} connected, TLS handshake", name=factory.name, peer=self.peer)
        else:
            log.info("{name}: {peer} connected", name=factory.name, peer=self.peer)
            self._open()
        if not factory.first_client.called:
            factory.first_client.callback(self)

    def _open(self) -> None:
        """The channel is ready (after TLS, if any): greet the client."""
        factory = self.factory
        if self.is_qmp:
            self._core = QMPConnection(self.monitor.query_version(), limits=factory.limits,
                                       pretty=factory.config.pretty)
            self.monitor.add_event_sink(self)
        else:
            self._core = HMPConnection(
                f"vncd {self.monitor.version} monitor - type 'help' for more information",
                limits=factory.limits)
            self._interpreter = HMPInterpreter(self.monitor)
        self._flush()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if self._tls is not None:
            try:
                data = self._tls.receive_data(data)
            except RemoteProtocolError as e:
                log.info("{name}: {peer}: {kind}: {reason}", name=self.factory.name,
                         peer=self.peer, kind=_tls_words(e), reason=e.reason)
                self._close()
                return
            if self._core is None and self._tls.established:
                self._tls_established()
            if not data:
                self._flush()
                self._after_tls_input()
                return
        if self._core is None:
            return
        self._core.receive_data(data)
        self._run()
        if self._tls is not None:
            self._after_tls_input()

    def _after_tls_input(self) -> None:
        """The peer's close_notify: answer with ours and close (requests before it ran)."""
        if self._tls.peer_closed and not self._closing:
            log.info("{name}: {peer}: TLS session closed by the client", name=self.factory.name,
                     peer=self.peer)
            self._close()

    def _tls_established(self) -> None:
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None
        info = self._tls.info()
        dn = f", client certificate {info.peer_name}" if info.peer_name else ""
        log.info("{name}: {peer}: TLS established ({version} {cipher}{dn})",
                 name=self.factory.name, peer=self.peer, version=info.protocol_version,
                 cipher=info.cipher_name, dn=dn)
        self._open()

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        log.info("{name}: {peer}: no TLS handshake after {seconds:g} s", name=self.factory.name,
                 peer=self.peer, seconds=self.factory.limits.tls_handshake_timeout)
        self.transport.abortConnection()

    def connectionLost(self, reason=None) -> None:
        self._closing = True
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None
        self.monitor.remove_event_sink(self)
        if self in self.factory.connections:
            self.factory.connections.remove(self)
        if self._core is not None:
            self._core.close()
        log.info("{name}: {peer} disconnected", name=self.factory.name, peer=self.peer)
        if self._quit_sent:
            self.monitor.quit_reply_sent()

    # -- requests --------------------------------------------------------------------

    def _run(self) -> None:
        """Start queued requests, one at a time, until one is still running or none is left.

        A loop, not recursion: a command that answers at once (most do)
        returns here through :meth:`_after`, which finds the loop running
        and leaves the next request to it, so thousands of requests
        pipelined in one packet take constant stack.
        """
        if not self._pumping:
            self._pumping = True
            try:
                while not (self._running or self._closing or self._core is None):
                    if not self._start_next():
                        break
            finally:
                self._pumping = False
        if not self._closing:
            self._flow()
        self._flush()

    def _start_next(self) -> bool:
        """Start the next queued request; False when none is queued."""
        core = self._core
        if self.is_qmp:
            request = core.next_request()
            if request is None:
                return False
            self._running = True
            d = self.monitor.execute(request.command, request.arguments)
            d.addCallbacks(functools.partial(self._qmp_done, request),
                           functools.partial(self._qmp_failed, request))
            return True
        item = core.next_line()
        if item is None:
            return False
        self._running = True
        line, password_for = item
        d = password_for(line) if password_for is not None else self._interpreter.run(line)
        d.addCallbacks(self._hmp_done, self._hmp_failed)
        return True

    def _qmp_done(self, request, value: Any) -> None:
        self._running = False
        if self._closing:
            return
        self._core.reply(request, value)
        if request.command == "quit":
            self._quit_sent = True
            self._flush()
            self.monitor.quit_replied()
        self._after()

    def _qmp_failed(self, request, failure: Failure) -> None:
        self._running = False
        if self._closing:
            return
        error = failure.value if failure.check(QMPError) else QMPError(
            f"internal error: {failure.getErrorMessage()}")
        if not failure.check(QMPError):
            log.failure("{name}: command {command} failed", failure, name=self.factory.name,
                        command=request.command)
        self._core.reply_error(request, error)
        self._after()

    def _hmp_done(self, output: str) -> None:
        self._running = False
        if self._closing:
            return
        self._core.finished(output)
        if self.monitor.quitting:
            self._quit_sent = True
            self._flush()
            self.monitor.quit_replied()
        self._after()

    def _hmp_failed(self, failure: Failure) -> None:
        self._running = False
        if self._closing:
            return
        if failure.check(PasswordPrompt):
            self._core.prompt_password(failure.value.then)
        else:
            log.failure("{name}: HMP command failed", failure, name=self.factory.name)
            self._core.finished(f"Error: internal error: {failure.getErrorMessage()}\n")
        self._after()

    def _after(self) -> None:
        self._flush()
        if self._quit_sent:
            self._close()
            return
        self._run()

    def _flow(self) -> None:
        """Stop reading while too many requests wait (and start again)."""
        waiting = self._core.pending if self._core is not None else 0
        limit = self.factory.limits.max_pending_requests
        if waiting >= limit and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        elif waiting < limit and self._paused:
            self._paused = False
            self.transport.resumeProducing()

    # -- events -----------------------------------------------------------------------

    def send_event(self, name: str, data: Any, timestamp: tuple[int, int]) -> None:
        if self._closing or not isinstance(self._core, QMPConnection):
            return
        if self._core.send_event(name, data, timestamp):
            self._flush()

    # -- output -----------------------------------------------------------------------

    def _flush(self) -> None:
        if self._closing:
            return
        data = self._core.data_to_send() if self._core is not None else b""
        if self._tls is not None:
            if data:
                self._tls.send(data)
            data = self._tls.data_to_send()
        if not data:
            return
        self.transport.write(data)
        if self._output_paused:
            self._held_output += len(data)
            limit = self.factory.limits.max_pending_output
            if self._held_output > limit:
                log.info("{name}: {peer}: dropped: more than {limit} bytes of output queued;"
                         " the client is not reading", name=self.factory.name, peer=self.peer,
                         limit=limit)
                self._closing = True
                self.transport.abortConnection()

    # -- the transport's send buffer (IPushProducer, registered on connectionMade) ----

    def pauseProducing(self) -> None:
        """The send buffer is full: from now on, count what piles up behind it."""
        self._output_paused = True

    def resumeProducing(self) -> None:
        """The send buffer drained: the client reads again."""
        self._output_paused = False
        self._held_output = 0

    def stopProducing(self) -> None:
        """The connection is going away; :meth:`connectionLost` cleans up."""

    def _close(self) -> None:
        if self._closing:
            return
        if self._tls is not None:
            self._tls.close()
            data = self._tls.data_to_send()
            if data:
                self.transport.write(data)
        self._closing = True
        self.transport.loseConnection()


def _tls_words(error: RemoteProtocolError) -> str:
    from vncd.rfb.tls import CredentialsRejected
    return "certificate refused" if isinstance(error, CredentialsRejected) else "TLS failure"


class MonitorService:
    """Every started monitor; :meth:`stop` closes them."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.factories: list[MonitorFactory] = []
        self.listeners: list[Listener] = []
        self._stdio: Any = None
        #: ``(object id, holder)`` of the credentials the monitors hold.
        self._held: list[tuple[str, str]] = []
        self._stopped = False

    def waiting(self) -> list[MonitorFactory]:
        """Monitors with ``wait=on``: start-up waits for a client on each."""
        return [f for f in self.factories if f.chardev.server and f.chardev.wait
                and f.chardev.backend == "socket"]

    def stop(self) -> defer.Deferred:
        if self._stopped:
            return defer.succeed(None)
        self._stopped = True
        for obj_id, holder in self._held:
            self.monitor.registry.release(obj_id, holder)
        self._held = []
        for factory in self.factories:
            for connection in list(factory.connections):
                connection.transport.loseConnection()
        if self._stdio is not None:
            self._stdio.loseConnection()
            self._stdio = None
        listeners, self.listeners = self.listeners, []
        stopping = [defer.maybeDeferred(listener.port.stopListening) for listener in listeners]

        def cleanup(_):
            for listener in listeners:
                if listener.family == "unix":
                    unlink_socket(listener.service)

        return defer.gatherResults(stopping).addCallback(cleanup)


def start_monitors(reactor: Any, monitor: Monitor, monitors: list[MonitorConfig],
                   chardevs: list[ChardevConfig], *, limits: MonitorLimits | None = None,
                   stdio: Callable[[Protocol], Any] | None = None) -> MonitorService:
    """Listen for every monitor of the command line.

    Raises :class:`~vncd.listen.StartupError` (after closing whatever was
    opened).  ``stdio`` connects a protocol to standard input and output
    (default: Twisted's ``StandardIO``).
    """
    by_id = {chardev.id: chardev for chardev in chardevs}
    service = MonitorService(monitor)
    registry = monitor.registry
    try:
        for config in monitors:
            chardev = by_id[config.chardev]
            tls_session = None
            if chardev.tls_creds is not None:
                creds = registry.get(chardev.tls_creds)
                tls_session = functools.partial(TLSSession, creds, Endpoint.SERVER,
                                                authz_id=chardev.tls_authz)
                holder = f"monitor chardev '{chardev.id}'"
                registry.hold(chardev.tls_creds, holder)
                service._held.append((chardev.tls_creds, holder))
            factory = MonitorFactory(monitor, config, chardev, reactor=reactor,
                                     tls_session=tls_session, limits=limits)
            service.factories.append(factory)
            if chardev.backend == "stdio":
                connect = stdio or functools.partial(_standard_io, reactor)
                service._stdio = connect(factory.buildProtocol(None))
                continue
            source = chardev.source
            allowed = families(chardev.ipv4, chardev.ipv6, source)
            last = chardev.to if chardev.to is not None else None
            service.listeners += listen(reactor, factory, chardev.address, source=source,
                                        last_port=last, allowed=allowed,
                                        unix_mode=UNIX_SOCKET_MODE)
            for listener in service.listeners[-1:]:
                log.info("monitor {id}: {mode} on {address}{tls}", id=chardev.id,
                         mode="QMP" if config.mode == "control" else "HMP",
                         address=listener.text,
                         tls=" (TLS)" if tls_session is not None else "")
    except BaseException:
        service.stop()
        raise
    return service


def _standard_io(reactor: Any, protocol: Protocol) -> Any:
    from twisted.internet import stdio
    return stdio.StandardIO(protocol, stdin=sys.stdin.fileno(), stdout=sys.stdout.fileno(),
                            reactor=reactor)


def waiting_notice(factory: MonitorFactory) -> str:
    """QEMU's line for a monitor that waits for its client (``wait=on``).

    Located at the option, as QEMU 7.2 prints it (``-qmp ...: info: QEMU
    waiting for connection on: disconnected:unix:PATH,server=on``), with
    vncd's name where QEMU names itself.
    """
    chardev = factory.chardev
    where = f"{chardev.source}: " if chardev.source else ""
    return (f"{where}info: vncd waiting for connection on:"
            f" disconnected:{chardev.address},server=on")


