"""The copy-on-read file: a sparse local copy of the blob, filled as chunks are read.

Chunks fetched for a mount are written at their blob offset, so the file
grows into a full copy and later reads (also after a remount) need no store.
Which chunks are present is a bitmap, one bit per index entry (least
significant bit first, ``ceil(n/8)`` bytes) -- the layout of the Go
desync's ``--cor-state-save`` file, so state files are interchangeable.  The
state is only trusted together with a file of the blob's exact size; a state
file written for another index must not be reused (the Go tool has the same
rule, and only the size is checked).
"""

import os
import threading

from .. import fsutil
from ..errors import DesyncError
from ..index import Index


def _bitmap_size(chunks: int) -> int:
    return (chunks + 7) // 8


class SparseFile:
    """The file, its presence bitmap, and where the bitmap is saved."""

    def __init__(self, path: str, index: Index, state_save: str = "", state_init: str = "") -> None:
        self.path = path
        self.state_save = state_save
        self._count = len(index.chunks)
        self._lock = threading.Lock()
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise DesyncError(f"cannot open copy-on-read file {path}: {exc.strerror}") from None
        self.present = bytearray(_bitmap_size(self._count))
        #: Chunks to fetch in the background: those an init state marks, when no saved state was usable.
        self.preload: list[int] = []
        try:
            restored = os.fstat(self._fd).st_size == index.length and self._restore()
            if not restored:
                os.ftruncate(self._fd, index.length)
                if state_init:
                    init = self._read_state(state_init)
                    self.preload = [i for i in range(self._count) if init[i >> 3] & (1 << (i & 7))]
        except OSError as exc:
            os.close(self._fd)
            raise DesyncError(f"cannot prepare copy-on-read file {path}: {exc.strerror}") from None
        except DesyncError:
            os.close(self._fd)
            raise

    def _restore(self) -> bool:
        """Load the saved state if there is one for a bitmap of the right size."""
        if not self.state_save or not os.path.exists(self.state_save):
            return False
        try:
            with open(self.state_save, "rb") as f:
                data = f.read()
        except OSError:
            return False
        if len(data) != len(self.present):
            return False
        self.present[:] = data
        return True

    def _read_state(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise DesyncError(f"cannot read state file {path}: {exc.strerror}") from None
        if len(data) != len(self.present):
            raise DesyncError(f"state file {path} does not match the index ({len(data)} bytes for "
                              f"{self._count} chunks)")
        return data

    def has(self, i: int) -> bool:
        return bool(self.present[i >> 3] & (1 << (i & 7)))

    def read(self, offset: int, size: int) -> bytes:
        data = os.pread(self._fd, size, offset)
        if len(data) < size:
            raise DesyncError(f"copy-on-read file {self.path} is shorter than the blob")
        return data

    def write(self, i: int, offset: int, data: bytes) -> None:
        """Store chunk ``i`` at ``offset`` and mark it present (after the data is in the file)."""
        try:
            fsutil.pwrite_all(self._fd, data, offset)
        except OSError as exc:
            raise DesyncError(f"cannot write copy-on-read file {self.path}: {exc.strerror}") from None
        with self._lock:
            self.present[i >> 3] |= 1 << (i & 7)

    def save_state(self) -> None:
        """Flush the file, then replace the state file, so a state never claims data the disk lacks."""
        if not self.state_save:
            return
        with self._lock:
            state = bytes(self.present)
        try:
            os.fsync(self._fd)
            fsutil.write_file_atomic(self.state_save, state, 0o644)
        except OSError as exc:
            raise DesyncError(f"cannot save state file {self.state_save}: {exc.strerror}") from None

    def close(self) -> None:
        os.close(self._fd)
