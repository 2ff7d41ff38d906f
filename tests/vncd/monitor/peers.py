"""Real peers for the monitor's tests: QEMU 7.2 and vncd as processes, and their clients.

What the ``test_monitor_*`` modules share:

- :func:`start_qemu` / :func:`start_vncd` run QEMU 7.2 (``-machine none
  -nodefaults -display none``) or ``python -m vncd`` with the same
  ``-object``/``-vnc`` options plus a QMP monitor on a UNIX socket, and
  return a :class:`Server` once that socket accepts;
- :class:`RawQMP` speaks QMP over a blocking socket and keeps the exact
  bytes of every message (line ends, pretty layout), with events kept
  apart;
- :func:`with_qmp` runs a coroutine with a connected ``qemu.qmp``
  ``QMPClient`` (the real QMP client library), optionally over TLS;
- :class:`RawVNC` is a minimal blocking RFB 3.8 client (None, VNC
  password, VeNCrypt x509none/x509vnc over the stdlib's ``ssl``) that
  stays connected, so the servers have clients to list and to keep.

Every socket is on loopback or a UNIX socket in a test directory, every
blocking call has a timeout, and every process is stopped by a cleanup
registered on the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from tests.tools import QEMU, ROOT, free_display, free_port, require_tool
from tests.vncd.realclients import Proc, require_vncd

__all__ = ["Server", "start_qemu", "start_vncd", "start_pair", "RawQMP", "with_qmp",
           "RawVNC", "VNCRefused", "short_dir", "qmp_tls_context"]

#: Seconds a server gets to open its monitor socket (vncd imports Twisted,
#: cryptography and numpy: about a second here, more on a busy CI box).
START_TIMEOUT = 30.0

#: Seconds any single read from a peer may take.
IO_TIMEOUT = 10.0

#: Bytes of one QMP message the raw client accepts (QEMU's query-commands
#: reply is about 10 KiB; anything near this is a runaway peer).
MAX_MESSAGE = 4 << 20


def short_dir(test) -> str:
    """A fresh directory with a short path (UNIX socket paths stay under 108 bytes)."""
    import shutil
    path = tempfile.mkdtemp(prefix="vncd-mt-")
    test.addCleanup(shutil.rmtree, path, True)
    return path


@dataclass
class Server:
    """A running QEMU or vncd with a QMP socket and (usually) one VNC display."""

    kind: str
    proc: Proc
    qmp_path: str
    display: int | None
    args: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return 5900 + self.display

    def output(self) -> str:
        return self.proc.output()

    def qmp(self, **kw) -> "RawQMP":
        """A raw QMP connection, capabilities negotiated."""
        client = RawQMP(self.qmp_path, **kw)
        # QEMU 7.2 was seen once (a loaded full run, right after start-up
        # and its readiness probe) answering qmp_capabilities with a second
        # greeting first; not reproduced alone.  Tolerated for QEMU only:
        # vncd must greet exactly once.
        client.negotiate(stale_greetings=self.kind == "qemu")
        return client


def _wait_for_unix(path: str, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.describe()}")
        if os.path.exists(path):
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(path)
                    return
                except OSError:
                    pass
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{proc.name} opened no monitor at {path} in {timeout} s:"
                       f" {proc.describe()}")


def _start(test, kind: str, argv: list[str], qmp_path: str, display: int | None,
           args: list[str]) -> Server:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = Proc(argv, name=kind, env=env, cwd=ROOT)
    test.addCleanup(proc.stop)
    try:
        _wait_for_unix(qmp_path, proc, START_TIMEOUT)
    except RuntimeError as e:
        test.fail(f"{kind} did not start: {e}")
    if display is not None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", 5900 + display), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    test.fail(f"{kind} does not listen on display {display}: {proc.describe()}")
                time.sleep(0.05)
        _wait_until_no_clients(qmp_path)
    return Server(kind, proc, qmp_path, display, args)


def _wait_until_no_clients(qmp_path: str) -> None:
    """Let the server forget the probe of its VNC port (QEMU lists it for a moment)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            client = RawQMP(qmp_path)
            break
        except (ConnectionResetError, BrokenPipeError):
            # QEMU's monitor chardev (one client at a time) can drop a
            # connection made while it is still closing the readiness probe's.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        client.negotiate()
        deadline = time.monotonic() + START_TIMEOUT
        while client.execute("query-vnc")["return"].get("clients"):
            if time.monotonic() > deadline:
                raise AssertionError("the probe of the VNC port is still listed")
            time.sleep(0.05)
    finally:
        client.close()


def _vnc_args(vnc: str | None, display: int | None) -> list[str]:
    """``-vnc`` with ``{display}`` and ``{wsport}`` (a free TCP port) filled in."""
    if vnc is None:
        return []
    return ["-vnc", vnc.format(display=display, wsport=free_port())]


def start_qemu(test, base: str, *, vnc: str | None = "127.0.0.1:{display}",
               objects: tuple[str, ...] = (), extra: tuple[str, ...] = (),
               qmp: str = "-qmp") -> Server:
    """QEMU 7.2 with ``objects``, ``vnc`` (``{display}`` filled in) and a QMP socket."""
    exe = require_tool(QEMU)

    def command(display, path, args):
        return [exe, "-machine", "none", "-nodefaults", "-display", "none", "-serial", "none",
                *args, qmp, f"unix:{path},server=on,wait=off"]
    return _start_on_free_display(test, "qemu", base, vnc, objects, extra, command)


def start_vncd(test, base: str, *, vnc: str | None = "127.0.0.1:{display}",
               objects: tuple[str, ...] = (), extra: tuple[str, ...] = (),
               qmp: str = "-qmp") -> Server:
    """vncd with the same options as :func:`start_qemu` would get."""
    require_vncd()

    def command(display, path, args):
        return [sys.executable, "-m", "vncd", *args, qmp, f"unix:{path},server=on,wait=off"]
    return _start_on_free_display(test, "vncd", base, vnc, objects, extra, command)


def _start_on_free_display(test, kind, base, vnc, objects, extra, command) -> Server:
    """Start ``kind`` on a free display; again on another one if a parallel
    trial worker took the same number between the check and the start."""
    for attempt in range(3):
        display = free_display() if vnc is not None else None
        path = os.path.join(base, f"{kind}{display}.sock")
        args = [a for o in objects for a in ("-object", o)] + _vnc_args(vnc, display) + list(extra)
        try:
            return _start(test, kind, command(display, path, args), path, display, args)
        except test.failureException as e:
            if attempt == 2 or "Address already in use" not in str(e):
                raise
    raise AssertionError("unreachable")


def start_pair(test, base: str, **kw) -> tuple[Server, Server]:
    """QEMU and vncd with the same options."""
    return start_qemu(test, base, **kw), start_vncd(test, base, **kw)


# -- QMP, raw -----------------------------------------------------------------

class RawQMP:
    """A blocking QMP client that keeps the bytes (see the module docstring)."""

    def __init__(self, path: str | None = None, *, sock: socket.socket | None = None,
                 timeout: float = IO_TIMEOUT) -> None:
        if sock is None:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout)
            sock.connect(path)
        else:
            sock.settimeout(timeout)
        self.sock = sock
        self._buf = b""
        self._decoder = json.JSONDecoder()
        #: Events received, in order, as ``(raw bytes, message)``.
        self.events: list[tuple[bytes, dict]] = []
        self.greeting_raw, self.greeting = self.read()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> tuple[bytes, Any]:
        """The next message: its exact bytes (line end included) and its value."""
        while True:
            found = self._message()
            if found is not None:
                return found
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"QMP peer closed; unread: {self._buf[:200]!r}")
            self._buf += chunk
            if len(self._buf) > MAX_MESSAGE:
                raise ValueError("QMP message too long")

    def _message(self) -> tuple[bytes, Any] | None:
        text = self._buf.decode("utf-8", "replace")
        start = len(text) - len(text.lstrip())
        if start == len(text):
            return None
        try:
            value, end = self._decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            return None
        # Wait for the line end that follows the message.
        rest = text[end:]
        if "\n" not in rest:
            return None
        end += rest.index("\n") + 1
        raw = text[:end].encode("utf-8")
        self._buf = self._buf[len(raw):]
        return raw, value

    def reply(self) -> tuple[bytes, Any]:
        """The next message that is not an event."""
        while True:
            raw, value = self.read()
            if isinstance(value, dict) and "event" in value:
                self.events.append((raw, value))
                continue
            return raw, value

    def execute_raw(self, command: str, arguments: dict | None = None,
                    **envelope) -> tuple[bytes, Any]:
        message = {"execute": command, **envelope}
        if arguments is not None:
            message["arguments"] = arguments
        self.send(json.dumps(message).encode() + b"\n")
        return self.reply()

    def execute(self, command: str, arguments: dict | None = None) -> Any:
        """The reply of ``command`` (``{"return": ...}`` or ``{"error": ...}``)."""
        return self.execute_raw(command, arguments)[1]

    def negotiate(self, stale_greetings: bool = False) -> None:
        reply = self.execute("qmp_capabilities")
        while stale_greetings and isinstance(reply, dict) and "QMP" in reply:
            reply = self.reply()[1]
        if reply != {"return": {}}:
            raise AssertionError(f"qmp_capabilities: {reply}")

    def wait_event(self, name: str, timeout: float = IO_TIMEOUT) -> dict:
        """The next event called ``name`` (earlier events stay in :attr:`events`)."""
        for _, event in self.events:
            if event["event"] == name:
                self.events.remove((_, event))
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw, value = self.read()
            if isinstance(value, dict) and value.get("event") == name:
                return value
            self.events.append((raw, value))
        raise AssertionError(f"no {name} event within {timeout} s")


def qmp_tls_context(ca: str, cert: str | None = None, key: str | None = None,
                    hostname: bool = False) -> ssl.SSLContext:
    """A client TLS context trusting ``ca`` and presenting ``cert``/``key``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = hostname
    context.load_verify_locations(ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def with_qmp(address: str | tuple[str, int], body: Callable[[Any], Awaitable[Any]], *,
             ssl_context: ssl.SSLContext | None = None, timeout: float = 30.0) -> Any:
    """Run ``body(client)`` with a connected ``qemu.qmp.QMPClient``; its result."""
    from qemu.qmp import QMPClient

    def quiet(loop, context):
        # Aborting a TLS transport under qemu.qmp (see below) makes asyncio
        # report that the stream protocol is gone; anything else is shown.
        if "_writing() failed" not in context.get("message", ""):
            loop.default_exception_handler(context)

    async def main():
        if ssl_context is not None:
            asyncio.get_running_loop().set_exception_handler(quiet)
        client = QMPClient("vncd-test")
        await client.connect(address, ssl=ssl_context)
        try:
            return await body(client)
        finally:
            if ssl_context is not None:
                # qemu.qmp 0.0.6 never returns from disconnect() over TLS on
                # Python 3.11: its flush() sets the write buffer limits to
                # (0, 0) and drains, and asyncio's SSL transport then pauses
                # writing at 0 >= 0 with nothing left to resume it (a client
                # side bug, whatever the server).  Drop the transport first.
                writer = getattr(client, "_writer", None)
                if writer is not None:
                    writer.transport.abort()
                try:
                    await client.disconnect()
                except (ConnectionError, EOFError):
                    pass
            else:
                await client.disconnect()

    return asyncio.run(asyncio.wait_for(main(), timeout))


# -- VNC, raw -----------------------------------------------------------------

class VNCRefused(Exception):
    """The server refused the client; ``reason`` is what it said (or the TLS error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: VeNCrypt subtypes the raw client speaks.
X509NONE = 260
X509VNC = 261


class RawVNC:
    """A blocking RFB 3.8 client that connects and stays connected.

    ``password``: answer VNC authentication.  ``source``: another loopback
    address to connect from (127.0.0.2 ...: vncd's log summarises repeats
    per address, so a fresh address gets its lines written in full).
    ``tls``: an ``ssl.SSLContext`` for VeNCrypt x509 (x509vnc when a
    password is given, else x509none).
    Raises :class:`VNCRefused` with the server's reason.
    """

    def __init__(self, port: int, *, password: str | None = None,
                 tls: ssl.SSLContext | None = None, shared: bool = True,
                 timeout: float = IO_TIMEOUT, source: str | None = None) -> None:
        self.sock: socket.socket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout,
            source_address=(source, 0) if source is not None else None)
        try:
            self._handshake(password, tls, shared)
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise VNCRefused(f"connection closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    def _reason(self) -> str:
        (length,) = struct.unpack(">I", self._exact(4))
        return self._exact(min(length, 4096)).decode("utf-8", "replace")

    def _result(self) -> None:
        (status,) = struct.unpack(">I", self._exact(4))
        if status != 0:
            raise VNCRefused(self._reason())

    def _handshake(self, password, tls, shared) -> None:
        version = self._exact(12)
        if not version.startswith(b"RFB 003."):
            raise VNCRefused(f"not RFB: {version!r}")
        self.sock.sendall(b"RFB 003.008\n")
        (count,) = self._exact(1)
        if count == 0:
            raise VNCRefused(self._reason())
        types = list(self._exact(count))
        self.security_types = types
        if tls is not None:
            self._vencrypt(types, tls, password)
        elif password is not None:
            if 2 not in types:
                raise VNCRefused(f"no VNC authentication among {types}")
            self.sock.sendall(b"\x02")
            self._vnc_auth(password)
        else:
            if 1 not in types:
                raise VNCRefused(f"no None security among {types}")
            self.sock.sendall(b"\x01")
            self._result()
        self.sock.sendall(bytes([1 if shared else 0]))
        header = self._exact(24)
        self.width, self.height = struct.unpack(">HH", header[:4])
        (name_length,) = struct.unpack(">I", header[20:24])
        self.name = self._exact(name_length).decode("utf-8", "replace")

    def _vnc_auth(self, password: str) -> None:
        from vncd.rfb.vncauth import challenge_response
        challenge = self._exact(16)
        self.sock.sendall(challenge_response(password.encode(), challenge))
        self._result()

    def _vencrypt(self, types, context: ssl.SSLContext, password) -> None:
        if 19 not in types:
            raise VNCRefused(f"no VeNCrypt among {types}")
        self.sock.sendall(b"\x13")
        self._exact(2)
        self.sock.sendall(b"\x00\x02")
        if self._exact(1) != b"\x00":
            raise VNCRefused("VeNCrypt 0.2 refused")
        (count,) = self._exact(1)
        subtypes = struct.unpack(f">{count}I", self._exact(4 * count))
        wanted = X509VNC if password is not None else X509NONE
        if wanted not in subtypes:
            raise VNCRefused(f"no VeNCrypt subtype {wanted} among {subtypes}")
        self.sock.sendall(struct.pack(">I", wanted))
        if self._exact(1) != b"\x01":
            raise VNCRefused("VeNCrypt subtype refused")
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        except (ssl.SSLError, OSError) as e:
            raise VNCRefused(f"TLS: {e}") from None
        self.tls_version = self.sock.version()
        if password is not None:
            self._vnc_auth(password)
        else:
            self._result()

    def request_update(self, incremental: bool = False) -> None:
        """FramebufferUpdateRequest for the whole screen."""
        self.sock.sendall(struct.pack(">BBHHHH", 3, 1 if incremental else 0, 0, 0,
                                      self.width, self.height))

    def receive_some(self, timeout: float = IO_TIMEOUT) -> int:
        """Bytes received from the server within ``timeout`` (at least one, or 0 at EOF)."""
        self.sock.settimeout(timeout)
        try:
            return len(self.sock.recv(1 << 20))
        except ssl.SSLError as e:
            raise VNCRefused(f"TLS: {e}") from None

    def alive(self) -> bool:
        """True when the server keeps the connection open (it answers an update request)."""
        try:
            self.request_update(incremental=False)
            return self.receive_some() > 0
        except (OSError, VNCRefused):
            return False
