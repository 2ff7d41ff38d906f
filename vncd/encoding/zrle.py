# -*- test-case-name: tests.vncd.test_encoding -*-
"""ZRLE encoding (16): 64x64 tiles, palettes and run lengths, all deflated.

Colour counts of every tile come from one vectorised sort of all tiles.
Each tile then gets the smallest of the forms rfbproto offers -- solid
(1), packed palette (2-16 colours), palette RLE (up to 127 colours),
plain RLE, or raw CPIXELs -- with sizes computed from its run lengths
and the bytes produced by numpy (``packbits``, run tables), never by a
loop over pixels.  The tile stream is compressed by a fresh raw-deflate
compressor (see :mod:`vncd.encoding.deflate`) so the result is shared by
every client.  Knows nothing about connections.
"""

from __future__ import annotations

import numpy as np

from vncd.encoding import ZRLE, EncodedRect, EncodeParams, rect_header
from vncd.encoding.convert import PixelConverter, converter_for
from vncd.encoding.deflate import deflate_raw

__all__ = ["encode_zrle", "zrle_tiles", "TILE", "run_lengths", "rle_length_bytes"]

#: ZRLE's tile size (fixed by rfbproto).
TILE = 64

#: Largest palette of a packed-palette tile (4-bit indices).
MAX_PACKED_PALETTE = 16

#: Largest palette of a palette-RLE tile (subencoding 128 + size < 256).
MAX_RLE_PALETTE = 127


def run_lengths(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of every run of equal values in ``flat``."""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    return starts, lengths


def rle_length_bytes(lengths: np.ndarray) -> np.ndarray:
    """Bytes each run length takes in ZRLE's length code (255... then rest)."""
    return (lengths - 1) // 255 + 1


def _emit_runs(heads: np.ndarray, lengths: np.ndarray, with_length: np.ndarray) -> bytes:
    """Runs as ``head bytes [+ length code]``; ``heads`` is ``(n, k)`` uint8."""
    k = heads.shape[1]
    sizes = k + np.where(with_length, rle_length_bytes(lengths), 0)
    ends = np.cumsum(sizes)
    begins = ends - sizes
    out = np.full(int(ends[-1]), 255, dtype=np.uint8)
    for i in range(k):
        out[begins + i] = heads[:, i]
    last = ends[with_length] - 1
    out[last] = (lengths[with_length] - 1) % 255
    return out.tobytes()


def _packed(indices: np.ndarray, ncolours: int) -> bytes:
    """Palette indices packed 1, 2 or 4 bits each, rows padded to bytes."""
    if ncolours == 2:
        return np.packbits(indices.astype(np.uint8), axis=1).tobytes()
    bits = 2 if ncolours <= 4 else 4
    per = 8 // bits
    th, tw = indices.shape
    padded = np.zeros((th, -(-tw // per) * per), dtype=np.uint8)
    padded[:, :tw] = indices
    groups = padded.reshape(th, -1, per)
    out = np.zeros(groups.shape[:2], dtype=np.uint8)
    for i in range(per):
        out |= groups[..., i] << (8 - bits * (i + 1))
    return out.tobytes()


def _packed_size(ncolours: int, tw: int, th: int) -> int:
    bits = 1 if ncolours == 2 else 2 if ncolours <= 4 else 4
    return -(-tw * bits // 8) * th


def _tile(vals: np.ndarray, palette: np.ndarray, conv: PixelConverter) -> bytes:
    """One tile (``vals`` its pixel values, ``palette`` its sorted colours)."""
    th, tw = vals.shape
    n = th * tw
    bpc = conv.cpixel_size
    ncol = palette.size
    if ncol == 1:
        return b"\x01" + conv.cpixels_from_values(palette).tobytes()
    flat = vals.ravel()
    starts, lengths = run_lengths(flat)
    lbytes = rle_length_bytes(lengths)
    raw = n * bpc
    plain = int(lengths.size * bpc + lbytes.sum())
    best, size = "raw", raw
    if plain < size:
        best, size = "plain", plain
    if ncol <= MAX_RLE_PALETTE:
        prle = ncol * bpc + int(np.where(lengths == 1, 1, 1 + lbytes).sum())
        if prle < size:
            best, size = "prle", prle
    if ncol <= MAX_PACKED_PALETTE:
        packed = ncol * bpc + _packed_size(ncol, tw, th)
        if packed < size:
            best, size = "packed", packed
    if best == "raw":
        return b"\x00" + conv.cpixels_from_values(vals).tobytes()
    if best == "plain":
        heads = conv.cpixels_from_values(flat[starts])
        return b"\x80" + _emit_runs(heads, lengths, np.ones(lengths.size, dtype=bool))
    pal_bytes = conv.cpixels_from_values(palette).tobytes()
    if best == "packed":
        indices = np.searchsorted(palette, vals)
        return bytes([ncol]) + pal_bytes + _packed(indices, ncol)
    idx = np.searchsorted(palette, flat[starts]).astype(np.uint8)
    longer = lengths > 1
    heads = (idx | (longer.astype(np.uint8) << 7))[:, None]
    return bytes([128 + ncol]) + pal_bytes + _emit_runs(heads, lengths, longer)


def zrle_tiles(vals: np.ndarray, conv: PixelConverter) -> bytes:
    """The uncompressed ZRLE tile stream of a rectangle's pixel values."""
    h, w = vals.shape
    ty, tx = -(-h // TILE), -(-w // TILE)
    padded = vals
    if (ty * TILE, tx * TILE) != (h, w):
        padded = np.pad(vals, ((0, ty * TILE - h), (0, tx * TILE - w)), mode="edge")
    tiles = padded.reshape(ty, TILE, tx, TILE).transpose(0, 2, 1, 3).reshape(ty * tx, -1)
    ordered = np.sort(tiles, axis=1)
    distinct = np.ones(ordered.shape, dtype=bool)
    distinct[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    out = []
    for t in range(ty * tx):
        i, j = divmod(t, tx)
        tile = vals[i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE]
        out.append(_tile(tile, ordered[t][distinct[t]], conv))
    return b"".join(out)


def encode_zrle(frame: np.ndarray, x: int, y: int, w: int, h: int,
                params: EncodeParams) -> EncodedRect:
    """One ZRLE rectangle for ``frame[y:y+h, x:x+w]``."""
    conv = converter_for(params.pf)
    head = rect_header(x, y, w, h, ZRLE)
    tiles = zrle_tiles(conv.values(frame[y:y + h, x:x + w]), conv) if w and h else b""
    return EncodedRect(deflate_raw(tiles, params.compress_level), stream=ZRLE, head=head)
