# -*- test-case-name: tests.vncd.test_updates -*-
"""Framebuffer updates: damage tracking, per-client scheduling, shared encoding.

:class:`Display` watches one :class:`~vncd.screens.base.Screen`.  It keeps
its own copy of the frame (the *snapshot*) and, whenever the screen reports
damage, compares the damaged area with the snapshot in 64x64 tiles; tiles
that really changed become dirty for every client and the snapshot is
updated.  Each change bumps the display's *generation*.

:class:`ClientUpdates` is one client's side: the protocol layer calls its
methods for every client message after ServerInit (SetPixelFormat,
SetEncodings, FramebufferUpdateRequest, ...), and it writes every
server-to-client message from then on to the connection's *sink*
(``write(bytes)``, ``output_buffered() -> int``, ``close(reason)``).

What a client is sent, and when:

* A client's dirty region is a boolean tile mask: new damage is OR-ed
  in, so a client that does not keep up gets the latest pixels of the
  union of what changed -- coalesced, never queued.
* An update is written only when the client has asked for one (a
  FramebufferUpdateRequest, or continuous updates), only when the
  connection's queued output is below :attr:`UpdateConfig.high_water`,
  and answers every request received so far.  An incremental request with
  nothing dirty waits.  The protocol layer calls
  :meth:`ClientUpdates.writable` when the output drains.
* Requested areas are widened to whole tiles (clients keep the whole
  framebuffer, so a few extra pixels are harmless and a partly requested
  tile can never be resent forever).
* Dirty tiles are sent as horizontal runs within one tile row (at most
  2048 pixels wide, Tight's limit).  Runs are cut the same way for every
  client, so clients with the same dirty tiles ask for the same
  rectangles, and :class:`EncodeCache` encodes each rectangle once per
  (generation, rectangle, encoding, parameters) for all of them.
* The rectangles of one update that the cache does not hold are encoded
  together: for Zlib and Tight, whose work mostly releases the GIL, whole
  bands are spread over the shared thread pool
  (:func:`encode_many`); the cache is looked up and filled, and the bytes
  written in plan order, on the calling (reactor) thread only.
* Encoding choice: the client's first encoding that vncd can produce,
  except that Zlib gives way to Tight or ZRLE when the client lists one of
  them too (as QEMU prefers ZRLE to Zlib); Raw when nothing fits.
* Pseudo-encodings: DesktopSize / ExtendedDesktopSize (an update of
  their own, as rfbproto requires, followed at once by the pixels without
  waiting for another request: every non-incremental request of an
  ExtendedDesktopSize client gets the layout and then the pixels, and a
  resize is followed by the whole new screen -- QEMU's order), Cursor,
  DesktopName, QEMU LED state, QEMU extended key event (announced when
  first listed), LastRect, and the compression / JPEG quality /
  subsampling levels.
* Lossy: with ``lossy=True`` and a client that sent a JPEG quality level,
  Tight may send full-colour areas as JPEG.  By default (adaptive) only
  tiles that keep changing ("hot": changed twice within
  :attr:`UpdateConfig.hot_window`) are sent lossy, and once such a tile
  has been still for :attr:`UpdateConfig.lossless_refresh_delay` it is
  resent losslessly.  With ``non_adaptive=True`` every full-colour area
  may be JPEG and nothing is refreshed (QEMU's ``non-adaptive``).
* Fences and continuous updates follow TigerVNC: a server fence request
  announces fence support, EndOfContinuousUpdates announces continuous
  updates, a SyncNext fence is answered after the next message.

Everything is bounded per client: the tile mask, at most one pending
CopyRect, one cut text, one bell, :attr:`UpdateConfig.max_queued_messages`
small control messages and :attr:`UpdateConfig.max_resize_replies`
ExtendedDesktopSize replies; a client exceeding the last two is
disconnected (it sends requests but does not read the answers).

Input goes the other way: key, pointer and clipboard events reach the
screen through the display's :class:`InputPacer`, which spaces key
events ``key-delay-ms`` apart as QEMU does, keeps every event in the
order it was sent, and holds at most :attr:`UpdateConfig.max_queued_input`
of them.

The package's modules, one job each:

* :mod:`~vncd.updates.config` -- limits, constants, :class:`UpdateConfig`, :class:`Sink`.
* :mod:`~vncd.updates.rect` -- :class:`Rect` (pixels) and :class:`TileBox` (tiles).
* :mod:`~vncd.updates.changes` -- :class:`Change`, what a screen reports besides pixels.
* :mod:`~vncd.updates.pending` -- :class:`Pending`, what a client is owed besides pixels.
* :mod:`~vncd.updates.cache` -- :class:`EncodeCache` and parameter numbers.
* :mod:`~vncd.updates.encoders` -- encoder choice; one update's rectangles
  encoded over the shared thread pool.
* :mod:`~vncd.updates.pacing` -- :class:`InputPacer`.
* :mod:`~vncd.updates.display` -- :class:`Display`: snapshot, damage, plans.
* :mod:`~vncd.updates.client` -- :class:`ClientUpdates`: requests, flow control, sending.

The package knows nothing about sockets, TLS or the RFB handshake; it
uses :mod:`vncd.encoding` for bytes and the Screen API for pixels.
"""

from __future__ import annotations

from vncd.updates.cache import EncodeCache, ParamsIds
from vncd.updates.changes import Change
from vncd.updates.client import ClientUpdates
from vncd.updates.config import (
    CACHE_BYTES, DEFAULT_COMPRESS_LEVEL, DEFAULT_ZLIB_LEVEL, HOT_WINDOW, JPEG_QUALITY, JPEG_SUBSAMPLING,
    LOSSLESS_REFRESH_DELAY, MAX_QUEUED_INPUT, MAX_QUEUED_MESSAGES, MAX_RESIZE_REPLIES,
    OUTPUT_HIGH_WATER, TILE, Sink, UpdateConfig,
)
from vncd.updates.display import Display, PlanEntry
from vncd.updates.encoders import ENCODERS, choose_encoding, encode_many
from vncd.updates.pacing import InputPacer
from vncd.updates.pending import Copy, Pending
from vncd.updates.rect import Rect, TileBox

__all__ = [
    "Display", "ClientUpdates", "UpdateConfig", "EncodeCache", "ParamsIds", "InputPacer",
    "Sink", "TILE", "choose_encoding", "encode_many", "ENCODERS", "Rect", "TileBox",
    "Change", "Pending", "Copy", "PlanEntry", "CACHE_BYTES", "DEFAULT_COMPRESS_LEVEL", "DEFAULT_ZLIB_LEVEL",
    "HOT_WINDOW", "JPEG_QUALITY", "JPEG_SUBSAMPLING", "LOSSLESS_REFRESH_DELAY",
    "MAX_QUEUED_INPUT", "MAX_QUEUED_MESSAGES", "MAX_RESIZE_REPLIES", "OUTPUT_HIGH_WATER",
]
