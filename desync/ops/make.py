"""Chunk a blob or stream into an index, storing new chunks (``desync make``).

The work is a pipeline: the reading thread fills segments and finds chunk
boundaries (the C chunker runs without the GIL), worker threads hash,
compress and store batches of chunks, each batch in one GIL release where
the C codec is built (Digest.sum_ranges, WriteStore.put_missing).
Segments in flight are bounded and their buffers reused, so memory does
not grow with the input size.
"""

import os
import queue
import threading
from collections.abc import Callable, Iterable
from typing import BinaryIO, Final

from .. import fsutil
from ..chunk import Chunk
from ..chunker import Chunker
from ..digest import Digest, with_digest_flag
from ..errors import DesyncError
from ..featureflags import BLOB_INDEX_FLAGS
from ..index import Index, IndexChunk
from ..progress import Progress
from ..stores.capabilities import WriteStore
from ..parallel import Counter, Job, Workers

SEGMENT_SIZE: Final = 8 * 1024 * 1024
BATCH_BYTES: Final = 1024 * 1024
# Batches queued or being hashed and stored, whatever -n is: memory stays bounded on many cores.
MAX_BACKLOG: Final = 32
# From this many workers on, a segment's boundaries are found by several threads (Chunker.parallel_boundaries):
# with fewer cores the workers already keep every core busy, and the reading thread is not the bottleneck.
PARALLEL_CHUNKING_WORKERS: Final = 4


class MakeStats:
    """What a make did (a plain class: dataclasses cost start-up time)."""

    def __init__(self, chunks: int = 0, unique: int = 0, stored: int = 0, bytes: int = 0) -> None:
        self.chunks = chunks
        self.unique = unique
        self.stored = stored
        self.bytes = bytes

    def __repr__(self) -> str:
        return f"MakeStats(chunks={self.chunks}, unique={self.unique}, stored={self.stored}, bytes={self.bytes})"


class _Pipeline:
    """Hashes and stores chunk batches on worker threads; results are reassembled in order."""

    def __init__(self, store: WriteStore | None, digest: Digest, workers: int, progress: Progress | None) -> None:
        self.store = store
        self.digest = digest
        self.progress = progress
        self.workers = workers
        self.pool = Workers(workers, backlog=min(MAX_BACKLOG, max(2, workers) * 4))
        self.results: list[list[IndexChunk]] = []
        self.seen: set[bytes] = set()
        self.stored = Counter()
        # Segment buffers whose batches are all done, for the reader to fill again.
        self.free: "queue.SimpleQueue[bytearray]" = queue.SimpleQueue()

    def submit(self, buf: bytearray, base: int, start: int, ends: list[int]) -> None:
        """Queue the chunks ``buf[start:ends[0]], ...``; ``base`` is buf[0]'s stream offset.

        ``buf`` goes back to :attr:`free` when its last batch is done.
        """
        cuts: list[tuple[int, int, int]] = []
        batch_start = start
        first = 0
        last = len(ends) - 1
        for i, end in enumerate(ends):
            if end - batch_start >= BATCH_BYTES or i == last:
                cuts.append((batch_start, first, i + 1))
                batch_start = end
                first = i + 1
        segment = _Segment(buf, len(cuts), self.free)
        for batch_start, first, stop in cuts:
            slot: list[IndexChunk] = []
            self.results.append(slot)
            self.pool.submit(self._job(slot, segment, base, batch_start, ends[first:stop]))

    def _job(self, slot: list[IndexChunk], segment: "_Segment", base: int, start: int, ends: list[int]) -> Job:
        return _Batch(self, slot, segment, base, start, ends)

    def _process(self, out: list[IndexChunk], buf: bytearray, base: int, start: int, ends: list[int]) -> None:
        view = memoryview(buf)
        store = self.store
        seen = self.seen
        ids = self.digest.sum_ranges(buf, start, ends)
        new: list[Chunk] = []
        pos = start
        for end, cid in zip(ends, ids):
            if store is not None and cid not in seen:
                seen.add(cid)
                new.append(Chunk.of_view(cid, view[pos:end]))  # segments are never written to once queued
            out.append(IndexChunk(base + pos, end - pos, cid))
            pos = end
        if new and store is not None:
            stored = store.put_missing(new)
            if stored:
                self.stored.add(stored)
        if self.progress is not None:
            self.progress.add(pos - start)

    def finish(self) -> list[IndexChunk]:
        self.pool.join()
        if self.store is not None:
            self.store.flush()  # the index about to be written must not outlive its chunks in a power loss
        return [c for batch in self.results for c in batch]

    def abort(self) -> None:
        self.pool.abort()


class _Batch:
    """One queued batch of chunks: a class, not a closure, because of a mypyc hazard.

    A compiled closure's environment object goes on a one-element free list
    *before* its captured variables are released.  When releasing one of
    them drops the GIL (an mmap'd segment did, to unmap it), another thread
    may take that environment off the free list meanwhile: its new ``base``
    was then wiped by the dying one ("attribute 'base' of '_job__Pipeline_env'
    undefined").  Plain instances have no free list.
    """

    __slots__ = ("pipeline", "slot", "segment", "base", "start", "ends")

    def __init__(self, pipeline: _Pipeline, slot: list[IndexChunk], segment: "_Segment", base: int, start: int,
                 ends: list[int]) -> None:
        self.pipeline = pipeline
        self.slot = slot
        self.segment = segment
        self.base = base
        self.start = start
        self.ends = ends

    def __call__(self) -> None:
        self.pipeline._process(self.slot, self.segment.buf, self.base, self.start, self.ends)
        self.segment.done()


class _Segment:
    """A segment buffer and its batches still to be processed.

    The buffer is handed back for reuse when the last one is done: a fresh
    8 MiB bytearray is zero-filled, and its pages faulted in, while the
    reading thread holds the GIL, which on many cores is what the workers
    then wait for.  A failed batch does not hand it back (the run stops).
    """

    __slots__ = ("buf", "pending", "free", "lock")

    def __init__(self, buf: bytearray, batches: int, free: "queue.SimpleQueue[bytearray]") -> None:
        self.buf = buf
        self.pending = batches
        self.free = free
        self.lock = threading.Lock()

    def done(self) -> None:
        with self.lock:
            self.pending -= 1
            last = self.pending == 0
        if last:
            self.free.put(self.buf)


class _Segmenter:
    """Feeds segments to the chunker, carrying the unfinished tail into the next one."""

    def __init__(self, chunker: Chunker, pipeline: _Pipeline) -> None:
        self.chunker = chunker
        self.pipeline = pipeline
        self.size = max(SEGMENT_SIZE, 4 * chunker.max_size)
        self.buf = bytearray(self.size)
        self.filled = 0
        self.base = 0
        self.total = 0
        # Threads that find a segment's boundaries together, kept for the whole run.
        self.chunking: Workers | None = None
        if pipeline.workers >= PARALLEL_CHUNKING_WORKERS:
            self.chunking = Workers(pipeline.workers)

    def close(self) -> None:
        if self.chunking is not None:
            self.chunking.abort()
            self.chunking = None

    def space(self) -> memoryview:
        return memoryview(self.buf)[self.filled:]

    def advance(self, n: int) -> None:
        self.filled += n
        self.total += n
        if self.filled == len(self.buf):
            self.flush(final=False)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            room = len(self.buf) - self.filled
            n = min(room, len(view))
            self.buf[self.filled:self.filled + n] = view[:n]
            view = view[n:]
            self.advance(n)

    def flush(self, final: bool) -> None:
        buf, filled = self.buf, self.filled
        workers = self.pipeline.workers
        if self.chunking is not None:
            ends = self.chunker.parallel_boundaries(buf, 0, filled, final, workers, self.chunking)
        else:
            ends = self.chunker.boundaries(buf, 0, filled, final)
        done = ends[-1] if ends else 0
        tail = filled - done
        # The tail is carried over before the batches go out: once they are done, ``buf`` may be reused.
        nxt = self._fresh(tail)
        nxt[:tail] = memoryview(buf)[done:filled]
        base = self.base
        self.buf = nxt
        self.base += done
        self.filled = tail
        if ends:
            self.pipeline.submit(buf, base, 0, ends)
        else:
            self.pipeline.free.put(buf)

    def _fresh(self, tail: int) -> bytearray:
        """A buffer for the next segment with room for ``tail`` carried bytes and more: a free one if any."""
        size = max(self.size, tail * 2)
        try:
            buf = self.pipeline.free.get_nowait()
        except queue.Empty:
            return bytearray(size)
        return buf if len(buf) >= size else bytearray(size)


def chunk_file(f: BinaryIO, chunker: Chunker, digest: Digest, store: WriteStore | None = None, *,
               workers: int = 2, progress: Progress | None = None, flags: int = BLOB_INDEX_FLAGS,
               stats: MakeStats | None = None) -> Index:
    """Chunk everything readable from ``f`` into an index; store new chunks in ``store``."""
    def fill(seg: _Segmenter) -> None:
        while True:
            space = seg.space()
            n = f.readinto(space)  # type: ignore[attr-defined]
            if not n:
                return
            seg.advance(n)

    return _chunk_with(fill, chunker, digest, store, workers, progress, flags, stats)


def chunk_stream(pieces: Iterable[bytes | bytearray | memoryview], chunker: Chunker, digest: Digest,
                 store: WriteStore | None = None, *, workers: int = 2, progress: Progress | None = None,
                 flags: int = BLOB_INDEX_FLAGS, stats: MakeStats | None = None) -> Index:
    """Chunk a stream given as an iterable of byte pieces (e.g. a catar encoder)."""
    def fill(seg: _Segmenter) -> None:
        for piece in pieces:
            seg.feed(piece)

    return _chunk_with(fill, chunker, digest, store, workers, progress, flags, stats)


def _chunk_with(fill: Callable[[_Segmenter], None], chunker: Chunker, digest: Digest, store: WriteStore | None,
                workers: int, progress: Progress | None, flags: int, stats: MakeStats | None) -> Index:
    """Run ``fill`` (it feeds all the input to the segmenter) and the chunk pipeline; any failure stops both."""
    pipeline = _Pipeline(store, digest, workers, progress)
    seg = _Segmenter(chunker, pipeline)
    try:
        fill(seg)
        seg.flush(final=True)
        seg.close()
        chunks = pipeline.finish()
    except BaseException:
        seg.close()
        pipeline.abort()
        raise
    return _finish(chunks, chunker, digest, flags, pipeline, stats)


def _finish(chunks: list[IndexChunk], chunker: Chunker, digest: Digest, flags: int, pipeline: _Pipeline,
            stats: MakeStats | None) -> Index:
    if stats is not None:
        stats.chunks = len(chunks)
        stats.unique = len({c.id for c in chunks})
        stats.stored = pipeline.stored.value
        stats.bytes = chunks[-1].end if chunks else 0
    return Index(with_digest_flag(flags, digest), chunker.min_size, chunker.avg_size, chunker.max_size, chunks)


def make_blob_index(path: str, chunker: Chunker, digest: Digest, store: WriteStore | None = None, *,
                    workers: int = 2, progress: Progress | None = None,
                    stats: MakeStats | None = None) -> Index:
    """Index a file or block device (``-`` reads stdin)."""
    import sys

    if path == "-":
        return chunk_file(fsutil.stdin_binary(), chunker, digest, store, workers=workers, progress=progress,
                          stats=stats)
    try:
        f = open(path, "rb", buffering=0)
    except OSError as exc:
        raise DesyncError(f"cannot open {path}: {exc.strerror}") from None
    with f:
        if progress is not None:
            try:
                progress.total = os.fstat(f.fileno()).st_size or progress.total
            except OSError:
                pass
        return chunk_file(f, chunker, digest, store, workers=workers, progress=progress, stats=stats)
