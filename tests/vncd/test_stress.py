"""A bounded stress test: a real vncd process under garbage, stalling and
vanishing clients keeps serving a legitimate TLS client, stays alive and
keeps its memory bounded.

Bounded in count (:data:`HOSTILE`) and time (every socket has a timeout);
the hostile clients come from other loopback addresses than the legitimate
one, so the authentication-failure throttle (tested on its own elsewhere)
does not decide the outcome.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.tools import ROOT
from tests.vncd import realclients

#: Hostile connections per kind (garbage at each stage, stalling, vanishing).
HOSTILE = 12

#: Seconds any single socket operation may take.
SOCKET_TIMEOUT = 10.0

#: Resident memory the server may reach under this load (it idles at ~90 MiB).
MAX_RSS_KIB = 400 * 1024

#: Seconds the legitimate capture may take while the server is under load.
CAPTURE_TIMEOUT = 60.0


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _hostile(kind: str, port: int, source: str, rng: random.Random) -> socket.socket:
    """Open one hostile connection of ``kind``; returns the socket (left open)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(SOCKET_TIMEOUT)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    if kind == "garbage-version":
        s.recv(12)
        s.sendall(rng.randbytes(rng.randint(12, 4096)))   # a whole (bad) version at least
    elif kind == "garbage-after-version":
        s.recv(12)
        s.sendall(b"RFB 003.008\n")
        s.recv(64)
        s.sendall(rng.randbytes(rng.randint(1, 4096)))
    elif kind == "garbage-tls":
        s.recv(12)
        s.sendall(b"RFB 003.008\n")
        s.recv(2)
        s.sendall(b"\x13")           # VeNCrypt
        s.recv(2)
        s.sendall(b"\x00\x02")
        s.recv(6)
        s.sendall((260).to_bytes(4, "big"))   # X509None
        s.recv(1)
        # A complete TLS record of handshake type holding garbage (an
        # incomplete record would rightly be waited for, until the timeout).
        body = rng.randbytes(rng.randint(1, 2048))
        s.sendall(b"\x16\x03\x01" + len(body).to_bytes(2, "big") + body)
    elif kind == "huge-claims":
        s.recv(12)
        s.sendall(b"RFB 003.008\n")
        s.recv(2)
        s.sendall(b"\x13\x00\x02" + (0xFFFFFFFF).to_bytes(4, "big") * 4)
    elif kind == "stall":
        pass
    elif kind == "vanish":
        s.close()
    else:
        raise ValueError(kind)
    return s


class StressTests(SynchronousTestCase):
    def test_server_survives_hostile_clients(self):
        """Garbage at every handshake stage, stalled and vanished connections never stop
        vncd serving a legitimate x509 client exactly, nor grow its memory without bound."""
        base = os.path.abspath(self.mktemp())
        server = realclients.start_x509_vncd(self, base, "stress")
        proc, port, client_dir, picture = (server.proc, server.port, server.client_dir,
                                           server.picture)

        rng = random.Random(20261127)
        kinds = ("garbage-version", "garbage-after-version", "garbage-tls", "huge-claims",
                 "stall", "vanish")
        sockets: list[tuple[str, socket.socket]] = []
        self.addCleanup(lambda: [s.close() for _, s in sockets])
        for i in range(HOSTILE):
            for j, kind in enumerate(kinds):
                source = f"127.0.{10 + j}.{1 + i}"
                try:
                    sockets.append((kind, _hostile(kind, port, source, rng)))
                except OSError:
                    # The server may close on us mid-script: that is its job.
                    pass

        out = os.path.join(base, "capture.png")
        started = time.monotonic()
        capture = subprocess.run(
            [sys.executable, "-m", "vncd.capture", "--tls-creds-dir", client_dir,
             "--hostname", "localhost", f"127.0.0.1::{port}", out],
            cwd=ROOT, capture_output=True, text=True, timeout=CAPTURE_TIMEOUT)
        self.assertEqual(capture.returncode, 0,
                         f"capture failed after {time.monotonic() - started:.1f} s: "
                         f"{capture.stderr}")
        realclients.assert_same_pixels(self, realclients.read_png(out), picture,
                                       "capture under stress")

        # Every connection that sent garbage has been closed by the server.
        still_open = []
        for kind, s in sockets:
            if not kind.startswith(("garbage", "huge")) or s.fileno() < 0:
                continue
            deadline = time.monotonic() + SOCKET_TIMEOUT
            try:
                s.settimeout(SOCKET_TIMEOUT)
                while s.recv(65536) and time.monotonic() < deadline:
                    pass
                else:
                    if time.monotonic() >= deadline:
                        still_open.append(kind)
            except socket.timeout:
                still_open.append(kind)
            except OSError:
                pass   # reset by the server: closed
        self.assertEqual(still_open, [])
        self.assertIsNone(proc.poll(), "vncd exited under stress")
        self.assertLess(_rss_kib(proc.popen.pid), MAX_RSS_KIB)
        log = proc.output()
        self.assertIn("connected (VeNCrypt X509None", log)
        self.assertIn("127.0.10.1:", log)   # the hostile clients were logged by address
