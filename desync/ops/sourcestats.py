"""Which store served how many bytes, for ``extract --print-stats``.

The read stores of a command are a chain (a router over ``-s`` stores,
with the ``-c`` cache in front); each member is wrapped in a counter that
records the bytes of the chunks it actually returned, so a store that did
not have a chunk counts nothing for it.
"""

import threading
from collections.abc import Iterator

from ..chunk import Chunk
from ..stores.base import Store
from ..stores.cache import CachedStore
from ..stores.router import StoreRouter


class ByteCounts:
    """Bytes served per source label, in the order the sources were wrapped."""

    def __init__(self) -> None:
        self.bytes: dict[str, int] = {}
        self._lock = threading.Lock()

    def register(self, label: str) -> None:
        self.bytes.setdefault(label, 0)

    def add(self, label: str, n: int) -> None:
        with self._lock:
            self.bytes[label] = self.bytes.get(label, 0) + n


class CountingStore(Store):
    """Passes everything to ``inner``; counts the bytes of the chunks it returns."""

    def __init__(self, inner: Store, label: str, counts: ByteCounts) -> None:
        self.inner = inner
        self.label = label
        self.counts = counts
        self.location = inner.location
        counts.register(label)

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        chunk = self.inner.get_chunk(chunk_id, size_hint)
        self.counts.add(self.label, size_hint or len(chunk.data()))
        return chunk

    def get_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk]:
        chunks = self.inner.get_chunks(requests)
        self.counts.add(self.label, sum(hint or len(c.data()) for (_, hint), c in zip(requests, chunks)))
        return chunks

    def has_chunk(self, chunk_id: bytes) -> bool:
        return self.inner.has_chunk(chunk_id)

    def put_chunk(self, chunk: Chunk) -> None:
        self.inner.put_chunk(chunk)

    def remove_chunk(self, chunk_id: bytes) -> None:
        self.inner.remove_chunk(chunk_id)

    def touch_chunk(self, chunk_id: bytes) -> None:
        self.inner.touch_chunk(chunk_id)

    def iter_chunks(self) -> Iterator[bytes]:
        return self.inner.iter_chunks()

    @property
    def writable(self) -> bool:
        return self.inner.writable

    @property
    def parallelism(self) -> int:
        return self.inner.parallelism

    def close(self) -> None:
        self.inner.close()


def count_sources(store: Store, counts: ByteCounts) -> Store:
    """``store`` with every cache and chained store counting what it serves (the chain itself is kept)."""
    if isinstance(store, CachedStore):
        store.cache = CountingStore(store.cache, f"cache {store.cache}", counts)
        store.backend = count_sources(store.backend, counts)
        return store
    if isinstance(store, StoreRouter):
        store.stores = [CountingStore(s, f"store {s}", counts) for s in store.stores]
        return store
    return CountingStore(store, f"store {store}", counts)
