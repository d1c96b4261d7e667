"""Small helpers to run per-chunk work on a thread pool with bounded backlog."""

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int = 0) -> Iterator[R]:
    """Like ``map`` but ``workers`` threads run ahead by at most ``ahead`` items, results in order."""
    limit = ahead or max(1, workers) * 2
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="desync")
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def run_all(fn: Callable[[T], None], items: Iterable[T], workers: int) -> None:
    """Apply ``fn`` to every item; the first exception stops the rest and is raised."""
    for _ in ordered_map(fn, items, workers, ahead=max(1, workers) * 4):
        pass


class Counter:
    """A thread-safe counter for workers to report what they did."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n
