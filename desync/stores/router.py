"""Chained stores (``-s a -s b``): tried in order, a miss falls through.

A chain is a read store: a write or a removal would have no one member to
go to.  Batched reads stay batched: the first store is asked for the whole
batch, each next one for what the stores before it lacked.
"""

from collections.abc import Sequence

from ..chunk import Chunk
from ..errors import ChunkMissing
from .base import Store
from .capabilities import ReadStore


class StoreRouter(Store):
    def __init__(self, stores: Sequence[ReadStore]) -> None:
        self.stores = list(stores)
        self.location = " -> ".join(str(s) for s in self.stores)

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        for store in self.stores:
            try:
                return store.get_chunk(chunk_id, size_hint)
            except ChunkMissing:
                continue
        raise ChunkMissing(chunk_id, self.location)

    def fetch_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk | None]:
        found: list[Chunk | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        for store in self.stores:
            if not pending:
                break
            for i, chunk in zip(pending, store.fetch_chunks([requests[i] for i in pending])):
                found[i] = chunk
            pending = [i for i in pending if found[i] is None]
        return found

    def has_chunk(self, chunk_id: bytes) -> bool:
        return any(s.has_chunk(chunk_id) for s in self.stores)

    @property
    def parallelism(self) -> int:
        return max(s.parallelism for s in self.stores)

    def close(self) -> None:
        for store in self.stores:
            store.close()
