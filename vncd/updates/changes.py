"""What a screen reports as changed besides pixels: the :class:`Change` kinds.

Screens call ``screen_changed(screen, kind)`` with one of these (plain
strings with the same values are accepted: :class:`Change` is a string
enum, and :func:`parse` turns a string into a member or refuses it,
naming it).  The display passes the member on to every client, which
decides what its client is to be sent.

Knows nothing about clients, encodings or pixels.
"""

from __future__ import annotations

import enum

__all__ = ["Change", "parse"]


class Change(enum.StrEnum):
    """A kind of change a screen reports."""

    #: The screen layout (ExtendedDesktopSize screens), not the size.
    LAYOUT = "layout"
    #: The desktop name.
    NAME = "name"
    #: The cursor shape (or its absence).
    CURSOR = "cursor"
    #: The keyboard LED state.
    LED = "led"


def parse(kind, screen=None) -> Change:
    """``kind`` as a :class:`Change`; a ValueError naming it (and the screen) if unknown."""
    try:
        return Change(kind)
    except ValueError:
        known = ", ".join(c.value for c in Change)
        where = f" from {type(screen).__name__}" if screen is not None else ""
        raise ValueError(f"unknown screen change kind {kind!r}{where}"
                         f" (known: {known})") from None
