"""Failover groups (``-s "http://a/|http://b/"``): mirrors of one store.

All requests go to the active member.  When it fails (an error, not a miss:
a miss means the mirrors agree the chunk is absent) the group switches to
the next member and repeats the request there, as the Go desync does; the
group fails only when every member has failed for the same request.
"""

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from ..chunk import Chunk
from ..errors import ChunkMissing, InvalidArgument, StoreError
from .base import Store, StoreOptions

T = TypeVar("T")


class FailoverGroup(Store):
    def __init__(self, members: Sequence[Store]) -> None:
        if not members:
            raise InvalidArgument("empty failover group")
        self.members = list(members)
        self.location = "|".join(str(m) for m in self.members)
        self.active = 0
        self.lock = threading.Lock()

    def _call(self, fn: Callable[[Store], T]) -> T:
        with self.lock:
            start = self.active
        errors: list[str] = []
        n = len(self.members)
        for step in range(n):
            pos = (start + step) % n
            try:
                return fn(self.members[pos])
            except ChunkMissing:
                raise
            except StoreError as exc:
                errors.append(str(exc))
                with self.lock:
                    if self.active == pos:
                        self.active = (pos + 1) % n
        raise StoreError(f"all stores of failover group {self.location} failed: " + "; ".join(errors))

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        return self._call(lambda s: s.get_chunk(chunk_id, size_hint))

    def has_chunk(self, chunk_id: bytes) -> bool:
        return self._call(lambda s: s.has_chunk(chunk_id))

    @property
    def writable(self) -> bool:
        return all(m.writable for m in self.members)

    @property
    def parallelism(self) -> int:
        return max(m.parallelism for m in self.members)

    def put_chunk(self, chunk: Chunk) -> None:
        self._call(lambda s: s.put_chunk(chunk))

    def iter_chunks(self) -> Iterator[bytes]:
        with self.lock:
            member = self.members[self.active]
        return member.iter_chunks()

    def close(self) -> None:
        for member in self.members:
            member.close()


def split_group(location: str) -> list[str]:
    members = [m.strip() for m in location.split("|")]
    if any(not m for m in members):
        raise InvalidArgument(f"empty member in failover group {location!r}")
    return members


def open_failover(location: str, options: StoreOptions, writable: bool) -> Store:
    """Factory for locations containing ``|``; every member gets the same options."""
    from . import open_store

    return FailoverGroup([open_store(m, options, writable) for m in split_group(location)])
