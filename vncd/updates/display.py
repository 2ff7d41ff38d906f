"""One screen as served to its clients: snapshot, damage, hot tiles, plans.

:class:`Display` watches one :class:`~vncd.screens.base.Screen`.  It keeps
its own copy of the frame (the *snapshot*) and, whenever the screen reports
damage, compares the damaged area with the snapshot in
:data:`~vncd.updates.config.TILE`-sized tiles; tiles that really changed
become dirty for every client and the snapshot is updated.  A screen with
:attr:`~vncd.screens.base.Screen.exact_damage` finds its changes itself:
its framebuffer is the snapshot, and the tiles it reports become dirty
without a compare.  Each change
bumps the display's *generation* (and empties the encode cache).  It
tracks which tiles keep changing ("hot", allowed a lossy encoding) and
schedules their lossless refresh, and it cuts dirty tiles into the
rectangles clients are sent (:meth:`Display.plan`, shared by clients
with the same dirty tiles).  Input and resize requests from clients pass
through it to the screen.

It does not know what a client was sent or is owed (that is
:class:`~vncd.updates.client.ClientUpdates`), nor how rectangles are
encoded.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from twisted.logger import Logger

from compat.vnc import MAX_KEY_DELAY_MS
from vncd.encoding import EncodeParams, speedups
from vncd.info import ConnectionInfo
from vncd.screens.base import RESIZE_OUT_OF_RESOURCES, Screen, ScreenArea
from vncd.updates.cache import EncodeCache, ParamsIds
from vncd.updates.changes import Change, parse
from vncd.updates.client import ClientUpdates
from vncd.updates.config import MAX_PLANS, MAX_RUN_TILES, TILE, Sink, UpdateConfig
from vncd.updates.pacing import InputPacer
from vncd.updates.rect import Rect, TileBox, tile_count

__all__ = ["Display", "PlanEntry"]

log = Logger(namespace="vncd.updates")


class PlanEntry(NamedTuple):
    """One rectangle of a plan: pixels, whether its tiles are hot, and its
    tiles (one tile row, columns ``first .. end``)."""

    rect: Rect
    hot: bool
    row: int
    first: int
    end: int


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
        self._compare_box: TileBox | None = None
        self._resize_origin: ClientUpdates | None = None
        self._resize_notified = False
        self._plans: dict = {}
        self.params_ids = ParamsIds()
        self._reset_frame()
        screen.add_listener(self)

    def _reset_frame(self) -> None:
        #: Whether the screen's framebuffer is the snapshot (Screen.exact_damage).
        self.exact = bool(self.screen.exact_damage)
        self.frame = self.screen.framebuffer if self.exact else self.screen.framebuffer.copy()
        shape = (tile_count(self.height), tile_count(self.width))
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

    def attach(self, info: ConnectionInfo, sink: Sink) -> ClientUpdates:
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

    def screen_damaged(self, screen: Screen, rect: Rect | tuple | None) -> None:
        """Pixels in ``rect`` (a :class:`Rect` or an ``(x, y, w, h)`` tuple;
        None: anywhere) may have changed."""
        box = TileBox.whole(self.tile_shape) if rect is None else Rect(*rect).tiles()
        if self.exact:
            changed = np.zeros(self.tile_shape, dtype=bool)
            changed[box.slices] = True
            self._changed(changed)
        else:
            self._add_compare(box)

    def screen_damaged_tiles(self, screen: Screen, tiles: np.ndarray) -> None:
        """The tiles where ``tiles`` is true changed (exact screens), or may
        have changed (others: their bounding box is compared)."""
        if tiles.shape != self.tile_shape:
            if screen.framebuffer.shape != self.frame.shape:
                self.screen_resized(screen)
                return
            raise ValueError(f"{screen.name}: damage_tiles shape {tiles.shape} is not the "
                             f"display's {self.tile_shape}")
        if self.exact:
            self._changed(tiles)
            return
        rows, cols = np.nonzero(tiles.any(axis=1))[0], np.nonzero(tiles.any(axis=0))[0]
        if rows.size:
            self._add_compare(TileBox(int(rows[0]), int(cols[0]),
                                      int(rows[-1]) + 1, int(cols[-1]) + 1))

    def _changed(self, changed: np.ndarray) -> None:
        """Tiles of an exact screen changed: dirty for every client now."""
        live = self.screen.framebuffer
        if live is not self.frame:
            if live.shape != self.frame.shape:
                self.screen_resized(self.screen)
                return
            self.frame = live     # set_framebuffer with the same size
        if not changed.any():
            return
        self._new_generation()
        self._mark_hot(changed)
        for client in list(self.clients):
            client._damage(changed)
        self._schedule_tick()

    def _add_compare(self, box: TileBox) -> None:
        if self._compare_box is None:
            self._compare_box = box
        else:
            self._compare_box = self._compare_box.union(box)
        self._schedule_tick()

    def _schedule_tick(self) -> None:
        if self._tick_call is None:
            self._tick_call = self.reactor.callLater(0, self._tick)

    def screen_moved(self, screen: Screen, src_x, src_y, x, y, w, h) -> None:
        if screen.framebuffer.shape != self.frame.shape:
            self.screen_resized(screen)
            return
        if self.frame is not screen.framebuffer:
            self.frame[y:y + h, x:x + w] = self.frame[src_y:src_y + h, src_x:src_x + w]
        self._new_generation()
        dest = Rect(x, y, w, h)
        for client in list(self.clients):
            client._moved(src_x, src_y, dest)
        if self.exact:
            self._schedule_tick()
        else:
            self._add_compare(dest.tiles())

    def screen_resized(self, screen: Screen) -> None:
        self._resize_notified = True
        self._reset_frame()
        self._compare_box = None
        self._new_generation()
        origin = self._resize_origin
        for client in list(self.clients):
            client._resized(origin)
        self._schedule_tick()

    def screen_changed(self, screen: Screen, what: Change | str) -> None:
        """``what`` changed: a :class:`Change` (or its string value); a kind
        the display does not know is a ValueError naming it."""
        what = parse(what, screen)
        if what is Change.LAYOUT:
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
        past :data:`~vncd.updates.config.MAX_PARAMS_IDS` distinct sets, ``params`` itself."""
        return self.params_ids(params)

    def plan(self, box: TileBox, limit_w: int, limit_h: int,
             dirty: np.ndarray) -> list[PlanEntry]:
        """The rectangles that send the dirty tiles of ``box`` (``dirty`` is the
        client's mask inside it), as :class:`PlanEntry` values.

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

    def _make_plan(self, box: TileBox, limit_w: int, limit_h: int,
                   dirty: np.ndarray) -> list[PlanEntry]:
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
                        plan.append(PlanEntry(Rect(x, y, w, h), row[a] == 2, ty, first, end))
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

    def compare(self, live: np.ndarray, box: TileBox) -> np.ndarray:
        """Tiles in ``box`` where ``live`` differs from the snapshot (which is
        then brought up to date); a full-size tile mask."""
        ty0, tx0, ty1, tx1 = box
        y0, x0 = ty0 * TILE, tx0 * TILE
        y1, x1 = min(ty1 * TILE, self.height), min(tx1 * TILE, self.width)
        mask = np.zeros(self.tile_shape, dtype=bool)
        if y1 <= y0 or x1 <= x0:
            return mask
        if speedups.module is not None:
            # One pass in C: compares tile by tile and copies the changed
            # tiles into the snapshot (numpy below: a full-size difference
            # array, two reductions and a copy of the whole box).
            flags = speedups.module.tile_compare(self.frame[y0:y1, x0:x1],
                                                 live[y0:y1, x0:x1], TILE)
            rows, cols = tile_count(y1 - y0), tile_count(x1 - x0)
            mask[ty0:ty0 + rows, tx0:tx0 + cols] = \
                np.frombuffer(flags, dtype=np.uint8).reshape(rows, cols).view(bool)
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
