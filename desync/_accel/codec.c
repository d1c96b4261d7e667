/*
 * Chunk hashing, decoding and storing for a whole batch per GIL release.
 *
 * hashlib and python-zstandard release the GIL once per call, so a worker
 * hashing, decompressing and writing chunks one at a time hands the GIL
 * over several times per chunk; with many workers they queue for it.
 * These functions do a batch of chunks between one release and the next,
 * with libcrypto (the SHA-2 code hashlib itself uses) and libzstd.
 *
 * Every function leaves the verdicts and messages to the Python code: an
 * item that fails here is reported as such (None, or an errno) and the
 * caller runs the ordinary path on it, which raises the usual error.  So a
 * success here is one the Python path would also give, and a failure costs
 * only a second, slower look.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <zstd.h>

/* Algorithm codes, as desync.digest numbers them. */
#define ALGO_NONE (-1)
#define ALGO_SHA256 0
#define ALGO_SHA512_256 1
#define DIGEST_LEN 32

static const EVP_MD *md_sha256;
static const EVP_MD *md_sha512_256;

/* Per-thread contexts, freed when the thread ends: making a compression context per batch costs more
 * than compressing a small chunk. */
static pthread_key_t contexts_key;

typedef struct {
    EVP_MD_CTX *md;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
} Contexts;

static void free_contexts(void *p)
{
    Contexts *c = p;
    if (!c)
        return;
    EVP_MD_CTX_free(c->md);
    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    free(c);
}

/* This thread's contexts, made on first use; NULL when memory runs out.  Called without the GIL. */
static Contexts *contexts(void)
{
    Contexts *c = pthread_getspecific(contexts_key);
    if (c)
        return c;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->md = EVP_MD_CTX_new();
    c->cctx = ZSTD_createCCtx();
    c->dctx = ZSTD_createDCtx();
    if (!c->md || !c->cctx || !c->dctx || pthread_setspecific(contexts_key, c) != 0) {
        free_contexts(c);
        return NULL;
    }
    return c;
}

static const EVP_MD *md_for(int algo)
{
    return algo == ALGO_SHA512_256 ? md_sha512_256 : algo == ALGO_SHA256 ? md_sha256 : NULL;
}

/* The digest of data[0:len] into out; 0 on success.  Called without the GIL. */
static int hash_into(EVP_MD_CTX *ctx, const EVP_MD *md, const void *data, size_t len, unsigned char *out)
{
    unsigned int n = 0;
    if (EVP_DigestInit_ex(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, data, len) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &n) != 1 || n != DIGEST_LEN)
        return -1;
    return 0;
}

static int check_algo(int algo, int allow_none)
{
    if ((algo == ALGO_NONE && allow_none) || md_for(algo))
        return 0;
    PyErr_Format(PyExc_ValueError, "unknown digest code %d", algo);
    return -1;
}

/* digests(algo, buf, start, ends) -> list[bytes]
 * The digests of buf[start:ends[0]], buf[ends[0]:ends[1]], ...: a batch of chunks cut from one buffer. */
static PyObject *digests(PyObject *self, PyObject *args)
{
    (void)self;
    int algo;
    Py_buffer view;
    Py_ssize_t start;
    PyObject *ends_list;
    if (!PyArg_ParseTuple(args, "iy*nO!", &algo, &view, &start, &PyList_Type, &ends_list))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = PyList_GET_SIZE(ends_list);
    Py_ssize_t *ends = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Py_ssize_t));
    unsigned char *out = PyMem_Malloc((size_t)(n ? n : 1) * DIGEST_LEN);
    if (!ends || !out) {
        PyErr_NoMemory();
        goto done;
    }
    if (check_algo(algo, 0) < 0)
        goto done;
    Py_ssize_t prev = start;
    if (start < 0 || start > view.len) {
        PyErr_SetString(PyExc_ValueError, "digests: start outside the buffer");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        ends[i] = PyLong_AsSsize_t(PyList_GET_ITEM(ends_list, i));
        if (ends[i] == -1 && PyErr_Occurred())
            goto done;
        if (ends[i] < prev || ends[i] > view.len) {
            PyErr_SetString(PyExc_ValueError, "digests: ends must rise within the buffer");
            goto done;
        }
        prev = ends[i];
    }
    const EVP_MD *md = md_for(algo);
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    Contexts *c = contexts();
    const unsigned char *base = view.buf;
    Py_ssize_t pos = start;
    for (Py_ssize_t i = 0; i < n && c; i++) {
        if (hash_into(c->md, md, base + pos, (size_t)(ends[i] - pos), out + i * DIGEST_LEN) != 0) {
            failed = 1;
            break;
        }
        pos = ends[i];
    }
    if (!c)
        failed = 1;
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_SetString(PyExc_MemoryError, "digests: libcrypto failed");
        goto done;
    }
    result = PyList_New(n);
    if (!result)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyBytes_FromStringAndSize((const char *)out + i * DIGEST_LEN, DIGEST_LEN);
        if (!d) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, d);
    }
done:
    PyMem_Free(ends);
    PyMem_Free(out);
    PyBuffer_Release(&view);
    return result;
}

static const unsigned char ZSTD_FRAME_MAGIC[4] = {0x28, 0xb5, 0x2f, 0xfd};

/* decode_verify(algo, items, limit) -> list[bytes | None]
 * items: (chunk_id, stored, size, compressed).  Each result is the chunk's content when ``stored``
 * (one zstd frame, or the plain content) holds exactly ``size`` bytes (0 < size < limit) hashing
 * to ``chunk_id`` (not checked with algo -1), else None. */
static PyObject *decode_verify(PyObject *self, PyObject *args)
{
    (void)self;
    int algo;
    PyObject *items;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "iO!n", &algo, &PyList_Type, &items, &limit))
        return NULL;
    if (check_algo(algo, 1) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    size_t slots = (size_t)(n ? n : 1);
    PyObject **outs = PyMem_Calloc(slots, sizeof(PyObject *));
    const char **srcs = PyMem_Calloc(slots, sizeof(char *));
    Py_ssize_t *src_lens = PyMem_Calloc(slots, sizeof(Py_ssize_t));
    const char **ids = PyMem_Calloc(slots, sizeof(char *));
    char *ok = PyMem_Calloc(slots, 1);
    char *compressed = PyMem_Calloc(slots, 1);
    PyObject *result = NULL;
    if (!outs || !srcs || !src_lens || !ids || !ok || !compressed) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4 || !PyBytes_Check(PyTuple_GET_ITEM(item, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(item, 1))) {
            PyErr_SetString(PyExc_TypeError, "decode_verify expects (bytes, bytes, int, bool) items");
            goto done;
        }
        PyObject *id = PyTuple_GET_ITEM(item, 0), *stored = PyTuple_GET_ITEM(item, 1);
        Py_ssize_t size = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 2));
        if (size == -1 && PyErr_Occurred())
            goto done;
        int is_compressed = PyObject_IsTrue(PyTuple_GET_ITEM(item, 3));
        if (is_compressed < 0)
            goto done;
        compressed[i] = (char)is_compressed;
        srcs[i] = PyBytes_AS_STRING(stored);
        src_lens[i] = PyBytes_GET_SIZE(stored);
        ids[i] = PyBytes_GET_SIZE(id) == DIGEST_LEN ? PyBytes_AS_STRING(id) : NULL;
        if (size <= 0 || size >= limit || (algo != ALGO_NONE && !ids[i]))
            continue;  /* the Python path gives the verdict */
        if (!is_compressed) {
            if (src_lens[i] != size)
                continue;
            Py_INCREF(stored);
            outs[i] = stored;
        } else {
            if (src_lens[i] < 4 || memcmp(srcs[i], ZSTD_FRAME_MAGIC, 4) != 0)
                continue;
            outs[i] = PyBytes_FromStringAndSize(NULL, size);
            if (!outs[i])
                goto done;
        }
    }
    const EVP_MD *md = md_for(algo);
    int no_context = 0;
    Py_BEGIN_ALLOW_THREADS
    Contexts *c = contexts();
    for (Py_ssize_t i = 0; i < n && c; i++) {
        if (!outs[i])
            continue;
        char *content = PyBytes_AS_STRING(outs[i]);
        size_t size = (size_t)PyBytes_GET_SIZE(outs[i]);
        if (compressed[i]) {
            /* Exactly one frame, decoding to exactly ``size`` bytes; anything else goes to the Python path. */
            size_t frame = ZSTD_findFrameCompressedSize(srcs[i], (size_t)src_lens[i]);
            if (ZSTD_isError(frame) || frame != (size_t)src_lens[i])
                continue;
            size_t got = ZSTD_decompressDCtx(c->dctx, content, size, srcs[i], (size_t)src_lens[i]);
            if (ZSTD_isError(got) || got != size)
                continue;
        }
        if (md) {
            unsigned char actual[DIGEST_LEN];
            if (hash_into(c->md, md, content, size, actual) != 0 || memcmp(actual, ids[i], DIGEST_LEN) != 0)
                continue;
        }
        ok[i] = 1;
    }
    if (!c)
        no_context = 1;
    Py_END_ALLOW_THREADS
    if (no_context) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyList_New(n);
    if (!result)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = Py_None;
        if (ok[i]) {
            value = outs[i];
            outs[i] = NULL;
        } else {
            Py_INCREF(value);
        }
        PyList_SET_ITEM(result, i, value);
    }
done:
    if (outs) {
        for (Py_ssize_t i = 0; i < n; i++)
            Py_XDECREF(outs[i]);
    }
    PyMem_Free(outs);
    PyMem_Free(srcs);
    PyMem_Free(src_lens);
    PyMem_Free(ids);
    PyMem_Free(ok);
    PyMem_Free(compressed);
    return result;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Create the directory a path is in (one level: the store itself must exist); 0 when it now exists. */
static int make_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return -1;
    size_t len = (size_t)(slash - path);
    char *dir = malloc(len + 1);
    if (!dir)
        return -1;
    memcpy(dir, path, len);
    dir[len] = '\0';
    int rc = mkdir(dir, 0777);
    int saved = errno;
    free(dir);
    errno = saved;
    return rc == 0 || errno == EEXIST ? 0 : -1;
}

/* Write one chunk file: temp file, then rename.  Returns 0 or an errno; the temp file is gone on failure. */
static int store_one(const char *final, const char *tmp, const char *payload, size_t len)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0 && errno == ENOENT && make_parent(tmp) == 0)
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0)
        return errno;
    int err = 0;
    if (write_all(fd, payload, len) != 0)
        err = errno;
    if (close(fd) != 0 && !err && errno != EINTR)
        err = errno;
    if (!err && rename(tmp, final) != 0)
        err = errno;
    if (err)
        unlink(tmp);
    return err;
}

/* store_chunks(items, level) -> list[int]
 * items: (final, other, tmp, content).  For each chunk whose file (``final``, or its other form
 * ``other``) does not exist yet: compress ``content`` at zstd ``level`` (or keep it plain with a
 * negative level), write it to ``tmp`` (mode 0444) and rename that to ``final``, making the prefix
 * directory when missing.  Results: -1 already there, 0 written, else the errno that stopped it. */
static PyObject *store_chunks(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *items;
    int level;
    if (!PyArg_ParseTuple(args, "O!i", &PyList_Type, &items, &level))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    size_t slots = (size_t)(n ? n : 1);
    const char **finals = PyMem_Calloc(slots, sizeof(char *));
    const char **others = PyMem_Calloc(slots, sizeof(char *));
    const char **tmps = PyMem_Calloc(slots, sizeof(char *));
    Py_buffer *views = PyMem_Calloc(slots, sizeof(Py_buffer));
    int *codes = PyMem_Calloc(slots, sizeof(int));
    Py_ssize_t held = 0;
    PyObject *result = NULL;
    if (!finals || !others || !tmps || !views || !codes) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4 || !PyBytes_Check(PyTuple_GET_ITEM(item, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(item, 1)) || !PyBytes_Check(PyTuple_GET_ITEM(item, 2))) {
            PyErr_SetString(PyExc_TypeError, "store_chunks expects (bytes, bytes, bytes, buffer) items");
            goto done;
        }
        finals[i] = PyBytes_AS_STRING(PyTuple_GET_ITEM(item, 0));
        others[i] = PyBytes_AS_STRING(PyTuple_GET_ITEM(item, 1));
        tmps[i] = PyBytes_AS_STRING(PyTuple_GET_ITEM(item, 2));
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, 3), &views[i], PyBUF_SIMPLE) < 0)
            goto done;
        held = i + 1;
    }
    int no_memory = 0;
    Py_BEGIN_ALLOW_THREADS
    Contexts *c = level >= 0 ? contexts() : NULL;
    char *packed = NULL;
    size_t packed_cap = 0;
    if (level >= 0 && !c)
        no_memory = 1;
    for (Py_ssize_t i = 0; i < n && !no_memory; i++) {
        struct stat st;
        if (stat(finals[i], &st) == 0 || stat(others[i], &st) == 0) {
            codes[i] = -1;
            continue;
        }
        const char *payload = views[i].buf;
        size_t len = (size_t)views[i].len;
        if (level >= 0) {
            size_t bound = ZSTD_compressBound(len);
            if (bound > packed_cap) {
                char *grown = realloc(packed, bound);
                if (!grown) {
                    codes[i] = ENOMEM;
                    continue;
                }
                packed = grown;
                packed_cap = bound;
            }
            size_t got = ZSTD_compressCCtx(c->cctx, packed, packed_cap, payload, len, level);
            if (ZSTD_isError(got)) {
                codes[i] = EIO;
                continue;
            }
            payload = packed;
            len = got;
        }
        codes[i] = store_one(finals[i], tmps[i], payload, len);
    }
    free(packed);
    Py_END_ALLOW_THREADS
    if (no_memory) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyList_New(n);
    if (!result)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *code = PyLong_FromLong(codes[i]);
        if (!code) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, code);
    }
done:
    for (Py_ssize_t i = 0; i < held; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(finals);
    PyMem_Free(others);
    PyMem_Free(tmps);
    PyMem_Free(views);
    PyMem_Free(codes);
    return result;
}

static PyMethodDef methods[] = {
    {"digests", digests, METH_VARARGS, "Digests of consecutive ranges of a buffer."},
    {"decode_verify", decode_verify, METH_VARARGS, "Decode and verify a batch of stored chunks."},
    {"store_chunks", store_chunks, METH_VARARGS, "Compress and write a batch of chunk files."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_codec", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__codec(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    /* Fetched once: the EVP_sha*() getters look the implementation up again at every digest. */
    md_sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    md_sha512_256 = EVP_MD_fetch(NULL, "SHA2-512/256", NULL);
#else
    md_sha256 = EVP_sha256();
    md_sha512_256 = EVP_sha512_256();
#endif
    if (!md_sha256 || !md_sha512_256) {
        PyErr_SetString(PyExc_ImportError, "libcrypto has no SHA-256 or SHA-512/256");
        return NULL;
    }
    if (pthread_key_create(&contexts_key, free_contexts) != 0) {
        PyErr_SetString(PyExc_ImportError, "cannot make per-thread storage");
        return NULL;
    }
    return PyModule_Create(&module);
}
