"""File writing primitives shared by stores, index files and extraction.

Files others may read concurrently are written to a temp name in the same
directory and renamed into place, so readers see the old or the new file,
never a partial one.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys

from ._accel import fileio_module
from . import tempnames
from .errors import DesyncError

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from collections.abc import Callable, Iterable, Iterator
    from typing import BinaryIO, Final

_FILEIO: Final = fileio_module
# copy_file_range refusals that mean "not between these files" (pipes, other file systems): copy through a buffer.
COPY_BLOCK: Final = 1 << 20
NO_COPY_RANGE: Final = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF})


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write until everything is written (the kernel may take less per call)."""
    view = memoryview(data)
    while view:
        # Bind the result first: mypyc evaluates a call inside a slice bound twice.
        written = os.write(fd, view)
        view = view[written:]


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


# casync leaves runs of at least this many zero bytes unwritten when it punches holes (HOLE_MIN).
HOLE_MIN: Final = 64
_ZERO_RUN: Final = re.compile(b"\\x00{%d,}" % HOLE_MIN)


def has_zero_run(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` holds a run of zeros long enough to leave as a hole."""
    return _ZERO_RUN.search(data) is not None


def zero_runs(data: bytes | bytearray | memoryview) -> list[tuple[int, int]]:
    """The (start, end) of every run of at least ``HOLE_MIN`` zero bytes in ``data``."""
    return [m.span() for m in _ZERO_RUN.finditer(data)]


def pwrite_sparse(fd: int, data: bytes | bytearray | memoryview, offset: int) -> int:
    """Write ``data`` at ``offset`` except its runs of zeros; returns how many zero bytes were left out.

    In a file that is new (or was cut to ``offset``) what is left out reads
    as zeros and takes no space; the caller sets the final size with
    ftruncate so that trailing zeros become a hole too.
    """
    view = memoryview(data)
    pos = 0
    skipped = 0
    for start, end in zero_runs(view):
        if start > pos:
            pwrite_all(fd, view[pos:start], offset + pos)
        skipped += end - start
        pos = end
    if pos < len(view):
        pwrite_all(fd, view[pos:], offset + pos)
    return skipped


def pwrite_many(fd: int, pieces: list[tuple[bytes, int]]) -> None:
    """Write each ``(data, offset)`` piece; the C helper does all with the GIL released once.

    Extraction writes a batch of chunks at a time this way: a GIL hand-off
    per write costs more than the write when many threads fetch at once.
    """
    if _FILEIO is not None:
        err: int = _FILEIO.pwrite_many(fd, pieces)
        if err:
            raise OSError(err, os.strerror(err))
        return
    for data, offset in pieces:
        pwrite_all(fd, data, offset)


def copy_bytes(src: int, offset: int, dst: int, size: int, kernel: list[bool]) -> int:
    """Append ``size`` bytes of ``src`` to ``dst``, from ``offset`` (-1: from src's position).

    The pure-Python twin of the C helpers' copy: in the kernel with
    copy_file_range while ``kernel[0]`` holds (cleared when a pair of files
    refuses it), else through a buffer.  Returns the bytes copied; fewer
    than ``size`` means ``src`` ended early.
    """
    done = 0
    while done < size:
        at = None if offset < 0 else offset + done
        if kernel[0]:
            try:
                n = os.copy_file_range(src, dst, size - done, at)
            except OSError as exc:
                if exc.errno not in NO_COPY_RANGE:
                    raise
                kernel[0] = False
                continue
        else:
            want = min(size - done, COPY_BLOCK)
            block = os.read(src, want) if at is None else os.pread(src, want, at)
            write_all(dst, block)
            n = len(block)
        if n == 0:
            break
        done += n
    return done


def write_file_atomic(path: str, data: bytes | bytearray | memoryview, mode: int = 0o666,
                      tmp_name: str = "", durable: bool = True) -> None:
    """Replace ``path`` with ``data`` via a temp file beside it; raises OSError, leaves no temp file."""
    write_pieces_atomic(path, (data,), mode, tmp_name, durable)


def write_pieces_atomic(path: str, pieces: Iterable[bytes | bytearray | memoryview], mode: int = 0o666,
                        tmp_name: str = "", durable: bool = True) -> None:
    """Like :func:`write_file_atomic` for content produced piece by piece (a stream)."""
    write_atomic_with(path, _PieceWriter(pieces), mode, tmp_name, durable)


class _PieceWriter:
    def __init__(self, pieces: Iterable[bytes | bytearray | memoryview]) -> None:
        self.pieces = pieces

    def __call__(self, fd: int) -> None:
        for piece in self.pieces:
            write_all(fd, piece)


def write_atomic_with(path: str, produce: Callable[[int], None], mode: int = 0o666, tmp_name: str = "",
                      durable: bool = True) -> None:
    """Create ``path`` from what ``produce(fd)`` writes, via a temp file beside it renamed into place."""
    target = AtomicFile(path, mode, tmp_name, durable)
    try:
        produce(target.fd)
        target.commit()
    except BaseException:
        target.discard()
        raise


_FS_ENCODING: Final = sys.getfilesystemencoding()
_FS_ERRORS: Final = sys.getfilesystemencodeerrors()


def fsencode(path: str) -> bytes:
    """``os.fsencode`` of a str, compiled with the caller (the standard one runs as interpreted code)."""
    return path.encode(_FS_ENCODING, _FS_ERRORS)


def exists(path: str) -> bool:
    """``os.path.exists`` compiled with the caller (the standard one runs as interpreted code)."""
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


class AtomicFile:
    """A file written under a temp name beside ``path``; :meth:`commit` renames it into place.

    Readers see the old file or the whole new one, never a part.  Without
    ``tmp_name`` the temp name carries its owner (see tempnames) and
    leftovers of earlier killed writes of ``path`` are removed first.
    ``durable`` syncs the data before the rename and the directory after,
    so a power loss leaves the old or the new file, never an empty one.
    The descriptor is open for reading too (a receiver may check what it
    wrote).  Raises OSError as ``os.open`` does.
    """

    def __init__(self, path: str, mode: int = 0o666, tmp_name: str = "", durable: bool = True) -> None:
        self.path = path
        self.durable = durable
        if tmp_name:
            # Beside ``path``, without os.path (interpreted code) on the chunk-writing path.
            cut = path.rfind("/") + 1
            self.tmp = path[:cut] + tmp_name
        else:
            tempnames.sweep_beside(path)
            self.tmp = tempnames.temp_beside(path)
        self.fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        self.committed = False

    def commit(self) -> None:
        """Flush (when durable), close and rename into place."""
        fd, self.fd = self.fd, -1
        try:
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(self.tmp, self.path)
        self.committed = True
        if self.durable:
            sync_directory(os.path.dirname(os.path.abspath(self.path)))

    def discard(self) -> None:
        """Close and remove the temp file, unless committed; never raises."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            except OSError:
                pass
        if not self.committed:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass


def regular_files(root: bytes, ordered: bool = False) -> Iterator[tuple[bytes, int]]:
    """The non-empty regular files under ``root`` (links not followed) and their sizes; ``ordered``: by name."""
    for dirpath, dirs, files in os.walk(root):
        if ordered:
            dirs.sort()
            files.sort()
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size > 0:
                yield path, st.st_size


def resolve_target(path: str) -> tuple[str, os.stat_result | None]:
    """The file to replace when writing ``path``, and its status (None when there is none yet).

    A symlink stays a symlink: the file it points at is replaced, as a
    user with an A/B slot link (``current -> slot-b.img``) expects.  A
    dangling link gets its target created.
    """
    real = os.path.realpath(path) if os.path.islink(path) else path
    try:
        return real, os.stat(real)
    except FileNotFoundError:
        return real, None


def adopt_attributes(fd: int, existing: os.stat_result) -> None:
    """Give the replacement ``fd`` the owner and permission bits of the file it replaces.

    Permissions are never widened: an image kept 0600 stays 0600.  Where
    the owner cannot be kept (not root), the file becomes the caller's and
    loses any set-user/group-ID bit instead of granting them to the caller.
    """
    mode = stat.S_IMODE(existing.st_mode)
    try:
        if (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, existing.st_uid, existing.st_gid)
    except PermissionError:
        mode &= ~(stat.S_ISUID | stat.S_ISGID)
        try:
            os.fchown(fd, -1, existing.st_gid)
        except PermissionError:
            pass
    os.fchmod(fd, mode)


def replace_user_file(path: str, produce: Callable[[int], None]) -> None:
    """:func:`write_atomic_with` for a file the user named: keeps a symlink, the mode and the owner.

    Anything but a regular file (a device, a directory, a FIFO) is refused:
    the rename would replace the node itself, not write into it.
    """
    real, existing = resolve_target(path)
    if existing is None:
        write_atomic_with(real, produce)
        return
    if not stat.S_ISREG(existing.st_mode):
        raise DesyncError(f"{path} is not a regular file; refusing to replace it")
    kept = existing

    def adopt_then_produce(fd: int) -> None:
        adopt_attributes(fd, kept)
        produce(fd)

    write_atomic_with(real, adopt_then_produce)


def sync_directory(directory: str) -> None:
    """fsync a directory so a rename in it survives a power loss; refusals (some file systems) are ignored."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_filesystem(path: str) -> None:
    """Flush the file system holding ``path`` (syncfs): one call instead of an fsync per file.

    Falls back to sync() (every file system) where syncfs is unavailable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.sync()
        return
    try:
        if _syncfs(fd):
            return
    finally:
        os.close(fd)
    os.sync()


def _syncfs(fd: int) -> bool:
    if _FILEIO is not None:
        return _FILEIO.syncfs(fd) == 0
    import ctypes  # only here, without the C accelerator: most commands never flush

    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return False
    result: int = call(fd)
    return result == 0


def write_items(fd: int, items: list[bytes | tuple[int, int]]) -> tuple[int, int] | None:
    """Append ``items`` to ``fd``: bytes as they are, ``(src_fd, size)`` as the next ``size`` bytes of src_fd.

    Every ``src_fd`` is closed, whatever happens.  Returns None, or
    ``(index, errno)`` of the first item that failed (errno 0: its source
    ended early); nothing after it is written.  The C helper does the batch
    with the GIL released once.
    """
    if _FILEIO is not None:
        failed: tuple[int, int] | None = _FILEIO.write_items(fd, items)
        return failed
    return _write_items_py(fd, items)


def _write_items_py(fd: int, items: list[bytes | tuple[int, int]]) -> tuple[int, int] | None:
    failed: tuple[int, int] | None = None
    kernel = [True]
    for i, item in enumerate(items):
        if failed is not None:
            break
        try:
            if isinstance(item, bytes):
                write_all(fd, item)
            elif copy_bytes(item[0], -1, fd, item[1], kernel) < item[1]:
                failed = (i, 0)
        except OSError as exc:
            failed = (i, exc.errno or errno.EIO)
    for item in items:
        if not isinstance(item, bytes):
            os.close(item[0])
    return failed


def stdin_binary() -> "BinaryIO":
    """Standard input as bytes; a clear error when the process has none (closed or detached)."""
    if sys.stdin is None:
        raise DesyncError("standard input is not available")
    return sys.stdin.buffer


class UnreadableFile(DesyncError):
    """A path that must be a regular file of bounded size is something else (FIFO, device, directory, huge file)."""


def open_regular(path: str, limit: int, dir_fd: int | None = None, follow: bool = True) -> tuple[int, int]:
    """Open ``path`` for reading only if it is a regular file of at most ``limit`` bytes: ``(fd, size)``.

    Opened non-blocking so a FIFO under the name cannot hang the caller,
    then checked with ``fstat`` on the open descriptor (no race with a
    rename).  Raises :class:`UnreadableFile` for anything else and OSError
    (FileNotFoundError, ...) as ``os.open`` does; with ``follow=False`` a
    symlink as the last component is OSError ELOOP.
    """
    nofollow = 0 if follow else os.O_NOFOLLOW
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | nofollow, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile(f"{path}: not a regular file")
        if st.st_size > limit:
            raise UnreadableFile(f"{path}: {st.st_size} bytes, more than the {limit} allowed")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def read_regular(path: str, limit: int, dir_fd: int | None = None) -> bytes:
    """The content of a regular file of at most ``limit`` bytes (see :func:`open_regular`).

    Reads at most ``limit + 1`` bytes, so a file that grows after the check
    is still refused rather than read without bound.
    """
    from .readbudget import ReadBudget  # threading: not at start-up

    fd, size = open_regular(path, limit, dir_fd)
    budget = ReadBudget()
    try:
        budget.grow(size)
        chunks = []
        total = 0
        while True:
            block = os.read(fd, max(size - total, 1 << 16) if total <= limit else 1)
            if not block:
                break
            total += len(block)
            if total > limit:
                raise UnreadableFile(f"{path}: grew past the {limit} bytes allowed while being read")
            chunks.append(block)
    finally:
        os.close(fd)
        budget.release()
    return b"".join(chunks)


def read_pieces(fd: int, path: str, limit: int, piece_size: int = 1 << 20) -> Iterator[bytes]:
    """The content of the file open as ``fd`` in pieces, refusing it once more than ``limit`` bytes arrive.

    For reading a file checked by :func:`open_regular` without holding it
    whole (a chunk file whose size nothing tells may be ~130 MiB).
    """
    return capped_pieces(lambda size: os.read(fd, size), limit, piece_size,
                         lambda: UnreadableFile(f"{path}: grew past the {limit} bytes allowed while being read"))


def capped_pieces(read: Callable[[int], bytes], limit: int, piece_size: int,
                  too_large: Callable[[], Exception]) -> Iterator[bytes]:
    """What ``read(size)`` returns until it returns nothing, a piece at a time; ``too_large()`` is raised once
    more than ``limit`` bytes arrive (asking for at most one byte past the limit)."""
    total = 0
    while True:
        piece = read(min(piece_size, limit + 1 - total))
        if not piece:
            return
        total += len(piece)
        if total > limit:
            raise too_large()
        yield piece

# What read_files reports for a name that is there but must not be read, and how to say it.
UNREADABLE: Final = {
    errno.EISDIR: "not a regular file (a directory)",
    errno.EINVAL: "not a regular file",
    errno.EFBIG: "more bytes than allowed for this file",
}


def read_files(paths: list[bytes], limits: list[int]) -> list[bytes | int]:
    """Each regular file's content, or an errno: EISDIR/EINVAL (not a regular file), EFBIG (over its limit).

    Every file is opened non-blocking and checked with ``fstat`` before a
    byte is read, so a FIFO cannot hang the batch and a huge (sparse)
    file is not read at all.  The C helper does the batch with the GIL
    released; the Python twin gives the same results.
    """
    if _FILEIO is not None:
        got: list[bytes | int] = _FILEIO.read_files(paths, limits)
        return got
    return read_files_py(paths, limits)


def read_files_py(paths: list[bytes], limits: list[int]) -> list[bytes | int]:
    """What the C ``read_files`` does, file for file."""
    out: list[bytes | int] = []
    if len(limits) != len(paths):
        raise ValueError("read_files needs one limit per path")
    for path, limit in zip(paths, limits):
        if not isinstance(path, bytes):
            raise TypeError("read_files expects a list of bytes paths")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            out.append(exc.errno or errno.EIO)
            continue
        try:
            out.append(_read_checked(fd, limit))
        except OSError as exc:
            out.append(exc.errno or errno.EIO)
        finally:
            os.close(fd)
    return out


def _read_checked(fd: int, limit: int) -> bytes | int:
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        return errno.EISDIR
    if not stat.S_ISREG(st.st_mode):
        return errno.EINVAL
    if st.st_size > limit:
        return errno.EFBIG
    data = os.read(fd, st.st_size) if st.st_size else b""
    while len(data) < st.st_size:
        more = os.read(fd, st.st_size - len(data))
        if not more:
            return errno.EIO  # the file shrank while we read it
        data += more
    return data
