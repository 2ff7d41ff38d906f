"""A minimal monitor client: does a QMP greeting or an HMP banner answer, then quit.

Used to check that a server started with ``-qmp``/``-monitor``/``-mon``
really serves a monitor where it was asked to (QEMU 7.2 now, vncd once
it serves monitors).  A probe connects (UNIX, TCP, optionally TLS with a
client certificate, or a child's standard input and output), reads the
QMP greeting and negotiates capabilities, or reads the HMP banner up to
the prompt, and can send ``quit``.

Blocking stdlib sockets and ``ssl``; every read is bounded by the limits
below and every wait by :data:`IO_TIMEOUT`, so a silent or babbling
server ends the probe with :class:`MonitorProbeError`, never a hang.
"""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["MonitorProbe", "MonitorProbeError", "probe_monitor", "connect",
           "IO_TIMEOUT", "CONNECT_TIMEOUT", "MAX_REPLY"]

#: Seconds one read or handshake may take.  A monitor answers on loopback
#: in milliseconds; 10 s leaves room for a loaded 2-core machine.
IO_TIMEOUT = 10.0

#: Seconds to keep trying to connect while the server starts (QEMU 7.2
#: takes well under a second; a loaded machine several).
CONNECT_TIMEOUT = 20.0

#: Most bytes read for one greeting, reply or banner.  QEMU's pretty
#: greeting is under 300 bytes and its banner under 100; 64 KiB is plenty
#: and bounds what a babbling server can make the probe hold.
MAX_REPLY = 65536

HMP_PROMPT = b"(qemu) "


class MonitorProbeError(Exception):
    """The monitor did not answer as a QMP or HMP monitor should."""


@dataclass
class MonitorProbe:
    """Where a monitor should answer and how.

    ``where`` is ``unix:PATH``, ``tcp:PORT`` (on 127.0.0.1) or ``stdio``
    (the child's standard input and output); ``kind`` is ``qmp``,
    ``qmp-pretty``, ``hmp``, ``qmp-greeting`` (the greeting only, no
    command) or ``listen`` (only accepting a connection).

    Over TLS, QEMU 7.2 sends the greeting but never answers a command
    from an OpenSSL client such as Python's ``ssl`` (GnuTLS clients are
    answered), so a TLS probe of QEMU is a ``qmp-greeting`` one.
    """

    #: The kinds that end with a working command, so can ask the server to quit.
    CAN_QUIT = ("qmp", "qmp-pretty", "hmp")

    kind: str
    where: str
    #: TLS with this client certificate and key, trusting this CA file
    #: (a tuple of three paths), checked against the name ``localhost``.
    tls: tuple[str, str, str] | None = None


class _Channel:
    """Bytes both ways over a socket or a child's pipes, every read bounded in time."""

    def __init__(self, recv: Callable[[], bytes], send: Callable[[bytes], None],
                 close: Callable[[], None]) -> None:
        self.recv, self.send, self.close = recv, send, close

    def read_until(self, done: Callable[[bytes], bool]) -> bytes:
        data = b""
        while not done(data):
            chunk = self.recv()
            if not chunk:
                raise MonitorProbeError(f"connection closed after {data[:200]!r}")
            data += chunk
            if len(data) > MAX_REPLY:
                raise MonitorProbeError(f"more than {MAX_REPLY} bytes without an answer")
        return data


def _json_complete(data: bytes) -> bool:
    try:
        json.JSONDecoder().raw_decode(data.decode("utf-8", "replace").lstrip())
    except ValueError:
        return False
    return True


def _read_json(channel: _Channel) -> tuple[dict, bytes]:
    raw = channel.read_until(_json_complete)
    value, _ = json.JSONDecoder().raw_decode(raw.decode("utf-8").lstrip())
    if not isinstance(value, dict):
        raise MonitorProbeError(f"not a JSON object: {raw[:200]!r}")
    return value, raw


def _read_to_end(channel: _Channel) -> None:
    """Wait for the server to close the connection (a monitor that quits does).

    Closing first would make QEMU drop the queued ``quit`` with the
    connection.
    """
    total = 0
    try:
        while chunk := channel.recv():
            total += len(chunk)
            if total > MAX_REPLY:
                raise MonitorProbeError(f"more than {MAX_REPLY} bytes after quit")
    except ConnectionResetError:
        pass            # it exited with our reply unread: closed all the same


def connect(where: str, proc: subprocess.Popen | None = None,
            tls: tuple[str, str, str] | None = None) -> _Channel:
    """A channel to ``where``, retrying until it accepts (or ``proc`` exits)."""
    if where == "stdio":
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise ValueError("stdio needs a child with pipes")
        out, into = proc.stdout.fileno(), proc.stdin

        def recv() -> bytes:
            ready, _, _ = select.select([out], [], [], IO_TIMEOUT)
            if not ready:
                raise MonitorProbeError(f"nothing on standard output for {IO_TIMEOUT} s")
            return os.read(out, 4096)

        def send(data: bytes) -> None:
            into.write(data)
            into.flush()

        return _Channel(recv, send, lambda: None)
    if where.startswith("unix:"):
        family, address = socket.AF_UNIX, where[len("unix:"):]
    else:
        family, address = socket.AF_INET, ("127.0.0.1", int(where[len("tcp:"):]))
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        if proc is not None and proc.poll() is not None:
            raise MonitorProbeError(f"the server exited with status {proc.returncode}")
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(IO_TIMEOUT)
        try:
            sock.connect(address)
            break
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise MonitorProbeError(f"nothing accepts on {where}") from None
            time.sleep(0.05)
    if tls is not None:
        cert, key, ca = tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(ca)
        context.load_cert_chain(cert, key)
        try:
            sock = context.wrap_socket(sock, server_hostname="localhost")
        except (ssl.SSLError, OSError) as err:
            sock.close()
            raise MonitorProbeError(f"TLS handshake failed: {err}") from None
    return _Channel(lambda: sock.recv(4096), sock.sendall, sock.close)


def probe_monitor(probe: MonitorProbe, proc: subprocess.Popen | None = None, *,
                  quit: bool = False) -> str:
    """Check the monitor at ``probe.where`` answers as ``probe.kind``; returns what it said.

    QMP: the greeting (a ``QMP`` object with a version), capabilities
    negotiated (not for ``qmp-greeting``); ``qmp-pretty`` also needs the
    greeting spread over lines.
    HMP: the banner and the prompt.  ``quit`` then asks the server to exit
    and waits until it closes the connection.  Raises :class:`MonitorProbeError`.
    """
    try:
        channel = connect(probe.where, proc, probe.tls)
        try:
            if probe.kind == "listen":
                return "listening"
            if probe.kind == "hmp":
                text = channel.read_until(lambda d: d.endswith(HMP_PROMPT)).decode("utf-8")
                if "monitor - type 'help' for more information" not in text:
                    raise MonitorProbeError(f"no HMP banner: {text!r}")
                if quit:
                    channel.send(b"quit\n")
                    _read_to_end(channel)
                return text.splitlines()[0]
            greeting, raw = _read_json(channel)
            if "version" not in greeting.get("QMP", {}):
                raise MonitorProbeError(f"no QMP greeting: {raw!r}")
            if probe.kind == "qmp-greeting":
                return "QMP greeting"
            if (probe.kind == "qmp-pretty") != (b"\n " in raw.strip()):
                raise MonitorProbeError(f"pretty-printing is not as asked: {raw!r}")
            channel.send(b'{"execute": "qmp_capabilities"}\n')
            reply, raw = _read_json(channel)
            if reply != {"return": {}}:
                raise MonitorProbeError(f"qmp_capabilities answered {raw!r}")
            if quit:
                channel.send(b'{"execute": "quit"}\n')
                _read_to_end(channel)
            return "QMP " + json.dumps(greeting["QMP"]["version"]["qemu"], sort_keys=True)
        finally:
            channel.close()
    except (OSError, UnicodeDecodeError) as err:
        raise MonitorProbeError(f"{type(err).__name__}: {err}") from None
