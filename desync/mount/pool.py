"""Worker threads for chunk fetches, demand reads ahead of read-ahead.

A mount serves reads for as long as it is mounted, so unlike
:class:`desync.parallel.Workers` a failing job must not stop the pool: each
job reports its own outcome.  Jobs carry a priority so a reader waiting for
a chunk is not queued behind read-ahead of chunks nobody waits for yet.
"""

import itertools
import queue
import threading
from collections.abc import Callable

DEMAND = 0
READ_AHEAD = 1
_STOP = 2

Job = Callable[[], None]


class PriorityPool:
    """``count`` daemon threads running submitted jobs, lowest priority value first, FIFO within one."""

    def __init__(self, count: int, name: str = "desync-mount") -> None:
        self._jobs: "queue.PriorityQueue[tuple[int, int, Job | None]]" = queue.PriorityQueue()
        self._seq = itertools.count()
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, daemon=True, name=name) for _ in range(max(1, count))]
        for t in self._threads:
            t.start()

    def _loop(self) -> None:
        while True:
            _, _, job = self._jobs.get()
            if job is None:
                return
            if not self._closed:
                job()

    def submit(self, priority: int, job: Job) -> None:
        """Queue ``job``; it must handle its own exceptions (the pool ignores nothing it is not given)."""
        self._jobs.put((priority, next(self._seq), job))

    def close(self) -> None:
        """Drop queued jobs and stop the threads (running jobs finish; threads stuck in I/O are abandoned)."""
        self._closed = True
        for _ in self._threads:
            self._jobs.put((_STOP, next(self._seq), None))
        for t in self._threads:
            t.join(timeout=2.0)
