"""vncd.listen: connections on vncd's listeners write at once (write_now).

Real reactor, loopback TCP and a UNIX socket in a temporary directory;
every wait is bounded by trial's timeout.
"""

from __future__ import annotations

import os
import socket
import tempfile

from twisted.internet import defer, protocol, reactor
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

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
