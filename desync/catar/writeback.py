"""Finish extracted regular files on a second thread, in batches.

Writing a file's contents and setting its owner, mode and times is kernel
time, decoding the archive is Python time: the extractor creates each file
and hands the rest over as a :class:`FileJob`.  Jobs go to the
:class:`~desync.batchthread.BatchThread` in batches of up to ``BATCH_JOBS``
files or ``BATCH_BYTES`` buffered bytes, and the C helper finishes a whole
batch with the GIL released once (the Python fallback gives the same
result).  Files with xattrs, ACLs, capabilities, labels or chattr flags are
not sent here; the extractor finishes those itself.
"""

import errno
import os
from typing import Any, Final

from .. import fsutil
from .._accel import fileio_module
from ..batchthread import BatchThread
from ..errors import DesyncError

BATCH_JOBS: Final = 64
BATCH_BYTES: Final = 4 << 20
MAX_BATCHES: Final = 4
_FILEIO: Final = fileio_module


class FileJob:
    """A created, open file: contents from ``blocks`` then ``src_size`` bytes of ``src_fd`` at ``src_offset``.

    A plain class: one is made per extracted file, and a dataclass's
    ``__init__`` runs as interpreted code.
    """

    __slots__ = ("fd", "path", "blocks", "src_fd", "src_offset", "src_size", "src_owner", "uid", "gid", "mode",
                 "set_times", "mtime_ns")

    def __init__(self, fd: int, path: tuple[bytes, ...], blocks: list[bytes] | None = None, src_fd: int = -1,
                 src_offset: int = 0, src_size: int = 0, src_owner: Any = None, uid: int = -1, gid: int = -1,
                 mode: int = 0o600, set_times: bool = False, mtime_ns: int = 0) -> None:
        self.fd = fd
        self.path = path
        self.blocks: list[bytes] = [] if blocks is None else blocks
        self.src_fd = src_fd
        self.src_offset = src_offset
        self.src_size = src_size
        self.src_owner = src_owner  # keeps the archive file (and src_fd) open until the copy is done
        self.uid = uid  # -1: leave the owner alone
        self.gid = gid
        self.mode = mode  # -1: created with its mode already
        self.set_times = set_times
        self.mtime_ns = mtime_ns

    def buffered(self) -> int:
        return sum(len(b) for b in self.blocks)

    def as_tuple(self) -> tuple[int, list[bytes], int, int, int, int, int, int, bool, int]:
        return (self.fd, self.blocks, self.src_fd, self.src_offset, self.src_size, self.uid, self.gid, self.mode,
                self.set_times, self.mtime_ns)


class Writeback:
    """Collects jobs into batches for the finishing thread."""

    def __init__(self) -> None:
        self._batch: list[FileJob] = []
        self._bytes = 0
        self._worker: BatchThread[FileJob] = BatchThread(finish_batch, _close_all, MAX_BATCHES, "desync-writeback")

    def submit(self, job: FileJob) -> None:
        self._batch.append(job)
        self._bytes += job.buffered()
        if len(self._batch) >= BATCH_JOBS or self._bytes >= BATCH_BYTES:
            self._hand_over()

    def close(self) -> None:
        """Finish every file; raises the first error."""
        if self._batch:
            self._hand_over()
        self._worker.close()

    def abort(self) -> None:
        _close_all(self._batch)
        self._batch = []
        self._worker.abort()

    def _hand_over(self) -> None:
        batch = self._batch
        self._batch = []
        self._bytes = 0
        self._worker.put(batch)


def _close_all(jobs: list[FileJob]) -> None:
    for job in jobs:
        os.close(job.fd)


def finish_batch(jobs: list[FileJob]) -> None:
    """Finish and close every job's file; DesyncError names the first file that failed."""
    if _FILEIO is not None:
        failed: tuple[int, int, str] | None = _FILEIO.finish_files([job.as_tuple() for job in jobs])
    else:
        failed = _finish_py(jobs)
    if failed is not None:
        index, err, step = failed
        where = os.fsdecode(b"/".join(jobs[index].path))
        if err == 0:
            raise DesyncError(f"cannot extract {where}: archive truncated in file contents")
        raise DesyncError(f"cannot extract {where}: {os.strerror(err)} ({step})")


def _finish_py(jobs: list[FileJob]) -> tuple[int, int, str] | None:
    """What the C helper does, step for step."""
    failed: tuple[int, int, str] | None = None
    kernel = [True]
    for i, job in enumerate(jobs):
        if failed is not None:
            break
        step = "write"
        try:
            for block in job.blocks:
                fsutil.write_all(job.fd, block)
            step = "copy"
            if job.src_fd >= 0 and fsutil.copy_bytes(job.src_fd, job.src_offset, job.fd, job.src_size,
                                                     kernel) < job.src_size:
                failed = (i, 0, step)
                continue
            if job.uid >= 0:
                step = "chown"
                os.fchown(job.fd, job.uid, job.gid)
            if job.mode >= 0:
                step = "chmod"
                os.fchmod(job.fd, job.mode)
            if job.set_times:
                step = "utimes"
                os.utime(job.fd, ns=(job.mtime_ns, job.mtime_ns))
        except OSError as exc:
            failed = (i, exc.errno or errno.EIO, step)
    for job in jobs:
        os.close(job.fd)
    return failed


def copy_range(src: int, offset: int, size: int, dst: int, path: tuple[bytes, ...]) -> None:
    """Append ``size`` bytes of ``src`` at ``offset`` to ``dst`` (in the kernel when possible)."""
    if fsutil.copy_bytes(src, offset, dst, size, [True]) < size:
        raise DesyncError(f"cannot extract {os.fsdecode(b'/'.join(path))}: archive truncated in file contents")
