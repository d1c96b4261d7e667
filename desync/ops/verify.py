"""Integrity checks: a store's chunks (``verify``) and a file against an index (``verify-index``)."""

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from ..digest import Digest
from ..errors import ChunkInvalid, ChunkMissing, DesyncError
from ..index import Index, IndexChunk
from ..progress import Progress
from ..stores.base import Store
from ..parallel import ordered_map


@dataclass(slots=True)
class VerifyResult:
    checked: int = 0
    invalid: list[ChunkInvalid] = field(default_factory=list)
    removed: int = 0


def verify_store(store: Store, digest: Digest, *, repair: bool = False, workers: int = 4,
                 progress: Progress | None = None,
                 report: Callable[[ChunkInvalid], None] | None = None) -> VerifyResult:
    """Read and hash every chunk; with ``repair`` remove the invalid ones."""
    result = VerifyResult()

    def check(chunk_id: bytes) -> ChunkInvalid | None:
        try:
            store.get_chunk(chunk_id).verify(digest, str(store))
        except ChunkInvalid as exc:
            return exc
        except ChunkMissing:
            return None  # removed by someone else while we were listing
        return None

    for bad in ordered_map(check, store.iter_chunks(), workers):
        result.checked += 1
        if progress is not None:
            progress.add(1)
        if bad is None:
            continue
        result.invalid.append(bad)
        if report is not None:
            report(bad)
        if repair:
            store.remove_chunk(bad.chunk_id)
            result.removed += 1
    return result


def verify_file(index: Index, path: str, *, workers: int = 4,
                progress: Progress | None = None) -> list[IndexChunk]:
    """Chunks of ``index`` whose bytes in ``path`` do not hash to their ID."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise DesyncError(f"cannot open {path}: {exc.strerror}") from None
    digest = index.digest
    try:
        size = os.fstat(fd).st_size
        if size != index.length and os.path.isfile(path):
            raise DesyncError(f"{path} is {size} bytes, the index describes {index.length}")

        def check(c: IndexChunk) -> IndexChunk | None:
            data = os.pread(fd, c.size, c.start)
            if progress is not None:
                progress.add(c.size)
            return None if len(data) == c.size and digest.sum(data) == c.id else c

        return [c for c in ordered_map(check, index.chunks, workers) if c is not None]
    finally:
        os.close(fd)
