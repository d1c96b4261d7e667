"""A chunk in flight between stores, holding its plain and/or compressed form.

Stores hand chunks around in whichever form they have; the other form is
made only when someone asks for it, so a chunk copied from one compressed
store to another is never decompressed and recompressed needlessly.
"""

from . import compression
from .constants import CHUNK_SIZE_LIMIT, ZSTD_MAGIC
from .digest import Digest
from .errors import ChunkInvalid


class Chunk:
    __slots__ = ("id", "_data", "_compressed")

    def __init__(self, chunk_id: bytes, data: bytes | None = None, compressed: bytes | None = None) -> None:
        self.id = chunk_id
        self._data = data
        self._compressed = compressed

    @classmethod
    def from_data(cls, data: bytes, digest: Digest) -> "Chunk":
        return cls(digest.sum(data), data=data)

    def data(self, size_hint: int = 0) -> bytes:
        """The uncompressed bytes; ``size_hint`` speeds up casync-made frames."""
        if self._data is None:
            assert self._compressed is not None
            self._data = compression.decompress(self._compressed, size_hint)
        return self._data

    def compressed(self) -> bytes:
        if self._compressed is None:
            assert self._data is not None
            self._compressed = compression.compress(self._data)
        return self._compressed

    def has_compressed(self) -> bool:
        return self._compressed is not None

    def stored_form(self, uncompressed: bool) -> bytes:
        """The bytes a chunk file or HTTP body holds: plain, or one zstd frame.

        A compressed form already at hand is passed on untouched when it is
        zstd (what every reader understands); xz or gzip is re-encoded.
        """
        if uncompressed:
            return self.data()
        if self._compressed is not None and not self._compressed.startswith(ZSTD_MAGIC):
            return compression.compress(self.data())
        return self.compressed()

    def verify(self, digest: Digest, store: str, size_hint: int = 0) -> None:
        """Raise :class:`ChunkInvalid` unless the content hashes to the ID."""
        try:
            data = self.data(size_hint)
        except compression.CompressionError as exc:
            raise ChunkInvalid(self.id, store, str(exc)) from None
        if not data or len(data) >= CHUNK_SIZE_LIMIT:
            raise ChunkInvalid(self.id, store, f"bad chunk size {len(data)}")
        actual = digest.sum(data)
        if actual != self.id:
            raise ChunkInvalid(self.id, store, f"content hashes to {actual.hex()} ({digest.name})")


def stored_size_limit(size_hint: int, compressed: bool) -> int:
    """The most bytes a chunk file or object may hold, for bounding reads from a store.

    The chunk's size from the index when known, else the largest chunk the
    format allows; compressed, plus what zstd, xz or gzip may add to data
    that does not compress (well under 1/256 and a few headers).
    """
    size = size_hint if 0 < size_hint <= CHUNK_SIZE_LIMIT else CHUNK_SIZE_LIMIT
    return size + (size >> 8) + 4096 if compressed else size


def parse_id(text: str) -> bytes:
    """Parse a 64-hex-digit chunk ID (lowercase is canonical, uppercase accepted)."""
    if len(text) != 64:
        raise ValueError(f"invalid chunk ID {text!r}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"invalid chunk ID {text!r}") from None
