"""The update engine's own costs: parallel bands, and a client's update from the cache.

    .venv/bin/python -m benchmarks.engine [--rounds 25] [--clients 50]

* bands: the 17 bands of a full 1080p desktop change, per encoding,
  encoded one after the other (pieces in parallel inside each) or whole
  bands in parallel (:func:`vncd.updates.encode_many`), alternating the
  two ways round by round; wall and CPU ms (min / median).  On a shared
  machine the minimum is the figure with a free core.  This is what
  :data:`vncd.updates.encoders.PARALLEL_BANDS` was chosen from.
* per client: thread CPU of answering a full-frame update for one of
  ``--clients`` clients when every band is already in the cache (plan,
  cache keys and lookups, writes): the engine's own overhead, no encoding.
  It runs unchanged against an older checkout (``cd OLD && PYTHONPATH=OLD
  python -m benchmarks.engine`` with this file copied there).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks import frames
from vncd import encoding as enc
from vncd.encoding import EncodeParams, parallel
from vncd.pixels import DEFAULT_FORMAT


def _encoders():
    from vncd.updates import encoders  # the package (not in checkouts before it)
    return encoders


def serial(frame, encoding, jobs):
    """Bands one after the other (each encoder splits pieces over the pool)."""
    return [_encoders().ENCODERS[encoding](frame, *rect, params) for rect, params in jobs]


def bands(frame, encoding, jobs):
    """Whole bands in parallel, whatever the encoding."""
    return parallel.map_ordered(
        lambda job: _encoders().ENCODERS[encoding](frame, *job[0], job[1]), list(jobs))


def per_client(clients: int, rounds: int) -> None:
    """Thread CPU per client of a full-frame update answered from the cache."""
    from benchmarks import updates
    clock, screen, _, attached = updates.display_with(clients, enc.TIGHT, frames.desktop(seed=1))
    clock.advance(0)
    times = []
    for _ in range(rounds):
        start = time.thread_time()
        for client, _ in attached:
            client.request_update(False, 0, 0, screen.width, screen.height)
        times.append(time.thread_time() - start)
    print(f"\nper client, full-frame update from the cache ({clients} clients, Tight):"
          f" {1e6 * min(times) / clients:.1f} us (min of {rounds}),"
          f" {1e6 * float(np.median(times)) / clients:.1f} us median")


def bands_table(rounds: int) -> None:
    from vncd.updates.rect import Rect
    frame = frames.desktop(seed=1)
    lossless = EncodeParams(DEFAULT_FORMAT, 1)
    lossy = EncodeParams(DEFAULT_FORMAT, 1, 75, None)
    rects = [Rect(0, y, 1920, min(64, 1080 - y)) for y in range(0, 1080, 64)]
    print(f"{len(rects)} bands of a 1920x1080 desktop, {parallel.workers()} workers,"
          f" {rounds} rounds; ms min/median")
    print(f"{'encoding':<11} {'wall serial':>13} {'wall bands':>13} "
          f"{'CPU serial':>13} {'CPU bands':>13}")
    for name, number, params in (("Raw", enc.RAW, lossless), ("Zlib", enc.ZLIB, lossless),
                                 ("Hextile", enc.HEXTILE, lossless),
                                 ("ZRLE", enc.ZRLE, lossless), ("Tight", enc.TIGHT, lossless),
                                 ("Tight+JPEG", enc.TIGHT, lossy)):
        jobs = [(rect, params) for rect in rects]
        wall: dict[str, list] = {"serial": [], "bands": []}
        cpu: dict[str, list] = {"serial": [], "bands": []}
        for _ in range(rounds):
            for way, fn in (("serial", serial), ("bands", bands)):
                w0, c0 = time.perf_counter(), time.process_time()
                fn(frame, number, jobs)
                wall[way].append(time.perf_counter() - w0)
                cpu[way].append(time.process_time() - c0)

        def fmt(values):
            return f"{1000 * np.min(values):5.1f}/{1000 * np.median(values):5.1f}"

        print(f"{name:<11} {fmt(wall['serial']):>13} {fmt(wall['bands']):>13} "
              f"{fmt(cpu['serial']):>13} {fmt(cpu['bands']):>13}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--part", choices=("all", "bands", "per-client"), default="all")
    args = parser.parse_args(argv)
    if args.part in ("all", "bands"):
        bands_table(args.rounds)
    if args.part in ("all", "per-client"):
        per_client(args.clients, 10 * args.rounds)


if __name__ == "__main__":
    main()
