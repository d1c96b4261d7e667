"""Write a catar from :func:`~desync.catar.encoder.encode_items`, copying on a second thread.

The encoder (Python, one thread) walks the tree while a
:class:`~desync.batchthread.BatchThread` appends its records and copies file
contents straight from the source files into the archive, in batches that
the C helper does with the GIL released once.
"""

from __future__ import annotations

import os
from typing import Final, Iterable

from .. import fsutil
from ..batchthread import BatchThread
from ..errors import DesyncError
from .encoder import FileSlice, shrank

BATCH_BYTES: Final = 1 << 20
BATCH_SLICES: Final = 64
MAX_BATCHES: Final = 4


class _Batches:
    """Sends item batches to ``fd`` through the thread; remembers slice paths for error messages."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.thread: BatchThread[bytes | FileSlice] = BatchThread(self.process, _close_slices, MAX_BATCHES,
                                                                  "desync-archive-writer")

    def process(self, batch: list[bytes | FileSlice]) -> None:
        items: list[bytes | tuple[int, int]] = [x if isinstance(x, bytes) else (x.fd, x.size) for x in batch]
        failed = fsutil.write_items(self.fd, items)
        if failed is None:
            return
        index, err = failed
        item = batch[index]
        if isinstance(item, bytes):
            raise DesyncError(f"cannot write the archive: {os.strerror(err)}")
        if err == 0:
            raise shrank(item.path)
        raise DesyncError(f"cannot archive {os.fsdecode(item.path)}: {os.strerror(err)}")


def _close_slices(batch: list[bytes | FileSlice]) -> None:
    for item in batch:
        if not isinstance(item, bytes):
            os.close(item.fd)


def write_archive(fd: int, items: Iterable[bytes | FileSlice]) -> None:
    """Append every item to ``fd`` (bytes, and the contents of each FileSlice, whose descriptor is closed)."""
    batches = _Batches(fd)
    batch: list[bytes | FileSlice] = []
    size = slices = 0
    done = False
    try:
        for item in items:
            batch.append(item)
            if isinstance(item, bytes):
                size += len(item)
            else:
                slices += 1
                size += min(item.size, BATCH_BYTES)
            if size >= BATCH_BYTES or slices >= BATCH_SLICES:
                full = batch
                batch = []
                size = slices = 0
                batches.thread.put(full)
        if batch:
            full = batch
            batch = []
            batches.thread.put(full)
        done = True
    finally:
        _close_slices(batch)
        if done:
            batches.thread.close()
        else:
            batches.thread.abort()
