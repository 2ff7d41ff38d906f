# -*- test-case-name: tests.vncd.test_screens -*-
"""``-screen image,file=PNG``: a still picture.

The file is read once, with Pillow (PNG is the documented format; any
format Pillow reads works).  Its size is checked against
:data:`~vncd.screens.base.MAX_SIDE` before the pixels are decoded, so a
huge or hostile file is refused without being expanded.  Every error
names the file.

Knows nothing about RFB, sockets or TLS.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image

from vncd.screens.base import MAX_SIDE, Screen, ScreenError

__all__ = ["ImageScreen", "load_image"]


def load_image(path: str) -> np.ndarray:
    """An RGBX framebuffer with the picture in ``path`` (raises :class:`ScreenError`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
                    raise ScreenError(f"image '{path}' is {width}x{height}; the largest screen "
                                      f"is {MAX_SIDE}x{MAX_SIDE}", path=path)
                rgb = np.asarray(image.convert("RGB"))
    except ScreenError:
        raise
    except OSError as exc:
        if exc.errno is not None:
            raise ScreenError(f"Could not open '{path}': {os.strerror(exc.errno)}",
                              path=path) from None
        raise ScreenError(f"'{path}' is not an image vncd can read ({exc})", path=path) from None
    except (ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ScreenError(f"'{path}' is not an image vncd can read ({exc})", path=path) from None
    fb = np.zeros((height, width, 4), dtype=np.uint8)
    fb[..., :3] = rgb
    return fb


class ImageScreen(Screen):
    """Shows the picture in ``path``; named after the file unless ``name`` is given."""

    def __init__(self, path: str, *, name: str | None = None, reactor=None) -> None:
        fb = load_image(path)
        super().__init__(fb.shape[1], fb.shape[0],
                         name=name if name is not None else os.path.basename(path),
                         reactor=reactor)
        self._framebuffer = fb
        self.path = path
