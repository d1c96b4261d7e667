"""``.caibx``/``.caidx`` index files, read and written exactly as casync does.

The reader performs casync's checks (docs/formats.md 3.3) so a damaged or
truncated index is refused with a message that says what is wrong, instead
of producing a wrong blob later.
"""

import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Final

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
from .digest import Digest
from .errors import FormatError
from .featureflags import FEATURE_FLAGS_MAX, is_normalized

_HEADER: Final = struct.Struct("<QQQQQQ")
_TABLE_HEADER: Final = struct.Struct("<QQ")
_ITEM: Final = struct.Struct("<Q32s")
_TAIL: Final = struct.Struct("<QQQQQ")
_PREAMBLE_SIZE: Final = INDEX_HEADER_SIZE + TABLE_HEADER_SIZE


@dataclass(frozen=True, slots=True)
class IndexChunk:
    """One table row: where a chunk sits in the blob and its ID."""

    start: int
    size: int
    id: bytes

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(slots=True)
class Index:
    flags: int
    min_size: int
    avg_size: int
    max_size: int
    chunks: list[IndexChunk] = field(default_factory=list)

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
    chunks: list[IndexChunk] = []
    append = chunks.append
    unpack_item = _ITEM.unpack_from
    pos = _PREAMBLE_SIZE
    end = len(data)
    prev = 0
    n = 0
    while True:
        if pos + TABLE_ITEM_SIZE > end:
            raise FormatError(f"{name}: truncated index (no table tail after {n} chunks)")
        if _is_tail(data, pos, n):
            if pos + TABLE_ITEM_SIZE != end:
                raise FormatError(f"{name}: trailing data after the index table")
            break
        offset, chunk_id = unpack_item(data, pos)
        if offset <= prev:
            raise FormatError(f"{name}: chunk {n} ends at {offset}, not after {prev}")
        if offset - prev > max_size:
            raise FormatError(f"{name}: chunk {n} is {offset - prev} bytes, above the maximum {max_size}")
        append(IndexChunk(prev, offset - prev, chunk_id))
        prev = offset
        pos += TABLE_ITEM_SIZE
        n += 1
    return Index(flags, min_size, avg_size, max_size, chunks)


def _is_tail(data: bytes, pos: int, n: int) -> bool:
    zero1, zero2, index_offset, table_size, marker = _TAIL.unpack_from(data, pos)
    return bool(marker == CA_FORMAT_TABLE_TAIL_MARKER and zero1 == 0 and zero2 == 0
                and index_offset == INDEX_HEADER_SIZE
                and table_size == TABLE_HEADER_SIZE + TABLE_ITEM_SIZE * n + TABLE_ITEM_SIZE)

