"""The whole performance suite in one command: vncd against the peers installed.

    .venv/bin/python -m benchmarks.suite [--quick] [--parts streaming,cores,fanout,handshakes,memory]
        [--rounds 3] [--seconds 5] [--encodings raw,zlib,hextile,zrle,tight,tight-jpeg]
        [--before DIR] [--json suite.json]

Peers: QEMU 7.2 (``qemu-system-x86``, the reference for handshakes and idle
memory) and x11vnc (the reference for full-screen streaming; not needed by
``.ci/run``, install it by hand: ``apt-get install -y x11vnc xvfb``).  A
part whose peer is missing still measures vncd and says so.

Every part alternates the servers round by round (vncd first in odd
rounds, the peer first in even ones), so slow drifts of the shared
machine's load hit both; the table gives the median over ``--rounds``
rounds with the spread (min..max), the ratio vncd / peer of the medians,
the ratios within each round (median and spread: "by round"; the
machine's drifts cancel there), the issue's target and whether it is met
(judged on the ratio of the medians).  Check ``uptime`` first: with a
load average above 1 the figures say more about the neighbours than
about the servers.

Parts:

* ``streaming`` -- full-screen updates of a 1920x1080 picture in which
  every pixel changes (:mod:`benchmarks.throughput`'s frames), one client
  asking for an incremental update after each one (that module's client),
  at 30 frames a second offered and again at ``--max-fps`` (default 60,
  more than either server delivers in any encoding but Raw: "as fast as
  the server takes them" without a painter that eats a core).  Figures are
  per *screen*, 1920x1080 pixels' worth of updates (see
  :func:`streaming_rows`).  The
  like-for-like setup: one painter process writes the frames into a raw
  BGRX framebuffer file on /dev/shm; vncd maps it with ``-screen
  file,format=bgrx`` and x11vnc with ``-rawfb map:FILE@1920x1080x32``, so
  both poll the same memory, neither gets frames pushed, and the
  painter's CPU is counted for neither.  vncd looks at the file twice per
  offered frame (``rate=``), x11vnc polls with ``-wait 1 -defer 1`` (its
  best throughput; its defaults cap it near 25 updates/s).  vncd gets
  ``lossy=on`` (QEMU's option, off by default there and in vncd): without
  it Tight never sends JPEG, while x11vnc sends JPEG to any client that
  asks for a quality level.  Per encoding: screens/s, server CPU per
  screen (utime+stime of every thread of the server process, from
  /proc), and bytes per screen.
  ``--before DIR`` adds the vncd of another checkout (main's work tree)
  as a third server in the same rounds: before/after rows per encoding.
* ``cores`` -- vncd alone, pinned with ``taskset -c 0`` and then
  ``taskset -c 0,1``, streaming at ``--max-fps``: updates/s and the
  scaling (the painter and client run unpinned).
* ``fanout`` -- in process, no sockets (:mod:`benchmarks.updates`): CPU of
  one display tick sending a full-frame desktop change to 50 clients
  against one (the shared encode cache), and the time from ``damage()``
  until all 50 were written (p99), for Tight and ZRLE.
* ``handshakes`` -- one client connecting again and again (up to
  ServerInit, then close; :mod:`benchmarks.connections` with one worker)
  for None, VNC password, TLSNone and X509None (client certificate):
  connections per second and server CPU per handshake, vncd against QEMU
  with the same ``-object``/``-vnc`` options.
* ``memory`` -- server memory (PSS) per idle connected TLS client with
  ``--clients`` clients (:mod:`benchmarks.idle_memory`).

``--quick`` is one round of 3 seconds, 200 idle clients and 20 latency
samples: a smoke run to check the suite, not figures to quote.  The JSON
file (``--json``) holds every sample of every round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from benchmarks import connections, frames, idle_memory, peers, throughput, updates
from vncd import encoding as enc

PARTS = ("streaming", "cores", "fanout", "handshakes", "memory")

#: Frames per second offered in the paced streaming run.
PACED_FPS = 30.0

#: vncd looks at the framebuffer file this many times per offered frame.
LOOKS_PER_FRAME = 2

#: vncd's -screen file look rate limit (vncd.screens.file.MAX_RATE).
MAX_LOOK_RATE = 240.0

#: x11vnc's options for the raw framebuffer: no X display at all, poll at
#: its fastest, no client-side cache, no remote control or cursor work.
X11VNC_RAWFB = ["-localhost", "-nopw", "-forever", "-shared", "-nonap", "-nowait_bog",
                "-wait", "1", "-defer", "1", "-nonc", "-norc", "-nocursor", "-noxrecord"]

#: Encodings of the fan-out part and the clients it serves.
FANOUT_ENCODINGS = {"tight": enc.TIGHT, "zrle": enc.ZRLE}
FANOUT_CLIENTS = 50

#: A rate at least this share of the frames offered counts as every frame.
PAINT_RATE_SHARE = 0.97

#: Issue 10's targets.
TARGET_FANOUT_RATIO = 1.5
TARGET_LATENCY_MS = 33.0
TARGET_BYTES_RATIO = 1.1

#: Bounds on the options, so a typo cannot tie up the shared machine.
MAX_ROUNDS = 10
MAX_SECONDS = 60.0


@dataclass
class Row:
    """One line of the table: a figure of vncd's, the peer's, the target."""

    part: str
    metric: str
    vncd: list[float] = field(default_factory=list)
    peer: list[float] = field(default_factory=list)
    peer_name: str = ""
    #: "<=" (vncd at most target x peer, or at most target when absolute),
    #: ">=" (vncd at least ...), or "" for no target.
    sense: str = ""
    #: The target as a ratio to the peer, or as an absolute value.
    target: float | None = None
    absolute: bool = False
    unit: str = ""
    note: str = ""
    #: For rates: the most the source offers; vncd within
    #: :data:`PAINT_RATE_SHARE` of it meets a ">=" target whatever the peer
    #: did (both delivered every frame; the rest is timing noise).
    cap: float | None = None
    #: vncd / peer within each round both measured (see :func:`round_ratios`).
    paired: list[float] = field(default_factory=list)

    def ratio(self) -> float | None:
        if not self.vncd or not self.peer:
            return None
        peer = statistics.median(self.peer)
        return statistics.median(self.vncd) / peer if peer else None

    def met(self) -> str:
        if self.target is None or not self.vncd:
            return ""
        if (self.cap is not None and self.sense == ">="
                and statistics.median(self.vncd) >= PAINT_RATE_SHARE * self.cap):
            return "met (paint rate)"
        value = statistics.median(self.vncd) if self.absolute else self.ratio()
        if value is None:
            return "no peer"
        ok = value <= self.target if self.sense == "<=" else value >= self.target
        return "met" if ok else "MISSED"


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    digits = 2 if abs(med) < 10 else 1 if abs(med) < 100 else 0
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def round_ratios(vncd: dict[int, float], peer: dict[int, float]) -> list[float]:
    """vncd / peer in each round that measured both (rounds as keys).

    The two figures of a round were taken minutes apart at most, so a
    drift of the shared machine's speed (which moves both servers' figures
    by tens of per cent between rounds) mostly cancels in their ratio; the
    median of these ratios is the steadier comparison when the spread of
    the medians overlaps.
    """
    return [vncd[r] / peer[r] for r in sorted(vncd) if r in peer and peer[r]]


def markdown(rows: list[Row]) -> str:
    lines = ["| part | metric | vncd | peer | vncd/peer | by round | target | |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r.ratio()
        if r.target is None:
            target = ""
        elif r.absolute:
            target = f"{r.sense} {r.target:g} {r.unit}".strip()
        else:
            target = f"{r.sense} {r.target:g}x"
        peer = f"{spread(r.peer)} {r.peer_name}".strip() if r.peer else "-"
        lines.append(f"| {r.part} | {r.metric}{' (' + r.unit + ')' if r.unit else ''} | "
                     f"{spread(r.vncd)} | {peer} | "
                     f"{f'{ratio:.2f}' if ratio is not None else '-'} | "
                     f"{spread(r.paired) if r.paired else '-'} | {target} | "
                     f"{r.met()}{' ' + r.note if r.note else ''} |")
    return "\n".join(lines)


def say(text: str) -> None:
    print(text, flush=True)


# -- streaming -----------------------------------------------------------------

class FramebufferFile:
    """A raw BGRX 1920x1080 framebuffer file and the painter that keeps changing it."""

    def __init__(self, children: peers.Children, directory: str, fps: float,
                 picture: str) -> None:
        self.path = os.path.join(directory, f"fb-{fps:g}.bgrx")
        with open(self.path, "wb") as f:
            f.truncate(frames.WIDTH * frames.HEIGHT * 4)
        self.fps = fps
        self.painter = children.start(
            [sys.executable, "-m", "benchmarks.suite", "--role", "paint", "--path", self.path,
             "--fps", str(fps), "--picture", picture], name="painter")

    def vncd_argv(self, display: int, pin: str | None = None) -> list[str]:
        rate = min(MAX_LOOK_RATE, LOOKS_PER_FRAME * self.fps)
        argv = peers.vncd_argv(
            ["-screen", f"file,path={self.path},format=bgrx,"
                        f"size={frames.WIDTH}x{frames.HEIGHT},rate={rate:g}",
             "-vnc", f"127.0.0.1:{display},lossy=on"])
        return ["taskset", "-c", pin, *argv] if pin else argv

    def x11vnc_argv(self, port: int) -> list[str]:
        return ["x11vnc", "-rawfb",
                f"map:{self.path}@{frames.WIDTH}x{frames.HEIGHT}x32:ff0000/ff00/ff",
                "-rfbport", str(port), *X11VNC_RAWFB]


def stream_server(children: peers.Children, name: str, argv: list[str], port: int,
                  encodings: list[str], seconds: float,
                  root: str = peers.ROOT) -> dict[str, throughput.Result]:
    server = children.start(argv, name=name, root=root)
    try:
        server.wait_for_port(port)
        return {e: throughput.stream(port, e, seconds, server, []) for e in encodings}
    finally:
        children.stop(server)


def streaming(children, args, tmp: str, results: dict) -> list[Row]:
    have_x11vnc = peers.tool("x11vnc") is not None
    if not have_x11vnc:
        say(f"streaming: x11vnc column skipped: {peers.install_hint('x11vnc')}")
    rows = []
    for fps in (PACED_FPS, args.max_fps):
        label = f"{fps:g} fps offered"
        fb = FramebufferFile(children, tmp, fps, args.picture)
        try:
            samples: dict[str, dict[str, list]] = {"vncd": {}, "x11vnc": {}, "before": {}}
            #: The round of each sample, in the same order.
            rounds: dict[str, dict[str, list]] = {"vncd": {}, "x11vnc": {}, "before": {}}
            servers = ["vncd", "x11vnc"] + (["before"] if args.before else [])
            for rnd in range(args.rounds):
                order = servers if rnd % 2 == 0 else servers[::-1]
                for server in order:
                    if server == "x11vnc" and not have_x11vnc:
                        continue
                    display = peers.free_display()
                    port = peers.VNC_BASE_PORT + display
                    argv = fb.x11vnc_argv(port) if server == "x11vnc" else fb.vncd_argv(display)
                    root = args.before if server == "before" else peers.ROOT
                    try:
                        got = stream_server(children, server, argv, port, args.encodings,
                                            args.seconds, root)
                    except RuntimeError as e:
                        say(f"streaming {label}: {server} failed: {e}")
                        continue
                    for e, r in got.items():
                        samples[server].setdefault(e, []).append(r)
                        rounds[server].setdefault(e, []).append(rnd)
                        n = max(screens(r), 1e-9)
                        say(f"  {label} round {rnd + 1} {server:<6} {e:<10} "
                            + (r.problem or f"{r.full / r.wall:5.1f} full/s, "
                               f"{n / r.wall:5.1f} screens/s, "
                               f"{1000 * r.server_cpu / n:6.1f} ms CPU/screen, "
                               f"{r.bytes / n / 1e3:7.0f} KB/screen"))
            results.setdefault("streaming", {})[label] = {
                s: {e: [asdict(r) for r in rs] for e, rs in by.items()}
                for s, by in samples.items()}
            rows += streaming_rows(label, samples, fps, rounds)
        finally:
            children.stop(fb.painter)
    return rows


def screens(r: throughput.Result) -> float:
    """Whole screens' worth of pixels a run's updates covered."""
    return r.area / r.screen if r.screen else 0.0


def streaming_rows(label: str, samples: dict, fps: float,
                   rounds: dict | None = None) -> list[Row]:
    """Per encoding: screens/s, CPU and bytes per screen, vncd against x11vnc.

    A "screen" is 1920x1080 pixels' worth of updates: a server that looks
    at the file while the painter is half way through a frame sends the
    frame in two updates, so figures per screen compare servers fairly
    where figures per update would not.  Full-screen updates/s (the
    throughput benchmark's column) are in the JSON samples.  ``rounds``
    gives each sample's round (as ``samples``, server -> encoding -> list),
    for the ratios round by round.
    """
    rows = []

    def ok(server: str, e: str) -> dict[int, throughput.Result]:
        """The usable samples of ``server`` for ``e``, by round."""
        rs = samples[server].get(e, [])
        numbers = (rounds or {}).get(server, {}).get(e) or range(len(rs))
        return {n: r for n, r in zip(numbers, rs) if not r.problem and r.wall and screens(r)}

    def figures(by_round: dict, measure) -> dict[int, float]:
        return {n: measure(r) for n, r in by_round.items()}

    def row(part: str, metric: str, v: dict, p: dict, measure, name: str, *args,
            **kwargs) -> Row:
        fv, fp = figures(v, measure), figures(p, measure)
        return Row(part, metric, list(fv.values()), list(fp.values()), name, *args,
                   paired=round_ratios(fv, fp), **kwargs)

    def rate(r):
        return screens(r) / r.wall

    def cpu(r):
        return 1000 * r.server_cpu / screens(r)

    def size(r):
        return r.bytes / screens(r) / 1e3

    for e in samples["vncd"]:
        v, p = ok("vncd", e), ok("x11vnc", e)
        name = "x11vnc" if p else ""
        rows.append(row("streaming", f"{e}, {label}: screens/s", v, p, rate, name,
                        ">=", 1.0, cap=fps))
        rows.append(row("streaming", f"{e}, {label}: server CPU/screen", v, p, cpu, name,
                        "<=", 1.0, unit="ms"))
        rows.append(row("streaming", f"{e}, {label}: bytes/screen", v, p, size, name,
                        "<=", TARGET_BYTES_RATIO, unit="KB"))
    for e in samples.get("before", {}):
        v, b = ok("vncd", e), ok("before", e)
        rows.append(row("before/after", f"{e}, {label}: screens/s", v, b, rate, "before"))
        rows.append(row("before/after", f"{e}, {label}: server CPU/screen", v, b, cpu,
                        "before", unit="ms"))
    return rows


# -- cores ---------------------------------------------------------------------

def cores(children, args, tmp: str, results: dict) -> list[Row]:
    fb = FramebufferFile(children, tmp, args.max_fps, args.picture)
    rows = []
    try:
        pins = {"1 core": "0", "2 cores": "0,1"} if (os.cpu_count() or 1) >= 2 else {"1 core": "0"}
        samples: dict[str, dict[str, list]] = {p: {} for p in pins}
        by_round: dict[str, dict[str, dict[int, float]]] = {p: {} for p in pins}
        for rnd in range(args.rounds):
            order = list(pins) if rnd % 2 == 0 else list(reversed(pins))
            for label in order:
                display = peers.free_display()
                port = peers.VNC_BASE_PORT + display
                try:
                    got = stream_server(children, f"vncd ({label})",
                                        fb.vncd_argv(display, pins[label]), port,
                                        args.core_encodings, args.seconds)
                except RuntimeError as e:
                    say(f"cores: vncd on {label} failed: {e}")
                    continue
                for e, r in got.items():
                    if not r.problem and r.wall:
                        samples[label].setdefault(e, []).append(screens(r) / r.wall)
                        by_round[label].setdefault(e, {})[rnd] = screens(r) / r.wall
                        say(f"  cores round {rnd + 1} {label:<7} {e:<10} "
                            f"{screens(r) / r.wall:5.1f} screens/s, "
                            f"{100 * r.server_cpu / r.wall:4.0f} % CPU")
                    else:
                        say(f"  cores round {rnd + 1} {label:<7} {e:<10} {r.problem}")
        results["cores"] = samples
        if "2 cores" in samples:
            for e in args.core_encodings:
                rows.append(Row("cores", f"{e}, {args.max_fps:g} fps offered: screens/s, "
                                         "taskset 2 cores vs 1",
                                samples["2 cores"].get(e, []), samples["1 core"].get(e, []),
                                "vncd on 1 core",
                                paired=round_ratios(by_round["2 cores"].get(e, {}),
                                                    by_round["1 core"].get(e, {}))))
    finally:
        children.stop(fb.painter)
    return rows


# -- fan-out -------------------------------------------------------------------

def fanout(args, results: dict) -> list[Row]:
    rows = []
    out = results.setdefault("fanout", {})
    for name, number in FANOUT_ENCODINGS.items():
        ratios, p99s = [], []
        for _ in range(args.rounds):
            one, _ = updates.tick_cpu(1, number, args.fanout_repeat)
            many, _ = updates.tick_cpu(FANOUT_CLIENTS, number, args.fanout_repeat)
            ratios.append(min(many) / min(one))
            samples = updates.latency_samples(FANOUT_CLIENTS, number, "full",
                                              args.latency_samples)
            p99s.append(1000 * float(np.percentile(samples, 99)))
            say(f"  fan-out {name:<6} CPU {1000 * min(one):6.1f} ms -> "
                f"{1000 * min(many):6.1f} ms for {FANOUT_CLIENTS} clients, "
                f"full-frame p99 {p99s[-1]:.1f} ms")
        out[name] = {"cpu_ratio": ratios, "p99_ms": p99s}
        rows.append(Row("fan-out", f"{name}: CPU {FANOUT_CLIENTS} clients / 1 client",
                        ratios, sense="<=", target=TARGET_FANOUT_RATIO, absolute=True,
                        note="(in process)"))
        rows.append(Row("fan-out", f"{name}: full-frame latency p99, {FANOUT_CLIENTS} clients",
                        p99s, sense="<=", target=TARGET_LATENCY_MS, absolute=True, unit="ms",
                        note="(in process)"))
    return rows


# -- handshakes ----------------------------------------------------------------

def vncd_and_qemu(files, options: list[str], have_qemu: bool,
                  rnd: int) -> list[tuple[str, list[str]]]:
    """vncd (showing a still picture of QEMU's console size) and, when it is
    installed, QEMU 7.2 with the same options; the order alternates by round."""
    servers = [("vncd", peers.vncd_argv(["-screen", f"image,file={files.picture}"] + options))]
    if have_qemu:
        servers.append(("QEMU", peers.qemu_argv(options)))
    return servers[::-1] if rnd % 2 else servers


def handshakes(children, args, tmp: str, results: dict) -> list[Row]:
    have_qemu = peers.tool("qemu-system-x86_64") is not None
    if not have_qemu:
        say(f"handshakes: QEMU skipped: {peers.install_hint('qemu-system-x86_64')}")
    os.makedirs(os.path.join(tmp, "handshakes"), exist_ok=True)
    files = connections.make_files(os.path.join(tmp, "handshakes"))
    display = peers.free_display()
    port = peers.VNC_BASE_PORT + display
    samples: dict = {}
    for rnd in range(args.rounds):
        for case in connections.CASES:
            options = connections.server_options(case, files, display)
            servers = vncd_and_qemu(files, options, have_qemu, rnd)
            for name, argv in servers:
                row = connections.measure(children, name, argv, case, files, port, 1,
                                          args.seconds)
                if row.problem:
                    say(f"  handshakes {case} {name}: {row.problem.splitlines()[0]}")
                    continue
                s = samples.setdefault(case, {}).setdefault(
                    name, {"rate": [], "cpu_ms": [], "round": []})
                s["rate"].append(row.rate)
                s["cpu_ms"].append(row.cpu_ms)
                s["round"].append(rnd)
                say(f"  handshakes round {rnd + 1} {case:<9} {name:<5} {row.rate:6.0f}/s, "
                    f"{row.cpu_ms:5.2f} ms CPU each")
    results["handshakes"] = samples
    rows = []
    for case, by in samples.items():
        v, q = by.get("vncd", {}), by.get("QEMU", {})
        peer = "QEMU 7.2" if q else ""

        def by_round(s: dict, key: str) -> dict[int, float]:
            return dict(zip(s.get("round", []), s.get(key, [])))

        rows.append(Row("handshakes", f"{case}: connections/s, one client",
                        v.get("rate", []), q.get("rate", []), peer, ">=", 1.0,
                        paired=round_ratios(by_round(v, "rate"), by_round(q, "rate"))))
        cpu_target = 1.0 if case in ("none", "vncauth") else None
        rows.append(Row("handshakes", f"{case}: server CPU/handshake",
                        v.get("cpu_ms", []), q.get("cpu_ms", []), peer,
                        "<=" if cpu_target else "", cpu_target, unit="ms",
                        paired=round_ratios(by_round(v, "cpu_ms"), by_round(q, "cpu_ms"))))
    return rows


# -- idle memory ---------------------------------------------------------------

def memory(children, args, tmp: str, results: dict) -> list[Row]:
    have_qemu = peers.tool("qemu-system-x86_64") is not None
    os.makedirs(os.path.join(tmp, "memory"), exist_ok=True)
    files = connections.make_files(os.path.join(tmp, "memory"))
    display = peers.free_display()
    port = peers.VNC_BASE_PORT + display
    samples: dict = {}
    for rnd in range(args.rounds):
        for case in ("x509none", "tlsnone"):
            options = connections.server_options(case, files, display)
            options[-1] += f",connections={args.clients + 8}"
            spec = connections.ClientSpec(port, case, files.client_ca, files.client_cert,
                                          files.client_key)
            servers = vncd_and_qemu(files, options, have_qemu, rnd)
            for name, argv in servers:
                try:
                    got = idle_memory.measure(children, name, argv, spec, args.clients, False)
                except (RuntimeError, OSError, peers.RFBError) as e:
                    say(f"  memory {case} {name}: {e}")
                    continue
                samples.setdefault(case, {}).setdefault(name, []).append(got["pss"])
                say(f"  memory round {rnd + 1} {case:<9} {name:<5} "
                    f"{got['pss']:.1f} KiB PSS per idle client")
    results["memory"] = samples
    rows = []
    for case, by in samples.items():
        rows.append(Row("idle memory", f"{case}: PSS per idle client, {args.clients} clients",
                        by.get("vncd", []), by.get("QEMU", []),
                        "QEMU 7.2" if by.get("QEMU") else "", "<=", idle_memory.TARGET_KIB,
                        absolute=True, unit="KiB"))
    return rows


# -- main ----------------------------------------------------------------------

def paint(path: str, fps: float, picture: str) -> None:
    """``--role paint``: keep writing BGRX frames into ``path``."""
    throughput.paint_file(path, 0, frames.WIDTH * 4, (16, 8, 0), "<u4", fps, picture)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="x11vnc is not needed by .ci/run; install it by hand for the streaming "
               "comparison: apt-get install -y x11vnc xvfb")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true",
                        help="1 round of 3 s, 200 idle clients: checks the suite runs")
    parser.add_argument("--rounds", type=int, default=3, help=f"rounds (1..{MAX_ROUNDS})")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="measurement time per server, encoding and case")
    parser.add_argument("--encodings", default=",".join(throughput.ENCODINGS),
                        help="encodings streamed, comma-separated")
    parser.add_argument("--core-encodings", default="raw,zlib,zrle,tight",
                        help="encodings of the 1 vs 2 cores part")
    parser.add_argument("--max-fps", type=float, default=60.0,
                        help="frames per second offered in the 'as fast as possible' run")
    parser.add_argument("--picture", choices=throughput.PICTURES, default="video")
    parser.add_argument("--before", metavar="DIR",
                        help="streaming also runs the vncd of another checkout (e.g. main's "
                             "work tree) as a third server: before/after rows")
    parser.add_argument("--clients", type=int, default=500, help="idle clients (memory part)")
    parser.add_argument("--json", default=os.path.join(tempfile.gettempdir(), "vncd-suite.json"),
                        help="where the samples go ('' for nowhere)")
    parser.add_argument("--role", choices=("bench", "paint"), default="bench",
                        help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--fps", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "paint":
        paint(args.path, args.fps, args.picture)
        return
    if args.quick:
        args.rounds, args.seconds, args.clients = 1, 3.0, min(args.clients, 200)
    args.fanout_repeat = 3 if args.quick else 5
    args.latency_samples = 20 if args.quick else 100
    parts = [p for p in args.parts.split(",") if p]
    args.encodings = [e for e in args.encodings.split(",") if e]
    args.core_encodings = [e for e in args.core_encodings.split(",") if e]
    bad = (sorted(set(parts) - set(PARTS))
           + sorted(set(args.encodings + args.core_encodings) - set(throughput.ENCODINGS)))
    if bad:
        parser.error(f"unknown part or encoding: {', '.join(bad)}")
    if not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--rounds must be 1..{MAX_ROUNDS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:g}]")
    if not 0 < args.max_fps <= throughput.MAX_FPS:
        parser.error(f"--max-fps must be in (0, {throughput.MAX_FPS:g}]")
    if args.before and not os.path.isfile(os.path.join(args.before, "vncd", "__main__.py")):
        parser.error(f"--before {args.before}: not a vncd checkout")
    if not 1 <= args.clients <= idle_memory.MAX_CLIENTS:
        parser.error(f"--clients must be 1..{idle_memory.MAX_CLIENTS}")
    peers.stop_on_sigterm()
    started = time.time()
    say(f"vncd performance suite: parts {', '.join(parts)}; {args.rounds} round(s) of "
        f"{args.seconds:g} s; {os.cpu_count()} CPUs; load average {peers.load_average()}")
    results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
                     "options": {k: v for k, v in vars(args).items() if k not in ("role",)},
                     "load_average_start": peers.load_average()}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vncd-suite-",
                                     dir=throughput.FRAMEBUFFER_DIR) as tmp, \
            peers.Children() as children:
        for part in parts:
            say(f"-- {part}")
            if part == "streaming":
                rows += streaming(children, args, tmp, results)
            elif part == "cores":
                rows += cores(children, args, tmp, results)
            elif part == "fanout":
                rows += fanout(args, results)
            elif part == "handshakes":
                rows += handshakes(children, args, tmp, results)
            elif part == "memory":
                rows += memory(children, args, tmp, results)
    results["load_average_end"] = peers.load_average()
    results["minutes"] = (time.time() - started) / 60
    results["rows"] = [dict(asdict(r), ratio=r.ratio(), met=r.met()) for r in rows]
    say("")
    say(f"load average {results['load_average_start']} at start, "
        f"{results['load_average_end']} at end; medians (min..max) over {args.rounds} round(s)")
    say(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        say(f"samples written to {args.json}")


if __name__ == "__main__":
    peers.run_script(main)
