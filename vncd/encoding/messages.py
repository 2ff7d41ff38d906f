# -*- test-case-name: tests.vncd.test_encoding_pseudo -*-
"""Server-to-client messages written after ServerInit, as bytes.

FramebufferUpdate headers, SetColourMapEntries, Bell, ServerCutText,
EndOfContinuousUpdates and ServerFence: the messages
:class:`vncd.updates.ClientUpdates` sends.  Pure functions of their
arguments; no state, no I/O.
"""

from __future__ import annotations

import struct
from typing import Sequence

__all__ = [
    "FRAMEBUFFER_UPDATE", "SET_COLOUR_MAP_ENTRIES", "BELL", "SERVER_CUT_TEXT",
    "END_OF_CONTINUOUS_UPDATES", "SERVER_FENCE", "UNKNOWN_RECT_COUNT",
    "FENCE_BLOCK_BEFORE", "FENCE_BLOCK_AFTER", "FENCE_SYNC_NEXT", "FENCE_REQUEST",
    "FENCE_FLAGS_SUPPORTED", "MAX_FENCE_PAYLOAD",
    "framebuffer_update", "set_colour_map_entries", "bell", "server_cut_text",
    "end_of_continuous_updates", "server_fence",
]

FRAMEBUFFER_UPDATE = 0
SET_COLOUR_MAP_ENTRIES = 1
BELL = 2
SERVER_CUT_TEXT = 3
END_OF_CONTINUOUS_UPDATES = 150
SERVER_FENCE = 248

#: Rectangle count that, with LastRect, means "until the LastRect".
UNKNOWN_RECT_COUNT = 0xFFFF

FENCE_BLOCK_BEFORE = 1 << 0
FENCE_BLOCK_AFTER = 1 << 1
FENCE_SYNC_NEXT = 1 << 2
FENCE_REQUEST = 1 << 31
FENCE_FLAGS_SUPPORTED = FENCE_BLOCK_BEFORE | FENCE_BLOCK_AFTER | FENCE_SYNC_NEXT | FENCE_REQUEST

#: Fence payloads are at most 64 bytes (rfbproto).
MAX_FENCE_PAYLOAD = 64


def framebuffer_update(count: int) -> bytes:
    """The 4-byte FramebufferUpdate header announcing ``count`` rectangles."""
    return struct.pack(">BxH", FRAMEBUFFER_UPDATE, count)


def set_colour_map_entries(first: int, colours: Sequence[tuple[int, int, int]]) -> bytes:
    """``colours`` are (red, green, blue) 16-bit intensities."""
    return (struct.pack(">BxHH", SET_COLOUR_MAP_ENTRIES, first, len(colours))
            + b"".join(struct.pack(">HHH", *c) for c in colours))


def bell() -> bytes:
    return bytes([BELL])


def server_cut_text(text: bytes) -> bytes:
    """``text`` is Latin-1 bytes, newlines as ``\\n``."""
    return struct.pack(">BxxxI", SERVER_CUT_TEXT, len(text)) + text


def end_of_continuous_updates() -> bytes:
    return bytes([END_OF_CONTINUOUS_UPDATES])


def server_fence(flags: int, payload: bytes) -> bytes:
    if flags & ~FENCE_FLAGS_SUPPORTED or len(payload) > MAX_FENCE_PAYLOAD:
        raise ValueError("fence flags or payload out of range")
    return struct.pack(">BxxxIB", SERVER_FENCE, flags, len(payload)) + payload
