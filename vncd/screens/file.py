# -*- test-case-name: tests.vncd.test_screens_file -*-
"""``-screen file,path=FILE,format=rgbx|bgrx|xwd[,size=WxH][,offset=N][,rate=HZ]``.

A framebuffer file that another program keeps writing in place -- Xvfb's
``-fbdir`` (``Xvfb_screen0``, an XWD image), x11vnc's ``-rawfb`` peers, a
renderer writing raw pixels into a memory-mapped file -- is mapped into
vncd's memory and looked at ``rate`` times a second (default 30).  Nothing
travels through a pipe: each look compares the mapped pixels, through the
channel conversion, with the framebuffer made from them (no other copy is
kept), in the displays' :data:`~vncd.screens.base.TILE` squares; only the
squares that changed are converted into the framebuffer and reported as
changed (the screen's damage is exact, so its displays serve the
framebuffer without comparing it again).  With the C extension
(:mod:`vncd.encoding.speedups`) that is one pass over the file and the
framebuffer without the GIL; numpy does the same otherwise.  A change in
a pixel's unused fourth byte is not a change.

Formats:

* ``rgbx`` / ``bgrx`` -- 4 bytes per pixel in that byte order, ``size=WxH``
  required, rows of ``4*W`` bytes, starting at byte ``offset`` (default 0);
* ``xwd`` -- an X Window Dump as Xvfb ``-fbdir`` keeps it: the size, row
  stride, byte order and colour masks come from the header, which must
  describe 32-bit TrueColor pixels with 8-bit channels (Xvfb's depth 24).

The file must be a regular file large enough for the frame; a file that
shrinks while mapped is noticed at the next look (the screen keeps its last
picture and says so) -- but a program that truncates the file while it is
being read can still crash the reader with SIGBUS, as it would x11vnc.
When the path starts naming another file (the writer replaced it), the new
file is mapped.

Knows nothing about RFB, sockets or TLS.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from dataclasses import dataclass

import numpy as np
from twisted.logger import Logger

from vncd.encoding import speedups
from vncd.screens.base import MAX_SIDE, TILE, Screen, ScreenError

__all__ = ["FileScreen", "FileLayout", "FORMATS", "parse_xwd_header",
           "XWD_HEADER_MAX", "DEFAULT_RATE", "MAX_RATE"]

log = Logger(namespace="vncd.screens.file")

#: Formats of ``format=``.
FORMATS = ("rgbx", "bgrx", "xwd")

#: Looks per second when ``rate=`` is not given, and the most allowed.
DEFAULT_RATE = 30.0
MAX_RATE = 240.0

#: Largest XWD header (with the window name) accepted, and the most
#: colour-map entries (XWD stores at most one per value of an 8-bit
#: channel on the displays it describes; Xvfb writes 256).
XWD_HEADER_MAX = 4096
XWD_MAX_COLORS = 65536

#: How often (in looks) the path is checked for a replaced file.
REOPEN_CHECK_EVERY = 30

_XWD_FIELDS = (
    "header_size", "file_version", "pixmap_format", "pixmap_depth", "pixmap_width",
    "pixmap_height", "xoffset", "byte_order", "bitmap_unit", "bitmap_bit_order",
    "bitmap_pad", "bits_per_pixel", "bytes_per_line", "visual_class", "red_mask",
    "green_mask", "blue_mask", "bits_per_rgb", "colormap_entries", "ncolors",
    "window_width", "window_height", "window_x", "window_y", "window_bdrwidth",
)
_XWD_FIXED = 4 * len(_XWD_FIELDS)
_XWD_VERSION = 7
_ZPIXMAP = 2
_TRUECOLOR, _DIRECTCOLOR = 4, 5
_LSB_FIRST = 0


@dataclass(frozen=True)
class FileLayout:
    """Where the pixels are in the file and which byte holds which channel."""

    width: int
    height: int
    offset: int
    stride: int
    #: Byte index (0-3) within a pixel of red, green and blue.
    red: int
    green: int
    blue: int

    @property
    def end(self) -> int:
        """Bytes the file must have."""
        return self.offset + self.stride * (self.height - 1) + 4 * self.width


def _mask_byte(mask: int, lsb_first: bool, name: str, path: str) -> int:
    for index in range(4):
        if mask == 0xFF << (8 * index):
            return index if lsb_first else 3 - index
    raise ScreenError(f"'{path}': XWD {name} mask 0x{mask:08x} is not one whole byte (vncd reads"
                      " 32-bit TrueColor with 8-bit channels, Xvfb's depth 24)", path=path)


def parse_xwd_header(data: bytes, path: str = "") -> FileLayout:
    """The :class:`FileLayout` an XWD header describes (raises :class:`ScreenError`).

    The header's numbers are big-endian (XWD's rule); the pixels follow
    the header and ``ncolors`` 12-byte colour-map entries.
    """
    if len(data) < _XWD_FIXED:
        raise ScreenError(f"'{path}' is too short for an XWD header ({len(data)} bytes,"
                          f" {_XWD_FIXED} needed)", path=path)
    fields = dict(zip(_XWD_FIELDS, struct.unpack(f">{len(_XWD_FIELDS)}I", data[:_XWD_FIXED])))
    if fields["file_version"] != _XWD_VERSION:
        raise ScreenError(f"'{path}' is not an XWD image (file version "
                          f"{fields['file_version']}, expected {_XWD_VERSION})", path=path)
    size = fields["header_size"]
    if not _XWD_FIXED <= size <= XWD_HEADER_MAX:
        raise ScreenError(f"'{path}': XWD header size {size} is outside {_XWD_FIXED} .. "
                          f"{XWD_HEADER_MAX}", path=path)
    if fields["pixmap_format"] != _ZPIXMAP:
        raise ScreenError(f"'{path}': XWD pixmap format {fields['pixmap_format']} is not"
                          " ZPixmap (2)", path=path)
    if fields["visual_class"] not in (_TRUECOLOR, _DIRECTCOLOR):
        raise ScreenError(f"'{path}': XWD visual class {fields['visual_class']} is not"
                          " TrueColor (vncd reads 32-bit TrueColor, Xvfb's depth 24)",
                          path=path)
    if fields["bits_per_pixel"] != 32:
        raise ScreenError(f"'{path}': XWD images of {fields['bits_per_pixel']} bits per"
                          " pixel are not supported (vncd reads 32, Xvfb's depth 24)",
                          path=path)
    width, height = fields["pixmap_width"], fields["pixmap_height"]
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ScreenError(f"'{path}': XWD size {width}x{height} is outside 1x1 .. "
                          f"{MAX_SIDE}x{MAX_SIDE}", path=path)
    stride = fields["bytes_per_line"]
    if stride < 4 * width or stride > 4 * MAX_SIDE + 64:
        raise ScreenError(f"'{path}': XWD row length {stride} does not fit a width of"
                          f" {width} pixels", path=path)
    if fields["ncolors"] > XWD_MAX_COLORS:
        raise ScreenError(f"'{path}': XWD colour map of {fields['ncolors']} entries is"
                          f" over the limit of {XWD_MAX_COLORS}", path=path)
    lsb = fields["byte_order"] == _LSB_FIRST
    red = _mask_byte(fields["red_mask"], lsb, "red", path)
    green = _mask_byte(fields["green_mask"], lsb, "green", path)
    blue = _mask_byte(fields["blue_mask"], lsb, "blue", path)
    if len({red, green, blue}) != 3:
        raise ScreenError(f"'{path}': XWD colour masks overlap", path=path)
    return FileLayout(width, height, size + 12 * fields["ncolors"], stride, red, green, blue)


def raw_layout(fmt: str, width: int, height: int, offset: int) -> FileLayout:
    """The layout of ``rgbx``/``bgrx`` pixels, rows packed, from ``offset``."""
    red, blue = (0, 2) if fmt == "rgbx" else (2, 0)
    return FileLayout(width, height, offset, 4 * width, red, 1, blue)


class FileScreen(Screen):
    """A memory-mapped framebuffer file (see the module docstring)."""

    #: Looks report every changed square (Screen.damage_tiles), on the reactor.
    exact_damage = True

    def __init__(self, path: str, fmt: str, *, size: tuple[int, int] | None = None,
                 offset: int = 0, rate: float = DEFAULT_RATE, name: str | None = None,
                 reactor) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown file format {fmt!r}")
        if fmt != "xwd" and size is None:
            raise ScreenError(f"format={fmt} needs size=WxH")
        if not 0 < rate <= MAX_RATE:
            raise ScreenError(f"Parameter 'rate' must be above 0 and at most {MAX_RATE:g}")
        self.path = path
        self.format = fmt
        self.rate = rate
        self._offset = offset
        self._size = size
        self._mm: mmap.mmap | None = None
        self._ino: tuple[int, int] | None = None
        self.layout_in_file = self._open()
        super().__init__(self.layout_in_file.width, self.layout_in_file.height,
                         name=name if name is not None else f"vncd file {os.path.basename(path)}",
                         reactor=reactor)
        self._first = True
        self._call = None
        self._looks = 0
        #: Looks taken, looks that found a change, and why the file is not
        #: being read (too short, gone), when it is not.
        self.looks = 0
        self.changes = 0
        self.problem: str | None = None
        self.look()

    # -- the file ----------------------------------------------------------------

    def _open(self) -> FileLayout:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise ScreenError(f"cannot open '{self.path}': {os.strerror(exc.errno)}",
                              path=self.path) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ScreenError(f"'{self.path}' is not a regular file (a framebuffer file"
                                  " is written in place; use -screen pipe for a FIFO)",
                                  path=self.path)
            if self.format == "xwd":
                head = os.pread(fd, XWD_HEADER_MAX, 0)
                layout = parse_xwd_header(head, self.path)
            else:
                width, height = self._size
                layout = raw_layout(self.format, width, height, self._offset)
            if st.st_size < layout.end:
                raise ScreenError(
                    f"'{self.path}' has {st.st_size} bytes, a {layout.width}x{layout.height}"
                    f" {self.format} frame needs {layout.end}", path=self.path)
            mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        if self._mm is not None:
            self._mm.close()
        self._mm = mm
        self._ino = (st.st_dev, st.st_ino)
        return layout

    def _pixels(self) -> np.ndarray:
        """The file's pixels, a view of the mapping: (h, w, 4) in file byte order."""
        lay = self.layout_in_file
        return np.ndarray((lay.height, lay.width, 4), dtype=np.uint8, buffer=self._mm,
                          offset=lay.offset, strides=(lay.stride, 4, 1))

    def _usable(self) -> bool:
        """Whether the mapped file still holds a whole frame (and is still the path's)."""
        self._looks += 1
        try:
            if self._looks % REOPEN_CHECK_EVERY == 0 or self.problem is not None:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) != self._ino:
                    return self._reopen()
            size = self._mm.size()   # the file's current length (mmap keeps a descriptor)
        except OSError as exc:
            return self._trouble(f"cannot read '{self.path}': {os.strerror(exc.errno)}")
        if size < self.layout_in_file.end:
            return self._trouble(f"'{self.path}' shrank to {size} bytes, a frame needs "
                                 f"{self.layout_in_file.end}")
        if self.problem is not None:
            log.info("-screen file: '{path}' is readable again", path=self.path)
            self.problem = None
        return True

    def _reopen(self) -> bool:
        try:
            layout = self._open()
        except ScreenError as exc:
            return self._trouble(exc.message)
        if (layout.width, layout.height) != (self.width, self.height):
            self.layout_in_file = layout
            self._first = True
            self.resize(layout.width, layout.height)
        else:
            self.layout_in_file = layout
        log.info("-screen file: '{path}' was replaced; reading the new file", path=self.path)
        self.problem = None
        return True

    def _trouble(self, problem: str) -> bool:
        if problem != self.problem:
            log.warn("-screen file: {problem}; keeping the last picture", problem=problem)
            self.problem = problem
        return False

    # -- looking -------------------------------------------------------------------

    def look(self) -> int:
        """Compare the file with what is shown; convert the squares that
        changed and report them.  Returns how many squares changed."""
        self.looks += 1
        if self._mm is None or not self._usable():
            return 0
        src = self._pixels()
        if speedups.module is not None:
            lay = self.layout_in_file
            flags = speedups.module.look_tiles(src, self._framebuffer, TILE,
                                               lay.red, lay.green, lay.blue, self._first)
            tiles = np.frombuffer(flags, dtype=np.bool_).reshape(self._tile_shape())
        else:
            tiles = self._look_numpy(src)
        self._first = False
        changed = int(np.count_nonzero(tiles))
        if changed:
            self.changes += 1
            self.damage_tiles(tiles)
        return changed

    def _tile_shape(self) -> tuple[int, int]:
        return -(-self.height // TILE), -(-self.width // TILE)

    def _look_numpy(self, src: np.ndarray) -> np.ndarray:
        """The look with numpy (without the C extension): the same squares."""
        fb = self._framebuffer
        lay = self.layout_in_file
        channels = [lay.red, lay.green, lay.blue]
        tiles = np.zeros(self._tile_shape(), dtype=bool)
        width = self.width
        for row, y0 in enumerate(range(0, self.height, TILE)):
            y1 = min(self.height, y0 + TILE)
            rgb = src[y0:y1][..., channels]
            if not self._first and np.array_equal(rgb, fb[y0:y1, :, :3]):
                continue
            for col, x0 in enumerate(range(0, width, TILE)):
                x1 = min(width, x0 + TILE)
                if self._first or not np.array_equal(rgb[:, x0:x1], fb[y0:y1, x0:x1, :3]):
                    tiles[row, col] = True
                    fb[y0:y1, x0:x1, :3] = rgb[:, x0:x1]
        return tiles

    def start(self) -> None:
        if self._call is None:
            from twisted.internet.task import LoopingCall

            self._call = LoopingCall(self.look)
            self._call.clock = self.reactor
            self._call.start(1.0 / self.rate, now=False).addErrback(
                lambda f: log.failure("-screen file: reading '{path}' stopped", f,
                                      path=self.path))

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.running:
            call.stop()
