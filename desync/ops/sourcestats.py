"""Which store served how many bytes, for ``extract --print-stats``.

The read stores of a command are a chain (a router over ``-s`` stores,
with the ``-c`` cache in front); each member is wrapped in a counter that
records the bytes of the chunks it actually returned, so a store that did
not have a chunk counts nothing for it.
"""

import threading

from ..chunk import Chunk
from ..stores.base import Store
from ..stores.capabilities import ReadStore, WriteStore
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
    """Reads through ``inner``; counts the bytes of the chunks it returns."""

    def __init__(self, inner: ReadStore, label: str, counts: ByteCounts) -> None:
        self.inner = inner
        self.label = label
        self.counts = counts
        self.location = inner.location
        counts.register(label)

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        chunk = self.inner.get_chunk(chunk_id, size_hint)
        self.counts.add(self.label, size_hint or len(chunk.data()))
        return chunk

    def fetch_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk | None]:
        chunks = self.inner.fetch_chunks(requests)
        self.counts.add(self.label, sum(hint or len(c.data()) for (_, hint), c in zip(requests, chunks)
                                        if c is not None))
        return chunks

    def has_chunk(self, chunk_id: bytes) -> bool:
        return self.inner.has_chunk(chunk_id)

    def touch_chunk(self, chunk_id: bytes) -> None:
        self.inner.touch_chunk(chunk_id)

    @property
    def parallelism(self) -> int:
        return self.inner.parallelism

    def close(self) -> None:
        self.inner.close()


class CountingWriteStore(CountingStore):
    """A counted cache: it is also written to."""

    def __init__(self, inner: WriteStore, label: str, counts: ByteCounts) -> None:
        super().__init__(inner, label, counts)
        self.writer = inner

    def put_chunk(self, chunk: Chunk) -> None:
        self.writer.put_chunk(chunk)

    def put_missing(self, chunks: list[Chunk]) -> int:
        return self.writer.put_missing(chunks)


def count_sources(store: ReadStore, counts: ByteCounts) -> Store:
    """``store`` with every cache and chained store counting what it serves (the chain itself is kept)."""
    if isinstance(store, CachedStore):
        store.cache = CountingWriteStore(store.cache, f"cache {store.cache}", counts)
        store.backend = count_sources(store.backend, counts)
        return store
    if isinstance(store, StoreRouter):
        store.stores = [CountingStore(s, f"store {s}", counts) for s in store.stores]
        return store
    return CountingStore(store, f"store {store}", counts)
