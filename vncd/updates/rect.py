"""Rectangles of the update engine: pixel rectangles and tile boxes.

:class:`Rect` is a pixel rectangle ``(x, y, w, h)`` -- the RFB
convention, which every rectangle that crosses a function boundary in
:mod:`vncd.updates` uses (requested areas, copies, plan entries, damage).
:class:`TileBox` is a range of :data:`~vncd.updates.config.TILE`-sized
tiles ``(ty0, tx0, ty1, tx1)`` (rows first, ends exclusive), the shape in
which damage is tracked and numpy tile masks are sliced.

Both are NamedTuples: immutable, as cheap to build and unpack as the bare
tuples they replace, and still usable where a tuple is expected (screens
report damage as plain ``(x, y, w, h)`` tuples).

Knows nothing about screens, clients or encodings.
"""

from __future__ import annotations

from typing import NamedTuple

from vncd.updates.config import TILE

__all__ = ["Rect", "TileBox", "EMPTY", "tile_count"]


def tile_count(n: int) -> int:
    """Tiles needed to cover ``n`` pixels."""
    return -(-n // TILE)


class Rect(NamedTuple):
    """A pixel rectangle: left, top, width, height.  Empty when w or h <= 0."""

    x: int
    y: int
    w: int
    h: int

    @classmethod
    def corners(cls, x0: int, y0: int, x1: int, y1: int) -> "Rect":
        """The rectangle from ``(x0, y0)`` up to (not including) ``(x1, y1)``."""
        return cls(x0, y0, x1 - x0, y1 - y0)

    @property
    def x1(self) -> int:
        return self.x + self.w

    @property
    def y1(self) -> int:
        return self.y + self.h

    @property
    def empty(self) -> bool:
        return self.w <= 0 or self.h <= 0

    @property
    def area(self) -> int:
        return 0 if self.w <= 0 or self.h <= 0 else self.w * self.h

    def clip(self, width: int, height: int) -> "Rect":
        """The part inside a ``width`` x ``height`` framebuffer (maybe empty)."""
        x0, y0 = max(self.x, 0), max(self.y, 0)
        x1, y1 = min(self.x + self.w, width), min(self.y + self.h, height)
        return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def union(self, other: "Rect") -> "Rect":
        """The smallest rectangle holding both; an empty one adds nothing."""
        if other.w <= 0 or other.h <= 0:
            return self
        if self.w <= 0 or self.h <= 0:
            return other
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        return Rect(x0, y0, max(self.x + self.w, other.x + other.w) - x0,
                    max(self.y + self.h, other.y + other.h) - y0)

    def tiles(self) -> "TileBox":
        """The tiles covering the rectangle (empty box for an empty rectangle)."""
        if self.w <= 0 or self.h <= 0:
            return TileBox(0, 0, 0, 0)
        return TileBox(self.y // TILE, self.x // TILE,
                       tile_count(self.y + self.h), tile_count(self.x + self.w))


#: The empty rectangle (a request for nothing, still a request).
EMPTY = Rect(0, 0, 0, 0)


class TileBox(NamedTuple):
    """Tile rows ``ty0 .. ty1`` and columns ``tx0 .. tx1`` (ends exclusive)."""

    ty0: int
    tx0: int
    ty1: int
    tx1: int

    @classmethod
    def whole(cls, shape: tuple[int, int]) -> "TileBox":
        """Every tile of a ``(rows, columns)`` tile grid."""
        return cls(0, 0, shape[0], shape[1])

    @property
    def empty(self) -> bool:
        return self.ty1 <= self.ty0 or self.tx1 <= self.tx0

    @property
    def slices(self) -> tuple[slice, slice]:
        """Index of the box in a tile mask: ``mask[box.slices]``."""
        return slice(self.ty0, self.ty1), slice(self.tx0, self.tx1)

    def union(self, other: "TileBox") -> "TileBox":
        """The smallest box holding both; an empty one adds nothing."""
        if other.empty:
            return self
        if self.empty:
            return other
        return TileBox(min(self.ty0, other.ty0), min(self.tx0, other.tx0),
                       max(self.ty1, other.ty1), max(self.tx1, other.tx1))

    def pixels(self, width: int, height: int) -> Rect:
        """The pixels of the box inside a ``width`` x ``height`` framebuffer."""
        return Rect.corners(self.tx0 * TILE, self.ty0 * TILE,
                            self.tx1 * TILE, self.ty1 * TILE).clip(width, height)
