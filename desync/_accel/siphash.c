/*
 * SipHash-2-4 (64-bit output) for catar GOODBYE tables.
 *
 * Every archived name is hashed once when writing and once when reading;
 * in Python the 64-bit arithmetic goes through arbitrary-precision ints and
 * costs more than the file-system work per entry.  Names are short, so the
 * GIL is kept.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t rotl64(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define SIPROUND(v0, v1, v2, v3)                 \
    do {                                         \
        v0 += v1; v1 = rotl64(v1, 13); v1 ^= v0; \
        v0 = rotl64(v0, 32);                     \
        v2 += v3; v3 = rotl64(v3, 16); v3 ^= v2; \
        v0 += v3; v3 = rotl64(v3, 21); v3 ^= v0; \
        v2 += v1; v1 = rotl64(v1, 17); v1 ^= v2; \
        v2 = rotl64(v2, 32);                     \
    } while (0)

static uint64_t siphash24(uint64_t k0, uint64_t k1, const unsigned char *data, size_t n)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    size_t full = n - (n % 8);
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load_le64(data + i);
        v3 ^= m;
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    unsigned char tail[8] = {0};
    memcpy(tail, data + full, n - full);
    uint64_t m = load_le64(tail) | ((uint64_t)(n & 0xff) << 56);
    v3 ^= m;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    v0 ^= m;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* siphash24(key: bytes (16), data: bytes-like) -> int */
static PyObject *py_siphash24(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "siphash24 expects (key, data)");
        return NULL;
    }
    Py_buffer key, data;
    if (PyObject_GetBuffer(args[0], &key, PyBUF_SIMPLE) != 0)
        return NULL;
    if (key.len != 16) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "SipHash key must be 16 bytes");
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) != 0) {
        PyBuffer_Release(&key);
        return NULL;
    }
    const unsigned char *k = key.buf;
    uint64_t h = siphash24(load_le64(k), load_le64(k + 8), data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return PyLong_FromUnsignedLongLong(h);
}

static PyMethodDef methods[] = {
    {"siphash24", (PyCFunction)(void (*)(void))py_siphash24, METH_FASTCALL, "SipHash-2-4 of data under a 16-byte key."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_siphash", "SipHash-2-4 for catar GOODBYE tables.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__siphash(void)
{
    return PyModule_Create(&module);
}
