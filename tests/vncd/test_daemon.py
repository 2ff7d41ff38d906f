"""-daemonize: the parent exits once the daemon listens, or with its error and status.

Compared with QEMU 7.2 run the same way: both print a start-up error on
the terminal and exit 1; both exit 0 once listening, leaving a daemon
whose pid is in the pid file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.tools import QEMU, ROOT, free_display, require_tool, wait_for_port
from vncd.daemon import describe_sender

#: Seconds a daemonizing parent may take to exit.
START_TIMEOUT = 30

#: Seconds a daemon may take to go after SIGTERM.
STOP_TIMEOUT = 15


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _kill_daemon(pidfile: str) -> None:
    try:
        with open(pidfile) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


class DaemonizeTests(SynchronousTestCase):
    """python -m vncd -daemonize, next to qemu-system-x86_64 -daemonize."""

    def daemonize(self, program: list[str], display: int) -> tuple[int, str, int]:
        """Run ``program`` with -daemonize; (parent status, stderr, daemon pid)."""
        pidfile = os.path.join(os.path.abspath(self.mktemp()))
        self.addCleanup(_kill_daemon, pidfile)
        result = subprocess.run([*program, "-daemonize", "-pidfile", pidfile,
                                 "-vnc", f"127.0.0.1:{display}"],
                                cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=START_TIMEOUT)
        pid = 0
        if result.returncode == 0:
            with open(pidfile) as f:
                pid = int(f.read())
        return result.returncode, result.stderr.decode(), pid

    def test_detaches_once_listening(self):
        """The parent exits 0 with the daemon already listening; the pid file holds the
        daemon's pid; SIGTERM stops the daemon and removes the pid file."""
        display = free_display()
        status, err, pid = self.daemonize([sys.executable, "-m", "vncd"], display)
        # Unlike QEMU, the addresses served are said before the terminal is left.
        self.assertEqual(status, 0, err)
        self.assertRegex(err, r"^\S+Z vncd: display default: serving on 127.0.0.1:"
                              f"{5900 + display}" r" \(no authentication\)\n$")
        with socket.create_connection(("127.0.0.1", 5900 + display), timeout=10) as s:
            s.settimeout(10)
            self.assertEqual(s.recv(12), b"RFB 003.008\n")
        os.kill(pid, signal.SIGTERM)
        self.assertTrue(_gone(pid, STOP_TIMEOUT))

    def test_error_reaches_terminal(self):
        """A start-up error (port taken) reaches the terminal, and the parent exits 1,
        as QEMU 7.2's does."""
        require_tool(QEMU)
        display = free_display()
        taken = socket.socket()
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 5900 + display))
        taken.listen(1)
        self.addCleanup(taken.close)
        results = {}
        for name, program in (
            ("vncd", [sys.executable, "-m", "vncd"]),
            (QEMU, [QEMU, "-machine", "none", "-nodefaults", "-display", "none"]),
        ):
            status, err, _ = self.daemonize(program, display)
            results[name] = (status, err.replace(name, "PROG", 1))
        self.assertEqual(results["vncd"], results[QEMU])
        self.assertEqual(results["vncd"],
                         (1, f"PROG: -vnc 127.0.0.1:{display}: Failed to find an available"
                             " port: Address already in use\n"))

    def test_qemu_same_success(self):
        """QEMU 7.2 detaches the same way: parent 0, silent, daemon in the pid file."""
        require_tool(QEMU)
        display = free_display()
        status, err, pid = self.daemonize(
            [QEMU, "-machine", "none", "-nodefaults", "-display", "none"], display)
        self.assertEqual((status, err), (0, ""))
        self.assertTrue(wait_for_port("127.0.0.1", 5900 + display, timeout=10))
        os.kill(pid, signal.SIGTERM)
        self.assertTrue(_gone(pid, STOP_TIMEOUT))


class StdioTests(SynchronousTestCase):
    """A stdio monitor cannot go with -daemonize, in QEMU's words."""

    def test_stdio_refused(self):
        """-qmp stdio and -chardev stdio are refused with -daemonize, as QEMU 7.2 does."""
        require_tool(QEMU)
        for args in (["-qmp", "stdio"], ["-chardev", "stdio,id=c", "-mon", "c"]):
            results = {}
            for name, program in (
                ("vncd", [sys.executable, "-m", "vncd"]),
                (QEMU, [QEMU, "-machine", "none", "-nodefaults", "-display", "none"]),
            ):
                result = subprocess.run([*program, "-daemonize", *args, "-vnc", "none"],
                                        cwd=ROOT, stdin=subprocess.DEVNULL,
                                        capture_output=True, timeout=START_TIMEOUT)
                results[name] = (result.returncode,
                                 result.stderr.decode().replace(name, "PROG", 1))
            self.assertEqual(results["vncd"], results[QEMU])
            self.assertEqual(results["vncd"][0], 1)
            self.assertIn("cannot use stdio with -daemonize", results["vncd"][1])


class SenderTests(SynchronousTestCase):
    """The sender of a signal is named as QEMU names it."""

    def test_sender(self):
        """Our own pid is named with our program; the kernel (pid 0) is not named."""
        program = open("/proc/self/cmdline", "rb").read().split(b"\0")[0].decode()
        self.assertEqual(describe_sender(os.getpid()), f" from pid {os.getpid()} ({program})")
        self.assertEqual(describe_sender(0), "")
