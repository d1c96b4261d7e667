"""Chunk ID digests: SHA-512/256 (default) or SHA-256 (docs/formats.md 4.1).

An index or archive names its algorithm in the SHA512_256 feature bit;
:func:`for_flags` maps that bit to a :class:`Digest`.
"""

from __future__ import annotations

from . import _accel
from .errors import InvalidArgument
from .featureflags import SHA512_256

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    import hashlib
    from collections.abc import Iterable
    from typing import Final

SHA512_256_NAME: Final = "sha512-256"
SHA256_NAME: Final = "sha256"


class Digest:
    """One digest algorithm; hashing copies a prepared object (cheaper than a lookup).

    The prepared object is made on first use: a command that hashes nothing
    (``list-chunks``, ``info``) does not pay for importing hashlib.
    """

    __slots__ = ("name", "flag", "code", "_openssl_name", "_proto")

    def __init__(self, name: str, openssl_name: str, flag: int, code: int) -> None:
        self.name = name
        self.flag = flag
        self.code = code  # how the batched C codec (desync/_accel/codec.c) names it
        self._openssl_name = openssl_name
        self._proto: hashlib._Hash | None = None

    def _prototype(self) -> hashlib._Hash:
        proto = self._proto
        if proto is None:
            import hashlib

            proto = self._proto = hashlib.new(self._openssl_name)
        return proto

    def sum(self, data: bytes | bytearray | memoryview) -> bytes:
        h = self._prototype().copy()
        h.update(data)
        return h.digest()

    def sum_ranges(self, buf: bytes | bytearray | memoryview, start: int, ends: list[int]) -> list[bytes]:
        """The digests of ``buf[start:ends[0]]``, ``buf[ends[0]:ends[1]]``, ...: a batch of chunks.

        The C codec hashes the whole batch in one GIL release; hashlib
        would release and retake the GIL once per chunk, which many workers
        queue for.
        """
        codec = _accel.codec_module()
        if codec is not None:
            return codec.digests(self.code, buf, start, ends)
        view = memoryview(buf)
        out: list[bytes] = []
        pos = start
        for end in ends:
            out.append(self.sum(view[pos:end]))
            pos = end
        return out

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object, for content that arrives piece by piece."""
        return self._prototype().copy()

    def sum_pieces(self, pieces: Iterable[bytes]) -> tuple[bytes, int]:
        """The digest of content that arrives in pieces, and its length."""
        h = self._prototype().copy()
        size = 0
        for piece in pieces:
            h.update(piece)
            size += len(piece)
        return h.digest(), size

    def __repr__(self) -> str:
        return f"Digest({self.name})"


SHA512_256_DIGEST: Final[Digest] = Digest(SHA512_256_NAME, "sha512_256", SHA512_256, 1)
SHA256_DIGEST: Final[Digest] = Digest(SHA256_NAME, "sha256", 0, 0)
DEFAULT: Final[Digest] = SHA512_256_DIGEST


def by_name(name: str) -> Digest:
    """Resolve a ``--digest`` value; casync also accepts ``default``."""
    key = name.lower().replace("_", "-")
    if key in (SHA512_256_NAME, "default"):
        return SHA512_256_DIGEST
    if key == SHA256_NAME:
        return SHA256_DIGEST
    raise InvalidArgument(f"unknown digest {name!r} (use sha512-256 or sha256)")


def for_flags(flags: int) -> Digest:
    """The algorithm an index or archive header asks for."""
    return SHA512_256_DIGEST if flags & SHA512_256 else SHA256_DIGEST


def with_digest_flag(flags: int, digest: Digest) -> int:
    """Set or clear the digest bit of a flag word to match ``digest``."""
    return (flags & ~SHA512_256) | digest.flag
