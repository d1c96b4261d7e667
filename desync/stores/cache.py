"""A cache in front of a slower store (``-c``): read first, filled on a miss.

A hit touches the cached chunk's mtime (local caches), so cache cleanup by
age keeps what is still in use.  The cache only saves work: when it cannot
be written or read (read-only directory, disk full, permissions), the
failure is reported once through ``on_error`` and the cache is bypassed,
so a command whose chunks are all in the store still completes.

Batched reads stay batched: the cache is asked for the whole batch, the
backend for what the cache lacked.  A cached store can do what its backend
can (:func:`cached_store` picks the class): writes and removals go to the
backend, and removals to the cache too.
"""

import threading
from collections.abc import Callable, Iterator

from ..chunk import Chunk
from ..errors import ChunkInvalid, ChunkMissing, StoreError
from .base import Store, put_each_missing
from .capabilities import PrunableStore, ReadStore, WriteStore


class CachedStore(Store):
    """A read store with a cache."""

    def __init__(self, backend: ReadStore, cache: WriteStore, on_error: Callable[[str], None] | None = None) -> None:
        self.backend = backend
        self.cache = cache
        # An invalid cache entry is replaced from the backend (the Go tool's --cache-repair, its default);
        # without repair it fails the read, so a damaged cache is noticed.
        self.repair = True
        self.location = f"{backend} (cache {cache})"
        self._on_error = on_error
        self._lock = threading.Lock()
        self._usable = True

    def _failed(self, failure: Exception) -> None:
        """Stop using the cache; the first failure is reported (or raised, without ``on_error``)."""
        if self._on_error is None:
            raise failure
        with self._lock:
            report = self._usable
            self._usable = False
        if report:
            self._on_error(f"cache {self.cache} is not usable, continuing without it: {failure}")

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        if self._usable:
            try:
                chunk = self.cache.get_chunk(chunk_id, size_hint)
            except ChunkMissing:
                pass
            except ChunkInvalid:
                if not self.repair:
                    raise
                self._drop(chunk_id)
            except (StoreError, OSError) as read_error:
                self._failed(read_error)
            else:
                self.cache.touch_chunk(chunk_id)
                return chunk
        chunk = self.backend.get_chunk(chunk_id, size_hint)
        self._fill(chunk)
        return chunk

    def fetch_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk | None]:
        found: list[Chunk | None] = [None] * len(requests)
        if self._usable:
            try:
                found = self.cache.fetch_chunks(requests)
            except ChunkInvalid:
                if not self.repair:
                    raise
                # A damaged cache entry: this batch goes one by one, which drops it and fills it again.
                return super().fetch_chunks(requests)
            except (StoreError, OSError) as read_error:
                self._failed(read_error)
            for (chunk_id, _), chunk in zip(requests, found):
                if chunk is not None:
                    self.cache.touch_chunk(chunk_id)
        misses = [i for i, chunk in enumerate(found) if chunk is None]
        if misses:
            fetched = self.backend.fetch_chunks([requests[i] for i in misses])
            for i, chunk in zip(misses, fetched):
                found[i] = chunk
                if chunk is not None:
                    self._fill(chunk)
        return found

    def _fill(self, chunk: Chunk) -> None:
        if self._usable:
            try:
                self.cache.put_chunk(chunk)
            except (StoreError, OSError) as write_error:
                self._failed(write_error)

    def _drop(self, chunk_id: bytes) -> None:
        """Remove a damaged entry when the cache can remove; a write of the good chunk replaces it anyway."""
        if not isinstance(self.cache, PrunableStore):
            return
        try:
            self.cache.remove_chunk(chunk_id)
        except (StoreError, OSError) as remove_error:
            self._failed(remove_error)

    def has_chunk(self, chunk_id: bytes) -> bool:
        return (self._usable and self.cache.has_chunk(chunk_id)) or self.backend.has_chunk(chunk_id)

    def writer_lock(self, exclusive: bool) -> None:
        self.backend.writer_lock(exclusive)

    def flush(self) -> None:
        self.backend.flush()

    @property
    def parallelism(self) -> int:
        return max(self.backend.parallelism, self.cache.parallelism)

    def close(self) -> None:
        self.backend.close()
        self.cache.close()


class WritableCachedStore(CachedStore):
    """A write store with a cache: chunks go to the backend, and to the cache (best effort)."""

    def __init__(self, backend: WriteStore, cache: WriteStore, on_error: Callable[[str], None] | None = None) -> None:
        super().__init__(backend, cache, on_error)
        self.writer: WriteStore = backend

    def put_chunk(self, chunk: Chunk) -> None:
        self.writer.put_chunk(chunk)
        self._fill(chunk)

    def put_missing(self, chunks: list[Chunk]) -> int:
        return put_each_missing(self, chunks)  # present in the cache counts as present, as in has_chunk


class PrunableCachedStore(WritableCachedStore):
    """A prunable store with a cache: the backend's chunks are listed; removals reach the cache too."""

    def __init__(self, backend: PrunableStore, cache: WriteStore,
                 on_error: Callable[[str], None] | None = None) -> None:
        super().__init__(backend, cache, on_error)
        self.pruner: PrunableStore = backend

    def iter_chunks(self) -> Iterator[bytes]:
        return self.pruner.iter_chunks()

    def remove_chunk(self, chunk_id: bytes) -> None:
        self.pruner.remove_chunk(chunk_id)
        self._drop(chunk_id)

    def remove_stray_files(self) -> int:
        return self.pruner.remove_stray_files()


def cached_store(backend: ReadStore, cache: WriteStore, on_error: Callable[[str], None] | None = None,
                 repair: bool = True) -> CachedStore:
    """``backend`` behind ``cache``, with every capability the backend has; ``repair`` as CachedStore.repair."""
    store: CachedStore
    if isinstance(backend, PrunableStore):
        store = PrunableCachedStore(backend, cache, on_error)
    elif isinstance(backend, WriteStore):
        store = WritableCachedStore(backend, cache, on_error)
    else:
        store = CachedStore(backend, cache, on_error)
    store.repair = repair
    return store
