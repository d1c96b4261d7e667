/*
 * desync._accel._chunker: the casync content-defined chunker in C.
 *
 * Byte-exact with casync 2 (docs/formats.md 6.4); desync/chunker.py holds
 * the pure-Python twin that must give identical results.  The scan runs
 * without the GIL so that several threads can chunk sections of one buffer
 * at the same time (desync.chunker.Chunker.parallel_boundaries).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>

#define WINDOW_SIZE 48

/* casync's buzhash table; docs/formats.md 6.2 gives its SHA-256 checksum. */
static const uint32_t buzhash_table[256] = {
    0x458be752, 0xc10748cc, 0xfbbcdbb8, 0x6ded5b68,
    0xb10a82b5, 0x20d75648, 0xdfc5665f, 0xa8428801,
    0x7ebf5191, 0x841135c7, 0x65cc53b3, 0x280a597c,
    0x16f60255, 0xc78cbc3e, 0x294415f5, 0xb938d494,
    0xec85c4e6, 0xb7d33edc, 0xe549b544, 0xfdeda5aa,
    0x882bf287, 0x3116737c, 0x05569956, 0xe8cc1f68,
    0x0806ac5e, 0x22a14443, 0x15297e10, 0x50d090e7,
    0x4ba60f6f, 0xefd9f1a7, 0x5c5c885c, 0x82482f93,
    0x9bfd7c64, 0x0b3e7276, 0xf2688e77, 0x8fad8abc,
    0xb0509568, 0xf1ada29f, 0xa53efdfe, 0xcb2b1d00,
    0xf2a9e986, 0x6463432b, 0x95094051, 0x5a223ad2,
    0x9be8401b, 0x61e579cb, 0x1a556a14, 0x5840fdc2,
    0x9261ddf6, 0xcde002bb, 0x52432bb0, 0xbf17373e,
    0x7b7c222f, 0x2955ed16, 0x9f10ca59, 0xe840c4c9,
    0xccabd806, 0x14543f34, 0x1462417a, 0x0d4a1f9c,
    0x087ed925, 0xd7f8f24c, 0x7338c425, 0xcf86c8f5,
    0xb19165cd, 0x9891c393, 0x325384ac, 0x0308459d,
    0x86141d7e, 0xc922116a, 0xe2ffa6b6, 0x53f52aed,
    0x2cd86197, 0xf5b9f498, 0xbf319c8f, 0xe0411fae,
    0x977eb18c, 0xd8770976, 0x9833466a, 0xc674df7f,
    0x8c297d45, 0x8ca48d26, 0xc49ed8e2, 0x7344f874,
    0x556f79c7, 0x6b25eaed, 0xa03e2b42, 0xf68f66a4,
    0x8e8b09a2, 0xf2e0e62a, 0x0d3a9806, 0x9729e493,
    0x8c72b0fc, 0x160b94f6, 0x450e4d3d, 0x7a320e85,
    0xbef8f0e1, 0x21d73653, 0x4e3d977a, 0x1e7b3929,
    0x1cc6c719, 0xbe478d53, 0x8d752809, 0xe6d8c2c6,
    0x275f0892, 0xc8acc273, 0x4cc21580, 0xecc4a617,
    0xf5f7be70, 0xe795248a, 0x375a2fe9, 0x425570b6,
    0x8898dcf8, 0xdc2d97c4, 0x0106114b, 0x364dc22f,
    0x1e0cad1f, 0xbe63803c, 0x5f69fac2, 0x4d5afa6f,
    0x1bc0dfb5, 0xfb273589, 0x0ea47f7b, 0x3c1c2b50,
    0x21b2a932, 0x6b1223fd, 0x2fe706a8, 0xf9bd6ce2,
    0xa268e64e, 0xe987f486, 0x3eacf563, 0x1ca2018c,
    0x65e18228, 0x2207360a, 0x57cf1715, 0x34c37d2b,
    0x1f8f3cde, 0x93b657cf, 0x31a019fd, 0xe69eb729,
    0x8bca7b9b, 0x4c9d5bed, 0x277ebeaf, 0xe0d8f8ae,
    0xd150821c, 0x31381871, 0xafc3f1b0, 0x927db328,
    0xe95effac, 0x305a47bd, 0x426ba35b, 0x1233af3f,
    0x686a5b83, 0x50e072e5, 0xd9d3bb2a, 0x8befc475,
    0x487f0de6, 0xc88dff89, 0xbd664d5e, 0x971b5d18,
    0x63b14847, 0xd7d3c1ce, 0x7f583cf3, 0x72cbcb09,
    0xc0d0a81c, 0x7fa3429b, 0xe9158a1b, 0x225ea19a,
    0xd8ca9ea3, 0xc763b282, 0xbb0c6341, 0x020b8293,
    0xd4cd299d, 0x58cfa7f8, 0x91b4ee53, 0x37e4d140,
    0x95ec764c, 0x30f76b06, 0x5ee68d24, 0x679c8661,
    0xa41979c2, 0xf2b61284, 0x4fac1475, 0x0adb49f9,
    0x19727a23, 0x15a7e374, 0xc43a18d5, 0x3fb1aa73,
    0x342fc615, 0x924c0793, 0xbee2d7f0, 0x8a279de9,
    0x4aa2d70c, 0xe24dd37f, 0xbe862c0b, 0x177c22c2,
    0x5388e5ee, 0xcd8a7510, 0xf901b4fd, 0xdbc13dbc,
    0x6c0bae5b, 0x64efe8c7, 0x48b02079, 0x80331a49,
    0xca3d8ae6, 0xf3546190, 0xfed7108b, 0xc49b941b,
    0x32baf4a9, 0xeb833a4a, 0x88a3f1a5, 0x3a91ce0a,
    0x3cc27da1, 0x7112e684, 0x4a3096b1, 0x3794574c,
    0xa3c8b6f3, 0x1d213941, 0x6e0a2e00, 0x233479f1,
    0x0f4cd82f, 0x6093edd2, 0x5d7d209e, 0x464fe319,
    0xd4dcac9e, 0x0db845cb, 0xfb5e4bc3, 0xe0256ce1,
    0x09fb4ed1, 0x0914be1e, 0xa5bdb2c3, 0xc6eb57bb,
    0x30320350, 0x3f397e91, 0xa67791bc, 0x86bc0e2c,
    0xefa0a7e2, 0xe9ff7543, 0xe733612c, 0xd185897b,
    0x329e5388, 0x91dd236b, 0x2ecb0d93, 0xf4d82a3d,
    0x35b5c03f, 0xe4e606f0, 0x05b21843, 0x37b45964,
    0x5eff22f4, 0x6027f4cc, 0x77178b3c, 0xae507131,
    0x7bf7cabc, 0xf9c18d66, 0x593ade65, 0xd95ddf11,
};

/*
 * The same values rotated left by WINDOW_SIZE % 32: the contribution of the
 * byte leaving the window, precomputed so the rolling step needs no extra
 * rotation.
 */
static uint32_t buzhash_table_out[256];

static inline uint32_t
rol32(uint32_t x, unsigned r)
{
    r &= 31u;
    return (x << r) | (x >> ((32u - r) & 31u));
}

static uint32_t
hash_window(const uint8_t *w)
{
    uint32_t h = 0;
    for (size_t i = 0; i < WINDOW_SIZE; i++)
        h = rol32(h, 1) ^ buzhash_table[w[i]];
    return h;
}

/*
 * casync cuts where h % d == d - 1, i.e. where h + 1 is divisible by d.  A
 * 32-bit division per byte would dominate the scan, so test divisibility
 * with Lemire's method instead: n is a multiple of d iff n * c <= c - 1
 * (mod 2^64) with c = floor((2^64 - 1) / d) + 1.  That is exact while
 * 64 >= bits(n) + log2(d): n = h + 1 needs 33 bits and d <= 2^27 (128 MiB).
 * d == 1 makes c wrap to 0, which still answers "always" as it must.  (Also
 * checked exhaustively over all 2^32 hashes for a spread of d up to 2^27.)
 */
static inline int
is_boundary(uint32_t h, uint64_t c)
{
    return ((uint64_t)h + 1u) * c <= c - 1u;
}

typedef struct {
    size_t *items;
    size_t len;
    size_t cap;
} offsets;

static int
offsets_push(offsets *o, size_t value)
{
    if (o->len == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        size_t *items = realloc(o->items, cap * sizeof *items);
        if (items == NULL)
            return -1;
        o->items = items;
        o->cap = cap;
    }
    o->items[o->len++] = value;
    return 0;
}

/*
 * Roll the window over q[0..n) (q[i - 48] leaves as q[i] enters).
 * Returns how many bytes were rolled in when the hash first met the
 * boundary test, or 0 if it never did; *hp carries the hash in and out.
 */
static size_t
roll(const uint8_t *q, size_t n, uint32_t *hp, uint64_t c)
{
    const uint8_t *o = q - WINDOW_SIZE;
    uint32_t h = *hp;
    size_t i = 0;

    for (; i + 4 <= n; i += 4) {
        h = rol32(h, 1) ^ buzhash_table_out[o[i]] ^ buzhash_table[q[i]];
        if (is_boundary(h, c)) {
            *hp = h;
            return i + 1;
        }
        h = rol32(h, 1) ^ buzhash_table_out[o[i + 1]] ^ buzhash_table[q[i + 1]];
        if (is_boundary(h, c)) {
            *hp = h;
            return i + 2;
        }
        h = rol32(h, 1) ^ buzhash_table_out[o[i + 2]] ^ buzhash_table[q[i + 2]];
        if (is_boundary(h, c)) {
            *hp = h;
            return i + 3;
        }
        h = rol32(h, 1) ^ buzhash_table_out[o[i + 3]] ^ buzhash_table[q[i + 3]];
        if (is_boundary(h, c)) {
            *hp = h;
            return i + 4;
        }
    }
    for (; i < n; i++) {
        h = rol32(h, 1) ^ buzhash_table_out[o[i]] ^ buzhash_table[q[i]];
        if (is_boundary(h, c)) {
            *hp = h;
            return i + 1;
        }
    }
    *hp = h;
    return 0;
}

/*
 * Chunk buf[start:end), start being a true boundary, appending the end
 * offset of every complete chunk (and, if final, of the trailing rest).
 * Returns -1 only when memory runs out.
 */
static int
scan(const uint8_t *buf, size_t start, size_t end, int final,
     size_t min_size, size_t max_size, uint32_t discriminator, offsets *out)
{
    size_t s = start;

    if (min_size == max_size) {
        /* Fixed-size mode: casync does not hash at all. */
        while (end - s >= min_size) {
            s += min_size;
            if (offsets_push(out, s) < 0)
                return -1;
        }
        if (final && s < end && offsets_push(out, end) < 0)
            return -1;
        return 0;
    }

    const uint64_t c = UINT64_MAX / discriminator + 1u;
    /* The window is primed to end at max(min, 48): the first test. */
    const size_t prime = min_size > WINDOW_SIZE ? min_size : WINDOW_SIZE;

    while (s < end) {
        size_t remaining = end - s;
        if (remaining < prime) {
            if (final && offsets_push(out, end) < 0)
                return -1;
            return 0;
        }
        size_t limit = remaining < max_size ? remaining : max_size;
        uint32_t h = hash_window(buf + s + prime - WINDOW_SIZE);
        size_t cut;
        if (is_boundary(h, c)) {
            cut = prime;
        } else {
            size_t rolled = roll(buf + s + prime, limit - prime, &h, c);
            if (rolled)
                cut = prime + rolled;
            else if (limit == max_size)
                cut = max_size;
            else {
                /* Input ends inside the chunk. */
                if (final && offsets_push(out, end) < 0)
                    return -1;
                return 0;
            }
        }
        s += cut;
        if (offsets_push(out, s) < 0)
            return -1;
    }
    return 0;
}

static PyObject *
chunker_boundaries(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError,
                     "boundaries() takes 7 arguments (buf, start, end, final, "
                     "min_size, max_size, discriminator), %zd given", nargs);
        return NULL;
    }

    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred())
        return NULL;
    int final = PyObject_IsTrue(args[3]);
    if (final < 0)
        return NULL;
    Py_ssize_t min_size = PyLong_AsSsize_t(args[4]);
    if (min_size == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t max_size = PyLong_AsSsize_t(args[5]);
    if (max_size == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t discriminator = PyLong_AsSsize_t(args[6]);
    if (discriminator == -1 && PyErr_Occurred())
        return NULL;

    if (min_size < 1 || max_size < min_size) {
        PyErr_SetString(PyExc_ValueError, "need 1 <= min_size <= max_size");
        return NULL;
    }
    if (min_size != max_size && max_size < WINDOW_SIZE) {
        PyErr_SetString(PyExc_ValueError,
                        "max_size must be at least 48 unless min_size == max_size");
        return NULL;
    }
    if (discriminator < 1 || (uint64_t)discriminator > (UINT64_C(1) << 27)) {
        PyErr_SetString(PyExc_ValueError, "discriminator must be in [1, 2**27]");
        return NULL;
    }

    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (start < 0 || start > end || end > view.len) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError,
                     "need 0 <= start <= end <= len(buf), got start=%zd end=%zd len=%zd",
                     start, end, view.len);
        return NULL;
    }

    offsets out = {NULL, 0, 0};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = scan((const uint8_t *)view.buf, (size_t)start, (size_t)end, final,
              (size_t)min_size, (size_t)max_size, (uint32_t)discriminator, &out);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);

    if (rc < 0) {
        free(out.items);
        return PyErr_NoMemory();
    }
    PyObject *result = PyList_New((Py_ssize_t)out.len);
    if (result == NULL) {
        free(out.items);
        return NULL;
    }
    for (size_t i = 0; i < out.len; i++) {
        PyObject *value = PyLong_FromSize_t(out.items[i]);
        if (value == NULL) {
            free(out.items);
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, value);
    }
    free(out.items);
    return result;
}

static PyObject *
chunker_window_hash(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len != WINDOW_SIZE) {
        Py_ssize_t len = view.len;
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "window must be 48 bytes, got %zd", len);
        return NULL;
    }
    uint32_t h = hash_window((const uint8_t *)view.buf);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(h);
}

static PyMethodDef chunker_methods[] = {
    {"boundaries", (PyCFunction)(void (*)(void))chunker_boundaries, METH_FASTCALL,
     "boundaries(buf, start, end, final, min_size, max_size, discriminator) -> list[int]\n\n"
     "End offsets of the chunks of buf[start:end] (casync's algorithm); see\n"
     "desync.chunker.Chunker.boundaries.  Runs without the GIL."},
    {"window_hash", chunker_window_hash, METH_O,
     "window_hash(buf) -> int\n\nBuzhash of exactly 48 bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef chunker_module = {
    PyModuleDef_HEAD_INIT,
    "desync._accel._chunker",
    "casync-compatible content-defined chunker (C accelerator).",
    -1,
    chunker_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__chunker(void)
{
    for (size_t i = 0; i < 256; i++)
        buzhash_table_out[i] = rol32(buzhash_table[i], WINDOW_SIZE % 32);
    return PyModule_Create(&chunker_module);
}
