"""Full-frame 1080p throughput to one client: vncd against x11vnc, real sockets.

    .venv/bin/python -m benchmarks.throughput [--seconds 5] [--fps 60]
        [--encodings raw,zlib,hextile,zrle,tight] [--picture video|noise]
        [--servers vncd,x11vnc,x11vnc-fast]

Both servers show a 1920x1080 screen in which every pixel changes
``--fps`` times a second: the picture cycles through four frames of
benchmarks/frames.py (``video``: smooth colour waves, every pixel of every
frame differs from the last; ``noise``: random pixels), so every update a
server sends should cover the whole screen.

* vncd runs in a child process (``--role vncd``) as an embedding program
  would: :func:`vncd.api.serve` with an ArrayScreen, and a Twisted timer
  that copies the next frame into the framebuffer and calls ``damage()``.
  The copy is the whole feeder (well under a millisecond per 8 MB frame,
  a few per cent of a core at 60 fps, printed at start) and is counted in
  vncd's CPU.  ``-screen pipe`` was not used: pushing 8 MB frames through
  a FIFO costs vncd's reader thread a read, a copy and a BGRX conversion
  per frame, and the feeder process competes for the same two cores, so
  it would measure the pipe rather than the server.
* x11vnc (``apt-get install -y x11vnc``; the column is skipped when it is
  missing) serves an Xvfb 1920x1080x24 display.  The painter (``--role
  paint``) writes the same frames straight into Xvfb's framebuffer, which
  Xvfb keeps in a shared memory-mapped file (``-fbdir``, on /dev/shm): no
  X requests, one copy per frame, as a GPU scanning out.  x11vnc sees the changes by
  polling (``-noxdamage``: the X DAMAGE extension would report nothing,
  as nothing is drawn through X); ``-nonap -nowait_bog`` keep it from
  slowing its polls down, ``-nonc`` keeps the framebuffer 1920x1080.
  Row ``x11vnc`` keeps x11vnc's pacing (``-wait 20 -defer 20``, what its
  users get), row ``x11vnc-fast`` cuts both to 1 ms (its best throughput).
  Column ``Xvfb %`` is Xvfb's CPU, nearly all of it spent answering
  x11vnc's XShmGetImage polls (so it is part of what x11vnc costs);
  ``paint %`` is the painter's.

The client is a bare RFB 3.8 client (None security, the server's own
pixel format) in this process: SetEncodings with the one encoding of the
run, then one incremental FramebufferUpdateRequest after each complete
update, the way TigerVNC and noVNC ask when continuous updates are off.
It frames the updates without decoding pixels (Raw: w*h*4 bytes;
Zlib/ZRLE: a length; Tight: its compact lengths; Hextile: tile by tile
in Python, so the client may limit that row -- see ``client %``).  After
the first full update it counts, for ``--seconds``: full-screen updates
per second (rectangles covering all 1920x1080 pixels), all updates, MB/s
received, and the CPU of server, Xvfb, painter and client (100 % = one
core).
A row marked ``(paint rate)`` delivered nearly every frame painted: the
source, not the server, was the limit there -- run again with a higher
``--fps`` to find the server's.
"""

from __future__ import annotations

import argparse
import itertools
import mmap
import os
import select
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from benchmarks import frames, peers

#: Distinct frames the screens cycle through: consecutive ones differ in
#: every pixel, and four are enough that no server can skip work by
#: recognising a repeat.
FRAME_COUNT = 4

#: Phase step between the video frames (radians): large enough that every
#: pixel's colour differs from the previous frame's.
VIDEO_STEP = 2.1

#: Longest measurement accepted, so a typo cannot tie up the shared machine.
MAX_SECONDS = 120.0

#: Highest paint rate accepted: above a monitor's refresh nothing is learnt.
MAX_FPS = 240.0

#: Seconds the client waits for any byte before it gives up on a server:
#: with every pixel changing 60 times a second an update is always due, so a
#: silence this long means the server is stuck, not idle.
SILENCE_TIMEOUT = 10.0

#: Seconds allowed for the first full update to arrive (the warm-up).
WARMUP_TIMEOUT = 20.0

#: Bytes the client asks the socket for per read: a few reads per Raw frame.
READ_SIZE = 1024 * 1024

#: Longest cut text or colour map the client skips (neither is expected).
MAX_SKIPPED_MESSAGE = 1 << 20

#: Xvfb's frame file has a 100-byte XWD header, then the colour map.
XWD_HEADER_SIZE = 100

#: Largest XWD colour map accepted (entries); TrueColor Xvfb writes 256.
MAX_XWD_COLORS = 65536

#: Where Xvfb's framebuffer file goes: a memory-backed tmpfs, so the
#: painter's 500 MB/s of writes never turn into disk writeback (on a disk
#: file system the kernel's flushing would cost CPU that no column shows).
#: None (the default temporary directory) when the machine has no /dev/shm.
FRAMEBUFFER_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None

#: Seconds to wait for Xvfb's display number and frame file.
XVFB_TIMEOUT = 30.0

RAW, HEXTILE, ZLIB, TIGHT, ZRLE = 0, 5, 6, 7, 16
ENCODINGS = {"raw": RAW, "zlib": ZLIB, "hextile": HEXTILE, "zrle": ZRLE, "tight": TIGHT,
             "tight-jpeg": TIGHT}

#: JPEG quality level 6 (pseudo-encoding -32 + 6): what ``tight-jpeg`` adds
#: to its SetEncodings, TigerVNC's default, so Tight may send JPEG.
QUALITY_LEVEL_6 = -26

#: Pseudo-encodings a run lists after its encoding.
PSEUDO_ENCODINGS = {"tight-jpeg": (QUALITY_LEVEL_6,)}

#: x11vnc options: poll the whole screen (no DAMAGE), never back off, no
#: client-side cache (it would make the framebuffer 11 times as tall).
X11VNC_OPTIONS = ["-localhost", "-nopw", "-forever", "-shared", "-noxdamage", "-nonap",
                  "-nowait_bog", "-nonc", "-norc", "-noxrecord", "-nocursor"]

#: How x11vnc paces its polls and updates: ``x11vnc`` keeps its defaults
#: (``-wait 20 -defer 20``: at most one poll per 20 ms plus 20 ms before an
#: update is sent), ``x11vnc-fast`` cuts both to 1 ms, its best throughput.
X11VNC_PACING = {"x11vnc": [], "x11vnc-fast": ["-wait", "1", "-defer", "1"]}

SERVERS = ("vncd", *X11VNC_PACING)

#: What the screens show (see :func:`make_frames`).
PICTURES = ("video", "noise", "desktop")


def make_frames(picture: str) -> list[np.ndarray]:
    """The frames both screens cycle through, as (h, w, 4) RGBX arrays."""
    if picture == "video":
        return [frames.video(i * VIDEO_STEP) for i in range(FRAME_COUNT)]
    if picture == "desktop":
        return [frames.desktop(seed=1 + i) for i in range(FRAME_COUNT)]
    return [frames.noise(seed=10 + i) for i in range(FRAME_COUNT)]


def paint_cost_ms(pictures: list[np.ndarray], repeat: int = 20) -> float:
    """Median time of one frame copy into a screen-sized array (vncd's feeder)."""
    target = np.empty_like(pictures[0])
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        target[...] = pictures[i % len(pictures)]
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


# -- the children ----------------------------------------------------------

def serve_vncd(display: int, fps: float, picture: str) -> None:
    """``--role vncd``: vncd through its embedding API, repainted ``fps`` times a second."""
    from twisted.internet import reactor, task

    from vncd.api import ArrayScreen, serve

    pictures = make_frames(picture)
    screen = ArrayScreen(frames.WIDTH, frames.HEIGHT, name="vncd throughput",
                         reactor=reactor)
    screen.framebuffer[...] = pictures[0]
    order = itertools.cycle(pictures[1:] + pictures[:1])

    def paint() -> None:
        screen.framebuffer[...] = next(order)
        screen.damage()

    loop = task.LoopingCall(paint)
    loop.clock = reactor
    loop.start(1 / fps)
    serve(screen, f"127.0.0.1:{display}", reactor=reactor)
    reactor.run()


def xwd_layout(fbfile: str) -> tuple[int, int, tuple[int, int, int], str]:
    """(pixel offset, bytes per line, channel shifts, numpy dtype) of Xvfb's frame file."""
    with open(fbfile, "rb") as f:
        header = f.read(XWD_HEADER_SIZE)
    if len(header) < XWD_HEADER_SIZE:
        raise RuntimeError(f"{fbfile}: XWD header too short")
    (header_size, _version, _fmt, depth, width, height, _xoff, byte_order, _unit,
     _bit_order, _pad, bpp, bytes_per_line, _visual, red, green, blue, _bits, _entries,
     ncolors, *_rest) = struct.unpack(">25I", header)
    if (width, height) != (frames.WIDTH, frames.HEIGHT) or bpp != 32 or depth != 24:
        raise RuntimeError(f"{fbfile}: {width}x{height}, {bpp} bpp, depth {depth}; "
                           f"expected {frames.WIDTH}x{frames.HEIGHT}, 32 bpp, depth 24")
    if ncolors > MAX_XWD_COLORS or bytes_per_line < width * 4:
        raise RuntimeError(f"{fbfile}: unexpected XWD layout")
    shifts = tuple(mask.bit_length() - 8 for mask in (red, green, blue))
    return header_size + 12 * ncolors, bytes_per_line, shifts, "<u4" if byte_order == 0 else ">u4"


def paint_xvfb(fbdir: str, fps: float, picture: str) -> None:
    """``--role paint``: write the frames into Xvfb's framebuffer ``fps`` times a second."""
    fbfile = os.path.join(fbdir, "Xvfb_screen0")
    paint_file(fbfile, *xwd_layout(fbfile), fps, picture)


def paint_file(path: str, offset: int, bytes_per_line: int, shifts: tuple[int, int, int],
               dtype: str, fps: float, picture: str) -> None:
    """Write the frames into the memory-mapped framebuffer file ``path`` ``fps``
    times a second, forever: rows of ``bytes_per_line`` from ``offset``, one
    word per pixel of type ``dtype`` with R, G and B at ``shifts``."""
    packed = []
    for rgbx in make_frames(picture):
        words = np.zeros((frames.HEIGHT, bytes_per_line // 4), dtype=dtype)
        value = sum(rgbx[..., c].astype(np.uint32) << shift for c, shift in enumerate(shifts))
        words[:, :frames.WIDTH] = value
        packed.append(words)
    with open(path, "r+b") as f:
        mapped = mmap.mmap(f.fileno(), offset + bytes_per_line * frames.HEIGHT)
    screen = np.ndarray((frames.HEIGHT, bytes_per_line // 4), dtype=dtype,
                        buffer=mapped, offset=offset)
    period = 1 / fps
    due = time.monotonic()
    for words in itertools.cycle(packed[1:] + packed[:1]):
        screen[...] = words
        due += period
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            due = time.monotonic()


class Xvfb:
    """An Xvfb 1920x1080x24 with its framebuffer in ``fbdir``; it picks its display."""

    def __init__(self, children: peers.Children, fbdir: str) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self.child = children.start(
                ["Xvfb", "-displayfd", str(write_fd), "-screen", "0",
                 f"{frames.WIDTH}x{frames.HEIGHT}x24", "-fbdir", fbdir, "-nolisten", "tcp",
                 "-noreset"], name="Xvfb", pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        try:
            self.display = self._read_display(read_fd)
        finally:
            os.close(read_fd)

    def _read_display(self, fd: int) -> int:
        data = b""
        deadline = time.monotonic() + XVFB_TIMEOUT
        while b"\n" not in data:
            if time.monotonic() > deadline or not self.child.running():
                raise RuntimeError(f"Xvfb reported no display number:\n{self.child.tail()}")
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 64)
                if not chunk:
                    raise RuntimeError(f"Xvfb closed its display pipe:\n{self.child.tail()}")
                data += chunk
        return int(data.strip())


# -- the client --------------------------------------------------------------

class Reader:
    """Buffered exact reads and skips over a socket, counting every byte."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0
        self.received = 0
        self.scratch = bytearray(READ_SIZE)
        self.view = memoryview(self.scratch)

    def _recv(self, limit: int) -> int:
        n = self.sock.recv_into(self.view, limit)
        if n == 0:
            raise peers.RFBError("server closed the connection")
        self.received += n
        return n

    def need(self, n: int) -> None:
        """Make ``n`` bytes available at :attr:`pos`."""
        while len(self.buf) - self.pos < n:
            if self.pos:
                del self.buf[:self.pos]
                self.pos = 0
            got = self._recv(READ_SIZE)
            self.buf += self.view[:got]

    def take(self, n: int) -> bytes:
        self.need(n)
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def u8(self) -> int:
        self.need(1)
        self.pos += 1
        return self.buf[self.pos - 1]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def skip(self, n: int) -> None:
        """Consume ``n`` bytes; what is not buffered yet is read and dropped."""
        available = len(self.buf) - self.pos
        if available >= n:
            self.pos += n
            return
        n -= available
        self.buf.clear()
        self.pos = 0
        while n:
            n -= self._recv(min(n, READ_SIZE))

    def compact_length(self) -> int:
        """Tight's 1-3 byte length."""
        value = 0
        for i in range(3):
            byte = self.u8()
            if i == 2:
                return value | byte << 14
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value
        return value


def tight_pixel_size(pixel_format: bytes) -> int:
    """Bytes of a Tight TPIXEL: 3 for 32 bpp depth 24 true colour with 8-bit channels."""
    bpp, depth, _big, true_colour = pixel_format[:4]
    r, g, b = struct.unpack(">HHH", pixel_format[4:10])
    if bpp == 32 and depth == 24 and true_colour and r == g == b == 255:
        return 3
    return bpp // 8


def skip_tight(reader: Reader, w: int, h: int, tpixel: int) -> None:
    control = reader.u8()
    kind = control >> 4
    if kind == 8:  # fill
        reader.skip(tpixel)
        return
    if kind == 9:  # JPEG
        reader.skip(reader.compact_length())
        return
    if kind > 9:
        raise peers.RFBError(f"Tight compression control {control:#x}")
    filter_id = reader.u8() if control & 0x40 else 0
    if filter_id == 0:  # copy
        size = w * h * tpixel
    elif filter_id == 1:  # palette
        colours = reader.u8() + 1
        reader.skip(colours * tpixel)
        size = (w + 7) // 8 * h if colours == 2 else w * h
    elif filter_id == 2:  # gradient
        size = w * h * tpixel
    else:
        raise peers.RFBError(f"Tight filter {filter_id}")
    reader.skip(size if size < 12 else reader.compact_length())


def skip_hextile(reader: Reader, x0: int, y0: int, w: int, h: int, bpp: int) -> None:
    for ty in range(y0, y0 + h, 16):
        th = min(16, y0 + h - ty)
        for tx in range(x0, x0 + w, 16):
            tw = min(16, x0 + w - tx)
            sub = reader.u8()
            if sub & 1:
                reader.skip(tw * th * bpp)
                continue
            size = (bpp if sub & 2 else 0) + (bpp if sub & 4 else 0)
            if size:
                reader.skip(size)
            if sub & 8:
                count = reader.u8()
                reader.skip(count * ((bpp + 2) if sub & 16 else 2))


def skip_rect(reader: Reader, encoding: int, x: int, y: int, w: int, h: int,
              bpp: int, tpixel: int) -> None:
    if encoding == RAW:
        reader.skip(w * h * bpp)
    elif encoding in (ZLIB, ZRLE):
        reader.skip(reader.u32())
    elif encoding == TIGHT:
        skip_tight(reader, w, h, tpixel)
    elif encoding == HEXTILE:
        skip_hextile(reader, x, y, w, h, bpp)
    else:
        raise peers.RFBError(f"rectangle in encoding {encoding}, which was not asked for")


def read_update(reader: Reader, bpp: int, tpixel: int) -> int | None:
    """Read one server message; the pixels an update covered, None for other messages."""
    kind = reader.u8()
    if kind == 0:
        count = struct.unpack(">xH", reader.take(3))[0]
        area = 0
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", reader.take(12))
            skip_rect(reader, encoding, x, y, w, h, bpp, tpixel)
            area += w * h
        return area
    if kind == 1:  # SetColourMapEntries
        colours = struct.unpack(">xHH", reader.take(5))[1]
        reader.skip(6 * colours)
    elif kind == 2:  # Bell
        pass
    elif kind == 3:  # ServerCutText
        length = struct.unpack(">3xI", reader.take(7))[0]
        if length > MAX_SKIPPED_MESSAGE:
            raise peers.RFBError(f"cut text of {length} bytes")
        reader.skip(length)
    else:
        raise peers.RFBError(f"server message type {kind}")
    return None


@dataclass
class Result:
    full: int = 0
    updates: int = 0
    #: Pixels the counted updates covered (full screens = area / screen size).
    area: int = 0
    #: Pixels of the screen.
    screen: int = 0
    bytes: int = 0
    wall: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    #: CPU of the helper processes: Xvfb and the painter (x11vnc only).
    helper_cpu: tuple[float, ...] = ()
    problem: str = ""


def set_encodings(name: str) -> bytes:
    """The SetEncodings message of the run called ``name`` (``raw`` ... ``tight-jpeg``)."""
    listed = (ENCODINGS[name], *PSEUDO_ENCODINGS.get(name, ()))
    return struct.pack(f">BxH{len(listed)}i", 2, len(listed), *listed)


def stream(port: int, name: str, seconds: float, server: peers.Child,
           helpers: list[peers.Child]) -> Result:
    """Connect, ask for encoding ``name`` and count full-screen updates for ``seconds``."""
    encoding = ENCODINGS[name]
    result = Result()
    sock = socket.create_connection(("127.0.0.1", port), timeout=peers.IO_TIMEOUT)
    try:
        sock, init = peers.handshake(sock)
        sock.settimeout(SILENCE_TIMEOUT)
        screen = result.screen = init.width * init.height
        bpp, tpixel = init.bytes_per_pixel, tight_pixel_size(init.pixel_format)
        request = struct.pack(">BBHHHH", 3, 1, 0, 0, init.width, init.height)
        sock.sendall(set_encodings(name)
                     + struct.pack(">BBHHHH", 3, 0, 0, 0, init.width, init.height))
        reader = Reader(sock)
        warmup_end = time.monotonic() + WARMUP_TIMEOUT
        while True:
            area = read_update(reader, bpp, tpixel)
            if area is not None:
                sock.sendall(request)
                if area >= screen:
                    break
            if time.monotonic() > warmup_end:
                result.problem = f"no full-screen update within {WARMUP_TIMEOUT:.0f} s"
                return result
        cpu0 = server.cpu(), [h.cpu() for h in helpers], time.process_time()
        bytes0 = reader.received
        start = time.monotonic()
        deadline = start + seconds
        while time.monotonic() < deadline:
            area = read_update(reader, bpp, tpixel)
            if area is None:
                continue
            sock.sendall(request)
            result.updates += 1
            result.area += area
            if area >= screen:
                result.full += 1
        result.wall = time.monotonic() - start
        result.bytes = reader.received - bytes0
        result.server_cpu = server.cpu() - cpu0[0]
        result.helper_cpu = tuple(h.cpu() - c for h, c in zip(helpers, cpu0[1]))
        result.client_cpu = time.process_time() - cpu0[2]
        return result
    except (OSError, peers.RFBError) as e:
        result.problem = f"{type(e).__name__}: {e}"
        return result
    finally:
        sock.close()


# -- the benchmark -----------------------------------------------------------

def run_vncd(children: peers.Children, args, encodings: list[str]) -> list[tuple]:
    display = peers.free_display()
    server = children.start(
        [sys.executable, "-m", "benchmarks.throughput", "--role", "vncd",
         "--display", str(display), "--fps", str(args.fps), "--picture", args.picture],
        name="vncd")
    try:
        server.wait_for_port(peers.VNC_BASE_PORT + display)
        return [(name, stream(peers.VNC_BASE_PORT + display, name, args.seconds,
                              server, [])) for name in encodings]
    finally:
        children.stop(server)


def run_x11vnc(children: peers.Children, args, encodings: list[str],
               flavour: str) -> list[tuple]:
    with tempfile.TemporaryDirectory(prefix="vncd-bench-xvfb-", dir=FRAMEBUFFER_DIR) as fbdir:
        xvfb = Xvfb(children, fbdir)
        painter = children.start(
            [sys.executable, "-m", "benchmarks.throughput", "--role", "paint",
             "--fbdir", fbdir, "--fps", str(args.fps), "--picture", args.picture],
            name="painter")
        port = peers.VNC_BASE_PORT + peers.free_display()
        server = children.start(["x11vnc", "-display", f":{xvfb.display}", "-rfbport",
                                 str(port), *X11VNC_OPTIONS, *X11VNC_PACING[flavour]],
                                name=flavour)
        try:
            server.wait_for_port(port)
            if not painter.running():
                raise RuntimeError(f"the painter stopped:\n{painter.tail()}")
            return [(name, stream(port, name, args.seconds, server,
                                  [xvfb.child, painter])) for name in encodings]
        finally:
            for child in (server, painter, xvfb.child):
                children.stop(child)


def print_rows(server: str, rows: list[tuple], fps: float) -> None:
    for name, r in rows:
        if r.problem:
            print(f"{server:<11} {name:<8} -- {r.problem}")
            continue
        wall = r.wall or float("nan")
        capped = "  (paint rate)" if r.full / wall > 0.95 * fps else ""
        helpers = [f"{100 * cpu / wall:.0f}" for cpu in r.helper_cpu] or ["-", "-"]
        print(f"{server:<11} {name:<8} {r.full / wall:9.1f} {r.updates / wall:9.1f} "
              f"{r.bytes / wall / 1e6:8.1f} {r.bytes / max(r.updates, 1) / 1e3:9.0f} "
              f"{100 * r.server_cpu / wall:9.0f} {helpers[0]:>7} {helpers[1]:>8} "
              f"{100 * r.client_cpu / wall:9.0f}{capped}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="measurement time per server and encoding")
    parser.add_argument("--fps", type=float, default=60.0,
                        help="how often the whole screen changes")
    parser.add_argument("--encodings", default="raw,zlib,hextile,zrle,tight",
                        help=f"comma-separated subset of {', '.join(ENCODINGS)}")
    parser.add_argument("--picture", choices=PICTURES, default="video")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help=f"comma-separated subset of {', '.join(SERVERS)}")
    parser.add_argument("--role", choices=("bench", "vncd", "paint"), default="bench",
                        help=argparse.SUPPRESS)
    parser.add_argument("--display", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fbdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0 < args.fps <= MAX_FPS:
        parser.error(f"--fps must be in (0, {MAX_FPS:.0f}]")
    if args.role == "vncd":
        serve_vncd(args.display, args.fps, args.picture)
        return
    if args.role == "paint":
        paint_xvfb(args.fbdir, args.fps, args.picture)
        return
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:.0f}]")
    encodings = [e for e in args.encodings.split(",") if e]
    servers = [s for s in args.servers.split(",") if s]
    bad = sorted(set(encodings) - set(ENCODINGS)) + sorted(set(servers) - set(SERVERS))
    if bad:
        parser.error(f"unknown encoding or server: {', '.join(bad)}")
    peers.stop_on_sigterm()
    paint_ms = paint_cost_ms(make_frames(args.picture))
    print(f"full-frame {frames.WIDTH}x{frames.HEIGHT} throughput, one client, picture "
          f"{args.picture} changing {args.fps:g} times a second, {args.seconds:g} s per run; "
          f"{os.cpu_count()} CPUs, load average {peers.load_average()} at start")
    print(f"vncd's feeder: one frame copy = {paint_ms:.2f} ms "
          f"= {paint_ms * args.fps / 10:.1f} % of a core at {args.fps:g} fps (in 'server %')")
    print(f"{'server':<11} {'encoding':<8} {'full/s':>9} {'updates/s':>9} {'MB/s':>8} "
          f"{'KB/update':>9} {'server %':>9} {'Xvfb %':>7} {'paint %':>8} {'client %':>9}")
    with peers.Children() as children:
        for server in servers:
            missing = [t for t in ("x11vnc", "Xvfb") if peers.tool(t) is None]
            if server != "vncd" and missing:
                print(f"{server:<11} skipped: {peers.install_hint(missing[0])}")
                continue
            try:
                if server == "vncd":
                    rows = run_vncd(children, args, encodings)
                else:
                    rows = run_x11vnc(children, args, encodings, server)
            except RuntimeError as e:
                print(f"{server:<11} failed to start: {e}")
                continue
            print_rows(server, rows, args.fps)
    print(f"load average {peers.load_average()} at end")


if __name__ == "__main__":
    peers.run_script(main)
