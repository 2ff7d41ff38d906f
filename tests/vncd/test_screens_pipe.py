"""Tests for -screen pipe: frames from a FIFO, a file or stdin; events as JSON lines."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.tools import ROOT
from vncd.screens.base import CutTextEvent, KeyEvent, PointerEvent
from vncd.screens.pipe import EventWriter, PipeScreen

#: How long a test waits for the reader thread (it needs milliseconds).
WAIT = 10.0


def frames(n, w=16, h=8, channels=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, channels), dtype=np.uint8) for _ in range(n)]


async def until(predicate, what):
    """Wait on the real reactor, a little at a time, for ``predicate`` to hold."""
    for _ in range(int(WAIT / 0.02)):
        if predicate():
            return
        await deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


class FormatTests(SynchronousTestCase):
    def test_formats(self):
        """rgbx is copied, bgrx has red and blue swapped, rgb24 fills R, G, B."""
        rgbx = frames(1)[0]
        for fmt, data, expect in (
                ("rgbx", rgbx.tobytes(), rgbx),
                ("bgrx", rgbx[..., [2, 1, 0, 3]].tobytes(), rgbx),
                ("rgb24", rgbx[..., :3].tobytes(), None)):
            s = PipeScreen("-", 16, 8, fmt, reactor=Clock())
            s.show_frame(data)
            if expect is None:
                self.assertTrue(np.array_equal(s.framebuffer[..., :3], rgbx[..., :3]))
            else:
                self.assertTrue(np.array_equal(s.framebuffer, expect))
            self.assertEqual(s.frames, 1)

    def test_unknown_format(self):
        """An unknown format is refused."""
        self.assertRaises(ValueError, PipeScreen, "-", 4, 4, "yuv420", reactor=Clock())


class EventWriterTests(SynchronousTestCase):
    def test_json_lines(self):
        """Input events are appended to the events file as one JSON object per line."""
        path = self.mktemp()
        clock = Clock()
        clock.advance(12.5)
        s = PipeScreen("-", 4, 4, "rgbx", events=path, reactor=clock)
        s.key_event(KeyEvent(True, 0x61, 30, "127.0.0.1:5"))
        s.pointer_event(PointerEvent(3, 1, 2, "127.0.0.1:5"))
        s.cut_text(CutTextEvent(b"caf\xe9", "127.0.0.1:5"))
        s.events.close()
        with open(path) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual(lines, [
            {"time": 12.5, "type": "key", "down": True, "keysym": 0x61, "keycode": 30,
             "client": "127.0.0.1:5"},
            {"time": 12.5, "type": "pointer", "buttons": 3, "x": 1, "y": 2,
             "client": "127.0.0.1:5"},
            {"time": 12.5, "type": "cut-text", "text": "café", "client": "127.0.0.1:5"}])

    def test_fifo_without_reader(self):
        """Events for a FIFO nobody reads are dropped, never blocking."""
        path = self.mktemp()
        os.mkfifo(path)
        writer = EventWriter(path, Clock().seconds)
        for _ in range(3):
            writer.write({"type": "key"})
        self.assertEqual(writer.dropped, 3)

    def test_full_fifo(self):
        """A FIFO whose reader does not keep up fills, then events are dropped."""
        path = self.mktemp()
        os.mkfifo(path)
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        writer = EventWriter(path, Clock().seconds)
        self.addCleanup(writer.close)
        for _ in range(5000):
            writer.write({"type": "cut-text", "text": "x" * 1000})
        self.assertGreater(writer.dropped, 0)
        data = os.read(reader, 1 << 20)
        self.assertTrue(data.startswith(b'{"time"'))


class ReaderTests(TestCase):
    timeout = 30

    def screen(self, path, **kw):
        s = PipeScreen(path, 16, 8, "rgbx", reactor=reactor, **kw)
        self.addCleanup(s.stop)
        return s

    async def test_fifo(self):
        """Frames written to a FIFO appear on the screen; at EOF the last one stays."""
        path = self.mktemp()
        os.mkfifo(path)
        s = self.screen(path)
        damaged = []
        s.add_listener(type("L", (), {"screen_damaged": lambda self, sc, r: damaged.append(r)})())
        s.start()
        pictures = frames(3)
        done = threading.Event()

        def produce():
            with open(path, "wb") as f:
                for p in pictures:
                    data = p.tobytes()
                    f.write(data[:100])
                    f.flush()
                    f.write(data[100:])
                    f.flush()
            done.set()

        threading.Thread(target=produce, daemon=True).start()
        await until(lambda: s.ended is not None, "end of input")
        self.assertTrue(done.is_set())
        self.assertTrue(np.array_equal(s.framebuffer, pictures[-1]))
        self.assertEqual(s.frames + s.skipped, 3)
        self.assertGreaterEqual(len(damaged), 1)
        self.assertIn("end of input", s.ended)

    async def test_file_with_partial_frame(self):
        """A regular file is read to its end; a trailing partial frame is ignored and reported."""
        path = self.mktemp()
        pictures = frames(2, seed=3)
        with open(path, "wb") as f:
            f.write(pictures[0].tobytes() + pictures[1].tobytes() + b"tail")
        s = self.screen(path)
        s.start()
        await until(lambda: s.ended is not None, "end of input")
        self.assertTrue(np.array_equal(s.framebuffer, pictures[1]))
        self.assertIn("4 bytes of a partial frame ignored", s.ended)

    async def test_missing_file(self):
        """A path that cannot be opened is reported, naming it."""
        s = self.screen("/nonexistent/frames")
        s.start()
        await until(lambda: s.ended is not None, "the open failure")
        self.assertEqual(s.ended, "cannot open '/nonexistent/frames': No such file or directory")

    async def test_stop_while_waiting_for_writer(self):
        """stop() returns promptly even when no writer ever opened the FIFO."""
        path = self.mktemp()
        os.mkfifo(path)
        s = self.screen(path)
        s.start()
        await deferLater(reactor, 0.1, lambda: None)
        reader = s._reader
        s.stop()
        self.assertFalse(reader.is_alive())

    async def test_events_to_fifo(self):
        """With events= naming a FIFO that has a reader, each input event arrives as a line."""
        path = self.mktemp()
        events = self.mktemp()
        os.mkfifo(path)
        os.mkfifo(events)
        reader = os.open(events, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        s = self.screen(path, events=events)
        s.key_event(KeyEvent(False, 0xFF0D, None, "[::1]:9"))
        line = os.read(reader, 65536).decode()
        self.assertEqual(json.loads(line)["keysym"], 0xFF0D)
        self.assertTrue(line.endswith("\n"))

    def test_stop_closes_events_of_unstarted_screen(self):
        """stop() closes the events file even when frames were never read."""
        events = self.mktemp()
        s = self.screen("/nonexistent/frames", events=events)
        s.key_event(KeyEvent(True, 0x61, None, "127.0.0.1:1"))
        self.assertIsNotNone(s.events._fd)
        s.stop()
        self.assertIsNone(s.events._fd)


class StdinTests(SynchronousTestCase):
    def test_stdin(self):
        """path=- reads frames from standard input (here a child vncd process's)."""
        picture = frames(1, seed=9)[0]
        script = (
            "import hashlib, sys\n"
            "from twisted.internet import reactor\n"
            "from compat.config import ScreenSpec\n"
            "from vncd.screens import from_spec\n"
            "s = from_spec(ScreenSpec('pipe', {'path': '-', 'size': '16x8', 'format': 'rgbx'}),"
            " reactor)\n"
            "def check():\n"
            "    if s.ended is not None:\n"
            "        print(hashlib.sha256(s.framebuffer.tobytes()).hexdigest(), s.ended)\n"
            "        reactor.stop()\n"
            "    else:\n"
            "        reactor.callLater(0.02, check)\n"
            "s.start()\n"
            "check()\n"
            "reactor.callLater(20, reactor.stop)\n"
            "reactor.run()\n")
        env = dict(os.environ, PYTHONPATH=ROOT)
        out = subprocess.run([sys.executable, "-c", script], input=picture.tobytes(),
                             capture_output=True, timeout=60, env=env, cwd=ROOT)
        import hashlib
        digest = hashlib.sha256(picture.tobytes()).hexdigest()
        self.assertEqual(out.stdout.decode().split()[0], digest, out.stderr.decode())
        self.assertIn("end of input from '-'", out.stdout.decode())
