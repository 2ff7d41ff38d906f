"""Tests for the benchmark suite's bookkeeping (the measurements are run by hand)."""

import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from benchmarks import profile, suite


class RowTests(SynchronousTestCase):
    def test_ratio_target_met_and_missed(self):
        """A ratio target compares vncd's median with the peer's median."""
        faster = suite.Row("p", "m", [10.0, 12.0, 11.0], [20.0, 22.0], "peer", "<=", 1.0)
        self.assertAlmostEqual(faster.ratio(), 11.0 / 21.0)
        self.assertEqual(faster.met(), "met")
        slower = suite.Row("p", "m", [30.0], [20.0], "peer", "<=", 1.0)
        self.assertEqual(slower.met(), "MISSED")

    def test_absolute_target_and_missing_peer(self):
        """An absolute target needs no peer; a ratio target without one says so."""
        self.assertEqual(suite.Row("p", "m", [40.0], sense="<=", target=64,
                                   absolute=True).met(), "met")
        self.assertEqual(suite.Row("p", "m", [70.0], sense="<=", target=64,
                                   absolute=True).met(), "MISSED")
        self.assertEqual(suite.Row("p", "m", [1.0], [], "", ">=", 1.0).met(), "no peer")

    def test_paint_rate(self):
        """Delivering (nearly) every frame offered meets a rate target."""
        row = suite.Row("p", "m", [29.5], [30.1], "peer", ">=", 1.0, cap=30.0)
        self.assertEqual(row.met(), "met (paint rate)")
        row.vncd = [25.0]
        self.assertEqual(row.met(), "MISSED")

    def test_markdown_table(self):
        rows = [suite.Row("streaming", "raw: screens/s", [29.0, 31.0], [30.0, 30.0], "x11vnc",
                          ">=", 1.0),
                suite.Row("memory", "pss", [40.0], sense="<=", target=64, absolute=True,
                          unit="KiB")]
        text = suite.markdown(rows)
        lines = text.splitlines()
        self.assertEqual(len(lines), 4)
        self.assertIn("| 30.0 (29.0..31.0) | 30.0 (30.0..30.0) x11vnc | 1.00 | - | >= 1x | met |",
                      lines[2])
        self.assertIn("| pss (KiB) | 40.0 | - | - | - | <= 64 KiB | met |", lines[3])

    def test_round_ratios(self):
        """Ratios are taken within a round; a round one server missed is left out."""
        vncd = {0: 10.0, 1: 20.0, 2: 12.0, 4: 8.0}
        peer = {0: 5.0, 1: 10.0, 3: 7.0, 4: 8.0}
        self.assertEqual(suite.round_ratios(vncd, peer), [2.0, 2.0, 1.0])
        self.assertEqual(suite.round_ratios(vncd, {}), [])
        self.assertEqual(suite.round_ratios({0: 1.0}, {0: 0.0}), [])
        row = suite.Row("p", "m", list(vncd.values()), list(peer.values()), "peer", "<=", 1.0,
                        paired=suite.round_ratios(vncd, peer))
        self.assertIn("| 2.00 (1.00..2.00) |", suite.markdown([row]))

    def test_streaming_rows_pair_rounds(self):
        """Streaming rows pair vncd's and x11vnc's samples by their recorded round,
        not by position, when a round failed for one server."""
        from benchmarks.throughput import Result

        def result(cpu, problem=""):
            return Result(full=1, updates=1, area=2_073_600, screen=2_073_600, bytes=1000,
                          wall=1.0, client_cpu=0.0, server_cpu=cpu, helper_cpu=(),
                          problem=problem)

        samples = {"vncd": {"raw": [result(0.010), result(0.020), result(0.030)]},
                   "x11vnc": {"raw": [result(0.005), result(0.010, "timed out"), result(0.015)]},
                   "before": {}}
        rounds = {"vncd": {"raw": [0, 1, 2]}, "x11vnc": {"raw": [0, 2, 3]}, "before": {}}
        rows = {r.metric: r for r in suite.streaming_rows("60 fps", samples, 60.0, rounds)}
        cpu = rows["raw, 60 fps: server CPU/screen"]
        self.assertEqual(cpu.vncd, [10.0, 20.0, 30.0])
        self.assertEqual(cpu.peer, [5.0, 15.0])
        # Round 0: 10/5; round 2: 30/10 would be wrong (x11vnc's round 2 failed).
        self.assertEqual(cpu.paired, [2.0])


class ProfileSummaryTests(SynchronousTestCase):
    def test_self_and_total_from_collapsed_stacks(self):
        """py-spy's raw output: self time goes to the last frame, total to every frame."""
        text = ("main (vncd/cli.py:10);encode_raw (/x/vncd/encoding/raw.py:20) 30\n"
                "main (vncd/cli.py:10);send (/usr/lib/socket.py:5) 10\n"
                "garbage line\n")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "raw.txt")
            with open(path, "w") as f:
                f.write(text)
            samples, own, total = profile.summarise(path)
        self.assertEqual(samples, 40)
        self.assertEqual(own["encode_raw (encoding/raw.py)"], 30)
        self.assertEqual(own["send (socket.py)"], 10)
        self.assertEqual(total["main (vncd/cli.py)"], 40)


class ClientSourceTests(SynchronousTestCase):
    """The handshake benchmark connects each run from its own loopback address."""

    def test_fresh_sources_are_distinct_loopback_addresses(self):
        import ipaddress

        from benchmarks import connections

        seen = [connections.fresh_source() for _ in range(600)]
        self.assertEqual(len(set(seen)), len(seen))
        for text in seen:
            address = ipaddress.IPv4Address(text)
            self.assertTrue(address.is_loopback, text)
            self.assertNotEqual(text, "127.0.0.1")
            self.assertNotIn(text.split(".")[-1], ("0", "255"))

    def test_connect_once_uses_the_spec_source(self):
        """A real socket on loopback sees the connection come from the spec's address."""
        import socket
        import threading

        from benchmarks import connections, peers

        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(10)
        peers_seen = []

        def serve():
            conn, address = listener.accept()
            with conn:
                peers_seen.append(address[0])
                # A minimal RFB 3.8 server, security None, 1x1 ServerInit.
                conn.sendall(b"RFB 003.008\n")
                conn.recv(12)
                conn.sendall(b"\x01\x01")
                conn.recv(1)
                conn.sendall(b"\x00\x00\x00\x00")
                conn.recv(1)
                conn.sendall(b"\x00\x01\x00\x01" + bytes([32, 24, 0, 1, 0, 255, 0, 255, 0, 255,
                                                        16, 8, 0, 0, 0, 0])
                             + b"\x00\x00\x00\x01x")
                conn.recv(1)

        thread = threading.Thread(target=serve)
        thread.start()
        self.addCleanup(thread.join, 10)
        source = connections.fresh_source()
        spec = connections.ClientSpec(listener.getsockname()[1], "none", "", "", "", source)
        try:
            self.assertEqual(connections.connect_once(spec, None), "")
        except peers.RFBError as e:
            self.fail(f"handshake with the stub server failed: {e}")
        thread.join(10)
        self.assertEqual(peers_seen, [source])
