"""The Store interface every backend, cache, router and failover group implements.

Commands compose stores (chain, cache, failover) and never special-case a
backend.  A missing chunk is :class:`~desync.errors.ChunkMissing` (callers
fall through to the next store); anything else going wrong is a
:class:`~desync.errors.StoreError`.
"""

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from ..chunk import Chunk
from ..digest import DEFAULT, Digest
from ..errors import StoreError
from .s3auth import S3Credentials


@dataclass(slots=True)
class StoreOptions:
    """Per-store settings; the config file can set them per location."""

    digest: Digest = DEFAULT
    skip_verify: bool = False
    uncompressed: bool = False
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
    # S3 stores: credentials resolved by whoever opens the store (see desync.stores.s3auth).
    s3_credentials: S3Credentials | None = None


class Store(ABC):
    """Base class: read-only unless a backend overrides put/remove."""

    location: str = ""

    @abstractmethod
    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        """Return the chunk (verified unless the store skips verification) or raise ChunkMissing."""

    def get_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk]:
        """Several chunks (ID, size hint) at once, failing like get_chunk on the first problem.

        Backends that can batch their I/O override this; the default asks one by one.
        """
        return [self.get_chunk(chunk_id, size_hint) for chunk_id, size_hint in requests]

    @abstractmethod
    def has_chunk(self, chunk_id: bytes) -> bool:
        """Whether the chunk is present, without transferring it."""

    def put_chunk(self, chunk: Chunk) -> None:
        raise StoreError(f"store {self} is read-only")

    def remove_chunk(self, chunk_id: bytes) -> None:
        raise StoreError(f"store {self} is read-only")

    @abstractmethod
    def iter_chunks(self) -> Iterator[bytes]:
        """Yield the ID of every chunk in the store (for prune and verify)."""

    def remove_stray_files(self) -> int:
        """Delete leftovers of interrupted writes; returns how many. Most backends have none."""
        return 0

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
    def writable(self) -> bool:
        return False

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
