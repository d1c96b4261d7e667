/*
 * Whole-file reads of many small files with the GIL released once per batch.
 *
 * Extracting a blob reads thousands of chunk files; done one os.open/os.read/
 * os.close at a time, every call hands the GIL to another worker and the
 * futex traffic costs more than the reads.  read_files() opens, sizes and
 * reads a whole batch in two GIL-free passes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* read_files(paths: list[bytes]) -> list[bytes | int]
 * Each result is the file's content, or the errno (int) that stopped it. */
static PyObject *read_files(PyObject *self, PyObject *arg)
{
    (void)self;
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "read_files expects a list of bytes paths");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    const char **paths = PyMem_Calloc((size_t)(n ? n : 1), sizeof(char *));
    int *fds = PyMem_Calloc((size_t)(n ? n : 1), sizeof(int));
    int *errs = PyMem_Calloc((size_t)(n ? n : 1), sizeof(int));
    off_t *sizes = PyMem_Calloc((size_t)(n ? n : 1), sizeof(off_t));
    char **bufs = PyMem_Calloc((size_t)(n ? n : 1), sizeof(char *));
    PyObject *result = NULL;
    PyObject **objs = PyMem_Calloc((size_t)(n ? n : 1), sizeof(PyObject *));
    if (!paths || !fds || !errs || !sizes || !bufs || !objs) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyList_GET_ITEM(arg, i);
        if (!PyBytes_Check(p)) {
            PyErr_SetString(PyExc_TypeError, "read_files expects a list of bytes paths");
            goto done;
        }
        paths[i] = PyBytes_AS_STRING(p);
        fds[i] = -1;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        struct stat st;
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            errs[i] = errno;
            continue;
        }
        if (fstat(fd, &st) != 0) {
            errs[i] = errno;
            close(fd);
            continue;
        }
        fds[i] = fd;
        sizes[i] = st.st_size;
    }
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (fds[i] < 0)
            continue;
        objs[i] = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizes[i]);
        if (!objs[i])
            goto done;
        bufs[i] = PyBytes_AS_STRING(objs[i]);
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (fds[i] < 0)
            continue;
        off_t got = 0;
        while (got < sizes[i]) {
            ssize_t r = read(fds[i], bufs[i] + got, (size_t)(sizes[i] - got));
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                errs[i] = errno;
                break;
            }
            if (r == 0) {
                errs[i] = EIO; /* the file shrank while we read it */
                break;
            }
            got += r;
        }
        close(fds[i]);
        fds[i] = -1;
    }
    Py_END_ALLOW_THREADS
    result = PyList_New(n);
    if (!result)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item;
        if (errs[i]) {
            item = PyLong_FromLong(errs[i]);
            if (!item) {
                Py_CLEAR(result);
                goto done;
            }
        } else {
            item = objs[i];
            objs[i] = NULL;
        }
        PyList_SET_ITEM(result, i, item);
    }
done:
    if (fds)
        for (Py_ssize_t i = 0; i < n; i++)
            if (fds[i] >= 0)
                close(fds[i]);
    if (objs)
        for (Py_ssize_t i = 0; i < n; i++)
            Py_XDECREF(objs[i]);
    PyMem_Free(paths);
    PyMem_Free(fds);
    PyMem_Free(errs);
    PyMem_Free(sizes);
    PyMem_Free(bufs);
    PyMem_Free(objs);
    return result;
}

/* tune_allocator() -> bool
 * Chunk buffers (64 KiB - 256 KiB) and segments (8 MiB) come and go by the
 * thousand; glibc would mmap and unmap many of them, paying page faults each
 * time.  Keeping them in the heap (and not trimming it eagerly) removes most
 * of that kernel time.  Returns False where the C library has no such knobs. */
static PyObject *tune_allocator(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
#ifdef __GLIBC__
    int ok = mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) && mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    return PyBool_FromLong(ok);
#else
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef methods[] = {
    {"tune_allocator", tune_allocator, METH_NOARGS, "Keep chunk-sized buffers in the heap (glibc)."},
    {"read_files", read_files, METH_O, "Read whole files; each result is bytes or an errno."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fileio", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fileio(void) { return PyModule_Create(&module); }
