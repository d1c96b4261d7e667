"""Random access to a catar stream, and a forward reader over it that skips file contents.

An archive tree is built by decoding the stream once; the decoder insists
on reading every byte, file contents included.  :class:`SkippingReader`
hands it zeros for the contents instead (their offsets are recorded and
read later, on demand), so mounting an archive index fetches only the
chunks that hold metadata.
"""

import os
from typing import Final, Protocol

from ..errors import DesyncError

FILE_BLOCK: Final = 256 * 1024


class RandomAccess(Protocol):
    """What the tree needs of its byte source: a :class:`~desync.mount.blob.BlobReader` or a catar file."""

    size: int

    def read(self, offset: int, size: int, read_ahead: bool = True) -> bytes: ...

    def extent_end(self, offset: int) -> int: ...


class FileSource:
    """A plain catar file, read with pread (safe from many threads)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            self.size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise DesyncError(f"cannot open {path}: {exc.strerror}") from None

    def read(self, offset: int, size: int, read_ahead: bool = True) -> bytes:
        """``read_ahead`` is the kernel's business for a file."""
        if offset < 0 or size <= 0:
            return b""
        return os.pread(self._fd, size, offset)

    def extent_end(self, offset: int) -> int:
        return min(self.size, offset + FILE_BLOCK)

    def close(self) -> None:
        os.close(self._fd)


class SkippingReader:
    """``read(n)`` from the start of a :class:`RandomAccess`; :meth:`skip` turns a range into zeros.

    Reads are served from one buffered extent (a chunk, or a block of a
    file) so the decoder's many small reads cost one fetch each extent.
    """

    def __init__(self, source: RandomAccess) -> None:
        self._source = source
        self.pos = 0
        self._buf = b""
        self._buf_start = 0
        self._hole_end = 0

    def skip(self, start: int, end: int) -> None:
        """The bytes ``[start, end)`` are not needed: reads there return zeros unless already buffered."""
        if start <= self.pos < end:
            self._hole_end = end

    def read(self, n: int = -1, /) -> bytes:
        pos = self.pos
        size = self._source.size
        if n < 0:
            n = size - pos
        if n <= 0 or pos >= size:
            return b""
        offset = pos - self._buf_start
        if 0 <= offset < len(self._buf):
            take = min(n, len(self._buf) - offset)
            self.pos = pos + take
            return self._buf[offset:offset + take]
        if pos < self._hole_end:
            take = min(n, self._hole_end - pos)
            self.pos = pos + take
            return bytes(take)
        stop = self._source.extent_end(pos)
        block = self._source.read(pos, stop - pos, False)
        if not block:
            return b""
        self._buf = block
        self._buf_start = pos
        take = min(n, len(block))
        self.pos = pos + take
        return block[:take]
