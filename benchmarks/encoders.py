"""Per-encoding cost of one full 1080p frame: encode time, bytes, decode time.

    .venv/bin/python -m benchmarks.encoders [--repeat N] [--format server|rgb565]

For each encoding and picture (desktop, noise, video) the best of N
encodes is reported (the minimum is the least disturbed by other load on
the machine), with the output size and the ratio to Raw; then the time
vncd's own decoder needs for the same data.  Tight with JPEG (quality
level 6, Pillow) is a separate row.  Single thread, whole frame as one
rectangle, default compression level.
"""

from __future__ import annotations

import argparse
import time

from benchmarks import frames
from vncd import encoding as enc
from vncd.encoding import EncodeParams
from vncd.encoding.decode import NEED_DATA, FramebufferDecoder, UpdateComplete
from vncd.encoding.messages import framebuffer_update
from vncd.pixels import DEFAULT_FORMAT, PixelFormat
from vncd.updates import DEFAULT_COMPRESS_LEVEL, ENCODERS, JPEG_QUALITY

FORMATS = {"server": DEFAULT_FORMAT,
           "rgb565": PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)}


def best(fn, repeat: int):
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def decode(data: bytes, pf: PixelFormat, w: int, h: int) -> None:
    decoder = FramebufferDecoder(w, h, pf)
    decoder.receive_data(data)
    while True:
        event = decoder.next_event()
        if event is NEED_DATA:
            raise RuntimeError("incomplete update")
        if isinstance(event, UpdateComplete):
            return


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--format", choices=sorted(FORMATS), default="server")
    args = parser.parse_args(argv)
    pf = FORMATS[args.format]
    w, h = frames.WIDTH, frames.HEIGHT
    pictures = {"desktop": frames.desktop(), "noise": frames.noise(), "video": frames.video(1.0)}
    rows = [(name, number, EncodeParams(pf, DEFAULT_COMPRESS_LEVEL))
            for number, name in ((enc.RAW, "Raw"), (enc.ZLIB, "Zlib"), (enc.HEXTILE, "Hextile"),
                                 (enc.ZRLE, "ZRLE"), (enc.TIGHT, "Tight"))]
    rows.append(("Tight+JPEG q6", enc.TIGHT,
                 EncodeParams(pf, DEFAULT_COMPRESS_LEVEL, JPEG_QUALITY[6])))
    print(f"1920x1080 full frame, {args.format} pixel format, best of {args.repeat}")
    print(f"{'encoding':<14} {'picture':<8} {'encode ms':>10} {'fps':>7} {'bytes':>10} "
          f"{'vs raw':>7} {'decode ms':>10}")
    raw_size = w * h * pf.bytes_per_pixel
    for label, number, params in rows:
        encoder = ENCODERS[number]
        for picture, frame in pictures.items():
            seconds, rect = best(lambda: encoder(frame, 0, 0, w, h, params), args.repeat)
            data = framebuffer_update(rect.count) + b"".join(rect.chunks(False))
            decode_s, _ = best(lambda: decode(data, pf, w, h), max(1, args.repeat // 2))
            print(f"{label:<14} {picture:<8} {seconds * 1000:10.1f} {1 / seconds:7.1f} "
                  f"{rect.size:10d} {rect.size / raw_size:7.3f} {decode_s * 1000:10.1f}")


if __name__ == "__main__":
    main()
