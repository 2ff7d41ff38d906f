"""One client's updates: its requests, flow control and what it is sent.

:class:`ClientUpdates` is one client's side of a
:class:`~vncd.updates.display.Display`: the protocol layer calls its
methods for every client message after ServerInit (SetPixelFormat,
SetEncodings, FramebufferUpdateRequest, ...), and it writes every
server-to-client message from then on to the connection's *sink*
(:class:`~vncd.updates.config.Sink`).  It keeps the client's dirty tile
mask, its requested and continuous areas (:class:`~vncd.updates.rect.Rect`),
what else it is owed (:class:`~vncd.updates.pending.Pending`), and sends
an update when the client asked for one and its connection drains.

It does not find damage (the display does), does not choose rectangles
(the display's plans) and does not encode (:mod:`vncd.updates.encoders`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vncd import encoding as enc
from vncd.encoding import EncodedRect, EncodeParams, messages, pseudo
from vncd.encoding.convert import converter_for
from vncd.encoding.copyrect import encode_copyrect
from vncd.info import ConnectionInfo
from vncd.pixels import DEFAULT_FORMAT, PixelFormat
from vncd.screens.base import (
    MAX_SIDE, RESIZE_INVALID_LAYOUT, RESIZE_OK, CutTextEvent, KeyEvent, PointerEvent,
    ScreenArea,
)
from vncd.updates.changes import Change
from vncd.updates.config import JPEG_QUALITY, JPEG_SUBSAMPLING, MAX_ENCODINGS, TILE, Sink
from vncd.updates.encoders import choose_encoding, encode_many
from vncd.updates.pending import Copy, Pending
from vncd.updates.rect import EMPTY, Rect

if TYPE_CHECKING:
    from vncd.updates.display import Display

__all__ = ["ClientUpdates"]


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


class _TileMask:
    """A client's tile mask attribute, made with the others on first use
    (:meth:`ClientUpdates._make_masks`); ``None`` behind it means "not yet"."""

    def __set_name__(self, owner, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, client, owner=None):
        if client is None:
            return self
        if getattr(client, self.slot) is None:
            client._make_masks()
        return getattr(client, self.slot)

    def __set__(self, client, mask: np.ndarray) -> None:
        if getattr(client, self.slot) is None:
            client._make_masks()
        setattr(client, self.slot, mask)


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
        # The tile masks (see the properties below) are made on first use:
        # most of a connection's handshake never needs them, and three numpy
        # arrays were a few per cent of a plain handshake's CPU.
        self._dirty: np.ndarray | None = None
        self._lossy: np.ndarray | None = None
        self._force_lossless: np.ndarray | None = None
        #: The area requested and not answered yet (an empty one is still
        #: a request), and the continuous-updates area.
        self._requested: Rect | None = None
        self._continuous: Rect | None = None
        self._streams: set[int] = set()
        #: Messages and flags due besides dirty pixels.
        self.pending = Pending()
        self._cursor_sent = False
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
        self.pending.colour_map = not pf.true_colour
        if self._has(enc.CURSOR) and self.display.screen.cursor is not None:
            self.pending.cursor = True

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
        pending = self.pending
        # Announcements still due for pseudo-encodings the client no longer
        # lists are dropped: it would not understand them.
        if enc.QEMU_EXTENDED_KEY_EVENT not in caps:
            pending.ext_key = False
        if enc.QEMU_LED_STATE not in caps:
            pending.led = False
        if enc.DESKTOP_NAME not in caps:
            pending.name = False
        if enc.CURSOR not in caps:
            pending.cursor = False
        size_due = pending.size_due
        if enc.EXTENDED_DESKTOP_SIZE not in caps:
            pending.eds = []
        if enc.DESKTOP_SIZE not in caps:
            pending.desktop_size = False
        if size_due and not pending.size_due:
            # A size change not yet announced goes out in the resize
            # pseudo-encoding the client lists now; a client that lists
            # neither keeps the size it was last told.
            if enc.EXTENDED_DESKTOP_SIZE in caps:
                self._add_eds(self._eds_rect(pseudo.REASON_SERVER, pseudo.STATUS_OK))
            elif enc.DESKTOP_SIZE in caps:
                pending.desktop_size = True
            else:
                self.width, self.height = self._told
                self.dirty[:] = True
        screen = self.display.screen
        if enc.CURSOR in new and screen.cursor is not None:
            pending.cursor = True
        if enc.QEMU_LED_STATE in new and screen.led_state is not None:
            pending.led = True
        if enc.QEMU_EXTENDED_KEY_EVENT in new:
            pending.ext_key = True
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
        box = Rect(x, y, w, h).clip(self.width, self.height)
        if not incremental:
            self.dirty[box.tiles().slices] = True
            if self.pending.copy is not None:
                self._drop_copy()
            if self._has(enc.EXTENDED_DESKTOP_SIZE):
                reply = self._eds_rect(pseudo.REASON_SERVER, pseudo.STATUS_OK)
                if reply not in self.pending.eds:
                    self._add_eds(reply)
        elif self._continuous is not None:
            return
        if box.empty:
            box = EMPTY
        self._requested = box if self._requested is None else self._requested.union(box)

    @_message
    def enable_continuous_updates(self, enable: bool, x: int, y: int, w: int, h: int) -> None:
        """EnableContinuousUpdates."""
        if not (self._has(enc.CONTINUOUS_UPDATES) and self._has(enc.FENCE)):
            self.close_connection("client enabled continuous updates without negotiating them")
            return
        if enable:
            box = Rect(x, y, w, h).clip(self.width, self.height)
            self._continuous = EMPTY if box.empty else box
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
                    other._changed(Change.LAYOUT, self)

    # -- the connection -------------------------------------------------------------

    def writable(self) -> None:
        """The connection's output drained: send what is waiting."""
        self._pump()

    def close(self) -> None:
        """The connection is gone: stop and forget this client."""
        if not self.closed:
            self.closed = True
            self.display._detach(self)
            self.pending.clear()

    def close_connection(self, reason: str) -> None:
        """Drop the client for misbehaving (the sink closes the connection)."""
        if not self.closed:
            self.close()
            self.sink.close(reason)

    # -- helpers ----------------------------------------------------------------------

    def _queue(self, message: bytes) -> None:
        if len(self.pending.queued) >= self.config.max_queued_messages:
            self.close_connection("client sends fences or requests but does not read the replies")
            return
        self.pending.queued.append(message)

    def _add_eds(self, rect: bytes) -> None:
        if len(self.pending.eds) >= self.config.max_resize_replies:
            self.close_connection("client sends SetDesktopSize but does not read the replies")
            return
        self.pending.eds.append(rect)

    def _eds_rect(self, reason: int, status: int) -> bytes:
        layout = tuple(a.as_tuple() for a in self.display.screen.layout)
        return pseudo.extended_desktop_size(reason, status, self.display.width,
                                            self.display.height, layout)

    def _drop_copy(self) -> None:
        """The pending CopyRect is not sent: its destination is resent instead."""
        self.dirty[self.pending.copy.dest.tiles().slices] = True
        self.pending.copy = None

    # -- tile masks -------------------------------------------------------------------

    def _make_masks(self) -> None:
        shape = self.display.tile_shape
        self._dirty = np.ones(shape, dtype=bool)
        self._lossy = np.zeros(shape, dtype=bool)
        self._force_lossless = np.zeros(shape, dtype=bool)

    #: Tiles the client's copy lacks (all of them until the first update).
    dirty = _TileMask()
    #: Tiles last sent as JPEG, due a lossless refresh once still.
    lossy = _TileMask()
    #: Tiles whose next update must not be JPEG.
    force_lossless = _TileMask()

    # -- notifications from the display ----------------------------------------------

    def _damage(self, changed: np.ndarray) -> None:
        if self._dirty is not None:     # else every tile is due anyway
            self.dirty |= changed

    def _moved(self, src_x: int, src_y: int, dest: Rect) -> None:
        x, y, w, h = dest
        if (not self._has(enc.COPYRECT) or self.pending.copy is not None
                or x + w > self.width or y + h > self.height
                or src_x + w > self.width or src_y + h > self.height):
            self.dirty[dest.tiles().slices] = True
            return
        # The client copies from what it has; where that is stale (dirty in
        # the source), the destination will be stale too.
        dx, dy = x - src_x, y - src_y
        source = Rect(src_x, src_y, w, h).tiles()
        stale = np.argwhere(self.dirty[source.slices])
        for ty, tx in (stale + (source.ty0, source.tx0)).tolist():
            px0 = max(tx * TILE, src_x) + dx
            py0 = max(ty * TILE, src_y) + dy
            px1 = min((tx + 1) * TILE, src_x + w) + dx
            py1 = min((ty + 1) * TILE, src_y + h) + dy
            self.dirty[Rect.corners(px0, py0, px1, py1).tiles().slices] = True
        self.pending.copy = Copy(src_x, src_y, dest)

    def _resized(self, origin: "ClientUpdates | None") -> None:
        d = self.display
        self._dirty = self._lossy = self._force_lossless = None   # made again at the new size
        pending = self.pending
        pending.copy = None
        if self._has(enc.EXTENDED_DESKTOP_SIZE):
            self.width, self.height = d.width, d.height
            pending.whole_screen = True
            if origin is not self:
                reason = pseudo.REASON_SERVER if origin is None else pseudo.REASON_OTHER_CLIENT
                self._add_eds(self._eds_rect(reason, pseudo.STATUS_OK))
        elif self._has(enc.DESKTOP_SIZE):
            self.width, self.height = d.width, d.height
            pending.whole_screen = True
            pending.desktop_size = True
        if self._requested is not None:
            self._requested = _shrink(self._requested, self.width, self.height)
        if self._continuous is not None:
            self._continuous = _shrink(self._continuous, self.width, self.height)

    def _changed(self, what: Change, origin: "ClientUpdates | None") -> None:
        if what is Change.NAME and self._has(enc.DESKTOP_NAME):
            self.pending.name = True
        elif what is Change.CURSOR and self._has(enc.CURSOR):
            self.pending.cursor = True
        elif what is Change.LED and self._has(enc.QEMU_LED_STATE):
            self.pending.led = self.display.screen.led_state is not None
        elif what is Change.LAYOUT and self._has(enc.EXTENDED_DESKTOP_SIZE) \
                and origin is not self:
            reason = pseudo.REASON_SERVER if origin is None else pseudo.REASON_OTHER_CLIENT
            self._add_eds(self._eds_rect(reason, pseudo.STATUS_OK))

    def _bell(self) -> None:
        self.pending.bell = True
        self._pump()

    def _clipboard(self, text: bytes) -> None:
        self.pending.cut_text = bytes(text)
        self._pump()

    def _refresh_lossy(self, still: np.ndarray) -> bool:
        if self._lossy is None:
            return False            # nothing sent yet, nothing lossy
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
        """Write whatever is due, as far as flow control allows, then flush it."""
        try:
            self._pump_messages()
        finally:
            self.sink.flush()

    def _pump_messages(self) -> None:
        if self._blocked():
            return
        pending = self.pending
        if pending.colour_map:
            pending.colour_map = False
            self._write(messages.set_colour_map_entries(
                0, converter_for(self.pf).colour_map_entries()))
        queued, pending.queued = pending.queued, []
        for message in queued:
            self._write(message)
        if pending.bell:
            pending.bell = False
            self._write(messages.bell())
        if pending.cut_text is not None:
            text, pending.cut_text = pending.cut_text, None
            self._write(messages.server_cut_text(text))
        if self._requested is None and self._continuous is None:
            return
        if pending.size_due:
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
        pending = self.pending
        if pending.eds:
            rects, pending.eds = pending.eds, []
        else:
            rects = [pseudo.desktop_size(self.width, self.height)]
        pending.desktop_size = False
        self._write(messages.framebuffer_update(len(rects)) + b"".join(rects))
        self._told = (self.width, self.height)
        self.updates_sent += 1

    def _pseudo_rects(self) -> list[bytes]:
        pending = self.pending
        out: list[bytes] = []
        if not pending.pseudo_due:
            return out
        screen = self.display.screen
        if pending.ext_key:
            pending.ext_key = False
            out.append(pseudo.qemu_extended_key_event())
        if pending.led:
            pending.led = False
            if screen.led_state is not None:
                out.append(pseudo.led_state(screen.led_state))
        if pending.name:
            pending.name = False
            out.append(pseudo.desktop_name(self.display.name))
        if pending.cursor:
            pending.cursor = False
            cur = screen.cursor
            if cur is not None:
                out.append(pseudo.cursor(cur.rgba, cur.hot_x, cur.hot_y, self.pf))
                self._cursor_sent = True
            elif self._cursor_sent:
                out.append(pseudo.cursor(np.zeros((0, 0, 4), np.uint8), 0, 0, self.pf))
                self._cursor_sent = False
        return out

    def _area(self) -> Rect | None:
        """The pixels the next update may cover (None: nothing asked for)."""
        if self.pending.whole_screen:
            return Rect(0, 0, self.width, self.height)
        area = None
        for box in (self._requested, self._continuous):
            if box is not None and not box.empty:
                area = box if area is None else area.union(box)
        return area

    def _send_data(self) -> None:
        d = self.display
        pending = self.pending
        area = self._area()
        copy_rect = None
        data: list[EncodedRect] = []
        sent_tiles = None
        lossy_tiles = []
        if area is not None:
            limit_w, limit_h = min(self.width, d.width), min(self.height, d.height)
            sent_tiles = area.tiles()
            if pending.copy is not None:
                (sx, sy, (x, y, w, h)), pending.copy = pending.copy, None
                copy_rect = encode_copyrect(sx, sy, x, y, w, h)
            lossy_client = self._lossy_client()
            jobs = []
            for entry in d.plan(sent_tiles, limit_w, limit_h, self.dirty[sent_tiles.slices]):
                jpeg = lossy_client and (d.non_adaptive or (
                    entry.hot and not self.force_lossless[entry.row, entry.first:entry.end].any()))
                jobs.append((entry.rect, jpeg))
                if jpeg and not d.non_adaptive:
                    lossy_tiles.append(entry)
            if self.encoding == enc.RAW:
                jobs = _stacked(jobs)
            data = self._encode(jobs)
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
            pending.whole_screen = False
            self.dirty[sent_tiles.slices] = False
            self.force_lossless[sent_tiles.slices] = False
            for entry in lossy_tiles:
                self.lossy[entry.row, entry.first:entry.end] = True
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
        key = (self.pf, self.encoding, self.compress_level, self.jpeg_quality,
               self.jpeg_subsampling)
        if self._params_key != key:
            level = self.compress_level
            if level is None:
                level = (self.config.default_zlib_level if self.encoding == enc.ZLIB
                         else self.config.default_compress_level)
            lossless = EncodeParams(self.pf, level)
            lossy = EncodeParams(self.pf, level, self.jpeg_quality, self.jpeg_subsampling)
            d = self.display
            self._params_cache = ((lossless, d.params_id(lossless)), (lossy, d.params_id(lossy)))
            self._params_key = key
        return self._params_cache[1 if jpeg else 0]

    def _encode(self, jobs: list[tuple[Rect, bool]]) -> list[EncodedRect]:
        """The rectangles ``(rect, JPEG allowed)`` encoded, in order.

        The shared cache is looked up and filled here, on the reactor
        thread; only the misses are encoded, together
        (:func:`~vncd.updates.encoders.encode_many`, over the pool).
        """
        d = self.display
        cache = d.cache
        encoding = self.encoding
        generation = d.generation
        out: list = []
        missing: list[int] = []
        work: list[tuple[Rect, EncodeParams]] = []
        keys = []
        for rect, jpeg in jobs:
            params, number = self._params(jpeg)
            key = (generation, rect, encoding, number)
            found = cache.lookup(key)
            if found is None:
                missing.append(len(out))
                work.append((rect, params))
                keys.append(key)
            out.append(found)
        if work:
            for i, key, value in zip(missing, keys, encode_many(d.frame, encoding, work)):
                out[i] = value
                cache.put(key, value)
        return out


def _stacked(jobs: list[tuple[Rect, bool]]) -> list[tuple[Rect, bool]]:
    """Raw jobs with rows of the same span one under the other made one rectangle.

    Raw has nothing to gain from the plan's one-rectangle-per-tile-row cut
    (no compression state, no palette): a full-screen change becomes one
    rectangle -- one shuffle, one write, one pass through the write path --
    instead of one per tile row.
    """
    out: list[tuple[Rect, bool]] = []
    for rect, jpeg in jobs:
        if out:
            last, last_jpeg = out[-1]
            if (last.x == rect.x and last.w == rect.w and last.y + last.h == rect.y
                    and last_jpeg == jpeg):
                out[-1] = (Rect(last.x, last.y, last.w, last.h + rect.h), jpeg)
                continue
        out.append((rect, jpeg))
    return out


def _shrink(box: Rect, width: int, height: int) -> Rect:
    """A request area after a resize: what is left of it inside the new size."""
    box = box.clip(width, height)
    return EMPTY if box.empty else box


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
