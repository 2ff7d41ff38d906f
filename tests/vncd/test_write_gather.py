"""vncd.listen: queued writes leave without being joined (_WriteNow.doWrite).

Real reactor and loopback TCP; the reading side is a thread that reads
slowly at first, so that writes pile up in the transport.  Every wait is
bounded by trial's timeout.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from twisted.internet import defer, protocol, reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

from compat.config import ListenAddress
from vncd.listen import _WriteNow, listen, listen_unix


def _read_all(sock: socket.socket, pause: float = 0.0, limit: int | None = None) -> bytes:
    """Everything until EOF (or ``limit`` bytes, then close); ``pause`` seconds
    before reading, so the writer's queue fills."""
    sock.settimeout(10)
    time.sleep(pause)
    chunks, got = [], 0
    while limit is None or got < limit:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    sock.close()
    return b"".join(chunks)


class _Writer(protocol.Protocol):
    """Writes the factory's messages when connected and records what the
    transport does with them."""

    def connectionMade(self):
        f = self.factory
        f.transport = self.transport
        if f.producer is not None:
            self.transport.registerProducer(f.producer, True)
        for data in f.messages:
            self.transport.write(data)
        f.queued_after_writes = len(self.transport._tempDataBuffer)
        if f.close:
            self.transport.loseConnection()
        # What the first doWrite makes the current buffer (Twisted: a join).
        original = self.transport.doWrite

        def doWrite():
            result = original()
            if f.first_buffer is None:
                f.first_buffer = self.transport.dataBuffer
            return result

        self.transport.doWrite = doWrite

    def connectionLost(self, reason):
        self.factory.reason = reason
        self.factory.lost.callback(None)


class _Factory(protocol.Factory):
    protocol = _Writer

    def __init__(self, messages, close=True, producer=None):
        self.messages = messages
        self.close = close
        self.producer = producer
        self.transport = None
        self.queued_after_writes = 0
        self.first_buffer = None
        self.reason = None
        self.lost = defer.Deferred()


@implementer(IPushProducer)
class _Producer:
    def __init__(self):
        self.paused = self.resumed = 0

    def pauseProducing(self):
        self.paused += 1

    def resumeProducing(self):
        self.resumed += 1

    def stopProducing(self):
        pass


class GatherTests(TestCase):
    timeout = 60

    def _port(self, factory) -> int:
        [listener] = listen(reactor, factory, ListenAddress("tcp", "127.0.0.1", 0),
                            source="-vnc test", allowed=(socket.AF_INET,))
        self.addCleanup(listener.port.stopListening)
        return int(listener.service)

    @defer.inlineCallbacks
    def test_many_large_writes_arrive_whole_and_are_not_joined(self):
        """Bands of an update, small messages between them: the bytes arrive in
        order, and the transport sends the queued writes themselves (Twisted
        joined them all into a new buffer first)."""
        bands = [os.urandom(300_000 + i) for i in range(20)]
        messages = [b"head"]
        for i, band in enumerate(bands):
            messages.append(band)
            if i % 5 == 0:
                messages.append(b"small %d" % i)
        factory = _Factory(messages)
        sock = socket.create_connection(("127.0.0.1", self._port(factory)))
        data = yield deferToThread(_read_all, sock, 0.3)
        yield factory.lost
        self.assertEqual(data, b"".join(messages))
        self.assertIsInstance(factory.transport, _WriteNow)
        self.assertTrue(factory.transport._gather)
        self.assertGreater(factory.queued_after_writes, 10)
        self.assertTrue(any(factory.first_buffer is m for m in messages),
                        "the first doWrite made a new buffer")

    @defer.inlineCallbacks
    def test_producer_resumed_when_all_is_sent(self):
        """A paused streaming producer is resumed once everything has left, as
        Twisted does; the connection stays open."""
        producer = _Producer()
        factory = _Factory([os.urandom(200_000) for _ in range(6)], close=False,
                           producer=producer)
        sock = socket.create_connection(("127.0.0.1", self._port(factory)))
        reader = deferToThread(_read_all, sock, 0.2, 6 * 200_000)
        data = yield reader
        self.assertEqual(len(data), 6 * 200_000)
        for _ in range(100):
            if producer.resumed:
                break
            yield deferToThread(time.sleep, 0.02)
        self.assertGreaterEqual(producer.paused, 1)
        self.assertGreaterEqual(producer.resumed, 1)
        self.assertEqual(factory.transport._tempDataLen, 0)
        factory.transport.loseConnection()
        yield factory.lost

    @defer.inlineCallbacks
    def test_peer_closing_mid_write_loses_the_connection(self):
        """The reader goes away with megabytes queued: the connection is lost
        cleanly, nothing is raised into the reactor."""
        factory = _Factory([os.urandom(500_000) for _ in range(16)], close=False)
        sock = socket.create_connection(("127.0.0.1", self._port(factory)))
        data = yield deferToThread(_read_all, sock, 0.2, 100_000)
        self.assertGreaterEqual(len(data), 100_000)
        yield factory.lost
        from twisted.internet.error import ConnectionLost
        self.assertTrue(factory.reason.check(ConnectionLost), factory.reason)

    @defer.inlineCallbacks
    def test_unix_transports_keep_twisted_dowrite(self):
        import tempfile
        path = os.path.join(tempfile.mkdtemp(prefix="vncd-test-"), "s")
        self.addCleanup(os.rmdir, os.path.dirname(path))
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        messages = [os.urandom(300_000) for _ in range(4)]
        factory = _Factory(messages)
        listener = listen_unix(reactor, factory, path, source="-vnc unix:test")
        self.addCleanup(listener.port.stopListening)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        data = yield deferToThread(_read_all, sock, 0.2)
        yield factory.lost
        self.assertEqual(data, b"".join(messages))
        self.assertFalse(factory.transport._gather)
