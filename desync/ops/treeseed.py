"""Directory trees as seeds for extracting an archive index (``untar -i --seed DIR``).

casync's approach: a seed directory is encoded as a catar with the archive
index's feature flags and chunked with the index's chunk sizes, so wherever
the seed tree holds what the archive holds (same files with the same
metadata, which content-defined chunking lines up again after every
difference) the seed stream has the archive's chunks.  The seed stream is
never stored: only its layout is kept (the small metadata records in memory,
file contents as path ranges), and a seed chunk is read back by re-encoding
its stretch from the tree.  Every chunk read from a seed is hashed and
compared with its ID before it is used, so a seed that changed since it was
chunked costs a store fetch, never a wrong byte.

Public API: :class:`TreeSeed` (one directory), :class:`SeededChunks` (the
index's chunks from seeds first, then from the store) and :class:`TreeSeedStats`.
"""

from __future__ import annotations

import bisect
import os
import threading
from dataclasses import dataclass
from typing import Iterator

from ..catar.encoder import EncodeOptions, FileSlice, encode_items
from ..chunker import Chunker
from ..digest import Digest
from ..errors import DesyncError
from ..index import Index
from ..parallel import ordered_map
from ..progress import Progress
from ..stores import Store
from .make import chunk_stream

_READ_BLOCK = 1 << 20
_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY


@dataclass(slots=True)
class _Segment:
    """A stretch of the seed stream: ``data`` (records) or ``size`` bytes of the file ``path``."""

    start: int
    size: int
    data: bytes
    path: bytes


@dataclass
class TreeSeedStats:
    """Where an extraction's archive bytes came from."""

    seed_bytes: int = 0
    seed_chunks: int = 0
    store_bytes: int = 0
    store_chunks: int = 0
    stale_chunks: int = 0  # found in a seed whose bytes no longer matched: fetched from the store instead


class TreeSeed:
    """One seed directory, encoded and chunked like ``index``; its chunks can be read back."""

    def __init__(self, root: str, index: Index, workers: int = 2, progress: Progress | None = None) -> None:
        if not os.path.isdir(root):
            raise DesyncError(f"seed {root} is not a directory")
        self.root = os.fsencode(root)
        self.digest: Digest = index.digest
        self._segments: list[_Segment] = []
        self._starts: list[int] = []
        self._length = 0
        self._progress = progress
        chunker = Chunker(index.min_size, index.avg_size, index.max_size)
        seed_index = chunk_stream(self._stream(index.flags), chunker, self.digest, workers=workers,
                                  flags=index.flags)
        self.chunks: dict[bytes, tuple[int, int]] = {}
        for c in seed_index.chunks:
            self.chunks.setdefault(c.id, (c.start, c.size))
        self._starts = [s.start for s in self._segments]

    def _stream(self, flags: int) -> Iterator[bytes]:
        """The seed tree's catar, recording where each piece came from."""
        for item in encode_items(self.root, flags, EncodeOptions(), inline_limit=0):
            if isinstance(item, bytes):
                self._add(_Segment(self._length, len(item), item, b""))
                yield item
                continue
            yield from self._file(item)

    def _file(self, item: FileSlice) -> Iterator[bytes]:
        """A file's contents in blocks; a file that shrank is padded with zeros (its chunks will not verify)."""
        self._add(_Segment(self._length, item.size, b"", item.path))
        left = item.size
        try:
            while left > 0:
                try:
                    block = os.read(item.fd, min(left, _READ_BLOCK))
                except OSError as e:
                    raise DesyncError(f"cannot read seed file {self._show(item.path)}: {e.strerror}") from None
                if not block:
                    block = bytes(min(left, _READ_BLOCK))
                left -= len(block)
                if self._progress is not None:
                    self._progress.add(len(block))
                yield block
        finally:
            os.close(item.fd)

    def _add(self, seg: _Segment) -> None:
        if seg.size:
            self._segments.append(seg)
            self._length += seg.size

    def _show(self, path: bytes) -> str:
        return os.fsdecode(os.path.join(self.root, path))

    def read(self, start: int, size: int) -> bytes | None:
        """The seed stream's bytes ``[start, start+size)`` re-encoded from the tree, or None if unreadable."""
        parts: list[bytes] = []
        pos = start
        end = start + size
        i = bisect.bisect_right(self._starts, pos) - 1
        while pos < end and 0 <= i < len(self._segments):
            seg = self._segments[i]
            off = pos - seg.start
            take = min(seg.size - off, end - pos)
            if seg.path:
                piece = self._pread(seg.path, off, take)
                if piece is None:
                    return None
                parts.append(piece)
            else:
                parts.append(seg.data[off:off + take])
            pos += take
            i += 1
        return b"".join(parts) if pos == end else None

    def _pread(self, path: bytes, offset: int, size: int) -> bytes | None:
        try:
            fd = os.open(os.path.join(self.root, path), _OPEN)
        except OSError:
            return None
        try:
            data = os.pread(fd, size, offset)
            return data if len(data) == size else None
        except OSError:
            return None
        finally:
            os.close(fd)


class SeededChunks:
    """The chunks of an archive index in order: from a seed when one has it (verified), else from the store."""

    def __init__(self, index: Index, seeds: list[TreeSeed], store: Store, workers: int,
                 stats: TreeSeedStats | None = None) -> None:
        self.index = index
        self.seeds = seeds
        self.store = store
        self.workers = workers
        self.stats = stats if stats is not None else TreeSeedStats()
        self._lock = threading.Lock()

    def _get(self, chunk_id: bytes, size: int) -> bytes:
        digest = self.index.digest
        stale = False
        for seed in self.seeds:
            found = seed.chunks.get(chunk_id)
            if found is None or found[1] != size:
                continue
            data = seed.read(found[0], size)
            if data is not None and digest.sum(data) == chunk_id:
                with self._lock:
                    self.stats.seed_bytes += size
                    self.stats.seed_chunks += 1
                return data
            stale = True
        data = self.store.get_chunk(chunk_id, size).data(size)
        with self._lock:
            self.stats.store_bytes += size
            self.stats.store_chunks += 1
            self.stats.stale_chunks += 1 if stale else 0
        return data

    def blocks(self) -> Iterator[bytes]:
        return ordered_map(lambda c: self._get(c.id, c.size), self.index.chunks, self.workers)
