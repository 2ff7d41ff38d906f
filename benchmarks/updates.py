"""Damage detection, fan-out to many clients, and update latency, in process.

    .venv/bin/python -m benchmarks.updates [--clients 50] [--repeat N]

* damage detection: :meth:`vncd.updates.Display.compare` over a whole
  1080p frame with nothing, one 64x64 tile, or everything changed;
* fan-out: CPU time (``time.process_time``) of one display tick that
  sends a full-frame change of the desktop picture to 1 and to N clients
  waiting with incremental requests, per encoding -- the ratio is what
  the shared encode cache buys (the target is at most 2);
* latency: wall time from ``screen.damage()`` until every one of N
  clients has been written its update, for a small change (a 24x24 area,
  like typing) and for a full frame, as p50 / p99 / max.

No sockets are involved: the sinks count bytes and drop them, so these
are vncd's own costs.  TLS and the kernel come on top (see peers.md 7.2:
bulk TLS is ~1.7 GB/s, far from the bottleneck).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from twisted.internet.task import Clock

from benchmarks import frames
from vncd import encoding as enc
from vncd.info import ConnectionInfo
from vncd.screens.base import Screen
from vncd.updates import TILE, Display


class CountingSink:
    """A sink that keeps nothing: counts bytes, never pushes back."""

    def __init__(self) -> None:
        self.bytes = 0
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)
        self.writes += 1

    def flush(self) -> None:
        pass

    def output_buffered(self) -> int:
        return 0

    def close(self, reason: str) -> None:
        raise RuntimeError(f"client closed: {reason}")


def display_with(clients: int, encoding: int, picture: np.ndarray):
    clock = Clock()
    screen = Screen(picture.shape[1], picture.shape[0])
    screen.framebuffer[...] = picture
    display = Display(screen, reactor=clock)
    attached = []
    for i in range(clients):
        sink = CountingSink()
        client = display.attach(ConnectionInfo(peer=f"10.0.{i // 250}.{i % 250}:1"), sink)
        client.set_encodings([encoding])
        client.request_update(False, 0, 0, screen.width, screen.height)
        attached.append((client, sink))
    return clock, screen, display, attached


def ask_all(attached, screen) -> None:
    for client, _ in attached:
        client.request_update(True, 0, 0, screen.width, screen.height)


def percentile(values, p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def damage_detection(repeat: int) -> None:
    picture = frames.desktop()
    clock, screen, display, _ = display_with(0, enc.RAW, picture)
    live = picture.copy()
    whole = (0, 0, *display.tile_shape)
    print("damage detection, 1920x1080, best of", repeat)
    print(f"{'case':<28} {'ms':>8}")
    for label, change in (("nothing changed", None), ("one tile changed", (500, 500, TILE)),
                          ("everything changed", (0, 0, None))):
        times = []
        for i in range(repeat):
            if change is not None:
                x, y, size = change
                if size is None:
                    live[...] = frames.video(i)
                else:
                    live[y:y + size, x:x + size, 0] += 1
            start = time.perf_counter()
            display.compare(live, whole)
            times.append(time.perf_counter() - start)
        print(f"{label:<28} {min(times) * 1000:8.2f}")


def tick_cpu(clients: int, number: int, repeat: int) -> tuple[list[float], int]:
    """CPU seconds of each of ``repeat`` display ticks that send a full-frame
    desktop change to ``clients`` waiting clients, and the bytes one got."""
    a, b = frames.desktop(seed=1), frames.desktop(seed=5)
    clock, screen, display, attached = display_with(clients, number, a)
    clock.advance(0)
    times = []
    sent = 0
    for i in range(repeat):
        ask_all(attached, screen)
        screen.framebuffer[...] = b if i % 2 == 0 else a
        screen.damage()
        before = attached[0][1].bytes
        start = time.process_time()
        clock.advance(0)
        times.append(time.process_time() - start)
        sent = attached[0][1].bytes - before
    return times, sent


def fan_out(clients: int, repeat: int) -> None:
    print(f"\nfan-out of one full-frame desktop change, CPU ms per tick, best of {repeat}")
    print(f"{'encoding':<10} {'1 client':>10} {f'{clients} clients':>12} {'ratio':>7} "
          f"{'bytes/client':>13}")
    for number, name in ((enc.RAW, "Raw"), (enc.ZLIB, "Zlib"), (enc.HEXTILE, "Hextile"),
                         (enc.ZRLE, "ZRLE"), (enc.TIGHT, "Tight")):
        one, _ = tick_cpu(1, number, repeat)
        many, sent = tick_cpu(clients, number, repeat)
        print(f"{name:<10} {min(one) * 1000:10.1f} {min(many) * 1000:12.1f} "
              f"{min(many) / min(one):7.2f} {sent:13d}")


def latency_samples(clients: int, number: int, change: str, count: int,
                    seed: int = 3) -> list[float]:
    """Seconds from ``screen.damage()`` until all ``clients`` were written their
    update, for ``count`` changes of kind ``change`` (``24x24`` or ``full``)."""
    picture = frames.desktop()
    others = [frames.desktop(seed=10 + i) for i in range(3)]
    rng = np.random.default_rng(seed)
    clock, screen, display, attached = display_with(clients, number, picture)
    clock.advance(0)
    samples = []
    for i in range(count):
        ask_all(attached, screen)
        x, y = int(rng.integers(0, 1896)), int(rng.integers(0, 1056))
        colour = rng.integers(0, 256, 3)
        start = time.perf_counter()
        if change == "24x24":
            screen.framebuffer[y:y + 24, x:x + 24, :3] = colour
            screen.damage(x, y, 24, 24)
        else:
            screen.framebuffer[...] = others[i % len(others)]
            screen.damage()
        clock.advance(0)
        samples.append(time.perf_counter() - start)
    return samples


def latency(clients: int, repeat: int) -> None:
    print(f"\nlatency from damage() to the last of {clients} clients written, ms "
          f"({repeat} updates each)")
    print(f"{'encoding':<10} {'change':<10} {'p50':>8} {'p99':>8} {'max':>8}")
    for number, name in ((enc.ZRLE, "ZRLE"), (enc.TIGHT, "Tight"), (enc.RAW, "Raw")):
        for change in ("24x24", "full"):
            count = repeat if change == "24x24" else max(3, repeat // 20)
            samples = latency_samples(clients, number, change, count)
            print(f"{name:<10} {change:<10} {percentile(samples, 50) * 1000:8.2f} "
                  f"{percentile(samples, 99) * 1000:8.2f} {max(samples) * 1000:8.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--latency-updates", type=int, default=200)
    args = parser.parse_args(argv)
    damage_detection(args.repeat)
    fan_out(args.clients, args.repeat)
    latency(args.clients, args.latency_updates)


if __name__ == "__main__":
    main()
