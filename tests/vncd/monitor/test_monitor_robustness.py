"""The monitor under hostile or careless peers, over real sockets.

Garbage, over-long messages, deep nesting, huge strings, thousands of
pipelined requests, more connections than allowed and a client that
never reads: after each, the monitor still answers, other monitor and
VNC clients are unaffected, and vncd's memory stays bounded (the limits
are :mod:`vncd.monitor.limits`).
"""

from __future__ import annotations

import json
import os
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.vncd import realclients
from tests.vncd.monitor.peers import RawQMP, RawVNC, short_dir, start_vncd
from vncd.monitor.limits import MAX_CONNECTIONS, MAX_MESSAGE_BYTES, MAX_NESTING, MAX_PENDING_OUTPUT

#: Resident memory vncd may reach in these tests.  It idles near 60 MiB;
#: holding one over-long message or one dropped client's output is a
#: few MiB more.  Unbounded buffering of the floods below would pass this.
MAX_RSS = 200 << 20


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RobustnessTests(SynchronousTestCase):
    """vncd's monitor keeps serving whatever one client sends."""

    def setUp(self):
        self.base = short_dir(self)
        self.vncd = start_vncd(self, self.base)
        self.watcher = self.vncd.qmp()
        self.addCleanup(self.watcher.close)

    def assertHealthy(self):
        """The other monitor client and a VNC client still work; memory is bounded."""
        self.assertIn("return", self.watcher.execute("query-version"))
        RawVNC(self.vncd.port).close()
        self.assertLess(rss(self.vncd.proc.popen.pid), MAX_RSS)
        self.assertIsNone(self.vncd.proc.poll(), self.vncd.output())

    def fresh(self) -> RawQMP:
        client = self.vncd.qmp()
        self.addCleanup(client.close)
        return client

    def test_garbage(self):
        """Binary garbage, bad UTF-8 and stray brackets get errors; the connection goes on."""
        client = self.fresh()
        client.send(bytes(range(256)) * 4 + b"\xff\xfe}]\n")
        client.send(b'{"execute": "query-version", "id": "after"}\n')
        seen = []
        while True:
            _, reply = client.reply()
            seen.append(reply)
            if reply.get("id") == "after":
                break
        self.assertTrue(all("error" in r for r in seen[:-1]) and len(seen) > 1, seen)
        self.assertIn("return", seen[-1])
        self.assertHealthy()

    def test_over_long_and_deep(self):
        """A message over the byte limit, and nesting past the limit, are refused once each."""
        client = self.fresh()
        big = b'{"execute": "query-version", "arguments": {"x": "' + \
            b"a" * (MAX_MESSAGE_BYTES + 10) + b'"}}\n'
        client.send(big)
        self.assertEqual(client.reply()[1]["error"]["class"], "GenericError")
        deep = b"[" * (MAX_NESTING * 100) + b"]" * (MAX_NESTING * 100) + b"\n"
        client.send(deep)
        self.assertEqual(client.reply()[1]["error"]["class"], "GenericError")
        client.send(b'{"execute": "query-version", "id": 1}\n')
        self.assertEqual(client.reply()[1].get("id"), 1)
        self.assertHealthy()

    def test_huge_string_within_limit(self):
        """A string just under the limit is a normal argument (here: an unknown command's)."""
        client = self.fresh()
        name = "x" * (MAX_MESSAGE_BYTES - 100)
        reply = client.execute(name)
        self.assertEqual(reply["error"]["class"], "CommandNotFound")
        self.assertHealthy()

    def test_pipelined(self):
        """5000 requests in one write are answered in order."""
        client = self.fresh()
        count = 5000
        client.send(b"".join(b'{"execute": "query-version", "id": %d}\n' % i
                             for i in range(count)))
        ids = [client.reply()[1].get("id") for _ in range(count)]
        self.assertEqual(ids, list(range(count)))
        self.assertHealthy()

    def test_hmp_pipelined(self):
        """2000 HMP lines in one write are answered, each followed by the prompt."""
        hmp_path = os.path.join(self.base, "hmp.sock")
        vncd = start_vncd(self, self.base, extra=("-monitor",
                                                   f"unix:{hmp_path},server=on,wait=off"))
        sock = socket.socket(socket.AF_UNIX)
        self.addCleanup(sock.close)
        sock.settimeout(20)
        sock.connect(hmp_path)
        count = 2000
        sock.sendall(b"info version\n" * count)
        data = b""
        deadline = time.monotonic() + 20
        while data.count(b"(qemu) ") < count + 1 and time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        self.assertEqual(data.count(b"(qemu) "), count + 1)
        self.assertEqual(data.count(b" (vncd)\r\n"), count)
        self.assertIsNone(vncd.proc.poll())

    def test_connection_limit(self):
        """Past the per-monitor limit a connection is closed at once; the others go on."""
        clients = [self.fresh() for _ in range(MAX_CONNECTIONS - 1)]
        extra = socket.socket(socket.AF_UNIX)
        self.addCleanup(extra.close)
        extra.settimeout(10)
        extra.connect(self.vncd.qmp_path)
        self.assertEqual(extra.recv(100), b"")
        for client in clients:
            self.assertIn("return", client.execute("query-version"))
        clients[0].close()
        realclients.wait_until(lambda: "disconnected" in self.vncd.output(), 5)
        time.sleep(0.2)
        self.fresh()
        self.assertHealthy()

    def test_never_reads(self):
        """A client that sends requests and never reads is dropped past the output cap."""
        sock = socket.socket(socket.AF_UNIX)
        self.addCleanup(sock.close)
        sock.settimeout(30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(self.vncd.qmp_path)
        request = json.dumps({"execute": "query-commands"}).encode() + b"\n"
        reply_size = len(json.dumps(self.watcher.execute("query-commands")))
        needed = (MAX_PENDING_OUTPUT * 2) // reply_size + 1000
        sock.sendall(b'{"execute": "qmp_capabilities"}\n')
        try:
            for _ in range(needed // 500 + 1):
                sock.sendall(request * 500)
        except (BrokenPipeError, ConnectionResetError):
            pass        # dropped while still sending
        self.assertTrue(realclients.wait_until(
            lambda: "the client is not reading" in self.vncd.output(), 20), self.vncd.output())
        self.assertHealthy()
