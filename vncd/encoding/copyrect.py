# -*- test-case-name: tests.vncd.test_encoding -*-
"""CopyRect encoding (1): "copy this rectangle from (src_x, src_y)".

The client copies pixels it already has, so no pixel data is sent.  The
caller decides when a copy is valid (see :mod:`vncd.updates`); this
module only writes the rectangle.
"""

from __future__ import annotations

import struct

from vncd.encoding import COPYRECT, EncodedRect, rect_header

__all__ = ["encode_copyrect"]


def encode_copyrect(src_x: int, src_y: int, x: int, y: int, w: int, h: int) -> EncodedRect:
    """One CopyRect rectangle moving ``(src_x, src_y, w, h)`` to ``(x, y)``."""
    return EncodedRect(rect_header(x, y, w, h, COPYRECT) + struct.pack(">HH", src_x, src_y))
