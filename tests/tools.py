"""Helpers for tests that drive real external programs.

``require_tool("gnutls-cli")`` returns the program's path.  When it is
missing, the test is skipped with a loud reason -- unless
``VNCD_REQUIRE_TOOLS`` is set (``.ci/run`` sets it), in which case the
test fails: in CI every tool is installed and a skip would hide a gap.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import FailTest, SkipTest

__all__ = [
    "require_tool", "free_port", "free_display", "wait_for_port", "QEMU",
    "qemu_vnc", "ROOT",
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Where each tool comes from, for the skip/fail message.
_PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "gnutls-cli": "gnutls-bin",
    "certtool": "gnutls-bin",
    "openssl": "openssl",
    "gvnccapture": "gvncviewer",
    "vncviewer": "tigervnc-viewer",
    "Xvfb": "xvfb",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "novnc": "novnc",
    "groff": "groff-base",
    "setpriv": "util-linux",
    "x11vnc": "x11vnc",
    "xev": "x11-utils",
    "systemd-socket-activate": "systemd",
}

QEMU = "qemu-system-x86_64"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    pkg = _PACKAGES.get(name, name)
    msg = (f"*** {name} is not installed (Debian package {pkg}); "
           f"this test needs it. Run .ci/run or apt-get install -y {pkg}. ***")
    if os.environ.get("VNCD_REQUIRE_TOOLS"):
        raise FailTest(msg)
    sys.stderr.write(msg + "\n")
    raise SkipTest(msg)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago, below the kernel's
    ephemeral range (see :func:`_ephemeral_low`).

    A port the kernel hands out for bind(0) is an ephemeral one: between
    this check and the server's own bind (QEMU's start-up takes long
    enough) any outgoing connection on the machine may take it as its
    local port -- seen once as QEMU's "Failed to find an available port:
    Address already in use" in test_dn_qemu under ``-j2``.  Ports below
    the range are never taken that way; parallel workers scan separate
    shares of them, and each call in a process starts after the last port
    it returned, so two calls in a row give two ports.
    """
    global _next_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    lo, hi = PORT_LOW, _ephemeral_low()
    if hi - lo < 2 * WORKER_SHARES:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            return s.getsockname()[1]
    lo, hi = _worker_share(lo, hi)
    if _next_port is None or not lo <= _next_port < hi:
        _next_port = lo + (os.getpid() * 37 + int(time.time() * 1000)) % (hi - lo)
    for i in range(hi - lo):
        port = lo + (_next_port - lo + i) % (hi - lo)
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _next_port = lo + (port + 1 - lo) % (hi - lo)
        return port
    raise RuntimeError(f"no free TCP port on {host} between {lo} and {hi}")


#: The lowest port :func:`free_port` returns (display ports from
#: :func:`free_display` end at 5900 + 5000).
PORT_LOW = 20000

#: Where the next :func:`free_port` of this process starts looking.
_next_port: int | None = None


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default 32768)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: Parallel trial workers (``-j``) get this many separate shares of the
#: display numbers.
WORKER_SHARES = 8


def _trial_worker() -> int | None:
    """The number of this trial worker (``-j`` runs each in ``_trial_temp/N``), or None."""
    cwd = os.getcwd()
    name, parent = os.path.basename(cwd), os.path.basename(os.path.dirname(cwd))
    if name.isdigit() and parent.startswith("_trial_temp"):
        return int(name)
    return None


def _worker_share(lo: int, hi: int) -> tuple[int, int]:
    """This parallel trial worker's share of the range ``[lo, hi)`` (all of it
    outside ``-j`` or when the range is too small to share)."""
    worker = _trial_worker()
    if worker is not None and hi - lo >= 2 * WORKER_SHARES:
        share = (hi - lo) // WORKER_SHARES
        lo = lo + (worker % WORKER_SHARES) * share
        hi = lo + share
    return lo, hi


def free_display(host: str = "127.0.0.1", lo: int = 100, hi: int = 5000) -> int:
    """A display number N whose port 5900+N is free on ``host``.

    Parallel trial workers take numbers from separate shares of the range
    (two of them checking the same free number at the same moment made
    one server fail with "Address already in use"); within a share the
    start is spread by process id and time.
    """
    lo, hi = _worker_share(lo, hi)
    start = lo + (os.getpid() * 37 + int(time.time() * 1000)) % (hi - lo)
    for i in range(hi - lo):
        n = lo + (start - lo + i) % (hi - lo)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, 5900 + n))
            except OSError:
                continue
            return n
    raise RuntimeError("no free VNC display number")


def wait_for_port(host: str, port: int, timeout: float = 10.0,
                  proc: subprocess.Popen | None = None) -> bool:
    """Block until something accepts on ``host:port`` (or the process exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def qemu_vnc(args: list[str], timeout: float = 10.0):
    """Start QEMU 7.2 as a bare VNC server with ``args`` (``-object``/``-vnc`` ...).

    Returns ``(proc, started)`` where ``started`` says whether QEMU got as
    far as running (it keeps running until killed) or exited with an
    error (``proc.stderr`` holds the message).  The caller kills ``proc``.
    """
    qemu = require_tool(QEMU)
    proc = subprocess.Popen(
        [qemu, "-machine", "none", "-nodefaults", "-display", "none",
         "-monitor", "none", "-serial", "none", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=1.5)
    except subprocess.TimeoutExpired:
        # Running; on a loaded machine it may not listen yet: wait (without
        # connecting, which QEMU would count as a client) for its VNC ports.
        deadline = time.monotonic() + timeout
        ports = _vnc_ports(args)
        while ports and not all(map(_listening, ports)):
            if proc.poll() is not None:
                return proc, False
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return proc, True
    return proc, False


def _vnc_ports(args: list[str]) -> list[int]:
    """The TCP ports of ``-vnc host:N,...`` options (5900 + N)."""
    ports = []
    for option, value in zip(args, args[1:]):
        if option == "-vnc":
            address = value.split(",", 1)[0]
            if address.startswith(("unix:", "none")):
                continue
            display = address.rpartition(":")[2]
            if display.isdigit():
                ports.append(5900 + int(display))
    return ports


def _listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (from /proc/net/tcp*, no connection made)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            continue
    return False
