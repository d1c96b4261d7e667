"""Thread pools for per-chunk work, lighter than concurrent.futures.

Thousands of small chunks make the per-item cost of a pool matter, and the
command start-up pays for every import; these helpers use a C queue, no
futures, and daemon threads so an interrupted command exits at once.  They
wait only on C primitives (``queue.SimpleQueue``, ``threading.Lock``): the
standard Semaphore, Event and Condition run as Python code under the GIL,
which every worker then queues for.
"""

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Job = Callable[[], None]


class Workers:
    """Fixed worker threads running submitted jobs in any order.

    ``submit`` blocks while ``backlog`` jobs are queued or running, which
    bounds the memory the jobs hold.  The first failing job stops the rest;
    its exception is raised by the next ``submit`` or by ``join``.
    """

    def __init__(self, count: int, backlog: int = 0) -> None:
        self._jobs: "queue.SimpleQueue[Job | None]" = queue.SimpleQueue()
        # A counting semaphore made of a C queue of tokens.
        self._slots: "queue.SimpleQueue[None]" = queue.SimpleQueue()
        for _ in range(backlog or max(1, count) * 4):
            self._slots.put(None)
        self._stopped = False
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._loop, daemon=True, name="desync-worker")
                         for _ in range(max(1, count))]
        for t in self._threads:
            t.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if not self._stopped:
                    job()
            except BaseException as failure:
                self._errors.append(failure)
                self._stopped = True
            finally:
                self._slots.put(None)

    def _check(self) -> None:
        if self._errors:
            raise self._errors[0]

    def submit(self, job: Job) -> None:
        self._check()
        self._slots.get()
        self._jobs.put(job)

    def join(self) -> None:
        """Wait for all jobs; raise the first failure."""
        for _ in self._threads:
            self._jobs.put(None)
        try:
            for t in self._threads:
                t.join()
        except BaseException:
            self.abort()
            raise
        self._check()

    def abort(self) -> None:
        """Stop running further jobs; give running ones a moment, abandon any stuck in I/O."""
        self._stopped = True
        for _ in self._threads:
            self._jobs.put(None)
        deadline = time.monotonic() + 2.0  # in all: many workers may be stuck at once
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))


class _Slot(Generic[R]):
    """One item's result; ``done`` is held until the worker has stored it (a Lock is released by any thread)."""

    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.value: R | None = None
        self.error: BaseException | None = None


class _MapJob(Generic[T, R]):
    """One item of :class:`ordered_map` or :func:`map_on` (a class, not a closure: see ops.make._Batch)."""

    __slots__ = ("fn", "item", "slot")

    def __init__(self, fn: Callable[[T], R], item: T, slot: _Slot[R]) -> None:
        self.fn = fn
        self.item = item
        self.slot = slot

    def __call__(self) -> None:
        try:
            self.slot.value = self.fn(self.item)
        except BaseException as failure:
            self.slot.error = failure
        finally:
            self.slot.done.release()


class ordered_map(Generic[T, R]):  # noqa: N801 - used like the builtin map
    """Like ``map`` on ``workers`` threads running at most ``ahead`` items ahead; results in order.

    An iterator class rather than a generator: mypyc-compiled generators
    mishandle ``yield`` inside ``try``/``finally``.
    """

    def __init__(self, fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int = 0) -> None:
        self._fn = fn
        self._items = iter(items)
        self._limit = ahead or max(1, workers) * 2
        self._pool = Workers(workers, backlog=self._limit + max(1, workers))
        self._pending: deque[_Slot[R]] = deque()
        self._exhausted = False

    def __iter__(self) -> "ordered_map[T, R]":
        return self

    def _fill(self) -> None:
        while not self._exhausted and len(self._pending) < self._limit:
            try:
                item = next(self._items)
            except StopIteration:
                self._exhausted = True
                break
            slot: _Slot[R] = _Slot()
            self._pending.append(slot)
            self._pool.submit(_MapJob(self._fn, item, slot))

    def __next__(self) -> R:
        try:
            self._fill()
            if not self._pending:
                self.close()
                raise StopIteration
            slot = self._pending.popleft()
            slot.done.acquire()
        except BaseException:
            self.close()
            raise
        if slot.error is not None:
            self.close()
            raise slot.error
        return slot.value  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the workers (also when the consumer stops early)."""
        self._exhausted = True
        self._pending.clear()
        self._pool.abort()


def map_on(pool: Workers, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(item) for item in items]`` on an existing pool's threads; the first exception is raised.

    The pool must be one nobody aborts meanwhile: a job it skips would be
    waited for forever.  (These jobs themselves never fail the pool.)
    """
    slots: list[_Slot[R]] = []
    for item in items:
        slot: _Slot[R] = _Slot()
        slots.append(slot)
        pool.submit(_MapJob(fn, item, slot))
    results: list[R] = []
    for slot in slots:
        slot.done.acquire()
        if slot.error is not None:
            raise slot.error
        results.append(slot.value)  # type: ignore[arg-type]
    return results


def run_all(fn: Callable[[T], None], items: Iterable[T], workers: int) -> None:
    """Apply ``fn`` to every item on ``workers`` threads; the first exception stops the rest and is raised."""
    pool = Workers(workers)

    def job_for(item: T) -> Job:
        return lambda: fn(item)

    try:
        for item in items:
            pool.submit(job_for(item))
        pool.join()
    except BaseException:
        pool.abort()
        raise


class Counter:
    """A thread-safe counter for workers to report what they did."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n
