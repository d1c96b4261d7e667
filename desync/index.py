"""``.caibx``/``.caidx`` index files, read and written exactly as casync does.

The reader performs casync's checks (docs/formats.md 3.3) so a damaged or
truncated index is refused with a message that says what is wrong, instead
of producing a wrong blob later.
"""

from __future__ import annotations

import struct

from . import digest as digest_mod
from .constants import (
    CA_FORMAT_INDEX,
    CA_FORMAT_TABLE,
    CA_FORMAT_TABLE_TAIL_MARKER,
    CHUNK_SIZE_LIMIT,
    INDEX_HEADER_SIZE,
    TABLE_HEADER_SIZE,
    TABLE_ITEM_SIZE,
    TABLE_SIZE_UNKNOWN,
)
from .errors import FormatError
from .featureflags import FEATURE_FLAGS_MAX, is_normalized

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import BinaryIO, Final

    from .digest import Digest

_HEADER: Final = struct.Struct("<QQQQQQ")
_TABLE_HEADER: Final = struct.Struct("<QQ")
_ITEM: Final = struct.Struct("<Q32s")
_TAIL: Final = struct.Struct("<QQQQQ")
_PREAMBLE_SIZE: Final = INDEX_HEADER_SIZE + TABLE_HEADER_SIZE
# The largest index file read or served: 48 + 16 + 40 per chunk + 40 bytes, so 1 GiB holds 26.8 million
# chunks, a 1.6 TiB blob at the default 64 KiB average chunk size.  A longer file is refused unread.
INDEX_SIZE_LIMIT: Final = 1 << 30


class IndexChunk:
    """One table row: where a chunk sits in the blob and its ID.

    Immutable, compared and hashed by value.  A plain class rather than a
    dataclass: the dataclass machinery costs start-up time, and mypyc builds
    this ``__init__`` natively (the ``Final`` attributes are read-only there).
    """

    __slots__ = ("start", "size", "id")

    def __init__(self, start: int, size: int, id: bytes) -> None:
        self.start: Final = start
        self.size: Final = size
        self.id: Final = id

    @property
    def end(self) -> int:
        return self.start + self.size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IndexChunk):
            return NotImplemented
        return self.start == other.start and self.size == other.size and self.id == other.id

    def __hash__(self) -> int:
        return hash((self.start, self.size, self.id))

    def __repr__(self) -> str:
        return f"IndexChunk(start={self.start!r}, size={self.size!r}, id={self.id!r})"


class Index:
    """A whole index: the header's chunk-size parameters and feature flags, and the chunk table.

    Compared by value (a plain class for the same reasons as IndexChunk).
    """

    __slots__ = ("flags", "min_size", "avg_size", "max_size", "chunks")

    def __init__(self, flags: int, min_size: int, avg_size: int, max_size: int,
                 chunks: list[IndexChunk] | None = None) -> None:
        self.flags = flags
        self.min_size = min_size
        self.avg_size = avg_size
        self.max_size = max_size
        self.chunks: list[IndexChunk] = [] if chunks is None else chunks

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Index):
            return NotImplemented
        return (self.flags == other.flags and self.min_size == other.min_size and self.avg_size == other.avg_size
                and self.max_size == other.max_size and self.chunks == other.chunks)

    def __repr__(self) -> str:
        return (f"Index(flags={self.flags!r}, min_size={self.min_size!r}, avg_size={self.avg_size!r}, "
                f"max_size={self.max_size!r}, chunks={self.chunks!r})")

    @property
    def length(self) -> int:
        """Size of the blob (or catar stream) the index describes."""
        return self.chunks[-1].end if self.chunks else 0

    @property
    def digest(self) -> Digest:
        return digest_mod.for_flags(self.flags)

    def to_bytes(self) -> bytes:
        n = len(self.chunks)
        out = bytearray(_HEADER.pack(INDEX_HEADER_SIZE, CA_FORMAT_INDEX, self.flags,
                                     self.min_size, self.avg_size, self.max_size))
        out += _TABLE_HEADER.pack(TABLE_SIZE_UNKNOWN, CA_FORMAT_TABLE)
        pack_item = _ITEM.pack
        for c in self.chunks:
            out += pack_item(c.end, c.id)
        out += _TAIL.pack(0, 0, INDEX_HEADER_SIZE,
                          TABLE_HEADER_SIZE + TABLE_ITEM_SIZE * n + TABLE_ITEM_SIZE,
                          CA_FORMAT_TABLE_TAIL_MARKER)
        return bytes(out)

    def write(self, f: BinaryIO) -> None:
        f.write(self.to_bytes())


def parse(data: bytes, name: str = "index") -> Index:
    """Parse and validate a complete index file's bytes."""
    if len(data) < _PREAMBLE_SIZE:
        raise FormatError(f"{name}: truncated index ({len(data)} bytes)")
    flags, min_size, avg_size, max_size = _check_preamble(data, name)
    chunks: list[IndexChunk] = []
    scan = _TableScan(max_size, name, chunks)
    end = scan.feed(data, _PREAMBLE_SIZE)
    scan.finish(end == len(data))
    return Index(flags, min_size, avg_size, max_size, chunks)


def _check_preamble(data: bytes | bytearray, name: str) -> tuple[int, int, int, int]:
    """Check the header and table header (the first 64 bytes); returns flags and the three chunk sizes."""
    size, rtype, flags, min_size, avg_size, max_size = _HEADER.unpack_from(data, 0)
    if size != INDEX_HEADER_SIZE or rtype != CA_FORMAT_INDEX:
        raise FormatError(f"{name}: not a casync index file (bad header)")
    if flags & ~FEATURE_FLAGS_MAX:
        raise FormatError(f"{name}: index uses unsupported feature flags {flags:#018x}")
    if not is_normalized(flags):
        raise FormatError(f"{name}: index feature flags {flags:#018x} are not normalised")
    if not (1 <= min_size <= avg_size <= max_size <= CHUNK_SIZE_LIMIT):
        raise FormatError(f"{name}: invalid chunk sizes {min_size}:{avg_size}:{max_size} in header")
    table_size, table_type = _TABLE_HEADER.unpack_from(data, INDEX_HEADER_SIZE)
    if table_size != TABLE_SIZE_UNKNOWN or table_type != CA_FORMAT_TABLE:
        raise FormatError(f"{name}: bad table header")
    return flags, min_size, avg_size, max_size


class _TableScan:
    """The table checks, over the whole file at once or fed a piece at a time (then nothing is kept)."""

    def __init__(self, max_size: int, name: str, chunks: list[IndexChunk] | None) -> None:
        self.max_size = max_size
        self.name = name
        self.chunks = chunks
        self.prev = 0
        self.n = 0
        self.tail = False

    def feed(self, data: bytes | bytearray, pos: int) -> int:
        """Check the items of ``data`` from ``pos``; returns where the first unchecked byte starts.

        That is past the tail when the tail was found (``self.tail``), else
        at the first item that is not whole in ``data``.
        """
        if self.tail:
            return pos
        chunks = self.chunks
        unpack_item = _ITEM.unpack_from
        end = len(data)
        prev = self.prev
        n = self.n
        max_size = self.max_size
        name = self.name
        while pos + TABLE_ITEM_SIZE <= end:
            if _is_tail(data, pos, n):
                self.tail = True
                pos += TABLE_ITEM_SIZE
                break
            offset, chunk_id = unpack_item(data, pos)
            if offset <= prev:
                raise FormatError(f"{name}: chunk {n} ends at {offset}, not after {prev}",
                                  offset=_PREAMBLE_SIZE + n * TABLE_ITEM_SIZE)
            if offset - prev > max_size:
                raise FormatError(f"{name}: chunk {n} is {offset - prev} bytes, above the maximum {max_size}",
                                  offset=_PREAMBLE_SIZE + n * TABLE_ITEM_SIZE)
            if chunks is not None:
                chunks.append(IndexChunk(prev, offset - prev, chunk_id))
            prev = offset
            pos += TABLE_ITEM_SIZE
            n += 1
        self.prev = prev
        self.n = n
        return pos

    def finish(self, at_end: bool) -> None:
        """The input ended; ``at_end`` says whether nothing followed what :meth:`feed` consumed."""
        if not self.tail:
            raise FormatError(f"{self.name}: truncated index (no table tail after {self.n} chunks)")
        if not at_end:
            raise FormatError(f"{self.name}: trailing data after the index table")


class IndexCheck:
    """Validates an index file fed in pieces of any size, keeping at most one partial table item.

    For index files too large to hold in memory as parsed chunks (uploads
    to the index server, files it serves): the same checks as
    :func:`parse`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.pending = bytearray()
        self.scan: _TableScan | None = None
        self.size = 0
        self.trailing = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if self.size > INDEX_SIZE_LIMIT:
            raise FormatError(f"{self.name}: index larger than {INDEX_SIZE_LIMIT} bytes")
        if self.trailing:
            return
        self.pending += data
        if self.scan is None:
            if len(self.pending) < _PREAMBLE_SIZE:
                return
            self.scan = _TableScan(_check_preamble(self.pending, self.name)[3], self.name, None)
            del self.pending[:_PREAMBLE_SIZE]
        used = self.scan.feed(self.pending, 0)
        del self.pending[:used]
        if self.scan.tail and self.pending:
            self.trailing = True

    def finish(self) -> None:
        """Raise FormatError unless everything fed was one whole, valid index."""
        if self.scan is None:
            raise FormatError(f"{self.name}: truncated index ({self.size} bytes)")
        self.scan.finish(not self.trailing and not self.pending)


def _is_tail(data: bytes | bytearray, pos: int, n: int) -> bool:
    zero1, zero2, index_offset, table_size, marker = _TAIL.unpack_from(data, pos)
    return bool(marker == CA_FORMAT_TABLE_TAIL_MARKER and zero1 == 0 and zero2 == 0
                and index_offset == INDEX_HEADER_SIZE
                and table_size == TABLE_HEADER_SIZE + TABLE_ITEM_SIZE * n + TABLE_ITEM_SIZE)

