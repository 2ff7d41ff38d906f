# -*- test-case-name: tests.vncd.test_screens -*-
"""The Screen API: a framebuffer, what changed in it, and the input it receives.

A :class:`Screen` owns a framebuffer -- a numpy ``(height, width, 4)``
uint8 array, channels R, G, B, X (:mod:`vncd.pixels`) -- a desktop name,
optionally a cursor shape, LED state and a multi-screen layout.  Whoever
draws into the framebuffer tells the screen what changed:

* :meth:`Screen.damage` -- "these pixels may have changed" (a rectangle,
  or the whole screen).  The display compares the area with its own copy,
  64x64 tile by tile, so over-reporting costs a comparison, not an update.
* :meth:`Screen.damage_tiles` -- "these :data:`TILE` squares changed", from a
  screen that finds its changes itself.  A screen whose class sets
  :attr:`Screen.exact_damage` reports every change this way (or with
  :meth:`Screen.damage`, then meaning "changed"), and draws only on the
  reactor thread: its displays then serve the framebuffer itself instead
  of a compared copy -- one copy and one pass over the pixels less per
  change (:class:`vncd.screens.file.FileScreen`, which compares anyway).
* :meth:`Screen.move` -- a rectangle moved (scrolling, a window drag):
  clients that support CopyRect get a copy instead of the pixels.
* :meth:`Screen.resize`, :meth:`Screen.set_framebuffer`,
  :meth:`Screen.set_name`, :meth:`Screen.set_cursor`,
  :meth:`Screen.set_led_state`, :meth:`Screen.set_layout`,
  :meth:`Screen.bell`, :meth:`Screen.set_clipboard`.

Displays (:class:`vncd.updates.Display`) listen to a screen through the
:class:`ScreenListener` methods.  Input from clients arrives at
:meth:`Screen.key_event`, :meth:`Screen.pointer_event`,
:meth:`Screen.cut_text` and :meth:`Screen.request_resize`; subclasses
override them (or, for :class:`vncd.screens.array.ArrayScreen`, pass
callbacks).  The server also tells the screen who is connected
(:meth:`Screen.add_connection`) and where it listens, with the security
offered there (:meth:`Screen.set_served_addresses`), which the testcard shows.

This module knows nothing about RFB encodings, sockets or TLS.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from creds.objects import ObjectError
from vncd.info import ConnectionInfo

__all__ = [
    "Change", "TILE",
    "Screen", "ScreenListener", "ScreenError", "ScreenArea", "Cursor", "ServedAddress",
    "KeyEvent", "PointerEvent", "CutTextEvent", "InputEvent",
    "MAX_SIDE", "RESIZE_OK", "RESIZE_PROHIBITED", "RESIZE_OUT_OF_RESOURCES",
    "RESIZE_INVALID_LAYOUT", "LED_SCROLL_LOCK", "LED_NUM_LOCK", "LED_CAPS_LOCK",
]


class Change(enum.StrEnum):
    """What a screen reports as changed besides pixels and size
    (:meth:`ScreenListener.screen_changed`)."""

    #: The screen layout (ExtendedDesktopSize screens), not the size.
    LAYOUT = "layout"
    #: The desktop name.
    NAME = "name"
    #: The cursor shape (or its absence).
    CURSOR = "cursor"
    #: The keyboard LED state.
    LED = "led"


#: Side of the square tiles in which damage is found and tracked.  64 is
#: ZRLE's tile and 4 Hextile tiles; a 1080p screen has 510 of them, so
#: per-tile bookkeeping stays small while a changed clock or cursor costs
#: at most a few tiles.
TILE = 64

#: Widest and tallest framebuffer: twice 4K UHD's width in both
#: directions.  Beyond it one copy of the framebuffer passes 256 MiB, and
#: the display keeps two.
MAX_SIDE = 8192

# Results of a resize request (the ExtendedDesktopSize status codes).
RESIZE_OK = 0
RESIZE_PROHIBITED = 1
RESIZE_OUT_OF_RESOURCES = 2
RESIZE_INVALID_LAYOUT = 3

# QEMU LED state bits.
LED_SCROLL_LOCK = 1
LED_NUM_LOCK = 2
LED_CAPS_LOCK = 4


class ScreenError(ObjectError):
    """A screen cannot be created or used; names the option or file at fault.

    An :class:`~creds.objects.ObjectError` (``message``, ``hint``,
    ``path``), so the command line reports it like any object error.
    ``str()`` is ``"<source>: <message>"`` when the error comes from a
    ``-screen`` option (``source`` is the option as typed), else the
    message alone.
    """

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None):
        super().__init__(message, path=path, check="screen")
        self.source = source

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


@dataclass(frozen=True)
class ScreenArea:
    """One screen of a multi-head layout (ExtendedDesktopSize's SCREEN)."""

    id: int
    x: int
    y: int
    width: int
    height: int
    flags: int = 0

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        return (self.id, self.x, self.y, self.width, self.height, self.flags)


@dataclass(frozen=True)
class Cursor:
    """A cursor shape: ``rgba`` is ``(h, w, 4)`` uint8 (alpha last); hotspot."""

    rgba: np.ndarray = field(compare=False)
    hot_x: int = 0
    hot_y: int = 0


@dataclass(frozen=True)
class ServedAddress:
    """Where the server takes connections for a screen, and what it asks of them.

    ``address`` is the address alone (``127.0.0.1:5901``, ``[::1]:5901``,
    ``unix:/run/vnc.sock``, ``reverse 192.0.2.4:5500``); ``security`` says
    in words what a client must do there (``VeNCrypt X509None``,
    ``VNC password``, ``no authentication``, ``WebSocket over TLS, VNC
    password``).  ``str()`` is ``"<address> (<security>)"``.
    """

    address: str
    security: str

    def __str__(self) -> str:
        return f"{self.address} ({self.security})"


@dataclass(frozen=True)
class KeyEvent:
    """A key press or release.  ``keycode`` is the XT scancode of a QEMU
    extended key event, ``None`` for a plain KeyEvent; ``client`` is the
    peer address."""

    down: bool
    keysym: int
    keycode: int | None = None
    client: str = ""


@dataclass(frozen=True)
class PointerEvent:
    """Pointer position and button mask (bit 0 = button 1)."""

    buttons: int
    x: int
    y: int
    client: str = ""


@dataclass(frozen=True)
class CutTextEvent:
    """Clipboard text from a client (Latin-1 bytes, as RFB sends it)."""

    text: bytes
    client: str = ""


InputEvent = KeyEvent | PointerEvent | CutTextEvent


class ScreenListener(Protocol):
    """What a screen tells the displays showing it."""

    def screen_damaged(self, screen: "Screen", rect: tuple[int, int, int, int] | None) -> None:
        """Pixels in ``rect`` (x, y, w, h), or anywhere when None, may have changed."""

    def screen_damaged_tiles(self, screen: "Screen", tiles: np.ndarray) -> None:
        """The :data:`TILE` squares where ``tiles`` (a bool array, one per
        square, row-major) is true changed."""

    def screen_moved(self, screen: "Screen", src_x: int, src_y: int,
                     x: int, y: int, w: int, h: int) -> None:
        """The framebuffer's ``(src_x, src_y, w, h)`` was copied to ``(x, y)``."""

    def screen_resized(self, screen: "Screen") -> None:
        """The framebuffer was replaced by one of another size."""

    def screen_changed(self, screen: "Screen", what: Change) -> None:
        """The name, cursor, LED state or layout changed."""

    def screen_bell(self, screen: "Screen") -> None:
        """Ring the clients' bells."""

    def screen_clipboard(self, screen: "Screen", text: bytes) -> None:
        """New clipboard text for the clients."""


def check_size(width: int, height: int) -> None:
    """Raise :class:`ScreenError` unless ``width`` x ``height`` is a usable size."""
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ScreenError(f"screen size {width}x{height} is outside 1x1 .. "
                          f"{MAX_SIDE}x{MAX_SIDE}")


def check_framebuffer(framebuffer: np.ndarray) -> None:
    """Raise ValueError unless ``framebuffer`` is a C-contiguous (h, w, 4) uint8 array."""
    if (not isinstance(framebuffer, np.ndarray) or framebuffer.ndim != 3
            or framebuffer.shape[2] != 4 or framebuffer.dtype != np.uint8
            or not framebuffer.flags.c_contiguous):
        raise ValueError("a framebuffer is a C-contiguous (height, width, 4) uint8 array")
    check_size(framebuffer.shape[1], framebuffer.shape[0])


class Screen:
    """A framebuffer with a name, change notifications and input callbacks.

    ``reactor`` (and through it the clock) is given to screens that run
    timers or read from files; the base class only stores it.
    """

    #: Whether :meth:`request_resize` may succeed (clients learn it from
    #: the ExtendedDesktopSize reply).
    resizable = False

    #: True when every change to the framebuffer is made on the reactor
    #: thread and reported at once (:meth:`damage_tiles`, or :meth:`damage`
    #: meaning "changed", never "may have changed"): displays then serve
    #: the framebuffer itself instead of comparing it with a copy.
    exact_damage = False

    def __init__(self, width: int, height: int, *, name: str = "vncd", reactor=None) -> None:
        check_size(width, height)
        self.reactor = reactor
        self._framebuffer = np.zeros((height, width, 4), dtype=np.uint8)
        self._name = name
        self._cursor: Cursor | None = None
        self._led_state: int | None = None
        self._layout: tuple[ScreenArea, ...] = (ScreenArea(0, 0, 0, width, height),)
        self._listeners: list[ScreenListener] = []
        #: Connections of every display showing this screen, oldest first.
        self.connections: list[ConnectionInfo] = []
        #: Where the server listens and the security it offers there, in order.
        self.served_addresses: list[ServedAddress] = []

    # -- what it looks like ---------------------------------------------------

    @property
    def framebuffer(self) -> np.ndarray:
        """The pixels, ``(height, width, 4)`` uint8 RGBX; draw into it, then damage."""
        return self._framebuffer

    @property
    def width(self) -> int:
        return self._framebuffer.shape[1]

    @property
    def height(self) -> int:
        return self._framebuffer.shape[0]

    @property
    def name(self) -> str:
        return self._name

    @property
    def cursor(self) -> Cursor | None:
        return self._cursor

    @property
    def led_state(self) -> int | None:
        """QEMU LED bits (:data:`LED_CAPS_LOCK` ...), or None when unknown."""
        return self._led_state

    @property
    def layout(self) -> tuple[ScreenArea, ...]:
        return self._layout

    # -- listeners --------------------------------------------------------------

    def add_listener(self, listener: ScreenListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ScreenListener) -> None:
        self._listeners = [x for x in self._listeners if x is not listener]

    # -- telling the displays what changed -----------------------------------------

    def damage(self, x: int = 0, y: int = 0, w: int | None = None, h: int | None = None) -> None:
        """Pixels in the rectangle (default: the whole screen) may have changed."""
        if w is None and h is None and x == 0 and y == 0:
            rect = None
        else:
            w = self.width - x if w is None else w
            h = self.height - y if h is None else h
            x0, y0 = max(0, x), max(0, y)
            x1, y1 = min(self.width, x + w), min(self.height, y + h)
            if x1 <= x0 or y1 <= y0:
                return
            rect = (x0, y0, x1 - x0, y1 - y0)
        for listener in list(self._listeners):
            listener.screen_damaged(self, rect)

    def damage_tiles(self, tiles: np.ndarray) -> None:
        """The :data:`TILE` squares where ``tiles`` is true changed: a bool
        array of shape ``(ceil(height / TILE), ceil(width / TILE))``."""
        shape = (-(-self.height // TILE), -(-self.width // TILE))
        if (not isinstance(tiles, np.ndarray) or tiles.dtype != np.bool_
                or tiles.shape != shape):
            raise ValueError(f"damage_tiles needs a bool array of shape {shape} "
                             f"(the {self.width}x{self.height} screen's {TILE}-pixel tiles)")
        if not tiles.any():
            return
        for listener in list(self._listeners):
            listener.screen_damaged_tiles(self, tiles)

    def move(self, src_x: int, src_y: int, x: int, y: int, w: int, h: int) -> None:
        """Copy ``(src_x, src_y, w, h)`` of the framebuffer to ``(x, y)`` and say so."""
        if not (0 <= src_x and 0 <= src_y and 0 <= x and 0 <= y and w > 0 and h > 0
                and src_x + w <= self.width and x + w <= self.width
                and src_y + h <= self.height and y + h <= self.height):
            raise ValueError(f"move of {w}x{h} from {src_x},{src_y} to {x},{y} leaves the "
                             f"{self.width}x{self.height} screen")
        fb = self._framebuffer
        fb[y:y + h, x:x + w] = fb[src_y:src_y + h, src_x:src_x + w]
        for listener in list(self._listeners):
            listener.screen_moved(self, src_x, src_y, x, y, w, h)

    def set_framebuffer(self, framebuffer: np.ndarray) -> None:
        """Replace the framebuffer (another size means a resize)."""
        check_framebuffer(framebuffer)
        height, width = framebuffer.shape[:2]
        resized = (width, height) != (self.width, self.height)
        self._framebuffer = framebuffer
        if resized:
            self._layout = (ScreenArea(0, 0, 0, width, height),)
            for listener in list(self._listeners):
                listener.screen_resized(self)
        else:
            self.damage()

    def resize(self, width: int, height: int, layout: Sequence[ScreenArea] | None = None) -> None:
        """New framebuffer size; the old pixels are kept where they still fit."""
        check_size(width, height)
        if (width, height) != (self.width, self.height):
            fb = np.zeros((height, width, 4), dtype=np.uint8)
            h, w = min(height, self.height), min(width, self.width)
            fb[:h, :w] = self._framebuffer[:h, :w]
            self._framebuffer = fb
            self._layout = tuple(layout) if layout else (ScreenArea(0, 0, 0, width, height),)
            for listener in list(self._listeners):
                listener.screen_resized(self)
        elif layout is not None:
            self.set_layout(layout)

    def set_layout(self, layout: Sequence[ScreenArea]) -> None:
        self._layout = tuple(layout)
        self._changed(Change.LAYOUT)

    def set_name(self, name: str) -> None:
        self._name = name
        self._changed(Change.NAME)

    def set_cursor(self, cursor: Cursor | None) -> None:
        self._cursor = cursor
        self._changed(Change.CURSOR)

    def set_led_state(self, state: int | None) -> None:
        if state != self._led_state:
            self._led_state = state
            self._changed(Change.LED)

    def bell(self) -> None:
        for listener in list(self._listeners):
            listener.screen_bell(self)

    def set_clipboard(self, text: bytes) -> None:
        """Offer ``text`` (Latin-1 bytes) to the clients' clipboards."""
        for listener in list(self._listeners):
            listener.screen_clipboard(self, text)

    def _changed(self, what: Change) -> None:
        for listener in list(self._listeners):
            listener.screen_changed(self, what)

    # -- input from clients (override) ---------------------------------------------

    def key_event(self, event: KeyEvent) -> None:
        """A client pressed or released a key."""

    def pointer_event(self, event: PointerEvent) -> None:
        """A client moved the pointer or changed its buttons."""

    def cut_text(self, event: CutTextEvent) -> None:
        """A client put text on its clipboard."""

    def request_resize(self, width: int, height: int, layout: Sequence[ScreenArea]) -> int:
        """A client asks for another size; returns a ``RESIZE_*`` status.

        On success the screen must have called :meth:`resize` (or
        :meth:`set_layout`) before returning.  The default refuses.
        """
        return RESIZE_PROHIBITED

    # -- what the server tells the screen -----------------------------------------

    def add_connection(self, info: ConnectionInfo) -> None:
        self.connections.append(info)

    def remove_connection(self, info: ConnectionInfo) -> None:
        self.connections = [c for c in self.connections if c is not info]

    def connection_ready(self, info: ConnectionInfo) -> None:
        """``info`` finished its handshake; its security fields are final.

        Called when the connection asks for its first update, before that
        update is prepared, so a screen that shows connections can include
        this one in it.
        """

    @property
    def listen_addresses(self) -> list[str]:
        """Where the server listens, the addresses alone (``127.0.0.1:5901``,
        ``unix:/run/x``)."""
        return [served.address for served in self.served_addresses]

    def set_served_addresses(self, addresses: Sequence[ServedAddress]) -> None:
        """Where the server takes connections for this screen, and with what security."""
        self.served_addresses = list(addresses)

    def start(self) -> None:
        """Begin producing frames (timers, readers); called once serving starts."""

    def stop(self) -> None:
        """Stop timers and readers; the framebuffer stays as it is."""
