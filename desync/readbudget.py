"""Remote objects being read: past :data:`LARGE_READ` bytes, one at a time in the whole process.

The format lets a chunk be up to 128 MiB (CHUNK_SIZE_LIMIT), so a read
whose chunk size is not known (``verify``, ``cache``) is bounded only by
that, and a store that lies can make every object that large: with many
workers reading at once, gigabytes.  Reads of up to LARGE_READ bytes (every
chunk of an ordinary store) run freely; a read going past it waits for the
single large-read permit, so what reads hold stays within workers ×
LARGE_READ plus one large object.
"""

import threading
from typing import Final

LARGE_READ: Final = 4 << 20
_PERMIT: Final = threading.Lock()


class ReadBudget:
    """One object's read: call :meth:`grow` with the bytes held so far, :meth:`release` when done (always)."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = False

    def grow(self, total: int) -> None:
        """Wait for the large-read permit the first time ``total`` passes LARGE_READ."""
        if total > LARGE_READ and not self.held:
            _PERMIT.acquire()
            self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            _PERMIT.release()
