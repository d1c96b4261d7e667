"""Integrity checks: a store's chunks (``verify``) and a file against an index (``verify-index``)."""

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from ..digest import Digest
from ..errors import ChunkInvalid, ChunkMissing, DesyncError
from ..index import Index, IndexChunk
from ..progress import Progress
from ..stores.capabilities import PrunableStore
from ..parallel import ordered_map


@dataclass(slots=True)
class VerifyResult:
    checked: int = 0
    invalid: list[ChunkInvalid] = field(default_factory=list)
    unreadable: list[DesyncError] = field(default_factory=list)
    removed: int = 0
    left: list[DesyncError] = field(default_factory=list)
    strays: int = 0

    @property
    def bad(self) -> int:
        return len(self.invalid) + len(self.unreadable)


def verify_store(store: PrunableStore, digest: Digest, *, repair: bool = False, workers: int = 4,
                 progress: Progress | None = None,
                 report: Callable[[DesyncError], None] | None = None) -> VerifyResult:
    """Read and hash every chunk; with ``repair`` remove the invalid ones and killed writers' temp files.

    An entry that cannot be read at all (a directory, an unreadable file, a
    symlink loop under a chunk name) is reported like an invalid chunk and
    the check goes on; ``repair`` removes it when it can and lists in
    ``left`` what it could not remove.
    """
    result = VerifyResult()

    def check(chunk_id: bytes) -> tuple[bytes, DesyncError | None]:
        try:
            store.check_chunk(chunk_id, digest)
        except ChunkMissing:
            return chunk_id, None  # removed by someone else while we were listing
        except DesyncError as exc:
            return chunk_id, exc
        return chunk_id, None

    for chunk_id, bad in ordered_map(check, store.iter_chunks(), workers):
        result.checked += 1
        if progress is not None:
            progress.add(1)
        if bad is None:
            continue
        if isinstance(bad, ChunkInvalid):
            result.invalid.append(bad)
        else:
            result.unreadable.append(bad)
        if report is not None:
            report(bad)
        if repair:
            try:
                store.remove_chunk(chunk_id)
                result.removed += 1
            except DesyncError as stuck:
                result.left.append(stuck)
                if report is not None:
                    report(stuck)
    if repair:
        result.strays = store.remove_stray_files()
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
