"""Large objects held in memory: past :data:`LARGE_READ` bytes, one at a time in the whole process.

The format lets a chunk be up to 128 MiB (CHUNK_SIZE_LIMIT), so a read
whose chunk size is not known (a chunk-server GET, ``cache`` without an
index) is bounded only by that, and a store or client that lies can make
every object that large: with many workers or connections at once,
gigabytes.  Reads of up to LARGE_READ bytes (every chunk of an ordinary
store) run freely; a read going past it waits for the single large-object
permit, so what reads hold stays within workers × LARGE_READ plus one
large object.

A server request holds what it read until its reply is sent, so servers
run each request in a :func:`request_scope`: a permit taken inside it is
kept until the scope ends, not given back when the read returns.
"""

import threading
from types import TracebackType
from typing import Final

LARGE_READ: Final = 4 << 20
_PERMIT: Final = threading.Lock()
# Per thread: whether a request scope is open, and whether it holds the permit.
_SCOPE: Final = threading.local()


def _acquire() -> None:
    if getattr(_SCOPE, "open", False):
        if not getattr(_SCOPE, "held", False):
            _PERMIT.acquire()
            _SCOPE.held = True
        return
    _PERMIT.acquire()


def _release() -> None:
    if not getattr(_SCOPE, "open", False):
        _PERMIT.release()


class ReadBudget:
    """One object's read: call :meth:`grow` with the bytes held so far, :meth:`release` when done (always)."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = False

    def grow(self, total: int) -> None:
        """Wait for the large-object permit the first time ``total`` passes LARGE_READ."""
        if total > LARGE_READ and not self.held:
            _acquire()
            self.held = True

    def release(self) -> None:
        """Give the permit back, unless a request scope keeps it until the reply is sent."""
        if self.held:
            self.held = False
            _release()


class request_scope:
    """``with request_scope():`` around reading a request, computing and sending its reply."""

    def __enter__(self) -> None:
        _SCOPE.open = True
        _SCOPE.held = False

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        held = getattr(_SCOPE, "held", False)
        _SCOPE.open = False
        _SCOPE.held = False
        if held:
            _PERMIT.release()
