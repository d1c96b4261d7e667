"""A cache in front of a slower store (``-c``): read first, filled on a miss.

A hit touches the cached chunk's mtime (local caches), so cache cleanup by
age keeps what is still in use.  The cache only saves work: when it cannot
be written or read (read-only directory, disk full, permissions), the
failure is reported once through ``on_error`` and the cache is bypassed,
so a command whose chunks are all in the store still completes.
"""

import threading
from collections.abc import Callable, Iterator

from ..chunk import Chunk
from ..errors import ChunkInvalid, ChunkMissing, StoreError
from .base import Store


class CachedStore(Store):
    def __init__(self, backend: Store, cache: Store, on_error: Callable[[str], None] | None = None) -> None:
        self.backend = backend
        self.cache = cache
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
                self._drop(chunk_id)
            except (StoreError, OSError) as read_error:
                self._failed(read_error)
            else:
                self.cache.touch_chunk(chunk_id)
                return chunk
        chunk = self.backend.get_chunk(chunk_id, size_hint)
        if self._usable:
            try:
                self.cache.put_chunk(chunk)
            except (StoreError, OSError) as write_error:
                self._failed(write_error)
        return chunk

    def _drop(self, chunk_id: bytes) -> None:
        try:
            self.cache.remove_chunk(chunk_id)
        except ChunkMissing:
            pass
        except (StoreError, OSError) as remove_error:
            self._failed(remove_error)

    def has_chunk(self, chunk_id: bytes) -> bool:
        return (self._usable and self.cache.has_chunk(chunk_id)) or self.backend.has_chunk(chunk_id)

    def iter_chunks(self) -> Iterator[bytes]:
        return self.backend.iter_chunks()

    @property
    def parallelism(self) -> int:
        return max(self.backend.parallelism, self.cache.parallelism)

    def close(self) -> None:
        self.backend.close()
        self.cache.close()
