"""Screens: where the pixels come from (see :mod:`vncd.screens.base`).

* :mod:`~vncd.screens.testcard` -- ``-screen testcard`` (the default);
* :mod:`~vncd.screens.image` -- ``-screen image,file=PNG``;
* :mod:`~vncd.screens.pipe` -- ``-screen pipe,path=...,size=WxH,format=...``;
* :mod:`~vncd.screens.array` -- the embedding API's screen.

:func:`from_spec` builds a screen from a parsed ``-screen`` option; its
errors are :class:`~vncd.screens.base.ScreenError` naming the option.
This package knows nothing about RFB, sockets or TLS.
"""

from __future__ import annotations

import re

from compat.config import ScreenSpec
from vncd.screens.base import MAX_SIDE, Screen, ScreenError

__all__ = ["from_spec", "create_screen", "KINDS"]

#: The keys each ``-screen`` kind accepts, required ones first.
KINDS = {
    "testcard": ((), ("size", "name")),
    "image": (("file",), ("name",)),
    "pipe": (("path", "size", "format"), ("events", "name")),
}

_SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})\Z")


def _size(value: str, source: str) -> tuple[int, int]:
    match = _SIZE.match(value)
    if not match:
        raise ScreenError(f"Parameter 'size' expects WIDTHxHEIGHT, not '{value}'", source=source)
    width, height = int(match.group(1)), int(match.group(2))
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ScreenError(f"Parameter 'size' {value} is outside 1x1 .. {MAX_SIDE}x{MAX_SIDE}",
                          source=source)
    return width, height


def from_spec(spec: ScreenSpec, reactor) -> Screen:
    """The screen a ``-screen`` option asks for (raises :class:`ScreenError`)."""
    kinds = KINDS.get(spec.kind)
    if kinds is None:
        raise ScreenError(f"unknown screen kind '{spec.kind}' (expected "
                          f"{', '.join(KINDS)})", source=spec.source)
    required, optional = kinds
    for key in spec.props:
        if key not in required and key not in optional:
            raise ScreenError(f"Invalid parameter '{key}'", source=spec.source)
    for key in required:
        if not spec.props.get(key):
            raise ScreenError(f"Parameter '{key}' is missing", source=spec.source)
    props = spec.props
    name = props.get("name")
    try:
        if spec.kind == "testcard":
            from vncd.screens.testcard import DEFAULT_HEIGHT, DEFAULT_WIDTH, TestcardScreen

            width, height = (_size(props["size"], spec.source) if "size" in props
                             else (DEFAULT_WIDTH, DEFAULT_HEIGHT))
            extra = {} if name is None else {"name": name}
            return TestcardScreen(width, height, reactor=reactor, **extra)
        if spec.kind == "image":
            from vncd.screens.image import ImageScreen

            return ImageScreen(props["file"], name=name, reactor=reactor)
        from vncd.screens.pipe import FORMATS, PipeScreen

        width, height = _size(props["size"], spec.source)
        if props["format"] not in FORMATS:
            raise ScreenError(f"Parameter 'format' expects {', '.join(FORMATS)}, not "
                              f"'{props['format']}'", source=spec.source)
        return PipeScreen(props["path"], width, height, props["format"],
                          events=props.get("events"), name=name, reactor=reactor)
    except ScreenError as exc:
        if exc.source is None:
            exc.source = spec.source
        raise


#: The name :mod:`vncd.service` uses for :func:`from_spec`.
create_screen = from_spec
