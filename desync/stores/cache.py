"""A cache in front of a slower store (``-c``): read first, filled on a miss.

A hit touches the cached chunk's mtime (local caches), so cache cleanup by
age keeps what is still in use.
"""

from collections.abc import Iterator

from ..chunk import Chunk
from ..errors import ChunkInvalid, ChunkMissing
from .base import Store


class CachedStore(Store):
    def __init__(self, backend: Store, cache: Store) -> None:
        self.backend = backend
        self.cache = cache
        self.location = f"{backend} (cache {cache})"

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        try:
            chunk = self.cache.get_chunk(chunk_id, size_hint)
        except ChunkMissing:
            pass
        except ChunkInvalid:
            self.cache.remove_chunk(chunk_id)
        else:
            self.cache.touch_chunk(chunk_id)
            return chunk
        chunk = self.backend.get_chunk(chunk_id, size_hint)
        self.cache.put_chunk(chunk)
        return chunk

    def has_chunk(self, chunk_id: bytes) -> bool:
        return self.cache.has_chunk(chunk_id) or self.backend.has_chunk(chunk_id)

    def iter_chunks(self) -> Iterator[bytes]:
        return self.backend.iter_chunks()

    @property
    def parallelism(self) -> int:
        return max(self.backend.parallelism, self.cache.parallelism)

    def close(self) -> None:
        self.backend.close()
        self.cache.close()
