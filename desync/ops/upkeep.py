"""Store upkeep: ``chop`` (store a file's chunks), ``cache`` (prefetch) and ``prune``."""

import os
from collections.abc import Iterable, Mapping

from ..chunk import Chunk
from ..errors import ChunkMissing, DesyncError, IntegrityError
from ..index import Index, IndexChunk
from ..progress import Progress
from ..stores.capabilities import PrunableStore, ReadStore, WriteStore
from ..parallel import Counter, run_all


def chop(index: Index, path: str, store: WriteStore, *, ignore: set[bytes] | None = None, workers: int = 4,
         progress: Progress | None = None) -> int:
    """Cut ``path`` along the index's boundaries and store the chunks it lacks; returns how many were stored."""
    skip = ignore or set()
    digest = index.digest
    seen: set[bytes] = set()
    todo: list[IndexChunk] = []
    for c in index.chunks:
        if c.id not in skip and c.id not in seen:
            seen.add(c.id)
            todo.append(c)
    stored = Counter()
    if progress is not None:
        progress.total = sum(c.size for c in todo)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise DesyncError(f"cannot open {path}: {exc.strerror}") from None

    def work(c: IndexChunk) -> None:
        if not store.has_chunk(c.id):
            data = os.pread(fd, c.size, c.start)
            if len(data) != c.size or digest.sum(data) != c.id:
                raise IntegrityError(f"{path} does not match the index at offset {c.start} (chunk {c.id.hex()})")
            store.put_chunk(Chunk(c.id, data=data))
            stored.add()
        if progress is not None:
            progress.add(c.size)

    try:
        run_all(work, todo, workers)
    finally:
        os.close(fd)
    store.flush()
    return stored.value


def fill_cache(ids: Iterable[bytes], source: ReadStore, cache: WriteStore, *, workers: int = 4,
               progress: Progress | None = None, sizes: Mapping[bytes, int] | None = None) -> int:
    """Copy the chunks the cache lacks from ``source``; returns how many were copied.

    ``progress`` counts the bytes of each chunk done by ``sizes`` (from the
    indexes), or chunks when no sizes are given.
    """
    copied = Counter()

    def work(chunk_id: bytes) -> None:
        if not cache.has_chunk(chunk_id):
            cache.put_chunk(source.get_chunk(chunk_id))
            copied.add()
        if progress is not None:
            progress.add(sizes[chunk_id] if sizes is not None else 1)

    run_all(work, ids, workers)
    return copied.value


def unique_ids(indexes: Iterable[Index]) -> list[bytes]:
    """Chunk IDs of all indexes, each once, in first-occurrence order."""
    return list(dict.fromkeys(c.id for idx in indexes for c in idx.chunks))


def prune(store: PrunableStore, keep: set[bytes]) -> int:
    """Remove every chunk not in ``keep``; returns how many were removed."""
    removed = 0
    for chunk_id in list(store.iter_chunks()):
        if chunk_id in keep:
            continue
        store.remove_chunk(chunk_id)
        removed += 1
    store.remove_stray_files()
    return removed
