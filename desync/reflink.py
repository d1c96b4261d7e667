"""Copy byte ranges between files the cheapest way the file system allows.

Seeds and the self seed put bytes that already exist on disk into the
output.  On a file system with shared extents (XFS with reflink, btrfs) the
block-aligned middle of a range is cloned with FICLONERANGE, which costs no
space and no data I/O; the unaligned edges, and everything on other file
systems, go through copy_file_range (the kernel copies, no user-space
buffer); a plain pread/pwrite is the last fallback.  Holes are punched with
fallocate(PUNCH_HOLE) so zero chunks in an updated file free their blocks.
"""

import ctypes
import errno
import fcntl
import os
import struct
import threading
from dataclasses import dataclass
from typing import Final

from .errors import DesyncError
from .fsutil import NO_COPY_RANGE, pwrite_all

# _IOW(0x94, 13, struct file_clone_range): src_fd (s64), src_offset, src_length, dest_offset (u64).
FICLONERANGE: Final = 0x4020940D
_CLONE_ARGS: Final = struct.Struct("=qQQQ")
# Errors meaning "these two files cannot share extents" rather than a failed write.
NO_CLONE: Final = frozenset({errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS,
                             errno.EBADF, errno.EPERM, errno.ETXTBSY})
FALLOC_FL_KEEP_SIZE: Final = 0x01
FALLOC_FL_PUNCH_HOLE: Final = 0x02
MODES: Final = ("auto", "yes", "no")


class ReflinkUnsupported(DesyncError):
    """``--reflink yes`` and the file system cannot clone between these files."""


class SourceEnded(DesyncError):
    """The file copied from is shorter than the range asked for (a seed that shrank)."""


@dataclass(slots=True)
class CopyResult:
    cloned: int = 0
    copied: int = 0


class RangeCopier:
    """Copies ranges per ``--reflink`` mode, remembering what the file systems refused.

    After the first refusal of a clone from a source (another file system,
    no reflink support) ``auto`` stops trying for that source; ``yes``
    raises instead.  Thread-safe: the refusal sets only grow.
    """

    def __init__(self, mode: str = "auto") -> None:
        if mode not in MODES:
            raise DesyncError(f"--reflink must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self._clone = mode != "no"
        # copy_file_range shares extents by itself on some file systems (XFS, btrfs): "no" copies the bytes.
        self._kernel = mode != "no"
        # Source descriptors a clone or kernel copy was refused from (another file system, say): copied by hand.
        self._no_clone: set[int] = set()
        self._no_kernel: set[int] = set()
        self._lock = threading.Lock()

    def may_clone(self, src: int) -> bool:
        """Whether a clone from ``src`` is still worth trying."""
        return self._clone and src not in self._no_clone

    def copy(self, src: int, src_off: int, dst: int, dst_off: int, size: int, block: int) -> CopyResult:
        """Put ``size`` bytes of ``src`` at ``src_off`` into ``dst`` at ``dst_off``."""
        result = CopyResult()
        if self._clone and size > 0 and src not in self._no_clone:
            # Clone only where both offsets are block-aligned together: the same remainder modulo the block.
            if src_off % block == dst_off % block:
                head = (-dst_off) % block
                middle = (size - head) // block * block if size > head else 0
                if middle > 0 and self._try_clone(src, src_off + head, dst, dst_off + head, middle):
                    result.cloned = middle
                    self._copy(src, src_off, dst, dst_off, head)
                    tail = size - head - middle
                    self._copy(src, src_off + head + middle, dst, dst_off + head + middle, tail)
                    result.copied = head + tail
                    return result
        self._copy(src, src_off, dst, dst_off, size)
        result.copied = size
        return result

    def _try_clone(self, src: int, src_off: int, dst: int, dst_off: int, size: int) -> bool:
        try:
            fcntl.ioctl(dst, FICLONERANGE, _CLONE_ARGS.pack(src, src_off, size, dst_off))
            return True
        except OSError as exc:
            if exc.errno not in NO_CLONE:
                raise
            if self.mode == "yes":
                raise ReflinkUnsupported(f"--reflink yes: the file system cannot clone between the seed and "
                                         f"the output ({os.strerror(exc.errno or 0)})") from None
            with self._lock:
                self._no_clone.add(src)
            return False

    def _copy(self, src: int, src_off: int, dst: int, dst_off: int, size: int) -> None:
        done = 0
        while done < size:
            if self._kernel and src not in self._no_kernel:
                try:
                    n = os.copy_file_range(src, dst, size - done, src_off + done, dst_off + done)
                except OSError as exc:
                    if exc.errno not in NO_COPY_RANGE:
                        raise
                    with self._lock:
                        self._no_kernel.add(src)
                    continue
            else:
                data = os.pread(src, min(size - done, 1 << 20), src_off + done)
                pwrite_all(dst, data, dst_off + done)
                n = len(data)
            if n == 0:
                raise SourceEnded("a seed file ended early while copying from it")
            done += n


def block_size(fd: int) -> int:
    """The clone granularity of the file system holding ``fd`` (a power of two; 4096 when unknown)."""
    try:
        size = os.fstatvfs(fd).f_bsize
    except OSError:
        size = 0
    if size <= 0 or size & (size - 1):
        try:
            size = os.fstat(fd).st_blksize
        except OSError:
            size = 4096
    return size if size > 0 and not size & (size - 1) else 4096


_libc: ctypes.CDLL | None = None


def punch_hole(fd: int, offset: int, size: int) -> bool:
    """Deallocate a range (it reads as zeros, the size stays); False when the file system cannot."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    call = _libc.fallocate
    call.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)
    if call(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, size) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV):
        return False
    raise OSError(err, os.strerror(err))
