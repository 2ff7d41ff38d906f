"""One update's bands: encoded one after the other (pieces in parallel inside
each) or whole bands in parallel (:func:`vncd.updates.encode_many`).

    .venv/bin/python -m benchmarks.bands [--rounds 25]

The 17 bands of a full 1080p desktop change, per encoding, alternating the
two ways round by round; prints wall and CPU ms (min / median).  On a
shared machine the minimum is the figure with a free core.  This is what
:data:`vncd.updates.encoders.PARALLEL_BANDS` was chosen from.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks import frames
from vncd import encoding as enc
from vncd.encoding import EncodeParams, parallel
from vncd.pixels import DEFAULT_FORMAT
from vncd.updates import Rect, encoders


def serial(frame, encoding, jobs):
    """Bands one after the other (each encoder splits pieces over the pool)."""
    return [encoders.ENCODERS[encoding](frame, *rect, params) for rect, params in jobs]


def bands(frame, encoding, jobs):
    """Whole bands in parallel, whatever the encoding."""
    return parallel.map_ordered(
        lambda job: encoders.ENCODERS[encoding](frame, *job[0], job[1]), list(jobs))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args(argv)
    frame = frames.desktop(seed=1)
    lossless = EncodeParams(DEFAULT_FORMAT, 1)
    lossy = EncodeParams(DEFAULT_FORMAT, 1, 75, None)
    rects = [Rect(0, y, 1920, min(64, 1080 - y)) for y in range(0, 1080, 64)]
    print(f"{len(rects)} bands of a 1920x1080 desktop, {parallel.workers()} workers,"
          f" {args.rounds} rounds; ms min/median")
    print(f"{'encoding':<11} {'wall serial':>13} {'wall bands':>13} "
          f"{'CPU serial':>13} {'CPU bands':>13}")
    for name, number, params in (("Raw", enc.RAW, lossless), ("Zlib", enc.ZLIB, lossless),
                                 ("Hextile", enc.HEXTILE, lossless),
                                 ("ZRLE", enc.ZRLE, lossless), ("Tight", enc.TIGHT, lossless),
                                 ("Tight+JPEG", enc.TIGHT, lossy)):
        jobs = [(rect, params) for rect in rects]
        wall: dict[str, list] = {"serial": [], "bands": []}
        cpu: dict[str, list] = {"serial": [], "bands": []}
        for _ in range(args.rounds):
            for way, fn in (("serial", serial), ("bands", bands)):
                w0, c0 = time.perf_counter(), time.process_time()
                fn(frame, number, jobs)
                wall[way].append(time.perf_counter() - w0)
                cpu[way].append(time.process_time() - c0)

        def fmt(values):
            return f"{1000 * np.min(values):5.1f}/{1000 * np.median(values):5.1f}"

        print(f"{name:<11} {fmt(wall['serial']):>13} {fmt(wall['bands']):>13} "
              f"{fmt(cpu['serial']):>13} {fmt(cpu['bands']):>13}", flush=True)


if __name__ == "__main__":
    main()
