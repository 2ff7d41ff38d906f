"""The monitor's QMP parser throughput, and request latency vncd vs QEMU 7.2.

    .venv/bin/python -m benchmarks.monitor_parse [--seconds 2] [--rounds 20]
        [--requests 200]

Table 1, in this process: :class:`vncd.monitor.jsonstream.JSONStream`
fed whole buffers of one kind of input for ``--seconds`` each, in
64 KiB chunks as a socket would deliver them; MB/s of input and messages
per second.  Inputs: ``typical`` (a stream of ``query-vnc``, ``object-add``
and ``set_password`` requests as tools send them), ``big string`` (one
``object-add`` of a secret with 512 KiB of inline data per message) and
``small tokens`` (an ``authz-list`` with 1000 rules: about 9000 tokens per
message).

Table 2, end to end: ``python -m vncd`` and QEMU 7.2 (``-machine none
-nodefaults -display none``), each with one VNC display and a QMP
UNIX socket.  In each of ``--rounds`` rounds, the servers take turns (the
order alternates round by round, so neither always runs second on a
warm cache); each gets ``--requests`` ``query-version`` requests, one at
a time, timed from the write to the end of the reply line.  Columns:
median, 10th and 90th percentiles and the spread of the per-round
medians (min-max).

Numbers depend on the machine and its load (the header prints the load
average).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time

from benchmarks import peers
from vncd.monitor.jsonstream import JSONStream
from vncd.monitor.limits import MonitorLimits

#: Longest measurement per row, so a typo cannot tie up the shared machine.
MAX_SECONDS = 30.0

#: Most rounds and requests per round (the same reason).
MAX_ROUNDS = 200
MAX_REQUESTS = 10_000

#: Bytes handed to the parser at a time (what one socket read returns at most).
CHUNK = 64 * 1024

#: Seconds a server has to open its QMP socket.
START_TIMEOUT = 30.0


def _messages(kind: str) -> bytes:
    """About 1 MiB or more of input of one kind, whole messages only."""
    if kind == "typical":
        batch = [
            {"execute": "query-vnc", "id": 1},
            {"execute": "object-add", "arguments": {
                "qom-type": "tls-creds-x509", "id": "tls1", "endpoint": "server",
                "dir": "/etc/pki/vnc", "verify-peer": True}, "id": 2},
            {"execute": "set_password", "arguments": {
                "protocol": "vnc", "password": "s3cr\u00e9t", "connected": "keep"}, "id": 3},
        ]
        one = "".join(json.dumps(m) + "\n" for m in batch).encode()
        return one * (1 << 20 // len(one) + 1)
    if kind == "big string":
        one = (json.dumps({"execute": "object-add", "arguments": {
            "qom-type": "secret", "id": "s0", "data": "A" * (512 * 1024)}}) + "\n").encode()
        return one * 4
    if kind == "small tokens":
        rules = [{"match": f"CN=client{i}", "policy": "allow"} for i in range(1000)]
        one = (json.dumps({"execute": "object-add", "arguments": {
            "qom-type": "authz-list", "id": "l0", "rules": rules}}) + "\n").encode()
        return one * 16
    raise ValueError(kind)


def parse_rate(kind: str, seconds: float) -> tuple[float, float]:
    """(MB/s, messages/s) of the parser on ``kind``."""
    data = _messages(kind)
    limits = MonitorLimits()
    done = messages = 0
    start = time.perf_counter()
    while True:
        stream = JSONStream(limits)
        for offset in range(0, len(data), CHUNK):
            for message in stream.feed(data[offset:offset + CHUNK]):
                if message.error is not None:
                    raise RuntimeError(f"{kind}: {message.error}")
                messages += 1
        done += len(data)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed / 1e6, messages / elapsed


class Monitor:
    """A raw QMP client that times one request at a time."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.file.readline()
        self.ask(b'{"execute": "qmp_capabilities"}\n')

    def ask(self, request: bytes) -> float:
        start = time.perf_counter()
        self.sock.sendall(request)
        line = self.file.readline()
        elapsed = time.perf_counter() - start
        if b'"return"' not in line:
            raise RuntimeError(f"unexpected reply {line[:200]!r}")
        return elapsed

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _wait_for(path: str, child: peers.Child) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not os.path.exists(path):
        if not child.running() or time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} opened no QMP socket:\n{child.tail()}")
        time.sleep(0.05)


def latency(rounds: int, requests: int) -> dict[str, list[list[float]]]:
    """Per server, per round, the seconds of each request."""
    base = tempfile.mkdtemp(prefix="vncd-bench-mon-")
    results: dict[str, list[list[float]]] = {"vncd": [], "qemu": []}
    with peers.Children() as children:
        monitors = {}
        for name in ("vncd", "qemu"):
            path = os.path.join(base, f"{name}.sock")
            display = peers.free_display()
            args = ["-vnc", f"127.0.0.1:{display}", "-qmp", f"unix:{path},server=on,wait=off"]
            argv = ([sys.executable, "-m", "vncd", *args] if name == "vncd" else
                    ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display",
                     "none", "-serial", "none", *args])
            child = children.start(argv, name=name)
            _wait_for(path, child)
            monitors[name] = Monitor(path)
        request = b'{"execute": "query-version"}\n'
        for name in monitors:                         # warm-up, not counted
            for _ in range(20):
                monitors[name].ask(request)
        for index in range(rounds):
            order = ("vncd", "qemu") if index % 2 == 0 else ("qemu", "vncd")
            for name in order:
                results[name].append([monitors[name].ask(request) for _ in range(requests)])
        for monitor in monitors.values():
            monitor.close()
    for name in ("vncd.sock", "qemu.sock"):
        try:
            os.unlink(os.path.join(base, name))
        except FileNotFoundError:
            pass
    os.rmdir(base)
    return results


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    seconds = min(max(args.seconds, 0.1), MAX_SECONDS)
    rounds = min(max(args.rounds, 1), MAX_ROUNDS)
    requests = min(max(args.requests, 1), MAX_REQUESTS)
    peers.stop_on_sigterm()
    print(f"load average {peers.load_average()}; python {sys.version.split()[0]}")
    print()
    print("QMP parser (vncd.monitor.jsonstream), 64 KiB chunks")
    print(f"{'input':<14} {'MB/s':>8} {'messages/s':>12}")
    for kind in ("typical", "big string", "small tokens"):
        rate, count = parse_rate(kind, seconds)
        print(f"{kind:<14} {rate:>8.2f} {count:>12.0f}")
    print()
    if peers.tool("qemu-system-x86_64") is None:
        print(peers.install_hint("qemu-system-x86_64"))
        return
    results = latency(rounds, requests)
    print(f"query-version round trip over a UNIX socket, {rounds} rounds x {requests}"
          " requests, servers alternating")
    print(f"{'server':<8} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'round medians ms':>20}")
    for name in ("vncd", "qemu"):
        samples = sorted(s for r in results[name] for s in r)
        deciles = statistics.quantiles(samples, n=10)
        medians = [statistics.median(r) for r in results[name]]
        print(f"{name:<8} {_ms(statistics.median(samples)):>10} {_ms(deciles[0]):>8}"
              f" {_ms(deciles[-1]):>8} {_ms(min(medians)) + '-' + _ms(max(medians)):>20}")


if __name__ == "__main__":
    peers.run_script(main)
