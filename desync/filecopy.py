"""Copy a byte range between files the cheapest way the file system allows.

``clone_or_copy(src_fd, src_off, dst_fd, dst_off, length, reflink)`` shares
the source's extents with ``FICLONERANGE`` (reflink file systems such as XFS
and btrfs: nothing is written, the data is stored once), else copies in the
kernel with ``copy_file_range``, else through a buffer, and says which it
did.  ``reflink`` is ``"auto"`` (clone when possible), ``"yes"`` (a file
system that cannot clone is an error) or ``"no"`` (never clone).  A clone
needs block-aligned offsets, except that it may run to the end of the source.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from typing import Final, Literal

from . import fsutil
from .errors import DesyncError

FICLONERANGE: Final = 0x4020940D
CLONED: Final = "cloned"
COPIED: Final = "copied"
WRITTEN: Final = "written"
REFLINK_MODES: Final = ("auto", "yes", "no")
Reflink = Literal["auto", "yes", "no"]
# What a file system (or a pair of files) that cannot clone this range answers.
NO_CLONE: Final = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL, errno.ENOTTY,
                             errno.ENOSYS, errno.EPERM, errno.EBADF})


def clone_range(src_fd: int, src_off: int, dst_fd: int, dst_off: int, length: int) -> None:
    """FICLONERANGE: ``dst`` shares ``src``'s extents; OSError when the file system refuses."""
    fcntl.ioctl(dst_fd, FICLONERANGE, struct.pack("=qQQQ", src_fd, src_off, length, dst_off))


def clone_or_copy(src_fd: int, src_off: int, dst_fd: int, dst_off: int, length: int,
                  reflink: Reflink = "auto") -> str:
    """Put ``length`` bytes of ``src`` at ``src_off`` into ``dst`` at ``dst_off``; returns CLONED, COPIED or WRITTEN.

    DesyncError when ``reflink`` is ``"yes"`` and the clone is refused, or when ``src`` ends early.
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
            if e.errno not in fsutil.NO_COPY_RANGE:
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
        block = os.pread(src_fd, min(length - done, fsutil.COPY_BLOCK), src_off + done)
        if not block:
            raise DesyncError("cannot copy: the source ended early")
        view = memoryview(block)
        while view:
            n = os.pwrite(dst_fd, view, dst_off + done)
            view = view[n:]
            done += n
    return COPIED if done_before else WRITTEN
