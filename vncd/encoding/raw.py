# -*- test-case-name: tests.vncd.test_encoding -*-
"""Raw encoding (0): the pixels in scanline order, in the client's format.

Every client supports it; vncd uses it when the client lists nothing
better.  With the C extension (:mod:`vncd.encoding.speedups`) the 32-bit
formats whose channels are whole bytes are shuffled straight into the
bytes object sent, one pass and no intermediate buffer.  Knows nothing
about connections.
"""

from __future__ import annotations

import numpy as np

from vncd.encoding import RAW, EncodedRect, EncodeParams, rect_header, speedups
from vncd.encoding.convert import converter_for

__all__ = ["encode_raw"]


def encode_raw(frame: np.ndarray, x: int, y: int, w: int, h: int,
               params: EncodeParams) -> EncodedRect:
    """One Raw rectangle for ``frame[y:y+h, x:x+w]``."""
    conv = converter_for(params.pf)
    region = frame[y:y + h, x:x + w]
    head = rect_header(x, y, w, h, RAW)
    pos = conv.byte_positions
    if (pos is not None and speedups.module is not None and w and h
            and region.strides[1:] == (4, 1) and region.strides[0] >= 4 * w):
        return EncodedRect(speedups.module.raw_shuffle(head, region, *pos))
    return EncodedRect(conv.raw(region, head))
