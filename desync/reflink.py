"""Copy byte ranges between files the cheapest way the file system allows.

Seeds (blob seeds, tree seeds) and the self seed put bytes that already exist on disk into the
output.  On a file system with shared extents (XFS with reflink, btrfs) the
block-aligned middle of a range is cloned with FICLONERANGE, which costs no
space and no data I/O; the unaligned edges, and everything on other file
systems, go through copy_file_range (the kernel copies, no user-space
buffer); a plain pread/pwrite is the last fallback.  Holes are punched with
fallocate(PUNCH_HOLE) so zero chunks in an updated file free their blocks.

Two callers, one set of primitives: :class:`RangeCopier` serves blob seeds
(many ranges, block-aligned cloning, refusals remembered per source) and
:func:`clone_or_copy` serves tree seeds (one whole range, says how it was
done).  ``--reflink`` is ``"auto"`` (clone when possible), ``"yes"`` (a file
system that cannot clone is an error) or ``"no"`` (never clone).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from .errors import DesyncError
from .fsutil import COPY_BLOCK, NO_COPY_RANGE, pwrite_all

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    import ctypes
    from typing import Final, Literal

    Reflink = Literal["auto", "yes", "no"]

# _IOW(0x94, 13, struct file_clone_range): src_fd (s64), src_offset, src_length, dest_offset (u64).
FICLONERANGE: Final = 0x4020940D
_CLONE_ARGS: Final = struct.Struct("=qQQQ")
# Errors meaning "these two files cannot share extents" rather than a failed write.
NO_CLONE: Final = frozenset({errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOTTY, errno.EINVAL,
                             errno.ENOSYS, errno.EBADF, errno.EPERM, errno.ETXTBSY})
FALLOC_FL_KEEP_SIZE: Final = 0x01
FALLOC_FL_PUNCH_HOLE: Final = 0x02
MODES: Final = ("auto", "yes", "no")
# What clone_or_copy did.
CLONED: Final = "cloned"
COPIED: Final = "copied"
WRITTEN: Final = "written"


class ReflinkUnsupported(DesyncError):
    """``--reflink yes`` and the file system cannot clone between these files."""


class SourceEnded(DesyncError):
    """The file copied from is shorter than the range asked for (a seed that shrank)."""


class CopyResult:
    """Bytes a copy cloned and bytes it copied."""

    __slots__ = ("cloned", "copied")

    def __init__(self, cloned: int = 0, copied: int = 0) -> None:
        self.cloned = cloned
        self.copied = copied

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CopyResult):
            return NotImplemented
        return self.cloned == other.cloned and self.copied == other.copied

    def __repr__(self) -> str:
        return f"CopyResult(cloned={self.cloned!r}, copied={self.copied!r})"


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
        import threading  # here, not at start-up

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
            clone_range(src, src_off, dst, dst_off, size)
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


def clone_range(src_fd: int, src_off: int, dst_fd: int, dst_off: int, length: int) -> None:
    """FICLONERANGE: ``dst`` shares ``src``'s extents; OSError when the file system refuses."""
    fcntl.ioctl(dst_fd, FICLONERANGE, _CLONE_ARGS.pack(src_fd, src_off, length, dst_off))


def clone_or_copy(src_fd: int, src_off: int, dst_fd: int, dst_off: int, length: int,
                  reflink: Reflink = "auto") -> str:
    """Put ``length`` bytes of ``src`` at ``src_off`` into ``dst`` at ``dst_off``; returns CLONED, COPIED or WRITTEN.

    The whole range is cloned at once (a clone needs block-aligned offsets, except that it may run to the end
    of the source).  DesyncError when ``reflink`` is ``"yes"`` and the clone is refused, or when ``src`` ends
    early.
    """
    if length <= 0:
        return COPIED
    if reflink != "no":
        try:
            clone_range(src_fd, src_off, dst_fd, dst_off, length)
            return CLONED
        except OSError as e:
            if reflink == "yes" or e.errno not in NO_CLONE:
                raise DesyncError(f"cannot clone (--reflink yes): {e.strerror}") from None
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(src_fd, dst_fd, length - done, src_off + done, dst_off + done)
        except OSError as e:
            if e.errno not in NO_COPY_RANGE:
                raise DesyncError(f"cannot copy: {e.strerror}") from None
            return _write(src_fd, src_off + done, dst_fd, dst_off + done, length - done, done)
        if n == 0:
            raise DesyncError("cannot copy: the source ended early")
        done += n
    return COPIED


def _write(src_fd: int, src_off: int, dst_fd: int, dst_off: int, length: int, done_before: int) -> str:
    """The last fallback: pread/pwrite through a buffer."""
    done = 0
    while done < length:
        block = os.pread(src_fd, min(length - done, COPY_BLOCK), src_off + done)
        if not block:
            raise DesyncError("cannot copy: the source ended early")
        pwrite_all(dst_fd, block, dst_off + done)
        done += len(block)
    return COPIED if done_before else WRITTEN


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
    import ctypes  # only when a hole is punched: ctypes costs start-up time

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
