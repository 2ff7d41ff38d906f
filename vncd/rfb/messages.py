# -*- test-case-name: tests.vncd.test_rfb_messages -*-
"""RFB messages after initialisation: wire layout, parsing with limits, encoding.

Client-to-server messages are frozen dataclasses validated in their
constructors; :func:`parse_client_message` reads one from the front of a
buffer (or says it needs more bytes) and :meth:`encode` writes it, so
the server parses exactly what the client in :mod:`vncd.rfb.client`
sends.  The few fixed-layout server-to-client messages the client parses
(Bell, SetColourMapEntries, ServerCutText, EndOfContinuousUpdates,
ServerFence) live here too; FramebufferUpdate rectangles are decoded in
:mod:`vncd.rfb.client`.

Every variable-length field is checked against :class:`~vncd.rfb.limits.Limits`
as soon as its length is known, before the payload is waited for.

This module knows nothing about sockets, TLS or Twisted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union

from vncd.encoding import messages as server_wire
from vncd.pixels import PixelFormat, PixelFormatError
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.events import NEED_DATA, Sentinel
from vncd.rfb.limits import MAX_FENCE_PAYLOAD, Limits

__all__ = [
    "ClientMessageType", "SERVER_PARSERS", "SetPixelFormat", "SetEncodings",
    "FramebufferUpdateRequest", "KeyEvent", "PointerEvent", "ClientCutText", "QEMUExtendedKeyEvent",
    "EnableContinuousUpdates", "ClientFence", "Screen", "SetDesktopSize",
    "ClientMessage", "parse_client_message",
    "Bell", "SetColourMapEntries", "ServerCutText", "EndOfContinuousUpdates",
    "ServerFence", "encode_server_init", "parse_server_init_header",
]


class ClientMessageType:
    SET_PIXEL_FORMAT = 0
    SET_ENCODINGS = 2
    FRAMEBUFFER_UPDATE_REQUEST = 3
    KEY_EVENT = 4
    POINTER_EVENT = 5
    CLIENT_CUT_TEXT = 6
    ENABLE_CONTINUOUS_UPDATES = 150
    CLIENT_FENCE = 248
    XVP = 250
    SET_DESKTOP_SIZE = 251
    QEMU = 255


#: QEMU client message (type 255) sub-types.
QEMU_EXT_KEY_EVENT = 0
QEMU_AUDIO = 1


def _u16(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} {value} does not fit in 16 bits")


def _u32(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} {value} does not fit in 32 bits")


@dataclass(frozen=True)
class SetPixelFormat:
    pixel_format: PixelFormat

    def encode(self) -> bytes:
        return bytes([ClientMessageType.SET_PIXEL_FORMAT, 0, 0, 0]) + self.pixel_format.to_bytes()


@dataclass(frozen=True)
class SetEncodings:
    encodings: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "encodings", tuple(self.encodings))
        if len(self.encodings) > 0xFFFF:
            raise ValueError("too many encodings for one message")
        for enc in self.encodings:
            if not -(1 << 31) <= enc < (1 << 31):
                raise ValueError(f"encoding {enc} does not fit in 32 bits")

    def encode(self) -> bytes:
        n = len(self.encodings)
        return (struct.pack(">BxH", ClientMessageType.SET_ENCODINGS, n)
                + struct.pack(f">{n}i", *self.encodings))


class _AreaMessage:
    """A flag and a rectangle: FramebufferUpdateRequest, EnableContinuousUpdates."""

    #: The message type, and the name of the flag field (U8 after the type).
    TYPE: int
    FLAG: str

    def __post_init__(self) -> None:
        for name in ("x", "y", "width", "height"):
            _u16(name, getattr(self, name))

    def encode(self) -> bytes:
        return struct.pack(">BBHHHH", self.TYPE, int(getattr(self, self.FLAG)),
                           self.x, self.y, self.width, self.height)


@dataclass(frozen=True)
class FramebufferUpdateRequest(_AreaMessage):
    TYPE = ClientMessageType.FRAMEBUFFER_UPDATE_REQUEST
    FLAG = "incremental"

    incremental: bool
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class KeyEvent:
    down: bool
    keysym: int

    def __post_init__(self) -> None:
        _u32("keysym", self.keysym)

    def encode(self) -> bytes:
        return struct.pack(">BBxxI", ClientMessageType.KEY_EVENT, int(self.down), self.keysym)


@dataclass(frozen=True)
class PointerEvent:
    buttons: int
    x: int
    y: int

    def __post_init__(self) -> None:
        if not 0 <= self.buttons <= 0xFF:
            raise ValueError(f"button mask {self.buttons} does not fit in 8 bits")
        _u16("x", self.x)
        _u16("y", self.y)

    def encode(self) -> bytes:
        return struct.pack(">BBHH", ClientMessageType.POINTER_EVENT, self.buttons, self.x, self.y)


@dataclass(frozen=True)
class ClientCutText:
    #: Latin-1 text, as RFB defines it (not decoded here).
    text: bytes

    def encode(self) -> bytes:
        return struct.pack(">BxxxI", ClientMessageType.CLIENT_CUT_TEXT, len(self.text)) + self.text


@dataclass(frozen=True)
class QEMUExtendedKeyEvent:
    down: bool
    keysym: int
    #: XT scancode (QEMU's "QNUM" numbering).
    keycode: int

    def __post_init__(self) -> None:
        _u32("keysym", self.keysym)
        _u32("keycode", self.keycode)

    def encode(self) -> bytes:
        return struct.pack(">BBHII", ClientMessageType.QEMU, QEMU_EXT_KEY_EVENT,
                           int(self.down), self.keysym, self.keycode)


@dataclass(frozen=True)
class EnableContinuousUpdates(_AreaMessage):
    TYPE = ClientMessageType.ENABLE_CONTINUOUS_UPDATES
    FLAG = "enable"

    enable: bool
    x: int
    y: int
    width: int
    height: int


def _check_fence(flags: int, payload: bytes) -> None:
    _u32("fence flags", flags)
    if len(payload) > MAX_FENCE_PAYLOAD:
        raise ValueError(f"a fence payload is at most {MAX_FENCE_PAYLOAD} bytes")


@dataclass(frozen=True)
class ClientFence:
    flags: int
    payload: bytes

    def __post_init__(self) -> None:
        _check_fence(self.flags, self.payload)

    def encode(self) -> bytes:
        head = struct.pack(">BxxxIB", ClientMessageType.CLIENT_FENCE, self.flags,
                           len(self.payload))
        return head + self.payload


@dataclass(frozen=True)
class Screen:
    """One screen of an ExtendedDesktopSize layout."""

    id: int
    x: int
    y: int
    width: int
    height: int
    flags: int

    def __post_init__(self) -> None:
        _u32("screen id", self.id)
        _u32("screen flags", self.flags)
        for name in ("x", "y", "width", "height"):
            _u16(name, getattr(self, name))

    def encode(self) -> bytes:
        return struct.pack(">IHHHHI", self.id, self.x, self.y, self.width, self.height, self.flags)

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        return (self.id, self.x, self.y, self.width, self.height, self.flags)


@dataclass(frozen=True)
class SetDesktopSize:
    width: int
    height: int
    screens: tuple[Screen, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "screens", tuple(self.screens))
        _u16("width", self.width)
        _u16("height", self.height)
        if len(self.screens) > 0xFF:
            raise ValueError("at most 255 screens fit in SetDesktopSize")

    def encode(self) -> bytes:
        return (struct.pack(">BxHHBx", ClientMessageType.SET_DESKTOP_SIZE, self.width,
                            self.height, len(self.screens))
                + b"".join(s.encode() for s in self.screens))


ClientMessage = Union[
    SetPixelFormat, SetEncodings, FramebufferUpdateRequest, KeyEvent, PointerEvent,
    ClientCutText, QEMUExtendedKeyEvent, EnableContinuousUpdates, ClientFence,
    SetDesktopSize,
]


# -- parsing client messages ---------------------------------------------

def _parse_set_pixel_format(buf, limits):
    if len(buf) < 20:
        return NEED_DATA
    try:
        pf = PixelFormat.from_bytes(bytes(buf[4:20]))
    except PixelFormatError as e:
        raise RemoteProtocolError(f"SetPixelFormat: {e}") from None
    return SetPixelFormat(pf), 20


def _parse_set_encodings(buf, limits):
    if len(buf) < 4:
        return NEED_DATA
    (count,) = struct.unpack_from(">H", buf, 2)
    if count > limits.max_encodings:
        raise RemoteProtocolError(
            f"SetEncodings lists {count} encodings; the limit is {limits.max_encodings}")
    size = 4 + 4 * count
    if len(buf) < size:
        return NEED_DATA
    return SetEncodings(struct.unpack_from(f">{count}i", buf, 4)), size


def _parse_update_request(buf, limits):
    if len(buf) < 10:
        return NEED_DATA
    _, incremental, x, y, w, h = struct.unpack_from(">BBHHHH", buf)
    return FramebufferUpdateRequest(bool(incremental), x, y, w, h), 10


def _parse_key_event(buf, limits):
    if len(buf) < 8:
        return NEED_DATA
    _, down, keysym = struct.unpack_from(">BBxxI", buf)
    return KeyEvent(bool(down), keysym), 8


def _parse_pointer_event(buf, limits):
    if len(buf) < 6:
        return NEED_DATA
    _, buttons, x, y = struct.unpack_from(">BBHH", buf)
    return PointerEvent(buttons, x, y), 6


def _parse_cut_text_body(buf, what: str, limit: int):
    """Shared by ClientCutText and ServerCutText (identical layouts):
    ``(text, size)`` or NEED_DATA; the length is checked before the payload."""
    if len(buf) < 8:
        return NEED_DATA
    (length,) = struct.unpack_from(">i", buf, 4)
    if length < 0:
        raise RemoteProtocolError(
            f"{what}: extended clipboard message, but the extended clipboard"
            " was not negotiated")
    if length > limit:
        raise RemoteProtocolError(f"{what} of {length} bytes exceeds the limit of {limit}")
    if len(buf) < 8 + length:
        return NEED_DATA
    return bytes(buf[8:8 + length]), 8 + length


def _parse_cut_text(buf, limits):
    parsed = _parse_cut_text_body(buf, "ClientCutText", limits.max_cut_text)
    if parsed is NEED_DATA:
        return NEED_DATA
    text, size = parsed
    return ClientCutText(text), size


def _parse_continuous_updates(buf, limits):
    if len(buf) < 10:
        return NEED_DATA
    _, enable, x, y, w, h = struct.unpack_from(">BBHHHH", buf)
    return EnableContinuousUpdates(bool(enable), x, y, w, h), 10


def _parse_fence_body(buf, what):
    """Shared by ClientFence and ServerFence (identical layouts)."""
    if len(buf) < 9:
        return NEED_DATA
    flags, length = struct.unpack_from(">IB", buf, 4)
    if length > MAX_FENCE_PAYLOAD:
        raise RemoteProtocolError(
            f"{what} payload of {length} bytes exceeds the protocol's {MAX_FENCE_PAYLOAD}")
    if len(buf) < 9 + length:
        return NEED_DATA
    return flags, bytes(buf[9:9 + length]), 9 + length


def _parse_client_fence(buf, limits):
    parsed = _parse_fence_body(buf, "ClientFence")
    if parsed is NEED_DATA:
        return NEED_DATA
    flags, payload, size = parsed
    return ClientFence(flags, payload), size


def _parse_set_desktop_size(buf, limits):
    if len(buf) < 8:
        return NEED_DATA
    _, w, h, count = struct.unpack_from(">BxHHBx", buf)
    size = 8 + 16 * count
    if len(buf) < size:
        return NEED_DATA
    screens = tuple(Screen(*struct.unpack_from(">IHHHHI", buf, 8 + 16 * i))
                    for i in range(count))
    return SetDesktopSize(w, h, screens), size


def _parse_qemu(buf, limits):
    if len(buf) < 2:
        return NEED_DATA
    sub = buf[1]
    if sub == QEMU_EXT_KEY_EVENT:
        if len(buf) < 12:
            return NEED_DATA
        _, _, down, keysym, keycode = struct.unpack_from(">BBHII", buf)
        return QEMUExtendedKeyEvent(bool(down), keysym, keycode), 12
    if sub == QEMU_AUDIO:
        raise RemoteProtocolError("QEMU audio message, but audio was not negotiated")
    raise RemoteProtocolError(f"unknown QEMU client message {sub}")


def _parse_xvp(buf, limits):
    raise RemoteProtocolError("xvp message, but power control is not enabled")


_CLIENT_PARSERS = {
    ClientMessageType.SET_PIXEL_FORMAT: _parse_set_pixel_format,
    ClientMessageType.SET_ENCODINGS: _parse_set_encodings,
    ClientMessageType.FRAMEBUFFER_UPDATE_REQUEST: _parse_update_request,
    ClientMessageType.KEY_EVENT: _parse_key_event,
    ClientMessageType.POINTER_EVENT: _parse_pointer_event,
    ClientMessageType.CLIENT_CUT_TEXT: _parse_cut_text,
    ClientMessageType.ENABLE_CONTINUOUS_UPDATES: _parse_continuous_updates,
    ClientMessageType.CLIENT_FENCE: _parse_client_fence,
    ClientMessageType.XVP: _parse_xvp,
    ClientMessageType.SET_DESKTOP_SIZE: _parse_set_desktop_size,
    ClientMessageType.QEMU: _parse_qemu,
}


def parse_client_message(buf, limits: Limits) -> tuple[ClientMessage, int] | Sentinel:
    """Parse one client message from the start of ``buf``.

    Returns ``(message, bytes consumed)``, or :data:`NEED_DATA`; raises
    :class:`RemoteProtocolError` for anything malformed or over a limit.
    """
    if not buf:
        return NEED_DATA
    parser = _CLIENT_PARSERS.get(buf[0])
    if parser is None:
        raise RemoteProtocolError(f"unknown client message type {buf[0]}")
    return parser(buf, limits)


# -- server messages the client parses -------------------------------------

@dataclass(frozen=True)
class Bell:
    def encode(self) -> bytes:
        return server_wire.bell()


@dataclass(frozen=True)
class SetColourMapEntries:
    first: int
    #: (red, green, blue) 16-bit intensities.
    colours: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "colours", tuple(tuple(c) for c in self.colours))
        _u16("first colour", self.first)
        if len(self.colours) > 0xFFFF:
            raise ValueError("too many colours for one message")

    def encode(self) -> bytes:
        return server_wire.set_colour_map_entries(self.first, self.colours)


@dataclass(frozen=True)
class ServerCutText:
    text: bytes

    def encode(self) -> bytes:
        return server_wire.server_cut_text(self.text)


@dataclass(frozen=True)
class EndOfContinuousUpdates:
    def encode(self) -> bytes:
        return server_wire.end_of_continuous_updates()


@dataclass(frozen=True)
class ServerFence:
    flags: int
    payload: bytes

    def __post_init__(self) -> None:
        _check_fence(self.flags, self.payload)

    def encode(self) -> bytes:
        return server_wire.server_fence(self.flags, self.payload)


def parse_bell(buf, limits):
    return Bell(), 1


def parse_colour_map_entries(buf, limits):
    if len(buf) < 6:
        return NEED_DATA
    first, count = struct.unpack_from(">HH", buf, 2)
    size = 6 + 6 * count
    if len(buf) < size:
        return NEED_DATA
    colours = tuple(struct.unpack_from(">HHH", buf, 6 + 6 * i) for i in range(count))
    return SetColourMapEntries(first, colours), size


def parse_server_cut_text(buf, limits):
    parsed = _parse_cut_text_body(buf, "ServerCutText", limits.max_server_cut_text)
    if parsed is NEED_DATA:
        return NEED_DATA
    text, size = parsed
    return ServerCutText(text), size


def parse_end_of_continuous_updates(buf, limits):
    return EndOfContinuousUpdates(), 1


def parse_server_fence(buf, limits):
    parsed = _parse_fence_body(buf, "ServerFence")
    if parsed is NEED_DATA:
        return NEED_DATA
    flags, payload, size = parsed
    return ServerFence(flags, payload), size


#: The parser of each fixed-layout server message the client understands
#: (FramebufferUpdate goes to the decoder instead).
SERVER_PARSERS = {
    server_wire.SET_COLOUR_MAP_ENTRIES: parse_colour_map_entries,
    server_wire.BELL: parse_bell,
    server_wire.SERVER_CUT_TEXT: parse_server_cut_text,
    server_wire.END_OF_CONTINUOUS_UPDATES: parse_end_of_continuous_updates,
    server_wire.SERVER_FENCE: parse_server_fence,
}


# -- ServerInit -------------------------------------------------------------

def encode_server_init(width: int, height: int, pixel_format: PixelFormat, name: str,
                       max_name: int) -> bytes:
    """ServerInit; the name is UTF-8 (rfbproto's recommendation), cut to at most
    ``max_name`` bytes on a character boundary."""
    _u16("framebuffer width", width)
    _u16("framebuffer height", height)
    raw = name.encode("utf-8")[:max_name].decode("utf-8", "ignore").encode("utf-8")
    return (struct.pack(">HH", width, height) + pixel_format.to_bytes()
            + struct.pack(">I", len(raw)) + raw)


def parse_server_init_header(buf) -> tuple[int, int, bytes, int] | Sentinel:
    """``(width, height, pixel-format bytes, name length)`` from ServerInit's 24-byte head."""
    if len(buf) < 24:
        return NEED_DATA
    width, height = struct.unpack_from(">HH", buf)
    (name_length,) = struct.unpack_from(">I", buf, 20)
    return width, height, bytes(buf[4:20]), name_length
