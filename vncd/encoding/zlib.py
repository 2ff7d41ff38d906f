# -*- test-case-name: tests.vncd.test_encoding -*-
"""Zlib encoding (6): Raw pixels compressed with the connection's zlib stream.

The body is a fresh raw-deflate block sequence (see
:mod:`vncd.encoding.deflate`), shared by every client; the per-connection
stream header is added at send time.  Knows nothing about connections.
"""

from __future__ import annotations

import numpy as np

from vncd.encoding import ZLIB, EncodedRect, EncodeParams, rect_header
from vncd.encoding.convert import converter_for
from vncd.encoding.deflate import deflate_raw

__all__ = ["encode_zlib"]


def encode_zlib(frame: np.ndarray, x: int, y: int, w: int, h: int,
                params: EncodeParams) -> EncodedRect:
    """One Zlib rectangle for ``frame[y:y+h, x:x+w]``."""
    raw = converter_for(params.pf).raw(frame[y:y + h, x:x + w])
    return EncodedRect(deflate_raw(raw, params.compress_level), stream=ZLIB,
                       head=rect_header(x, y, w, h, ZLIB))
