"""A chunk in flight between stores, holding its plain and/or compressed form.

Stores hand chunks around in whichever form they have; the other form is
made only when someone asks for it, so a chunk copied from one compressed
store to another is never decompressed and recompressed needlessly.
"""

from __future__ import annotations

from . import compression, streamdecode
from .constants import CHUNK_SIZE_LIMIT, ZSTD_MAGIC
from .digest import Digest
from .errors import ChunkInvalid, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from collections.abc import Iterable


class Chunk:
    """``origin`` names the store the bytes came from, for error messages."""

    __slots__ = ("id", "_data", "_compressed", "origin", "_view")

    def __init__(self, chunk_id: bytes, data: bytes | None = None, compressed: bytes | None = None,
                 origin: str = "") -> None:
        self.id = chunk_id
        self._data = data
        self._compressed = compressed
        self.origin = origin
        self._view: memoryview | None = None

    @classmethod
    def of_view(cls, chunk_id: bytes, view: memoryview) -> "Chunk":
        """A chunk whose content is ``view`` (which must not change while the chunk is in use).

        Compressing reads the view in place; a copy is made only if someone
        asks for :meth:`data` — ``make`` stores its chunks without copying
        them out of the input buffer while holding the GIL.
        """
        chunk = cls(chunk_id)
        chunk._view = view
        return chunk

    @classmethod
    def from_data(cls, data: bytes, digest: Digest) -> "Chunk":
        return cls(digest.sum(data), data=data)

    def data(self, size_hint: int = 0) -> bytes:
        """The uncompressed bytes, at most ``size_hint`` of them when an index gives the size.

        Bytes that do not decompress are a :class:`ChunkInvalid` naming the
        chunk and its store (also under ``--skip-verify``).
        """
        if self._data is None and self._view is not None:
            self._data = bytes(self._view)
        if self._data is None:
            assert self._compressed is not None
            limit = size_hint if size_hint > 0 else CHUNK_SIZE_LIMIT
            try:
                self._data = compression.decompress(self._compressed, limit)
            except compression.CompressionError as exc:
                raise ChunkInvalid(self.id, self.origin, str(exc)) from None
        return self._data

    def plain_content(self) -> bytes | memoryview | None:
        """The uncompressed content when it is at hand without decoding anything, else None."""
        if self._view is not None:
            return self._view
        return self._data

    def compressed(self) -> bytes:
        if self._compressed is None:
            content = self._data if self._data is not None else self._view
            assert content is not None
            self._compressed = compression.compress(content)
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
        """Raise :class:`ChunkInvalid` unless the content hashes to the ID.

        The one place stored bytes are decoded and checked.  With the size
        known (``size_hint``, from an index) the content is decoded whole,
        bounded by it, and kept for the caller; without, a compressed
        chunk is decoded in pieces feeding the hash, so a hostile frame
        costs no more memory than a piece however large it claims to be.
        """
        if self._data is None and self._view is None and size_hint <= 0:
            assert self._compressed is not None
            try:
                actual, size = digest.sum_pieces(compression.decompressed_pieces(self._compressed,
                                                                                 CHUNK_SIZE_LIMIT - 1))
            except compression.CompressionError as exc:
                raise ChunkInvalid(self.id, store, str(exc)) from None
        else:
            try:
                data = self.data(size_hint)
            except ChunkInvalid as undecodable:
                raise ChunkInvalid(self.id, store, undecodable.reason) from None
            size = len(data)
            actual = digest.sum(data) if 0 < size < CHUNK_SIZE_LIMIT else b""
        _judge(self.id, store, digest, size, actual)


def verify_stored(chunk_id: bytes, stored: Iterable[bytes], compressed: bool, digest: Digest, store: str) -> None:
    """:meth:`Chunk.verify` without a size hint, for a chunk file whose bytes ``stored`` yields in pieces.

    The same verdicts and errors, holding a piece at a time rather than the
    whole file, so a huge or endless chunk file costs no more memory than
    a small one.  Errors the pieces raise (reading them) are passed on.
    """
    content = _Content(digest)
    try:
        if compressed:
            streamdecode.stream_content(stored, CHUNK_SIZE_LIMIT - 1, content.take)
        else:
            for piece in stored:
                content.take(piece)
    except compression.CompressionError as exc:
        raise ChunkInvalid(chunk_id, store, str(exc)) from None
    _judge(chunk_id, store, digest, content.size, content.hash.digest())


class _Content:
    """The hash and length of content handed over in pieces."""

    __slots__ = ("hash", "size")

    def __init__(self, digest: Digest) -> None:
        self.hash = digest.hasher()
        self.size = 0

    def take(self, piece: bytes) -> None:
        self.hash.update(piece)
        self.size += len(piece)


def _judge(chunk_id: bytes, store: str, digest: Digest, size: int, actual: bytes) -> None:
    if not 0 < size < CHUNK_SIZE_LIMIT:
        raise ChunkInvalid(chunk_id, store, f"bad chunk size {size}")
    if actual != chunk_id:
        raise ChunkInvalid(chunk_id, store, f"content hashes to {actual.hex()} ({digest.name})")


def parse_id(text: str) -> bytes:
    """Parse a 64-hex-digit chunk ID (lowercase is canonical, uppercase accepted)."""
    if len(text) != 64:
        raise InvalidArgument(f"invalid chunk ID {text!r}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidArgument(f"invalid chunk ID {text!r}") from None
