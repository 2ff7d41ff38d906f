"""Hypothesis state machines for the RFB server connection and the per-client updates.

Both drive :class:`tests.vncd.served.Served` -- the server core, a
display on a resizable screen and the client's ``ClientUpdates``,
joined as :mod:`vncd.server` joins them -- and read everything the
server writes back with the project's own client.

* :class:`ConnectionMachine`: client bytes in any order and any size --
  handshake steps, every client message, garbage, split anywhere.  The
  server answers with its protocol errors only, ends the connection
  after one, buffers no more than its input limit, and writes nothing
  its client cannot read.
* :class:`UpdatesMachine`: a connected client's requests
  (incremental/non-incremental, any rectangle), continuous updates,
  fences, encodings, pixel formats, resizes from the client and the
  screen, cursor/name/LED changes, bells, damage, and a stalled
  connection.  Invariants: nothing is sent that the client did not ask
  for (no FramebufferUpdate without a request or continuous updates, no
  pseudo-encoding or encoding it did not list, no fence or
  EndOfContinuousUpdates it did not negotiate); every non-incremental
  request is answered with the whole requested area; and while the
  connection holds more than the high-water mark nothing is written and
  the per-client queues stay within their caps (or the client is cut
  off).

Settings are bounded and derandomized so CI is quick and deterministic.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test,
)
from twisted.trial.unittest import SynchronousTestCase

from tests.vncd.served import Served, handshake
from vncd import encoding as enc
from vncd.encoding.decode import (
    CursorChanged, DesktopNameChanged, DesktopSizeChanged, LedStateChanged,
    QemuExtendedKeyEventSupported, RectDecoded, UpdateComplete,
)
from vncd.pixels import DEFAULT_FORMAT, PixelFormat
from vncd.rfb import messages as msg
from vncd.rfb.limits import Limits
from vncd.rfb.server import PROTOCOL_VERSION
from vncd.rfb.states import ServerState
from vncd.screens.base import Cursor
from vncd.updates import TILE, UpdateConfig

SETTINGS = settings(max_examples=50, stateful_step_count=30, deadline=None,
                    derandomize=True, suppress_health_check=list(HealthCheck))

FORMATS = (
    DEFAULT_FORMAT,
    PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0),
    PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6),
    PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0),
    PixelFormat(32, 24, True, True, 255, 255, 255, 0, 8, 16),
)
PIXEL_ENCODINGS = (enc.RAW, enc.HEXTILE, enc.ZLIB, enc.ZRLE, enc.TIGHT, enc.COPYRECT)
PSEUDO_ENCODINGS = (enc.DESKTOP_SIZE, enc.EXTENDED_DESKTOP_SIZE, enc.CURSOR, enc.DESKTOP_NAME,
                    enc.LAST_RECT, enc.QEMU_LED_STATE, enc.QEMU_EXTENDED_KEY_EVENT, enc.FENCE,
                    enc.CONTINUOUS_UPDATES, enc.COMPRESS_LEVEL_0 + 6, enc.QUALITY_LEVEL_0 + 5)
ENCODING_LISTS = st.lists(st.sampled_from(PIXEL_ENCODINGS + PSEUDO_ENCODINGS + (-1, 99)),
                          max_size=12)
COORD = st.integers(0, 300)
SIZE = st.integers(0, 300)


def area_of(rects, width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for r in rects:
        mask[r.y:r.y + r.height, r.x:r.x + r.width] = True
    return mask


def client_messages():
    """Any client message, with any field values the message types accept."""
    u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
    box = st.tuples(u16, u16, u16, u16)
    return st.one_of(
        st.sampled_from(FORMATS).map(msg.SetPixelFormat),
        ENCODING_LISTS.map(msg.SetEncodings),
        st.tuples(st.booleans(), box).map(lambda a: msg.FramebufferUpdateRequest(a[0], *a[1])),
        st.tuples(st.booleans(), u32).map(lambda a: msg.KeyEvent(*a)),
        st.tuples(st.integers(0, 255), u16, u16).map(lambda a: msg.PointerEvent(*a)),
        st.binary(max_size=64).map(msg.ClientCutText),
        st.tuples(st.booleans(), u32, u32).map(lambda a: msg.QEMUExtendedKeyEvent(*a)),
        st.tuples(st.booleans(), box).map(lambda a: msg.EnableContinuousUpdates(a[0], *a[1])),
        st.tuples(st.sampled_from([0, 1 << 31, (1 << 31) | 7, (1 << 31) | 4, 3]),
                  st.binary(max_size=64)).map(lambda a: msg.ClientFence(*a)),
        st.tuples(st.integers(1, 300), st.integers(1, 300)).map(
            lambda a: msg.SetDesktopSize(a[0], a[1], [msg.Screen(1, 0, 0, a[0], a[1], 0)])),
    )


class ConnectionMachine(RuleBasedStateMachine):
    """Client bytes in any order and any size into one server connection."""

    @initialize(password=st.booleans())
    def start(self, password):
        self.served = Served(40, 30, password=password)
        self.password = password
        self.fed = 0

    def teardown(self):
        self.served.close()

    def feed(self, data: bytes, cuts: list[int]) -> None:
        self.fed += len(data)
        pos = 0
        for cut in sorted(c % (len(data) + 1) for c in cuts):
            self.served.feed(data[pos:cut])
            pos = cut
        self.served.feed(data[pos:])

    @rule(cuts=st.lists(st.integers(0, 64), max_size=3))
    def handshake(self, cuts):
        self.feed(handshake(self.password), cuts)

    @rule(text=st.sampled_from([PROTOCOL_VERSION, b"RFB 003.003\n", b"RFB 003.007\n",
                                b"RFB 003.889\n", b"RFB 004.000\n", b"GET / HTTP/1.1\n"]))
    def version(self, text):
        self.feed(text, [])

    @rule(choice=st.integers(0, 255))
    def security_choice(self, choice):
        self.feed(bytes([choice]), [])

    @rule(response=st.binary(min_size=16, max_size=16))
    def vnc_response(self, response):
        self.feed(response, [])

    @rule(message=client_messages(), cuts=st.lists(st.integers(0, 64), max_size=3))
    def message(self, message, cuts):
        self.feed(message.encode(), cuts)

    @rule(data=st.binary(max_size=64))
    def garbage(self, data):
        self.feed(data, [])

    @rule(n=st.integers(0, 300))
    def damage(self, n):
        fb = self.served.screen.framebuffer
        fb[..., 0] = n % 256
        self.served.screen.damage(0, 0, n % 40 + 1, n % 30 + 1)
        self.served.settle()

    @invariant()
    def readable_output(self):
        assert self.served.bad_output is None, self.served.bad_output

    @invariant()
    def closed_after_error(self):
        if self.served.error is not None:
            assert self.served.finished
            assert self.served.conn.state is ServerState.CLOSED

    @invariant()
    def input_bounded(self):
        assert len(self.served.conn._in) <= Limits().max_receive_buffer

    @invariant()
    def updates_only_when_running(self):
        if self.served.updates is None:
            assert not any(isinstance(e, UpdateComplete) for e in self.served.events)


class UpdatesMachine(RuleBasedStateMachine):
    """A connected client's update state against the invariants of the module docstring."""

    @initialize(encodings=ENCODING_LISTS, pf=st.sampled_from(FORMATS))
    def start(self, encodings, pf):
        self.config = UpdateConfig(high_water=32 * 1024, max_queued_messages=8,
                                   max_resize_replies=4)
        # Several 64x64 tiles, so that a partly answered request shows.
        self.served = Served(160, 100, config=self.config)
        fb = self.served.screen.framebuffer
        ys, xs = np.mgrid[0:100, 0:160]
        fb[..., 0], fb[..., 1] = xs * 6, ys * 8
        self.served.screen.damage()
        self.served.feed(handshake(False))
        self.seen = len(self.served.events)
        self.outstanding = False
        self.continuous = False
        self.fenced = False
        self.caps: frozenset[int] = frozenset()
        self.pf = DEFAULT_FORMAT
        #: Non-incremental requests not answered yet: pixel boxes (x0, y0, x1, y1).
        self.full_requests: list[tuple[int, int, int, int]] = []
        self.send(msg.SetPixelFormat(pf))
        self.send(msg.SetEncodings(encodings))

    def teardown(self):
        self.served.close()

    @property
    def live(self) -> bool:
        return self.served.running and self.served.dropped is None

    def send(self, message) -> None:
        if isinstance(message, msg.SetEncodings):
            self.caps = frozenset(message.encodings[:Limits().max_encodings])
        if isinstance(message, msg.SetPixelFormat):
            self.pf = message.pixel_format
        stalled = self.served.buffered > self.config.high_water
        before = len(self.served.output)
        self.served.feed(message.encode())
        if stalled:
            assert len(self.served.output) == before, \
                "the server wrote to a connection holding more than the high-water mark"
        self.check_new_events()

    # -- rules --------------------------------------------------------------------

    @precondition(lambda self: self.live)
    @rule(incremental=st.booleans(), x=COORD, y=COORD, w=SIZE, h=SIZE)
    def request(self, incremental, x, y, w, h):
        self.outstanding = True
        if not incremental:
            # Clipped as the server clips: to the display, then to what the client knows.
            d, u = self.served.display, self.served.updates
            width, height = min(d.width, u.width), min(d.height, u.height)
            x0, y0 = min(x, width), min(y, height)
            x1, y1 = min(x0 + w, width), min(y0 + h, height)
            if x1 > x0 and y1 > y0:
                self.full_requests.append((x0, y0, x1, y1))
        self.send(msg.FramebufferUpdateRequest(incremental, x, y, w, h))

    @precondition(lambda self: self.live)
    @rule(x=st.integers(0, 170), y=st.integers(0, 110), w=st.integers(1, 300),
          h=st.integers(1, 300))
    def full_request(self, x, y, w, h):
        self.request(False, x, y, w, h)

    @precondition(lambda self: self.live)
    @rule(enable=st.booleans(), x=COORD, y=COORD, w=SIZE, h=SIZE)
    def continuous_updates(self, enable, x, y, w, h):
        if {enc.CONTINUOUS_UPDATES, enc.FENCE} <= self.caps:
            self.continuous = enable
        self.send(msg.EnableContinuousUpdates(enable, x, y, w, h))

    @precondition(lambda self: self.live)
    @rule(flags=st.sampled_from([0, 1 << 31, (1 << 31) | 7, (1 << 31) | 4]),
          payload=st.binary(max_size=64))
    def fence(self, flags, payload):
        # A client that sends a fence request asks for the reply, listed or not.
        self.fenced |= bool(flags & (1 << 31))
        self.send(msg.ClientFence(flags, payload))

    @precondition(lambda self: self.live)
    @rule(encodings=ENCODING_LISTS)
    def set_encodings(self, encodings):
        self.send(msg.SetEncodings(encodings))

    @precondition(lambda self: self.live)
    @rule(pf=st.sampled_from(FORMATS))
    def set_pixel_format(self, pf):
        self.send(msg.SetPixelFormat(pf))

    @precondition(lambda self: self.live)
    @rule(w=st.integers(1, 200), h=st.integers(1, 150), accept=st.booleans())
    def client_resize(self, w, h, accept):
        self.served.accept_resize = accept
        self.send(msg.SetDesktopSize(w, h, [msg.Screen(1, 0, 0, w, h, 0)]))

    @precondition(lambda self: self.live)
    @rule(w=st.integers(1, 200), h=st.integers(1, 150))
    def screen_resize(self, w, h):
        self.served.screen.resize(w, h)
        self.after_screen_change()

    @precondition(lambda self: self.live)
    @rule(x=COORD, y=COORD, w=SIZE, h=SIZE, colour=st.integers(0, 255))
    def damage(self, x, y, w, h, colour):
        screen = self.served.screen
        x, y = min(x, screen.width - 1), min(y, screen.height - 1)
        screen.framebuffer[y:y + h, x:x + w, :3] = colour
        screen.damage(x, y, w, h)
        self.after_screen_change()

    @precondition(lambda self: self.live)
    @rule(what=st.sampled_from(["cursor", "name", "led", "bell", "clipboard", "move"]),
          n=st.integers(0, 7))
    def screen_change(self, what, n):
        screen = self.served.screen
        if what == "cursor":
            rgba = np.full((n + 1, n + 2, 4), 200, dtype=np.uint8)
            screen.set_cursor(Cursor(rgba, 0, 0))
        elif what == "name":
            screen.set_name(f"screen {n}")
        elif what == "led":
            screen.set_led_state(n)
        elif what == "bell":
            screen.bell()
        elif what == "clipboard":
            screen.set_clipboard(b"text %d" % n)
        elif screen.width > n and screen.height > n:
            screen.move(0, 0, n, n, min(8, screen.width - n), min(8, screen.height - n))
        self.after_screen_change()

    @rule()
    def idle(self):
        """Time passes (the only rule left once the client was cut off)."""
        self.served.clock.advance(1)
        self.served.settle()
        if self.live:
            self.check_new_events()

    @precondition(lambda self: self.live)
    @rule(down=st.booleans(), keysym=st.integers(0, 0xFFFF), x=COORD, y=COORD)
    def input(self, down, keysym, x, y):
        self.send(msg.KeyEvent(down, keysym))
        self.send(msg.PointerEvent(1 if down else 0, x, y))

    @precondition(lambda self: self.live)
    @rule(stall=st.booleans())
    def flow(self, stall):
        if stall:
            self.served.buffered = self.config.high_water + 1
        else:
            self.served.buffered = 0
            self.served.writable()
            self.check_new_events()

    def after_screen_change(self) -> None:
        stalled = self.served.buffered > self.config.high_water
        before = len(self.served.output)
        self.served.settle()
        if stalled:
            assert len(self.served.output) == before, \
                "the server wrote to a connection holding more than the high-water mark"
        self.check_new_events()

    # -- checks ----------------------------------------------------------------------

    def check_new_events(self) -> None:
        """Every event since the last check: asked for, and answering what was asked."""
        events = self.served.events[self.seen:]
        self.seen = len(self.served.events)
        update: list = []
        for event in events:
            self.check_listed(event)
            if not isinstance(event, UpdateComplete):
                if isinstance(event, (RectDecoded, DesktopSizeChanged, CursorChanged,
                                      DesktopNameChanged, LedStateChanged,
                                      QemuExtendedKeyEventSupported)):
                    update.append(event)
                continue
            assert self.outstanding or self.continuous, \
                f"a FramebufferUpdate nobody asked for: {update}"
            resize_only = bool(update) and all(isinstance(e, DesktopSizeChanged) for e in update)
            if not resize_only:
                self.check_full_requests([e for e in update if isinstance(e, RectDecoded)])
                self.outstanding = False
            update = []
        if self.full_requests and self.live and self.served.buffered == 0 \
                and not self.served.updates._in_sync:
            raise AssertionError(f"non-incremental requests {self.full_requests} unanswered")

    def check_listed(self, event) -> None:
        caps = self.caps
        if isinstance(event, RectDecoded):
            assert event.encoding in caps | {enc.RAW}, event
        elif isinstance(event, DesktopSizeChanged):
            assert (enc.EXTENDED_DESKTOP_SIZE if event.extended else enc.DESKTOP_SIZE) in caps, \
                event
        elif isinstance(event, CursorChanged):
            assert enc.CURSOR in caps, event
        elif isinstance(event, DesktopNameChanged):
            assert enc.DESKTOP_NAME in caps, event
        elif isinstance(event, LedStateChanged):
            assert enc.QEMU_LED_STATE in caps, event
        elif isinstance(event, QemuExtendedKeyEventSupported):
            assert enc.QEMU_EXTENDED_KEY_EVENT in caps, event
        elif isinstance(event, msg.ServerFence):
            assert enc.FENCE in caps or self.fenced, event
        elif isinstance(event, msg.EndOfContinuousUpdates):
            assert enc.CONTINUOUS_UPDATES in caps, event
        elif isinstance(event, msg.SetColourMapEntries):
            assert not self.pf.true_colour, event

    def check_full_requests(self, rects) -> None:
        # The area the client knows (a client that cannot resize keeps the old size).
        d, u = self.served.display, self.served.updates
        width, height = min(d.width, u.width), min(d.height, u.height)
        covered = area_of(rects, u.width, u.height)
        for x0, y0, x1, y1 in self.full_requests:
            x1, y1 = min(x1, width), min(y1, height)
            assert covered[y0:y1, x0:x1].all(), \
                (f"a non-incremental request for {(x0, y0, x1, y1)} was answered with"
                 f" {[(r.x, r.y, r.width, r.height) for r in rects]}")
        self.full_requests = []

    @invariant()
    def queues_within_caps(self):
        updates = self.served.updates
        if updates is None or updates.closed:
            return
        assert len(updates.pending.queued) <= self.config.max_queued_messages
        assert len(updates.pending.eds) <= self.config.max_resize_replies
        assert updates.dirty.shape == self.served.display.tile_shape
        tiles_y, tiles_x = updates.dirty.shape
        assert tiles_y * TILE >= self.served.display.height

    @invariant()
    def readable_output(self):
        assert self.served.bad_output is None, self.served.bad_output


class StateMachineTests(SynchronousTestCase):

    def test_connection(self):
        """Client bytes in any order and size: protocol errors only, readable output."""
        run_state_machine_as_test(ConnectionMachine, settings=SETTINGS)

    def test_updates(self):
        """Update state: nothing unasked, full requests answered whole, queues capped."""
        run_state_machine_as_test(UpdatesMachine, settings=SETTINGS)
