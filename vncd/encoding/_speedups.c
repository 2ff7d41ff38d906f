/*
 * vncd.encoding._speedups: the per-pixel loops numpy cannot vectorise well.
 *
 * - hextile_encode: the body of a Hextile rectangle (rfbproto 7.7.4) from
 *   the pixel values vncd.encoding.convert computes, tile by tile, with
 *   the same decisions as the numpy encoder in vncd/encoding/hextile.py
 *   (that module is the reference and the fallback; the tests compare the
 *   two byte for byte).
 * - zrle_tiles: the ZRLE tile stream before deflate, with the numpy
 *   encoder's choices (vncd/encoding/zrle.py).
 * - raw_shuffle: the Raw body of an RGBX region for 32-bit formats whose
 *   channels are whole bytes, written straight into the bytes object
 *   returned (no intermediate buffer).
 * - tile_compare: which tiles of a framebuffer differ from a snapshot,
 *   copying them (for the damage compare of vncd/updates).
 * - tight_palette: the distinct colours of a Tight piece, stopping as soon
 *   as there are too many for a palette (vncd/encoding/tight.py).
 * - look_tiles: which squares of a memory-mapped framebuffer file differ
 *   from the RGBX framebuffer made from it (compared through the channel
 *   conversion, no copy of the file kept); the changed ones are converted
 *   in the same pass (vncd/screens/file.py), so that a display can serve
 *   the framebuffer without comparing it again.
 *
 * Every entry point checks its buffers (dimensions, item size, format,
 * contiguity, writability) and raises TypeError or ValueError on anything
 * else; the loops run without the GIL, so encoder threads run in parallel.
 * Plain CPython C API, no other dependency.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define TILE 16
#define MAX_SUBRECTS 255
#define MAX_SIDE 65535

#define RAW_BIT 1
#define BACKGROUND_SPECIFIED 2
#define FOREGROUND_SPECIFIED 4
#define ANY_SUBRECTS 8
#define SUBRECTS_COLOURED 16

enum { KIND_SOLID = 0, KIND_MONO = 1, KIND_COLOURED = 2, KIND_RAW = 3 };

/* Byte-shuffling loops (Raw, the file look) also get an AVX2 build, chosen
 * at load time where the processor has it (GCC's function multi-versioning
 * on x86-64). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SIMD_CLONES
#endif

/* ------------------------------------------------------------------------ */
/* Buffers                                                                    */

/* The item format of a buffer of unsigned integers in native byte order:
 * its size in bytes (1, 2 or 4), or 0 for anything else. */
static int
native_unsigned_size(const Py_buffer *view)
{
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=')
        f++;
    if (f[0] == '\0' || f[1] != '\0')
        return 0;
    switch (f[0]) {
    case 'B':
        return view->itemsize == 1 ? 1 : 0;
    case 'H':
        return view->itemsize == 2 ? 2 : 0;
    case 'I':
    case 'L':
        return view->itemsize == 4 ? 4 : 0;
    default:
        return 0;
    }
}

static int
get_buffer(PyObject *obj, Py_buffer *view, int flags, const char *name,
           const char *what)
{
    if (PyObject_GetBuffer(obj, view, flags) == 0)
        return 0;
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "%s must be %s, not %.100s", name, what,
                 Py_TYPE(obj)->tp_name);
    return -1;
}

static int check_rgbx(const Py_buffer *view, const char *name);

/* ------------------------------------------------------------------------ */
/* Hextile                                                                    */

typedef struct {
    const uint8_t *data;
    Py_ssize_t width, height;
    Py_ssize_t stride;   /* bytes from one row to the next */
    int itemsize;        /* values: 1, 2 or 4; RGBX pixels: 0 */
    int shifts[3];       /* RGBX pixels: where R, G and B go in a value */
    int bpp;
    int big_endian;
    int grow;            /* Hextile: grown subrectangles where they are fewer */
} pixels_t;

typedef struct {
    int kind;
    int count;
    int grown;   /* subrectangles grown downwards (else 1-pixel-high runs) */
    uint32_t bg, fg;
} tile_t;

/* A grown subrectangle: its colour and its two Hextile bytes. */
typedef struct {
    uint32_t colour;
    uint8_t xy, wh;
} rect_t;

/* Subrectangles grown as libvncserver does: from each uncovered
 * non-background pixel in scan order, the longest run of its colour, then
 * down while the rows below repeat it.  Counts them, stopping past
 * ``limit``, and stores them in ``rects`` (room for limit + 1) when given. */
static int
grown_rects(const uint32_t *t, int tw, int th, uint32_t bg, int limit, rect_t *rects)
{
    uint32_t covered[TILE] = {0};
    int count = 0;
    for (int r = 0; r < th; r++) {
        const uint32_t *row = t + r * tw;
        for (int c = 0; c < tw; c++) {
            uint32_t v = row[c];
            if (v == bg || (covered[r] >> c) & 1)
                continue;
            int w = 1;
            while (c + w < tw && row[c + w] == v && !((covered[r] >> (c + w)) & 1))
                w++;
            uint32_t mask = ((1u << w) - 1) << c;
            int h = 1;
            while (r + h < th && !(covered[r + h] & mask)) {
                const uint32_t *below = t + (r + h) * tw + c;
                int same = 1;
                for (int k = 0; k < w; k++)
                    same &= below[k] == v;
                if (!same)
                    break;
                h++;
            }
            for (int k = 0; k < h; k++)
                covered[r + k] |= mask;
            if (rects) {
                rects[count].colour = v;
                rects[count].xy = (uint8_t)((c << 4) | r);
                rects[count].wh = (uint8_t)(((w - 1) << 4) | (h - 1));
            }
            if (++count > limit)
                return count;
            c += w - 1;
        }
    }
    return count;
}

static inline uint32_t
load_value(const uint8_t *p, int itemsize)
{
    if (itemsize == 4) {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    if (itemsize == 2) {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    return *p;
}

/* Pixel values of n RGBX pixels (inlined with constant shifts, it vectorises). */
static inline void
rgbx_values(const uint8_t *restrict src, uint32_t *restrict dst, int n, int rs, int gs, int bs)
{
    for (int c = 0; c < n; c++) {
        uint32_t v;
        memcpy(&v, src + 4 * c, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap32(v);
#endif
        dst[c] = ((v & 0xFF) << rs) | (((v >> 8) & 0xFF) << gs) | (((v >> 16) & 0xFF) << bs);
    }
}

/* Copy tile (ty, tx) into t (row-major, tw x th); return its size. */
static void
load_tile(const pixels_t *px, Py_ssize_t ty, Py_ssize_t tx, uint32_t *t,
          int *tw_out, int *th_out)
{
    Py_ssize_t x0 = tx * TILE, y0 = ty * TILE;
    int tw = (int)(px->width - x0 < TILE ? px->width - x0 : TILE);
    int th = (int)(px->height - y0 < TILE ? px->height - y0 : TILE);
    int is = px->itemsize;
    if (is == 0) {
        int rs = px->shifts[0], gs = px->shifts[1], bs = px->shifts[2];
        for (int r = 0; r < th; r++) {
            const uint8_t *row = px->data + (y0 + r) * px->stride + x0 * 4;
            uint32_t *dst = t + r * tw;
            if (rs == 16 && gs == 8 && bs == 0)   /* vncd's default format, QEMU's */
                rgbx_values(row, dst, tw, 16, 8, 0);
            else if (rs == 0 && gs == 8 && bs == 16)   /* noVNC's */
                rgbx_values(row, dst, tw, 0, 8, 16);
            else
                rgbx_values(row, dst, tw, rs, gs, bs);
        }
        *tw_out = tw;
        *th_out = th;
        return;
    }
    for (int r = 0; r < th; r++) {
        const uint8_t *row = px->data + (y0 + r) * px->stride + x0 * is;
        uint32_t *dst = t + r * tw;
        if (is == 4) {
            memcpy(dst, row, (size_t)tw * 4);
        }
        else {
            for (int c = 0; c < tw; c++)
                dst[c] = load_value(row + c * is, is);
        }
    }
    *tw_out = tw;
    *th_out = th;
}

/* The numpy encoder's decisions for one tile: its colours, background and
 * foreground, the number of 1-pixel-high runs of non-background pixels,
 * and the cheapest form. */
static void
analyse_tile(const uint32_t *t, int tw, int th, int bpp, int grow, rect_t *rects, tile_t *ti)
{
    ti->grown = 0;
    int n = tw * th;
    uint32_t c0 = t[0], c1 = c0;
    int colours = 1;
    /* Branch-free passes (they vectorise): one colour?  two? */
    uint32_t other = 0;
    for (int i = 0; i < n; i++)
        other |= t[i] ^ c0;
    if (other) {
        int i = 1;
        while (t[i] == c0)
            i++;
        c1 = t[i];
        unsigned third = 0;
        for (int j = i; j < n; j++)
            third |= (unsigned)((t[j] != c0) & (t[j] != c1));
        colours = third ? 3 : 2;
    }
    if (colours == 1) {
        ti->kind = KIND_SOLID;
        ti->bg = ti->fg = c0;
        ti->count = 0;
        return;
    }
    long raw_size = (long)tw * th * bpp;
    uint32_t bg;
    if (colours == 2) {
        uint32_t lo = c0 < c1 ? c0 : c1, hi = c0 < c1 ? c1 : c0;
        /* The numpy encoder pads partial tiles to 16x16 by repeating the
         * last row and column, and counts the padding too when it picks
         * the majority colour: weigh the last row and column accordingly. */
        long lo_count = 0;
        for (int r = 0; r < th; r++) {
            long wr = r == th - 1 ? TILE - th + 1 : 1;
            const uint32_t *row = t + r * tw;
            int in_row = 0;
            for (int c = 0; c < tw - 1; c++)
                in_row += row[c] == lo;
            lo_count += wr * (in_row + (long)(row[tw - 1] == lo) * (TILE - tw + 1));
        }
        int lo_majority = lo_count * 2 >= TILE * TILE;
        bg = lo_majority ? lo : hi;
        ti->fg = lo_majority ? hi : lo;
    }
    else {
        bg = t[0];
        ti->fg = bg;  /* unused: only two-colour tiles have a foreground */
    }
    ti->bg = bg;
    /* The most runs that still beat raw pixels; counting stops past it. */
    long limit = colours == 2 ? (raw_size - 2L * bpp - 2) / 2 : (raw_size - bpp - 2) / (bpp + 2);
    if (limit > MAX_SUBRECTS)
        limit = MAX_SUBRECTS;
    int count = 0;
    for (int r = 0; r < th && (count <= limit || grow); r++) {
        const uint32_t *row = t + r * tw;
        int in_row = row[0] != bg;
        for (int c = 1; c < tw; c++)
            in_row += (row[c] != bg) & (row[c] != row[c - 1]);
        count += in_row;
    }
    if (grow) {
        /* Grown rectangles when they are fewer (they can be more).  A run
         * joins the rectangle above it when it starts where a run of its
         * colour starts in the row above: when such runs are too few to
         * get under ``most``, growing is not tried (photo-like tiles). */
        int most = (int)(count <= limit ? count - 1 : limit);
        int above = 0;
        for (int r = 1; r < th; r++) {
            const uint32_t *row = t + r * tw, *up = row - tw;
            above += (row[0] != bg) & (row[0] == up[0]);
            for (int c = 1; c < tw; c++)
                above += (row[c] != bg) & (row[c] != row[c - 1]) & (row[c] == up[c])
                         & (up[c] != up[c - 1]);
        }
        int grown = above >= count - most
                    ? grown_rects(t, tw, th, bg, most, rects) : most + 1;
        if (grown <= most) {
            count = grown;
            ti->grown = 1;
        }
    }
    ti->count = count;
    if (count > limit)
        ti->kind = KIND_RAW;
    else
        ti->kind = colours == 2 ? KIND_MONO : KIND_COLOURED;
}

static inline uint8_t *
put_pixel(uint8_t *o, uint32_t v, int bpp, int big_endian)
{
    switch (bpp) {
    case 1:
        *o = (uint8_t)v;
        return o + 1;
    case 2:
        if (big_endian) {
            o[0] = (uint8_t)(v >> 8);
            o[1] = (uint8_t)v;
        }
        else {
            o[0] = (uint8_t)v;
            o[1] = (uint8_t)(v >> 8);
        }
        return o + 2;
    default:
        if (big_endian) {
            o[0] = (uint8_t)(v >> 24);
            o[1] = (uint8_t)(v >> 16);
            o[2] = (uint8_t)(v >> 8);
            o[3] = (uint8_t)v;
        }
        else {
            o[0] = (uint8_t)v;
            o[1] = (uint8_t)(v >> 8);
            o[2] = (uint8_t)(v >> 16);
            o[3] = (uint8_t)(v >> 24);
        }
        return o + 4;
    }
}

static uint8_t *
put_pixels(uint8_t *o, const uint32_t *v, int n, int bpp, int big_endian)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (bpp == 4 && !big_endian) {
        memcpy(o, v, (size_t)n * 4);
        return o + 4 * n;
    }
#endif
    switch (bpp) {
    case 1:
        for (int i = 0; i < n; i++)
            o[i] = (uint8_t)v[i];
        return o + n;
    case 2:
        for (int i = 0; i < n; i++)
            put_pixel(o + 2 * i, v[i], 2, big_endian);
        return o + 2 * n;
    default:
        for (int i = 0; i < n; i++)
            put_pixel(o + 4 * i, v[i], 4, big_endian);
        return o + 4 * n;
    }
}

/* Encode tile rows [row0, row1) into out; the tile before row0 (the last
 * of the previous tile row) sets the starting background/foreground state.
 * Returns the end of the written bytes. */
static uint8_t *
hextile_rows(const pixels_t *px, Py_ssize_t row0, Py_ssize_t row1, uint8_t *out)
{
    uint32_t t[TILE * TILE];
    rect_t rects[MAX_SUBRECTS + 2];
    Py_ssize_t tiles_x = (px->width + TILE - 1) / TILE;
    int bpp = px->bpp, big = px->big_endian;
    int tw, th;
    tile_t prev = {KIND_RAW, 0, 0, 0}, cur;
    if (row0 > 0) {
        load_tile(px, row0 - 1, tiles_x - 1, t, &tw, &th);
        analyse_tile(t, tw, th, bpp, px->grow, NULL, &prev);
    }
    for (Py_ssize_t ty = row0; ty < row1; ty++) {
        for (Py_ssize_t tx = 0; tx < tiles_x; tx++) {
            load_tile(px, ty, tx, t, &tw, &th);
            analyse_tile(t, tw, th, bpp, px->grow, rects, &cur);
            if (cur.kind == KIND_RAW) {
                *out++ = RAW_BIT;
                out = put_pixels(out, t, tw * th, bpp, big);
                prev = cur;
                continue;
            }
            int with_bg = prev.kind == KIND_RAW || cur.bg != prev.bg;
            int with_fg = cur.kind == KIND_MONO && (prev.kind != KIND_MONO || cur.fg != prev.fg);
            int with_count = cur.kind != KIND_SOLID;
            *out++ = (uint8_t)((with_bg ? BACKGROUND_SPECIFIED : 0)
                               | (with_fg ? FOREGROUND_SPECIFIED : 0)
                               | (with_count ? ANY_SUBRECTS : 0)
                               | (cur.kind == KIND_COLOURED ? SUBRECTS_COLOURED : 0));
            if (with_bg)
                out = put_pixel(out, cur.bg, bpp, big);
            if (with_fg)
                out = put_pixel(out, cur.fg, bpp, big);
            if (with_count && cur.grown) {
                *out++ = (uint8_t)cur.count;
                for (int k = 0; k < cur.count; k++) {
                    if (cur.kind == KIND_COLOURED)
                        out = put_pixel(out, rects[k].colour, bpp, big);
                    *out++ = rects[k].xy;
                    *out++ = rects[k].wh;
                }
            }
            else if (with_count) {
                *out++ = (uint8_t)cur.count;
                int coloured = cur.kind == KIND_COLOURED;
                for (int r = 0; r < th; r++) {
                    const uint32_t *row = t + r * tw;
                    int c = 0;
                    while (c < tw) {
                        uint32_t v = row[c];
                        if (v == cur.bg) {
                            c++;
                            continue;
                        }
                        int end = c + 1;
                        while (end < tw && row[end] == v)
                            end++;
                        if (coloured)
                            out = put_pixel(out, v, bpp, big);
                        *out++ = (uint8_t)((c << 4) | r);
                        *out++ = (uint8_t)((end - c - 1) << 4);
                        c = end;
                    }
                }
            }
            prev = cur;
        }
    }
    return out;
}

/* Check the tile-row range, allocate and encode (the GIL released). */
/* ``obj`` as a C-contiguous 2-D buffer of native unsigned pixel values
 * (uint8, uint16 or uint32), its item size in *itemsize; -1 with the
 * buffer released and an exception set when it is not one. */
static int
get_values(PyObject *obj, Py_buffer *view, int *itemsize)
{
    if (get_buffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT, "values",
                   "a C-contiguous buffer of pixel values") < 0)
        return -1;
    *itemsize = native_unsigned_size(view);
    if (view->ndim != 2) {
        PyErr_Format(PyExc_ValueError, "values must have 2 dimensions, not %d", view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    if (!*itemsize) {
        PyErr_Format(PyExc_TypeError, "values must hold native uint8, uint16 or uint32, "
                     "not format '%s' of %zd bytes",
                     view->format ? view->format : "B", view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The strip of tile rows [first_row, first_row + *rows) of a picture
 * ``height`` pixels tall in ``tile``-pixel rows (*rows == -1: to the end),
 * checked; its pixel rows in [*y0, *y1).  -1 with ValueError when the
 * strip is not inside the picture. */
static int
strip_rows(Py_ssize_t height, Py_ssize_t tile, Py_ssize_t first_row, Py_ssize_t *rows,
           Py_ssize_t *y0, Py_ssize_t *y1)
{
    Py_ssize_t tiles_y = (height + tile - 1) / tile;
    if (*rows < -1) {
        PyErr_Format(PyExc_ValueError, "rows must be -1 or at least 0, not %zd", *rows);
        return -1;
    }
    if (first_row < 0 || first_row > tiles_y) {
        PyErr_Format(PyExc_ValueError, "first_row %zd is outside 0 .. %zd", first_row, tiles_y);
        return -1;
    }
    if (*rows == -1)
        *rows = tiles_y - first_row;
    if (*rows > tiles_y - first_row) {
        PyErr_Format(PyExc_ValueError, "rows %zd from tile row %zd go past the %zd tile rows",
                     *rows, first_row, tiles_y);
        return -1;
    }
    *y0 = first_row * tile < height ? first_row * tile : height;
    *y1 = (first_row + *rows) * tile < height ? (first_row + *rows) * tile : height;
    return 0;
}

static PyObject *
encode_rows(const pixels_t *px, Py_ssize_t first_row, Py_ssize_t rows, const Py_buffer *prefix)
{
    PyObject *result = NULL;
    Py_ssize_t height = px->height, width = px->width;
    int bpp = px->bpp;
    if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE) {
        PyErr_Format(PyExc_ValueError, "pixels must be 1x1 to %dx%d pixels, not %zdx%zd",
                     MAX_SIDE, MAX_SIDE, width, height);
        return NULL;
    }
    Py_ssize_t y0, y1;
    if (strip_rows(height, TILE, first_row, &rows, &y0, &y1) < 0)
        return NULL;
    Py_ssize_t tiles = rows * ((width + TILE - 1) / TILE);
    /* No tile is ever longer than its mask byte and raw pixels. */
    Py_ssize_t bound = prefix->len + tiles + (y1 - y0) * width * bpp;
    result = PyBytes_FromStringAndSize(NULL, bound);
    if (result == NULL)
        return NULL;
    uint8_t *start = (uint8_t *)PyBytes_AS_STRING(result), *end;
    if (prefix->len)
        memcpy(start, prefix->buf, prefix->len);
    Py_BEGIN_ALLOW_THREADS
    end = hextile_rows(px, first_row, first_row + rows, start + prefix->len);
    Py_END_ALLOW_THREADS
    if (end - start > bound) {  /* cannot happen: the bound holds for any tile */
        Py_FatalError("vncd.encoding._speedups: Hextile output overran its buffer");
    }
    if (_PyBytes_Resize(&result, end - start) < 0)
        return NULL;
    return result;
}

PyDoc_STRVAR(hextile_encode_doc,
"hextile_encode(values, bpp, big_endian, first_row=0, rows=-1, prefix=b'') -> bytes\n\n"
"The Hextile body (every tile, no rectangle header) of a rectangle whose\n"
"pixel values are ``values``: a C-contiguous 2-D array of native uint8,\n"
"uint16 or uint32.  ``bpp`` (1, 2 or 4) and ``big_endian`` give the wire\n"
"form of a value.  ``first_row`` and ``rows`` select a run of tile rows\n"
"(16 pixel rows each; -1: to the end); the pieces of consecutive runs\n"
"joined are the bytes of the whole rectangle.  The result starts with\n"
"``prefix`` (a rectangle header).  With ``grow`` false every subrectangle\n"
"is a 1-pixel-high run, as vncd.encoding.hextile.body_numpy writes them,\n"
"byte for byte; with ``grow`` true a tile whose runs can be covered by\n"
"fewer rectangles grown downwards (libvncserver's way) gets those.");

static PyObject *
hextile_encode(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"values", "bpp", "big_endian", "first_row", "rows", "prefix",
                               "grow", NULL};
    PyObject *obj;
    int bpp, big_endian, grow = 0;
    Py_ssize_t first_row = 0, rows = -1;
    Py_buffer prefix = {NULL, NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oip|nny*p:hextile_encode", keywords,
                                     &obj, &bpp, &big_endian, &first_row, &rows, &prefix,
                                     &grow))
        return NULL;
    if (bpp != 1 && bpp != 2 && bpp != 4) {
        PyErr_Format(PyExc_ValueError, "bpp must be 1, 2 or 4, not %d", bpp);
        PyBuffer_Release(&prefix);
        return NULL;
    }
    Py_buffer view;
    int itemsize;
    if (get_values(obj, &view, &itemsize) < 0) {
        PyBuffer_Release(&prefix);
        return NULL;
    }
    pixels_t px = {view.buf, view.shape[1], view.shape[0], view.shape[1] * itemsize, itemsize,
                   {0, 0, 0}, bpp, big_endian, grow};
    PyObject *result = encode_rows(&px, first_row, rows, &prefix);
    PyBuffer_Release(&view);
    PyBuffer_Release(&prefix);
    return result;
}

PyDoc_STRVAR(hextile_encode_rgbx_doc,
"hextile_encode_rgbx(rgbx, red_shift, green_shift, blue_shift, big_endian,\n"
"                    first_row=0, rows=-1, prefix=b'') -> bytes\n\n"
"As hextile_encode, for a 32-bit format with 8-bit channels, straight from\n"
"an (h, w, 4) uint8 RGBX array (pixels contiguous, any row stride): each\n"
"pixel's value is R << red_shift | G << green_shift | B << blue_shift.\n"
"``grow``: as hextile_encode.");

static PyObject *
hextile_encode_rgbx(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"rgbx", "red_shift", "green_shift", "blue_shift", "big_endian",
                               "first_row", "rows", "prefix", "grow", NULL};
    PyObject *obj;
    int shifts[3], big_endian, grow = 0;
    Py_ssize_t first_row = 0, rows = -1;
    Py_buffer prefix = {NULL, NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oiiip|nny*p:hextile_encode_rgbx", keywords,
                                     &obj, &shifts[0], &shifts[1], &shifts[2], &big_endian,
                                     &first_row, &rows, &prefix, &grow))
        return NULL;
    for (int i = 0; i < 3; i++) {
        if (shifts[i] < 0 || shifts[i] > 24) {
            PyErr_Format(PyExc_ValueError, "channel shifts must be 0 to 24, not %d", shifts[i]);
            PyBuffer_Release(&prefix);
            return NULL;
        }
    }
    Py_buffer view;
    if (get_buffer(obj, &view, PyBUF_RECORDS_RO, "rgbx", "an (h, w, 4) uint8 array") < 0) {
        PyBuffer_Release(&prefix);
        return NULL;
    }
    PyObject *result = NULL;
    if (check_rgbx(&view, "rgbx") == 0) {
        pixels_t px = {view.buf, view.shape[1], view.shape[0], view.strides[0], 0,
                       {shifts[0], shifts[1], shifts[2]}, 4, big_endian, grow};
        result = encode_rows(&px, first_row, rows, &prefix);
    }
    PyBuffer_Release(&view);
    PyBuffer_Release(&prefix);
    return result;
}

/* ------------------------------------------------------------------------ */
/* ZRLE tiles (rfbproto 7.7.6), before deflate                                */

#define ZTILE 64
#define MAX_PACKED_PALETTE 16
#define MAX_RLE_PALETTE 127
#define PALETTE_SLOTS 256   /* open addressing, at most 128 used */

typedef struct {
    int bpp, big_endian, cstart, csize;
    int shift[4];   /* CPIXEL byte j is value >> shift[j] */
} zfmt_t;

static void
zfmt_init(zfmt_t *f, int bpp, int big_endian, int cstart, int csize)
{
    f->bpp = bpp;
    f->big_endian = big_endian;
    f->cstart = cstart;
    f->csize = csize;
    for (int j = 0; j < csize; j++) {
        int k = cstart + j;   /* wire byte */
        f->shift[j] = 8 * (big_endian ? bpp - 1 - k : k);
    }
}

static inline uint8_t *
put_cpixel(uint8_t *o, uint32_t v, const zfmt_t *f)
{
    switch (f->csize) {
    case 3:
        o[0] = (uint8_t)(v >> f->shift[0]);
        o[1] = (uint8_t)(v >> f->shift[1]);
        o[2] = (uint8_t)(v >> f->shift[2]);
        return o + 3;
    case 4:
        o[0] = (uint8_t)(v >> f->shift[0]);
        o[1] = (uint8_t)(v >> f->shift[1]);
        o[2] = (uint8_t)(v >> f->shift[2]);
        o[3] = (uint8_t)(v >> f->shift[3]);
        return o + 4;
    case 2:
        o[0] = (uint8_t)(v >> f->shift[0]);
        o[1] = (uint8_t)(v >> f->shift[1]);
        return o + 2;
    default:
        o[0] = (uint8_t)(v >> f->shift[0]);
        return o + 1;
    }
}

/* n raw CPIXELs; the common 3-byte little-endian CPIXEL of a 32-bit
 * pixel without a loop over the format. */
static uint8_t *
put_cpixels(uint8_t *o, const uint32_t *v, int n, const zfmt_t *f)
{
    if (f->csize == 3 && f->shift[0] == 0 && f->shift[1] == 8 && f->shift[2] == 16) {
        for (int i = 0; i < n; i++) {
            o[3 * i] = (uint8_t)v[i];
            o[3 * i + 1] = (uint8_t)(v[i] >> 8);
            o[3 * i + 2] = (uint8_t)(v[i] >> 16);
        }
        return o + 3 * n;
    }
    for (int i = 0; i < n; i++)
        o = put_cpixel(o, v[i], f);
    return o;
}

static inline uint8_t *
put_run_length(uint8_t *o, long len)
{
    long rest = len - 1;
    while (rest >= 255) {
        *o++ = 255;
        rest -= 255;
    }
    *o++ = (uint8_t)rest;
    return o;
}

typedef struct {
    uint32_t key[PALETTE_SLOTS];
    int16_t index[PALETTE_SLOTS];   /* -1: empty, else the colour's sorted index */
} palette_map_t;

static inline unsigned
slot_of(uint32_t v)
{
    v *= 2654435761u;
    return v >> 24;
}

static inline int
map_find(const palette_map_t *m, uint32_t v)
{
    unsigned s = slot_of(v);
    while (m->index[s] >= 0 && m->key[s] != v)
        s = (s + 1) & (PALETTE_SLOTS - 1);
    return s;
}

static int
compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* One tile in the smallest form, with the numpy encoder's choices
 * (vncd/encoding/zrle.py _tile). */
static uint8_t *
zrle_tile(const uint32_t *t, int tw, int th, const zfmt_t *f, palette_map_t *m, uint8_t *o)
{
    int n = tw * th, cs = f->csize;
    uint32_t palette[MAX_RLE_PALETTE + 1];
    int ncol = 0;
    memset(m->index, 0xFF, sizeof(m->index));
    for (int i = 0; i < n; i++) {
        uint32_t v = t[i];
        if (i && v == t[i - 1])
            continue;
        int s = map_find(m, v);
        if (m->index[s] >= 0)
            continue;
        if (ncol == MAX_RLE_PALETTE) {
            ncol = MAX_RLE_PALETTE + 1;   /* too many for a palette */
            break;
        }
        m->key[s] = v;
        m->index[s] = 0;
        palette[ncol++] = v;
    }
    if (ncol == 1) {
        *o++ = 1;
        return put_cpixel(o, palette[0], f);
    }
    if (ncol > MAX_RLE_PALETTE) {
        /* Each run costs a CPIXEL and a length byte at least: when that
         * bound already reaches raw's size, the tile is raw (photos). */
        long starts = 1;
        for (int i = 1; i < n; i++)
            starts += t[i] != t[i - 1];
        if (starts * (cs + 1) >= (long)n * cs) {
            *o++ = 0;
            return put_cpixels(o, t, n, f);
        }
    }
    long runs = 0, plain = 0, prle = 0;
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && t[j] == t[i])
            j++;
        long len = j - i, lbytes = (len - 1) / 255 + 1;
        runs++;
        plain += cs + lbytes;
        prle += len == 1 ? 1 : 1 + lbytes;
        i = j;
    }
    enum { RAW, PLAIN, PRLE, PACKED } best = RAW;
    long size = (long)n * cs;
    if (plain < size) {
        best = PLAIN;
        size = plain;
    }
    if (ncol <= MAX_RLE_PALETTE) {
        prle += (long)ncol * cs;
        if (prle < size) {
            best = PRLE;
            size = prle;
        }
    }
    int bits = ncol == 2 ? 1 : ncol <= 4 ? 2 : 4;
    if (ncol <= MAX_PACKED_PALETTE) {
        long packed = (long)ncol * cs + (long)((tw * bits + 7) / 8) * th;
        if (packed < size) {
            best = PACKED;
            size = packed;
        }
    }
    if (best == RAW) {
        *o++ = 0;
        return put_cpixels(o, t, n, f);
    }
    if (best == PLAIN) {
        *o++ = 128;
        for (int i = 0; i < n;) {
            int j = i + 1;
            while (j < n && t[j] == t[i])
                j++;
            o = put_cpixel(o, t[i], f);
            o = put_run_length(o, j - i);
            i = j;
        }
        return o;
    }
    /* Palette forms: sorted colours, and each colour's index in the map. */
    qsort(palette, (size_t)ncol, sizeof(uint32_t), compare_u32);
    for (int k = 0; k < ncol; k++)
        m->index[map_find(m, palette[k])] = (int16_t)k;
    *o++ = (uint8_t)(best == PACKED ? ncol : 128 + ncol);
    for (int k = 0; k < ncol; k++)
        o = put_cpixel(o, palette[k], f);
    if (best == PACKED) {
        for (int r = 0; r < th; r++) {
            unsigned acc = 0;
            int used = 0;
            for (int c = 0; c < tw; c++) {
                acc = (acc << bits) | (unsigned)m->index[map_find(m, t[r * tw + c])];
                used += bits;
                if (used == 8) {
                    *o++ = (uint8_t)acc;
                    acc = 0;
                    used = 0;
                }
            }
            if (used)
                *o++ = (uint8_t)(acc << (8 - used));
        }
        return o;
    }
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && t[j] == t[i])
            j++;
        uint8_t idx = (uint8_t)m->index[map_find(m, t[i])];
        if (j - i == 1) {
            *o++ = idx;
        }
        else {
            *o++ = idx | 128;
            o = put_run_length(o, j - i);
        }
        i = j;
    }
    return o;
}

static uint8_t *
zrle_rows(const pixels_t *px, const zfmt_t *f, Py_ssize_t row0, Py_ssize_t row1, uint8_t *o,
          uint32_t *t, palette_map_t *m)
{
    Py_ssize_t tiles_x = (px->width + ZTILE - 1) / ZTILE;
    for (Py_ssize_t ty = row0; ty < row1; ty++) {
        Py_ssize_t y0 = ty * ZTILE;
        int th = (int)(px->height - y0 < ZTILE ? px->height - y0 : ZTILE);
        for (Py_ssize_t tx = 0; tx < tiles_x; tx++) {
            Py_ssize_t x0 = tx * ZTILE;
            int tw = (int)(px->width - x0 < ZTILE ? px->width - x0 : ZTILE);
            for (int r = 0; r < th; r++) {
                const uint8_t *row = px->data + (y0 + r) * px->stride + x0 * px->itemsize;
                uint32_t *dst = t + r * tw;
                if (px->itemsize == 4)
                    memcpy(dst, row, (size_t)tw * 4);
                else
                    for (int c = 0; c < tw; c++)
                        dst[c] = load_value(row + c * px->itemsize, px->itemsize);
            }
            o = zrle_tile(t, tw, th, f, m, o);
        }
    }
    return o;
}

PyDoc_STRVAR(zrle_tiles_doc,
"zrle_tiles(values, bpp, big_endian, cpixel_start, cpixel_size, first_row=0,\n"
"           rows=-1) -> bytes\n\n"
"The uncompressed ZRLE tile stream of a rectangle whose pixel values are\n"
"``values`` (a C-contiguous 2-D array of native uint8, uint16 or uint32),\n"
"each tile in the smallest form, as vncd.encoding.zrle.zrle_tiles writes\n"
"it.  A CPIXEL is bytes ``cpixel_start`` .. ``+cpixel_size`` of the\n"
"``bpp``-byte wire pixel.  ``first_row`` and ``rows`` select a run of\n"
"tile rows (64 pixel rows each; -1: to the end): tiles are independent,\n"
"the pieces of consecutive runs joined are the whole stream.");

static PyObject *
zrle_tiles(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"values", "bpp", "big_endian", "cpixel_start", "cpixel_size",
                               "first_row", "rows", NULL};
    PyObject *obj;
    int bpp, big_endian, cstart, csize;
    Py_ssize_t first_row = 0, rows = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oipii|nn:zrle_tiles", keywords, &obj, &bpp,
                                     &big_endian, &cstart, &csize, &first_row, &rows))
        return NULL;
    if (bpp != 1 && bpp != 2 && bpp != 4) {
        PyErr_Format(PyExc_ValueError, "bpp must be 1, 2 or 4, not %d", bpp);
        return NULL;
    }
    if (csize < 1 || cstart < 0 || cstart + csize > bpp) {
        PyErr_Format(PyExc_ValueError, "CPIXEL bytes %d .. %d are not within a %d-byte pixel",
                     cstart, cstart + csize, bpp);
        return NULL;
    }
    Py_buffer view;
    int itemsize;
    if (get_values(obj, &view, &itemsize) < 0)
        return NULL;
    PyObject *result = NULL;
    uint32_t *tile = NULL;
    palette_map_t *map = NULL;
    Py_ssize_t height = view.shape[0], width = view.shape[1];
    if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE) {
        PyErr_Format(PyExc_ValueError, "values must be 1x1 to %dx%d pixels, not %zdx%zd",
                     MAX_SIDE, MAX_SIDE, width, height);
        goto done;
    }
    Py_ssize_t y0, y1;
    if (strip_rows(height, ZTILE, first_row, &rows, &y0, &y1) < 0)
        goto done;
    /* No tile is longer than its subencoding byte and raw CPIXELs. */
    Py_ssize_t bound = rows * ((width + ZTILE - 1) / ZTILE) + (y1 - y0) * width * csize;
    tile = PyMem_Malloc(sizeof(uint32_t) * ZTILE * ZTILE);
    map = PyMem_Malloc(sizeof(palette_map_t));
    if (tile == NULL || map == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, bound);
    if (result == NULL)
        goto done;
    pixels_t px = {view.buf, width, height, width * itemsize, itemsize, {0, 0, 0}, bpp,
                   big_endian, 0};
    zfmt_t fmt;
    zfmt_init(&fmt, bpp, big_endian, cstart, csize);
    uint8_t *start = (uint8_t *)PyBytes_AS_STRING(result), *end;
    Py_BEGIN_ALLOW_THREADS
    end = zrle_rows(&px, &fmt, first_row, first_row + rows, start, tile, map);
    Py_END_ALLOW_THREADS
    if (end - start > bound)
        Py_FatalError("vncd.encoding._speedups: ZRLE output overran its buffer");
    if (_PyBytes_Resize(&result, end - start) < 0)
        result = NULL;
done:
    PyMem_Free(tile);
    PyMem_Free(map);
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------------ */
/* RGBX regions (h, w, 4) uint8 with any row stride                           */

typedef struct {
    const uint8_t *data;
    Py_ssize_t width, height, stride;
} rgbx_t;

/* Check an (h, w, 4) uint8 buffer whose pixels are 4 bytes apart and whose
 * rows may be further apart (a view of a mapping or of a larger frame). */
static int
check_rgbx(const Py_buffer *view, const char *name)
{
    if (view->ndim != 3 || view->shape[2] != 4) {
        PyErr_Format(PyExc_ValueError, "%s must have the shape (height, width, 4)", name);
        return -1;
    }
    if (native_unsigned_size(view) != 1) {
        PyErr_Format(PyExc_TypeError, "%s must hold uint8", name);
        return -1;
    }
    if (view->strides[2] != 1 || view->strides[1] != 4
        || (view->shape[0] > 1 && view->strides[0] < 4 * view->shape[1])) {
        PyErr_Format(PyExc_ValueError, "%s must have contiguous pixels and rows at "
                     "increasing addresses", name);
        return -1;
    }
    if (view->shape[0] > MAX_SIDE || view->shape[1] > MAX_SIDE) {
        PyErr_Format(PyExc_ValueError, "%s is larger than %dx%d", name, MAX_SIDE, MAX_SIDE);
        return -1;
    }
    return 0;
}

static int
byte_index(int value, const char *name)
{
    if (value < 0 || value > 3) {
        PyErr_Format(PyExc_ValueError, "%s must be a byte index 0..3, not %d", name, value);
        return -1;
    }
    return 0;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline __attribute__((always_inline)) void
shuffle_row_shifts(const uint8_t *restrict s, uint8_t *restrict d, Py_ssize_t width, int rs,
                   int gs, int bs)
{
    for (Py_ssize_t x = 0; x < width; x++) {
        uint32_t v, o;
        memcpy(&v, s + 4 * x, 4);
        o = ((v & 0xFF) << rs) | (((v >> 8) & 0xFF) << gs) | (((v >> 16) & 0xFF) << bs);
        memcpy(d + 4 * x, &o, 4);
    }
}
#endif

/* dst[r] = src[0], dst[g] = src[1], dst[b] = src[2], the fourth 0.  The
 * two byte orders clients mostly ask for (BGRX, the default, and RGBX) get
 * loops with constant shifts, and the loops an AVX2 build (SIMD_CLONES). */
SIMD_CLONES static void
shuffle_rows(const uint8_t *src, Py_ssize_t src_stride, uint8_t *dst, Py_ssize_t dst_stride,
             Py_ssize_t width, Py_ssize_t height, int r, int g, int b)
{
    for (Py_ssize_t y = 0; y < height; y++) {
        const uint8_t *s = src + y * src_stride;
        uint8_t *d = dst + y * dst_stride;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (r == 2 && g == 1 && b == 0)
            shuffle_row_shifts(s, d, width, 16, 8, 0);
        else if (r == 0 && g == 1 && b == 2)
            shuffle_row_shifts(s, d, width, 0, 8, 16);
        else
            shuffle_row_shifts(s, d, width, 8 * r, 8 * g, 8 * b);
#else
        for (Py_ssize_t x = 0; x < width; x++) {
            uint8_t o[4] = {0, 0, 0, 0};
            o[r] = s[4 * x];
            o[g] = s[4 * x + 1];
            o[b] = s[4 * x + 2];
            memcpy(d + 4 * x, o, 4);
        }
#endif
    }
}

PyDoc_STRVAR(raw_shuffle_doc,
"raw_shuffle(prefix, rgbx, red, green, blue) -> bytes\n\n"
"``prefix`` followed by the pixels of ``rgbx`` (an (h, w, 4) uint8 array,\n"
"pixels contiguous, any row stride) in scanline order as 4-byte wire\n"
"pixels: R at byte ``red``, G at ``green``, B at ``blue``, the other 0.");

static PyObject *
raw_shuffle(PyObject *self, PyObject *args)
{
    Py_buffer prefix, view;
    PyObject *obj, *result = NULL;
    int r, g, b;
    if (!PyArg_ParseTuple(args, "y*Oiii:raw_shuffle", &prefix, &obj, &r, &g, &b))
        return NULL;
    if (byte_index(r, "red") < 0 || byte_index(g, "green") < 0 || byte_index(b, "blue") < 0) {
        PyBuffer_Release(&prefix);
        return NULL;
    }
    if (r == g || g == b || r == b) {
        PyErr_SetString(PyExc_ValueError, "red, green and blue must be different bytes");
        PyBuffer_Release(&prefix);
        return NULL;
    }
    if (get_buffer(obj, &view, PyBUF_RECORDS_RO, "rgbx", "an (h, w, 4) uint8 array") < 0) {
        PyBuffer_Release(&prefix);
        return NULL;
    }
    if (check_rgbx(&view, "rgbx") < 0)
        goto done;
    Py_ssize_t h = view.shape[0], w = view.shape[1];
    result = PyBytes_FromStringAndSize(NULL, prefix.len + h * w * 4);
    if (result == NULL)
        goto done;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    memcpy(out, prefix.buf, prefix.len);
    Py_BEGIN_ALLOW_THREADS
    shuffle_rows(view.buf, view.strides[0], out + prefix.len, 4 * w, w, h, r, g, b);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&view);
    PyBuffer_Release(&prefix);
    return result;
}

/* ------------------------------------------------------------------------ */
/* The file screen's look                                                     */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* A source pixel (read as a little-endian word) as the framebuffer's RGB
 * word: red from byte rs/8, green from gs/8, blue from bs/8; fourth byte 0. */
static inline uint32_t
rgb_of(uint32_t v, int rs, int gs, int bs)
{
    return ((v >> rs) & 0xFF) | (((v >> gs) & 0xFF) << 8) | (((v >> bs) & 0xFF) << 16);
}
#endif


/* Whether any of ``n`` source pixels, converted, differs from the
 * framebuffer's R, G and B (its fourth byte and the source's unused byte
 * are not compared).  No early exit: the loop vectorises; the two byte
 * orders files have (rgbx, bgrx) get loops of their own, with constant
 * shifts the compiler turns into byte shuffles. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline __attribute__((always_inline)) int
differs_shifts(const uint8_t *restrict src, const uint8_t *restrict fb, Py_ssize_t n,
               int rs, int gs, int bs)
{
    uint32_t acc = 0;
    for (Py_ssize_t x = 0; x < n; x++) {
        uint32_t v, f;
        memcpy(&v, src + 4 * x, 4);
        memcpy(&f, fb + 4 * x, 4);
        acc |= (rgb_of(v, rs, gs, bs) ^ f) & 0x00FFFFFFu;
    }
    return acc != 0;
}
#endif

SIMD_CLONES static int
converted_differs(const uint8_t *restrict src, const uint8_t *restrict fb, Py_ssize_t n,
                  int r, int g, int b)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (r == 0 && g == 1 && b == 2)
        return differs_shifts(src, fb, n, 0, 8, 16);
    if (r == 2 && g == 1 && b == 0)
        return differs_shifts(src, fb, n, 16, 8, 0);
    return differs_shifts(src, fb, n, 8 * r, 8 * g, 8 * b);
#else
    for (Py_ssize_t x = 0; x < n; x++)
        if (fb[4 * x] != src[4 * x + r] || fb[4 * x + 1] != src[4 * x + g]
            || fb[4 * x + 2] != src[4 * x + b])
            return 1;
    return 0;
#endif
}

/* ``n`` source pixels converted into the framebuffer (R, G, B from bytes
 * r, g, b of each source pixel, the framebuffer's fourth byte kept). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline __attribute__((always_inline)) void
convert_shifts(const uint8_t *restrict src, uint8_t *restrict fb, Py_ssize_t n,
               int rs, int gs, int bs)
{
    for (Py_ssize_t x = 0; x < n; x++) {
        uint32_t v, old, o;
        memcpy(&v, src + 4 * x, 4);
        memcpy(&old, fb + 4 * x, 4);
        o = rgb_of(v, rs, gs, bs) | (old & 0xFF000000u);
        memcpy(fb + 4 * x, &o, 4);
    }
}
#endif

SIMD_CLONES static void
convert_into(const uint8_t *restrict src, uint8_t *restrict fb, Py_ssize_t n, int r, int g,
             int b)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (r == 0 && g == 1 && b == 2)
        convert_shifts(src, fb, n, 0, 8, 16);
    else if (r == 2 && g == 1 && b == 0)
        convert_shifts(src, fb, n, 16, 8, 0);
    else
        convert_shifts(src, fb, n, 8 * r, 8 * g, 8 * b);
#else
    for (Py_ssize_t x = 0; x < n; x++) {
        fb[4 * x] = src[4 * x + r];
        fb[4 * x + 1] = src[4 * x + g];
        fb[4 * x + 2] = src[4 * x + b];
    }
#endif
}

/* How a tile walk compares a source row segment with a target one and
 * brings the target up to date: ``n`` pixels each. */
typedef struct {
    int (*differs)(const uint8_t *src, const uint8_t *dst, Py_ssize_t n, const int *rgb);
    void (*apply)(const uint8_t *src, uint8_t *dst, Py_ssize_t n, const int *rgb);
    const int *rgb;   /* the source bytes of R, G and B (look), or NULL */
} tile_ops_t;

/* Compare ``src`` with ``dst`` (h x w pixels of 4 bytes, rows ``sstride`` /
 * ``dstride`` bytes apart) in squares of ``tile`` pixels; flags (ty * tx
 * bytes, row-major) get 1 for each square that differs, or for every one
 * with ``force``; with ``ops->apply``, each such square of ``dst`` is
 * brought up to date.  While no square of a band has changed, one compare
 * of the whole row skips an unchanged row; after that only the squares
 * not yet known to have changed are read.  Runs without the GIL. */
static void
walk_tiles(const uint8_t *src, Py_ssize_t sstride, uint8_t *dst, Py_ssize_t dstride,
           Py_ssize_t h, Py_ssize_t w, Py_ssize_t tile, int force, uint8_t *flags,
           const tile_ops_t *ops)
{
    Py_ssize_t ty = (h + tile - 1) / tile, tx = (w + tile - 1) / tile;
    memset(flags, force ? 1 : 0, (size_t)(ty * tx));
    for (Py_ssize_t i = 0; i < ty; i++) {
        Py_ssize_t y0 = i * tile, y1 = y0 + tile < h ? y0 + tile : h;
        uint8_t *band = flags + i * tx;
        Py_ssize_t flagged = force ? tx : 0;
        for (Py_ssize_t y = y0; y < y1 && flagged < tx; y++) {
            const uint8_t *sr = src + y * sstride;
            const uint8_t *dr = dst + y * dstride;
            if (!flagged && !ops->differs(sr, dr, w, ops->rgb))
                continue;
            for (Py_ssize_t j = 0; j < tx; j++) {
                if (band[j])
                    continue;
                Py_ssize_t x0 = j * tile, n = x0 + tile < w ? tile : w - x0;
                if (ops->differs(sr + 4 * x0, dr + 4 * x0, n, ops->rgb)) {
                    band[j] = 1;
                    flagged++;
                }
            }
        }
        if (!flagged || ops->apply == NULL)
            continue;
        for (Py_ssize_t y = y0; y < y1; y++) {
            const uint8_t *sr = src + y * sstride;
            uint8_t *dr = dst + y * dstride;
            if (flagged == tx) {
                ops->apply(sr, dr, w, ops->rgb);
                continue;
            }
            for (Py_ssize_t j = 0; j < tx; j++) {
                if (!band[j])
                    continue;
                Py_ssize_t x0 = j * tile, n = x0 + tile < w ? tile : w - x0;
                ops->apply(sr + 4 * x0, dr + 4 * x0, n, ops->rgb);
            }
        }
    }
}

static int
look_differs(const uint8_t *src, const uint8_t *dst, Py_ssize_t n, const int *rgb)
{
    return converted_differs(src, dst, n, rgb[0], rgb[1], rgb[2]);
}

static void
look_apply(const uint8_t *src, uint8_t *dst, Py_ssize_t n, const int *rgb)
{
    convert_into(src, dst, n, rgb[0], rgb[1], rgb[2]);
}

static int
bytes_differ(const uint8_t *src, const uint8_t *dst, Py_ssize_t n, const int *rgb)
{
    (void)rgb;
    return memcmp(src, dst, (size_t)(4 * n)) != 0;
}

static void
bytes_copy(const uint8_t *src, uint8_t *dst, Py_ssize_t n, const int *rgb)
{
    (void)rgb;
    memcpy(dst, src, (size_t)(4 * n));
}

PyDoc_STRVAR(look_tiles_doc,
"look_tiles(src, framebuffer, tile, red, green, blue, force) -> bytes\n\n"
"Compare ``src`` (an (h, w, 4) uint8 array, pixels contiguous, any row\n"
"stride: the mapped file) with ``framebuffer`` (C-contiguous (h, w, 4)\n"
"RGBX, writable) in squares of ``tile`` x ``tile`` pixels (partial at the\n"
"right and bottom edges): a source pixel is the same when its bytes\n"
"``red``, ``green`` and ``blue`` are the framebuffer pixel's R, G and B.\n"
"Each square that differs, or every square when ``force`` is true, is\n"
"converted into ``framebuffer`` (its fourth byte left alone).  Returns one\n"
"byte per square in row-major order, 1 where it changed.  Whole rows are\n"
"compared until one differs, then the squares not yet found changed one\n"
"by one; one pass over both arrays, no copy kept, without the GIL.");

static PyObject *
look_tiles(PyObject *self, PyObject *args)
{
    PyObject *src_obj, *fb_obj;
    Py_ssize_t tile;
    int r, g, b, force;
    if (!PyArg_ParseTuple(args, "OOniiip:look_tiles", &src_obj, &fb_obj, &tile, &r, &g, &b,
                          &force))
        return NULL;
    if (tile < 1 || tile > MAX_SIDE) {
        PyErr_Format(PyExc_ValueError, "tile must be 1 to %d, not %zd", MAX_SIDE, tile);
        return NULL;
    }
    if (byte_index(r, "red") < 0 || byte_index(g, "green") < 0 || byte_index(b, "blue") < 0)
        return NULL;
    Py_buffer src, fb;
    if (get_buffer(src_obj, &src, PyBUF_RECORDS_RO, "src", "an (h, w, 4) uint8 array") < 0)
        return NULL;
    if (get_buffer(fb_obj, &fb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE,
                   "framebuffer", "a writable C-contiguous (h, w, 4) uint8 array") < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    PyObject *result = NULL;
    if (check_rgbx(&src, "src") < 0 || check_rgbx(&fb, "framebuffer") < 0)
        goto done;
    Py_ssize_t h = src.shape[0], w = src.shape[1];
    if (fb.shape[0] != h || fb.shape[1] != w) {
        PyErr_SetString(PyExc_ValueError, "src and framebuffer must have the same shape");
        goto done;
    }
    Py_ssize_t ty = (h + tile - 1) / tile, tx = (w + tile - 1) / tile;
    result = PyBytes_FromStringAndSize(NULL, ty * tx);
    if (result == NULL)
        goto done;
    const int rgb[3] = {r, g, b};
    const tile_ops_t ops = {look_differs, look_apply, rgb};
    uint8_t *flags = (uint8_t *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    walk_tiles(src.buf, src.strides[0], fb.buf, 4 * w, h, w, tile, force, flags, &ops);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&fb);
    return result;
}

/* ------------------------------------------------------------------------ */
/* Damage: which tiles of a framebuffer differ from a snapshot                */

PyDoc_STRVAR(tile_compare_doc,
"tile_compare(snapshot, live, tile=16, copy=True) -> bytes\n\n"
"Compare two (h, w, 4) uint8 arrays (pixels contiguous, any row stride;\n"
"``snapshot`` writable when ``copy``) tile by tile, ``tile`` x ``tile``\n"
"pixels (partial at the right and bottom edges).  Returns one byte per\n"
"tile in row-major order, 1 where any byte differs; with ``copy`` each\n"
"tile that differs is copied from ``live`` into ``snapshot`` (so the\n"
"snapshot ends equal to ``live``).  One memcmp per tile row, no\n"
"temporaries, without the GIL.");

static PyObject *
tile_compare(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"snapshot", "live", "tile", "copy", NULL};
    PyObject *snap_obj, *live_obj;
    Py_ssize_t tile = 16;
    int copy = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|np:tile_compare", keywords, &snap_obj,
                                     &live_obj, &tile, &copy))
        return NULL;
    if (tile < 1 || tile > MAX_SIDE) {
        PyErr_Format(PyExc_ValueError, "tile must be 1 to %d, not %zd", MAX_SIDE, tile);
        return NULL;
    }
    Py_buffer snap, live;
    if (get_buffer(snap_obj, &snap, PyBUF_RECORDS_RO | (copy ? PyBUF_WRITABLE : 0), "snapshot",
                   copy ? "a writable (h, w, 4) uint8 array" : "an (h, w, 4) uint8 array") < 0)
        return NULL;
    if (get_buffer(live_obj, &live, PyBUF_RECORDS_RO, "live", "an (h, w, 4) uint8 array") < 0) {
        PyBuffer_Release(&snap);
        return NULL;
    }
    PyObject *result = NULL;
    if (check_rgbx(&snap, "snapshot") < 0 || check_rgbx(&live, "live") < 0)
        goto done;
    Py_ssize_t h = snap.shape[0], w = snap.shape[1];
    if (live.shape[0] != h || live.shape[1] != w) {
        PyErr_SetString(PyExc_ValueError, "snapshot and live must have the same shape");
        goto done;
    }
    Py_ssize_t ty = (h + tile - 1) / tile, tx = (w + tile - 1) / tile;
    result = PyBytes_FromStringAndSize(NULL, ty * tx);
    if (result == NULL)
        goto done;
    const tile_ops_t ops = {bytes_differ, copy ? bytes_copy : NULL, NULL};
    uint8_t *flags = (uint8_t *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    walk_tiles(live.buf, live.strides[0], snap.buf, snap.strides[0], h, w, tile, 0, flags,
               &ops);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&snap);
    PyBuffer_Release(&live);
    return result;
}

/* ------------------------------------------------------------------------ */
/* Tight: the colours of a piece                                              */

#define COLOUR_SLOTS 1024   /* open addressing, at most 1/4 full (limit <= 256) */
#define COLOUR_SAMPLE 4096  /* pixels looked at before the whole piece */

typedef struct {
    uint32_t key[COLOUR_SLOTS];     /* colour key + 1; 0 = empty */
    uint8_t index[COLOUR_SLOTS];
} colour_table_t;

static inline uint32_t
colour_key(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
}

static inline int
colour_slot(const colour_table_t *t, uint32_t key)
{
    uint32_t slot = (key * 2654435761u) >> 22;
    while (t->key[slot] != 0 && t->key[slot] != key + 1)
        slot = (slot + 1) & (COLOUR_SLOTS - 1);
    return (int)slot;
}

/* ``key`` into the table and ``colours`` if it is new: the new count, or
 * limit + 1 when it would be one colour too many. */
static inline int
add_colour(colour_table_t *t, uint32_t *colours, int count, int limit, uint32_t key)
{
    int slot = colour_slot(t, key);
    if (t->key[slot] != 0)
        return count;
    if (count == limit)
        return limit + 1;
    t->key[slot] = key + 1;
    colours[count] = key;
    return count + 1;
}

PyDoc_STRVAR(tight_palette_doc,
"tight_palette(region, limit) -> (colours, indices) or None\n\n"
"The distinct 24-bit colours of ``region`` (an (h, w, 4) uint8 RGBX array,\n"
"pixels contiguous, any row stride), keyed R | G << 8 | B << 16 as\n"
"vncd.encoding.tight does: None as soon as more than ``limit`` (1 to 256)\n"
"are seen -- in a spread-out sample of the pixels first, then in all of\n"
"them -- else the sorted\n"
"keys (native uint32 bytes) and each pixel's index among them (uint8\n"
"bytes, row-major).  Without the GIL.");

static PyObject *
tight_palette(PyObject *self, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "On:tight_palette", &obj, &limit))
        return NULL;
    if (limit < 1 || limit > 256) {
        PyErr_Format(PyExc_ValueError, "limit must be 1 to 256, not %zd", limit);
        return NULL;
    }
    Py_buffer view;
    if (get_buffer(obj, &view, PyBUF_RECORDS_RO, "region", "an (h, w, 4) uint8 array") < 0)
        return NULL;
    PyObject *result = NULL;
    colour_table_t *table = NULL;
    if (check_rgbx(&view, "region") < 0)
        goto done;
    Py_ssize_t h = view.shape[0], w = view.shape[1], stride = view.strides[0];
    if (h == 0 || w == 0) {
        PyErr_SetString(PyExc_ValueError, "region must not be empty");
        goto done;
    }
    table = PyMem_Calloc(1, sizeof(colour_table_t));
    if (table == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    uint32_t colours[256];
    int count = 0;
    const uint8_t *base = view.buf;
    Py_BEGIN_ALLOW_THREADS
    /* A spread-out sample first: a piece with too many colours usually
     * shows them there (a gradient's colours are far apart in scan order). */
    Py_ssize_t n = h * w, step = n / COLOUR_SAMPLE;
    for (Py_ssize_t i = 0; step > 1 && i < n && count <= limit; i += step) {
        count = add_colour(table, colours, count, limit,
                           colour_key(base + (i / w) * stride + 4 * (i % w)));
    }
    uint32_t last = colour_key(base) + 1;   /* differs from the first key */
    for (Py_ssize_t y = 0; y < h && count <= limit; y++) {
        const uint8_t *row = base + y * stride;
        for (Py_ssize_t x = 0; x < w; x++) {
            uint32_t key = colour_key(row + 4 * x);
            if (key == last)
                continue;
            last = key;
            count = add_colour(table, colours, count, limit, key);
            if (count > limit)
                break;
        }
    }
    Py_END_ALLOW_THREADS
    if (count > limit) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    qsort(colours, (size_t)count, sizeof(uint32_t), compare_u32);
    for (int i = 0; i < count; i++)
        table->index[colour_slot(table, colours[i])] = (uint8_t)i;
    PyObject *keys = PyBytes_FromStringAndSize((const char *)colours,
                                               (Py_ssize_t)(count * sizeof(uint32_t)));
    PyObject *indices = keys ? PyBytes_FromStringAndSize(NULL, h * w) : NULL;
    if (indices == NULL) {
        Py_XDECREF(keys);
        goto done;
    }
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(indices);
    Py_BEGIN_ALLOW_THREADS
    uint32_t last_key = colour_key(base);
    uint8_t last_index = table->index[colour_slot(table, last_key)];
    for (Py_ssize_t y = 0; y < h; y++) {
        const uint8_t *row = base + y * stride;
        for (Py_ssize_t x = 0; x < w; x++) {
            uint32_t key = colour_key(row + 4 * x);
            if (key != last_key) {
                last_key = key;
                last_index = table->index[colour_slot(table, key)];
            }
            *out++ = last_index;
        }
    }
    Py_END_ALLOW_THREADS
    result = PyTuple_Pack(2, keys, indices);
    Py_DECREF(keys);
    Py_DECREF(indices);
done:
    PyMem_Free(table);
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"hextile_encode", (PyCFunction)(void (*)(void))hextile_encode,
     METH_VARARGS | METH_KEYWORDS, hextile_encode_doc},
    {"hextile_encode_rgbx", (PyCFunction)(void (*)(void))hextile_encode_rgbx,
     METH_VARARGS | METH_KEYWORDS, hextile_encode_rgbx_doc},
    {"zrle_tiles", (PyCFunction)(void (*)(void))zrle_tiles, METH_VARARGS | METH_KEYWORDS,
     zrle_tiles_doc},
    {"raw_shuffle", raw_shuffle, METH_VARARGS, raw_shuffle_doc},
    {"look_tiles", look_tiles, METH_VARARGS, look_tiles_doc},
    {"tile_compare", (PyCFunction)(void (*)(void))tile_compare, METH_VARARGS | METH_KEYWORDS,
     tile_compare_doc},
    {"tight_palette", tight_palette, METH_VARARGS, tight_palette_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "vncd.encoding._speedups",
    "C loops for the Hextile and Raw encoders and the file screen (optional;\n"
    "the numpy code in vncd.encoding and vncd.screens.file does the same).",
    -1,
    methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
