"""One background thread that processes batches of work in order.

File output is kernel time and encoding or decoding is Python time; a
second thread lets them overlap.  Work goes over in batches, and each batch
is meant to be processed with the GIL released once (a C helper), because a
hand-over of the GIL per system call costs more than the call itself.  The
queue holds at most ``max_batches`` batches, which bounds memory and open
descriptors.  The first error stops the thread; the producer sees it at its
next ``put`` or at ``close``.
"""

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchThread(Generic[T]):
    def __init__(self, process: Callable[[list[T]], None], discard: Callable[[list[T]], None],
                 max_batches: int = 4, name: str = "desync-batch") -> None:
        """``process`` does a batch's work; ``discard`` releases a batch that will not be processed."""
        self._process = process
        self._discard = discard
        self._max = max(1, max_batches)
        self._queue: deque[list[T]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._loop, name=name, daemon=True)
        self._worker.start()

    def put(self, batch: list[T]) -> None:
        with self._cond:
            while self._error is None and len(self._queue) >= self._max:
                self._cond.wait()
            error = self._error
            if error is None:
                self._queue.append(batch)
                self._cond.notify_all()
                return
        self._discard(batch)
        raise error

    def close(self) -> None:
        """Wait until every batch is processed; raise the first error."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._worker.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Finish the batch in progress, discard the rest, and stop."""
        with self._cond:
            if self._error is None:
                self._error = InterruptedError("stopped")
            self._closing = True
            self._cond.notify_all()
        self._worker.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = self._queue[0]
                failed = self._error is not None
            try:
                if failed:
                    self._discard(batch)
                else:
                    self._process(batch)
            except BaseException as exc:
                with self._cond:
                    if self._error is None:
                        self._error = exc
            with self._cond:
                self._queue.popleft()
                self._cond.notify_all()
