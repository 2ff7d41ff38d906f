# -*- test-case-name: tests.vncd.test_encoding -*-
"""Hextile encoding (5): 16x16 tiles, each raw or background + subrectangles.

The analysis runs over every tile of the rectangle at once with numpy:

* a tile whose pixels are all equal is sent as its background colour
  (nothing at all when it equals the previous tile's background);
* otherwise the background is the tile's majority colour when the tile
  has two colours, else its first pixel, and every horizontal run of
  equal non-background pixels in a row becomes a 1-pixel-high
  subrectangle -- uncoloured (one foreground) for two-colour tiles,
  coloured otherwise;
* a tile whose subrectangles would not fit (more than 255) or would
  not be smaller than its raw pixels is sent raw.

Only the final assembly walks the tiles, joining precomputed byte
strings.

When the C extension is built (:mod:`vncd.encoding.speedups`), it makes
the same decisions tile by tile in one pass over strips of
:data:`STRIP_TILE_ROWS` tile rows encoded in parallel on the encoder pool
(the loop releases the GIL).  It also grows subrectangles downwards
where that takes fewer than the runs (:data:`GROW_SUBRECTS`); without
that its output is byte for byte the numpy encoder's, which stays as the
fallback and as the reference of the tests.  Knows nothing about connections.
"""

from __future__ import annotations

import numpy as np

from vncd.encoding import HEXTILE, EncodedRect, EncodeParams, rect_header
from vncd.encoding import parallel, speedups
from vncd.encoding.convert import converter_for

__all__ = ["encode_hextile", "TILE", "RAW_BIT", "BACKGROUND_SPECIFIED",
           "FOREGROUND_SPECIFIED", "ANY_SUBRECTS", "SUBRECTS_COLOURED"]

#: Hextile's tile size (fixed by rfbproto).
TILE = 16

RAW_BIT = 1
BACKGROUND_SPECIFIED = 2
FOREGROUND_SPECIFIED = 4
ANY_SUBRECTS = 8
SUBRECTS_COLOURED = 16

#: Most subrectangles one tile can carry (the count is one byte).
MAX_SUBRECTS = 255

#: Whether the C encoder grows subrectangles downwards where that gives
#: fewer than the 1-pixel-high runs (never more bytes; see :func:`body_c`).
GROW_SUBRECTS = True

#: Tile rows per piece the C encoder's pieces run on the pool (a 1080p
#: screen's 68 tile rows make 9 pieces).
STRIP_TILE_ROWS = 8


def _pad(a: np.ndarray, ty: int, tx: int) -> np.ndarray:
    h, w = a.shape[:2]
    pad = ((0, ty * TILE - h), (0, tx * TILE - w)) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, pad, mode="edge") if any(p[1] for p in pad) else a


def encode_hextile(frame: np.ndarray, x: int, y: int, w: int, h: int,
                   params: EncodeParams) -> EncodedRect:
    """One Hextile rectangle for ``frame[y:y+h, x:x+w]``."""
    conv = converter_for(params.pf)
    head = rect_header(x, y, w, h, HEXTILE)
    if w == 0 or h == 0:
        return EncodedRect(head)
    region = frame[y:y + h, x:x + w]
    if speedups.module is not None:
        return EncodedRect(body_c(region, conv, head))
    return EncodedRect(head + body_numpy(region, conv))


def body_numpy(region: np.ndarray, conv) -> bytes:
    """The Hextile body (all tiles) of a non-empty RGBX ``region``, by numpy."""
    h, w = region.shape[:2]
    bpp = conv.bpp
    vals = conv.values(region)
    ty, tx = -(-h // TILE), -(-w // TILE)
    H, W = ty * TILE, tx * TILE
    pv = _pad(vals, ty, tx)
    tiles = pv.reshape(ty, TILE, tx, TILE).transpose(0, 2, 1, 3)

    # Tile colours: solid, two-colour (min and max are the two colours).
    lo = tiles.min(axis=(2, 3))
    hi = tiles.max(axis=(2, 3))
    solid = lo == hi
    is_lo = tiles == lo[..., None, None]
    two = ~solid & (is_lo | (tiles == hi[..., None, None])).all(axis=(2, 3))
    lo_majority = is_lo.sum(axis=(2, 3)) * 2 >= TILE * TILE
    bg = np.where(two, np.where(lo_majority, lo, hi), tiles[..., 0, 0])
    fg = np.where(lo_majority, hi, lo)

    # Runs of equal non-background pixels, per row, never crossing a tile
    # edge or the rectangle's edge.
    fore = (pv.reshape(ty, TILE, tx, TILE) != bg[:, None, :, None]).reshape(H, W)
    fore[h:] = False
    fore[:, w:] = False
    edge_left = np.zeros(W, dtype=bool)
    edge_left[::TILE] = True
    same_left = np.zeros((H, W), dtype=bool)
    same_left[:, 1:] = fore[:, :-1] & (pv[:, 1:] == pv[:, :-1])
    starts = fore & (edge_left | ~same_left)
    counts = starts.reshape(ty, TILE, tx, TILE).sum(axis=(1, 3))

    # Real tile sizes and the cheapest form of each tile:
    # 0 solid, 1 two-colour subrects, 2 coloured subrects, 3 raw.
    tws = np.minimum(TILE, w - TILE * np.arange(tx))
    ths = np.minimum(TILE, h - TILE * np.arange(ty))
    raw_size = ths[:, None] * tws[None, :] * bpp
    fits = counts <= MAX_SUBRECTS
    use_mono = two & fits & (2 * bpp + 1 + 2 * counts < raw_size)
    use_col = ~solid & ~two & fits & (bpp + 1 + (bpp + 2) * counts < raw_size)
    kind = np.where(solid, 0, np.where(use_mono, 1, np.where(use_col, 2, 3))).ravel()
    nt = kind.size
    counts = np.where(kind == 1, counts.ravel(), np.where(kind == 2, counts.ravel(), 0))

    # Subrectangles of the tiles that use them, grouped by tile (none at
    # all when every tile is solid or raw: photos, video).
    with_subrects = (kind == 1) | (kind == 2)
    if with_subrects.any():
        uses = np.repeat(np.repeat(with_subrects, TILE).reshape(ty, tx * TILE), TILE, axis=0)
        starts &= uses
        same_right = np.zeros((H, W), dtype=bool)
        same_right[:, :-1] = same_left[:, 1:] & fore[:, 1:]
        ends = fore & uses & (np.roll(edge_left, -1) | ~same_right)
        sy, sx = np.divmod(np.flatnonzero(starts), W)
        ex = np.flatnonzero(ends) % W
    else:
        sy = sx = ex = np.zeros(0, dtype=np.intp)
    tile_of = (sy // TILE) * tx + sx // TILE
    order = np.argsort(tile_of, kind="stable")
    sy, sx, ex, tile_of = sy[order], sx[order], ex[order], tile_of[order]

    # Header of each tile: mask, background, foreground, count.
    prev_kind = np.concatenate(([3], kind[:-1]))
    bg_flat, fg_flat = bg.ravel(), fg.ravel()
    prev_bg = np.concatenate(([0], bg_flat[:-1]))
    prev_fg = np.concatenate(([0], fg_flat[:-1]))
    raw_tile = kind == 3
    with_bg = ~raw_tile & ((prev_kind == 3) | (bg_flat != prev_bg))
    with_fg = (kind == 1) & ((prev_kind != 1) | (fg_flat != prev_fg))
    with_count = (kind == 1) | (kind == 2)
    bits = (np.where(with_bg, BACKGROUND_SPECIFIED, 0) | np.where(with_fg, FOREGROUND_SPECIFIED, 0)
            | np.where(with_count, ANY_SUBRECTS, 0) | np.where(kind == 2, SUBRECTS_COLOURED, 0))
    mask = np.where(raw_tile, RAW_BIT, bits)
    rec = np.where(kind == 2, bpp + 2, 2)
    payload = np.where(raw_tile, raw_size.ravel(), counts * rec)
    n_bg, n_fg, n_count = (a.astype(np.int64) for a in (with_bg, with_fg, with_count))
    sizes = 1 + (n_bg + n_fg) * bpp + n_count + payload
    ends_at = np.cumsum(sizes)
    begin = ends_at - sizes
    out = np.zeros(int(ends_at[-1]) if nt else 0, dtype=np.uint8)
    out[begin] = mask
    bg_wire = conv.wire_from_values(bg_flat)
    fg_wire = conv.wire_from_values(fg_flat)
    fg_at = begin + 1 + n_bg * bpp
    for k in range(bpp):
        out[begin[with_bg] + 1 + k] = bg_wire[with_bg, k]
        out[fg_at[with_fg] + k] = fg_wire[with_fg, k]
    count_at = fg_at + n_fg * bpp
    out[count_at[with_count]] = counts[with_count]

    # Subrectangle records: [pixel (coloured tiles)] xy wh.
    if tile_of.size:
        first_of_tile = np.concatenate(([0], np.cumsum(counts)))[tile_of]
        rank = np.arange(tile_of.size) - first_of_tile
        r = rec[tile_of]
        at = count_at[tile_of] + 1 + rank * r
        coloured = kind[tile_of] == 2
        if coloured.any():
            pix = conv.wire_from_values(pv[sy[coloured], sx[coloured]])
            for k in range(bpp):
                out[at[coloured] + k] = pix[:, k]
        at = at + np.where(coloured, bpp, 0)
        out[at] = ((sx % TILE) << 4) | (sy % TILE)
        out[at + 1] = (ex - sx) << 4

    # Raw tiles: their pixels in scanline order.
    raw_idx = np.flatnonzero(raw_tile)
    if raw_idx.size:
        wire_tiles = conv.wire_from_values(pv).reshape(ty, TILE, tx, TILE, bpp)
        _copy_raw_tiles(out, wire_tiles, raw_idx, begin, tws, ths, tx, bpp)
    return out.tobytes()


def body_c(region: np.ndarray, conv, prefix: bytes = b"", grow: bool | None = None) -> bytes:
    """``prefix`` and the Hextile body of a non-empty ``region`` by the C
    extension, in parallel strips.

    Without ``grow`` (default :data:`GROW_SUBRECTS`) the bytes are
    :func:`body_numpy`'s.  With it, a tile whose non-background pixels
    are covered by fewer rectangles grown downwards (as libvncserver and
    x11vnc grow them) than by 1-pixel-high runs is written with those:
    each tile is then at most as long as numpy's, and a tile that numpy
    sends raw may fit in subrectangles, so the whole is never longer.

    A strip starts in the state the tile before it (the last tile of the
    row above) leaves; the extension works that out from the tile row
    above.  32-bit formats with 8-bit channels are read from the RGBX
    pixels directly; others are converted to values strip by strip (each
    with the tile row above).
    """
    rows = -(-region.shape[0] // TILE)
    big = conv.pf.big_endian
    m = speedups.module
    grow = GROW_SUBRECTS if grow is None else grow
    if (conv.byte_positions is not None and region.strides[1:] == (4, 1)
            and region.strides[0] >= 4 * region.shape[1]):
        # 32-bit, 8-bit channels: the C loop reads the RGBX pixels itself.
        lay = conv.layout
        shifts = (lay.red_shift, lay.green_shift, lay.blue_shift)

        def strip(first: int, prefix: bytes = b"") -> bytes:
            return m.hextile_encode_rgbx(region, *shifts, big, first,
                                         min(STRIP_TILE_ROWS, rows - first), prefix, grow)
    else:
        def strip(first: int, prefix: bytes = b"") -> bytes:
            top = max(0, first - 1) * TILE
            vals = conv.values(region[top:(first + STRIP_TILE_ROWS) * TILE])
            return m.hextile_encode(np.ascontiguousarray(vals), conv.bpp, big,
                                    1 if first else 0, min(STRIP_TILE_ROWS, rows - first),
                                    prefix, grow)

    firsts = list(range(0, rows, STRIP_TILE_ROWS))
    if len(firsts) == 1:
        return strip(0, prefix)
    return b"".join([prefix] + parallel.map_ordered(strip, firsts))


def _copy_raw_tiles(out: np.ndarray, wire_tiles: np.ndarray, raw_idx: np.ndarray,
                    begin: np.ndarray, tws: np.ndarray, ths: np.ndarray, tx: int,
                    bpp: int) -> None:
    """Copy the pixels of the raw tiles into ``out`` after their mask bytes.

    Neighbouring raw tiles of one tile row and one width sit in ``out`` at a
    fixed stride (a mask byte plus their pixels), so each such run is one
    strided numpy copy instead of one Python step per tile.
    """
    rows, cols = np.divmod(raw_idx, tx)
    widths = tws[cols]
    # A run breaks where the row changes, a tile is skipped, or the width changes.
    breaks = np.flatnonzero((np.diff(raw_idx) != 1) | (np.diff(rows) != 0)
                            | (np.diff(widths) != 0)) + 1
    run_starts = np.concatenate(([0], breaks)).tolist()
    run_ends = np.concatenate((breaks, [raw_idx.size])).tolist()
    for a, b in zip(run_starts, run_ends):
        i, j0, n = int(rows[a]), int(cols[a]), b - a
        th, tw = int(ths[i]), int(tws[j0])
        size = th * tw * bpp
        o = int(begin[raw_idx[a]]) + 1
        dest = np.lib.stride_tricks.as_strided(
            out[o:o + (n - 1) * (size + 1) + size], shape=(n, th, tw * bpp),
            strides=(size + 1, tw * bpp, 1), writeable=True)
        dest[...] = wire_tiles[i, :th, j0:j0 + n, :tw].transpose(1, 0, 2, 3).reshape(
            n, th, tw * bpp)
