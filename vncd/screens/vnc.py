# -*- test-case-name: tests.vncd.test_screens_vnc -*-
"""``-screen vnc,server=...``: vncd as the TLS front door of another VNC server.

:class:`VncScreen` mirrors an *upstream* VNC server -- a QEMU guest's
display on a UNIX socket, x11vnc, Xvnc, an appliance speaking plain RFB
on localhost -- through one client connection made with vncd's own RFB
client (:mod:`vncd.client`).  Every downstream client of every display
is served from that one connection, with vncd's security and encodings.

What passes through:

* upstream -> downstream: the pixels (requested incrementally, one
  request outstanding, in the encodings of :data:`UPSTREAM_ENCODINGS`),
  resizes (DesktopSize / ExtendedDesktopSize with the screen layout),
  the cursor shape, the desktop name (unless ``name=`` overrides it),
  QEMU LED state, bell and clipboard text;
* downstream -> upstream: key events (QEMU extended key events with the
  raw keycode when the upstream announced them, plain KeyEvents
  otherwise), pointer events and clipboard text.  Resize requests from
  downstream are refused: the upstream's size is the upstream's business.

The upstream is asked for :data:`UPSTREAM_PIXEL_FORMAT`, whose pixel
values are RGBX bytes in memory, so the decoder's framebuffer *is* the
screen's framebuffer: decoded rectangles are reported as damage and
nothing is copied.

The connection's life is the table :data:`TRANSITIONS`.  When the
upstream cannot be reached, refuses, or goes away, the downstream
clients keep their connections and see a picture saying what is
unavailable, why, since when, and when the next attempt is due (redrawn
every second); attempts are repeated with exponential backoff between
:data:`RETRY_INITIAL_DELAY` and :data:`RETRY_MAX_DELAY`.  An upstream
that is down when vncd starts is not an error: the outage picture is
shown until it comes.  Each change of state is logged once, with the
upstream's address and the reason (connection refused, authentication
failed, the certificate check's own text ...); an unchanged failure on
every retry is not repeated.

Credentials are opaque here: the TLS credentials object and the password
come from :func:`vncd.screens.from_spec` and go to the client, which
uses the creds session API.  Knows nothing about sockets beyond the
client's ``connect``, and nothing about certificates.
"""

from __future__ import annotations

import datetime
import enum
import re
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from twisted.internet import defer
from twisted.logger import Logger

from compat.config import ListenAddress
from vncd import encoding as enc
from vncd.encoding import pseudo
from vncd.client import ClientOptions, RFBClient, RFBClientError, connect
from vncd.encoding.decode import (
    CursorChanged, DesktopNameChanged, DesktopSizeChanged, LedStateChanged,
    QemuExtendedKeyEventSupported, RectDecoded, UpdateComplete,
)
from vncd.pixels import PixelFormat
from vncd.rfb import messages as m
from vncd.rfb.errors import LocalProtocolError
from vncd.rfb.limits import Limits
from vncd.rfb.security import SECURITY_LABELS
from vncd.screens.base import (
    MAX_SIDE, CutTextEvent, Cursor, KeyEvent, PointerEvent, Screen, ScreenArea, ScreenError,
)

__all__ = [
    "VncScreen", "UpstreamState", "UpstreamInput", "TRANSITIONS", "parse_server",
    "UPSTREAM_PIXEL_FORMAT", "UPSTREAM_ENCODINGS", "RETRY_INITIAL_DELAY", "RETRY_MAX_DELAY",
    "CONNECT_TIMEOUT", "HANDSHAKE_TIMEOUT", "OUTAGE_WIDTH", "OUTAGE_HEIGHT", "render_outage",
]

log = Logger(namespace="vncd.screens.vnc")

#: First wait after a failed or lost connection.  A restarted upstream
#: (a QEMU guest rebooted, x11vnc restarted by its supervisor) is usually
#: listening again within a second or two.
RETRY_INITIAL_DELAY = 1.0

#: Longest wait between attempts; the wait doubles up to it.  An upstream
#: that stays down costs one connection attempt every half minute, and
#: one that comes back is shown again within that time.
RETRY_MAX_DELAY = 30.0

#: Factor by which the wait grows after each failed attempt.
RETRY_BACKOFF = 2.0

#: Seconds a TCP or UNIX connect to the upstream may take: a loopback or
#: LAN server answers in milliseconds; a filtered port would otherwise hang
#: for the system's two minutes.
CONNECT_TIMEOUT = 10.0

#: Seconds from connected to ServerInit.  vncd answers the upstream's
#: password or certificate questions itself, so nothing waits for a person
#: (unlike the 60 s a downstream viewer gets); a server that accepts and
#: then stalls is given up on and retried.
HANDSHAKE_TIMEOUT = 30.0

#: Seconds between redraws of the outage picture (its clock and countdown).
OUTAGE_REDRAW_INTERVAL = 1.0

#: Size of the outage picture before the upstream was ever seen (later,
#: the upstream's last size is kept so viewers do not resize).
OUTAGE_WIDTH = 1024
OUTAGE_HEIGHT = 768

#: The upstream's pixels as vncd asks for them: 32 bits, little-endian,
#: red in the lowest byte.  A pixel value's bytes in memory are then R, G,
#: B, 0 -- exactly the screen's RGBX framebuffer -- so the decoder writes
#: straight into what the displays read.
UPSTREAM_PIXEL_FORMAT = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16)

#: What vncd asks the upstream for, preferred first.  Tight comes first:
#: its rectangles are large (up to 2048 pixels wide) and decoding is a
#: few whole-array operations each, where ZRLE is parsed 64x64 tile by
#: tile; QEMU and x11vnc both speak it, and without a JPEG quality level
#: it stays lossless.  ZRLE and Hextile follow for servers without
#: Tight, then CopyRect and Raw; the pseudo-encodings carry resizes, the
#: cursor, the name, LED state and QEMU's extended key events.
UPSTREAM_ENCODINGS = (
    enc.TIGHT, enc.ZRLE, enc.HEXTILE, enc.ZLIB, enc.COPYRECT, enc.RAW,
    enc.EXTENDED_DESKTOP_SIZE, enc.DESKTOP_SIZE, enc.CURSOR, enc.DESKTOP_NAME,
    enc.LAST_RECT, enc.QEMU_EXTENDED_KEY_EVENT, enc.QEMU_LED_STATE,
)

#: What vncd accepts from the upstream: at most a MAX_SIDE square
#: framebuffer (what a screen may be), 1 MiB of clipboard text and a
#: 64 KiB reason string (the client's defaults).
UPSTREAM_LIMITS = Limits(max_client_framebuffer_pixels=MAX_SIDE * MAX_SIDE)

#: Longest UNIX socket path: ``sun_path`` holds 108 bytes on Linux,
#: including the terminating NUL.
MAX_UNIX_PATH = 107

_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")


class UpstreamState(enum.Enum):
    #: Made, not started yet.
    IDLE = "idle"
    #: A connection attempt (connect and RFB handshake) is under way.
    CONNECTING = "connecting"
    #: ServerInit arrived: the upstream's pixels are mirrored.
    CONNECTED = "connected"
    #: The upstream is unavailable: the outage picture shows, a retry is due.
    WAITING = "waiting"
    #: Stopped for good (vncd is shutting down).
    STOPPED = "stopped"


class UpstreamInput(enum.Enum):
    #: Serving started: make the first attempt.
    START = "start"
    #: The attempt reached ServerInit.
    READY = "ready"
    #: The attempt failed (refused, authentication, TLS, timeout ...).
    FAILED = "failed"
    #: An established connection ended.
    LOST = "lost"
    #: The wait is over: try again.
    RETRY = "retry"
    #: vncd stops.
    STOP = "stop"


_S, _I = UpstreamState, UpstreamInput

#: Every allowed (state, input) pair and where it leads; any other pair
#: is a bug in this module.
TRANSITIONS: dict[tuple[UpstreamState, UpstreamInput], UpstreamState] = {
    (_S.IDLE, _I.START): _S.CONNECTING,
    (_S.CONNECTING, _I.READY): _S.CONNECTED,
    (_S.CONNECTING, _I.FAILED): _S.WAITING,
    (_S.CONNECTED, _I.LOST): _S.WAITING,
    (_S.WAITING, _I.RETRY): _S.CONNECTING,
    **{(state, _I.STOP): _S.STOPPED for state in UpstreamState},
}


def parse_server(text: str, source: str | None = None) -> ListenAddress:
    """``server=``: ``unix:PATH``, ``HOST:PORT`` or ``[IPV6]:PORT`` (a port, not a
    display number); raises :class:`ScreenError`."""
    if text.startswith("unix:"):
        if len(text) == 5:
            raise ScreenError("Parameter 'server' has an empty UNIX socket path",
                              source=source)
        if len(text[5:].encode("utf-8", "surrogateescape")) > MAX_UNIX_PATH:
            raise ScreenError(f"Parameter 'server' has a UNIX socket path longer than "
                              f"{MAX_UNIX_PATH} bytes", source=source)
        return ListenAddress("unix", text[5:])
    host, sep, port = text.rpartition(":")
    if not sep or not _HOST.fullmatch(host) or not port.isdigit() or len(port) > 5:
        raise ScreenError(f"Parameter 'server' expects unix:PATH, HOST:PORT or "
                          f"[IPV6]:PORT, not '{text}'", source=source)
    number = int(port)
    if not 1 <= number <= 65535:
        raise ScreenError(f"Parameter 'server' has port {number}, outside 1..65535",
                          source=source)
    return ListenAddress("tcp", host.strip("[]"), number)


def _font(size: int):
    return ImageFont.load_default(size=size)


def render_outage(width: int, height: int, title: str, lines: list[str]) -> np.ndarray:
    """The outage picture: a dark red screen with ``title`` and ``lines``, RGBX."""
    image = Image.new("RGB", (width, height), (70, 16, 20))
    draw = ImageDraw.Draw(image)
    scale = max(0.4, min(width / 1024, height / 768))
    title_font, font = _font(max(10, round(34 * scale))), _font(max(8, round(18 * scale)))
    margin = max(4, round(40 * scale))
    y = margin
    draw.text((margin, y), title, fill=(255, 255, 255), font=title_font)
    y += round(60 * scale)
    for line in lines:
        draw.text((margin, y), line, fill=(235, 220, 220), font=font)
        y += round(30 * scale)
    rgbx = np.zeros((height, width, 4), dtype=np.uint8)
    rgbx[..., :3] = np.asarray(image)
    return rgbx


def _describe_error(failure) -> str:
    """A failed attempt in words, for the log and the outage picture."""
    error = failure.value
    if isinstance(error, RFBClientError):
        if error.kind == "tls" and error.certificate:
            return f"certificate rejected: {error.message}"
        return error.message
    if isinstance(error, defer.CancelledError):
        return "the attempt was cancelled"
    return f"{type(error).__name__}: {error}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds // 60 % 60} min"


class VncScreen(Screen):
    """The pixels of an upstream VNC server (see the module docstring).

    ``address`` is where the upstream listens, ``options`` how to talk to
    it (password, TLS credentials and the host name their certificate
    must carry, the ClientInit shared flag).  ``name`` overrides the
    upstream's desktop name.  ``on_stop`` callables run once when the
    screen stops (releasing the objects it holds in the registry).
    """

    def __init__(self, address: ListenAddress, options: ClientOptions, *, reactor,
                 name: str | None = None, on_stop: tuple[Callable[[], None], ...] = ()) -> None:
        super().__init__(OUTAGE_WIDTH, OUTAGE_HEIGHT, name=name or f"vncd: {address}",
                         reactor=reactor)
        self.address = address
        self.options = options
        self._fixed_name = name
        self._on_stop = on_stop
        self.state = UpstreamState.IDLE
        self._attempt: defer.Deferred | None = None
        self._client: RFBClient | None = None
        self._mirroring = False
        self._ext_keys = False
        self._decoded: list[tuple[int, int, int, int]] = []
        self._delay = RETRY_INITIAL_DELAY
        self._retry_call = None
        self._redraw_call = None
        self._retry_at: float | None = None
        self._logged: tuple[str, str] | None = None
        #: Why the upstream is unavailable, and since when (reactor seconds).
        self.reason = "not connected yet"
        self.unavailable_since = reactor.seconds()
        #: Completed connections and attempts made, for tests and the log.
        self.connections_made = 0
        self.attempts = 0
        #: Input events dropped because the upstream was unavailable.
        self.dropped_input = 0
        self._show_outage()

    # -- the state table ----------------------------------------------------------

    def _process(self, event: UpstreamInput) -> None:
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"upstream: no transition for {event.name} in state {self.state.name}") from None

    # -- life -----------------------------------------------------------------------

    def start(self) -> None:
        if self.state is UpstreamState.IDLE:
            self._process(UpstreamInput.START)
            self._connect()

    def stop(self) -> None:
        if self.state is UpstreamState.STOPPED:
            return
        self._process(UpstreamInput.STOP)
        for call in (self._retry_call, self._redraw_call):
            if call is not None and call.active():
                call.cancel()
        self._retry_call = self._redraw_call = None
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            attempt.cancel()
        client, self._client = self._client, None
        if client is not None:
            client.close()
        callbacks, self._on_stop = self._on_stop, ()
        for release in callbacks:
            release()

    def _connect(self) -> None:
        self.attempts += 1
        self._retry_at = None
        self._redraw_outage()
        attempt = connect(self.reactor, self.address, self.options, timeout=CONNECT_TIMEOUT,
                          handshake_timeout=HANDSHAKE_TIMEOUT, on_event=self._on_event)
        self._attempt = attempt
        attempt.addCallbacks(self._ready, self._failed)

    def _ready(self, client: RFBClient) -> None:
        self._attempt = None
        if self.state is not UpstreamState.CONNECTING:
            client.close()
            return
        init = client.server_init
        if not (1 <= init.width <= MAX_SIDE and 1 <= init.height <= MAX_SIDE):
            client.close()
            self._process(UpstreamInput.FAILED)
            self._unavailable(f"the server's framebuffer {init.width}x{init.height} is outside"
                              f" 1x1 .. {MAX_SIDE}x{MAX_SIDE}")
            return
        self._process(UpstreamInput.READY)
        self._client = client
        self._delay = RETRY_INITIAL_DELAY
        self.connections_made += 1
        self._mirroring = False
        self._ext_keys = False
        self._decoded = []
        tls = client.tls_info
        security = (f"VeNCrypt {client.connection.subtype.label}, {tls.protocol_version}"
                    if tls is not None
                    else SECURITY_LABELS.get(client.connection.security_type, "?"))
        self._log_change("connected", f"{init.width}x{init.height} '{init.name}' ({security})")
        client.closed.addCallback(self._lost, client)
        client.send(m.SetPixelFormat(UPSTREAM_PIXEL_FORMAT), m.SetEncodings(UPSTREAM_ENCODINGS),
                    m.FramebufferUpdateRequest(False, 0, 0, init.width, init.height))
        if self._fixed_name is None:
            self.set_name(init.name)

    def _failed(self, failure) -> None:
        self._attempt = None
        if self.state is not UpstreamState.CONNECTING:
            return
        self._process(UpstreamInput.FAILED)
        self._unavailable(_describe_error(failure))

    def _lost(self, _result, client: RFBClient) -> None:
        if client is not self._client:
            return
        self._client = None
        if self.state is not UpstreamState.CONNECTED:
            return
        self._process(UpstreamInput.LOST)
        error = client.error
        reason = error.message if error is not None else "the server closed the connection"
        self._unavailable(f"connection lost: {reason}")

    def _unavailable(self, reason: str) -> None:
        """Enter (or stay in) the outage: picture, log line, next attempt."""
        if self._mirroring or self.reason != reason:
            self.unavailable_since = self.reactor.seconds()
        self.reason = reason
        self._mirroring = False
        delay = self._delay
        self._delay = min(RETRY_MAX_DELAY, self._delay * RETRY_BACKOFF)
        self._retry_at = self.reactor.seconds() + delay
        self._retry_call = self.reactor.callLater(delay, self._retry)
        self._log_change("unavailable", reason)
        self._show_outage()

    def _retry(self) -> None:
        self._retry_call = None
        self._process(UpstreamInput.RETRY)
        self._connect()

    def _log_change(self, what: str, detail: str) -> None:
        if self._logged == (what, detail):
            return
        self._logged = (what, detail)
        if what == "connected":
            log.info("-screen vnc: upstream {address} connected: {detail}",
                     address=str(self.address), detail=detail)
        else:
            log.warn("-screen vnc: upstream {address} unavailable: {detail}; retrying with"
                     " backoff up to {limit:g} s", address=str(self.address), detail=detail,
                     limit=RETRY_MAX_DELAY)

    # -- the outage picture ------------------------------------------------------------

    def outage_lines(self) -> list[str]:
        """The text of the outage picture, below its title."""
        now = self.reactor.seconds()
        since = datetime.datetime.fromtimestamp(self.unavailable_since, datetime.timezone.utc)
        if self._retry_at is None:
            attempt = "connecting now ..."
        else:
            attempt = f"in {max(0, round(self._retry_at - now))} s"
        return [
            f"server: {self.address}",
            f"reason: {self.reason}",
            f"since: {since:%Y-%m-%d %H:%M:%S} UTC ({_duration(now - self.unavailable_since)})",
            f"next attempt: {attempt} ({self.attempts} made so far)",
            "This connection stays open; the server's screen returns when it is back.",
        ]

    def _show_outage(self) -> None:
        """Replace the framebuffer by the outage picture, at the current size."""
        self._ext_keys = False
        if self.cursor is not None:
            self.set_cursor(None)
        picture = render_outage(self.width, self.height, "Upstream VNC server unavailable",
                                self.outage_lines())
        self.set_framebuffer(picture)
        self._schedule_redraw()

    def _redraw_outage(self) -> None:
        if self._mirroring or self.state is UpstreamState.STOPPED:
            return
        picture = render_outage(self.width, self.height, "Upstream VNC server unavailable",
                                self.outage_lines())
        changed = np.flatnonzero((picture != self._framebuffer).any(axis=(1, 2)))
        if len(changed):
            self._framebuffer[...] = picture
            self.damage(0, int(changed[0]), self.width, int(changed[-1]) + 1 - int(changed[0]))

    def _schedule_redraw(self) -> None:
        if self._redraw_call is None or not self._redraw_call.active():
            self._redraw_call = self.reactor.callLater(OUTAGE_REDRAW_INTERVAL, self._tick)

    def _tick(self) -> None:
        self._redraw_call = None
        if self._mirroring or self.state is UpstreamState.STOPPED:
            return
        self._redraw_outage()
        self._schedule_redraw()

    # -- what the upstream sends ---------------------------------------------------------

    def _on_event(self, event) -> None:
        client = self._client
        if client is None:
            return
        if isinstance(event, RectDecoded):
            if self._mirroring:
                self._decoded.append((event.x, event.y, event.width, event.height))
        elif isinstance(event, UpdateComplete):
            # Damage is reported once the whole update is in, so downstream
            # clients get the upstream's frames whole, never half decoded.
            decoded, self._decoded = self._decoded, []
            for rect in decoded:
                self.damage(*rect)
            if not self._mirroring:
                self._start_mirroring(client)
            fb = client.framebuffer
            client.send(m.FramebufferUpdateRequest(True, 0, 0, fb.width, fb.height))
        elif isinstance(event, DesktopSizeChanged):
            self._resized(client, event)
        elif isinstance(event, CursorChanged):
            h, w = event.rgba.shape[:2]
            self.set_cursor(Cursor(event.rgba, event.hot_x, event.hot_y) if w and h else None)
        elif isinstance(event, DesktopNameChanged):
            if self._fixed_name is None:
                self.set_name(event.name)
        elif isinstance(event, LedStateChanged):
            self.set_led_state(event.state & 7)
        elif isinstance(event, QemuExtendedKeyEventSupported):
            self._ext_keys = True
        elif isinstance(event, m.Bell):
            self.bell()
        elif isinstance(event, m.ServerCutText):
            self.set_clipboard(event.text)

    def _live(self, client: RFBClient) -> np.ndarray:
        """The decoder's pixel values seen as the RGBX framebuffer (no copy)."""
        values = client.framebuffer.values
        return values.view(np.uint8).reshape(values.shape + (4,))

    def _start_mirroring(self, client: RFBClient) -> None:
        """The first complete update: show the upstream's pixels from now on."""
        self._mirroring = True
        if self._redraw_call is not None and self._redraw_call.active():
            self._redraw_call.cancel()
        self._redraw_call = None
        self.set_framebuffer(self._live(client))

    def _resized(self, client: RFBClient, event: DesktopSizeChanged) -> None:
        fb = client.framebuffer
        if not (1 <= fb.width <= MAX_SIDE and 1 <= fb.height <= MAX_SIDE):
            client.abort(RFBClientError(
                "protocol", f"the server resized to {fb.width}x{fb.height}, outside"
                            f" 1x1 .. {MAX_SIDE}x{MAX_SIDE}"))
            return
        if self._mirroring:
            self.set_framebuffer(self._live(client))
        areas = tuple(ScreenArea(*s) for s in event.screens)
        if areas and all(a.width and a.height and a.x + a.width <= fb.width
                         and a.y + a.height <= fb.height for a in areas) \
                and len(areas) <= pseudo.MAX_SCREENS and self._mirroring:
            self.set_layout(areas)

    # -- what the downstream clients send ---------------------------------------------------

    def _upstream(self) -> RFBClient | None:
        if self._client is None or not self._mirroring:
            self.dropped_input += 1
            return None
        return self._client

    def key_event(self, event: KeyEvent) -> None:
        client = self._upstream()
        if client is None:
            return
        if event.keycode is not None and self._ext_keys:
            client.send(m.QEMUExtendedKeyEvent(event.down, event.keysym, event.keycode))
        else:
            client.send(m.KeyEvent(event.down, event.keysym))

    def pointer_event(self, event: PointerEvent) -> None:
        client = self._upstream()
        if client is None:
            return
        fb = client.framebuffer
        client.send(m.PointerEvent(event.buttons, min(event.x, fb.width - 1),
                                   min(event.y, fb.height - 1)))

    def cut_text(self, event: CutTextEvent) -> None:
        client = self._upstream()
        if client is not None:
            client.send(m.ClientCutText(event.text))
