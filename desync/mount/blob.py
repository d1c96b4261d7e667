"""Random reads of the blob an index describes, fetching only the chunks they touch.

A read finds its chunks by binary search over the chunk end offsets, takes
what the in-memory LRU cache holds, waits for chunks another thread is
already fetching, and fetches the rest in parallel (the reading thread does
one itself, the pool the others).  A read that continues where an earlier
one ended is taken as sequential and starts fetching the chunks after it
(read-ahead), so a streaming reader finds them ready.  With a
:class:`~desync.mount.sparse.SparseFile` every fetched chunk is also
written there and later served from it, across remounts.

The lock guards only the cache and the table of fetches in flight; chunk
data is fetched, decompressed and verified outside it.
"""

import bisect
import threading
from collections import OrderedDict, deque
from typing import Final

from ..errors import DesyncError, StoreError
from ..index import Index
from ..stores.base import Store
from .pool import DEMAND, READ_AHEAD, PriorityPool
from .sparse import SparseFile

MIB: Final = 1 << 20
DEFAULT_CACHE_BYTES: Final = 64 * MIB
DEFAULT_READ_AHEAD_BYTES: Final = 8 * MIB


class _Fetch:
    """One chunk being fetched; readers that need it wait on ``done``."""

    __slots__ = ("done", "data", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.data = b""
        self.error: BaseException | None = None


class BlobReader:
    """Thread-safe ``read(offset, size)`` over an index and a store."""

    def __init__(self, index: Index, store: Store, *, workers: int = 4, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 read_ahead_bytes: int = DEFAULT_READ_AHEAD_BYTES, sparse: SparseFile | None = None) -> None:
        self.index = index
        self.store = store
        self.size = index.length
        self.sparse = sparse
        self._chunks = index.chunks
        self._ends = [c.end for c in index.chunks]
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = max(cache_bytes, 2 * read_ahead_bytes)
        self._read_ahead = read_ahead_bytes
        self._inflight: dict[int, _Fetch] = {}
        self._recent_ends: deque[int] = deque(maxlen=16)
        self._ahead_mark = -1
        self._lock = threading.Lock()
        self._closed = False
        self._pool = PriorityPool(workers)
        # A max-size run of zeros (the "null chunk" of disk images) needs no store at all.
        self._zero = bytes(index.max_size)
        self._zero_id = index.digest.sum(self._zero) if index.chunks else b""

    # -- reading ------------------------------------------------------------------------------------

    def read(self, offset: int, size: int, read_ahead: bool = True) -> bytes:
        """Bytes ``[offset, offset+size)`` of the blob, fewer at its end, none past it.

        ``read_ahead=False`` is for a scan that skips much of what follows (an
        archive's file contents), where fetching ahead would fetch those too.
        """
        end = min(offset + size, self.size)
        if offset < 0 or offset >= end:
            return b""
        first = bisect.bisect_right(self._ends, offset)
        last = bisect.bisect_left(self._ends, end, first)
        datas = self._gather(first, last)
        if read_ahead:
            self._maybe_read_ahead(offset, end, last)
        start = self._chunks[first].start
        if first == last:
            lo = offset - start
            hi = end - start
            return datas[0][lo:hi]
        head = offset - start
        tail = end - self._chunks[last].start
        parts = [memoryview(datas[0])[head:]]
        parts.extend(memoryview(d) for d in datas[1:-1])
        parts.append(memoryview(datas[-1])[:tail])
        return b"".join(parts)

    def extent_end(self, offset: int) -> int:
        """End of the chunk holding ``offset``: reading up to it costs no further fetch."""
        i = bisect.bisect_right(self._ends, offset)
        return self._ends[i] if i < len(self._ends) else self.size

    def _gather(self, first: int, last: int) -> list[bytes]:
        """The data of chunks ``first..last``: cached, awaited, or fetched here and by the pool."""
        n = last - first + 1
        out: list[bytes] = [b""] * n
        waits: list[tuple[int, _Fetch]] = []
        mine: list[tuple[int, _Fetch]] = []
        with self._lock:
            for k in range(n):
                i = first + k
                chunk_id = self._chunks[i].id
                data = self._cache.get(chunk_id)
                if data is not None:
                    self._cache.move_to_end(chunk_id)
                    out[k] = data
                    continue
                pending = self._inflight.get(i)
                if pending is None:
                    pending = _Fetch()
                    self._inflight[i] = pending
                    mine.append((k, pending))
                waits.append((k, pending))
        for k, pending in mine[1:]:
            self._pool.submit(DEMAND, self._job(first + k, pending))
        if mine:
            k, pending = mine[0]
            self._run(first + k, pending)
        for k, pending in waits:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            out[k] = pending.data
        return out

    def _job(self, i: int, pending: _Fetch) -> "_FetchJob":
        return _FetchJob(self, i, pending)

    def _run(self, i: int, pending: _Fetch) -> None:
        """Fetch chunk ``i`` into ``pending``, cache it and release its waiters, whatever happens."""
        try:
            data = self._load(i)
            pending.data = data
            with self._lock:
                self._inflight.pop(i, None)
                self._remember(self._chunks[i].id, data)
        except BaseException as failure:
            pending.error = failure
            with self._lock:
                self._inflight.pop(i, None)
        finally:
            pending.done.set()

    def _remember(self, chunk_id: bytes, data: bytes) -> None:
        """Insert into the LRU cache (lock held), evicting the least recently used beyond the limit."""
        if chunk_id in self._cache:
            self._cache.move_to_end(chunk_id)
            return
        self._cache[chunk_id] = data
        self._cache_bytes += len(data)
        while self._cache_bytes > self._cache_limit and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= len(old)

    def _load(self, i: int) -> bytes:
        c = self._chunks[i]
        if c.size == len(self._zero) and c.id == self._zero_id:
            return self._zero
        sparse = self.sparse
        if sparse is not None and sparse.has(i):
            return sparse.read(c.start, c.size)
        data = self.store.get_chunk(c.id, c.size).data(c.size)
        if len(data) != c.size:
            raise StoreError(f"chunk {c.id.hex()} has {len(data)} bytes, the index says {c.size}")
        if sparse is not None:
            sparse.write(i, c.start, data)
        return data

    # -- read-ahead ---------------------------------------------------------------------------------

    def _maybe_read_ahead(self, offset: int, end: int, last: int) -> None:
        """After a read that continues an earlier one, start fetching the chunks that follow it."""
        with self._lock:
            sequential = offset in self._recent_ends
            self._recent_ends.append(end)
            if not sequential or self._closed:
                return
            limit = end + self._read_ahead
            start = last + 1
            mark = self._ahead_mark
            if last < mark < len(self._chunks) and self._chunks[mark].start < limit:
                start = mark + 1
            jobs: list[tuple[int, _Fetch]] = []
            i = start
            while i < len(self._chunks) and self._chunks[i].start < limit:
                c = self._chunks[i]
                if c.id not in self._cache and i not in self._inflight:
                    pending = _Fetch()
                    self._inflight[i] = pending
                    jobs.append((i, pending))
                i += 1
            self._ahead_mark = i - 1
        for j, pending in jobs:
            self._pool.submit(READ_AHEAD, self._job(j, pending))

    # -- background fill of a copy-on-read file -----------------------------------------------------

    def preload(self, i: int) -> None:
        """Make chunk ``i`` present in the sparse file (for --cor-state-init); failures are left for reads."""
        sparse = self.sparse
        if self._closed or sparse is None or sparse.has(i):
            return
        with self._lock:
            if i in self._inflight:
                return
            pending = _Fetch()
            self._inflight[i] = pending
        try:
            pending.data = self._load(i)
        except (DesyncError, OSError) as failure:
            pending.error = failure
        finally:
            with self._lock:
                self._inflight.pop(i, None)
            pending.done.set()

    def close(self) -> None:
        self._closed = True
        self._pool.close()


class _FetchJob:
    """A pool job fetching one chunk (a class, not a closure, to keep the per-chunk cost low)."""

    __slots__ = ("reader", "i", "pending")

    def __init__(self, reader: BlobReader, i: int, pending: _Fetch) -> None:
        self.reader = reader
        self.i = i
        self.pending = pending

    def __call__(self) -> None:
        self.reader._run(self.i, self.pending)
