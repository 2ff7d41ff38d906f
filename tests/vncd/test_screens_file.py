"""Tests for -screen file: a memory-mapped framebuffer file written in place.

Unit tests drive :class:`FileScreen` with a fake clock and files the test
writes; the real-peer test serves Xvfb's ``-fbdir`` screen and compares
gvnccapture through vncd with gvnccapture through x11vnc reading the same
X server.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess

import numpy as np
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from compat.config import ScreenSpec
from tests.tools import free_display, require_tool
from tests.vncd import realclients
from vncd.screens import from_spec
from vncd.screens.base import TILE, ScreenError
from vncd.screens.file import REOPEN_CHECK_EVERY, FileScreen, parse_xwd_header


class Damage:
    """A screen listener recording damage (rectangles, changed tiles) and resizes."""

    def __init__(self):
        self.rects, self.tiles, self.resized = [], [], 0

    def screen_damaged(self, screen, rect):
        self.rects.append(rect)

    def screen_damaged_tiles(self, screen, tiles):
        self.tiles.append(sorted(map(tuple, np.argwhere(tiles).tolist())))

    def screen_resized(self, screen):
        self.resized += 1

    def screen_moved(self, *args):
        pass

    def screen_changed(self, *args):
        pass

    def screen_bell(self, *args):
        pass

    def screen_clipboard(self, *args):
        pass


def xwd_header(width: int, height: int, *, stride: int | None = None, ncolors: int = 256,
               name: bytes = b"Xvfb main window\0", lsb: bool = True, **overrides) -> bytes:
    """An XWD header as Xvfb -fbdir writes it (depth 24, 32 bpp, TrueColor)."""
    fields = dict(
        header_size=100 + len(name), file_version=7, pixmap_format=2, pixmap_depth=24,
        pixmap_width=width, pixmap_height=height, xoffset=0, byte_order=0 if lsb else 1,
        bitmap_unit=32, bitmap_bit_order=0 if lsb else 1, bitmap_pad=32, bits_per_pixel=32,
        bytes_per_line=stride if stride is not None else 4 * width, visual_class=4,
        red_mask=0xFF0000, green_mask=0xFF00, blue_mask=0xFF, bits_per_rgb=8,
        colormap_entries=256, ncolors=ncolors, window_width=width, window_height=height,
        window_x=0, window_y=0, window_bdrwidth=0)
    fields.update(overrides)
    return struct.pack(">25I", *fields.values()) + name


class FileScreenTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def patch_file(self, path: str, offset: int, data: bytes) -> None:
        """Change bytes in place, as a writer with the file mapped would."""
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def screen(self, path, fmt, **kw) -> FileScreen:
        screen = FileScreen(path, fmt, reactor=self.clock, **kw)
        self.addCleanup(screen.stop)
        return screen

    def test_rgbx_first_look_and_only_changed_tiles(self):
        """The first look shows the file; later looks report only the changed tiles."""
        width, height = 2 * TILE + 9, 3 * TILE + 5
        pixels = np.random.default_rng(1).integers(0, 256, (height, width, 4), np.uint8)
        path = self.write("fb.raw", pixels.tobytes())
        screen = self.screen(path, "rgbx", size=(width, height))
        self.assertTrue(screen.exact_damage)
        np.testing.assert_array_equal(screen.framebuffer[..., :3], pixels[..., :3])
        damage = Damage()
        screen.add_listener(damage)
        self.assertEqual(screen.look(), 0)
        self.assertEqual((damage.rects, damage.tiles), ([], []))
        row = TILE + 3
        self.patch_file(path, (row * width + 7) * 4, b"\x01\x02\x03\x04")
        self.assertEqual(screen.look(), 1)
        self.assertEqual(damage.tiles, [[(1, 0)]])
        self.assertEqual(screen.framebuffer[row, 7, :3].tolist(), [1, 2, 3])
        damage.tiles.clear()
        # The last (partial) tile of the last row, the first tile, and the
        # partial column of the second tile row.
        self.patch_file(path, ((height - 1) * width + width - 1) * 4, b"\x09\x09\x09\x09")
        self.patch_file(path, 0, b"\x08\x08\x08\x08")
        self.patch_file(path, ((TILE + 1) * width + 2 * TILE) * 4, b"\x07\x07\x07\x07")
        self.assertEqual(screen.look(), 3)
        self.assertEqual(damage.tiles, [[(0, 0), (1, 2), (3, 2)]])
        self.assertEqual(screen.framebuffer[TILE + 1, 2 * TILE, :3].tolist(), [7, 7, 7])
        self.assertEqual(screen.framebuffer[height - 1, width - 1, :3].tolist(), [9, 9, 9])
        self.assertEqual(damage.rects, [])

    def test_bgrx_with_offset(self):
        """bgrx pixels after an offset are converted to RGB."""
        path = self.write("fb.raw", b"HEADER" + bytes([10, 20, 30, 0]) * 6)
        screen = self.screen(path, "bgrx", size=(3, 2), offset=6)
        self.assertEqual(screen.framebuffer[1, 2, :3].tolist(), [30, 20, 10])

    def test_xwd_layout_from_header(self):
        """An Xvfb-style XWD: size, padded rows, colour map and byte order from the header."""
        width, height, stride = 5, 4, 24
        header = xwd_header(width, height, stride=stride, ncolors=256)
        rows = bytearray(stride * height)
        rows[stride * 2 + 4 * 3: stride * 2 + 4 * 3 + 4] = bytes([0x11, 0x22, 0x33, 0])  # B G R X
        path = self.write("Xvfb_screen0", header + bytes(12 * 256) + bytes(rows))
        screen = self.screen(path, "xwd")
        self.assertEqual((screen.width, screen.height), (width, height))
        self.assertEqual(screen.framebuffer[2, 3, :3].tolist(), [0x33, 0x22, 0x11])
        msb = parse_xwd_header(xwd_header(2, 2, lsb=False), "x")
        self.assertEqual((msb.red, msb.green, msb.blue), (1, 2, 3))

    def test_start_looks_at_the_rate(self):
        """Once started, the file is looked at ``rate`` times a second, and not after stop."""
        path = self.write("fb.raw", bytes(4 * 4 * 4))
        screen = self.screen(path, "rgbx", size=(4, 4), rate=10)
        start = screen.looks
        screen.start()
        self.clock.pump([0.1] * 10)
        self.assertEqual(screen.looks - start, 10)
        screen.stop()
        self.clock.pump([0.1] * 5)
        self.assertEqual(screen.looks - start, 10)

    def test_shrunk_file_keeps_the_picture_until_it_is_whole_again(self):
        path = self.write("fb.raw", bytes([7]) * 64)
        screen = self.screen(path, "rgbx", size=(4, 4))
        os.truncate(path, 10)
        self.assertEqual(screen.look(), 0)
        self.assertIn("shrank to 10 bytes", screen.problem)
        self.assertEqual(screen.framebuffer[3, 3, 0], 7)
        with open(path, "r+b") as f:
            f.truncate(64)
            f.write(bytes([5]) * 64)
        self.assertGreater(screen.look(), 0)
        self.assertIsNone(screen.problem)
        self.assertEqual(screen.framebuffer[3, 3, 0], 5)

    def test_replaced_file_is_mapped_again(self):
        """A writer that replaces the file (rename) is followed, with a resize."""
        path = self.write("Xvfb_screen0", xwd_header(4, 4, ncolors=0) + bytes(64))
        screen = self.screen(path, "xwd")
        damage = Damage()
        screen.add_listener(damage)
        new = self.write("new", xwd_header(8, 2, ncolors=0) + bytes([1, 2, 3, 0]) * 16)
        os.replace(new, path)
        for _ in range(REOPEN_CHECK_EVERY):
            screen.look()
        self.assertEqual((screen.width, screen.height), (8, 2))
        self.assertEqual(damage.resized, 1)
        self.assertEqual(screen.framebuffer[1, 7, :3].tolist(), [3, 2, 1])

    def test_xwd_header_garbage(self):
        """Random and corrupted headers give ScreenError naming the file, nothing else."""
        rng = random.Random(8)
        good = xwd_header(16, 16)
        for i in range(2000):
            if i % 2:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(130)))
            else:
                data = bytearray(good)
                for _ in range(rng.randrange(1, 6)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
                data = bytes(data)
            try:
                parse_xwd_header(data, "/x/fb")
            except ScreenError as exc:
                self.assertIn("/x/fb", str(exc))

    def test_xwd_headers_refused(self):
        cases = {
            "not an XWD image": xwd_header(4, 4, file_version=6),
            "16 bits per pixel": xwd_header(4, 4, bits_per_pixel=16),
            "not TrueColor": xwd_header(4, 4, visual_class=3),
            "is not one whole byte": xwd_header(4, 4, red_mask=0xF800),
            "row length 8 does not fit": xwd_header(4, 4, stride=8),
            "outside 1x1": xwd_header(0, 4),
            "too short for an XWD header": b"\0" * 40,
        }
        for words, header in cases.items():
            with self.assertRaises(ScreenError, msg=words) as cm:
                parse_xwd_header(header, "fb")
            self.assertIn(words, str(cm.exception))


class FileSpecTests(SynchronousTestCase):
    """-screen file option checks, each message naming the option."""

    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "fb")
        with open(self.path, "wb") as f:
            f.write(bytes(64))

    def refused(self, props: dict) -> str:
        spec = ScreenSpec("file", props, source="-screen file,...")
        with self.assertRaises(ScreenError) as cm:
            from_spec(spec, Clock())
        self.assertIn("-screen file,...", str(cm.exception))
        return str(cm.exception)

    def test_refusals(self):
        p = self.path
        self.assertIn("'path' is missing", self.refused({"format": "rgbx", "size": "4x4"}))
        self.assertIn("expects rgbx, bgrx, xwd", self.refused({"path": p, "format": "yuv"}))
        self.assertIn("'size' is missing", self.refused({"path": p, "format": "rgbx"}))
        self.assertIn("leave out 'size'",
                      self.refused({"path": p, "format": "xwd", "size": "4x4"}))
        self.assertIn("'offset' expects",
                      self.refused({"path": p, "format": "rgbx", "size": "4x4", "offset": "-1"}))
        self.assertIn("'rate' expects",
                      self.refused({"path": p, "format": "rgbx", "size": "4x4", "rate": "0"}))
        self.assertIn("'rate' expects",
                      self.refused({"path": p, "format": "rgbx", "size": "4x4", "rate": "1e9"}))
        self.assertIn("needs 68", self.refused({"path": p, "format": "rgbx", "size": "4x4",
                                                "offset": "4"}))
        self.assertIn("cannot open", self.refused({"path": p + "x", "format": "rgbx",
                                                   "size": "4x4"}))
        self.assertIn("not a regular file", self.refused({"path": self.dir, "format": "rgbx",
                                                          "size": "4x4"}))
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        self.assertIn("not a regular file", self.refused({"path": fifo, "format": "rgbx",
                                                          "size": "1x1"}))
        self.assertIn("too short for an XWD header",
                      self.refused({"path": p, "format": "xwd"}))

    def test_accepted(self):
        screen = from_spec(ScreenSpec("file", {"path": self.path, "format": "bgrx",
                                               "size": "4x4", "rate": "12.5", "name": "fb"},
                                      source="-screen file"), Clock())
        self.assertEqual((screen.width, screen.height, screen.name, screen.rate),
                         (4, 4, "fb", 12.5))


class XvfbFbdirTests(SynchronousTestCase):
    """vncd serving Xvfb's -fbdir file shows what x11vnc shows of the same X server."""

    def test_same_pixels_as_x11vnc(self):
        realclients.require_vncd()
        require_tool("gvnccapture")
        x11vnc, xmessage = require_tool("x11vnc"), require_tool("xmessage")
        xvfb = realclients.Xvfb(self, 320, 240)
        env = dict(os.environ, DISPLAY=xvfb.display)
        x11_port = 5900 + free_display()
        realclients.start_server(self, [x11vnc, "-display", xvfb.display, "-rfbport",
                                        str(x11_port), "-localhost", "-nopw", "-forever",
                                        "-shared", "-norc", "-noxrecord", "-nocursor",
                                        "-noxdamage"], [x11_port], name="x11vnc")
        display = free_display()
        while 5900 + display == x11_port:
            display = free_display()
        fb = os.path.join(xvfb.fbdir, "Xvfb_screen0")
        realclients.start_server(self, realclients.vncd_command([
            "-vnc", f"127.0.0.1:{display}", "-screen", f"file,path={fb},format=xwd"]),
            [5900 + display], name="vncd")
        out = self.mktemp()
        os.makedirs(out)

        def capture(port: int, name: str) -> np.ndarray:
            png = os.path.join(out, f"{name}.png")
            run = realclients.gvnccapture("127.0.0.1", port - 5900, png)
            self.assertTrue(run.ok, run.output)
            return realclients.read_png(png)[..., :3]

        def same(name: str) -> bool:
            return np.array_equal(capture(5900 + display, f"vncd-{name}"),
                                  capture(x11_port, f"x11vnc-{name}"))

        self.assertTrue(realclients.wait_until(lambda: same("blank"), 20),
                        "vncd's and x11vnc's pictures of the blank screen differ")
        before = capture(5900 + display, "before")
        window = subprocess.Popen([xmessage, "-geometry", "+20+30", "-bg", "#ff8000",
                                   "vncd file screen"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        self.addCleanup(lambda: (window.kill(), window.wait()))
        self.assertTrue(realclients.wait_until(
            lambda: not np.array_equal(capture(5900 + display, "after"), before), 20),
            "the xmessage window never appeared through vncd")
        self.assertTrue(realclients.wait_until(lambda: same("window"), 20),
                        "vncd's and x11vnc's pictures of the window differ")
        orange = (capture(5900 + display, "orange") == [255, 128, 0]).all(axis=-1)
        self.assertGreater(int(orange.sum()), 100)
