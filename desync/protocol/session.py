"""What the SSH pull client and the SFTP client share: a pipelined session over one ssh process.

Many threads put requests in flight at once; each waits on its own entry
in the pending table, and one reading thread hands every answer to its
waiter.  When the session fails, the first failure is kept and every
waiter is woken, so no thread waits on an answer that cannot come.
"""

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from .stream import MessageWriter
from .transport import SSHProcess


class Waiter:
    """One entry in the pending table: the event its thread sleeps on."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()

    def wake(self) -> None:
        self.event.set()


K = TypeVar("K")
W = TypeVar("W", bound=Waiter)
E = TypeVar("E", bound=Exception)


class PipelinedSession(Generic[K, W, E]):
    """The pending table, the failure, and the reading thread; subclasses speak the protocol."""

    def __init__(self, argv: list[str], label: str) -> None:
        self.label = label
        self.process = SSHProcess(argv, label)
        self.writer = MessageWriter(self.process.out_fd)
        self.lock = threading.Lock()
        self.pending: dict[K, W] = {}
        self.failure: E | None = None
        self.closed = False
        self.last_heard = time.monotonic()

    def _start_reading(self, read_loop: Callable[[], None], name: str) -> None:
        """Start the thread that reads every answer (it fails the session when the stream breaks)."""
        self.reading = threading.Thread(target=read_loop, name=name, daemon=True)
        self.reading.start()

    @property
    def alive(self) -> bool:
        return self.failure is None and not self.closed

    @property
    def load(self) -> int:
        return len(self.pending)

    def _fail_waiters(self, exc: E) -> None:
        """Keep the first failure (none once closed) and wake every waiter; their answers will not come."""
        with self.lock:
            if self.failure is None and not self.closed:
                self.failure = exc
            waiting = list(self.pending.values())
            self.pending.clear()
        for waiter in waiting:
            waiter.wake()
