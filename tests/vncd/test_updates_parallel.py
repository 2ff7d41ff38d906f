"""One update's rectangles encoded in parallel (vncd.updates.encoders.encode_many).

A full-screen change is many bands; with several workers they are encoded
on the shared pool's threads, out of order, while the cache is filled and
the bytes are written on the calling thread in plan order.  Each test
serves a multi-band picture (wider than Tight's 2048-pixel limit, several
tile rows, solid areas, gradients, noise) and checks that what a client
receives decodes to exactly the frame (Tight+JPEG: within a tolerance),
with 1 and 2 workers, for every encoding, over two updates (so Zlib's and
ZRLE's per-connection streams continue across bands and updates), and
that 1 and 2 workers send the very same bytes.  Real clients (gvnccapture,
vncdotool) read an in-process server whose bands are encoded in parallel.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.tools import free_display, require_tool
from tests.vncd import realclients
from tests.vncd.test_updates_helpers import Setup, pixels_events
from vncd import api
from vncd import encoding as enc
from vncd.encoding import parallel
from vncd.updates import encoders

#: Width and height of the picture: two runs per tile row (2048 + 152
#: pixels) and four tile rows, the last one partial.
WIDTH, HEIGHT = 2200, 230

#: Largest mean difference per channel accepted from Tight+JPEG at quality
#: level 7 (Pillow quality 75): on the whole picture (whose band of random
#: noise JPEG cannot keep) and on the rows without noise.
JPEG_MEAN, JPEG_MEAN_SMOOTH = 20.0, 6.0

#: Rows of :func:`picture` that hold random noise.
NOISE_ROWS = slice(130, 190)

LOSSLESS = {"Raw": enc.RAW, "Zlib": enc.ZLIB, "Hextile": enc.HEXTILE, "ZRLE": enc.ZRLE,
            "Tight": enc.TIGHT}


def picture(seed: int) -> np.ndarray:
    """An RGB picture with every kind of encoder path, different per ``seed``."""
    img = realclients.make_picture(WIDTH, HEIGHT, seed=seed)
    return np.roll(img, 37 * seed, axis=1)


class Threads:
    """Wraps every encoder to record the threads it ran on, and the update
    engine's hand-offs of whole bands to the pool (``encode_many``'s calls of
    ``map_ordered``).

    Which thread runs a band is up to the scheduler: ``map_ordered`` lets
    the calling thread take every item a busy pool thread has not started,
    so on a loaded machine the pool may run none of them.  Tests therefore
    check the hand-off (:attr:`band_jobs`), and pool threads only where
    they must not appear.
    """

    def __init__(self, test) -> None:
        self.names: set[str] = set()
        #: Items of each hand-off of an update's bands.
        self.band_jobs: list[int] = []
        saved = dict(encoders.ENCODERS)
        test.addCleanup(encoders.ENCODERS.update, saved)
        for number, fn in saved.items():
            encoders.ENCODERS[number] = self._wrap(fn)
        real, record = encoders.parallel, self.band_jobs

        class Recording:
            def __getattr__(self, name):
                return getattr(real, name)

            def map_ordered(self, fn, items):
                record.append(len(items))
                return real.map_ordered(fn, items)

        test.patch(encoders, "parallel", Recording())

    def _wrap(self, fn):
        def run(*args):
            self.names.add(threading.current_thread().name)
            return fn(*args)
        return run

    @property
    def pool_used(self) -> bool:
        return any(name.startswith("vncd-encode") for name in self.names)


def use_workers(test, count: int, every_encoding: bool = True) -> None:
    """The pool has ``count`` workers; bands of every encoding go parallel."""
    test.patch(parallel, "workers", lambda: count)
    if every_encoding:
        test.patch(encoders, "PARALLEL_BANDS", frozenset(encoders.ENCODERS))


class MapOrderedTests(SynchronousTestCase):
    """The pool's sharing of one list: results in order, errors raised, and
    the caller taking what a busy pool thread cannot."""

    def setUp(self):
        self.patch(parallel, "workers", lambda: 2)

    def test_order_and_error(self):
        self.assertEqual(parallel.map_ordered(lambda i: i * i, list(range(17))),
                         [i * i for i in range(17)])

        def fail(i):
            if i == 5:
                raise KeyError("band 5")
            return i

        with self.assertRaises(KeyError):
            parallel.map_ordered(fail, list(range(17)))

    def test_busy_pool_thread(self):
        """With the only pool thread busy elsewhere, the caller does all the
        work at once instead of waiting for the thread."""
        release = threading.Event()
        parallel._executor(1).submit(release.wait, 10)
        guard = threading.Timer(5, release.set)  # a broken pool waits this long
        guard.start()
        self.addCleanup(guard.cancel)
        self.addCleanup(release.set)
        start = time.monotonic()
        got = parallel.map_ordered(lambda i: (i, threading.current_thread().name),
                                   list(range(6)))
        elapsed = time.monotonic() - start
        release.set()
        self.assertEqual([i for i, _ in got], list(range(6)))
        self.assertEqual({name for _, name in got}, {threading.current_thread().name})
        self.assertLess(elapsed, 2)


class DecodedTests(SynchronousTestCase):
    """vncd's own decoder reads what a client was sent."""

    def serve(self, workers: int, encodings, **display_args):
        """Two full-frame updates of different pictures; returns the client's
        bytes, the decoded frames and the threads the encoders ran on."""
        use_workers(self, workers)
        threads = Threads(self)
        st = Setup(WIDTH, HEIGHT, **display_args)
        client, sink, viewer = st.client(encodings)
        frames, decoded = [], []
        for i, seed in enumerate((4, 9)):
            st.screen.framebuffer[..., :3] = picture(seed)
            st.screen.damage()
            client.request_update(i > 0, 0, 0, WIDTH, HEIGHT)
            st.settle()
            updates = viewer.updates()
            self.assertEqual(len(updates), 1)
            rects = pixels_events(updates[0])
            self.assertGreaterEqual(len(rects), 8, "expected a multi-band update")
            frames.append(picture(seed))
            decoded.append(viewer.rgbx()[..., :3].copy())
        return bytes(sink.data), frames, decoded, threads

    def check_lossless(self, name: str, number: int) -> None:
        sent = {}
        for workers in (1, 2):
            data, frames, decoded, threads = self.serve(workers, [number])
            for i, (want, got) in enumerate(zip(frames, decoded)):
                realclients.assert_same_pixels(self, got, want,
                                               f"{name}, {workers} workers, update {i + 1}")
            self.check_handoff(threads, workers)
            sent[workers] = data
        self.assertEqual(sent[1], sent[2], f"{name}: 2 workers sent other bytes than 1")

    def check_handoff(self, threads: Threads, workers: int) -> None:
        """Several workers: the bands were handed to the pool; one: no pool thread ran."""
        if workers > 1:
            self.assertTrue(threads.band_jobs, "the bands were not handed to the pool")
        else:
            self.assertFalse(threads.pool_used, threads.names)

    def test_raw(self):
        self.check_lossless("Raw", enc.RAW)

    def test_zlib(self):
        self.check_lossless("Zlib", enc.ZLIB)

    def test_hextile(self):
        self.check_lossless("Hextile", enc.HEXTILE)

    def test_zrle(self):
        self.check_lossless("ZRLE", enc.ZRLE)

    def test_tight(self):
        self.check_lossless("Tight", enc.TIGHT)

    def test_tight_jpeg(self):
        sent = {}
        for workers in (1, 2):
            data, frames, decoded, threads = self.serve(
                workers, [enc.TIGHT, enc.QUALITY_LEVEL_0 + 7], lossy=True, non_adaptive=True)
            for want, got in zip(frames, decoded):
                diff = np.abs(got.astype(int) - want.astype(int))
                smooth = np.delete(diff, np.arange(HEIGHT)[NOISE_ROWS], axis=0)
                self.assertLess(diff.mean(), JPEG_MEAN)
                self.assertLess(smooth.mean(), JPEG_MEAN_SMOOTH)
                self.assertTrue(diff.any(), "expected some JPEG")
            self.check_handoff(threads, workers)
            sent[workers] = data
        self.assertEqual(sent[1], sent[2])

    def test_shared_between_clients(self):
        """Clients that want the same bands share one parallel encoding; each
        still gets its own stream header once."""
        use_workers(self, 2)
        st = Setup(WIDTH, HEIGHT)
        clients = [st.client([enc.ZRLE]) for _ in range(3)]
        st.screen.framebuffer[..., :3] = picture(4)
        st.screen.damage()
        for client, _, _ in clients:
            client.request_update(False, 0, 0, WIDTH, HEIGHT)
        st.settle()
        for _, _, viewer in clients:
            viewer.updates()
            realclients.assert_same_pixels(self, viewer.rgbx()[..., :3], picture(4), "ZRLE")
        self.assertGreater(st.display.cache.hits, 0)

    def test_default_choice(self):
        """By default Tight's bands go over the pool and Raw's stay on the calling thread."""
        use_workers(self, 2, every_encoding=False)
        for number, pooled in ((enc.TIGHT, True), (enc.RAW, False)):
            threads = Threads(self)
            st = Setup(WIDTH, HEIGHT)
            client, _, viewer = st.client([number])
            st.screen.framebuffer[..., :3] = picture(4)
            st.screen.damage()
            client.request_update(False, 0, 0, WIDTH, HEIGHT)
            st.settle()
            viewer.updates()
            realclients.assert_same_pixels(self, viewer.rgbx()[..., :3], picture(4), str(number))
            self.assertEqual(bool(threads.band_jobs), pooled, threads.band_jobs)
            if not pooled:
                self.assertFalse(threads.pool_used, threads.names)


class RealClientTests(TestCase):
    """gvnccapture and vncdotool read an in-process vncd whose bands of every
    encoding are encoded over 2 workers (the clients run in a thread, so the
    reactor keeps serving)."""

    timeout = 120

    def setUp(self):
        use_workers(self, 2)
        self.threads = Threads(self)
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.picture = picture(4)[:, :1280]
        screen = api.ArrayScreen(1280, HEIGHT, name="bands")
        screen.framebuffer[..., :3] = self.picture
        self.display = free_display()
        service = api.serve(screen, f"127.0.0.1:{self.display}", reactor=reactor)
        self.addCleanup(service.stop)

    async def test_gvnccapture(self):
        """gvnccapture (ZRLE) captures the picture exactly."""
        require_tool("gvnccapture")
        out = os.path.join(self.dir, "capture.png")
        run = await deferToThread(realclients.gvnccapture, "127.0.0.1", self.display, out)
        self.assertTrue(run.ok, f"gvnccapture failed ({run.status}): {run.output}")
        realclients.assert_same_pixels(self, realclients.read_png(out), self.picture,
                                       "gvnccapture")
        self.assertTrue(self.threads.band_jobs, "the bands were not handed to the pool")

    async def test_vncdotool(self):
        """vncdotool captures the picture exactly with Hextile and with ZRLE."""
        for encoding in ("hextile", "zrle"):
            out = os.path.join(self.dir, f"vncdo-{encoding}.png")
            run = await deferToThread(realclients.run_vncdo, 5900 + self.display,
                                      [["capture", out]], encoding=encoding)
            self.assertTrue(run.ok, f"vncdotool {encoding} failed ({run.status}): {run.output}")
            realclients.assert_same_pixels(self, realclients.read_png(out), self.picture,
                                           f"vncdotool {encoding}")
        self.assertTrue(self.threads.band_jobs, "the bands were not handed to the pool")
