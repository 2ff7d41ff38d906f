"""Tests for the Screen API, the embedding screen, the image screen and -screen parsing."""

import os

import numpy as np
from hypothesis import given, settings, strategies as st
from PIL import Image
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from compat.config import ScreenSpec
from creds.objects import ObjectError
from vncd.screens import from_spec
from vncd.screens.array import ArrayScreen
from vncd.screens.base import (
    MAX_SIDE, RESIZE_OK, RESIZE_PROHIBITED, CutTextEvent, KeyEvent, PointerEvent, Screen,
    ScreenArea, ScreenError, ServedAddress,
)
from vncd.screens.image import ImageScreen
from vncd.screens.pipe import PipeScreen
from vncd.screens.testcard import TestcardScreen


class Recorder:
    """A ScreenListener that writes down every notification."""

    def __init__(self):
        self.calls = []

    def screen_damaged(self, screen, rect):
        self.calls.append(("damaged", rect))

    def screen_moved(self, screen, *args):
        self.calls.append(("moved",) + args)

    def screen_resized(self, screen):
        self.calls.append(("resized", screen.width, screen.height))

    def screen_changed(self, screen, what):
        self.calls.append(("changed", what))

    def screen_bell(self, screen):
        self.calls.append(("bell",))

    def screen_clipboard(self, screen, text):
        self.calls.append(("clipboard", text))


def watched(screen):
    rec = Recorder()
    screen.add_listener(rec)
    return rec


class ScreenTests(SynchronousTestCase):
    def test_framebuffer(self):
        """A new screen has a black (h, w, 4) uint8 framebuffer and one full-size layout area."""
        s = Screen(30, 20, name="n")
        self.assertEqual((s.framebuffer.shape, s.framebuffer.dtype), ((20, 30, 4), np.uint8))
        self.assertEqual((s.width, s.height, s.name), (30, 20, "n"))
        self.assertEqual(s.layout, (ScreenArea(0, 0, 0, 30, 20),))

    def test_served_addresses(self):
        """A screen keeps the served addresses in order; listen_addresses is the plain
        addresses alone, and each one reads "address (security)"."""
        s = Screen(30, 20)
        self.assertEqual(s.listen_addresses, [])
        s.set_served_addresses([ServedAddress("[::1]:5901", "VNC password"),
                                ServedAddress("unix:/run/v.sock", "no authentication")])
        self.assertEqual(s.listen_addresses, ["[::1]:5901", "unix:/run/v.sock"])
        self.assertEqual([str(a) for a in s.served_addresses],
                         ["[::1]:5901 (VNC password)", "unix:/run/v.sock (no authentication)"])

    def test_size_limits(self):
        """Sizes outside 1x1 .. MAX_SIDE x MAX_SIDE are refused with a ScreenError."""
        for w, h in ((0, 10), (10, 0), (MAX_SIDE + 1, 10)):
            self.assertRaises(ScreenError, Screen, w, h)

    def test_damage_clipped(self):
        """Damage is clipped to the screen; no arguments means the whole screen."""
        s = Screen(30, 20)
        rec = watched(s)
        s.damage()
        s.damage(25, 15, 10, 10)
        s.damage(40, 40, 5, 5)
        s.damage(5, 5)
        self.assertEqual(rec.calls, [("damaged", None), ("damaged", (25, 15, 5, 5)),
                                     ("damaged", (5, 5, 25, 15))])

    def test_move(self):
        """move() copies the pixels and tells the listeners; moves off-screen are refused."""
        s = Screen(30, 20)
        rec = watched(s)
        s.framebuffer[0, 0] = (1, 2, 3, 0)
        s.move(0, 0, 10, 5, 4, 4)
        self.assertEqual(s.framebuffer[5, 10].tolist(), [1, 2, 3, 0])
        self.assertEqual(rec.calls, [("moved", 0, 0, 10, 5, 4, 4)])
        self.assertRaises(ValueError, s.move, 0, 0, 28, 0, 4, 4)

    def test_set_framebuffer(self):
        """A same-size framebuffer is damage; another size is a resize with a new layout."""
        s = Screen(30, 20)
        rec = watched(s)
        s.set_framebuffer(np.ones((20, 30, 4), np.uint8))
        s.set_framebuffer(np.ones((8, 9, 4), np.uint8))
        self.assertEqual(rec.calls, [("damaged", None), ("resized", 9, 8)])
        self.assertEqual(s.layout, (ScreenArea(0, 0, 0, 9, 8),))
        self.assertRaises(ValueError, s.set_framebuffer, np.ones((8, 9, 3), np.uint8))
        self.assertRaises(ValueError, s.set_framebuffer, np.ones((8, 9, 4), np.float32))
        self.assertRaises(ValueError, s.set_framebuffer, np.ones((9, 8, 4), np.uint8)[:, ::2])

    def test_resize_keeps_pixels(self):
        """resize() keeps the pixels that still fit."""
        s = Screen(30, 20)
        s.framebuffer[1, 1] = 9
        rec = watched(s)
        s.resize(10, 10)
        self.assertEqual(s.framebuffer[1, 1].tolist(), [9, 9, 9, 9])
        s.resize(10, 10)
        self.assertEqual(rec.calls, [("resized", 10, 10)])

    def test_other_notifications(self):
        """Name, cursor, LED and layout changes, bell and clipboard reach the listeners."""
        s = Screen(30, 20)
        rec = watched(s)
        s.set_name("x")
        s.set_cursor(None)
        s.set_led_state(2)
        s.set_led_state(2)
        s.set_layout([ScreenArea(1, 0, 0, 10, 10)])
        s.bell()
        s.set_clipboard(b"t")
        s.remove_listener(rec)
        s.bell()
        self.assertEqual(rec.calls, [("changed", "name"), ("changed", "cursor"),
                                     ("changed", "led"), ("changed", "layout"), ("bell",),
                                     ("clipboard", b"t")])

    def test_refuses_resize_by_default(self):
        """A plain screen refuses client resize requests."""
        self.assertEqual(Screen(3, 3).request_resize(5, 5, ()), RESIZE_PROHIBITED)

    def test_connections(self):
        """Connections are tracked by identity, so equal-looking ones are kept apart."""
        from vncd.info import ConnectionInfo
        s = Screen(3, 3)
        a, b = ConnectionInfo(peer="x", connected_at=0), ConnectionInfo(peer="x", connected_at=0)
        s.add_connection(a)
        s.add_connection(b)
        s.remove_connection(a)
        self.assertEqual(len(s.connections), 1)
        self.assertIs(s.connections[0], b)


class ArrayScreenTests(SynchronousTestCase):
    def test_update(self):
        """update() copies RGB or RGBX pixels, clipped, and damages the area."""
        s = ArrayScreen(10, 10)
        rec = watched(s)
        s.update(np.full((4, 4, 3), 7, np.uint8), 8, 8)
        self.assertEqual(s.framebuffer[9, 9].tolist(), [7, 7, 7, 0])
        self.assertEqual(rec.calls, [("damaged", (8, 8, 2, 2))])
        self.assertRaises(ValueError, s.update, np.zeros((4, 4), np.uint8))

    def test_adopts_array(self):
        """A given framebuffer is used as it is (drawing into it needs no copy)."""
        fb = np.zeros((5, 6, 4), np.uint8)
        s = ArrayScreen(framebuffer=fb)
        self.assertIs(s.framebuffer, fb)
        self.assertRaises(TypeError, ArrayScreen, 5)

    def test_callbacks(self):
        """Input goes to the callbacks that were given."""
        got = []
        s = ArrayScreen(5, 5, on_key=got.append, on_pointer=got.append, on_cut_text=got.append)
        events = [KeyEvent(True, 1), PointerEvent(1, 2, 3), CutTextEvent(b"x")]
        s.key_event(events[0])
        s.pointer_event(events[1])
        s.cut_text(events[2])
        self.assertEqual(got, events)
        ArrayScreen(5, 5).key_event(events[0])

    def test_resize_callback(self):
        """on_resize decides client resize requests; accepted ones resize the screen."""
        answers = [False, True]
        s = ArrayScreen(5, 5, on_resize=lambda w, h: answers.pop(0))
        self.assertTrue(s.resizable)
        self.assertFalse(ArrayScreen(5, 5).resizable)
        layout = (ScreenArea(3, 0, 0, 8, 9),)
        self.assertEqual(s.request_resize(8, 9, layout), RESIZE_PROHIBITED)
        self.assertEqual(s.request_resize(8, 9, layout), RESIZE_OK)
        self.assertEqual((s.width, s.height, s.layout), (8, 9, layout))


class ImageScreenTests(SynchronousTestCase):
    def png(self, array, name="p.png"):
        path = os.path.join(self.mktemp())
        os.makedirs(path)
        path = os.path.join(path, name)
        Image.fromarray(array).save(path)
        return path

    def test_loads_exactly(self):
        """A PNG becomes the framebuffer pixel for pixel; the file names the screen."""
        rng = np.random.default_rng(1)
        rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
        s = ImageScreen(self.png(rgb, "pic.png"))
        self.assertTrue(np.array_equal(s.framebuffer[..., :3], rgb))
        self.assertEqual(s.name, "pic.png")

    def test_other_modes(self):
        """A greyscale image is converted to RGB."""
        grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
        s = ImageScreen(self.png(grey))
        self.assertEqual(s.framebuffer[2, 3].tolist(), [11, 11, 11, 0])

    def test_missing_file(self):
        """A missing file is named, with the system's reason."""
        with self.assertRaises(ScreenError) as cm:
            ImageScreen("/nonexistent/x.png")
        self.assertEqual(str(cm.exception),
                         "Could not open '/nonexistent/x.png': No such file or directory")
        self.assertIsInstance(cm.exception, ObjectError)

    def test_not_an_image(self):
        """A file that is not an image is named."""
        path = os.path.join(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"not a picture")
        with self.assertRaises(ScreenError) as cm:
            ImageScreen(path)
        self.assertIn(f"'{path}' is not an image", str(cm.exception))

    def test_too_large(self):
        """An image beyond the largest screen is refused before it is decoded."""
        path = self.png(np.zeros((1, MAX_SIDE + 1, 3), np.uint8))
        with self.assertRaises(ScreenError) as cm:
            ImageScreen(path)
        self.assertIn(f"{MAX_SIDE + 1}x1", str(cm.exception))


class FromSpecTests(SynchronousTestCase):
    def error(self, kind, props):
        spec = ScreenSpec(kind, props, f"-screen {kind}")
        with self.assertRaises(ScreenError) as cm:
            from_spec(spec, Clock())
        self.assertTrue(str(cm.exception).startswith(f"-screen {kind}: "), str(cm.exception))
        return cm.exception.message

    def test_default_testcard(self):
        """The default spec is a 1024x768 testcard; size= changes it."""
        self.assertIsInstance(from_spec(ScreenSpec(), Clock()), TestcardScreen)
        s = from_spec(ScreenSpec("testcard", {"size": "640x480", "name": "lab"}), Clock())
        self.assertEqual((s.width, s.height, s.name), (640, 480, "lab"))

    def test_image_and_pipe(self):
        """image and pipe specs build their screens."""
        path = os.path.join(self.mktemp())
        Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(path, "PNG")
        self.assertIsInstance(from_spec(ScreenSpec("image", {"file": path}), Clock()), ImageScreen)
        pipe = from_spec(ScreenSpec("pipe", {"path": "-", "size": "8x6", "format": "rgb24"}),
                         Clock())
        self.assertIsInstance(pipe, PipeScreen)
        self.assertEqual((pipe.width, pipe.height, pipe.frame_size), (8, 6, 144))

    def test_errors(self):
        """Every error names the -screen option and says what is wrong."""
        self.assertEqual(self.error("video", {}),
                         "unknown screen kind 'video' (expected testcard, image, pipe, file, vnc)")
        self.assertEqual(self.error("image", {}), "Parameter 'file' is missing")
        self.assertEqual(self.error("image", {"file": "x", "colour": "red"}),
                         "Invalid parameter 'colour'")
        self.assertEqual(self.error("pipe", {"path": "-", "size": "big", "format": "rgbx"}),
                         "Parameter 'size' expects WIDTHxHEIGHT, not 'big'")
        self.assertEqual(self.error("pipe", {"path": "-", "size": "0x5", "format": "rgbx"}),
                         "Parameter 'size' 0x5 is outside 1x1 .. 8192x8192")
        self.assertEqual(self.error("pipe", {"path": "-", "size": "5x5", "format": "yuv"}),
                         "Parameter 'format' expects rgbx, bgrx, rgb24, not 'yuv'")
        self.assertIn("Could not open", self.error("image", {"file": "/nonexistent.png"}))
        self.assertIn("at least", self.error("testcard", {"size": "100x100"}))


KEYS = ["file", "path", "size", "format", "events", "name", "kind", "colour", ""]
VALUES = st.one_of(st.text(max_size=20), st.from_regex(r"[0-9]{1,3}x[0-9]{1,3}", fullmatch=True),
                   st.sampled_from(["rgbx", "bgrx", "rgb24", "-", "/", "/nonexistent"]))


class FromSpecGarbageTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(["testcard", "image", "pipe", "video", ""]),
           st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5))
    def test_garbage(self, kind, props):
        """Any -screen kind and properties give a screen or a ScreenError naming the option."""
        spec = ScreenSpec(kind, props, f"-screen {kind}")
        try:
            screen = from_spec(spec, Clock())
        except ScreenError as exc:
            self.assertTrue(str(exc).startswith(f"-screen {kind}: "))
        else:
            self.assertLessEqual(screen.width * screen.height, 999 * 999 + 1024 * 768)
