# -*- test-case-name: tests.vncd.test_testcard -*-
"""``-screen testcard`` (the default): a live picture of the security state.

What an administrator sees on connecting a viewer:

* the vncd version and a UTC clock (redrawn every second);
* colour bars and a grey ramp (a wrong pixel format shows at once);
* the addresses the server listens on, each with the security it offers;
* every connected client: its address and state, the security type and
  VeNCrypt subtype, the TLS version and cipher, and the distinguished
  name of its certificate -- with a coloured mark: green for TLS with a
  verified client certificate, amber for TLS without one, red for a
  connection that is not encrypted;
* the last few input events (a run of pointer moves from one client
  with the same buttons counts as one).

The picture is drawn with Pillow, one panel at a time: a panel is
redrawn only when its text changed (the clock once a second; the client
list when a connection changes, checked every second and on connect or
disconnect; the event list on input), at most
:data:`MAX_REDRAWS_PER_SECOND` times a second, and only its rectangle is
reported as damaged.

Knows nothing about RFB or TLS beyond the strings in
:class:`~vncd.info.ConnectionInfo`.
"""

from __future__ import annotations

import datetime
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vncd import __version__
from vncd.info import ConnectionInfo
from vncd.screens.base import CutTextEvent, KeyEvent, PointerEvent, Screen, ScreenError

__all__ = ["TestcardScreen", "Panel", "client_lines", "describe_event", "protection",
           "DEFAULT_WIDTH", "DEFAULT_HEIGHT"]

#: Size of ``-screen testcard`` without ``size=``: fits any viewer window
#: and keeps the text large enough to read at a glance.
DEFAULT_WIDTH = 1024
DEFAULT_HEIGHT = 768

#: Smallest testcard on which the panels still fit readable text.
MIN_WIDTH = 320
MIN_HEIGHT = 240

#: Panel redraws per second at most (input can arrive far faster).
MAX_REDRAWS_PER_SECOND = 4

#: Rendered text lines kept for reuse: the lines of a few dozen clients and
#: events (a line is width x line height x 3 bytes, ~66 KiB at 1024 wide,
#: so at most ~8 MiB).
LINE_CACHE_SIZE = 128

#: Input events listed.
EVENTS_SHOWN = 6

BACKGROUND = (24, 28, 36)
FOREGROUND = (235, 235, 235)
DIM = (150, 160, 175)
GREEN = (60, 200, 90)
AMBER = (240, 180, 40)
RED = (230, 60, 50)

#: The classic bars: white, yellow, cyan, green, magenta, red, blue, black.
BARS = ((255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0),
        (255, 0, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0))


def protection(info: ConnectionInfo) -> tuple[str, tuple[int, int, int]]:
    """A one-word verdict on a connection's protection and its colour."""
    if info.tls_version:
        if info.peer_dn:
            return "verified", GREEN
        return "encrypted", AMBER
    if info.state == "handshake" and info.security is None:
        return "negotiating", DIM
    return "NOT ENCRYPTED", RED


def client_lines(info: ConnectionInfo) -> list[str]:
    """The text shown for one connection."""
    verdict, _ = protection(info)
    share = "" if info.shared is None else ", shared" if info.shared else ", exclusive"
    state = info.state + share
    kind = " (websocket)" if info.websocket else ""
    security = info.security or "not chosen yet"
    if info.subtype:
        security += f" / {info.subtype}"
    tls = f"{info.tls_version} {info.tls_cipher or ''}".strip() if info.tls_version else "none"
    return [
        f"{info.peer}{kind}  {state}  [{verdict}]",
        f"    security: {security}    TLS: {tls}",
        f"    peer certificate: {info.peer_dn or 'none'}",
    ]


def describe_event(event) -> str:
    """One line for an input event."""
    if isinstance(event, KeyEvent):
        action = "down" if event.down else "up"
        char = chr(event.keysym) if 0x20 < event.keysym < 0x7F else ""
        code = "" if event.keycode is None else f" keycode {event.keycode}"
        return f"{event.client}  key {action} 0x{event.keysym:04x} {char}{code}".rstrip()
    if isinstance(event, PointerEvent):
        return f"{event.client}  pointer {event.x},{event.y} buttons {event.buttons:08b}"
    if isinstance(event, CutTextEvent):
        return f"{event.client}  clipboard {len(event.text)} bytes"
    return repr(event)


@dataclass
class Panel:
    """A rectangle of the testcard with the text lines last drawn in it."""

    name: str
    x: int
    y: int
    width: int
    height: int
    lines: tuple = ()


class TestcardScreen(Screen):
    """The default screen (see the module docstring)."""

    def __init__(self, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, *,
                 name: str = "vncd testcard", reactor) -> None:
        if width < MIN_WIDTH or height < MIN_HEIGHT:
            raise ScreenError(f"a testcard needs at least {MIN_WIDTH}x{MIN_HEIGHT} pixels")
        super().__init__(width, height, name=name, reactor=reactor)
        scale = min(width / DEFAULT_WIDTH, height / DEFAULT_HEIGHT)
        self.line_height = max(12, round(22 * scale))
        self.font = ImageFont.load_default(size=max(9, round(16 * scale)))
        self.title_font = ImageFont.load_default(size=max(12, round(30 * scale)))
        margin = max(6, round(16 * scale))
        self.margin = margin
        header = round(64 * scale)
        bars = round(60 * scale)
        ramp = round(16 * scale)
        events = self.line_height * (EVENTS_SHOWN + 1) + margin
        self.panels = {
            "title": Panel("title", 0, 0, width // 2, header),
            "clock": Panel("clock", width // 2, 0, width - width // 2, header),
            "info": Panel("info", 0, header + bars + ramp, width,
                          height - header - bars - ramp - events),
            "events": Panel("events", 0, height - events, width, events),
        }
        self._bars_box = (0, header, width, bars, ramp)
        self.events: deque = deque(maxlen=EVENTS_SHOWN)
        self._timer = None
        self._redraw_call = None
        self._line_cache: OrderedDict = OrderedDict()
        self._stopped = False
        self._last_redraw = float("-inf")
        self._framebuffer[...] = (*BACKGROUND, 0)
        self._draw_bars()
        self.redraw(force=True)

    # -- drawing ------------------------------------------------------------------

    def _draw_bars(self) -> None:
        _, top, width, bars, ramp = self._bars_box
        fb = self._framebuffer
        edges = np.linspace(0, width, len(BARS) + 1).astype(int)
        for colour, a, b in zip(BARS, edges, edges[1:]):
            fb[top:top + bars, a:b, :3] = colour
        levels = (np.arange(width) * 256 // width).astype(np.uint8)
        fb[top + bars:top + bars + ramp, :, :3] = levels[None, :, None]

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.reactor.seconds(), datetime.timezone.utc)

    def panel_text(self) -> dict[str, tuple]:
        """The lines each panel shows now: ``(text, colour)`` pairs."""
        now = self._now()
        info: list = [("Listening on:", DIM)]
        addresses = [(f"    {served}", FOREGROUND) for served in self.served_addresses]
        info += addresses or [("    (nothing)", DIM)]
        info.append((f"Clients ({len(self.connections)}):", DIM))
        room = max(0, self.panels["info"].height // self.line_height - len(info) - 1)
        shown = 0
        for conn in self.connections:
            lines = client_lines(conn)
            if shown + len(lines) > room:
                info.append((f"    ... and {len(self.connections) - shown // 3} more", DIM))
                break
            colour = protection(conn)[1]
            info.append((lines[0], colour))
            info += [(line, FOREGROUND) for line in lines[1:]]
            shown += len(lines)
        events = [("Last input:", DIM)]
        events += [(f"    {stamp}  {text}", FOREGROUND) for stamp, text, _ in self.events]
        return {
            "title": ((f"vncd {__version__}", FOREGROUND),),
            "clock": ((now.strftime("%Y-%m-%d %H:%M:%S UTC"), FOREGROUND),),
            "info": tuple(info),
            "events": tuple(events),
        }

    def _line_pixels(self, text: str, colour: tuple[int, int, int]) -> np.ndarray:
        """One rendered line of the small font, ``(line_height, width, 4)`` RGBX, cached.

        Text rendering is most of a redraw's cost; with the cache a new
        client costs the rendering of its own three lines only.
        """
        key = (text, colour)
        pixels = self._line_cache.get(key)
        if pixels is not None:
            self._line_cache.move_to_end(key)
            return pixels
        image = Image.new("RGB", (self.width, self.line_height), BACKGROUND)
        ImageDraw.Draw(image).text((self.margin, 0), text, fill=colour, font=self.font)
        pixels = np.zeros((self.line_height, self.width, 4), dtype=np.uint8)
        pixels[..., :3] = np.asarray(image)
        self._line_cache[key] = pixels
        if len(self._line_cache) > LINE_CACHE_SIZE:
            self._line_cache.popitem(last=False)
        return pixels

    def _render(self, panel: Panel, lines: tuple, force: bool = False) -> None:
        region = self._framebuffer[panel.y:panel.y + panel.height,
                                   panel.x:panel.x + panel.width]
        if panel.name in ("title", "clock"):
            image = Image.new("RGB", (panel.width, panel.height), BACKGROUND)
            draw = ImageDraw.Draw(image)
            size = getattr(self.title_font, "size", self.line_height)
            y = (panel.height - size) // 2
            for text, colour in lines:
                draw.text((self.margin, y), text, fill=colour, font=self.title_font)
                y += self.line_height
            region[..., :3] = np.asarray(image)
            panel.lines = lines
            self.damage(panel.x, panel.y, panel.width, panel.height)
            return
        # Text panels: only the lines that changed are written and damaged.
        old = () if force else panel.lines
        if force:
            region[...] = (*BACKGROUND, 0)
        top = self.margin // 2
        first = last = None
        for index in range(max(len(lines), len(old))):
            line = lines[index] if index < len(lines) else None
            if index < len(old) and old[index] == line:
                continue
            y = top + index * self.line_height
            rows = min(self.line_height, panel.height - y)
            if rows <= 0:
                break
            if line is None:
                region[y:y + rows] = (*BACKGROUND, 0)
            else:
                region[y:y + rows] = self._line_pixels(*line)[:rows, :panel.width]
            first = y if first is None else first
            last = y + rows
        panel.lines = lines
        if force:
            self.damage(panel.x, panel.y, panel.width, panel.height)
        elif first is not None:
            self.damage(panel.x, panel.y + first, panel.width, last - first)

    def redraw(self, force: bool = False) -> list[str]:
        """Redraw the panels whose text changed; returns their names."""
        self._last_redraw = self.reactor.seconds() if self.reactor is not None else 0.0
        drawn = []
        for name, lines in self.panel_text().items():
            panel = self.panels[name]
            if force or lines != panel.lines:
                self._render(panel, lines, force)
                drawn.append(name)
        return drawn

    def _soon(self) -> None:
        """Redraw now, or as soon as the rate limit allows (never once stopped)."""
        if self._redraw_call is not None or self.reactor is None or self._stopped:
            return
        wait = max(0.0, self._last_redraw + 1 / MAX_REDRAWS_PER_SECOND - self.reactor.seconds())
        self._redraw_call = self.reactor.callLater(wait, self._delayed_redraw)

    def _delayed_redraw(self) -> None:
        self._redraw_call = None
        self.redraw()

    def _tick(self) -> None:
        self.redraw()
        now = self.reactor.seconds()
        self._timer = self.reactor.callLater(1.0 - now % 1.0, self._tick)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start the clock (its first redraw runs once the reactor does)."""
        self._stopped = False
        if self._timer is None:
            self._timer = self.reactor.callLater(0, self._tick)

    def stop(self) -> None:
        self._stopped = True
        for call in (self._timer, self._redraw_call):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._redraw_call = None

    # -- what the server tells it ------------------------------------------------

    def add_connection(self, info: ConnectionInfo) -> None:
        super().add_connection(info)
        self._soon()

    def remove_connection(self, info: ConnectionInfo) -> None:
        super().remove_connection(info)
        self._soon()

    def connection_ready(self, info: ConnectionInfo) -> None:
        """Draw the client's final security state before its first update.

        Outside the rate limit: a viewer (or a one-shot capture) must see how
        its own connection is protected in the very first frame.  The
        connections= limit bounds how often this can happen.
        """
        self.redraw()

    def set_served_addresses(self, addresses) -> None:
        super().set_served_addresses(addresses)
        self._soon()

    def _record(self, event) -> None:
        entry = (self._now().strftime("%H:%M:%S"), describe_event(event), event)
        last = self.events[-1][2] if self.events else None
        if (isinstance(event, PointerEvent) and isinstance(last, PointerEvent)
                and (last.client, last.buttons) == (event.client, event.buttons)):
            self.events[-1] = entry
        else:
            self.events.append(entry)
        self._soon()

    def key_event(self, event: KeyEvent) -> None:
        self._record(event)

    def pointer_event(self, event: PointerEvent) -> None:
        self._record(event)

    def cut_text(self, event: CutTextEvent) -> None:
        self._record(event)
