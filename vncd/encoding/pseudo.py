# -*- test-case-name: tests.vncd.test_encoding_pseudo -*-
"""Pseudo-encoding rectangles: what the server tells a client besides pixels.

DesktopSize, ExtendedDesktopSize, DesktopName, Cursor, LastRect, QEMU
extended key event and QEMU LED state, each as the bytes of one
FramebufferUpdate rectangle (header included).  Knows nothing about
connections or screens: callers pass plain values.
"""

from __future__ import annotations

import struct
from typing import Iterable

import numpy as np

from vncd.encoding import (CURSOR, DESKTOP_NAME, DESKTOP_SIZE, EXTENDED_DESKTOP_SIZE,
                           LAST_RECT, QEMU_EXTENDED_KEY_EVENT, QEMU_LED_STATE, rect_header)
from vncd.encoding.convert import converter_for
from vncd.pixels import PixelFormat

__all__ = [
    "desktop_size", "extended_desktop_size", "desktop_name", "cursor",
    "last_rect", "qemu_extended_key_event", "led_state", "cursor_mask",
    "REASON_SERVER", "REASON_CLIENT", "REASON_OTHER_CLIENT",
    "STATUS_OK", "STATUS_PROHIBITED", "STATUS_OUT_OF_RESOURCES", "STATUS_INVALID_LAYOUT",
    "MAX_SCREENS", "CURSOR_ALPHA_THRESHOLD",
]

# ExtendedDesktopSize x-position: why the layout changed.
REASON_SERVER = 0
REASON_CLIENT = 1
REASON_OTHER_CLIENT = 2

# ExtendedDesktopSize y-position: the result of a client's request.
STATUS_OK = 0
STATUS_PROHIBITED = 1
STATUS_OUT_OF_RESOURCES = 2
STATUS_INVALID_LAYOUT = 3

#: Screens in one layout (the count is one byte).
MAX_SCREENS = 255

#: Cursor pixels at least this opaque are "valid" in the 1-bit mask.
CURSOR_ALPHA_THRESHOLD = 128

_SCREEN = struct.Struct(">IHHHHI")


def desktop_size(width: int, height: int) -> bytes:
    return rect_header(0, 0, width, height, DESKTOP_SIZE)


def extended_desktop_size(reason: int, status: int, width: int, height: int,
                          screens: Iterable[tuple[int, int, int, int, int, int]]) -> bytes:
    """``screens`` are ``(id, x, y, width, height, flags)`` tuples."""
    screens = list(screens)
    if len(screens) > MAX_SCREENS:
        raise ValueError(f"{len(screens)} screens do not fit one layout")
    body = b"".join(_SCREEN.pack(*s) for s in screens)
    return (rect_header(reason, status, width, height, EXTENDED_DESKTOP_SIZE)
            + struct.pack(">B3x", len(screens)) + body)


def desktop_name(name: str) -> bytes:
    data = name.encode("utf-8")
    return rect_header(0, 0, 0, 0, DESKTOP_NAME) + struct.pack(">I", len(data)) + data


def cursor_mask(alpha: np.ndarray) -> bytes:
    """The 1-bit validity mask of a cursor, rows padded to whole bytes."""
    return np.packbits(alpha >= CURSOR_ALPHA_THRESHOLD, axis=1).tobytes()


def cursor(rgba: np.ndarray, hot_x: int, hot_y: int, pf: PixelFormat) -> bytes:
    """A Cursor rectangle: ``rgba`` is ``(h, w, 4)`` uint8 with alpha last.

    A 0x0 cursor (an empty array) tells the client to draw no cursor.
    """
    h, w = rgba.shape[:2]
    head = rect_header(hot_x, hot_y, w, h, CURSOR)
    if w == 0 or h == 0:
        return head
    pixels = converter_for(pf).raw(rgba)
    return head + pixels + cursor_mask(rgba[..., 3])


def last_rect() -> bytes:
    return rect_header(0, 0, 0, 0, LAST_RECT)


def qemu_extended_key_event() -> bytes:
    """The announcement that the server accepts QEMU extended key events."""
    return rect_header(0, 0, 0, 0, QEMU_EXTENDED_KEY_EVENT)


def led_state(state: int) -> bytes:
    """QEMU LED state: bit 0 Scroll Lock, bit 1 Num Lock, bit 2 Caps Lock."""
    return rect_header(0, 0, 0, 0, QEMU_LED_STATE) + bytes([state & 0x07])
