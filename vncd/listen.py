# -*- test-case-name: tests.vncd.test_listen -*-
"""Listening sockets for every network service of vncd: VNC displays and monitors.

QEMU's rules, in one place: ``host:port`` listens on each address the
host resolves to (every interface for an empty host; IPv6 sockets
v6-only), trying the following ports up to a last one when a port is
taken; ``ipv4=``/``ipv6=`` choose the families; an address that cannot
exist here (IPv6 off, a foreign address) is skipped when the host has
others; a UNIX socket replaces a stale socket file and, where asked,
gets a mode (monitors listen 0600, since whoever can connect can
control vncd).

Sockets are created, bound and listened on here and handed to the
reactor (``adoptStreamPort``), so the reactor can be any
``IReactorSocket``.  Each bound socket is described by a
:class:`Listener` with QEMU's ``VncBasicInfo`` fields (``host``,
``service``, ``family``) for the monitor.

A socket inherited from a service manager (socket activation) is
adopted as it is (:func:`adopt`): it must be a listening stream socket;
its address, mode and backlog are the manager's.

Connections accepted on these sockets write at once (:func:`write_now`):
a message goes to the socket in the call that writes it when nothing is
queued before it, instead of on the reactor's next turn -- which costs a
poll, two changes of the poll set and a dispatch per message, most of the
CPU a short exchange like the RFB handshake spends outside the protocol.

Failures raise :class:`StartupError` naming the option as typed, with
QEMU's messages ("Failed to find an available port: Address already in
use", "Failed to bind socket to PATH: ...").

This module knows nothing about RFB, QMP or certificates.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass
from typing import Any

from twisted.internet.main import CONNECTION_LOST
from twisted.python.compat import lazyByteSlice
from twisted.python.util import untilConcludes

from compat.config import ListenAddress

__all__ = ["StartupError", "Listener", "LISTEN_BACKLOG", "families", "listen",
           "listen_unix", "unlink_socket", "adopt", "write_now"]

#: Pending connections the kernel queues per listening socket.  QEMU
#: listens with a backlog of 1, which makes simultaneous viewers wait for
#: each other's accept; the handshake timeouts and per-source limits
#: already bound what an unauthenticated crowd can hold.
LISTEN_BACKLOG = 50

#: Errors that mean "this address family or address is not available
#: here" (IPv6 disabled, an address not on this host): like QEMU, skip the
#: address when the host name has others.
_UNAVAILABLE = frozenset({errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT})


class StartupError(Exception):
    """A service could not start: ``<source>: <message>``, QEMU's form.

    ``source`` is the option as typed (``-vnc :1,tls-creds=tls0``).
    """

    def __init__(self, source: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(source, message)
        self.source = source
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.source}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


@dataclass(frozen=True)
class Listener:
    """One listening socket, as people and QEMU's monitor describe it."""

    #: ``127.0.0.1:5901``, ``[::1]:5901`` or ``unix:/run/vm.vnc``.
    text: str
    #: QEMU's ``VncBasicInfo``: the address (``""`` for UNIX sockets) ...
    host: str
    #: ... the port as a string, or the socket path ...
    service: str
    #: ... and ``ipv4``, ``ipv6`` or ``unix``.
    family: str
    websocket: bool = False
    #: The reactor's listening port (``stopListening``).
    port: Any = None
    #: Inherited from a service manager, which owns the socket (and its file).
    inherited: bool = False


class _WriteNow:
    """A Twisted socket transport whose :meth:`write` sends at once when it can,
    and whose :meth:`doWrite` sends queued writes without joining them.

    Twisted's ``FileDescriptor.write`` always queues and asks the reactor
    to call ``doWrite`` when the socket is writable -- one more poll, two
    changes of the poll set and a dispatch for every message, though a
    socket with nothing queued is almost always writable.  Here a write
    that finds nothing queued before it is tried on the socket in the
    call (``writeSomeData``, Twisted's own send); what the socket does not
    take, and every write behind queued bytes, goes the ordinary way, so
    ordering, flow control (the producer is paused by the queued bytes as
    before) and error handling (an error is met again by ``doWrite``) do
    not change.  A connection that started Twisted's own TLS writes
    through it as before.  Writes above ``IMMEDIATE_LIMIT`` (large updates) also
    go the ordinary way: sending part of one would mean copying the rest.

    Twisted's ``doWrite`` joins every queued write into one new bytes
    object whenever less than ``SEND_LIMIT`` of the current one is left: the
    bands of an 8 MB Raw update were copied into a fresh 8 MB buffer (and
    its pages faulted in) before the first byte left.  Here the queued
    writes are handed to the kernel as they are, several per
    ``sendmsg`` (up to ``GATHER_MAX`` of them, from ``SEND_LIMIT`` bytes
    on no more are added); what is left of a write the kernel took part of
    is sent from where it stopped.  What happens once everything is sent
    (stop writing, resume the producer, a pending close) is Twisted's.
    Transports that can pass file descriptors (UNIX sockets) keep
    Twisted's ``doWrite``.
    """

    #: Most bytes offered to the kernel in one send.  Twisted offers 128 KiB
    #: per reactor turn, so an 8 MB Raw update took 64 turns (a poll and a
    #: dispatch each); the kernel takes what its buffer holds either way.
    SEND_LIMIT = 1024 * 1024

    #: Largest write tried on the socket at once (above it, what the socket
    #: does not take would have to be copied).
    IMMEDIATE_LIMIT = 128 * 1024

    #: Most queued writes one ``sendmsg`` takes (well under IOV_MAX).
    GATHER_MAX = 64

    #: Whether the transport's ``writeSomeData`` is TCP's plain send, which
    #: :meth:`write` then does itself (without Twisted's EINTR loop, which
    #: Python's socket calls already do, and its memoryview of the bytes),
    #: and whether :meth:`doWrite` gathers queued writes (not for transports
    #: that pass descriptors, UNIX sockets).  Set per transport class by
    #: :func:`write_now`.
    DIRECT_SEND = False
    _gather = False

    def write(self, data: bytes) -> None:
        if (type(data) is bytes and 0 < len(data) <= self.IMMEDIATE_LIMIT
                and self.connected and not self.disconnecting and not self._writeDisconnected
                and not getattr(self, "TLS", False) and not self._tempDataBuffer
                and self.offset == len(self.dataBuffer)):
            if self.DIRECT_SEND:
                try:
                    sent = self.socket.send(data)
                except OSError:
                    # Full (EAGAIN, ENOBUFS) or broken: queued, and doWrite
                    # meets a real error again, as after writeSomeData.
                    sent = 0
            else:
                sent = self.writeSomeData(data)
            if not isinstance(sent, Exception) and sent > 0:
                if sent == len(data):
                    return
                data = data[sent:]
        super().write(data)

    def doWrite(self):
        if not self._gather:
            return super().doWrite()
        pieces = []
        size = len(self.dataBuffer) - self.offset
        if size:
            pieces.append(lazyByteSlice(self.dataBuffer, self.offset) if self.offset
                          else self.dataBuffer)
        for chunk in self._tempDataBuffer:
            if size >= self.SEND_LIMIT or len(pieces) >= self.GATHER_MAX:
                break
            pieces.append(chunk)
            size += len(chunk)
        if pieces:
            sent = self._send_pieces(pieces)
            if isinstance(sent, Exception) or sent < 0:
                return sent
            self._sent(sent)
        if self.offset == len(self.dataBuffer) and not self._tempDataLen:
            # Everything is sent: what Twisted's doWrite does then.
            self.dataBuffer = b""
            self.offset = 0
            self.stopWriting()
            if self.producer is not None and (
                    not self.streamingProducer or self.producerPaused):
                self.producerPaused = False
                self.producer.resumeProducing()
            elif self.disconnecting:
                return self._postLoseConnection()
            elif self._writeDisconnecting:
                self._writeDisconnected = True
                return self._closeWriteConnection()
        return None

    def _send_pieces(self, pieces: list):
        """Bytes the kernel took of ``pieces`` (in order), 0 if none fit, or
        CONNECTION_LOST -- ``writeSomeData``'s results."""
        if len(pieces) == 1:
            return self.writeSomeData(pieces[0])
        try:
            return untilConcludes(self.socket.sendmsg, pieces)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.ENOBUFS):
                return 0
            return CONNECTION_LOST

    def _sent(self, sent: int) -> None:
        """Forget the first ``sent`` bytes: of the current write, then of the queued ones."""
        rest = len(self.dataBuffer) - self.offset
        if sent < rest:
            self.offset += sent
            return
        sent -= rest
        queued = self._tempDataBuffer
        done = taken = 0
        while done < len(queued) and sent >= len(queued[done]):
            sent -= len(queued[done])
            taken += len(queued[done])
            done += 1
        if done < len(queued):
            # The next write becomes the current one, ``sent`` bytes into it.
            chunk = queued[done]
            taken += len(chunk)
            done += 1
            self.dataBuffer, self.offset = chunk, sent
        else:
            self.dataBuffer, self.offset = b"", 0
        del queued[:done]
        self._tempDataLen -= taken


_WRITE_NOW_CLASSES: dict[type, type] = {}


def _accepting_port_class():
    """:class:`twisted.internet.tcp.Port` with a leaner accept loop (built on first use,
    so that importing this module imports no reactor code)."""
    global _AcceptPort
    if _AcceptPort is not None:
        return _AcceptPort
    from twisted.internet import tcp
    from twisted.python import log

    class AcceptPort(tcp.Port):
        """A TCP port whose common accept path skips per-accept work nobody uses.

        Twisted's ``Port.doRead`` sets up a log buffer (three ``Logger``
        objects) for every readable event, in case accepting runs out of
        descriptors, and accepts through ``socket.accept``, which converts
        the listener's family and type to enums for each new socket.  Here
        the loop accepts with the listener's numbers directly; it does
        what Twisted does with each connection (the same address, session
        number, transport and ``makeConnection``; a factory's ``None``
        closes the socket) and scales its accepts per event by the same
        rule.  Any accept error other than "no more connections" (EMFILE,
        EPERM, ...) is left to Twisted's own loop, which knows what each
        means; an exception while starting a connection is logged as
        Twisted logs it.
        """

        #: The listener's family, type and protocol as plain numbers.
        _socket_args: tuple[int, int, int] = (-1, -1, -1)

        def startListening(self) -> None:
            super().startListening()
            listener = self.socket
            self._socket_args = (int(listener.family), int(listener.type), listener.proto)

        def doRead(self) -> None:
            accept = self.socket._accept
            family, kind, proto = self._socket_args
            accepted = 0
            try:
                for _ in range(self.numberAccepts):
                    try:
                        fd, addr = accept()
                    except BlockingIOError:
                        break
                    except OSError:
                        tcp.Port.doRead(self)
                        return
                    skt = socket.socket(family, kind, proto, fileno=fd)
                    accepted += 1
                    if len(addr) == 4:
                        # IPv6: the scope ID, as Twisted spells it.
                        host = socket.getnameinfo(
                            addr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)[0]
                        addr = (host, *addr[1:])
                    protocol = self.factory.buildProtocol(self._buildAddr(addr))
                    if protocol is None:
                        skt.close()
                        continue
                    session = self.sessionno
                    self.sessionno = session + 1
                    transport = self.transport(skt, protocol, addr, self, session, self.reactor)
                    protocol.makeConnection(transport)
                if accepted == self.numberAccepts:
                    self.numberAccepts += 20
                else:
                    self.numberAccepts = max(1, accepted)
            except BaseException:
                log.deferr()

    _AcceptPort = AcceptPort
    return AcceptPort


_AcceptPort = None


def _adopt_stream_port(reactor, fd: int, family: int, factory):
    """``reactor.adoptStreamPort``; a TCP socket on one of Twisted's own POSIX
    reactors gets :func:`_accepting_port_class`'s port."""
    from twisted.internet import posixbase

    if (family in (socket.AF_INET, socket.AF_INET6)
            and isinstance(reactor, posixbase.PosixReactorBase)):
        port = _accepting_port_class()._fromListeningDescriptor(reactor, fd, family, factory)
        port.startListening()
        return port
    return reactor.adoptStreamPort(fd, family, factory)


def write_now(port) -> None:
    """Make the connections ``port`` accepts write at once (:class:`_WriteNow`).

    Only Twisted's own TCP and UNIX ports are changed (the ``transport``
    class they build connections with); any other port -- a test
    reactor's, a future reactor's -- is left as it is.
    """
    from twisted.internet import abstract, tcp

    transport = getattr(port, "transport", None)
    if not (isinstance(port, tcp.Port) and isinstance(transport, type)
            and issubclass(transport, abstract.FileDescriptor)
            and hasattr(transport, "writeSomeData")):
        return
    if issubclass(transport, _WriteNow):
        return
    cls = _WRITE_NOW_CLASSES.get(transport)
    if cls is None:
        # TCP's own send; transports that pass descriptors (UNIX) keep
        # Twisted's writeSomeData and doWrite.
        direct = transport.writeSomeData is tcp.Connection.writeSomeData
        cls = type(f"WriteNow{transport.__name__}", (_WriteNow, transport),
                   {"DIRECT_SEND": direct, "_gather": direct})
        _WRITE_NOW_CLASSES[transport] = cls
    port.transport = cls


def families(ipv4: bool | None, ipv6: bool | None, source: str) -> tuple[int, ...]:
    """Address families allowed by ``ipv4=``/``ipv6=`` (QEMU's rules)."""
    if ipv4 is False and ipv6 is False:
        raise StartupError(source, "Cannot disable IPv4 and IPv6 at same time")
    if ipv4 and not ipv6:
        return (socket.AF_INET,)
    if ipv6 and not ipv4:
        return (socket.AF_INET6,)
    allowed = []
    if ipv4 is not False:
        allowed.append(socket.AF_INET)
    if ipv6 is not False:
        allowed.append(socket.AF_INET6)
    return tuple(allowed)


def _resolve(host: str, port: int, allowed, source: str) -> list[tuple]:
    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise StartupError(source,
                           f"address resolution failed for {host}:{port}: {e.strerror}") from None
    seen, out = set(), []
    for family, _, _, _, sockaddr in infos:
        if family in allowed and (family, sockaddr[0]) not in seen:
            seen.add((family, sockaddr[0]))
            out.append((family, sockaddr[0]))
    if not out:
        raise StartupError(source, f"address resolution failed for {host}:{port}:"
                                   " no address of an allowed family")
    return out


def _bind_all(addresses, port: int):
    """Bind every usable address on ``port``.

    Returns the listening sockets, or None when the port is taken
    (EADDRINUSE) on any of them -- then none is kept.  An address that
    cannot exist here is skipped if another one binds; other errors raise.
    """
    bound, skipped = [], None
    for family, host in addresses:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:
            if e.errno in _UNAVAILABLE and len(addresses) > 1:
                skipped = e
                continue
            raise
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(LISTEN_BACKLOG)
        except OSError as e:
            sock.close()
            if e.errno in _UNAVAILABLE and len(addresses) > 1:
                skipped = e
                continue
            for other in bound:
                other.close()
            if e.errno == errno.EADDRINUSE:
                return None
            raise
        sock.setblocking(False)
        bound.append(sock)
    if not bound and skipped is not None:
        raise skipped
    return bound


def listen(reactor, factory, address: ListenAddress, *, source: str,
           last_port: int | None = None, allowed: tuple[int, ...] | None = None,
           websocket: bool = False, unix_mode: int | None = None) -> list[Listener]:
    """Listen on ``address`` (or the first free port up to ``last_port``).

    ``allowed`` is the address families (:func:`families`); ``unix_mode``
    the permission bits of a UNIX socket.  Returns one :class:`Listener`
    per bound socket; the caller stops them (``listener.port.stopListening``)
    and, for UNIX sockets, removes the file (:func:`unlink_socket`).
    """
    if address.kind == "unix":
        return [listen_unix(reactor, factory, address.host, source=source,
                            websocket=websocket, mode=unix_mode)]
    allowed = allowed or (socket.AF_INET, socket.AF_INET6)
    addresses = _resolve(address.host, address.port, allowed, source)
    last = max(last_port or address.port, address.port)
    for port in range(address.port, last + 1):
        try:
            bound = _bind_all(addresses, port)
        except OSError as e:
            raise StartupError(source, f"Failed to bind socket: {os.strerror(e.errno)}") from None
        if bound is not None:
            break
    else:
        raise StartupError(source, "Failed to find an available port: "
                                   + os.strerror(errno.EADDRINUSE))
    listeners = []
    try:
        for sock in bound:
            host, bound_port = sock.getsockname()[:2]
            six = sock.family == socket.AF_INET6
            port = _adopt_stream_port(reactor, sock.fileno(), sock.family, factory)
            write_now(port)
            listeners.append(Listener(
                text=f"[{host}]:{bound_port}" if six else f"{host}:{bound_port}",
                host=host, service=str(bound_port), family="ipv6" if six else "ipv4",
                websocket=websocket, port=port))
    except BaseException:
        for listener in listeners:
            listener.port.stopListening()
        raise
    finally:
        for sock in bound:
            sock.close()
    return listeners


def unlink_socket(path: str) -> None:
    """Remove ``path`` if it is a UNIX socket (a stale one, or ours on stop)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def listen_unix(reactor, factory, path: str, *, source: str, websocket: bool = False,
                mode: int | None = None) -> Listener:
    """Listen on the UNIX socket ``path`` (replacing a stale socket file).

    The socket gets ``mode``, or without one what the umask allows, as
    QEMU's sockets do.  (Twisted's own default, and what it does to an
    adopted socket, is 0666: anyone on the host could connect.)  The umask
    is narrowed while the socket is created, so it is never reachable
    with looser permissions than it ends up with.
    """
    from twisted.internet.error import CannotListenError

    unlink_socket(path)
    old_umask = os.umask(0o077)
    os.umask(old_umask)
    final = mode if mode is not None else 0o777 & ~old_umask
    os.umask(0o777 & ~final)
    try:
        port = reactor.listenUNIX(path, factory, backlog=LISTEN_BACKLOG, mode=final)
    except CannotListenError as e:
        reason = e.socketError
        text = os.strerror(reason.errno) if isinstance(reason, OSError) and reason.errno \
            else str(reason)
        raise StartupError(source, f"Failed to bind socket to {path}: {text}") from None
    finally:
        os.umask(old_umask)
    write_now(port)
    return Listener(text=f"unix:{path}", host="", service=path, family="unix",
                    websocket=websocket, port=port)


def _describe(sock: socket.socket) -> tuple[str, str, str, str]:
    """``(text, host, service, family)`` of a bound socket, as :class:`Listener` has them."""
    if sock.family == socket.AF_UNIX:
        path = sock.getsockname()
        if isinstance(path, bytes):
            path = "@" + path[1:].decode("utf-8", "replace")
        return f"unix:{path}", "", path, "unix"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        return f"[{host}]:{port}", host, str(port), "ipv6"
    return f"{host}:{port}", host, str(port), "ipv4"


def adopt(reactor, factory, fd: int, *, source: str, what: str,
          websocket: bool = False) -> Listener:
    """Serve on the listening socket ``fd`` a service manager passed us.

    ``what`` names it in messages (``inherited socket 'default' (fd 3)``).
    The descriptor is handed to the reactor and then closed here (the
    reactor keeps its own duplicate).  Raises :class:`StartupError`
    when it is not a listening stream socket.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise StartupError(source, f"{what}: {os.strerror(e.errno)}") from None
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in (
                socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            raise StartupError(source, f"{what} is not a TCP or UNIX stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise StartupError(source, f"{what} is not listening",
                               hint="use ListenStream= in the socket unit, without Accept=yes")
        text, host, service, family = _describe(sock)
        sock.setblocking(False)
        port = _adopt_stream_port(reactor, sock.fileno(), sock.family, factory)
        write_now(port)
    finally:
        sock.close()
    return Listener(text=text, host=host, service=service, family=family,
                    websocket=websocket, port=port, inherited=True)
