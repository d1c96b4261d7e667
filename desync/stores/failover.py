"""Failover groups (``-s "http://a/|http://b/"``): mirrors of one store.

Reads go to the active member.  When it fails (an error, not a miss: a miss
means the mirrors agree the chunk is absent) the group switches to the next
member and repeats the request there, as the Go desync does; the group fails
only when every member has failed for the same request.

A group can do what all its members can (:func:`failover_group` picks the
class): writes go to the active member like reads; pruning lists and
removes on every member, since each mirror holds its own copy.
"""

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from ..chunk import Chunk
from ..errors import ChunkMissing, InvalidArgument, StoreError
from .base import Store, StoreOptions
from .capabilities import PrunableStore, ReadStore, WriteStore

T = TypeVar("T")


class FailoverGroup(Store):
    """A read store over mirrors."""

    def __init__(self, members: Sequence[ReadStore]) -> None:
        if not members:
            raise InvalidArgument("empty failover group")
        self.members: list[ReadStore] = list(members)
        self.location = "|".join(str(m) for m in self.members)
        self.active = 0
        self.lock = threading.Lock()

    def _call(self, fn: Callable[[int], T]) -> T:
        """``fn(position)`` on the active member, then on the next ones while they fail."""
        with self.lock:
            start = self.active
        errors: list[str] = []
        n = len(self.members)
        for step in range(n):
            pos = (start + step) % n
            try:
                return fn(pos)
            except ChunkMissing:
                raise
            except StoreError as exc:
                errors.append(str(exc))
                with self.lock:
                    if self.active == pos:
                        self.active = (pos + 1) % n
        raise StoreError(f"all stores of failover group {self.location} failed: " + "; ".join(errors))

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        return self._call(lambda i: self.members[i].get_chunk(chunk_id, size_hint))

    def fetch_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk | None]:
        return self._call(lambda i: self.members[i].fetch_chunks(requests))

    def has_chunk(self, chunk_id: bytes) -> bool:
        return self._call(lambda i: self.members[i].has_chunk(chunk_id))

    def touch_chunk(self, chunk_id: bytes) -> None:
        self._call(lambda i: self.members[i].touch_chunk(chunk_id))

    def writer_lock(self, exclusive: bool) -> None:
        for member in self.members:
            member.writer_lock(exclusive)

    def flush(self) -> None:
        for member in self.members:
            member.flush()

    @property
    def parallelism(self) -> int:
        return max(m.parallelism for m in self.members)

    def close(self) -> None:
        for member in self.members:
            member.close()


class WritableFailoverGroup(FailoverGroup):
    """Mirrors that are all write stores: a chunk goes to the active one."""

    def __init__(self, members: Sequence[WriteStore]) -> None:
        super().__init__(members)
        self.writers: list[WriteStore] = list(members)

    def put_chunk(self, chunk: Chunk) -> None:
        self._call(lambda i: self.writers[i].put_chunk(chunk))

    def put_missing(self, chunks: list[Chunk]) -> int:
        return self._call(lambda i: self.writers[i].put_missing(chunks))


class PrunableFailoverGroup(WritableFailoverGroup):
    """Mirrors that are all prunable: listed and pruned one after the other, each completely."""

    def __init__(self, members: Sequence[PrunableStore]) -> None:
        super().__init__(members)
        self.pruners: list[PrunableStore] = list(members)

    def iter_chunks(self) -> Iterator[bytes]:
        seen: set[bytes] = set()
        for member in self.pruners:
            for chunk_id in member.iter_chunks():
                if chunk_id not in seen:
                    seen.add(chunk_id)
                    yield chunk_id

    def remove_chunk(self, chunk_id: bytes) -> None:
        for member in self.pruners:
            member.remove_chunk(chunk_id)

    def remove_stray_files(self) -> int:
        return sum(member.remove_stray_files() for member in self.pruners)


def failover_group(members: Sequence[ReadStore]) -> FailoverGroup:
    """The group with every capability all ``members`` have."""
    pruners = [m for m in members if isinstance(m, PrunableStore)]
    if len(pruners) == len(members):
        return PrunableFailoverGroup(pruners)
    writers = [m for m in members if isinstance(m, WriteStore)]
    if len(writers) == len(members):
        return WritableFailoverGroup(writers)
    return FailoverGroup(members)


def split_group(location: str) -> list[str]:
    members = [m.strip() for m in location.split("|")]
    if any(not m for m in members):
        raise InvalidArgument(f"empty member in failover group {location!r}")
    return members


def open_failover(location: str, options: StoreOptions, writable: bool) -> Store:
    """Factory for locations containing ``|``; every member gets the same options."""
    from . import open_store

    return failover_group([open_store(m, options, writable) for m in split_group(location)])
