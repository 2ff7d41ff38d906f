"""A real vncd process under a connection flood and a password brute force (issue 8).

* One address (127.0.0.2, loopback too on Linux) holds stalled handshakes
  and keeps opening and resetting connections while a legitimate x509
  client from 127.0.0.1 takes a capture: the client completes, and the
  flooding address never holds more than its share of handshakes.
* A few hundred wrong passwords from one address: the log grows by a
  handful of lines, and the summary lines account for every attempt.

Bounded in count (:data:`STALLED`, :data:`MAX_FLOOD`, :data:`ATTEMPTS`)
and time (every socket has a timeout; the flood stops when the capture
ends).
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.tools import ROOT, free_display
from tests.vncd import realclients
from vncd.rfb import limits as L

#: Where the flood and the legitimate client come from.
FLOOD_ADDRESS = "127.0.0.2"
CLIENT_ADDRESS = "127.0.0.1"

#: Stalled connections the flooding address opens first (QEMU's rule lets
#: 32 of them push out every other handshake).
STALLED = 4 * L.MAX_HANDSHAKES_PER_SOURCE

#: Connections per second the flood opens while the capture runs (the
#: capture's process takes a second or two to start, so the flood is paced
#: to last), and the most it opens in all.
FLOOD_RATE = 2000
MAX_FLOOD = FLOOD_RATE * 60

#: Flood connections kept open at once (each is reset when this many newer
#: ones exist): more than ``connections=32``, so under QEMU's rule every
#: new one pushes out the oldest handshake, whoever's it is.
FLOOD_HELD = STALLED

#: Wrong-password attempts of the brute force.
ATTEMPTS = 300

#: Seconds any socket operation may take.
SOCKET_TIMEOUT = 10.0

#: Seconds the legitimate capture may take while the flood runs.
CAPTURE_TIMEOUT = 60.0


def _flood(port: int, stop: threading.Event, made: list[int]) -> None:
    """Open connections from FLOOD_ADDRESS, never speaking, resetting the oldest."""
    linger = struct.pack("ii", 1, 0)
    held: list[socket.socket] = []
    start = time.monotonic()
    try:
        for n in range(MAX_FLOOD):
            if stop.is_set():
                break
            ahead = n / FLOOD_RATE - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.bind((FLOOD_ADDRESS, 0))
            s.connect_ex((CLIENT_ADDRESS, port))
            held.append(s)
            if len(held) > FLOOD_HELD:
                held.pop(0).close()
            made[0] = n + 1
    finally:
        for s in held:
            s.close()


def _greeted(s: socket.socket) -> bool:
    """Whether the server sent its RFB version on ``s`` (False: closed without a word)."""
    try:
        return s.recv(12).startswith(b"RFB ")
    except OSError:
        return False


def _wrong_password(port: int) -> str:
    """One VNC-authentication attempt with a wrong password; what the server said."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as s:
        s.recv(12)
        s.sendall(b"RFB 003.008\n")
        types = s.recv(64)
        if types[:1] == b"\x00":
            return "refused"
        s.sendall(b"\x02")
        s.recv(16)
        s.sendall(bytes(16))
        return "failed" if s.recv(64)[:4] == b"\x00\x00\x00\x01" else "accepted?"


class FloodTests(SynchronousTestCase):

    def test_flood_from_one_address_spares_others(self):
        """A legitimate x509 client from 127.0.0.1 completes a capture while 127.0.0.2
        holds stalled handshakes and keeps opening more; 127.0.0.2 gets at most its share."""
        base = os.path.abspath(self.mktemp())
        server = realclients.start_x509_vncd(self, base, "flood", verify_peer=True)
        proc, port, client_dir, picture = (server.proc, server.port, server.client_dir,
                                           server.picture)

        stalled = []
        self.addCleanup(lambda: [s.close() for s in stalled])
        for _ in range(STALLED):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(SOCKET_TIMEOUT)
            s.bind((FLOOD_ADDRESS, 0))
            s.connect((CLIENT_ADDRESS, port))
            stalled.append(s)
        greeted = sum(_greeted(s) for s in stalled)
        self.assertEqual(greeted, L.MAX_HANDSHAKES_PER_SOURCE)

        stop, made = threading.Event(), [0]
        flood = threading.Thread(target=_flood, args=(port, stop, made))
        flood.start()
        try:
            out = os.path.join(base, "capture.png")
            capture = subprocess.run(
                [sys.executable, "-m", "vncd.capture", "--tls-creds-dir", client_dir,
                 "--hostname", "localhost", f"{CLIENT_ADDRESS}::{port}", out],
                cwd=ROOT, capture_output=True, text=True, timeout=CAPTURE_TIMEOUT)
        finally:
            stop.set()
            flood.join(SOCKET_TIMEOUT)
        self.assertEqual(capture.returncode, 0, capture.stderr)
        self.assertGreater(made[0], 0, "the flood ran while the capture did")
        realclients.assert_same_pixels(self, realclients.read_png(out), picture,
                                       "capture under a flood")
        self.assertIsNone(proc.poll(), "vncd exited under the flood")
        log = proc.output()
        self.assertIn("connected (VeNCrypt X509None", log)
        self.assertIn(f"refused: more than {L.MAX_HANDSHAKES_PER_SOURCE} clients from"
                      f" {FLOOD_ADDRESS} are connecting", log)

    def test_brute_force_log_is_bounded(self):
        """300 wrong passwords from one address add a handful of log lines, and the
        summaries count every attempt."""
        realclients.require_vncd()
        display = free_display()
        port = 5900 + display
        proc = realclients.start_server(self, [
            sys.executable, "-m", "vncd", "-object", "secret,id=pw,data=zq9-Lk2w",
            "-vnc", f"127.0.0.1:{display},password-secret=pw"], [port],
            name="vncd under a brute force")
        answers = [_wrong_password(port) for _ in range(ATTEMPTS)]
        self.assertEqual(set(answers), {"failed", "refused"})
        self.assertEqual(proc.stop(), 0)
        lines = [line for line in proc.output().splitlines() if "127.0.0.1" in line]
        self.assertLessEqual(len(lines), 8, lines)
        full = [line for line in lines
                if re.search(r"127\.0\.0\.1:\d+: (authentication failed|refused):", line)]
        counted = [int(m.group(1).replace(",", "")) for line in lines
                   if (m := re.search(r"127\.0\.0\.1: ([\d,]+) more refusals", line))]
        self.assertEqual(len(full) + sum(counted), ATTEMPTS, lines)
        self.assertNotIn("zq9-Lk2w", proc.output())
