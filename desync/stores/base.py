"""The base class of every backend, cache, router and failover group: reading.

Commands compose stores (chain, cache, failover) and never special-case a
backend.  What a store can do beyond reading is declared by the methods its
class has (see :mod:`desync.stores.capabilities`).  A missing chunk is :class:`~desync.errors.ChunkMissing` (callers
fall through to the next store); anything else going wrong is a
:class:`~desync.errors.StoreError`.
"""

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..chunk import Chunk
from ..digest import DEFAULT, Digest
from ..errors import ChunkMissing
from .s3auth import S3Credentials


@dataclass(slots=True)
class StoreOptions:
    """Per-store settings; the config file can set them per location."""

    digest: Digest = DEFAULT
    skip_verify: bool = False
    uncompressed: bool = False
    # How new chunk files are compressed: zstd (default), or xz or gzip as casync --compression writes.
    compression: str = "zstd"
    timeout: float = 60.0
    error_retry: int = 3
    error_retry_base_interval: float = 0.5
    trust_insecure: bool = False
    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""
    http_auth: str = ""
    http_cookie: str = ""
    workers: int = 10
    # Bytes per second over the network, all connections of the store together (0: no bound); casync's
    # --rate-limit-bps.  HTTP(S) stores and the SSH sessions of casync's command line honour it.
    rate_limit: int = 0
    # S3 stores: credentials resolved by whoever opens the store (see desync.stores.s3auth).
    s3_credentials: S3Credentials | None = None


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
