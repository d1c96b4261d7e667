"""The file-system operations FUSE calls: a blob as one file, or an archive's tree.

These classes follow the mfusepy/fusepy ``Operations`` calling convention
(str paths, ``getattr`` returns a dict of ``st_*`` fields, errors are
``OSError`` with an errno) without subclassing it: the library looks the
operations up by name, so the classes need neither the library at import
time nor to be excluded from compilation.  Both are read-only; times are in
nanoseconds (``use_ns``).

A read whose chunks cannot be fetched fails with EIO for the reader and
writes one line to stderr saying why.
"""

import errno
import os
import stat
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import DesyncError
from .blob import BlobReader
from .tree import ArchiveTree, Entry

# What st_blksize says: tools like cat and cp size their reads by it, and big reads are cheap here.
IO_BLOCK = 1 << 20
_DIR_MODE = stat.S_IFDIR | 0o755
_FILE_MODE = stat.S_IFREG | 0o444
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _report(what: str, failure: BaseException) -> OSError:
    sys.stderr.write(f"desync: error: {what}: {failure}\n")
    sys.stderr.flush()
    return OSError(errno.EIO, os.strerror(errno.EIO))


def _check_read_only(flags: int) -> None:
    if flags & os.O_ACCMODE != os.O_RDONLY or flags & _WRITE_FLAGS:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def _no_entry() -> OSError:
    return OSError(errno.ENOENT, os.strerror(errno.ENOENT))


def _fs_name(raw: bytes) -> str:
    """A name or target as the library passes paths: UTF-8 with undecodable bytes escaped."""
    return raw.decode("utf-8", "surrogateescape")


def _raw(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


class MountOperations:
    """What both file systems share: ns times, and noticing that the mount has started."""

    use_ns = True

    def __init__(self) -> None:
        self._cwd = os.getcwd()
        self.started = False
        self.on_start: Callable[[], None] | None = None

    def init(self, path: str) -> None:
        """Called once the kernel talks to us; libfuse has moved the process to /, relative paths need it back."""
        os.chdir(self._cwd)
        self.started = True
        if self.on_start is not None:
            self.on_start()


class BlobFS(MountOperations):
    """The root directory (inode 1) holding one read-only file, the blob (inode 2)."""

    def __init__(self, reader: BlobReader, name: str) -> None:
        super().__init__()
        self.reader = reader
        self.name = name
        self._path = "/" + name
        self._uid = os.getuid()
        self._gid = os.getgid()
        self._time = time.time_ns()

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        if path == "/":
            ino, mode, size, nlink = 1, _DIR_MODE, 0, 2
        elif path == self._path:
            ino, mode, size, nlink = 2, _FILE_MODE, self.reader.size, 1
        else:
            raise _no_entry()
        t = self._time
        return {"st_ino": ino, "st_mode": mode, "st_nlink": nlink, "st_size": size, "st_uid": self._uid,
                "st_gid": self._gid, "st_atime": t, "st_mtime": t, "st_ctime": t, "st_blksize": IO_BLOCK,
                "st_blocks": (size + 511) // 512}

    def readdir(self, path: str, fh: Any) -> list[tuple[str, dict[str, int], int]]:
        if path != "/":
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        root = {"st_ino": 1, "st_mode": _DIR_MODE}
        return [(".", root, 0), ("..", root, 0), (self.name, {"st_ino": 2, "st_mode": _FILE_MODE}, 0)]

    def open(self, path: str, flags: int) -> int:
        if path != self._path:
            raise _no_entry()
        _check_read_only(flags)
        return 0

    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        try:
            return self.reader.read(offset, size)
        except (DesyncError, OSError) as failure:
            raise _report(f"reading {self.name} at offset {offset}", failure) from None

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": IO_BLOCK, "f_frsize": IO_BLOCK, "f_blocks": (self.reader.size + IO_BLOCK - 1) // IO_BLOCK,
                "f_bfree": 0, "f_bavail": 0, "f_files": 2, "f_ffree": 0, "f_namemax": 255}


class TreeFS(MountOperations):
    """An archive's directories, files, symlinks, devices, FIFOs and sockets, with their metadata."""

    def __init__(self, tree: ArchiveTree) -> None:
        super().__init__()
        self.tree = tree
        self._owners = tree.has_owners
        self._uid = os.getuid()
        self._gid = os.getgid()

    def _entry(self, path: str) -> Entry:
        entry = self.tree.lookup(_raw(path))
        if entry is None:
            raise _no_entry()
        return entry

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        entry = self._entry(path)
        meta = entry.meta
        if meta.is_reg:
            size = meta.size
        elif meta.is_symlink:
            size = len(meta.target)
        else:
            size = 0
        t = meta.mtime_ns
        return {
            "st_ino": entry.ino,
            "st_mode": meta.mode,
            "st_nlink": 2 + entry.subdirs if meta.is_dir else 1,
            "st_uid": meta.uid if self._owners else self._uid,
            "st_gid": meta.gid if self._owners else self._gid,
            "st_size": size,
            "st_rdev": os.makedev(meta.rdev_major, meta.rdev_minor) if meta.is_device else 0,
            "st_atime": t,
            "st_mtime": t,
            "st_ctime": t,
            "st_blksize": IO_BLOCK,
            "st_blocks": (size + 511) // 512,
        }

    def readdir(self, path: str, fh: Any) -> list[tuple[str, dict[str, int], int]]:
        """Entries with their inode numbers (the kernel hides entries without one)."""
        entry = self._entry(path)
        children = entry.children
        if children is None:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        parent = self.tree.entry(entry.parent)
        out = [(".", {"st_ino": entry.ino, "st_mode": entry.meta.mode}, 0),
               ("..", {"st_ino": parent.ino, "st_mode": parent.meta.mode}, 0)]
        for name, ino in children.items():
            child = self.tree.entry(ino)
            out.append((_fs_name(name), {"st_ino": ino, "st_mode": child.meta.mode}, 0))
        return out

    def readlink(self, path: str) -> str:
        meta = self._entry(path).meta
        if not meta.is_symlink:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return _fs_name(meta.target)

    def open(self, path: str, flags: int) -> int:
        entry = self._entry(path)
        _check_read_only(flags)
        return entry.ino

    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        entry = self.tree.entry(fh) if isinstance(fh, int) and fh > 0 else self._entry(path)
        try:
            return self.tree.read(entry, offset, size)
        except (DesyncError, OSError) as failure:
            raise _report(f"reading {path} at offset {offset}", failure) from None

    def listxattr(self, path: str) -> list[str]:
        return [_fs_name(name) for name, _ in self._entry(path).meta.xattrs]

    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        wanted = _raw(name)
        for key, value in self._entry(path).meta.xattrs:
            if key == wanted:
                return value
        raise OSError(errno.ENODATA, os.strerror(errno.ENODATA))

    def statfs(self, path: str) -> dict[str, int]:
        blocks = (self.tree.source.size + IO_BLOCK - 1) // IO_BLOCK
        return {"f_bsize": IO_BLOCK, "f_frsize": IO_BLOCK, "f_blocks": blocks, "f_bfree": 0, "f_bavail": 0,
                "f_files": len(self.tree.entries), "f_ffree": 0, "f_namemax": 255}
