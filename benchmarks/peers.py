"""What the end-to-end benchmarks share: server processes and a bare RFB client.

:mod:`benchmarks.connections` and :mod:`benchmarks.throughput` run vncd and
its peers (QEMU 7.2, x11vnc) as child processes on loopback and talk to
them over real sockets.  This module starts and stops those children
(every one is stopped when the benchmark ends, also on Ctrl-C, SIGTERM
or an error), reads their CPU time from ``/proc/PID/stat``, and holds a
minimal blocking RFB 3.8 client handshake (None, VNC authentication and
VeNCrypt with a pre-built stdlib :class:`ssl.SSLContext`) that costs the
client as little as it can.

It knows how to start the programs and speak the handshake, nothing of
vncd's internals: vncd is driven through its command line or
:mod:`vncd.api` only, and nothing here is imported by vncd or the tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from tests.vncd.qemuprobe import vnc_auth_response

__all__ = [
    "ROOT", "VNC_BASE_PORT", "Child", "Children", "RFBError", "ServerInit", "tool",
    "install_hint", "free_display", "cpu_seconds", "qemu_argv", "vncd_argv",
    "recv_exact", "handshake", "x509_client_context", "anon_client_context",
    "stop_on_sigterm", "run_script", "load_average",
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: VNC display N listens on TCP port 5900 + N (QEMU and vncd alike).
VNC_BASE_PORT = 5900

#: Seconds a server gets to start listening: vncd imports Twisted, numpy and
#: cryptography (a second or two on a busy 2-core machine); a start that
#: takes longer than this is a failure worth reporting, not waiting for.
START_TIMEOUT = 30.0

#: Seconds between SIGTERM and SIGKILL when a child is stopped.
STOP_GRACE = 5.0

#: Seconds any single socket operation of the client may take.  Loopback
#: servers answer in milliseconds; a server that is silent this long is
#: counted as a failure instead of stalling a benchmark worker.
IO_TIMEOUT = 10.0

#: Longest security-failure reason read from a server (QEMU's are one
#: sentence); bounds what a misbehaving server makes the client allocate.
MAX_REASON_LENGTH = 4096

#: Longest desktop name read from ServerInit.
MAX_NAME_LENGTH = 65536

#: Most VeNCrypt subtypes a server may list (QEMU lists one, TigerVNC nine).
MAX_SUBTYPES = 255

#: Bytes of a child's log kept for error messages; the rest is noise.
MAX_LOG_TAIL = 4000

#: Debian package of each program the benchmarks run, for the install hint.
PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "x11vnc": "x11vnc",
    "Xvfb": "xvfb",
}

NONE, VNC_AUTH, VENCRYPT = 1, 2, 19
TLS_NONE, TLS_VNC, X509_NONE, X509_VNC = 257, 258, 260, 261
_TLS_SUBTYPES = {TLS_NONE: False, TLS_VNC: False, X509_NONE: True, X509_VNC: True}


class RFBError(Exception):
    """The server ended or broke the handshake; the message says where."""


def tool(name: str) -> str | None:
    """The path of program ``name``, or None when it is not installed."""
    return shutil.which(name)


def install_hint(name: str) -> str:
    return f"{name} is not installed: apt-get install -y {PACKAGES.get(name, name)}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for the report header."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_display(host: str = "127.0.0.1", lo: int = 200, hi: int = 4000) -> int:
    """A display number whose port 5900+N was free on ``host`` a moment ago.

    Starts at a point derived from the process id so several benchmark runs
    (and test runs by other developers) rarely try the same numbers.
    """
    start = lo + (os.getpid() * 53) % (hi - lo)
    for i in range(hi - lo):
        n = lo + (start - lo + i) % (hi - lo)
        with socket.socket() as s:
            try:
                s.bind((host, VNC_BASE_PORT + n))
            except OSError:
                continue
            return n
    raise RuntimeError("no free VNC display number")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Child:
    """A child process in its own session, its output in a temporary file.

    It runs in ``root`` (default: this checkout) with ``root`` first on
    its ``PYTHONPATH``, so ``python -m vncd`` there is that tree's vncd.
    """

    def __init__(self, argv: list[str], *, name: str, pass_fds: tuple[int, ...] = (),
                 env: dict | None = None, root: str = ROOT) -> None:
        self.name = name
        self.argv = argv
        self.log = tempfile.TemporaryFile()
        child_env = dict(os.environ if env is None else env)
        child_env["PYTHONPATH"] = root + os.pathsep + child_env.get("PYTHONPATH", "")
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            cwd=root, env=child_env, pass_fds=pass_fds, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def log_text(self) -> str:
        """Everything the child printed so far."""
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace")
        self.log.seek(0, os.SEEK_END)
        return text

    def log_lines(self) -> int:
        self.log.flush()
        self.log.seek(0)
        count = sum(1 for _ in self.log)
        self.log.seek(0, os.SEEK_END)
        return count

    def tail(self) -> str:
        self.log.flush()
        size = os.fstat(self.log.fileno()).st_size
        self.log.seek(max(0, size - MAX_LOG_TAIL))
        text = self.log.read().decode("utf-8", "replace")
        self.log.seek(0, os.SEEK_END)
        return text

    def wait_for_port(self, port: int, host: str = "127.0.0.1",
                      timeout: float = START_TIMEOUT) -> None:
        """Return once ``host:port`` accepts; raise if the child exits or is too slow."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise RuntimeError(f"{self.name} exited with status {self.popen.returncode}:"
                                   f"\n{self.tail()}")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not listen on {host}:{port} "
                                       f"within {timeout:.0f} s:\n{self.tail()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM the child's process group, SIGKILL after :data:`STOP_GRACE`."""
        if self.running():
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait()
        self.log.close()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass


class Children:
    """Every child a benchmark started; leaving the ``with`` block stops them all."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def start(self, argv: list[str], *, name: str, pass_fds: tuple[int, ...] = (),
              env: dict | None = None, root: str = ROOT) -> Child:
        child = Child(argv, name=name, pass_fds=pass_fds, env=env, root=root)
        self._children.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        self._children.remove(child)

    def __enter__(self) -> "Children":
        return self

    def __exit__(self, *exc) -> None:
        while self._children:
            self._children.pop().stop()


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so ``finally`` blocks stop the children."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupt)


def run_script(main) -> None:
    """Run a benchmark's ``main``; on Ctrl-C or SIGTERM say so briefly and exit 130.

    By the time the interrupt reaches here, the ``with Children()`` block
    inside ``main`` has stopped every child.
    """
    try:
        main()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; every child process was stopped\n")
        sys.exit(130)


def qemu_argv(args: list[str]) -> list[str]:
    """QEMU 7.2 as a bare VNC server: no machine, no devices, no monitor."""
    return ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
            "-monitor", "none", "-serial", "none", *args]


def vncd_argv(args: list[str]) -> list[str]:
    """The ``vncd`` command from this checkout."""
    return [sys.executable, "-m", "vncd", *args]


# -- a minimal RFB 3.8 client handshake --------------------------------------

@dataclass(frozen=True)
class ServerInit:
    width: int
    height: int
    #: The 16-byte PIXEL_FORMAT as the server sent it.
    pixel_format: bytes
    name: str

    @property
    def bytes_per_pixel(self) -> int:
        return max(1, self.pixel_format[0] // 8)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from ``sock``; :class:`RFBError` if it closes first."""
    chunks = []
    want = n
    while want:
        chunk = sock.recv(want)
        if not chunk:
            raise RFBError(f"server closed the connection ({n - want} of {n} bytes read)")
        chunks.append(chunk)
        want -= len(chunk)
    return b"".join(chunks)


def _u32(sock: socket.socket) -> int:
    return struct.unpack(">I", recv_exact(sock, 4))[0]


def _reason(sock: socket.socket) -> str:
    n = _u32(sock)
    if n > MAX_REASON_LENGTH:
        raise RFBError(f"reason of {n} bytes is longer than {MAX_REASON_LENGTH}")
    return recv_exact(sock, n).decode("utf-8", "replace")


def x509_client_context(ca: str, cert: str | None = None,
                        key: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server against ``ca`` and presents
    ``cert``/``key`` when given.  Built once per worker, used for every handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def anon_client_context() -> ssl.SSLContext:
    """Anonymous-DH TLS 1.2, the only kind of TLS a ``tls-creds-anon`` server speaks."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("aNULL:!eNULL:@SECLEVEL=0")
    return ctx


def handshake(sock: socket.socket, *, password: str | None = None,
              tls: ssl.SSLContext | None = None, host: str = "127.0.0.1",
              shared: bool = True) -> tuple[socket.socket, ServerInit]:
    """Run an RFB 3.8 handshake up to ServerInit on a connected socket.

    Picks VeNCrypt when offered (``tls`` must then be given; the server's
    first subtype is used), else VNC authentication when ``password`` is
    given, else None.  Returns the socket to go on with (TLS-wrapped for
    VeNCrypt) and the ServerInit.
    """
    version = recv_exact(sock, 12)
    if not version.startswith(b"RFB 003."):
        raise RFBError(f"not an RFB 3.x server: {version!r}")
    sock.sendall(b"RFB 003.008\n")
    count = recv_exact(sock, 1)[0]
    if count == 0:
        raise RFBError(f"refused: {_reason(sock)}")
    types = recv_exact(sock, count)
    if VENCRYPT in types and tls is not None:
        sock.sendall(bytes([VENCRYPT]))
        sock = _vencrypt(sock, password, tls, host)
    elif VNC_AUTH in types and password is not None:
        sock.sendall(bytes([VNC_AUTH]))
        sock.sendall(vnc_auth_response(password, recv_exact(sock, 16)))
    elif NONE in types:
        sock.sendall(bytes([NONE]))
    else:
        raise RFBError(f"no security type this client can use among {list(types)}")
    status = _u32(sock)
    if status != 0:
        raise RFBError(f"security failed: {_reason(sock)}")
    sock.sendall(b"\x01" if shared else b"\x00")
    header = recv_exact(sock, 24)
    width, height = struct.unpack(">HH", header[:4])
    name_length = struct.unpack(">I", header[20:24])[0]
    if name_length > MAX_NAME_LENGTH:
        raise RFBError(f"desktop name of {name_length} bytes")
    name = recv_exact(sock, name_length).decode("utf-8", "replace")
    return sock, ServerInit(width, height, header[4:20], name)


def _vencrypt(sock: socket.socket, password: str | None, tls: ssl.SSLContext,
              host: str) -> socket.socket:
    if recv_exact(sock, 2) != b"\x00\x02":
        raise RFBError("not VeNCrypt 0.2")
    sock.sendall(b"\x00\x02")
    if recv_exact(sock, 1) != b"\x00":
        raise RFBError("VeNCrypt version refused")
    count = recv_exact(sock, 1)[0]
    if not 0 < count <= MAX_SUBTYPES:
        raise RFBError(f"{count} VeNCrypt subtypes")
    subtypes = struct.unpack(f">{count}I", recv_exact(sock, 4 * count))
    choice = subtypes[0]
    if choice not in _TLS_SUBTYPES:
        raise RFBError(f"VeNCrypt subtype {choice} is not one this client speaks")
    sock.sendall(struct.pack(">I", choice))
    if recv_exact(sock, 1) != b"\x01":
        raise RFBError(f"VeNCrypt subtype {choice} refused")
    server_hostname = host if _TLS_SUBTYPES[choice] and tls.check_hostname else None
    sock = tls.wrap_socket(sock, server_hostname=server_hostname)
    if choice in (TLS_VNC, X509_VNC):
        if password is None:
            raise RFBError("the server asks for a VNC password inside TLS")
        sock.sendall(vnc_auth_response(password, recv_exact(sock, 16)))
    return sock
