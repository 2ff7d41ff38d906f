"""What ``-screen vnc`` costs: vncd as a front door against connecting straight.

    .venv/bin/python -m benchmarks.frontdoor [--rounds 5] [--clicks 20]
        [--seconds 3] [--fps 30] [--clients 1,10]

The upstream is an embedding vncd (:mod:`vncd.api`, a child process) at
1920x1080; the front door is the ``vncd`` command with
``-screen vnc,server=127.0.0.1:PORT``, another child.  Rounds alternate:
direct to the upstream, then through the front door, and so on, so load
from the other users of the machine falls on both alike; the table gives
medians and the spread (min-max) over the rounds.

* Click latency: the upstream paints a 32x32 square where a button goes
  down (in a colour not used before).  A bare RFB client (Tight, one
  incremental request outstanding) sends press and release and times
  the first update that arrives; ``--clicks`` clicks per round, the
  round's median is kept.  The difference between the rows is what the
  front door adds: a decode of the upstream's update, the damage
  comparison, an encode for the client, and one more hop.
* Full-frame throughput: the upstream repaints the whole screen
  ``--fps`` times a second (benchmarks.frames' smooth "video" picture);
  1 and 10 clients each count the pixels they receive for ``--seconds``,
  in whole screens per second (all clients at once, each in a thread);
  the per-client median is reported, and the CPU of the upstream and the
  front door.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import statistics
import struct
import sys
import threading
import time

import numpy as np

from benchmarks import frames, peers, throughput

TIGHT = 7

#: Side of the square the upstream paints on a click.
SQUARE = 32

#: Longest wait for the update that answers a click.
CLICK_TIMEOUT = 10.0

#: Bounds on the arguments, so a typo cannot tie up the shared machine.
MAX_ROUNDS = 50
MAX_CLICKS = 1000
MAX_CLIENTS = 50


def serve_upstream(display: int, mode: str, fps: float) -> None:
    """``--role upstream``: the embedding vncd the others connect to."""
    from twisted.internet import reactor, task

    from vncd.api import ArrayScreen, serve

    clicks = itertools.count(1)

    def on_pointer(event) -> None:
        if event.buttons & 1:
            x = min(max(0, event.x - SQUARE // 2), frames.WIDTH - SQUARE)
            y = min(max(0, event.y - SQUARE // 2), frames.HEIGHT - SQUARE)
            n = next(clicks)                  # a colour never used before
            screen.framebuffer[y:y + SQUARE, x:x + SQUARE, :3] = (n & 255, n >> 8 & 255, 200)
            screen.damage(x, y, SQUARE, SQUARE)

    screen = ArrayScreen(frames.WIDTH, frames.HEIGHT, name="upstream", reactor=reactor,
                         on_pointer=on_pointer)
    screen.framebuffer[...] = frames.desktop()
    if mode == "stream":
        pictures = itertools.cycle(throughput.make_frames("video"))

        def paint() -> None:
            screen.framebuffer[...] = next(pictures)
            screen.damage()

        loop = task.LoopingCall(paint)
        loop.clock = reactor
        loop.start(1 / fps)
    serve(screen, f"127.0.0.1:{display}", reactor=reactor)
    reactor.run()


class Pair:
    """An upstream and a front door in front of it."""

    def __init__(self, children: peers.Children, mode: str, fps: float) -> None:
        up = peers.free_display()
        self.upstream = children.start(
            [sys.executable, "-m", "benchmarks.frontdoor", "--role", "upstream",
             "--display", str(up), "--mode", mode, "--fps", str(fps)], name="upstream")
        self.upstream.wait_for_port(peers.VNC_BASE_PORT + up)
        door = peers.free_display()
        while door == up:
            door = peers.free_display()
        self.door = children.start(peers.vncd_argv(
            ["-vnc", f"127.0.0.1:{door}",
             "-screen", f"vnc,server=127.0.0.1:{peers.VNC_BASE_PORT + up}"]), name="front door")
        self.door.wait_for_port(peers.VNC_BASE_PORT + door)
        self.ports = {"direct": peers.VNC_BASE_PORT + up,
                      "through vncd": peers.VNC_BASE_PORT + door}


def click_round(port: int, clicks: int) -> float:
    """Median milliseconds from a click to the update that shows it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=peers.IO_TIMEOUT)
    try:
        sock, init = peers.handshake(sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(CLICK_TIMEOUT)
        bpp, tpixel = init.bytes_per_pixel, throughput.tight_pixel_size(init.pixel_format)
        request = struct.pack(">BBHHHH", 3, 1, 0, 0, init.width, init.height)
        sock.sendall(struct.pack(">BxHi", 2, 1, TIGHT)
                     + struct.pack(">BBHHHH", 3, 0, 0, 0, init.width, init.height))
        reader = throughput.Reader(sock)
        while throughput.read_update(reader, bpp, tpixel) is None:
            pass
        time.sleep(0.3)               # the front door's first frames settle
        sock.sendall(request)
        times = []
        for i in range(clicks):
            x, y = 100 + (i * 97) % 1600, 100 + (i * 61) % 800
            start = time.perf_counter()
            sock.sendall(struct.pack(">BBHH", 5, 1, x, y) + struct.pack(">BBHH", 5, 0, x, y))
            while not throughput.read_update(reader, bpp, tpixel):
                pass
            times.append(time.perf_counter() - start)
            sock.sendall(request)
        return 1000 * statistics.median(times)
    finally:
        sock.close()


def screens_per_second(port: int, seconds: float) -> float:
    """Pixels received per second, in whole screens (a front door may split
    a frame over several updates, so whole-screen updates are not counted)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=peers.IO_TIMEOUT)
    try:
        sock, init = peers.handshake(sock)
        sock.settimeout(throughput.SILENCE_TIMEOUT)
        bpp, tpixel = init.bytes_per_pixel, throughput.tight_pixel_size(init.pixel_format)
        request = struct.pack(">BBHHHH", 3, 1, 0, 0, init.width, init.height)
        sock.sendall(struct.pack(">BxHi", 2, 1, TIGHT)
                     + struct.pack(">BBHHHH", 3, 0, 0, 0, init.width, init.height))
        reader = throughput.Reader(sock)
        while throughput.read_update(reader, bpp, tpixel) is None:
            pass
        sock.sendall(request)
        area = 0
        start = time.monotonic()
        while time.monotonic() < start + seconds:
            got = throughput.read_update(reader, bpp, tpixel)
            if got is not None:
                area += got
                sock.sendall(request)
        return area / (init.width * init.height) / (time.monotonic() - start)
    finally:
        sock.close()


def stream_round(port: int, clients: int, seconds: float, server: peers.Child,
                 upstream: peers.Child) -> tuple[float, float, float]:
    """(median screens/s per client, server CPU %, upstream CPU %) for one round."""
    results = [None] * clients
    cpu0 = server.cpu(), upstream.cpu(), time.monotonic()

    def run(index: int) -> None:
        try:
            results[index] = screens_per_second(port, seconds)
        except (OSError, peers.RFBError) as e:
            results[index] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - cpu0[2]
    problems = [r for r in results if isinstance(r, Exception)]
    if problems:
        raise RuntimeError(f"{type(problems[0]).__name__}: {problems[0]}")
    return (statistics.median(results), 100 * (server.cpu() - cpu0[0]) / wall,
            100 * (upstream.cpu() - cpu0[1]) / wall)


def spread(values: list[float], digits: int = 1) -> str:
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--clients", default="1,10")
    parser.add_argument("--role", choices=("bench", "upstream"), default="bench",
                        help=argparse.SUPPRESS)
    parser.add_argument("--display", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("click", "stream"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "upstream":
        serve_upstream(args.display, args.mode, args.fps)
        return
    counts = [int(c) for c in args.clients.split(",") if c]
    if not (0 < args.rounds <= MAX_ROUNDS and 0 < args.clicks <= MAX_CLICKS
            and 0 < args.seconds <= throughput.MAX_SECONDS
            and 0 < args.fps <= throughput.MAX_FPS
            and all(0 < c <= MAX_CLIENTS for c in counts)):
        parser.error("an argument is out of range")
    peers.stop_on_sigterm()
    print(f"-screen vnc front door vs direct, {frames.WIDTH}x{frames.HEIGHT} vncd upstream, "
          f"Tight to the clients, {args.rounds} alternating rounds; {np.__name__} "
          f"{np.__version__}; load average {peers.load_average()} at start")
    print(f"{'measure':<34} {'direct':>22} {'through vncd':>22}")
    with peers.Children() as children:
        pair = Pair(children, "click", args.fps)
        latency = {"direct": [], "through vncd": []}
        for _ in range(args.rounds):
            for path, port in pair.ports.items():
                latency[path].append(click_round(port, args.clicks))
        print(f"{'click -> update, ms':<34} {spread(latency['direct']):>22} "
              f"{spread(latency['through vncd']):>22}")
        for child in (pair.door, pair.upstream):
            children.stop(child)
        pair = Pair(children, "stream", args.fps)
        for count in counts:
            rows = {path: ([], [], []) for path in pair.ports}
            for _ in range(args.rounds):
                for path, port in pair.ports.items():
                    server = pair.upstream if path == "direct" else pair.door
                    rate, cpu, up_cpu = stream_round(port, count, args.seconds, server,
                                                     pair.upstream)
                    rows[path][0].append(rate)
                    rows[path][1].append(cpu if path != "direct" else 0.0)
                    rows[path][2].append(up_cpu)
            print(f"{f'screens/s per client, {count} cl.':<34} "
                  f"{spread(rows['direct'][0]):>22} {spread(rows['through vncd'][0]):>22}")
            print(f"{f'  upstream CPU %, {count} cl.':<34} "
                  f"{spread(rows['direct'][2], 0):>22} {spread(rows['through vncd'][2], 0):>22}")
            print(f"{f'  front door CPU %, {count} cl.':<34} {'-':>22} "
                  f"{spread(rows['through vncd'][1], 0):>22}")
    print(f"load average {peers.load_average()} at end")


if __name__ == "__main__":
    peers.run_script(main)
