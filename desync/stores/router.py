"""Chained stores (``-s a -s b``): tried in order, a miss falls through."""

from collections.abc import Iterator, Sequence

from ..chunk import Chunk
from ..errors import ChunkMissing
from .base import Store


class StoreRouter(Store):
    def __init__(self, stores: Sequence[Store]) -> None:
        self.stores = list(stores)
        self.location = " -> ".join(str(s) for s in self.stores)

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        for store in self.stores:
            try:
                return store.get_chunk(chunk_id, size_hint)
            except ChunkMissing:
                continue
        raise ChunkMissing(chunk_id, self.location)

    def has_chunk(self, chunk_id: bytes) -> bool:
        return any(s.has_chunk(chunk_id) for s in self.stores)

    def iter_chunks(self) -> Iterator[bytes]:
        seen: set[bytes] = set()
        for store in self.stores:
            for chunk_id in store.iter_chunks():
                if chunk_id not in seen:
                    seen.add(chunk_id)
                    yield chunk_id

    @property
    def parallelism(self) -> int:
        return max(s.parallelism for s in self.stores)

    def close(self) -> None:
        for store in self.stores:
            store.close()
