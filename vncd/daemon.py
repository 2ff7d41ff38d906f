# -*- test-case-name: tests.vncd.test_daemon -*-
"""``-daemonize`` as QEMU does it, and the signals of a long-running process.

:func:`daemonize` detaches the way QEMU's ``os_daemonize`` does: fork;
the parent waits on a pipe; the child starts a new session and forks
again; the grandchild carries on.  Everything up to listening still
happens with the terminal attached, so start-up errors reach it; then
:meth:`Daemon.ready` moves the daemon to ``/``, points standard input,
output and error at ``/dev/null`` and writes a zero byte, and the parent
exits 0.  When the daemon stops before that, :meth:`Daemon.failed`
writes its exit status and the parent exits with it (QEMU's parent
exits 1 whatever went wrong; vncd's errors all exit 1 too).

:class:`SignalWatcher` takes SIGTERM and SIGINT through ``sigwaitinfo``
in a thread of its own, so the sender's pid is known: vncd logs it as
QEMU does (``terminating on signal 15 from pid 1234 (kill)``).

This module knows nothing about RFB, Twisted or certificates.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

__all__ = ["Daemon", "daemonize", "SignalWatcher", "describe_sender",
           "MAX_CMDLINE_BYTES"]

#: Most bytes read from ``/proc/PID/cmdline`` to name a signal's sender.
MAX_CMDLINE_BYTES = 4096

#: The umask the daemon runs under (QEMU's: group may read, others nothing).
DAEMON_UMASK = 0o027


class Daemon:
    """The detached process's end of the pipe to the waiting parent."""

    def __init__(self, pipe_fd: int | None) -> None:
        self._fd = pipe_fd

    @property
    def detached(self) -> bool:
        return self._fd is not None

    def _send(self, status: int) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, bytes([status & 0xFF]))
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def ready(self) -> None:
        """Listening: leave the terminal and let the parent exit 0."""
        if self._fd is None:
            return
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)
        self._send(0)

    def failed(self, status: int) -> None:
        """Stopping before :meth:`ready`: the parent exits with ``status``."""
        self._send(status or 1)


def daemonize() -> Daemon:
    """Detach (see the module docstring); returns in the daemon only.

    The original process waits for the daemon's status and exits with it:
    0 once the daemon listens, the daemon's exit status if it stops
    first, 1 if it vanishes without a word.
    """
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid > 0:
        os.close(write_fd)
        while True:
            try:
                data = os.read(read_fd, 1)
                break
            except InterruptedError:
                continue
        os._exit(data[0] if data else 1)
    os.close(read_fd)
    os.set_inheritable(write_fd, False)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.umask(DAEMON_UMASK)
    for signum in (signal.SIGTSTP, signal.SIGTTOU, signal.SIGTTIN):
        signal.signal(signum, signal.SIG_IGN)
    return Daemon(write_fd)


def describe_sender(pid: int) -> str:
    """``from pid N (PROGRAM)`` as QEMU writes it, or ``""`` for the kernel (Ctrl-C)."""
    if pid <= 0:
        return ""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read(MAX_CMDLINE_BYTES)
    except OSError:
        cmdline = b""
    program = cmdline.split(b"\0", 1)[0].decode("utf-8", "replace")
    return f" from pid {pid} ({program or '<unknown process>'})"


class SignalWatcher:
    """Receives SIGTERM and SIGINT with their sender, in a thread of its own.

    The signals are blocked in the calling (main) thread, so threads
    started later inherit the block and the kernel keeps the signal for
    ``sigwaitinfo``.  ``on_signal(signum, pid)`` runs in the watcher's
    thread: it must only hand over to the reactor (``callFromThread``).
    :meth:`close` stops the thread and restores the signal mask.
    """

    SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})

    def __init__(self, on_signal: Callable[[int, int], None]) -> None:
        self._on_signal = on_signal
        self._closing = False
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)
        self._thread = threading.Thread(target=self._run, name="vncd-signals", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            info = signal.sigwaitinfo(self.SIGNALS)
            if self._closing:
                return
            self._on_signal(info.si_signo, info.si_pid)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        signal.pthread_kill(self._thread.ident, signal.SIGTERM)
        self._thread.join(5)
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)
