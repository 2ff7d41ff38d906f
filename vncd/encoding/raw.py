# -*- test-case-name: tests.vncd.test_encoding -*-
"""Raw encoding (0): the pixels in scanline order, in the client's format.

Every client supports it; vncd uses it when the client lists nothing
better.  Knows nothing about connections.
"""

from __future__ import annotations

import numpy as np

from vncd.encoding import RAW, EncodedRect, EncodeParams, rect_header
from vncd.encoding.convert import converter_for

__all__ = ["encode_raw"]


def encode_raw(frame: np.ndarray, x: int, y: int, w: int, h: int,
               params: EncodeParams) -> EncodedRect:
    """One Raw rectangle for ``frame[y:y+h, x:x+w]``."""
    return EncodedRect(converter_for(params.pf).raw(frame[y:y + h, x:x + w],
                                                    rect_header(x, y, w, h, RAW)))
