"""An in-memory served display: the RFB server core, a screen and a decoding client.

:class:`Served` joins what :mod:`vncd.server` joins over a socket --
a :class:`~vncd.rfb.server.ServerConnection`, a
:class:`~vncd.updates.Display` on an :class:`~vncd.screens.array.ArrayScreen`
(resizable by clients), and the client's
:class:`~vncd.updates.ClientUpdates` -- with the same message dispatch
(:data:`vncd.server._DISPATCH`), but on a fake clock and with no
socket.  Everything the server writes is read back by an *observer*: the
project's own :class:`~vncd.rfb.client.ClientConnection`, told of every
SetPixelFormat at the point of the stream where the server applies it.
A server stream the observer cannot decode is reported in
:attr:`Served.bad_output` (the server sent something invalid, or the
client library cannot read what the server sends: a bug either way).

Used by the fuzz harness ``rfb_server`` and by the state-machine tests.
Nothing here touches sockets or a reactor.
"""

from __future__ import annotations

import struct

from twisted.internet.task import Clock

from vncd.encoding.decode import DecodeError
from vncd.info import ConnectionInfo
from vncd.pixels import DEFAULT_FORMAT
from vncd.rfb import messages as msg
from vncd.rfb.client import ClientConnection, ClientSecurity
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.events import (
    CLOSED, NEED_DATA, PAUSED, AuthenticationFailed, ClientInitReceived, Refused,
)
from vncd.rfb.security import SecurityConfig, auth_for
from vncd.rfb.server import PROTOCOL_VERSION, ServerConnection
from vncd.screens.array import ArrayScreen
from vncd.server import _DISPATCH
from vncd.updates import Display, UpdateConfig

__all__ = ["Served", "PASSWORD", "CHALLENGE", "handshake"]

#: The VNC password of a served display with ``password=True``.
PASSWORD = b"fuzzpass"
#: The fixed DES challenge the served server uses (tests need a known response).
CHALLENGE = bytes(range(16))

#: The most server-side steps (clock advances, observer rounds) one feed runs.
MAX_SETTLE_ROUNDS = 16

#: The largest screen a client may resize the served screen to, in pixels.
#: The screen's ``on_resize`` is the embedder's policy; accepting anything
#: up to the 16384x16384 screen limit lets every fuzz input allocate
#: hundreds of megabytes, which the process frees only when the cyclic
#: garbage collector runs (libFuzzer stopped at 2 GB).
MAX_RESIZE_PIXELS = 1024 * 768


def handshake(password: bool, shared: bool = True) -> bytes:
    """What a correct RFB 3.8 client sends up to and including ClientInit."""
    from vncd.rfb import vncauth
    from vncd.rfb.security import SecurityType
    out = PROTOCOL_VERSION
    if password:
        out += bytes([SecurityType.VNC]) + vncauth.challenge_response(PASSWORD, CHALLENGE)
    else:
        out += bytes([SecurityType.NONE])
    return out + bytes([1 if shared else 0])


class _Sink:
    """The connection side :class:`ClientUpdates` writes to."""

    def __init__(self, served: "Served") -> None:
        self.served = served

    def write(self, data: bytes) -> None:
        self.served._wire(data)

    def flush(self) -> None:
        pass

    def output_buffered(self) -> int:
        return self.served.buffered

    def close(self, reason: str) -> None:
        self.served.dropped = reason


class Served:
    """One client connection to a served ``width`` x ``height`` display.

    :meth:`feed` takes client bytes; the server's answer goes to the
    observer, whose events collect in :attr:`events`.  ``buffered`` is what
    the sink reports as queued output (set it to stall the client).
    """

    def __init__(self, width: int = 64, height: int = 48, *, password: bool = False,
                 config: UpdateConfig | None = None, observe: bool = True) -> None:
        self.clock = Clock()
        self.screen = ArrayScreen(width, height, name="served", on_resize=self._resize_ok,
                                  reactor=self.clock)
        self.display = Display(self.screen, reactor=self.clock, config=config)
        security = SecurityConfig(auth_for(None, password), PASSWORD if password else None)
        self.conn = ServerConnection(security, random_bytes=lambda n: CHALLENGE[:n])
        self.observe = observe
        self.observer: ClientConnection | None = None
        self.info = ConnectionInfo(peer="127.0.0.1:5000")
        self.updates = None
        self.sink = _Sink(self)
        self.buffered = 0
        #: Every event the server core reported, in order.
        self.server_events: list[object] = []
        #: The client messages dispatched to ClientUpdates, in order.
        self.messages: list[object] = []
        #: Every observer event (decoded server messages) in order.
        self.events: list[object] = []
        #: All bytes the server wrote after ServerInit.
        self.output = bytearray()
        #: The protocol error that ended the connection, if any.
        self.error: RemoteProtocolError | None = None
        #: Why ClientUpdates dropped the client, if it did.
        self.dropped: str | None = None
        #: Why the observer could not read the server's output, if it could not.
        self.bad_output: str | None = None
        self.finished = False
        self.accept_resize = True

    # -- client bytes in ------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Deliver client bytes and let the server act on them."""
        if self.finished:
            return
        self.conn.receive_data(data)
        self._pump()

    def settle(self) -> None:
        """Run the display's pending work (compare-and-send ticks) and read its output."""
        for _ in range(MAX_SETTLE_ROUNDS):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(0)
            if not any(c.getTime() <= self.clock.seconds() for c in self.clock.getDelayedCalls()):
                break
        self._observe()

    def writable(self) -> None:
        """The connection's output drained (after ``buffered`` went down)."""
        if self.updates is not None and not self.finished:
            self.updates.writable()
            self._observe()

    @property
    def running(self) -> bool:
        return self.updates is not None and not self.finished

    # -- the server side ------------------------------------------------------------

    def _pump(self) -> None:
        while not self.finished:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as e:
                self.error = e
                self._finish()
                return
            if event is NEED_DATA or event is PAUSED:
                break
            if event is CLOSED:
                self._finish()
                return
            self.server_events.append(event)
            if isinstance(event, (AuthenticationFailed, Refused)):
                self._finish()
                return
            if isinstance(event, ClientInitReceived):
                self._server_init()
            elif type(event) in _DISPATCH:
                self._dispatch(event)
            if self.dropped is not None:
                self._finish()
                return
        self._flush_conn()
        self.settle()

    def _server_init(self) -> None:
        self._flush_conn(handshake=True)
        d = self.display
        self.conn.send_server_init(d.width, d.height, DEFAULT_FORMAT, d.name)
        if self.observe:
            self.observer = ClientConnection(ClientSecurity())
            # The observer joins at ServerInit: give it a 3.8 None handshake.
            self.observer.receive_data(PROTOCOL_VERSION + b"\x01\x01" + struct.pack(">I", 0))
        self._flush_conn()
        self.display.register(self.info)
        self.updates = d.attach(self.info, self.sink)

    def _dispatch(self, message) -> None:
        self.messages.append(message)
        if isinstance(message, msg.SetPixelFormat):
            # Everything before this message was encoded in the old format.
            self._observe()
            if self.observer is not None and self.observer.framebuffer is not None:
                self.observer.framebuffer.set_pixel_format(message.pixel_format)
        _DISPATCH[type(message)](self.updates, message, self)

    def clip(self, x: int, y: int, width: int, height: int) -> tuple[int, int, int, int]:
        """A requested rectangle clipped to the display's size (as vncd.server does)."""
        dw, dh = self.display.width, self.display.height
        x, y = min(x, dw), min(y, dh)
        return x, y, min(width, dw - x), min(height, dh - y)

    def _resize_ok(self, width: int, height: int) -> bool:
        return self.accept_resize and width * height <= MAX_RESIZE_PIXELS

    def _flush_conn(self, handshake: bool = False) -> None:
        data = self.conn.data_to_send()
        if data and not handshake:
            self._wire(data)

    def _wire(self, data: bytes) -> None:
        self.output += data
        if self.observer is not None and self.bad_output is None:
            self.observer.receive_data(data)

    def _observe(self) -> None:
        observer = self.observer
        while observer is not None and self.bad_output is None:
            try:
                event = observer.next_event()
            except (RemoteProtocolError, DecodeError) as e:
                self.bad_output = f"{type(e).__name__}: {e}"
                return
            if event is NEED_DATA or event is PAUSED or event is CLOSED:
                return
            self.events.append(event)

    def _finish(self) -> None:
        self._flush_conn()
        self.finished = True
        if self.updates is not None:
            self.updates.close()
        self.display.unregister(self.info)
        self._observe()

    def close(self) -> None:
        """End the connection and stop the display (its timers are cancelled)."""
        if not self.finished:
            self._finish()
        self.display.close()
        for call in self.clock.getDelayedCalls():
            call.cancel()
