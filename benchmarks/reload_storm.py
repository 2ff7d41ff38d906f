"""Credential reloads while serving: a client's update latency through a SIGHUP storm.

    .venv/bin/python -m benchmarks.reload_storm [--before /work/main] [--seconds 4]
        [--sighups 50] [--storm-seconds 0.5] [--interval 0.02]

Table 1, end to end.  For this checkout (``after``) and, with
``--before``, another vncd tree (``before``, e.g. the main branch before
reloads left the reactor thread), ``python -m vncd`` serves a 256x192
still picture on a VeNCrypt X509None display (``tls-creds-x509`` with
``verify-peer=on``, RSA 2048 keys from tests/certgen.py).  One x509 client
in this process (stdlib ``ssl``, client certificate) asks for the whole
screen (non-incremental FramebufferUpdateRequest, Raw) every
``--interval`` seconds and times each request until the last byte of the
update.  First ``--seconds`` idle; then ``--sighups`` SIGHUPs spread over
``--storm-seconds`` (the storm that once ran 18 reloads in a row),
measured from the first signal for ``--seconds`` more.  Columns: the
phase, updates timed, median, 99th percentile and longest latency, and
the reloads the server reported (distinct generations in its log).

Table 2, in this process: whether checking a private key holds the
interpreter lock.  A Twisted ``LoopingCall`` every 5 ms records how late
it runs while a :class:`vncd.reload.Reloader` reloads one x509 object
over and over, for ``--seconds`` per row: ``idle`` (no reload), ``thread``
(the key parsed and validated in the worker thread, ``key_loader=None``)
and ``thread+child`` (the key checked in a child process,
:func:`creds.keycheck.check_in_child`, vncd's default).  The lateness
of the tick is the stall a client of the reactor would see.

Numbers depend on the machine and its load (the header prints the load
average); both tables take the percentiles of every sample.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import ssl
import statistics
import struct
import tempfile
import threading
import time
from dataclasses import dataclass

from PIL import Image

from benchmarks import peers
from tests import certgen

#: Longest phase accepted, so a typo cannot tie up the shared machine.
MAX_SECONDS = 60.0

#: Most SIGHUPs in one storm (the issue's storm had 50).
MAX_SIGHUPS = 1000

#: The picture vncd shows: small, so an update costs the server little
#: and the latency measures its responsiveness, not its encoder.
SCREEN_SIZE = (256, 192)

#: The table-2 tick: a reactor event every 5 ms, as a busy server has.
TICK = 0.005

#: Largest rectangle count and size accepted in one update from the server.
MAX_RECTS = 4096


@dataclass
class Row:
    tree: str
    phase: str
    samples: list[float]
    reloads: int | None = None

    def cells(self) -> list[str]:
        if not self.samples:
            return [self.tree, self.phase, "0", "-", "-", "-", _count(self.reloads)]
        ordered = sorted(self.samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return [self.tree, self.phase, str(len(ordered)), _ms(statistics.median(ordered)),
                _ms(p99), _ms(ordered[-1]), _count(self.reloads)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(c.rjust(w) if i > 1 else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths))))


# -- table 1: a real vncd and a client ------------------------------------

def make_files(root: str) -> dict[str, str]:
    ca = certgen.ca("reload benchmark CA")
    srv = certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
    cli = certgen.client(ca, "reload benchmark client")
    client_dir = certgen.write_dir(os.path.join(root, "client"), ca=[ca], client=cli)
    picture = os.path.join(root, "screen.png")
    Image.new("RGB", SCREEN_SIZE, (40, 90, 160)).save(picture)
    return {"server": certgen.write_dir(os.path.join(root, "server"), ca=[ca], server=srv),
            "ca": os.path.join(client_dir, "ca-cert.pem"),
            "cert": os.path.join(client_dir, "client-cert.pem"),
            "key": os.path.join(client_dir, "client-key.pem"),
            "picture": picture}


def whole_screen(sock: ssl.SSLSocket, width: int, height: int, bpp: int) -> None:
    """Ask for the whole screen and read the update (Raw rectangles) to its last byte."""
    sock.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
    header = peers.recv_exact(sock, 4)
    if header[0] != 0:
        raise peers.RFBError(f"expected a FramebufferUpdate, got message type {header[0]}")
    count = struct.unpack(">H", header[2:])[0]
    if count > MAX_RECTS:
        raise peers.RFBError(f"{count} rectangles in one update")
    for _ in range(count):
        x, y, w, h, encoding = struct.unpack(">HHHHi", peers.recv_exact(sock, 12))
        if encoding != 0 or x + w > width or y + h > height:
            raise peers.RFBError(f"unexpected rectangle {x},{y} {w}x{h} encoding {encoding}")
        peers.recv_exact(sock, w * h * bpp)


def latencies(sock, init: peers.ServerInit, interval: float, until: float) -> list[float]:
    samples = []
    while time.monotonic() < until:
        started = time.monotonic()
        whole_screen(sock, init.width, init.height, init.bytes_per_pixel)
        samples.append(time.monotonic() - started)
        time.sleep(max(0.0, started + interval - time.monotonic()))
    return samples


def storm(pid: int, count: int, seconds: float) -> None:
    spacing = seconds / count
    for _ in range(count):
        os.kill(pid, signal.SIGHUP)
        time.sleep(spacing)


def reloads(log: str) -> int:
    return len(set(re.findall(r": reloaded \(generation (\d+)\)", log)))


def run_tree(name: str, root: str, files: dict[str, str], args,
             children: peers.Children) -> list[Row]:
    display = peers.free_display()
    port = peers.VNC_BASE_PORT + display
    child = children.start(peers.vncd_argv([
        "-object", f"tls-creds-x509,id=tls0,dir={files['server']},endpoint=server,"
                   "verify-peer=on",
        "-vnc", f"127.0.0.1:{display},tls-creds=tls0",
        "-screen", f"image,file={files['picture']}"]), name=f"vncd ({name})", root=root,
        # Leave another tree as it was: no __pycache__ written into it.
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1") if root != peers.ROOT else None)
    try:
        child.wait_for_port(port)
        tls = peers.x509_client_context(files["ca"], files["cert"], files["key"])
        with socket.create_connection(("127.0.0.1", port), timeout=peers.IO_TIMEOUT) as raw:
            sock, init = peers.handshake(raw, tls=tls, host="localhost")
            latencies(sock, init, args.interval, time.monotonic() + 0.5)  # warm up
            idle = latencies(sock, init, args.interval, time.monotonic() + args.seconds)
            sender = threading.Thread(target=storm,
                                      args=(child.pid, args.sighups, args.storm_seconds))
            sender.start()
            during = latencies(sock, init, args.interval, time.monotonic() + args.seconds)
            sender.join()
            sock.close()
        return [Row(name, "idle", idle), Row(name, "SIGHUP storm", during,
                                             reloads(child.log_text()))]
    finally:
        children.stop(child)


# -- table 2: the interpreter lock -----------------------------------------------

def gil_rows(server_dir: str, seconds: float) -> list[Row]:
    """Tick lateness idle, with the key checked in a thread, and in a child process."""
    from twisted.internet import defer, reactor, task

    import creds
    from creds.keycheck import check_in_child
    from vncd.reload import Reloader

    registry = creds.new_registry()
    obj = registry.create("tls-creds-x509", {"id": "t0", "dir": server_dir,
                                             "endpoint": "server"})
    rows: list[Row] = []
    late: list[float] = []
    expected = [0.0]

    def tick() -> None:
        now = time.monotonic()
        late.append(max(0.0, now - expected[0]))
        expected[0] = now + TICK

    async def measure() -> None:
        for phase, loader in (("idle", None), ("thread", None),
                              ("thread+child", check_in_child)):
            late.clear()
            expected[0] = time.monotonic() + TICK
            ticker = task.LoopingCall(tick)
            ticker.start(TICK, now=False)
            end = time.monotonic() + seconds
            count = 0
            reloader = Reloader(reactor, key_loader=loader)
            while time.monotonic() < end:
                if phase == "idle":
                    await task.deferLater(reactor, 0.05, lambda: None)
                    continue
                await reloader.reload(obj)
                count += 1
            ticker.stop()
            rows.append(Row("after", phase, list(late),
                            None if phase == "idle" else count))

    failures = []

    def run() -> None:
        d = defer.Deferred.fromCoroutine(measure())
        d.addErrback(failures.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run(installSignalHandlers=False)
    if failures:
        failures[0].raiseException()
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="another vncd tree to measure as 'before'")
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="length of each measured phase")
    parser.add_argument("--sighups", type=int, default=50, help="SIGHUPs in the storm")
    parser.add_argument("--storm-seconds", type=float, default=0.5,
                        help="time the storm's SIGHUPs are spread over")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="seconds between the client's update requests")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:.0f}]")
    if not 1 <= args.sighups <= MAX_SIGHUPS:
        parser.error(f"--sighups must be 1..{MAX_SIGHUPS}")
    if not 0 < args.storm_seconds <= args.seconds:
        parser.error("--storm-seconds must be in (0, --seconds]")
    if args.before and not os.path.exists(os.path.join(args.before, "vncd", "__main__.py")):
        parser.error(f"--before {args.before}: no vncd tree there")
    peers.stop_on_sigterm()
    print(f"reload storm: {args.sighups} SIGHUPs over {args.storm_seconds:g} s, "
          f"{args.seconds:g} s per phase, {os.cpu_count()} CPUs, "
          f"load average {peers.load_average()} at start")
    with tempfile.TemporaryDirectory(prefix="vncd-bench-") as root, \
            peers.Children() as children:
        files = make_files(root)
        rows = []
        if args.before:
            rows += run_tree("before", os.path.abspath(args.before), files, args, children)
        rows += run_tree("after", peers.ROOT, files, args, children)
        print("\nupdate latency of an x509 client (ms):")
        print_table(["tree", "phase", "updates", "median", "p99", "max", "reloads"],
                    [r.cells() for r in rows])
        print(f"\nreactor tick lateness while reloading (ms; tick every {TICK * 1000:g} ms):")
        print_table(["tree", "key checked in", "ticks", "median", "p99", "max", "reloads"],
                    [r.cells() for r in gil_rows(files["server"], args.seconds)])


if __name__ == "__main__":
    peers.run_script(main)
