# -*- test-case-name: tests.vncd.test_encoding -*-
"""ZRLE encoding (16): 64x64 tiles, palettes and run lengths, all deflated.

Colour counts of every tile come from one vectorised sort of all tiles.
Each tile then gets the smallest of the forms rfbproto offers -- solid
(1), packed palette (2-16 colours), palette RLE (up to 127 colours),
plain RLE, or raw CPIXELs -- with sizes computed from its run lengths
and the bytes produced by numpy (``packbits``, run tables), never by a
loop over pixels.  The tile stream is compressed by a fresh raw-deflate
compressor (see :mod:`vncd.encoding.deflate`) so the result is shared by
every client.

When the C extension is built (:mod:`vncd.encoding.speedups`) it writes
the tile stream instead, tile by tile with the same choices and bytes
(the numpy code stays as the fallback and the tests' reference), in
strips of :data:`STRIP_TILE_ROWS` tile rows on the encoder pool.  Knows
nothing about connections.
"""

from __future__ import annotations

import numpy as np

from vncd.encoding import ZRLE, EncodedRect, EncodeParams, parallel, rect_header, speedups
from vncd.encoding.convert import PixelConverter, converter_for
from vncd.encoding.deflate import deflate_raw

__all__ = ["encode_zrle", "zrle_tiles", "TILE", "run_lengths", "rle_length_bytes"]

#: ZRLE's tile size (fixed by rfbproto).
TILE = 64

#: Tile rows per piece of the C tile writer's parallel strips (a 1080p
#: screen's 17 tile rows make 5 pieces).
STRIP_TILE_ROWS = 4

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


def _tile(vals: np.ndarray, palette: np.ndarray | None, conv: PixelConverter) -> bytes:
    """One tile (``vals`` its pixel values, ``palette`` its sorted colours, or
    None when it is known to have more than :data:`MAX_RLE_PALETTE`)."""
    th, tw = vals.shape
    n = th * tw
    bpc = conv.cpixel_size
    ncol = palette.size if palette is not None else MAX_RLE_PALETTE + 1
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


#: Pixels sampled per tile (every 16th) to prove a tile has too many
#: colours for a palette without sorting all of it.
_SAMPLE_STEP = 16


def _many_colour_tiles(rows: np.ndarray, conv: PixelConverter) -> list:
    """ZRLE bytes of full tiles known to have more than :data:`MAX_RLE_PALETTE`
    colours (``rows``: one tile's 4096 pixel values per row).

    Such a tile is raw or plain RLE, whichever is smaller (raw on a tie),
    as :func:`_tile` decides; here every tile is decided, and every plain
    RLE tile written, in one pass over all of them.
    """
    count, n = rows.shape
    bpc = conv.cpixel_size
    raw = n * bpc
    start_mask = np.ones((count, n), dtype=bool)
    np.not_equal(rows[:, 1:], rows[:, :-1], out=start_mask[:, 1:])
    runs = np.count_nonzero(start_mask, axis=1)
    # Each run costs bpc + at least one length byte: a lower bound on plain RLE.
    maybe = np.flatnonzero(runs * (bpc + 1) < raw)
    forms: list = [None] * count
    if maybe.size:
        starts = np.flatnonzero(start_mask[maybe])
        lengths = np.diff(starts, append=maybe.size * n)
        tile_of = starts // n
        lbytes = rle_length_bytes(lengths)
        plain = np.bincount(tile_of, weights=bpc + lbytes, minlength=maybe.size)
        chosen = plain < raw
        keep = chosen[tile_of]
        starts, lengths, tile_of, lbytes = (a[keep] for a in (starts, lengths, tile_of, lbytes))
        if starts.size:
            heads = conv.cpixels_from_values(rows[maybe][tile_of, starts % n])
            body = _emit_runs(heads, lengths, np.ones(lengths.size, dtype=bool))
            sizes = np.bincount(tile_of, weights=bpc + lbytes, minlength=maybe.size)
            ends = np.cumsum(sizes).astype(np.int64).tolist()
            begin = 0
            for k in np.flatnonzero(chosen).tolist():
                forms[int(maybe[k])] = b"\x80" + body[begin:ends[k]]
                begin = ends[k]
    raw_tiles = [k for k in range(count) if forms[k] is None]
    if raw_tiles:
        cpixels = conv.cpixels_from_values(rows[raw_tiles])
        for k, tile in zip(raw_tiles, cpixels):
            forms[k] = b"\x00" + tile.tobytes()
    return forms


def zrle_tiles(vals: np.ndarray, conv: PixelConverter) -> bytes:
    """The uncompressed ZRLE tile stream of a rectangle's pixel values.

    Full tiles whose every-16th-pixel sample already has more than
    :data:`MAX_RLE_PALETTE` colours (photos, video) are decided and
    written together (:func:`_many_colour_tiles`); the others get their
    palettes from one sort and are written one by one by :func:`_tile`.
    The bytes are the same as writing every tile with :func:`_tile`.
    """
    h, w = vals.shape
    ty, tx = -(-h // TILE), -(-w // TILE)
    fy, fx = h // TILE, w // TILE
    out: list = [None] * (ty * tx)
    if fy and fx:
        # Full tiles, one row of 4096 values each (edge tiles are done below).
        full = vals[:fy * TILE, :fx * TILE].reshape(fy, TILE, fx, TILE).transpose(0, 2, 1, 3)
        sample = np.sort(full[:, :, ::_SAMPLE_STEP // 4, ::4].reshape(fy * fx, -1), axis=1)
        distinct = 1 + np.count_nonzero(sample[:, 1:] != sample[:, :-1], axis=1)
        many = distinct > MAX_RLE_PALETTE
        rows = full.reshape(fy * fx, TILE * TILE)
        numbers = (np.arange(fy)[:, None] * tx + np.arange(fx)[None, :]).ravel()
        many_idx = np.flatnonzero(many)
        if many_idx.size:
            for t, form in zip(numbers[many_idx].tolist(),
                               _many_colour_tiles(rows[many_idx], conv)):
                out[t] = form
        few_idx = np.flatnonzero(~many)
        if few_idx.size:
            ordered = np.sort(rows[few_idx], axis=1)
            first = np.ones(ordered.shape, dtype=bool)
            first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
            for k, t in enumerate(numbers[few_idx].tolist()):
                i, j = divmod(t, tx)
                tile = vals[i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE]
                out[t] = _tile(tile, ordered[k][first[k]], conv)
    for t, done in enumerate(out):
        if done is None:  # a partial tile at the right or bottom edge
            i, j = divmod(t, tx)
            tile = vals[i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE]
            sample = np.unique(tile.ravel()[::_SAMPLE_STEP])
            out[t] = _tile(tile, None if sample.size > MAX_RLE_PALETTE else np.unique(tile),
                           conv)
    return b"".join(out)


def tiles_c(region: np.ndarray, conv: PixelConverter) -> bytes:
    """:func:`zrle_tiles` of a non-empty RGBX ``region`` by the C extension,
    converted and written in parallel strips (ZRLE tiles are independent)."""
    rows = -(-region.shape[0] // TILE)
    write = speedups.module.zrle_tiles
    start, size = conv.cpixel_positions[0], conv.cpixel_size
    big = conv.pf.big_endian

    def strip(first: int) -> bytes:
        vals = conv.values(region[first * TILE:(first + STRIP_TILE_ROWS) * TILE])
        return write(np.ascontiguousarray(vals), conv.bpp, big, start, size)

    firsts = list(range(0, rows, STRIP_TILE_ROWS))
    if len(firsts) == 1:
        return strip(0)
    return b"".join(parallel.map_ordered(strip, firsts))


def encode_zrle(frame: np.ndarray, x: int, y: int, w: int, h: int,
                params: EncodeParams) -> EncodedRect:
    """One ZRLE rectangle for ``frame[y:y+h, x:x+w]``."""
    conv = converter_for(params.pf)
    head = rect_header(x, y, w, h, ZRLE)
    region = frame[y:y + h, x:x + w]
    if not (w and h):
        tiles = b""
    elif speedups.module is not None:
        tiles = tiles_c(region, conv)
    else:
        tiles = zrle_tiles(conv.values(region), conv)
    return EncodedRect(deflate_raw(tiles, params.compress_level, fast=True), stream=ZRLE,
                       head=head)
