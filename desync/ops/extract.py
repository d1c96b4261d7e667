"""Rebuild a blob from its index and stores (``desync extract``).

Without in-place mode the blob is assembled in a temp file beside the
target and renamed over it only when complete, so a failed or interrupted
extract never leaves a half-written target; the data is synced before the
rename, so not even a power loss can (see tempnames for how leftovers of
killed runs are removed by the next extract to the same target).  Each distinct chunk is fetched
once and written to every offset it occurs at; all-zero chunks are left as
holes in the fresh (sparse) temp file.
"""

import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DesyncError
from .. import tempnames
from ..fsutil import adopt_attributes, pwrite_many, resolve_target, sync_directory
from ..index import Index
from ..progress import Progress
from ..stores.base import Store
from ..parallel import run_all


# Distinct chunks per worker job: enough to batch the store's I/O, few enough to spread the work.
BATCH = 16


@dataclass(slots=True)
class ExtractStats:
    chunks: int = 0
    fetched: int = 0
    skipped_in_place: int = 0
    zero: int = 0


def _group(index: Index) -> dict[bytes, tuple[int, list[int]]]:
    """Chunk ID -> (size, offsets), in first-occurrence order."""
    groups: dict[bytes, tuple[int, list[int]]] = {}
    for c in index.chunks:
        entry = groups.get(c.id)
        if entry is None:
            groups[c.id] = (c.size, [c.start])
        else:
            entry[1].append(c.start)
    return groups


def write_chunks(fd: int, index: Index, store: Store, *, workers: int, fresh: bool,
                 progress: Progress | None = None, stats: ExtractStats | None = None) -> None:
    """Write every chunk of ``index`` into ``fd`` at its offsets.

    ``fresh`` means the file is new and sparse (zero chunks need no write);
    otherwise existing content that already matches a chunk is kept.
    """
    digest = index.digest
    groups = _group(index)
    # The "null chunk": a max-size run of zeros, common in disk images.
    null_id = digest.sum(bytes(index.max_size)) if fresh and index.length >= index.max_size else b""
    counters = ExtractStats(chunks=len(index.chunks))
    lock = threading.Lock()

    def work(batch: list[tuple[bytes, int, list[int]]]) -> None:
        fetch: list[tuple[bytes, int, list[int]]] = []
        for chunk_id, size, offsets in batch:
            if chunk_id == null_id and size == index.max_size:
                with lock:
                    counters.zero += len(offsets)
                continue
            todo = offsets
            if not fresh:
                todo = [o for o in offsets if not _matches(fd, o, size, chunk_id, digest.sum)]
                with lock:
                    counters.skipped_in_place += len(offsets) - len(todo)
            if todo:
                fetch.append((chunk_id, size, todo))
        chunks = store.get_chunks([(chunk_id, size) for chunk_id, size, _ in fetch]) if fetch else []
        pieces: list[tuple[bytes, int]] = []
        for (chunk_id, size, todo), chunk in zip(fetch, chunks):
            data = chunk.data(size)
            if len(data) != size:
                raise DesyncError(f"chunk {chunk_id.hex()} is {len(data)} bytes, index says {size}")
            pieces.extend((data, off) for off in todo)
        pwrite_many(fd, pieces)
        with lock:
            counters.fetched += len(fetch)
        if progress is not None:
            progress.add(sum(size * len(offsets) for _, size, offsets in batch))

    items = [(cid, size, offsets) for cid, (size, offsets) in groups.items()]
    run_all(work, [items[i:i + BATCH] for i in range(0, len(items), BATCH)], workers)
    if stats is not None:
        stats.chunks, stats.fetched = counters.chunks, counters.fetched
        stats.skipped_in_place, stats.zero = counters.skipped_in_place, counters.zero


def _matches(fd: int, offset: int, size: int, chunk_id: bytes, digest_sum: Callable[[bytes], bytes]) -> bool:
    try:
        data = os.pread(fd, size, offset)
    except OSError:
        return False
    return len(data) == size and digest_sum(data) == chunk_id


def extract_blob(index: Index, store: Store, target: str, *, in_place: bool = False, workers: int = 4,
                 progress: Progress | None = None, stats: ExtractStats | None = None) -> None:
    """Assemble the blob of ``index`` at ``target`` (``-`` is not a valid target; use cat).

    An existing target keeps its permission bits and, where the caller may
    set it, its owner; a symlink is kept and the file it points at is
    replaced (see :func:`desync.fsutil.resolve_target`).  A new file gets
    the default mode (0666 less the umask).
    """
    try:
        target, st = resolve_target(target)
    except OSError as exc:
        raise DesyncError(f"cannot access {target}: {exc.strerror}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise DesyncError(f"{target} is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        in_place = True  # block devices and the like cannot be replaced by a rename
    if in_place:
        _extract_in_place(index, store, target, st, workers, progress, stats)
        return
    tempnames.sweep_beside(target)
    tmp = tempnames.temp_beside(target)
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise DesyncError(f"cannot create {tmp}: {exc.strerror}") from None
    try:
        try:
            if st is not None:
                adopt_attributes(fd, st)
            os.ftruncate(fd, index.length)
            write_chunks(fd, index, store, workers=workers, fresh=True, progress=progress, stats=stats)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, target)
        sync_directory(os.path.dirname(tmp))
    except BaseException as failure:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(failure, OSError):
            raise DesyncError(f"cannot write {target}: {failure.strerror}") from None
        raise


def _extract_in_place(index: Index, store: Store, target: str, st: os.stat_result | None, workers: int,
                      progress: Progress | None, stats: ExtractStats | None) -> None:
    try:
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise DesyncError(f"cannot open {target}: {exc.strerror}") from None
    try:
        regular = st is None or stat.S_ISREG(st.st_mode)
        if regular and (st is None or st.st_size > index.length):
            os.ftruncate(fd, index.length)
        write_chunks(fd, index, store, workers=workers, fresh=st is None, progress=progress, stats=stats)
        if regular:
            os.ftruncate(fd, index.length)
    except OSError as exc:
        raise DesyncError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        os.close(fd)
