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
#include <limits.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* read_files(paths: list[bytes], limits: list[int]) -> list[bytes | int]
 * Each result is the file's content, or the errno (int) that stopped it: EISDIR or EINVAL for
 * something other than a regular file, EFBIG for a file larger than its limit.  Files are opened
 * non-blocking and checked with fstat before anything is read, so a FIFO cannot hang the batch
 * and a huge sparse file is not read. */
static PyObject *read_files(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *arg, *limit_list;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &arg, &PyList_Type, &limit_list))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(arg);
    if (PyList_GET_SIZE(limit_list) != n) {
        PyErr_SetString(PyExc_ValueError, "read_files needs one limit per path");
        return NULL;
    }
    const char **paths = PyMem_Calloc((size_t)(n ? n : 1), sizeof(char *));
    int *fds = PyMem_Calloc((size_t)(n ? n : 1), sizeof(int));
    int *errs = PyMem_Calloc((size_t)(n ? n : 1), sizeof(int));
    off_t *sizes = PyMem_Calloc((size_t)(n ? n : 1), sizeof(off_t));
    long long *limits = PyMem_Calloc((size_t)(n ? n : 1), sizeof(long long));
    char **bufs = PyMem_Calloc((size_t)(n ? n : 1), sizeof(char *));
    PyObject *result = NULL;
    PyObject **objs = PyMem_Calloc((size_t)(n ? n : 1), sizeof(PyObject *));
    if (!paths || !fds || !errs || !sizes || !limits || !bufs || !objs) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        fds[i] = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyList_GET_ITEM(arg, i);
        if (!PyBytes_Check(p)) {
            PyErr_SetString(PyExc_TypeError, "read_files expects a list of bytes paths");
            goto done;
        }
        paths[i] = PyBytes_AS_STRING(p);
        limits[i] = PyLong_AsLongLong(PyList_GET_ITEM(limit_list, i));
        if (limits[i] == -1 && PyErr_Occurred())
            goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        struct stat st;
        int fd = open(paths[i], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            errs[i] = errno;
            continue;
        }
        if (fstat(fd, &st) != 0)
            errs[i] = errno;
        else if (S_ISDIR(st.st_mode))
            errs[i] = EISDIR;
        else if (!S_ISREG(st.st_mode))
            errs[i] = EINVAL;
        else if ((long long)st.st_size > limits[i])
            errs[i] = EFBIG;
        if (errs[i]) {
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
    PyMem_Free(limits);
    PyMem_Free(bufs);
    PyMem_Free(objs);
    return result;
}

#define COPY_BUFFER (1 << 20)

static int write_fully(int fd, const char *p, Py_ssize_t left)
{
    while (left > 0) {
        ssize_t w = write(fd, p, (size_t)left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += w;
        left -= w;
    }
    return 0;
}

/* Appends n bytes of src to out: from *offset (advanced) or, when offset is NULL, from src's
 * position.  In the kernel while the pair allows (*kernel), else through *buf (allocated on
 * first need).  Returns 0, an errno, or -1 when src ended early. */
static int copy_bytes(int src, off_t *offset, int out, long long n, char **buf, int *kernel)
{
    while (n > 0) {
        ssize_t r;
        if (*kernel) {
            r = copy_file_range(src, offset, out, NULL, (size_t)n, 0);
            if (r < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP ||
                          errno == EBADF)) {
                *kernel = 0;
                continue;
            }
        } else {
            if (!*buf && !(*buf = malloc(COPY_BUFFER)))
                return ENOMEM;
            size_t want = (size_t)(n < COPY_BUFFER ? n : COPY_BUFFER);
            r = offset ? pread(src, *buf, want, *offset) : read(src, *buf, want);
            if (r > 0) {
                int rc = write_fully(out, *buf, r);
                if (rc)
                    return rc;
                if (offset)
                    *offset += r;
            }
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (r == 0)
            return -1;
        n -= r;
    }
    return 0;
}

/* write_items(out_fd: int, items: list[bytes | tuple[int, int]]) -> tuple[int, int] | None
 * Appends the items to out_fd in order: bytes as they are, (fd, size) as the
 * next size bytes of fd, which is then closed.  Every descriptor given is
 * closed, whatever happens.  The GIL is released once for the whole batch.
 * Returns None, or (index, errno) of the first item that failed, errno 0
 * meaning its source ended early; nothing after it is written. */
static PyObject *write_items(PyObject *self, PyObject *args)
{
    (void)self;
    int out;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "iO!", &out, &PyList_Type, &list))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    const char **data = PyMem_Calloc((size_t)(n ? n : 1), sizeof(char *));
    Py_ssize_t *lens = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Py_ssize_t));
    int *fds = PyMem_Calloc((size_t)(n ? n : 1), sizeof(int));
    if (!data || !lens || !fds) {
        PyMem_Free(data);
        PyMem_Free(lens);
        PyMem_Free(fds);
        return PyErr_NoMemory();
    }
    int parse_error = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        fds[i] = -1;
        if (PyBytes_Check(item)) {
            data[i] = PyBytes_AS_STRING(item);
            lens[i] = PyBytes_GET_SIZE(item);
        } else if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2) {
            long fd = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
            long long size = PyLong_AsLongLong(PyTuple_GET_ITEM(item, 1));
            if ((fd == -1 || size == -1) && PyErr_Occurred()) {
                parse_error = 1;
                continue;
            }
            fds[i] = (int)fd;
            lens[i] = (Py_ssize_t)size;
        } else if (!parse_error) {
            PyErr_SetString(PyExc_TypeError, "write_items expects bytes or (fd, size) tuples");
            parse_error = 1;
        }
    }
    Py_ssize_t failed = -1;
    int failed_errno = 0;
    char *buf = NULL;
    Py_BEGIN_ALLOW_THREADS
    int kernel = 1;
    for (Py_ssize_t i = 0; i < n && !parse_error && failed < 0; i++) {
        int rc = fds[i] < 0 ? write_fully(out, data[i], lens[i])
                            : copy_bytes(fds[i], NULL, out, (long long)lens[i], &buf, &kernel);
        if (rc) {
            failed = i;
            failed_errno = rc < 0 ? 0 : rc;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(buf);
    Py_END_ALLOW_THREADS
    PyMem_Free(data);
    PyMem_Free(lens);
    PyMem_Free(fds);
    if (parse_error)
        return NULL;
    if (failed < 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(ni)", failed, failed_errno);
}

struct finish_job {
    int fd;
    PyObject *blocks; /* list of bytes, borrowed from the job tuple */
    int src_fd;
    long long src_offset, src_size;
    long long uid, gid;
    int mode;
    int set_times;
    long long mtime_sec;
    long mtime_nsec;
};

/* Splits an mtime in ns into seconds and ns as the Python twin's os.utime does: any value from
 * -2^63 to 2^64-1, so an archive's unsigned 64-bit mtime (casync's reading) is never an overflow.
 * Returns -1 with an exception set outside that range. */
static int split_mtime(PyObject *value, long long *sec, long *nsec)
{
    int overflow = 0;
    long long ns = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (ns == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(value);
        if (u == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        *sec = (long long)(u / 1000000000ULL);
        *nsec = (long)(u % 1000000000ULL);
        return 0;
    }
    if (overflow < 0) {
        PyErr_SetString(PyExc_OverflowError, "mtime out of range");
        return -1;
    }
    *sec = ns / 1000000000LL;
    *nsec = (long)(ns % 1000000000LL);
    if (*nsec < 0) {
        *nsec += 1000000000L;
        *sec -= 1;
    }
    return 0;
}

/* finish_files(jobs: list[tuple]) -> tuple[int, int, str] | None
 * Each job is (fd, blocks, src_fd, src_offset, src_size, uid, gid, mode, set_times, mtime_ns):
 * write the blocks, then src_size bytes of src_fd from src_offset (src_fd < 0: none), chown to
 * uid/gid (uid < 0: leave), chmod, set atime and mtime (when set_times), close fd.  Every job's
 * fd is closed whatever happens; the GIL is released once for the batch.  Returns None, or
 * (index, errno, step) of the first failure (errno 0: the source ended early); later jobs are
 * only closed. */
static PyObject *finish_files(PyObject *self, PyObject *arg)
{
    (void)self;
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "finish_files expects a list of job tuples");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    struct finish_job *jobs = PyMem_Calloc((size_t)(n ? n : 1), sizeof(struct finish_job));
    if (!jobs)
        return PyErr_NoMemory();
    int parse_error = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        struct finish_job *j = &jobs[i];
        PyObject *t = PyList_GET_ITEM(arg, i);
        j->fd = -1;
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 10 || !PyList_Check(PyTuple_GET_ITEM(t, 1))) {
            if (!parse_error)
                PyErr_SetString(PyExc_TypeError, "finish_files: malformed job");
            parse_error = 1;
            continue;
        }
        j->fd = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
        j->blocks = PyTuple_GET_ITEM(t, 1);
        j->src_fd = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 2));
        j->src_offset = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 3));
        j->src_size = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 4));
        j->uid = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 5));
        j->gid = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 6));
        j->mode = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 7));
        j->set_times = PyObject_IsTrue(PyTuple_GET_ITEM(t, 8));
        if (split_mtime(PyTuple_GET_ITEM(t, 9), &j->mtime_sec, &j->mtime_nsec) != 0)
            parse_error = 1;
        for (Py_ssize_t b = 0; b < PyList_GET_SIZE(j->blocks); b++)
            if (!PyBytes_Check(PyList_GET_ITEM(j->blocks, b)) && !parse_error) {
                PyErr_SetString(PyExc_TypeError, "finish_files: blocks must be bytes");
                parse_error = 1;
            }
        if (PyErr_Occurred())
            parse_error = 1;
    }
    Py_ssize_t failed = -1;
    int failed_errno = 0;
    const char *step = "";
    char *buf = NULL;
    Py_BEGIN_ALLOW_THREADS
    int kernel = 1;
    for (Py_ssize_t i = 0; i < n && !parse_error && failed < 0; i++) {
        struct finish_job *j = &jobs[i];
        off_t src_offset = (off_t)j->src_offset;
        int rc = 0;
        for (Py_ssize_t b = 0; b < PyList_GET_SIZE(j->blocks) && !rc; b++) {
            PyObject *block = PyList_GET_ITEM(j->blocks, b);
            rc = write_fully(j->fd, PyBytes_AS_STRING(block), PyBytes_GET_SIZE(block));
        }
        if (rc) {
            step = "write";
        } else if (j->src_fd >= 0 && (rc = copy_bytes(j->src_fd, &src_offset, j->fd, j->src_size, &buf, &kernel))) {
            step = "copy";
        } else if (j->uid >= 0 && fchown(j->fd, (uid_t)j->uid, (gid_t)j->gid) != 0) {
            rc = errno;
            step = "chown";
        } else if (j->mode >= 0 && fchmod(j->fd, (mode_t)j->mode) != 0) {
            rc = errno;
            step = "chmod";
        } else if (j->set_times) {
            struct timespec ts[2];
            ts[0].tv_sec = ts[1].tv_sec = (time_t)j->mtime_sec;
            ts[0].tv_nsec = ts[1].tv_nsec = j->mtime_nsec;
            if (futimens(j->fd, ts) != 0) {
                rc = errno;
                step = "utimes";
            }
        }
        if (rc) {
            failed = i;
            failed_errno = rc < 0 ? 0 : rc;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (jobs[i].fd >= 0)
            close(jobs[i].fd);
    free(buf);
    Py_END_ALLOW_THREADS
    PyMem_Free(jobs);
    if (parse_error)
        return NULL;
    if (failed < 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(nis)", failed, failed_errno, step);
}

/* pwrite_many(fd: int, pieces: list[tuple[bytes, int]]) -> int
 * Writes each piece at its offset, all with the GIL released once.
 * Returns 0, or the errno that stopped it. */
static PyObject *pwrite_many(PyObject *self, PyObject *args)
{
    (void)self;
    int fd;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "iO!", &fd, &PyList_Type, &list))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    Py_buffer *views = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Py_buffer));
    long long *offsets = PyMem_Calloc((size_t)(n ? n : 1), sizeof(long long));
    if (!views || !offsets) {
        PyMem_Free(views);
        PyMem_Free(offsets);
        return PyErr_NoMemory();
    }
    Py_ssize_t got = 0;
    for (; got < n; got++) {
        PyObject *item = PyList_GET_ITEM(list, got);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "pwrite_many expects (data, offset) tuples");
            break;
        }
        offsets[got] = PyLong_AsLongLong(PyTuple_GET_ITEM(item, 1));
        if (offsets[got] == -1 && PyErr_Occurred())
            break;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, 0), &views[got], PyBUF_SIMPLE) != 0)
            break;
    }
    int err = 0;
    if (got == n) {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n && !err; i++) {
            const char *p = views[i].buf;
            Py_ssize_t left = views[i].len;
            off_t off = (off_t)offsets[i];
            while (left > 0) {
                ssize_t w = pwrite(fd, p, (size_t)left, off);
                if (w < 0) {
                    if (errno == EINTR)
                        continue;
                    err = errno;
                    break;
                }
                p += w;
                off += w;
                left -= w;
            }
        }
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(offsets);
    if (got != n)
        return NULL;
    return PyLong_FromLong(err);
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

/* syncfs(fd): flush the file system holding fd, GIL released.  Returns 0 or an errno (ENOSYS where the C
 * library lacks the call), so the caller can fall back to sync(). */
static PyObject *syncfs_fd(PyObject *self, PyObject *arg)
{
    (void)self;
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    if (value < 0 || value > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "not a file descriptor");
        return NULL;
    }
    int fd = (int)value;
    int err = 0;
#ifdef __GLIBC__
    Py_BEGIN_ALLOW_THREADS
    if (syncfs(fd) != 0)
        err = errno;
    Py_END_ALLOW_THREADS
#else
    (void)fd;
    err = ENOSYS;
#endif
    return PyLong_FromLong(err);
}

static PyMethodDef methods[] = {
    {"syncfs", syncfs_fd, METH_O, "Flush the file system holding a descriptor, GIL released; 0 or an errno."},
    {"tune_allocator", tune_allocator, METH_NOARGS, "Keep chunk-sized buffers in the heap (glibc)."},
    {"read_files", read_files, METH_VARARGS, "Read whole regular files up to their limits; bytes or an errno."},
    {"finish_files", finish_files, METH_O, "Write, chown, chmod, set times of and close created files, GIL released."},
    {"pwrite_many", pwrite_many, METH_VARARGS, "Write pieces at their offsets, GIL released once."},
    {"write_items", write_items, METH_VARARGS, "Append bytes and file contents to a descriptor, GIL released."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fileio", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fileio(void) { return PyModule_Create(&module); }
