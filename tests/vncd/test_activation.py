"""vncd.activation: inherited sockets and sd_notify, in process and with real managers.

The process tests start ``python -m vncd`` under ``systemd-socket-activate``
or with a listening socket passed by hand as descriptor 3, and listen on
a datagram socket of their own as the ``NOTIFY_SOCKET``.  Every wait is
bounded; every process is stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.tools import ROOT, free_display, require_tool, wait_for_port
from vncd.activation import (
    MAX_LISTEN_FDS, ActivationError, InheritedSocket, InheritedSockets, Notifier,
    inherited_sockets,
)

#: Seconds any one step of a process test may take.
STEP_TIMEOUT = 30

#: The greeting every RFB server sends first.
GREETING = b"RFB 003.008\n"


def env(pid, fds, names=None):
    values = {"LISTEN_PID": str(pid), "LISTEN_FDS": str(fds), "OTHER": "kept"}
    if names is not None:
        values["LISTEN_FDNAMES"] = names
    return values


class InheritedSocketsTests(SynchronousTestCase):
    """The LISTEN_* variables are read once, checked, and removed."""

    def test_none(self):
        """Without the variables there are no inherited sockets."""
        environ = {"PATH": "/bin"}
        self.assertEqual(inherited_sockets(environ, pid=10), [])
        self.assertEqual(environ, {"PATH": "/bin"})

    def test_named(self):
        """Each descriptor from 3 up gets its name, and the variables are removed."""
        # Two consecutive open descriptors stand in for 3 and 4.
        first = os.open(os.devnull, os.O_RDONLY)
        self.addCleanup(os.close, first)
        second = os.dup(first)
        self.addCleanup(os.close, second)
        if second != first + 1:
            raise AssertionError(f"descriptors {first} and {second} are not consecutive")
        os.set_inheritable(second, True)
        environ = env(10, 2, "default:vnc2")
        self.assertEqual(inherited_sockets(environ, pid=10, first_fd=first),
                         [InheritedSocket(first, "default"), InheritedSocket(second, "vnc2")])
        self.assertEqual(environ, {"OTHER": "kept"})
        self.assertFalse(os.get_inheritable(second))

    def test_other_process(self):
        """Sockets meant for another process (LISTEN_PID) are not taken, but the variables go."""
        environ = env(11, 2)
        self.assertEqual(inherited_sockets(environ, pid=10), [])
        self.assertEqual(environ, {"OTHER": "kept"})

    def test_garbage(self):
        """Malformed variables raise ActivationError naming the variable."""
        for environ, word in [
            (env("x", 1), "LISTEN_PID"),
            (env(10, "two"), "LISTEN_FDS"),
            (env(10, -1), "LISTEN_FDS"),
            (env(10, MAX_LISTEN_FDS + 1), "LISTEN_FDS"),
            (env(10, 2, "only-one"), "LISTEN_FDNAMES"),
            ({"LISTEN_FDS": "1"}, "LISTEN_PID"),
        ]:
            with self.assertRaises(ActivationError) as caught:
                inherited_sockets(environ, pid=10)
            self.assertIn(word, str(caught.exception))

    def test_matching(self):
        """A display takes the sockets named by its id; one socket and one display pair up."""
        sockets = [InheritedSocket(3, "default"), InheritedSocket(4, "vnc2"),
                   InheritedSocket(5, "default.websocket"), InheritedSocket(6, "stray")]
        pool = InheritedSockets(sockets, ["default", "vnc2"])
        self.assertEqual(pool.take("default"), [sockets[0]])
        self.assertEqual(pool.take("default.websocket"), [sockets[2]])
        self.assertEqual(pool.take("vnc2"), [sockets[1]])
        self.assertEqual(pool.unclaimed(), [sockets[3]])
        only = InheritedSocket(3, "vncd.socket")
        self.assertEqual(InheritedSockets([only], ["default"]).take("default"), [only])
        self.assertEqual(InheritedSockets([only], ["default", "vnc2"]).take("default"), [])


class NotifierTests(SynchronousTestCase):
    """sd_notify datagrams reach a socket the test listens on, by path or abstract name."""

    def listen(self, address):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(address)
        sock.settimeout(5)
        self.addCleanup(sock.close)
        return sock

    def test_path(self):
        """READY=1 with a status line arrives at a socket path."""
        directory = tempfile.mkdtemp(prefix="vncd-notify-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "notify")
        sock = self.listen(path)
        notifier = Notifier({"NOTIFY_SOCKET": path})
        self.assertIsNone(notifier.ready("serving on 127.0.0.1:5901"))
        self.assertEqual(sock.recv(4096), b"READY=1\nSTATUS=serving on 127.0.0.1:5901")

    def test_abstract(self):
        """An @name is an abstract socket address; RELOADING=1 carries the monotonic time."""
        name = f"vncd-test-{os.getpid()}-{time.monotonic_ns()}"
        sock = self.listen("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.reloading()
        fields = sock.recv(4096).split(b"\n")
        self.assertEqual(fields[0], b"RELOADING=1")
        self.assertTrue(fields[1].startswith(b"MONOTONIC_USEC="))
        notifier.stopping()
        self.assertEqual(sock.recv(4096), b"STOPPING=1")

    def test_disabled_and_gone(self):
        """No NOTIFY_SOCKET sends nothing; a vanished manager gives an error text, no exception."""
        self.assertFalse(Notifier({}).enabled)
        self.assertIsNone(Notifier({}).ready())
        gone = Notifier({"NOTIFY_SOCKET": os.path.abspath(self.mktemp())})
        self.assertIn("NOTIFY_SOCKET", gone.ready())


class _NotifyListener:
    """A datagram socket playing the service manager's NOTIFY_SOCKET."""

    def __init__(self, case):
        # A short directory: socket paths are limited to about 100 bytes.
        directory = tempfile.mkdtemp(prefix="vncd-notify-")
        case.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(STEP_TIMEOUT)
        case.addCleanup(self.sock.close)

    def expect(self, field: bytes) -> bytes:
        message = self.sock.recv(4096)
        if field not in message.split(b"\n"):
            raise AssertionError(f"{field!r} not in {message!r}")
        return message


def _greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT) as s:
        s.settimeout(STEP_TIMEOUT)
        data = b""
        while len(data) < len(GREETING):
            chunk = s.recv(len(GREETING) - len(data))
            if not chunk:
                break
            data += chunk
        return data


class _Process:
    def __init__(self, case, argv, **kw):
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True, **kw)
        case.addCleanup(self.kill)

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STEP_TIMEOUT)
        self.proc.stderr.close()

    def stop(self) -> tuple[int, str]:
        os.killpg(self.proc.pid, signal.SIGTERM)
        status = self.proc.wait(STEP_TIMEOUT)
        return status, self.proc.stderr.read().decode()


class SocketActivationTests(SynchronousTestCase):
    """vncd serves on sockets a service manager passes, instead of binding its own."""

    def test_systemd_socket_activate(self):
        """Under systemd-socket-activate the display takes the socket on its own port
        (which it could not bind), and READY=1 then STOPPING=1 reach NOTIFY_SOCKET."""
        tool = require_tool("systemd-socket-activate")
        display = free_display()
        port = 5900 + display
        notify = _NotifyListener(self)
        proc = _Process(self, [
            tool, "-l", f"127.0.0.1:{port}", "-E", f"NOTIFY_SOCKET={notify.path}",
            sys.executable, "-m", "vncd", "-vnc", f"127.0.0.1:{display}"])
        self.assertTrue(wait_for_port("127.0.0.1", port, timeout=STEP_TIMEOUT, proc=proc.proc))
        # The manager starts vncd on the first connection, which vncd then serves.
        self.assertEqual(_greeting(port), GREETING)
        ready = notify.expect(b"READY=1")
        self.assertIn(f"STATUS=serving on 127.0.0.1:{port}".encode(), ready)
        self.assertEqual(_greeting(port), GREETING)
        status, log = proc.stop()
        notify.expect(b"STOPPING=1")
        self.assertEqual(status, 0, log)
        self.assertNotIn("Address already in use", log)

    def test_hand_passed_fds(self):
        """Two named sockets passed by hand as fds 3 and 4 go to the displays of those ids;
        a stray name is warned about; a SIGHUP reload is framed by RELOADING=1 and READY=1."""
        listeners = []
        for _ in range(3):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(8)
            self.addCleanup(sock.close)
            listeners.append(sock)
        launcher = (
            "import os, sys\n"
            "fds = [int(x) for x in sys.argv[1].split(',')]\n"
            "for target, fd in enumerate(fds, 3):\n"
            "    os.dup2(fd, target)\n"
            "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)),\n"
            "                  LISTEN_FDNAMES='default:vnc2:stray')\n"
            "os.execv(sys.executable, [sys.executable, '-m', 'vncd', *sys.argv[2:]])\n")
        fds = [s.fileno() for s in listeners]
        notify = _NotifyListener(self)
        proc = _Process(self, [sys.executable, "-c", launcher, ",".join(map(str, fds)),
                               "-vnc", "none", "-vnc", "none"], pass_fds=fds,
                        env={**os.environ, "NOTIFY_SOCKET": notify.path})
        notify.expect(b"READY=1")
        for sock in listeners[:2]:
            self.assertEqual(_greeting(sock.getsockname()[1]), GREETING)
        os.kill(proc.proc.pid, signal.SIGHUP)
        notify.expect(b"RELOADING=1")
        notify.expect(b"READY=1")
        status, log = proc.stop()
        self.assertEqual(status, 0, log)
        self.assertIn("inherited socket 'stray' (fd 5) matches no display id"
                      " (default, vnc2); closed", log)
        for sock in listeners[:2]:
            self.assertIn(f"serving on 127.0.0.1:{sock.getsockname()[1]}", log)

    def test_not_listening(self):
        """An inherited descriptor that is not a listening socket stops the start with a reason."""
        sock = socket.socket()
        self.addCleanup(sock.close)
        launcher = (
            "import os, sys\n"
            "os.dup2(int(sys.argv[1]), 3)\n"
            "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
            "os.execv(sys.executable, [sys.executable, '-m', 'vncd', '-vnc', 'none'])\n")
        result = subprocess.run([sys.executable, "-c", launcher, str(sock.fileno())],
                                pass_fds=[sock.fileno()], cwd=ROOT, capture_output=True,
                                text=True, timeout=STEP_TIMEOUT)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("-vnc none: inherited socket fd 3 is not listening", result.stderr)


class ContribUnitTests(SynchronousTestCase):
    """The systemd units under contrib/ agree with vncd."""

    def unit(self, name):
        values = {}
        with open(os.path.join(ROOT, "contrib", name)) as f:
            text = f.read().replace("\\\n", " ")
        for line in text.splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                values.setdefault(key.strip(), value.strip())
        return values

    def test_service_command_line(self):
        """ExecStart is a command line vncd accepts, without -daemonize, in a notify unit."""
        import io
        import shlex

        from vncd.cli import main

        service = self.unit("vncd.service")
        self.assertEqual(service["Type"], "notify")
        argv = shlex.split(service["ExecStart"])
        self.assertEqual(os.path.basename(argv[0]), "vncd")
        self.assertNotIn("-daemonize", argv)
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(main([*argv[1:], "-print-translation"], stdout=out, stderr=err), 0,
                         err.getvalue())

    def test_socket_name_is_first_display(self):
        """The socket unit names its socket after the id vncd gives the first display."""
        from compat.vnc import parse_vnc

        socket_unit = self.unit("vncd.socket")
        display, _ = parse_vnc(":0", used_ids=[], option="-vnc")
        self.assertEqual(socket_unit["FileDescriptorName"], display.id)
        self.assertEqual(socket_unit["Accept"], "no")
