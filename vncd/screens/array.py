# -*- test-case-name: tests.vncd.test_screens -*-
"""The embedding screen: pixels drawn by a Python program, input to callbacks.

:class:`ArrayScreen` is what :mod:`vncd.api` serves: the program draws
into :attr:`~vncd.screens.base.Screen.framebuffer` (or hands arrays to
:meth:`ArrayScreen.update`), calls :meth:`~vncd.screens.base.Screen.damage`,
and receives the clients' input through the callbacks it passed.

Knows nothing about RFB, sockets or TLS.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from vncd.screens.base import (
    RESIZE_OK, RESIZE_PROHIBITED, CutTextEvent, KeyEvent, PointerEvent, Screen,
    ScreenArea, check_framebuffer,
)

__all__ = ["ArrayScreen"]


class ArrayScreen(Screen):
    """A screen fed by the embedding program.

    ``on_key``, ``on_pointer`` and ``on_cut_text`` receive
    :class:`~vncd.screens.base.KeyEvent`,
    :class:`~vncd.screens.base.PointerEvent` and
    :class:`~vncd.screens.base.CutTextEvent`.  ``on_resize(width, height)``
    decides client resize requests: return True to accept (the screen then
    resizes itself); without it clients cannot resize the screen.
    ``framebuffer`` adopts an existing C-contiguous ``(h, w, 4)`` uint8
    array instead of allocating one.
    """

    def __init__(self, width: int | None = None, height: int | None = None, *,
                 framebuffer: np.ndarray | None = None, name: str = "vncd",
                 on_key: Callable[[KeyEvent], object] | None = None,
                 on_pointer: Callable[[PointerEvent], object] | None = None,
                 on_cut_text: Callable[[CutTextEvent], object] | None = None,
                 on_resize: Callable[[int, int], bool] | None = None,
                 reactor=None) -> None:
        if framebuffer is not None:
            check_framebuffer(framebuffer)
            height, width = framebuffer.shape[:2]
        elif width is None or height is None:
            raise TypeError("ArrayScreen needs width and height, or a framebuffer")
        super().__init__(width, height, name=name, reactor=reactor)
        if framebuffer is not None:
            self._framebuffer = framebuffer
        self.on_key = on_key
        self.on_pointer = on_pointer
        self.on_cut_text = on_cut_text
        self.on_resize = on_resize

    @property
    def resizable(self) -> bool:
        return self.on_resize is not None

    def update(self, pixels: np.ndarray, x: int = 0, y: int = 0) -> None:
        """Copy an ``(h, w, 3)`` RGB or ``(h, w, 4)`` RGBX array to ``(x, y)``
        (clipped to the screen) and report it as damaged."""
        if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
            raise ValueError("pixels must be an (h, w, 3) or (h, w, 4) array")
        h = max(0, min(pixels.shape[0], self.height - y))
        w = max(0, min(pixels.shape[1], self.width - x))
        if h and w:
            self._framebuffer[y:y + h, x:x + w, :pixels.shape[2]] = pixels[:h, :w]
            self.damage(x, y, w, h)

    def key_event(self, event: KeyEvent) -> None:
        if self.on_key is not None:
            self.on_key(event)

    def pointer_event(self, event: PointerEvent) -> None:
        if self.on_pointer is not None:
            self.on_pointer(event)

    def cut_text(self, event: CutTextEvent) -> None:
        if self.on_cut_text is not None:
            self.on_cut_text(event)

    def request_resize(self, width: int, height: int, layout: Sequence[ScreenArea]) -> int:
        if self.on_resize is None or not self.on_resize(width, height):
            return RESIZE_PROHIBITED
        self.resize(width, height, layout)
        return RESIZE_OK
