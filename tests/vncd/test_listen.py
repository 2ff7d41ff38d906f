"""vncd.listen: connections on vncd's listeners write at once (write_now); TCP listeners
accept through their own loop with Twisted's outcomes.

Real reactor, loopback TCP and a UNIX socket in a temporary directory;
every wait is bounded by trial's timeout.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile

from twisted.internet import defer, protocol, reactor
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from compat.config import ListenAddress
from vncd.listen import _WriteNow, listen, listen_unix, write_now


class _Writer(protocol.Protocol):
    """Writes ``messages`` when connected, noting what the transport still holds after each."""

    def connectionMade(self):
        self.factory.transports.append(self.transport)
        for data in self.factory.messages:
            self.transport.write(data)
            held = len(self.transport.dataBuffer) - self.transport.offset \
                + self.transport._tempDataLen
            self.factory.held.append(held)
        if self.factory.close:
            self.transport.loseConnection()


class _WriterFactory(protocol.Factory):
    protocol = _Writer

    def __init__(self, messages, close=True):
        self.messages = messages
        self.close = close
        self.transports = []
        self.held = []


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class WriteNowTests(TestCase):
    timeout = 30

    def _listen_tcp(self, factory):
        [listener] = listen(reactor, factory, ListenAddress("tcp", "127.0.0.1", 0),
                            source="-vnc test", allowed=(socket.AF_INET,))
        self.addCleanup(listener.port.stopListening)
        return int(listener.service)

    @defer.inlineCallbacks
    def _exchange(self, factory, connect):
        sock = yield connect()
        try:
            data = yield _deferToRead(sock)
        finally:
            sock.close()
        return data

    @defer.inlineCallbacks
    def test_small_writes_leave_at_once_in_order(self):
        messages = [b"RFB 003.008\n", b"\x01\x01", b"\x00\x00\x00\x00"]
        factory = _WriterFactory(messages)
        port = self._listen_tcp(factory)
        data = yield self._exchange(
            factory, lambda: defer.succeed(socket.create_connection(("127.0.0.1", port))))
        self.assertEqual(data, b"".join(messages))
        self.assertIsInstance(factory.transports[0], _WriteNow)
        self.assertTrue(factory.transports[0].DIRECT_SEND, "TCP sends by itself")
        self.assertEqual(factory.held, [0, 0, 0])

    @defer.inlineCallbacks
    def test_large_write_is_queued_and_keeps_its_place(self):
        """A write above IMMEDIATE_LIMIT goes the ordinary way; a small one behind it waits."""
        big = os.urandom(3 * 1024 * 1024 + 5)   # several SEND_LIMIT sends
        messages = [b"first", big, b"last"]
        factory = _WriterFactory(messages)
        port = self._listen_tcp(factory)
        data = yield self._exchange(
            factory, lambda: defer.succeed(socket.create_connection(("127.0.0.1", port))))
        self.assertEqual(data, b"".join(messages))
        self.assertEqual(factory.held[0], 0)
        self.assertEqual(factory.held[1], len(big))
        self.assertEqual(factory.held[2], len(big) + 4)

    @defer.inlineCallbacks
    def test_unix_listener(self):
        path = os.path.join(tempfile.mkdtemp(prefix="vncd-test-"), "s")
        self.addCleanup(os.rmdir, os.path.dirname(path))
        factory = _WriterFactory([b"hello", b"world"])
        listener = listen_unix(reactor, factory, path, source="-vnc unix:test")
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        self.addCleanup(listener.port.stopListening)

        def connect():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            return defer.succeed(sock)

        data = yield self._exchange(factory, connect)
        self.assertEqual(data, b"helloworld")
        self.assertEqual(factory.held, [0, 0])
        self.assertFalse(factory.transports[0].DIRECT_SEND, "UNIX keeps its writeSomeData")

    def test_twice_is_once(self):
        [listener] = listen(reactor, _WriterFactory([]), ListenAddress("tcp", "127.0.0.1", 0),
                            source="-vnc test", allowed=(socket.AF_INET,))
        self.addCleanup(listener.port.stopListening)
        cls = listener.port.transport
        write_now(listener.port)
        self.assertIs(listener.port.transport, cls)
        self.assertEqual(cls.__mro__[1], _WriteNow)


def _deferToRead(sock: socket.socket) -> defer.Deferred:
    from twisted.internet.threads import deferToThread
    return deferToThread(_read_all, sock)


class WriteNowPortTests(SynchronousTestCase):
    def test_other_ports_are_left_alone(self):
        memory = MemoryReactor()
        port = memory.listenTCP(0, protocol.Factory())
        before = getattr(port, "transport", None)
        write_now(port)
        self.assertIs(getattr(port, "transport", None), before)


class _Recorder(protocol.Protocol):
    """Notes its transport and peer; says hello and closes."""

    def connectionMade(self):
        self.factory.made.append((self.transport, self.transport.getPeer()))
        self.factory.timeouts.append(self.transport.socket.gettimeout())
        self.transport.write(b"hello")
        self.transport.loseConnection()


class _RecorderFactory(protocol.Factory):
    protocol = _Recorder

    def __init__(self, refuse=(), fail=()):
        self.made = []
        self.timeouts = []
        self.addresses = []
        self.refuse = set(refuse)
        self.fail = set(fail)

    def buildProtocol(self, addr):
        index = len(self.addresses)
        self.addresses.append(addr)
        if index in self.fail:
            raise RuntimeError(f"factory failed for connection {index}")
        if index in self.refuse:
            return None
        return super().buildProtocol(addr)


class _FailingAccepts:
    """A listening socket whose next ``failures`` accepts fail with ``error`` (then the real ones)."""

    def __init__(self, sock, error: int, failures: int) -> None:
        self._sock = sock
        self._error = error
        self.failures = failures

    def _fail(self) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(self._error, os.strerror(self._error))

    def _accept(self):
        self._fail()
        return self._sock._accept()

    def accept(self):
        self._fail()
        return self._sock.accept()

    def __getattr__(self, name):
        return getattr(self._sock, name)


class AcceptPortTests(TestCase):
    """vncd's TCP listeners accept through their own loop with Twisted's outcomes."""

    timeout = 30

    def _listen(self, factory, host="127.0.0.1", family=socket.AF_INET):
        [listener] = listen(reactor, factory, ListenAddress("tcp", host, 0),
                            source="-vnc test", allowed=(family,))
        self.addCleanup(listener.port.stopListening)
        return listener

    def _client(self, port: int, host="127.0.0.1", family=socket.AF_INET):
        def connect():
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.connect((host, port))
            return _read_all(sock), sock
        from twisted.internet.threads import deferToThread
        return deferToThread(connect).addCallback(lambda pair: (pair[1].close(), pair[0])[1])

    def test_port_class(self):
        """Listeners on Twisted's reactor get the accepting port; it is still a tcp.Port."""
        from twisted.internet import tcp
        listener = self._listen(_RecorderFactory())
        self.assertIsInstance(listener.port, tcp.Port)
        self.assertEqual(type(listener.port).__name__, "AcceptPort")
        self.assertEqual(listener.port._socket_args,
                         (socket.AF_INET, socket.SOCK_STREAM, listener.port.socket.proto))

    @defer.inlineCallbacks
    def test_connections_as_twisted_builds_them(self):
        """Each connection gets the factory's protocol with the peer's address, the next
        session number and a non-blocking socket; a factory's None closes the socket
        (and takes no session number)."""
        from twisted.internet.address import IPv4Address
        factory = _RecorderFactory(refuse={1})
        port = int(self._listen(factory).service)
        first = yield self._client(port)
        refused = yield self._client(port)
        third = yield self._client(port)
        self.assertEqual((first, refused, third), (b"hello", b"", b"hello"))
        self.assertEqual(len(factory.addresses), 3)
        for addr in factory.addresses:
            self.assertIsInstance(addr, IPv4Address)
            self.assertEqual((addr.type, addr.host), ("TCP", "127.0.0.1"))
        [(t1, peer1), (t3, peer3)] = factory.made
        self.assertEqual(peer1, factory.addresses[0])
        self.assertEqual(t3.sessionno, t1.sessionno + 1)
        self.assertIsInstance(t1, _WriteNow)
        self.assertEqual(factory.timeouts, [0.0, 0.0])

    @defer.inlineCallbacks
    def test_ipv6_peer(self):
        """An IPv6 peer's address is an IPv6Address with the numeric host."""
        from twisted.internet.address import IPv6Address
        try:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            raise SkipTest("no IPv6 loopback here")
        factory = _RecorderFactory()
        port = int(self._listen(factory, "::1", socket.AF_INET6).service)
        data = yield self._client(port, "::1", socket.AF_INET6)
        self.assertEqual(data, b"hello")
        [addr] = factory.addresses
        self.assertIsInstance(addr, IPv6Address)
        self.assertEqual(addr.host, "::1")

    @defer.inlineCallbacks
    def test_factory_failure_is_logged_and_the_port_goes_on(self):
        """An exception while building a connection is logged; the next client is served."""
        factory = _RecorderFactory(fail={0})
        port = int(self._listen(factory).service)
        socket.create_connection(("127.0.0.1", port)).close()
        second = yield self._client(port)
        self.assertEqual(second, b"hello")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(factory.addresses), 2)

    @defer.inlineCallbacks
    def test_out_of_descriptors_is_twisteds_recovery(self):
        """EMFILE goes to Twisted's loop: it frees its reserved descriptor, accepts and
        closes the waiting client, logs that; the next client is served."""
        events = []
        from twisted.logger import globalLogPublisher
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        factory = _RecorderFactory()
        listener = self._listen(factory)
        failing = _FailingAccepts(listener.port.socket, errno.EMFILE, 2)
        listener.port.socket = failing
        port = int(listener.service)
        first = yield self._client(port)
        second = yield self._client(port)
        self.assertEqual((first, second), (b"", b"hello"))
        self.assertEqual(failing.failures, 0)
        self.assertTrue(any("EMFILE" in (e.get("log_format") or "") for e in events))
        self.assertEqual(len(factory.made), 1)
