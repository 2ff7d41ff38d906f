# -*- test-case-name: tests.vncd.test_updates -*-
"""Framebuffer updates: damage tracking, per-client scheduling, shared encoding.

:class:`Display` watches one :class:`~vncd.screens.base.Screen`.  It keeps
its own copy of the frame (the *snapshot*) and, whenever the screen reports
damage, compares the damaged area with the snapshot in 64x64 tiles; tiles
that really changed become dirty for every client and the snapshot is
updated.  Each change bumps the display's *generation*.

:class:`ClientUpdates` is one client's side: the protocol layer calls its
methods for every client message after ServerInit (SetPixelFormat,
SetEncodings, FramebufferUpdateRequest, ...), and it writes every
server-to-client message from then on to the connection's *sink*
(``write(bytes)``, ``output_buffered() -> int``, ``close(reason)``).

What a client is sent, and when:

* A client's dirty region is a boolean tile mask: new damage is OR-ed
  in, so a client that does not keep up gets the latest pixels of the
  union of what changed -- coalesced, never queued.
* An update is written only when the client has asked for one (a
  FramebufferUpdateRequest, or continuous updates), only when the
  connection's queued output is below :attr:`UpdateConfig.high_water`,
  and answers every request received so far.  An incremental request with
  nothing dirty waits.  The protocol layer calls
  :meth:`ClientUpdates.writable` when the output drains.
* Requested areas are widened to whole tiles (clients keep the whole
  framebuffer, so a few extra pixels are harmless and a partly requested
  tile can never be resent forever).
* Dirty tiles are sent as horizontal runs within one tile row (at most
  2048 pixels wide, Tight's limit).  Runs are cut the same way for every
  client, so clients with the same dirty tiles ask for the same
  rectangles, and :class:`EncodeCache` encodes each rectangle once per
  (generation, rectangle, encoding, parameters) for all of them.
* Encoding choice: the client's first encoding that vncd can produce,
  except that Zlib gives way to Tight or ZRLE when the client lists one of
  them too (as QEMU prefers ZRLE to Zlib); Raw when nothing fits.
* Pseudo-encodings: DesktopSize / ExtendedDesktopSize (an update of
  their own, as rfbproto requires, followed at once by the pixels without
  waiting for another request: every non-incremental request of an
  ExtendedDesktopSize client gets the layout and then the pixels, and a
  resize is followed by the whole new screen -- QEMU's order), Cursor,
  DesktopName, QEMU LED state, QEMU extended key event (announced when
  first listed), LastRect, and the compression / JPEG quality /
  subsampling levels.
* Lossy: with ``lossy=True`` and a client that sent a JPEG quality level,
  Tight may send full-colour areas as JPEG.  By default (adaptive) only
  tiles that keep changing ("hot": changed twice within
  :attr:`UpdateConfig.hot_window`) are sent lossy, and once such a tile
  has been still for :attr:`UpdateConfig.lossless_refresh_delay` it is
  resent losslessly.  With ``non_adaptive=True`` every full-colour area
  may be JPEG and nothing is refreshed (QEMU's ``non-adaptive``).
* Fences and continuous updates follow TigerVNC: a server fence request
  announces fence support, EndOfContinuousUpdates announces continuous
  updates, a SyncNext fence is answered after the next message.

Everything is bounded per client: the tile mask, at most one pending
CopyRect, one cut text, one bell, :attr:`UpdateConfig.max_queued_messages`
small control messages and :attr:`UpdateConfig.max_resize_replies`
ExtendedDesktopSize replies; a client exceeding the last two is
disconnected (it sends requests but does not read the answers).

Input goes the other way: key, pointer and clipboard events reach the
screen through the display's :class:`InputPacer`, which spaces key
events ``key-delay-ms`` apart as QEMU does, keeps every event in the
order it was sent, and holds at most :attr:`UpdateConfig.max_queued_input`
of them.

This module knows nothing about sockets, TLS or the RFB handshake; it
uses :mod:`vncd.encoding` for bytes and the Screen API for pixels.
"""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
from twisted.logger import Logger

from vncd import encoding as enc
from vncd.encoding import EncodedRect, EncodeParams, messages, pseudo
from vncd.encoding.convert import converter_for
from vncd.encoding.copyrect import encode_copyrect
from vncd.encoding.hextile import encode_hextile
from vncd.encoding.raw import encode_raw
from vncd.encoding.tight import encode_tight
from vncd.encoding.zlib import encode_zlib
from vncd.encoding.zrle import encode_zrle
from vncd.info import ConnectionInfo
from vncd.pixels import DEFAULT_FORMAT, PixelFormat
from compat.vnc import MAX_KEY_DELAY_MS
from vncd.screens.base import (
    MAX_SIDE, RESIZE_INVALID_LAYOUT, RESIZE_OK, RESIZE_OUT_OF_RESOURCES, CutTextEvent,
    InputEvent, KeyEvent, PointerEvent, Screen, ScreenArea,
)

__all__ = [
    "Display", "ClientUpdates", "UpdateConfig", "EncodeCache", "InputPacer", "Sink", "TILE",
    "choose_encoding", "ENCODERS",
]

#: Side of the square tiles in which damage is found and tracked.  64 is
#: ZRLE's tile and 4 Hextile tiles; a 1080p screen has 510 of them, so
#: per-tile bookkeeping stays small while a changed clock or cursor costs
#: at most a few tiles.
TILE = 64

log = Logger(namespace="vncd.updates")

#: The server's default zlib level when a client names none: level 1 is
#: within a few per cent of level 6's size at half the CPU time (neatvnc
#: made the same choice for 60 fps streaming).
DEFAULT_COMPRESS_LEVEL = 1

#: Output queued towards a client above which no new update is started
#: (about one socket buffer; the same mark at which the protocol layer
#: stops calling the client writable).
OUTPUT_HIGH_WATER = 256 * 1024

#: Encoded rectangles kept for sharing between clients.  A compressed
#: 1080p desktop frame is 0.5-1 MB and a Raw one 8 MB: this holds several
#: full frames of every encoding in use.  Entries die with their
#: generation anyway; the bound only matters when clients in many
#: different formats are served at once.
CACHE_BYTES = 64 * 1024 * 1024

#: Small control messages (fence replies, EndOfContinuousUpdates) queued
#: while a client does not read.  Each answers a message the client sent;
#: a client that keeps sending without reading the answers is cut off.
MAX_QUEUED_MESSAGES = 64

#: ExtendedDesktopSize replies queued for a client.  Every SetDesktopSize
#: must be answered, unmerged; a client with this many unanswered is not
#: reading.
MAX_RESIZE_REPLIES = 16

#: Input events one display holds back while ``key-delay-ms`` spaces its
#: key events (pointer and clipboard events that arrive behind a waiting
#: key wait with it, to keep their order).  QEMU's input queue holds 1024
#: entries, about 340 keys (a key costs an event, a sync and a delay);
#: 1024 events hold a 500-character paste typed by a client (two events a
#: character), about ten seconds of typing at the default 10 ms, in well
#: under a megabyte.  Further events are dropped, as QEMU drops them.
MAX_QUEUED_INPUT = 1024

#: Seconds within which a tile must change twice to count as "hot" (video,
#: animation) and be allowed a lossy encoding in adaptive mode.
HOT_WINDOW = 0.5

#: Seconds a lossily sent tile must stay unchanged before it is resent
#: losslessly (adaptive mode).
LOSSLESS_REFRESH_DELAY = 1.0

#: Encodings listed in one SetEncodings that are looked at; the protocol
#: layer already bounds the message (1024), this only keeps the set small.
MAX_ENCODINGS = 1024

#: Widest run of tiles in one rectangle: Tight's 2048-pixel limit.
MAX_RUN_TILES = 2048 // TILE

#: Distinct encoding parameter sets numbered for cache keys; clients use a
#: handful (one per pixel format and level in use).  Past the bound the
#: parameters themselves are the key (slower to hash, never wrong).
MAX_PARAMS_IDS = 256

#: Rectangle plans remembered per frame: one per distinct dirty mask and
#: area among the clients, so usually one or two.
MAX_PLANS = 64

#: JPEG quality (Pillow's 1-100 scale) for the ten Tight quality levels.
JPEG_QUALITY = (5, 15, 25, 35, 45, 55, 65, 75, 85, 95)

#: Pillow subsampling (0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0) per rfbproto
#: subsampling level -768 ... -763 (grayscale has no Pillow equivalent
#: and keeps Pillow's default).
JPEG_SUBSAMPLING = {0: 0, 1: 2, 2: 1, 3: None, 4: 2, 5: 2}


@dataclass(frozen=True)
class UpdateConfig:
    """Tunables of a display and its clients (the module constants by default)."""

    high_water: int = OUTPUT_HIGH_WATER
    cache_bytes: int = CACHE_BYTES
    default_compress_level: int = DEFAULT_COMPRESS_LEVEL
    max_queued_messages: int = MAX_QUEUED_MESSAGES
    max_resize_replies: int = MAX_RESIZE_REPLIES
    hot_window: float = HOT_WINDOW
    lossless_refresh_delay: float = LOSSLESS_REFRESH_DELAY
    max_queued_input: int = MAX_QUEUED_INPUT


class Sink(Protocol):
    """Where a client's bytes go (the protocol layer's side of the connection)."""

    def write(self, data: bytes) -> None: ...

    def output_buffered(self) -> int: ...

    def close(self, reason: str) -> None: ...


#: The encoders for pixel data, by encoding number.
ENCODERS: dict[int, Callable[..., EncodedRect]] = {
    enc.RAW: encode_raw, enc.HEXTILE: encode_hextile, enc.ZLIB: encode_zlib,
    enc.ZRLE: encode_zrle, enc.TIGHT: encode_tight,
}

#: Encodings that always beat Zlib when a client lists them too: they
#: compress the same pixels better for similar work (QEMU prefers ZRLE to
#: Zlib the same way).
_BETTER_THAN_ZLIB = (enc.TIGHT, enc.ZRLE)


def choose_encoding(encodings: Sequence[int]) -> int:
    """The encoding vncd uses for a client that listed ``encodings``.

    The client's order is its preference and is followed (RFB says so, and
    a client may list Raw or Hextile first on purpose, to save CPU on a
    fast link), except that Zlib gives way to Tight or ZRLE.  Raw when
    nothing listed can be encoded.
    """
    usable = [number for number in encodings if number in ENCODERS]
    for number in usable:
        if number == enc.ZLIB and any(n in _BETTER_THAN_ZLIB for n in usable):
            continue
        return number
    return enc.RAW


class EncodeCache:
    """Encoded rectangles shared by all clients of a display, bounded in bytes.

    Keys include the display generation; :meth:`clear` is called when the
    generation changes, so no entry outlives the pixels it encodes.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: dict = {}
        self._bytes = 0
        #: Lookups answered from the cache / by encoding.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return self._bytes

    def get(self, key, make: Callable[[], EncodedRect]) -> EncodedRect:
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        value = make()
        if value.size <= self.max_bytes:
            self._entries[key] = value
            self._bytes += value.size
            while self._bytes > self.max_bytes:
                oldest = next(iter(self._entries))
                self._bytes -= self._entries.pop(oldest).size
        return value

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


def _tiles(n: int) -> int:
    return -(-n // TILE)


def _tile_box(x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
    """Tile rows/columns ``(ty0, tx0, ty1, tx1)`` covering a pixel rectangle."""
    return y // TILE, x // TILE, _tiles(y + h), _tiles(x + w)


class InputPacer:
    """One display's input on its way to the screen, key events spaced out.

    QEMU's ``key-delay-ms``: a key event goes to the screen at once when
    nothing is waiting and the previous key event left at least ``delay``
    seconds ago; otherwise it waits its turn, and consecutive key events
    leave at least ``delay`` apart (whatever reads them -- a guest's
    keyboard controller, an application polling key state -- may miss
    keys that come faster).  Pointer and clipboard events are never
    delayed on their own account, but one that arrives while key events
    wait queues behind them, so the screen sees the input in the order
    the clients sent it.  (QEMU lets pointer events overtake waiting keys,
    which can turn Ctrl+A followed by a click into a Ctrl+click.)  Pointer
    motion queued behind keys is merged: a position with the same buttons
    replaces the previous one.  At most ``limit`` events wait; further
    ones are dropped, as QEMU drops them, with one log line per overflow.
    Events already accepted are delivered even if their client has gone
    meanwhile, so its key releases still arrive.

    ``deliver(client, handler, event)`` hands one event to the screen;
    the timer comes from ``reactor.callLater``.
    """

    def __init__(self, reactor, delay: float, limit: int,
                 deliver: Callable[["ClientUpdates", Callable, InputEvent], None]) -> None:
        if delay < 0 or limit < 0:
            raise ValueError("the key delay and the queue limit must not be negative")
        self.reactor = reactor
        self.delay = delay
        self.limit = limit
        self._deliver = deliver
        self._waiting: collections.deque = collections.deque()
        self._call = None
        self._overflowing = False
        self._closed = False
        #: Events dropped because ``limit`` events were waiting.
        self.dropped = 0

    def __len__(self) -> int:
        """Events waiting."""
        return len(self._waiting)

    def submit(self, client: "ClientUpdates", handler: Callable, event: InputEvent) -> None:
        """Deliver ``event`` (with ``handler``) now, or queue it behind what waits."""
        if self._closed:
            return
        key = isinstance(event, KeyEvent)
        if not self._waiting and (not key or self._call is None):
            self._deliver(client, handler, event)
            if key:
                self._pause()
            return
        if isinstance(event, PointerEvent) and self._waiting:
            last_client, _, last = self._waiting[-1]
            if (last_client is client and isinstance(last, PointerEvent)
                    and last.buttons == event.buttons):
                self._waiting[-1] = (client, handler, event)
                return
        if len(self._waiting) >= self.limit:
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                log.warn("{count} input events are waiting for key-delay-ms: dropping input"
                         " from {peer} until they drain", count=len(self._waiting),
                         peer=client.info.peer)
            return
        self._waiting.append((client, handler, event))

    def close(self) -> None:
        """Drop whatever waits and stop the timer (the display is closing)."""
        self._closed = True
        self._waiting.clear()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _pause(self) -> None:
        """A key event left: the next one waits ``delay``."""
        if self.delay > 0 and not self._closed:
            self._call = self.reactor.callLater(self.delay, self._release)

    def _release(self) -> None:
        """The pause is over: deliver the next key event and what follows it, up
        to the key event after it."""
        self._call = None
        sent_key = False
        while self._waiting and not self._closed:
            client, handler, event = self._waiting[0]
            if isinstance(event, KeyEvent):
                if sent_key:
                    break
                sent_key = True
            self._waiting.popleft()
            self._deliver(client, handler, event)
        if not self._waiting:
            self._overflowing = False
        if sent_key:
            self._pause()


class Display:
    """One screen as served to a set of clients (see the module docstring).

    ``key_delay_ms`` spaces key events on their way to the screen
    (:class:`InputPacer`; ``-vnc``'s ``key-delay-ms``, whose default of 10
    the command line supplies -- a Display made directly delays nothing).
    """

    def __init__(self, screen: Screen, *, reactor, name: str | None = None,
                 lossy: bool = False, non_adaptive: bool = False, key_delay_ms: int = 0,
                 config: UpdateConfig | None = None) -> None:
        if not 0 <= key_delay_ms <= MAX_KEY_DELAY_MS:
            raise ValueError(f"key_delay_ms must be 0 .. {MAX_KEY_DELAY_MS}, not {key_delay_ms}")
        self.screen = screen
        self.reactor = reactor
        self._name = name
        self.lossy = lossy
        self.non_adaptive = non_adaptive
        self.config = config or UpdateConfig()
        self.input_pacer = InputPacer(reactor, key_delay_ms / 1000,
                                      self.config.max_queued_input, self._deliver_input)
        #: Incremented whenever the snapshot changes.
        self.generation = 0
        self.cache = EncodeCache(self.config.cache_bytes)
        self.infos: list[ConnectionInfo] = []
        self.clients: list[ClientUpdates] = []
        self._tick_call = None
        self._refresh_call = None
        self._compare_box: tuple[int, int, int, int] | None = None
        self._resize_origin: ClientUpdates | None = None
        self._resize_notified = False
        self._plans: dict = {}
        self._params_ids: dict[EncodeParams, int] = {}
        self._reset_frame()
        screen.add_listener(self)

    def _reset_frame(self) -> None:
        self.frame = self.screen.framebuffer.copy()
        shape = (_tiles(self.height), _tiles(self.width))
        self.last_change = np.full(shape, -np.inf)
        self.hot = np.zeros(shape, dtype=bool)

    # -- what ServerInit needs --------------------------------------------------

    @property
    def width(self) -> int:
        return self.frame.shape[1]

    @property
    def height(self) -> int:
        return self.frame.shape[0]

    @property
    def name(self) -> str:
        return self._name if self._name is not None else self.screen.name

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.hot.shape

    # -- connections ------------------------------------------------------------

    def register(self, info: ConnectionInfo) -> None:
        """A connection was accepted (shown on the testcard until unregistered)."""
        if not any(i is info for i in self.infos):
            self.infos.append(info)
            self.screen.add_connection(info)

    def unregister(self, info: ConnectionInfo) -> None:
        """A connection closed."""
        self.infos = [i for i in self.infos if i is not info]
        self.screen.remove_connection(info)
        for client in [c for c in self.clients if c.info is info]:
            client.close()

    def attach(self, info: ConnectionInfo, sink: Sink) -> "ClientUpdates":
        """Start serving updates to a connection (after its ServerInit)."""
        client = ClientUpdates(self, info, sink)
        self.clients.append(client)
        return client

    def _detach(self, client: "ClientUpdates") -> None:
        self.clients = [c for c in self.clients if c is not client]

    def close(self) -> None:
        """Stop watching the screen and drop every client."""
        self.screen.remove_listener(self)
        self.input_pacer.close()
        for call in (self._tick_call, self._refresh_call):
            if call is not None and call.active():
                call.cancel()
        self._tick_call = self._refresh_call = None
        for client in list(self.clients):
            client.close()

    # -- the screen's notifications ---------------------------------------------------

    def screen_damaged(self, screen: Screen, rect) -> None:
        box = (0, 0, *self.tile_shape) if rect is None else _tile_box(*rect)
        self._add_compare(box)

    def _add_compare(self, box: tuple[int, int, int, int]) -> None:
        if self._compare_box is None:
            self._compare_box = box
        else:
            a = self._compare_box
            self._compare_box = (min(a[0], box[0]), min(a[1], box[1]),
                                 max(a[2], box[2]), max(a[3], box[3]))
        self._schedule_tick()

    def _schedule_tick(self) -> None:
        if self._tick_call is None:
            self._tick_call = self.reactor.callLater(0, self._tick)

    def screen_moved(self, screen: Screen, src_x, src_y, x, y, w, h) -> None:
        if screen.framebuffer.shape != self.frame.shape:
            self.screen_resized(screen)
            return
        self.frame[y:y + h, x:x + w] = self.frame[src_y:src_y + h, src_x:src_x + w]
        self._new_generation()
        for client in list(self.clients):
            client._moved(src_x, src_y, x, y, w, h)
        self._add_compare(_tile_box(x, y, w, h))

    def screen_resized(self, screen: Screen) -> None:
        self._resize_notified = True
        self._reset_frame()
        self._compare_box = None
        self._new_generation()
        origin = self._resize_origin
        for client in list(self.clients):
            client._resized(origin)
        self._schedule_tick()

    def screen_changed(self, screen: Screen, what: str) -> None:
        if what == "layout":
            self._resize_notified = True
        for client in list(self.clients):
            client._changed(what, self._resize_origin)
        self._schedule_tick()

    def screen_bell(self, screen: Screen) -> None:
        for client in list(self.clients):
            client._bell()

    def screen_clipboard(self, screen: Screen, text: bytes) -> None:
        for client in list(self.clients):
            client._clipboard(text)

    # -- finding real changes ---------------------------------------------------------

    def _new_generation(self) -> None:
        self.generation += 1
        self.cache.clear()
        self._plans.clear()

    def params_id(self, params: EncodeParams) -> int | EncodeParams:
        """A small number standing for ``params`` in cache keys (cheap to hash);
        past :data:`MAX_PARAMS_IDS` distinct sets, ``params`` itself."""
        found = self._params_ids.get(params)
        if found is None:
            if len(self._params_ids) >= MAX_PARAMS_IDS:
                return params
            found = self._params_ids[params] = len(self._params_ids)
        return found

    def plan(self, box: tuple[int, int, int, int], limit_w: int, limit_h: int,
             dirty: np.ndarray) -> list[tuple[int, int, int, int, bool, int, int, int]]:
        """The rectangles ``(x, y, w, h, hot, tile row, first, end column)`` that
        send the dirty tiles of ``box`` (``dirty`` is the client's mask inside it).

        Clients with the same dirty tiles get the same rectangles -- which is
        what lets them share encodings -- so plans are remembered until the
        frame changes.
        """
        key = (box, limit_w, limit_h, dirty.tobytes())
        found = self._plans.get(key)
        if found is None:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            found = self._plans[key] = self._make_plan(box, limit_w, limit_h, dirty)
        return found

    def _make_plan(self, box, limit_w, limit_h, dirty):
        ty0, tx0, ty1, tx1 = box
        if not dirty.any():
            return []
        key = dirty.astype(np.int8) * (1 + self.hot[ty0:ty1, tx0:tx1])
        rows, cols = key.shape
        edges = np.zeros((rows, cols + 1), dtype=bool)
        edges[:, 0] = True
        edges[:, cols] = True
        edges[:, 1:cols] = key[:, 1:] != key[:, :-1]
        plan = []
        for r in np.flatnonzero(dirty.any(axis=1)).tolist():
            cuts = np.flatnonzero(edges[r]).tolist()
            row = key[r].tolist()
            ty = ty0 + r
            y = ty * TILE
            h = min(y + TILE, limit_h) - y
            for a, b in zip(cuts, cuts[1:]):
                if row[a] == 0:
                    continue
                for s in range(a, b, MAX_RUN_TILES):
                    first, end = tx0 + s, tx0 + min(b, s + MAX_RUN_TILES)
                    x = first * TILE
                    w = min(end * TILE, limit_w) - x
                    if w > 0 and h > 0:
                        plan.append((x, y, w, h, row[a] == 2, ty, first, end))
        return plan

    def catch_up(self) -> None:
        """Take in the screen's pending damage now instead of on the next tick."""
        if self._compare_box is None:
            return
        if self._tick_call is not None and self._tick_call.active():
            self._tick_call.cancel()
        self._tick()

    def _tick(self) -> None:
        self._tick_call = None
        live = self.screen.framebuffer
        if live.shape != self.frame.shape:
            self.screen_resized(self.screen)
            return
        box, self._compare_box = self._compare_box, None
        if box is not None:
            changed = self.compare(live, box)
            if changed.any():
                self._new_generation()
                self._mark_hot(changed)
                for client in list(self.clients):
                    client._damage(changed)
        for client in list(self.clients):
            client._pump()

    def compare(self, live: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """Tiles in ``box`` where ``live`` differs from the snapshot (which is
        then brought up to date); a full-size tile mask."""
        ty0, tx0, ty1, tx1 = box
        y0, x0 = ty0 * TILE, tx0 * TILE
        y1, x1 = min(ty1 * TILE, self.height), min(tx1 * TILE, self.width)
        mask = np.zeros(self.tile_shape, dtype=bool)
        if y1 <= y0 or x1 <= x0:
            return mask
        old = self.frame[y0:y1, x0:x1].view("<u4")[..., 0]
        new = live[y0:y1, x0:x1].view("<u4")[..., 0]
        diff = old != new
        rows = np.logical_or.reduceat(diff, np.arange(0, y1 - y0, TILE), axis=0)
        tiles = np.logical_or.reduceat(rows, np.arange(0, x1 - x0, TILE), axis=1)
        mask[ty0:ty0 + tiles.shape[0], tx0:tx0 + tiles.shape[1]] = tiles
        if tiles.any():
            self.frame[y0:y1, x0:x1] = live[y0:y1, x0:x1]
        return mask

    def _mark_hot(self, changed: np.ndarray) -> None:
        now = self.reactor.seconds()
        recent = now - self.last_change < self.config.hot_window
        self.hot = np.where(changed, recent, self.hot & recent)
        self.last_change[changed] = now

    def _schedule_refresh(self) -> None:
        if self._refresh_call is None:
            self._refresh_call = self.reactor.callLater(self.config.lossless_refresh_delay,
                                                        self._refresh)

    def _refresh(self) -> None:
        """Resend, losslessly, lossy tiles that have been still long enough."""
        self._refresh_call = None
        still = self.reactor.seconds() - self.last_change >= self.config.lossless_refresh_delay
        pending = False
        for client in list(self.clients):
            pending |= client._refresh_lossy(still)
        if pending:
            self._schedule_refresh()

    # -- input and resize requests from clients ----------------------------------------

    def _request_resize(self, client: "ClientUpdates", width: int, height: int,
                        layout: tuple[ScreenArea, ...]) -> int:
        self._resize_origin = client
        self._resize_notified = False
        try:
            status = self.screen.request_resize(width, height, layout)
        except Exception:
            log.failure("{screen} failed to handle a resize request from {peer}",
                        screen=type(self.screen).__name__, peer=client.info.peer)
            status = RESIZE_OUT_OF_RESOURCES
        finally:
            self._resize_origin = None
        return status

    def input(self, client: "ClientUpdates", handler, event) -> None:
        """Hand an input event to the screen through the :class:`InputPacer`."""
        self.input_pacer.submit(client, handler, event)

    def _deliver_input(self, client: "ClientUpdates", handler, event) -> None:
        """Call the screen's handler; a screen that fails is logged, and the
        connection carries on."""
        try:
            handler(event)
        except Exception:
            log.failure("{screen} failed to handle {event!r} from {peer}",
                        screen=type(self.screen).__name__, event=event, peer=client.info.peer)


def _message(method):
    """Wraps a client-message handler: SyncNext fence replies and pumping."""

    @functools.wraps(method)
    def handler(self: "ClientUpdates", *args):
        if self.closed:
            return
        armed, self._sync_fence = self._sync_fence, None
        self._in_sync = armed is not None
        try:
            method(self, *args)
        finally:
            self._in_sync = False
            if armed is not None and not self.closed:
                self._queue(messages.server_fence(*armed))
            self._pump()
    return handler


class ClientUpdates:
    """One client's updates (the methods are the protocol layer's interface)."""

    def __init__(self, display: Display, info: ConnectionInfo, sink: Sink) -> None:
        self.display = display
        self.info = info
        self.sink = sink
        self.config = display.config
        self.closed = False
        #: Whether the screen was told this connection is ready (on its
        #: first request, so a client that leaves at once costs no redraw).
        self._announced = False
        self.pf: PixelFormat = DEFAULT_FORMAT
        self.encodings: tuple[int, ...] = ()
        #: The pixel encoding in use.
        self.encoding = enc.RAW
        self.compress_level: int | None = None
        self.jpeg_quality: int | None = None
        self.jpeg_subsampling: int | None = None
        #: Framebuffer size the client knows.
        self.width, self.height = display.width, display.height
        #: The size last announced to the client (ServerInit or a resize update).
        self._told = (self.width, self.height)
        shape = display.tile_shape
        self.dirty = np.ones(shape, dtype=bool)
        self.lossy = np.zeros(shape, dtype=bool)
        self.force_lossless = np.zeros(shape, dtype=bool)
        self._requested: tuple[int, int, int, int] | None = None
        self._continuous: tuple[int, int, int, int] | None = None
        self._copy: tuple[int, int, int, int, int, int] | None = None
        self._streams: set[int] = set()
        self._queued: list[bytes] = []
        self._colour_map = False
        self._bell_pending = False
        self._cut_text: bytes | None = None
        self._eds: list[bytes] = []
        self._desktop_size = False
        #: The client was told of a new framebuffer size: its next pixel
        #: update covers the whole new screen, whatever area its requests
        #: name (they may predate the resize and use the old size).
        self._whole_screen_due = False
        self._cursor = False
        self._cursor_sent = False
        self._name = False
        self._led = False
        self._ext_key = False
        self._sync_fence: tuple[int, bytes] | None = None
        self._in_sync = False
        self._caps: frozenset[int] = frozenset()
        self._params_key = None
        self._params_cache = None
        #: Counters for tests, benchmarks and the monitor.
        self.updates_sent = 0
        self.bytes_sent = 0

    def _has(self, encoding: int) -> bool:
        return encoding in self._caps

    # -- client messages ------------------------------------------------------------

    @_message
    def set_pixel_format(self, pf: PixelFormat) -> None:
        """SetPixelFormat (already validated)."""
        self.pf = pf
        self._colour_map = not pf.true_colour
        if self._has(enc.CURSOR) and self.display.screen.cursor is not None:
            self._cursor = True

    @_message
    def set_encodings(self, encodings: Sequence[int]) -> None:
        """SetEncodings: the client's encodings and pseudo-encodings, preferred first."""
        encodings = tuple(encodings[:MAX_ENCODINGS])
        before = self._caps
        caps = frozenset(encodings)
        self.encodings = encodings
        self._caps = caps
        self.encoding = choose_encoding(encodings)
        self.compress_level = None
        self.jpeg_quality = None
        self.jpeg_subsampling = None
        for number in encodings:
            if enc.COMPRESS_LEVEL_0 <= number <= enc.COMPRESS_LEVEL_9:
                if self.compress_level is None:
                    self.compress_level = number - enc.COMPRESS_LEVEL_0
            elif enc.QUALITY_LEVEL_0 <= number <= enc.QUALITY_LEVEL_9:
                if self.jpeg_quality is None:
                    self.jpeg_quality = JPEG_QUALITY[number - enc.QUALITY_LEVEL_0]
            elif enc.SUBSAMPLING_1X <= number <= enc.SUBSAMPLING_16X:
                if self.jpeg_subsampling is None:
                    self.jpeg_subsampling = JPEG_SUBSAMPLING[number - enc.SUBSAMPLING_1X]
        for number in encodings:
            if enc.FINE_QUALITY_0 <= number <= enc.FINE_QUALITY_100:
                self.jpeg_quality = max(1, number - enc.FINE_QUALITY_0)
                break
        new = caps - before
        # Announcements still due for pseudo-encodings the client no longer
        # lists are dropped: it would not understand them.
        if enc.QEMU_EXTENDED_KEY_EVENT not in caps:
            self._ext_key = False
        if enc.QEMU_LED_STATE not in caps:
            self._led = False
        if enc.DESKTOP_NAME not in caps:
            self._name = False
        if enc.CURSOR not in caps:
            self._cursor = False
        size_due = bool(self._eds) or self._desktop_size
        if enc.EXTENDED_DESKTOP_SIZE not in caps:
            self._eds = []
        if enc.DESKTOP_SIZE not in caps:
            self._desktop_size = False
        if size_due and not self._eds and not self._desktop_size:
            # A size change not yet announced goes out in the resize
            # pseudo-encoding the client lists now; a client that lists
            # neither keeps the size it was last told.
            if enc.EXTENDED_DESKTOP_SIZE in caps:
                self._add_eds(self._eds_rect(pseudo.REASON_SERVER, pseudo.STATUS_OK))
            elif enc.DESKTOP_SIZE in caps:
                self._desktop_size = True
            else:
                self.width, self.height = self._told
                self.dirty[:] = True
        screen = self.display.screen
        if enc.CURSOR in new and screen.cursor is not None:
            self._cursor = True
        if enc.QEMU_LED_STATE in new and screen.led_state is not None:
            self._led = True
        if enc.QEMU_EXTENDED_KEY_EVENT in new:
            self._ext_key = True
        if enc.FENCE in new:
            self._queue(messages.server_fence(messages.FENCE_REQUEST, b""))
        if enc.CONTINUOUS_UPDATES in new and enc.FENCE in caps:
            self._queue(messages.end_of_continuous_updates())

    @_message
    def request_update(self, incremental: bool, x: int, y: int, w: int, h: int) -> None:
        """FramebufferUpdateRequest."""
        if not self._announced:
            self._announced = True
            self.display.screen.connection_ready(self.info)
            # What the screen drew for this connection goes into its first update.
            self.display.catch_up()
        box = self._clip(x, y, w, h)
        if not incremental:
            if box is not None:
                ty0, tx0, ty1, tx1 = _tile_box(box[0], box[1], box[2] - box[0], box[3] - box[1])
                self.dirty[ty0:ty1, tx0:tx1] = True
            if self._copy is not None:
                self._drop_copy()
            if self._has(enc.EXTENDED_DESKTOP_SIZE):
                reply = self._eds_rect(pseudo.REASON_SERVER, pseudo.STATUS_OK)
                if reply not in self._eds:
                    self._add_eds(reply)
        elif self._continuous is not None:
            return
        if box is None:
            box = (0, 0, 0, 0)
        if self._requested is None:
            self._requested = box
        else:
            r = self._requested
            self._requested = (min(r[0], box[0]), min(r[1], box[1]),
                               max(r[2], box[2]), max(r[3], box[3]))

    @_message
    def enable_continuous_updates(self, enable: bool, x: int, y: int, w: int, h: int) -> None:
        """EnableContinuousUpdates."""
        if not (self._has(enc.CONTINUOUS_UPDATES) and self._has(enc.FENCE)):
            self.close_connection("client enabled continuous updates without negotiating them")
            return
        if enable:
            self._continuous = self._clip(x, y, w, h) or (0, 0, 0, 0)
            self._requested = None
        else:
            self._continuous = None
            self._queue(messages.end_of_continuous_updates())

    @_message
    def client_fence(self, flags: int, payload: bytes) -> None:
        """ClientFence: requests are answered (SyncNext ones after the next message)."""
        if not flags & messages.FENCE_REQUEST:
            return
        if flags & messages.FENCE_SYNC_NEXT:
            keep = messages.FENCE_BLOCK_BEFORE | messages.FENCE_BLOCK_AFTER
            self._sync_fence = (flags & (keep | messages.FENCE_SYNC_NEXT), bytes(payload))
            return
        keep = messages.FENCE_BLOCK_BEFORE | messages.FENCE_BLOCK_AFTER
        self._queue(messages.server_fence(flags & keep, bytes(payload)))

    @_message
    def key_event(self, down: bool, keysym: int) -> None:
        self.display.input(self, self.display.screen.key_event,
                           KeyEvent(bool(down), keysym, None, self.info.peer))

    @_message
    def qemu_key_event(self, down: bool, keysym: int, keycode: int) -> None:
        self.display.input(self, self.display.screen.key_event,
                           KeyEvent(bool(down), keysym, keycode, self.info.peer))

    @_message
    def pointer_event(self, buttons: int, x: int, y: int) -> None:
        self.display.input(self, self.display.screen.pointer_event,
                           PointerEvent(buttons, x, y, self.info.peer))

    @_message
    def cut_text(self, text: bytes) -> None:
        self.display.input(self, self.display.screen.cut_text,
                           CutTextEvent(bytes(text), self.info.peer))

    @_message
    def set_desktop_size(self, width: int, height: int, screens) -> None:
        """SetDesktopSize; ``screens`` are ``(id, x, y, width, height, flags)`` tuples.

        Ignored from a client that has not listed ExtendedDesktopSize:
        rfbproto allows the message only after the server announced that
        pseudo-encoding, and the reply would be one the client never asked for.
        """
        if not self._has(enc.EXTENDED_DESKTOP_SIZE):
            return
        layout = tuple(ScreenArea(*s) for s in screens)
        if not _valid_layout(width, height, layout):
            status = RESIZE_INVALID_LAYOUT
        else:
            status = self.display._request_resize(self, width, height, layout)
        if self.closed:
            return
        raw = tuple(s.as_tuple() for s in layout)
        try:
            reply = pseudo.extended_desktop_size(pseudo.REASON_CLIENT, status, width, height, raw)
        except ValueError:
            reply = pseudo.extended_desktop_size(pseudo.REASON_CLIENT, RESIZE_INVALID_LAYOUT,
                                                 width, height, ())
        self._add_eds(reply)
        if status == RESIZE_OK and not self.display._resize_notified:
            for other in self.display.clients:
                if other is not self:
                    other._changed("layout", self)

    # -- the connection -------------------------------------------------------------

    def writable(self) -> None:
        """The connection's output drained: send what is waiting."""
        self._pump()

    def close(self) -> None:
        """The connection is gone: stop and forget this client."""
        if not self.closed:
            self.closed = True
            self.display._detach(self)
            self._queued = []
            self._eds = []

    def close_connection(self, reason: str) -> None:
        """Drop the client for misbehaving (the sink closes the connection)."""
        if not self.closed:
            self.close()
            self.sink.close(reason)

    # -- helpers ----------------------------------------------------------------------

    def _clip(self, x, y, w, h) -> tuple[int, int, int, int] | None:
        """Pixel box (x0, y0, x1, y1) of a request, cropped to the framebuffer."""
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x1 <= x or y1 <= y:
            return None
        return (x, y, x1, y1)

    def _queue(self, message: bytes) -> None:
        if len(self._queued) >= self.config.max_queued_messages:
            self.close_connection("client sends fences or requests but does not read the replies")
            return
        self._queued.append(message)

    def _add_eds(self, rect: bytes) -> None:
        if len(self._eds) >= self.config.max_resize_replies:
            self.close_connection("client sends SetDesktopSize but does not read the replies")
            return
        self._eds.append(rect)

    def _eds_rect(self, reason: int, status: int) -> bytes:
        layout = tuple(a.as_tuple() for a in self.display.screen.layout)
        return pseudo.extended_desktop_size(reason, status, self.display.width,
                                            self.display.height, layout)

    def _drop_copy(self) -> None:
        sx, sy, x, y, w, h = self._copy
        ty0, tx0, ty1, tx1 = _tile_box(x, y, w, h)
        self.dirty[ty0:ty1, tx0:tx1] = True
        self._copy = None

    # -- notifications from the display ----------------------------------------------

    def _damage(self, changed: np.ndarray) -> None:
        self.dirty |= changed

    def _moved(self, src_x, src_y, x, y, w, h) -> None:
        ty0, tx0, ty1, tx1 = _tile_box(x, y, w, h)
        if (not self._has(enc.COPYRECT) or self._copy is not None
                or x + w > self.width or y + h > self.height
                or src_x + w > self.width or src_y + h > self.height):
            self.dirty[ty0:ty1, tx0:tx1] = True
            return
        # The client copies from what it has; where that is stale (dirty in
        # the source), the destination will be stale too.
        dx, dy = x - src_x, y - src_y
        sy0, sx0, sy1, sx1 = _tile_box(src_x, src_y, w, h)
        stale = np.argwhere(self.dirty[sy0:sy1, sx0:sx1])
        for ty, tx in (stale + (sy0, sx0)).tolist():
            px0 = max(tx * TILE, src_x) + dx
            py0 = max(ty * TILE, src_y) + dy
            px1 = min((tx + 1) * TILE, src_x + w) + dx
            py1 = min((ty + 1) * TILE, src_y + h) + dy
            a, b, c, d = _tile_box(px0, py0, px1 - px0, py1 - py0)
            self.dirty[a:c, b:d] = True
        self._copy = (src_x, src_y, x, y, w, h)

    def _resized(self, origin: "ClientUpdates | None") -> None:
        d = self.display
        shape = d.tile_shape
        self.dirty = np.ones(shape, dtype=bool)
        self.lossy = np.zeros(shape, dtype=bool)
        self.force_lossless = np.zeros(shape, dtype=bool)
        self._copy = None
        if self._has(enc.EXTENDED_DESKTOP_SIZE):
            self.width, self.height = d.width, d.height
            self._whole_screen_due = True
            if origin is not self:
                reason = pseudo.REASON_SERVER if origin is None else pseudo.REASON_OTHER_CLIENT
                self._add_eds(self._eds_rect(reason, pseudo.STATUS_OK))
        elif self._has(enc.DESKTOP_SIZE):
            self.width, self.height = d.width, d.height
            self._whole_screen_due = True
            self._desktop_size = True
        for box_name in ("_requested", "_continuous"):
            box = getattr(self, box_name)
            if box is not None:
                setattr(self, box_name, (min(box[0], self.width), min(box[1], self.height),
                                         min(box[2], self.width), min(box[3], self.height)))

    def _changed(self, what: str, origin: "ClientUpdates | None") -> None:
        if what == "name" and self._has(enc.DESKTOP_NAME):
            self._name = True
        elif what == "cursor" and self._has(enc.CURSOR):
            self._cursor = True
        elif what == "led" and self._has(enc.QEMU_LED_STATE):
            self._led = self.display.screen.led_state is not None
        elif what == "layout" and self._has(enc.EXTENDED_DESKTOP_SIZE) and origin is not self:
            reason = pseudo.REASON_SERVER if origin is None else pseudo.REASON_OTHER_CLIENT
            self._add_eds(self._eds_rect(reason, pseudo.STATUS_OK))

    def _bell(self) -> None:
        self._bell_pending = True
        self._pump()

    def _clipboard(self, text: bytes) -> None:
        self._cut_text = bytes(text)
        self._pump()

    def _refresh_lossy(self, still: np.ndarray) -> bool:
        stale = self.lossy & still
        if stale.any():
            self.dirty |= stale
            self.force_lossless |= stale
            self.lossy &= ~stale
            self._pump()
        return bool(self.lossy.any())

    # -- writing ----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.sink.write(data)
        self.bytes_sent += len(data)

    def _blocked(self) -> bool:
        return self.closed or self._in_sync or self.sink.output_buffered() > self.config.high_water

    def _pump(self) -> None:
        """Write whatever is due, as far as flow control allows."""
        if self._blocked():
            return
        if self._colour_map:
            self._colour_map = False
            self._write(messages.set_colour_map_entries(
                0, converter_for(self.pf).colour_map_entries()))
        queued, self._queued = self._queued, []
        for message in queued:
            self._write(message)
        if self._bell_pending:
            self._bell_pending = False
            self._write(messages.bell())
        if self._cut_text is not None:
            text, self._cut_text = self._cut_text, None
            self._write(messages.server_cut_text(text))
        if self._requested is None and self._continuous is None:
            return
        if self._eds or self._desktop_size:
            self._send_resize()
            if self._blocked():
                return
        self._send_data()

    def _send_resize(self) -> None:
        """The layout update: DesktopSize or ExtendedDesktopSize rectangles alone.

        rfbproto forbids pixel data in an update carrying either, so they
        travel in an update of their own -- which does not answer the
        pending request: the pixels follow at once in the next update
        (QEMU 7.2 does the same), so every non-incremental request gets
        pixels, and a resize is followed by the whole new screen.
        """
        if self._eds:
            rects, self._eds = self._eds, []
        else:
            rects = [pseudo.desktop_size(self.width, self.height)]
        self._desktop_size = False
        self._write(messages.framebuffer_update(len(rects)) + b"".join(rects))
        self._told = (self.width, self.height)
        self.updates_sent += 1

    def _pseudo_rects(self) -> list[bytes]:
        screen = self.display.screen
        out = []
        if self._ext_key:
            self._ext_key = False
            out.append(pseudo.qemu_extended_key_event())
        if self._led:
            self._led = False
            if screen.led_state is not None:
                out.append(pseudo.led_state(screen.led_state))
        if self._name:
            self._name = False
            out.append(pseudo.desktop_name(self.display.name))
        if self._cursor:
            self._cursor = False
            cur = screen.cursor
            if cur is not None:
                out.append(pseudo.cursor(cur.rgba, cur.hot_x, cur.hot_y, self.pf))
                self._cursor_sent = True
            elif self._cursor_sent:
                out.append(pseudo.cursor(np.zeros((0, 0, 4), np.uint8), 0, 0, self.pf))
                self._cursor_sent = False
        return out

    def _area(self) -> tuple[int, int, int, int] | None:
        if self._whole_screen_due:
            return (0, 0, self.width, self.height)
        boxes = [b for b in (self._requested, self._continuous) if b is not None]
        boxes = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
        if not boxes:
            return None
        return (min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes))

    def _send_data(self) -> None:
        d = self.display
        area = self._area()
        copy_rect = None
        data: list[EncodedRect] = []
        sent_tiles = None
        lossy_tiles = []
        if area is not None:
            limit_w, limit_h = min(self.width, d.width), min(self.height, d.height)
            box = _tile_box(area[0], area[1], area[2] - area[0], area[3] - area[1])
            ty0, tx0, ty1, tx1 = box
            if self._copy is not None:
                sx, sy, x, y, w, h = self._copy
                self._copy = None
                copy_rect = encode_copyrect(sx, sy, x, y, w, h)
            sent_tiles = box
            lossy_client = self._lossy_client()
            for x, y, w, h, hot, ty, a, b in d.plan(box, limit_w, limit_h,
                                                    self.dirty[ty0:ty1, tx0:tx1]):
                jpeg = lossy_client and (d.non_adaptive or (
                    hot and not self.force_lossless[ty, a:b].any()))
                data.append(self._encode(x, y, w, h, jpeg))
                if jpeg and not d.non_adaptive:
                    lossy_tiles.append((ty, a, b))
        rects = self._pseudo_rects()
        if copy_rect is not None:
            rects.append(copy_rect.data)
        if not rects and not data:
            return
        count = len(rects) + sum(r.count for r in data)
        last = self._has(enc.LAST_RECT)
        head = messages.framebuffer_update(messages.UNKNOWN_RECT_COUNT if last else count)
        self._write(head + b"".join(rects))
        for rect in data:
            for chunk in rect.chunks(rect.stream in self._streams):
                self._write(chunk)
            if rect.stream is not None:
                self._streams.add(rect.stream)
        if last:
            self._write(pseudo.last_rect())
        if sent_tiles is not None:
            self._whole_screen_due = False
            ty0, tx0, ty1, tx1 = sent_tiles
            self.dirty[ty0:ty1, tx0:tx1] = False
            self.force_lossless[ty0:ty1, tx0:tx1] = False
            for ty, a, b in lossy_tiles:
                self.lossy[ty, a:b] = True
            if lossy_tiles:
                d._schedule_refresh()
        self._requested = None
        self.updates_sent += 1

    def _lossy_client(self) -> bool:
        """Whether this client may be sent JPEG at all."""
        return (self.display.lossy and self.encoding == enc.TIGHT
                and self.jpeg_quality is not None and self.pf.bits_per_pixel in (16, 32))

    def _params(self, jpeg: bool) -> tuple[EncodeParams, int | EncodeParams]:
        """The encoding parameters (and their number) for lossless or JPEG-allowed rectangles."""
        key = (self.pf, self.compress_level, self.jpeg_quality, self.jpeg_subsampling)
        if self._params_key != key:
            level = self.compress_level
            if level is None:
                level = self.config.default_compress_level
            lossless = EncodeParams(self.pf, level)
            lossy = EncodeParams(self.pf, level, self.jpeg_quality, self.jpeg_subsampling)
            d = self.display
            self._params_cache = ((lossless, d.params_id(lossless)), (lossy, d.params_id(lossy)))
            self._params_key = key
        return self._params_cache[1 if jpeg else 0]

    def _encode(self, x: int, y: int, w: int, h: int, jpeg: bool) -> EncodedRect:
        d = self.display
        params, number = self._params(jpeg)
        encoder = ENCODERS[self.encoding]
        key = (d.generation, x, y, w, h, self.encoding, number)
        return d.cache.get(key, lambda: encoder(d.frame, x, y, w, h, params))


def _valid_layout(width: int, height: int, layout: tuple[ScreenArea, ...]) -> bool:
    """rfbproto's rules: at least one screen, all inside the framebuffer, unique ids."""
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        return False
    if not layout or len(layout) > pseudo.MAX_SCREENS:
        return False
    if len({a.id for a in layout}) != len(layout):
        return False
    return all(a.width > 0 and a.height > 0 and a.x + a.width <= width
               and a.y + a.height <= height for a in layout)
