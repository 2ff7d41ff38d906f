# -*- test-case-name: tests.vncd.test_screens_pipe -*-
"""``-screen pipe,path=FILE|-,size=WxH,format=rgbx|bgrx|rgb24[,events=PATH]``.

Raw frames of ``W*H`` pixels (4 bytes each for ``rgbx``/``bgrx``, 3 for
``rgb24``) are read one after another from a file, a FIFO or standard
input (``path=-``), e.g. from ``ffmpeg ... -f rawvideo -pix_fmt bgr0 -``.

Reading happens in a thread, so a slow or silent producer never blocks
the reactor.  Memory stays bounded whatever the producer does: the
thread fills one frame buffer, and a complete frame replaces the one
waiting for the reactor (frames the display had no time for are
dropped, only the newest is shown).  At end of input the last frame
stays on screen and the fact is logged.

With ``events=PATH`` every input event is appended to PATH as one JSON
object per line (``{"type": "key", ...}``), for the program producing
the frames.  PATH may be a file or a FIFO; writes never block: when a
FIFO has no reader or is full, events are dropped (and counted).

Knows nothing about RFB, sockets or TLS.
"""

from __future__ import annotations

import errno
import json
import os
import select
import stat
import threading

import numpy as np
from twisted.logger import Logger

from vncd.screens.base import CutTextEvent, KeyEvent, PointerEvent, Screen

__all__ = ["PipeScreen", "EventWriter", "FORMATS"]

log = Logger(namespace="vncd.screens.pipe")

#: Bytes per pixel of each input format.
FORMATS = {"rgbx": 4, "bgrx": 4, "rgb24": 3}

#: Longest wait of the reader thread for input before it looks at its
#: stop flag again: bounds how long :meth:`PipeScreen.stop` takes.
POLL_INTERVAL = 0.2

#: Bytes asked of the input per read: large enough that a 1080p frame
#: takes a handful of reads, small enough not to hold a big buffer twice.
READ_SIZE = 1024 * 1024

#: Event bytes kept for a FIFO that accepted only part of a line; beyond
#: it new events are dropped until the reader catches up.
MAX_EVENT_BACKLOG = 1024 * 1024


class EventWriter:
    """Appends input events as JSON lines to a file or FIFO, never blocking."""

    def __init__(self, path: str, clock) -> None:
        self.path = path
        self._clock = clock
        self._fd: int | None = None
        self._backlog = b""
        #: Events that could not be written (no reader, FIFO full).
        self.dropped = 0

    def _open(self) -> bool:
        if self._fd is not None:
            return True
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                               | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                log.warn("events={path}: {error}", path=self.path, error=os.strerror(exc.errno))
            return False
        return True

    def write(self, event: dict) -> None:
        event = {"time": round(self._clock(), 6), **event}
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode("utf-8")
        if not self._open() or len(self._backlog) + len(line) > MAX_EVENT_BACKLOG:
            self.dropped += 1
            return
        data = self._backlog + line
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                os.close(self._fd)
                self._fd = None
                self._backlog = b""
                self.dropped += 1
                return
            raise
        self._backlog = data[written:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Reader(threading.Thread):
    """Reads whole frames and hands each to ``deliver`` (called in this thread)."""

    def __init__(self, path: str, frame_size: int, deliver, finished) -> None:
        super().__init__(name=f"vncd pipe reader {path}", daemon=True)
        self.path = path
        self.frame_size = frame_size
        self.deliver = deliver
        self.finished = finished
        self.stopping = threading.Event()
        self.opening = True

    def run(self) -> None:
        try:
            fd = 0 if self.path == "-" else os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            self.opening = False
            self.finished(f"cannot open '{self.path}': {os.strerror(exc.errno)}")
            return
        self.opening = False
        frame = bytearray(self.frame_size)
        view = memoryview(frame)
        filled = 0
        try:
            while not self.stopping.is_set():
                ready, _, _ = select.select([fd], [], [], POLL_INTERVAL)
                if not ready:
                    continue
                n = os.readv(fd, [view[filled:filled + READ_SIZE]])
                if n == 0:
                    self.finished(f"end of input from '{self.path}'"
                                  + (f" ({filled} bytes of a partial frame ignored)"
                                     if filled else ""))
                    return
                filled += n
                if filled == self.frame_size:
                    self.deliver(bytes(frame))
                    filled = 0
        except OSError as exc:
            self.finished(f"reading '{self.path}' failed: {os.strerror(exc.errno)}")
        finally:
            if fd != 0:
                os.close(fd)


class PipeScreen(Screen):
    """Frames from a file, FIFO or stdin (see the module docstring)."""

    def __init__(self, path: str, width: int, height: int, fmt: str, *,
                 events: str | None = None, name: str | None = None, reactor) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown frame format {fmt!r}")
        super().__init__(width, height, name=name if name is not None else "vncd pipe",
                         reactor=reactor)
        self.path = path
        self.format = fmt
        self.frame_size = width * height * FORMATS[fmt]
        self.events = EventWriter(events, reactor.seconds) if events else None
        self._lock = threading.Lock()
        self._latest: bytes | None = None
        self._reader: _Reader | None = None
        #: Frames shown / frames replaced by a newer one before being shown.
        self.frames = 0
        self.skipped = 0
        #: Why reading stopped (end of input, error), once it has.
        self.ended: str | None = None

    # -- frames ----------------------------------------------------------------

    def start(self) -> None:
        if self._reader is None:
            self._reader = _Reader(self.path, self.frame_size, self._from_thread,
                                   self._finished_in_thread)
            self._reader.start()

    def stop(self) -> None:
        if self.events is not None:
            self.events.close()
        reader, self._reader = self._reader, None
        if reader is None:
            return
        reader.stopping.set()
        if reader.opening and self.path != "-":
            self._release_open(reader)
        reader.join(2 * POLL_INTERVAL)

    def _release_open(self, reader: _Reader) -> None:
        """Unblock a reader waiting in open() for a FIFO writer."""
        try:
            if not stat.S_ISFIFO(os.stat(self.path).st_mode):
                return
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        os.close(fd)

    def _from_thread(self, frame: bytes) -> None:
        with self._lock:
            waiting = self._latest is not None
            if waiting:
                self.skipped += 1
            self._latest = frame
        if not waiting:
            self.reactor.callFromThread(self._show)

    def _finished_in_thread(self, reason: str) -> None:
        self.reactor.callFromThread(self._finished, reason)

    def _finished(self, reason: str) -> None:
        self.ended = reason
        log.info("-screen pipe: {reason}; keeping the last frame", reason=reason)

    def _show(self) -> None:
        with self._lock:
            frame, self._latest = self._latest, None
        if frame is None:
            return
        self.show_frame(frame)

    def show_frame(self, frame: bytes) -> None:
        """Put one raw frame of the screen's format on the screen."""
        h, w = self.height, self.width
        fb = self._framebuffer
        if self.format == "rgbx":
            fb[...] = np.frombuffer(frame, dtype=np.uint8).reshape(h, w, 4)
        elif self.format == "bgrx":
            src = np.frombuffer(frame, dtype=np.uint8).reshape(h, w, 4)
            fb[..., 0] = src[..., 2]
            fb[..., 1] = src[..., 1]
            fb[..., 2] = src[..., 0]
            fb[..., 3] = src[..., 3]
        else:
            fb[..., :3] = np.frombuffer(frame, dtype=np.uint8).reshape(h, w, 3)
        self.frames += 1
        self.damage()

    # -- input -------------------------------------------------------------------

    def key_event(self, event: KeyEvent) -> None:
        if self.events is not None:
            self.events.write({"type": "key", "down": event.down, "keysym": event.keysym,
                               "keycode": event.keycode, "client": event.client})

    def pointer_event(self, event: PointerEvent) -> None:
        if self.events is not None:
            self.events.write({"type": "pointer", "buttons": event.buttons, "x": event.x,
                               "y": event.y, "client": event.client})

    def cut_text(self, event: CutTextEvent) -> None:
        if self.events is not None:
            self.events.write({"type": "cut-text", "text": event.text.decode("latin-1"),
                               "client": event.client})
