"""What a screen reports as changed besides pixels: the :class:`Change` kinds.

Screens call ``screen_changed(screen, kind)`` with a :class:`Change`
(defined with the Screen API in :mod:`vncd.screens.base`; a plain string
with a member's value is accepted too: :func:`parse` turns it into the
member or refuses it, naming it).  The display passes the member on to
every client, which decides what its client is to be sent.

Knows nothing about clients, encodings or pixels.
"""

from __future__ import annotations

from vncd.screens.base import Change

__all__ = ["Change", "parse"]


def parse(kind, screen=None) -> Change:
    """``kind`` as a :class:`Change`; a ValueError naming it (and the screen) if unknown."""
    try:
        return Change(kind)
    except ValueError:
        known = ", ".join(c.value for c in Change)
        where = f" from {type(screen).__name__}" if screen is not None else ""
        raise ValueError(f"unknown screen change kind {kind!r}{where}"
                         f" (known: {known})") from None
