"""vncd.reactor: Twisted's epoll dispatch without the per-event log context, same failures.

The unit tests drive one :class:`~vncd.reactor.Reactor` (never run, never
installed) over real socket pairs; the last test runs the real command,
with a fault injected into the handshake of RFB 3.3 clients, and checks
that the faulty connection is logged and dropped while other clients go on.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys

from twisted.internet import abstract
from twisted.internet.error import ConnectionDone
from twisted.python import log
from twisted.trial.unittest import SynchronousTestCase

from tests.creds.sessionpump import _recv_exact
from tests.tools import ROOT, free_display, wait_for_port
from vncd.reactor import Reactor

#: Seconds a socket operation of the end-to-end test may take.
IO_TIMEOUT = 10

#: Seconds the command may take to start or to stop.
START_TIMEOUT = 30


class _Reader(abstract.FileDescriptor):
    """One end of a socket pair, read by the reactor; ``fail`` makes doRead raise."""

    def __init__(self, reactor, sock: socket.socket, name: str, fail: bool = False) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.name = name
        self.fail = fail
        self.received: list[bytes] = []
        self.lost = []
        self.connected = True

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return self.name

    def doRead(self):
        if self.fail:
            raise RuntimeError(f"{self.name} failed")
        data = self.sock.recv(4096)
        if not data:
            return ConnectionDone()
        self.received.append(data)
        return None

    def connectionLost(self, reason) -> None:
        self.lost.append(reason)


class DispatchTests(SynchronousTestCase):
    """Events reach doRead as in Twisted; failures are logged and cut one selectable."""

    def setUp(self) -> None:
        self.reactor = Reactor()
        self.addCleanup(self._close_reactor)
        self.events: list[dict] = []
        log.addObserver(self.events.append)
        self.addCleanup(log.removeObserver, self.events.append)

    def _close_reactor(self) -> None:
        waker = self.reactor.waker
        self.reactor.removeReader(waker)
        waker.connectionLost(None)
        self.reactor._poller.close()

    def reader(self, name: str, fail: bool = False) -> tuple[_Reader, socket.socket]:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        ours.setblocking(False)
        reader = _Reader(self.reactor, ours, name, fail)
        self.reactor.addReader(reader)
        self.addCleanup(self.reactor.removeReader, reader)
        return reader, theirs

    def test_read_event_reaches_do_read(self):
        """Input on a descriptor calls its doRead with nothing logged."""
        reader, peer = self.reader("good")
        peer.sendall(b"hello")
        self.reactor.doPoll(1)
        self.assertEqual(reader.received, [b"hello"])
        self.assertEqual(reader.lost, [])
        self.assertEqual([e for e in self.events if e.get("isError")], [])

    def test_failing_do_read_is_logged_and_dropped_alone(self):
        """An exception in doRead is logged under the selectable's prefix and disconnects
        that selectable only; another one with input in the same poll still reads it."""
        bad, bad_peer = self.reader("bad", fail=True)
        good, good_peer = self.reader("good")
        bad_peer.sendall(b"x")
        good_peer.sendall(b"y")
        self.reactor.doPoll(1)
        errors = self.flushLoggedErrors(RuntimeError)
        self.assertEqual([str(f.value) for f in errors], ["bad failed"])
        logged = [e for e in self.events if e.get("isError")]
        self.assertEqual([e["system"] for e in logged], ["bad"])
        self.assertEqual(len(bad.lost), 1)
        self.assertIsInstance(bad.lost[0].value, RuntimeError)
        self.assertNotIn(bad, self.reactor.getReaders())
        self.assertEqual(good.received, [b"y"])
        self.assertIn(good, self.reactor.getReaders())

    def test_hang_up_of_a_reader_is_a_clean_close(self):
        """A hang-up with no input pending ends a reader with ConnectionDone, as in Twisted."""
        reader, peer = self.reader("closing")
        self.reactor._dispatch(reader, reader.fileno(), select.EPOLLHUP)
        self.assertEqual(len(reader.lost), 1)
        self.assertIsInstance(reader.lost[0].value, ConnectionDone)

    def test_failure_outside_the_selectable_is_logged(self):
        """A failure while disconnecting (outside doRead) is logged and the loop goes on."""
        bad, bad_peer = self.reader("bad", fail=True)
        good, good_peer = self.reader("good")

        def broken(reason):
            raise ValueError("connectionLost failed")
        bad.connectionLost = broken
        bad_peer.sendall(b"x")
        good_peer.sendall(b"y")
        self.reactor.doPoll(1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(good.received, [b"y"])

    def test_buggy_log_prefix(self):
        """A logPrefix that raises does not hide the failure being logged."""
        bad, bad_peer = self.reader("bad", fail=True)

        def prefix():
            raise KeyError("no prefix")
        bad.logPrefix = prefix
        bad_peer.sendall(b"x")
        self.reactor.doPoll(1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual([e["system"] for e in self.events if e.get("isError")],
                         ["(buggy logPrefix method)"])


#: Runs the real command with a fault in the handshake step that follows
#: the version exchange, for RFB 3.3 clients only.
_FAULTY_VNCD = """
import sys
from vncd import reactor, server

installed = reactor.install
def install():
    sys.stderr.write(f"reactor: {reactor.Reactor.__module__}\\n")
    return installed()
reactor.install = install

on_version = server._EVENT_HANDLERS[server.VersionAgreed]
def faulty(protocol, event):
    if event.minor == 3:
        raise RuntimeError("injected handshake fault")
    return on_version(protocol, event)
server._EVENT_HANDLERS[server.VersionAgreed] = faulty

from vncd.cli import main
sys.exit(main())
"""


def _handshake(port: int) -> socket.socket:
    """An RFB 3.8 client with security None, up to ServerInit (640x480 screen expected)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    assert _recv_exact(sock, 12) == b"RFB 003.008\n"
    sock.sendall(b"RFB 003.008\n")
    count = _recv_exact(sock, 1)[0]
    assert 1 in _recv_exact(sock, count)
    sock.sendall(b"\x01")
    assert _recv_exact(sock, 4) == b"\0\0\0\0"
    sock.sendall(b"\x01")
    width, height, _, name_length = struct.unpack(">HH16sI", _recv_exact(sock, 24))
    _recv_exact(sock, name_length)
    return sock



class TimedCallTests(SynchronousTestCase):
    """runUntilCurrent and timeout, which skip Twisted's work when nothing is due,
    run the same calls in the same order and sleep as long as Twisted's own.

    The same script drives :class:`Reactor` and Twisted's ``EPollReactor``
    side by side on one fake clock and compares what each did.
    """

    def make(self, cls):
        from twisted.internet import epollreactor

        reactor = cls()
        reactor.now = 1000.0
        reactor.seconds = lambda: reactor.now

        def close() -> None:
            waker = reactor.waker
            reactor.removeReader(waker)
            waker.connectionLost(None)
            reactor._poller.close()

        self.addCleanup(close)
        self.assertTrue(issubclass(cls, epollreactor.EPollReactor))
        return reactor

    def script(self, reactor) -> list:
        """Timed calls, cancellations, thread calls and a stop; what happened, in order."""
        seen: list = []
        reactor.addSystemEventTrigger("during", "shutdown", seen.append, "shutdown")

        def step(label) -> None:
            reactor.runUntilCurrent()
            seen.append((label, reactor.timeout()))

        step("empty")
        reactor.callLater(5, seen.append, "a")
        reactor.callLater(2, seen.append, "b")
        step("two new")
        reactor.now += 2
        step("b due")
        later = reactor.callLater(10_000_000, seen.append, "far")
        step("far away")
        later.cancel()
        step("cancelled")
        # Many cancellations: Twisted rebuilds its heap once there are more
        # than 50 and they are over half of it.
        calls = [reactor.callLater(100 + i, seen.append, f"c{i}") for i in range(120)]
        step("120 pending")
        for call in calls[:80]:
            call.cancel()
        step("80 cancelled")
        seen.append(("heap", len(reactor._pendingTimedCalls), reactor._cancellations))
        reactor.callFromThread(seen.append, "from a thread")
        step("thread call")
        kept = reactor.callLater(1, seen.append, "delayed")
        kept.delay(3)
        reactor.now += 1
        step("delayed, not due")
        reactor.now += 3
        step("delayed, due")
        reactor.now += 300
        step("all due")
        far = reactor.callLater(10_000_000, seen.append, "far")
        step("only far away")
        far.cancel()
        reactor.callLater(0, seen.append, "zero")
        step("zero")
        reactor._stopped = False
        reactor.stop()
        step("stopped")
        return seen

    def test_same_as_twisted(self):
        from twisted.internet import epollreactor

        ours = self.script(self.make(Reactor))
        theirs = self.script(self.make(epollreactor.EPollReactor))
        self.assertEqual(ours, theirs)
        # The script did exercise what it means to.
        self.assertIn("shutdown", ours)
        self.assertIn("from a thread", ours)
        self.assertIn(("only far away", 2147483), ours)
        self.assertIn(("all due", None), ours)
        self.assertEqual([x for x in ours if isinstance(x, str) and x.startswith("c")],
                         [f"c{i}" for i in range(80, 120)])
        self.assertIn(("heap", 41, 0), ours)


class CommandTests(SynchronousTestCase):
    """``python -m vncd`` runs on vncd's reactor and survives a connection that fails."""

    def test_failing_connection_is_logged_and_dropped_others_go_on(self):
        """A handshake step that raises is logged with its traceback and closes that
        connection; a client already connected still gets updates, and a new one
        completes its handshake."""
        display = free_display()
        port = 5900 + display
        err_path = os.path.abspath(self.mktemp())
        with open(err_path, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", _FAULTY_VNCD, "-vnc", f"127.0.0.1:{display}"],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        self.addCleanup(self._stop, proc)
        wait_for_port("127.0.0.1", port, timeout=START_TIMEOUT)

        first = _handshake(port)
        self.addCleanup(first.close)

        faulty = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.addCleanup(faulty.close)
        self.assertEqual(_recv_exact(faulty, 12), b"RFB 003.008\n")
        faulty.sendall(b"RFB 003.003\n")
        self.assertEqual(faulty.recv(100), b"", "the faulty connection is closed")

        # FramebufferUpdateRequest, non-incremental, 8x8 at the origin.
        first.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, 8, 8))
        message_type, _, rects = struct.unpack(">BBH", _recv_exact(first, 4))
        self.assertEqual((message_type, rects), (0, 1))

        _handshake(port).close()
        self.assertIsNone(proc.poll(), "the server is still running")

        with open(err_path) as f:
            text = f.read()
        self.assertIn("reactor: vncd.reactor", text)
        self.assertIn("Traceback", text)
        self.assertEqual(text.count("RuntimeError: injected handshake fault"), 1)

    def _stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

