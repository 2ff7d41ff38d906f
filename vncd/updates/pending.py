"""What one client is still to be sent besides dirty pixels: :class:`Pending`.

One small dataclass replaces the dozen flags a client used to carry:
control messages (colour map, bell, cut text, fence replies,
EndOfContinuousUpdates), resize announcements (DesktopSize,
ExtendedDesktopSize replies), pseudo-encoding rectangles (cursor, name,
LED state, QEMU extended key event), a pending CopyRect and whether the
next pixel update must cover the whole screen.

Bounds are enforced by the client (it knows the limits and what to do
when a peer exceeds them); this module only holds the state.  Knows
nothing about encodings, screens or sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from vncd.updates.rect import Rect

__all__ = ["Pending", "Copy"]


class Copy(NamedTuple):
    """A CopyRect due: the client copies ``(src_x, src_y)`` to ``dest``."""

    src_x: int
    src_y: int
    dest: Rect


@dataclass(slots=True)
class Pending:
    """Messages and flags due for one client (all clear: nothing due)."""

    #: SetColourMapEntries (a colour-map pixel format was set).
    colour_map: bool = False
    #: A Bell message.
    bell: bool = False
    #: ServerCutText (the latest text only).
    cut_text: bytes | None = None
    #: Small control messages in order (fence replies, EndOfContinuousUpdates).
    queued: list[bytes] = field(default_factory=list)
    #: ExtendedDesktopSize rectangles, each a reply of its own.
    eds: list[bytes] = field(default_factory=list)
    #: A DesktopSize rectangle.
    desktop_size: bool = False
    #: The next pixel update covers the whole (new) screen, whatever the
    #: requests name (they may predate a resize and use the old size).
    whole_screen: bool = False
    #: Pseudo-encoding rectangles sent with the next update.
    cursor: bool = False
    name: bool = False
    led: bool = False
    ext_key: bool = False
    #: A CopyRect sent with the next update.
    copy: Copy | None = None

    @property
    def size_due(self) -> bool:
        """A resize announcement waits (an update of its own)."""
        return bool(self.eds) or self.desktop_size

    @property
    def pseudo_due(self) -> bool:
        """A pseudo-encoding rectangle waits for the next update."""
        return self.cursor or self.name or self.led or self.ext_key

    def due(self) -> bool:
        """Whether anything at all waits."""
        return (self.colour_map or self.bell or self.cut_text is not None
                or bool(self.queued) or self.size_due or self.whole_screen
                or self.pseudo_due or self.copy is not None)

    def clear(self) -> None:
        """Nothing is due any more (the client is gone)."""
        self.colour_map = self.bell = self.desktop_size = self.whole_screen = False
        self.cursor = self.name = self.led = self.ext_key = False
        self.cut_text = None
        self.copy = None
        self.queued = []
        self.eds = []
