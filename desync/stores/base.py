"""The base class of every backend, cache, router and failover group: reading.

Commands compose stores (chain, cache, failover) and never special-case a
backend.  What a store can do beyond reading is declared by the methods its
class has (see :mod:`desync.stores.capabilities`).  A missing chunk is :class:`~desync.errors.ChunkMissing` (callers
fall through to the next store); anything else going wrong is a
:class:`~desync.errors.StoreError`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

from ..chunk import Chunk
from ..errors import ChunkMissing
from .options import StoreOptions as StoreOptions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..digest import Digest
    from .capabilities import WriteStore


def put_each_missing(store: WriteStore, chunks: list[Chunk]) -> int:
    """:meth:`~desync.stores.capabilities.WriteStore.put_missing` one chunk at a time: for backends with
    nothing to batch (each chunk is a request anyway) and wrappers whose members decide chunk by chunk."""
    stored = 0
    for chunk in chunks:
        if not store.has_chunk(chunk.id):
            store.put_chunk(chunk)
            stored += 1
    return stored


def stored_chunk(options: StoreOptions, chunk_id: bytes, raw: bytes, compressed: bool, where: str,
                 size_hint: int = 0, origin: str = "") -> Chunk:
    """A chunk from the bytes a store holds, verified against its ID unless the store skips verification.

    Every backend's reads come through here, so decoding and checking stored bytes is done one way
    (:meth:`~desync.chunk.Chunk.verify`).
    """
    chunk = Chunk(chunk_id, compressed=raw, origin=origin) if compressed else Chunk(chunk_id, data=raw, origin=origin)
    if not options.skip_verify:
        chunk.verify(options.digest, where, size_hint)
    return chunk


class Store(ABC):
    """Base class: a read store (:class:`~desync.stores.capabilities.ReadStore`).

    Writing and pruning are added by the backends that can (``put_chunk``;
    ``iter_chunks``, ``remove_chunk``, ``remove_stray_files``).
    """

    location: str = ""

    @abstractmethod
    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        """Return the chunk (verified unless the store skips verification) or raise ChunkMissing."""

    def fetch_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk | None]:
        """Several chunks (ID, size hint) at once; ``None`` for a missing one, other failures raised.

        The batched fast path: backends that can batch their I/O override
        this, and wrappers pass it on to their members.  The default asks
        one by one.
        """
        found: list[Chunk | None] = []
        for chunk_id, size_hint in requests:
            try:
                found.append(self.get_chunk(chunk_id, size_hint))
            except ChunkMissing:
                found.append(None)
        return found

    def get_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk]:
        """Several chunks through :meth:`fetch_chunks`, ChunkMissing for the first missing one."""
        chunks: list[Chunk] = []
        for (chunk_id, _), chunk in zip(requests, self.fetch_chunks(requests)):
            if chunk is None:
                raise ChunkMissing(chunk_id, self.location)
            chunks.append(chunk)
        return chunks

    def check_chunk(self, chunk_id: bytes, digest: Digest) -> None:
        """Raise ChunkInvalid unless the stored chunk hashes to its ID (ChunkMissing when it is not there).

        For checks that know no chunk size (``verify``): backends that can
        read a chunk in pieces override this so that a huge or endless
        chunk file costs a piece of memory, not the whole file.
        """
        self.get_chunk(chunk_id).verify(digest, str(self))

    @abstractmethod
    def has_chunk(self, chunk_id: bytes) -> bool:
        """Whether the chunk is present, without transferring it."""

    def touch_chunk(self, chunk_id: bytes) -> None:
        """Mark a chunk as recently used; only stores that keep access times need it."""

    def flush(self) -> None:
        """Make the chunks written so far durable (before an index that refers to them is written)."""

    def writer_lock(self, exclusive: bool) -> None:
        """Take the store's writer lock until close(); only local stores have one.

        Commands that add chunks an index will refer to (make, tar, chop,
        cache) hold it shared; prune holds it exclusively, so it never
        deletes a chunk such a command has just found or written.
        """

    @property
    def parallelism(self) -> int:
        """Requests worth having in flight: local work is CPU-bound, so more threads than cores only contend.

        Network backends override this with their configured worker count.
        """
        return os.cpu_count() or 1

    def close(self) -> None:
        """Release connections or subprocesses; the default has nothing to release."""

    def __str__(self) -> str:
        return self.location

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
