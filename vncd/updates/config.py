"""Limits, constants and tunables of the update engine.

The module constants are the defaults; :class:`UpdateConfig` carries the
tunables a display and its clients use, so tests can shrink them.
:class:`Sink` is the interface a client's bytes are written to.

Knows nothing else: no pixels, no clients, no encodings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vncd.screens.base import TILE as SCREEN_TILE

__all__ = [
    "TILE", "DEFAULT_COMPRESS_LEVEL", "DEFAULT_ZLIB_LEVEL", "OUTPUT_HIGH_WATER", "CACHE_BYTES",
    "MAX_QUEUED_MESSAGES", "MAX_RESIZE_REPLIES", "MAX_QUEUED_INPUT", "HOT_WINDOW",
    "LOSSLESS_REFRESH_DELAY", "MAX_ENCODINGS", "MAX_RUN_TILES", "MAX_PARAMS_IDS",
    "MAX_PLANS", "JPEG_QUALITY", "JPEG_SUBSAMPLING", "UpdateConfig", "Sink",
]

#: Side of the square tiles in which damage is found and tracked (part
#: of the Screen API: screens may report damage in these squares).
TILE = SCREEN_TILE

#: The server's default zlib level when a client names none: level 1 is
#: within a few per cent of level 6's size at half the CPU time (neatvnc
#: made the same choice for 60 fps streaming).
DEFAULT_COMPRESS_LEVEL = 1

#: The Zlib encoding's default level when a client names none.  Zlib
#: deflates whole 32-bit pixels, where levels 1-3 (no lazy matching) leave
#: 1080p frames 10-11 % larger than libvncserver's default (level 5); level
#: 4, the first with lazy matching, is 0.89 of level 1's size at about 1.6x
#: its CPU -- still under x11vnc's CPU for the same screens.  ZRLE and Tight
#: keep level 1: their tile and palette coding already does that work.
DEFAULT_ZLIB_LEVEL = 4

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
    default_zlib_level: int = DEFAULT_ZLIB_LEVEL
    max_queued_messages: int = MAX_QUEUED_MESSAGES
    max_resize_replies: int = MAX_RESIZE_REPLIES
    hot_window: float = HOT_WINDOW
    lossless_refresh_delay: float = LOSSLESS_REFRESH_DELAY
    max_queued_input: int = MAX_QUEUED_INPUT


class Sink(Protocol):
    """Where a client's bytes go (the protocol layer's side of the connection)."""

    def write(self, data: bytes) -> None: ...

    def flush(self) -> None:
        """Hand what :meth:`write` took so far to the connection.

        The messages of one pass (an update's header, rectangles and
        pseudo-rectangles, a bell ...) are written one by one and flushed
        together, so that they leave in as few sends as the connection
        allows rather than one small segment each."""

    def output_buffered(self) -> int: ...

    def close(self, reason: str) -> None: ...
