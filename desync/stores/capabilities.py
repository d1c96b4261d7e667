"""What a chunk store can do, as protocols mypy checks (docs/design.md 2.2).

Three capabilities, each a superset of the one before:

- :class:`ReadStore`: ``has_chunk``, ``get_chunk`` and the batched
  ``fetch_chunks``/``get_chunks`` (the fast path of ``extract``). Every
  store and wrapper has it.
- :class:`WriteStore`: + ``put_chunk`` and the batched ``put_missing`` (the
  fast path of ``make`` and ``tar``). Local, SFTP, S3 and HTTP stores.
- :class:`PrunableStore`: + ``iter_chunks``, ``remove_chunk`` and
  ``remove_stray_files``. Local, SFTP and S3 stores.

A backend declares what it can by the methods it has; nothing refuses an
operation at run time because of a flag.  Wrappers (cache, failover group)
are built as the class that has exactly the capabilities of their members.
Commands ask with ``isinstance`` (the protocols are runtime-checkable) and
name the store in a one-line error when it lacks what they need.

Index locations have the same two levels, :class:`IndexReadStore` and
:class:`IndexWriteStore` (see :mod:`desync.stores.indexes`).

This module is left to the interpreter (setup.py ``NOT_COMPILED``): mypyc
would compile the protocols as plain classes, which ``runtime_checkable``
refuses.

Removing a chunk that is not there succeeds, in every backend: prune and
``verify -r`` may race with each other or with another process, and S3
cannot tell a missing object from a removed one anyway.
"""

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from ..chunk import Chunk
from ..digest import Digest
from .base import StoreOptions


@runtime_checkable
class ReadStore(Protocol):
    """Reads chunks; a missing one is ``ChunkMissing`` (``None`` in ``fetch_chunks``)."""

    location: str

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk: ...

    def fetch_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk | None]: ...

    def get_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk]: ...

    def has_chunk(self, chunk_id: bytes) -> bool: ...

    def check_chunk(self, chunk_id: bytes, digest: Digest) -> None: ...

    def touch_chunk(self, chunk_id: bytes) -> None: ...

    def flush(self) -> None: ...

    def writer_lock(self, exclusive: bool) -> None: ...

    @property
    def parallelism(self) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> object: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class WriteStore(ReadStore, Protocol):
    """A store chunks can be added to."""

    def put_chunk(self, chunk: Chunk) -> None: ...

    def put_missing(self, chunks: list[Chunk]) -> int:
        """Store each chunk the store does not have yet; returns how many were written."""
        ...


@runtime_checkable
class PrunableStore(WriteStore, Protocol):
    """A store that can list its chunks and remove them (prune, verify)."""

    def iter_chunks(self) -> Iterator[bytes]: ...

    def remove_chunk(self, chunk_id: bytes) -> None: ...

    def remove_stray_files(self) -> int: ...


@runtime_checkable
class IndexReadStore(Protocol):
    """A place indexes are read from (one per scheme; local files and ``-`` are one too)."""

    def read_index_bytes(self, location: str, options: StoreOptions) -> bytes: ...


@runtime_checkable
class IndexWriteStore(IndexReadStore, Protocol):
    """A place indexes can also be written to."""

    def write_index_bytes(self, location: str, data: bytes, options: StoreOptions) -> None: ...
