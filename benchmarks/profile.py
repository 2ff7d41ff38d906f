"""Where vncd's CPU goes: py-spy samples of a server under benchmark load.

    .venv/bin/pip install -e '.[bench]'     # py-spy, pyinstrument
    .venv/bin/python -m benchmarks.profile [--seconds 8] [--fps 30]
        [--encodings raw,zlib,hextile,zrle,tight,tight-jpeg] [--handshakes]
        [--screen array|file] [--top 12] [--keep DIR]

For each encoding, vncd is started as :mod:`benchmarks.throughput` starts
it (the embedding API, the whole 1080p screen changing ``--fps`` times a
second) and one client streams that encoding as in the throughput run,
while ``py-spy record --pid`` samples every thread of the server (idle
threads excluded, ``--native`` off: the C functions of zlib, numpy and
OpenSSL show as the Python line that called them).  ``--handshakes``
profiles ``python -m vncd`` under one client connecting with security
None again and again (:func:`benchmarks.connections.worker`).

For each run the script prints the functions with the most samples
*inside* them (self, % of all samples: where the time is spent) and the
ones with the most samples *under* them (total: which call paths cost),
from py-spy's collapsed stacks.  ``--keep DIR`` leaves the collapsed
stacks there (``DIR/<run>.txt``, one stack per line, usable with
flamegraph tools).

py-spy needs ptrace rights over the server (root, or
``kernel.yama.ptrace_scope=0``).  The figures are shares of the
server's own samples: they say where a run spends its time, not how much
(use :mod:`benchmarks.suite` for that).

What the profiles showed (issue 10; 1080p "video" frames, every pixel
changing, 30 fps offered, one client; shares of the server's busy samples)
-------------------------------------------------------------------------

Before (main at d9d4fba, ``--screen array``; ``--screen file`` for
Tight+JPEG, whose run needs ``lossy=on``):

* Raw, 16 ms CPU/update: socket writes 25 %, channel shuffle
  (``PixelConverter.wire``) 16 %, damage compare 12 %, reactor poll 11 %,
  and 16 % copying the same 8 MB through the write path (``_flush``,
  ``PendingOutput.take``, ``RFBStack.send``/``data_to_send``) plus 6 % for
  the rectangle header concatenation in ``encode_raw``.  Much of it was page
  faults: every frame's fresh 8 MB buffers were given back to the system
  and faulted in again.
* Zlib, 163 ms: deflate 87 %; the rest is noise.
* Hextile, 95 ms: inside ``encode_hextile`` 47 % (the Python loop over
  raw tiles and whole-frame temporaries), numpy tile reductions 28 %.
* ZRLE, 228 ms: deflate 50 %, tile analysis 39 % (sorting every tile for
  its palette 11 %, per-tile Python ``_tile``/``run_lengths``/
  ``_emit_runs`` 20 %).
* Tight, 175 ms: deflate 79 %, RGB TPIXEL copies in ``_piece`` 8 %,
  the incompressibility sample 4 %.
* Tight+JPEG, 33 ms: ``_jpeg`` 66 %, of which two thirds the RGBX -> RGB
  copy handed to Pillow and one third libjpeg-turbo itself; the file
  screen's look 10 %, damage compare 5 %.
* None handshakes, 0.45 ms CPU each: system calls (accept, recv, send,
  close) 40 %, the reactor's poll 10 %, Twisted's log context 5 %; vncd's
  own protocol code about 12 % -- the rest is Twisted per connection.

After this branch (``--screen file``, as the suite runs it):

* Raw, 15-18 ms: the file screen's look (compare with the last copy and
  convert, ``FileScreen.look`` + ``array_equal``) 37 %, socket writes
  19 %, damage compare 14 %, poll 10 %; encoding 10 % (was 40 %).
* Zlib, 133 ms: deflate 81 % (now in pieces on both cores).
* Hextile, 59 ms: numpy work inside ``encode_hextile`` 30 %, tile
  reductions 40 %.
* ZRLE, 154 ms with stdlib zlib (deflate 54 %), 138 ms with zlib-ng:
  deflate 45 %, many-colour tiles together 12 %, the partial bottom row's
  tiles one by one (``np.unique``) 7 %, run tables 4 %, pool hand-offs 5 %.
* Tight, 164 ms with stdlib zlib (deflate 73 %), 134 ms with zlib-ng:
  deflate 63 %, ``_piece`` (RGB TPIXEL copies) 11 %, the
  incompressibility sample 5 %, pool hand-offs 5-8 %.
* Tight+JPEG, 16 ms: libjpeg-turbo 29 %, file look 30 %, damage compare
  11 %: the encoder is no longer the larger part.

With the C extension (``vncd.encoding._speedups``; before = main at
c7cbca4, after = the native branch, both ``--screen file``, profiled one
after the other on a shared machine, load average 2.4-2.9):

* Hextile, 66 -> 21 ms CPU/update (10.8 -> 28.1 full updates/s).
  Before: ``encode_hextile``'s own numpy lines 30 %, the tile
  reductions (``_sum``, ``_amin``, ``_amax``, ``_all``, ``_wrapfunc``)
  26 %, ``_copy_raw_tiles`` 5 %, the file look with ``array_equal`` 14 %.
  After: the C strips 36 % (on both cores), the file look 17 %, damage
  compare 15 %, socket writes 13 %, poll 6 %.
* Raw, 17.7 -> 12.6 ms.  Before: file look (``look`` + ``array_equal``
  + ``_all``) 34 %, socket writes 23 %, damage compare 14 %, channel
  shuffle and copy (``_shuffle_into``, ``PixelConverter.raw``) 11 %.
  After: socket writes 29 %, damage compare 25 %, poll 13 %, the C look
  12 %, ``encode_raw`` (C shuffle into the bytes sent) 5 %.  What is left
  is outside the encoders: the write path and ``Display.compare``.
* ZRLE, 132 -> 104 ms.  Before: deflate (``_compress_piece``) 55 %,
  ``_many_colour_tiles`` 9 %, ``_emit_runs`` 3 %, ``zrle_tiles`` 2 %, pool
  hand-offs about 10 %.  After: deflate 67 %, the C tile writer
  (``tiles_c`` strips) 3 %, pool hand-offs and waits about 18 %: deflate
  is now nearly all of ZRLE's cost.

Exact damage, the C look and Tight's colour count, and the write path
(this stop; ``--screen file``, perf and py-spy on the shared 2-core
machine):

* Raw at 60 fps, before: the file look (compare with a byte copy of the
  file, copy, convert) 29 %, socket sends 29 %, the display's tile compare
  10 %, poll 9 %, Raw shuffle 9 %; strace: 18 sends, 36 ``epoll_ctl`` and
  21 ``epoll_wait`` per frame -- the update's 17 bands went to the
  transport one per pause/resume cycle.  After (the file screen reports
  exact tile damage and the display serves its framebuffer without a
  compare; the look compares the file with the framebuffer through the
  conversion, no copy kept; queued writes leave several per ``sendmsg``
  without being joined; the shuffle has AVX2 loops): perf shows the
  kernel's copy into the socket 13 %, the look's two loops 21 % (half of
  it the looks that find nothing: the suite looks twice per frame
  offered), the Raw shuffle 11 %, the interpreter about 15 %; strace: 8
  sends, 16 ``epoll_ctl``, 11 ``epoll_wait`` per frame.  Then Raw's rows
  of the same span went out as one rectangle (one shuffle, one write):
  cProfile of 5 s at 60 fps under Debian's python3.11 leaves the kernel's
  loopback sends (about 3 ms of each frame's 5-6), the look, the shuffle
  and no Python function above 1 %.
* Tight+JPEG at 30 fps, before: the colour analysis ahead of the JPEG
  encoder (``_keys`` 31 %, the sample sort 11 %, ``_distinct`` 3 %),
  libjpeg-turbo 25 %.  After (``tight_palette`` in C stops at the first
  colour too many): 11.2-11.7 instead of 14.4 ms per update in the same
  profile; libjpeg-turbo 37 %, the file look 5-8 %.  py-spy still charges
  29 % to the line that calls the count, but timed directly the count of
  a 1080p frame's 17 bands costs 0.03 ms against 6.6 ms of JPEG: those
  samples are pool threads between the C call and the next Python line,
  not the count.

None handshakes after the handshake work of the same stop (cProfile of
3,000 in a row, strace -c -f of 1,000, callgrind instruction counts of 500):
before, every one of the 4 sends cost an extra poll turn (epoll_wait plus
two epoll_ctl), Twisted's log context wrapped each of the 5 reactor events,
about 64 ``Enum.__hash__`` calls came from the state tables, monitor event
payloads were built with no monitor listening and three numpy tile masks
were made per connection.  After (sends at once when nothing is queued,
identity-hashed state enums, payloads only for listeners, masks on first
use): 1.05 -> 0.76 M instructions per None handshake and 1.25 -> 0.90 M
per VNC-password one; 32.6 -> 20.5 system calls per None handshake (QEMU
7.2: 42); no vncd function above about 2 %.

The next stop (issue 10, ``benchmarks.connections --instructions 300``,
one sequential client): the ``vncd`` command's own reactor
(:mod:`vncd.reactor`) dispatches events without Twisted's per-event log
context (-12 %); TCP listeners accept through a leaner loop than
``Port.doRead`` (no per-accept log buffer of three ``Logger`` objects, no
enum conversions in ``socket.accept``: -6 %); the RFB connections share
one handler table per class, and repeated per-event work went from the
protocol (-9 %); immediate writes call ``socket.send`` directly (-3 %).
Together 0.748 -> 0.548 M instructions per None handshake and 0.880 ->
0.665 M per VNC-password one (QEMU 7.2 in the same run: 0.47 and 0.55 M;
its count moves by up to a third between runs with its main loop's own
work); X509None 11.9 -> 11.6 M and
TLSNone 12.3 -> 12.0 M, nearly all OpenSSL (QEMU: 25.8 M and 7.9 M).
TLS flights already leave in one send each (8 sends and 8 receives per
X509None handshake, against QEMU's 14 and 18).  Time does not follow
instructions one to one: QEMU runs its 0.5 M in 0.07-0.09 ms of user time,
vncd its 0.55 M in 0.21-0.25 ms under the pyenv Python 3.11 of the
development machine (a shared-library build without PGO/LTO) and in
0.13-0.15 ms under Debian's optimised python3.11; the interpreter's
instructions per cycle, not vncd's instruction count, is most of the gap
left.  What remains per None handshake is spread thin: vncd's protocol
path (display registration and ``attach`` about 9 % together, the
connection log lines about 4 %), Twisted's transport set-up and close
(``Server.__init__``, ``readConnectionLost``'s adapter lookup,
``_closeSocket``), and the reactor's timed-call bookkeeping.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading

from benchmarks import connections, peers, throughput

#: Samples per second py-spy takes.
RATE = 250

#: Longest profile accepted per run.
MAX_SECONDS = 60.0

#: Seconds given to py-spy beyond the run to write its output.
PYSPY_GRACE = 30.0


def pyspy() -> str:
    found = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(found):
        raise SystemExit("py-spy is not installed: .venv/bin/pip install -e '.[bench]'")
    return found


def record(pid: int, seconds: float, out: str) -> subprocess.Popen:
    """Start py-spy sampling process ``pid`` for ``seconds`` into ``out`` (collapsed)."""
    return subprocess.Popen(
        [pyspy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
         "--rate", str(RATE), "--format", "raw", "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def short(frame: str) -> str:
    """``function (path/file.py:line)`` -> ``function (file.py)`` (lines merged)."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = path.split("/")
    keep = parts[-2:] if len(parts) > 1 and parts[-2] in ("vncd", "encoding", "creds",
                                                          "compat", "screens") else parts[-1:]
    return f"{name} ({'/'.join(keep)})"


def summarise(collapsed: str) -> tuple[int, collections.Counter, collections.Counter]:
    """(samples, self counts, total counts) per function from py-spy's raw output."""
    own: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    samples = 0
    with open(collapsed) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [short(fr) for fr in stack.split(";") if " (" in fr]
            if not frames:
                continue
            samples += n
            own[frames[-1]] += n
            for name in set(frames):
                total[name] += n
    return samples, own, total


def report(label: str, collapsed: str, top: int) -> None:
    samples, own, total = summarise(collapsed)
    print(f"\n## {label}: {samples} samples of busy server threads")
    if not samples:
        return
    print(f"{'self %':>7}  function")
    for name, n in own.most_common(top):
        print(f"{100 * n / samples:7.1f}  {name}")
    print(f"{'total %':>7}  function (vncd's own)")
    shown = 0
    for name, n in total.most_common():
        if "(vncd/" in name or "(encoding/" in name or "(creds/" in name or "(screens/" in name:
            print(f"{100 * n / samples:7.1f}  {name}")
            shown += 1
            if shown == top:
                break


def wait_pyspy(spy: subprocess.Popen, seconds: float) -> None:
    try:
        _, err = spy.communicate(timeout=seconds + PYSPY_GRACE)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.communicate()
        raise RuntimeError("py-spy did not finish") from None
    if spy.returncode:
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace').strip()}")


def profile_encoding(children: peers.Children, name: str, args, out: str) -> None:
    display = peers.free_display()
    if args.fb is not None:
        argv = args.fb.vncd_argv(display)
    else:
        argv = [sys.executable, "-m", "benchmarks.throughput", "--role", "vncd",
                "--display", str(display), "--fps", str(args.fps), "--picture", args.picture]
    server = children.start(argv, name="vncd")
    try:
        port = peers.VNC_BASE_PORT + display
        server.wait_for_port(port)
        result: list = []
        client = threading.Thread(target=lambda: result.append(
            throughput.stream(port, name, args.seconds + 2, server, [])))
        client.start()
        # Let the first full update through before sampling.
        spy = None
        try:
            client.join(1.5)
            spy = record(server.pid, args.seconds, out)
            wait_pyspy(spy, args.seconds)
        finally:
            client.join()
        r = result[0]
        if r.problem:
            print(f"{name}: {r.problem}")
        elif r.wall:
            print(f"{name}: {r.full / r.wall:.1f} full updates/s, "
                  f"server {1000 * r.server_cpu / max(r.updates, 1):.1f} ms CPU/update")
    finally:
        children.stop(server)


def profile_handshakes(children: peers.Children, args, out: str) -> None:
    with tempfile.TemporaryDirectory(prefix="vncd-profile-") as root:
        files = connections.make_files(root)
        display = peers.free_display()
        port = peers.VNC_BASE_PORT + display
        server = children.start(peers.vncd_argv(
            ["-screen", f"image,file={files.picture}",
             *connections.server_options("none", files, display)]), name="vncd")
        try:
            server.wait_for_port(port)
            spec = connections.ClientSpec(port, "none", "", "", "", connections.fresh_source())
            spy = record(server.pid, args.seconds, out)
            results, spent = connections.run_clients(spec, 1, args.seconds, server)
            wait_pyspy(spy, args.seconds)
            done = sum(r.done for r in results)
            print(f"handshakes: {done / args.seconds:.0f}/s, "
                  f"{1000 * spent / max(done, 1):.2f} ms server CPU each")
        finally:
            children.stop(server)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--picture", choices=throughput.PICTURES, default="video")
    parser.add_argument("--encodings", default=",".join(throughput.ENCODINGS),
                        help=f"comma-separated subset of {', '.join(throughput.ENCODINGS)}"
                             " (empty: none)")
    parser.add_argument("--handshakes", action="store_true",
                        help="also profile a None-security handshake loop")
    parser.add_argument("--screen", choices=("array", "file"), default="array",
                        help="array: the embedding API fed in process (throughput.py); "
                             "file: -screen file on a painted framebuffer file (suite.py)")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--keep", help="directory that keeps the collapsed stacks")
    args = parser.parse_args(argv)
    encodings = [e for e in args.encodings.split(",") if e]
    unknown = sorted(set(encodings) - set(throughput.ENCODINGS))
    if unknown:
        parser.error(f"unknown encoding(s): {', '.join(unknown)}")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:.0f}]")
    pyspy()
    peers.stop_on_sigterm()
    multiprocessing.set_start_method("fork", force=True)
    print(f"py-spy profiles, {args.seconds:g} s each, load average {peers.load_average()}")
    with tempfile.TemporaryDirectory(prefix="vncd-profile-", dir=throughput.FRAMEBUFFER_DIR) as tmp, \
            peers.Children() as children:
        keep = args.keep or tmp
        args.fb = None
        if args.screen == "file":
            from benchmarks.suite import FramebufferFile
            args.fb = FramebufferFile(children, tmp, args.fps, args.picture)
        os.makedirs(keep, exist_ok=True)
        runs = [(name, lambda out, name=name: profile_encoding(children, name, args, out))
                for name in encodings]
        if args.handshakes:
            runs.append(("handshakes-none", lambda out: profile_handshakes(children, args, out)))
        for label, run in runs:
            out = os.path.join(keep, f"{label}.txt")
            try:
                run(out)
            except RuntimeError as e:
                print(f"{label}: {e}")
                continue
            report(label, out, args.top)


if __name__ == "__main__":
    peers.run_script(main)
