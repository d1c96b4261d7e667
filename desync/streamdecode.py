"""Decoding a chunk file while its bytes arrive, for checks of chunks whose size nothing tells.

A whole-store ``verify`` knows no chunk sizes, so a chunk file may hold
up to :func:`~desync.compression.stored_size_limit` (0) bytes, ~130 MiB.
Reading each whole before decoding it would let a hostile store (huge
files, objects that never end) cost that much per worker; decoding the
pieces as they are read costs a piece, a bounded zstd window and a hash.

The verdicts and errors are those of :func:`~desync.compression.decompressed_pieces`
on the whole bytes: the same frame structure checks (done by
:class:`ZstdFrameWalk` as the bytes go by), the same limits, the same
refusal of trailing bytes.  Structure is judged first there, so when the
decoder fails the rest of the file is still read through the walk (not
kept: the store's own bound on what it reads ends an endless one) before
the decoder's error is reported.
"""

from __future__ import annotations

from .compression import (_BLOCK_MAX, _LARGE, PIECE_SIZE, STREAM_WINDOW_MAX, WINDOW_TOO_LARGE, XZ_MEMLIMIT,
                          ZSTD_WINDOW_LOG_MAX, CompressionError, StdlibBinding, ZstandardBinding, ZstdFrame,
                          _check_declared, _first_sentence, binding, decompressed_pieces, zstandard_pieces)
from .constants import CHUNK_SIZE_LIMIT, GZIP_MAGIC, XZ_MAGIC, ZSTD_MAGIC

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    import lzma  # xz and gzip are imported where a stream needs them: most runs see only zstd
    import zlib
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, Final

# Input the zstd reader asks for at a time (libzstd's recommended input size is 128 KiB).
_READ_SIZE: Final = 128 * 1024
_MAGIC_LEN: Final = max(len(ZSTD_MAGIC), len(XZ_MAGIC), len(GZIP_MAGIC))
_HEADER, _BLOCK_HEAD, _SKIP, _DONE = range(4)


class FrameError(CompressionError):
    """What :class:`ZstdFrameWalk` finds wrong with a frame's structure."""


class ZstdFrameWalk:
    """What :func:`~desync.compression.zstd_frame` checks, on a frame fed in pieces.

    :meth:`feed` raises as soon as a header or block header is wrong;
    :meth:`finish` (at the end of the input) for a truncated frame or bytes after it.
    """

    def __init__(self) -> None:
        self.phase = _HEADER
        self.head = bytearray()
        self.need = 0  # bytes to skip (_SKIP) or of the block header still missing (_BLOCK_HEAD)
        self.block_max = 0
        self.checksum = False
        self.last = False
        self.trailing = 0
        self.frame: ZstdFrame | None = None

    def feed(self, data: bytes | memoryview) -> ZstdFrame | None:
        """Take the next bytes; the frame's header once it has been read."""
        pos = 0
        n = len(data)
        while pos < n:
            if self.phase == _SKIP:
                step = min(self.need, n - pos)
                pos += step
                self.need -= step
                if not self.need:
                    self._block_done()
            elif self.phase == _DONE:
                self.trailing += n - pos
                break
            else:
                self.head.append(data[pos])
                pos += 1
                if self.phase == _HEADER:
                    self._header()
                elif len(self.head) == 3:
                    self._block()
        return self.frame

    def finish(self) -> ZstdFrame:
        if self.phase != _DONE or self.frame is None:
            raise FrameError("truncated zstd frame")
        if self.trailing:
            raise FrameError(f"zstd: {self.trailing} bytes of trailing data after the frame")
        return self.frame

    def _header(self) -> None:
        head = self.head
        if len(head) < 6:
            return
        descriptor = head[4]
        if descriptor & 0x08:
            raise FrameError("zstd: reserved bit set in the frame header")
        single = bool(descriptor & 0x20)
        fcs_len = (1 if single else 0, 2, 4, 8)[descriptor >> 6]
        pos = (5 if single else 6) + (0, 1, 2, 4)[descriptor & 3]
        if len(head) < pos + fcs_len:
            return
        window = 0
        if not single:
            log = 10 + (head[5] >> 3)
            if log > ZSTD_WINDOW_LOG_MAX:
                raise FrameError(WINDOW_TOO_LARGE)
            window = (1 << log) + ((1 << log) >> 3) * (head[5] & 7)
        content = -1
        if fcs_len:
            content = int.from_bytes(head[pos:pos + fcs_len], "little") + (256 if fcs_len == 2 else 0)
        if single:
            window = content
        self.frame = ZstdFrame(content, window, 0, 0)  # length and content bound: not known until the end
        self.block_max = min(window, _BLOCK_MAX)
        self.checksum = bool(descriptor & 0x04)
        self.head = bytearray()
        self.phase = _BLOCK_HEAD

    def _block(self) -> None:
        head = self.head
        value = head[0] | head[1] << 8 | head[2] << 16
        self.head = bytearray()
        kind = (value >> 1) & 3
        size = value >> 3
        if kind == 3:
            raise FrameError("zstd: reserved block type")
        if size > self.block_max:  # an RLE block too: see compression.zstd_frame
            raise FrameError("zstd: block larger than the frame allows")
        self.last = bool(value & 1)
        self.need = 1 if kind == 1 else size
        self.phase = _SKIP
        if not self.need:
            self._block_done()

    def _block_done(self) -> None:
        if not self.last:
            self.phase = _BLOCK_HEAD
        elif self.checksum:
            self.checksum = False
            self.need = 4
        else:
            self.phase = _DONE


class _Input:
    """The stored bytes in arrival order: pieces already looked at first, then the rest, each shown once to
    the frame walk (when there is one) as it is handed on."""

    def __init__(self, seen: list[bytes], rest: Iterator[bytes], walk: ZstdFrameWalk | None) -> None:
        self.seen = seen
        self.rest = rest
        self.walk = walk
        self.piece = memoryview(b"")
        self.offset = 0

    def next_piece(self) -> bytes:
        """The next non-empty piece, b"" at the end."""
        if self.seen:
            return self.seen.pop(0)
        for piece in self.rest:
            if piece:
                if self.walk is not None:
                    self.walk.feed(piece)
                return piece
        return b""

    def read(self, size: int = -1) -> bytes:
        """At most ``size`` bytes (what zstandard's stream reader asks of a source)."""
        if self.offset >= len(self.piece):
            self.piece = memoryview(self.next_piece())
            self.offset = 0
        end = len(self.piece) if size < 0 else self.offset + size
        out = bytes(self.piece[self.offset:end])
        self.offset += len(out)
        return out

    def drain(self) -> int:
        """Consume what is left; the number of bytes."""
        count = len(self.piece) - self.offset
        self.offset = len(self.piece)
        while True:
            piece = self.next_piece()
            if not piece:
                return count
            count += len(piece)


def stream_content(source: Iterable[bytes], limit: int, take: Callable[[bytes], None]) -> None:
    """Hand ``take`` the content of the chunk file ``source`` yields the bytes of, a piece at a time.

    What :func:`~desync.compression.decompressed_pieces` gives for the
    bytes in memory, or its error, holding only a piece of input, a piece
    of output and the decoder's bounded state at a time.  (A callback, not
    a generator: compiled generators mishandle ``yield`` inside ``try``.)
    """
    limit = min(limit, CHUNK_SIZE_LIMIT)
    rest = iter(source)
    seen: list[bytes] = []
    got = 0
    for piece in rest:
        if piece:
            seen.append(piece)
            got += len(piece)
            if got >= _MAGIC_LEN:
                break
    start = b"".join(seen)[:_MAGIC_LEN]
    if start.startswith(ZSTD_MAGIC):
        _zstd(seen, rest, limit, take)
    elif start.startswith(XZ_MAGIC):
        import lzma

        _unstream(_Input(seen, rest, None), lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT),
                  "xz", limit, take)
    elif start.startswith(GZIP_MAGIC):
        import zlib

        _unstream(_Input(seen, rest, None), zlib.decompressobj(wbits=31), "gzip", limit, take)
    else:
        raise CompressionError("unknown compression format")


def _zstd(seen: list[bytes], rest: Iterator[bytes], limit: int, take: Callable[[bytes], None]) -> None:
    walk = ZstdFrameWalk()
    for piece in seen:
        walk.feed(piece)
    frame = walk.frame
    if frame is None:
        for piece in rest:
            frame = walk.feed(piece)
            seen.append(piece)
            if frame is not None:
                break
    if frame is None:
        walk.finish()  # raises: the input ended inside the header
        return
    source = _Input(seen, rest, walk)
    large = frame.content_size < 0 and frame.window_size > STREAM_WINDOW_MAX
    counted = _Counted(take)
    try:
        _check_declared(frame, limit)
        try:
            if large:
                # The window costs as much as the content: one such frame at a time, as decompressed_pieces does.
                with _LARGE:
                    _zstd_decode(source, limit, large, counted)
            else:
                _zstd_decode(source, limit, large, counted)
        except CompressionError as exc:
            if frame.content_size >= 0 and _TOO_SMALL in str(exc):
                raise _size_mismatch() from None
            raise
        if frame.content_size >= 0 and counted.total != frame.content_size:
            raise _size_mismatch()
    except FrameError:
        raise
    except CompressionError:
        # What is wrong with the frame's structure (truncated, trailing bytes, a bad block header) is
        # refused before what its header claims or its blocks hold, as decompressed_pieces does.
        source.drain()
        walk.finish()
        raise
    source.drain()
    walk.finish()


# libzstd decoding a frame in one pass calls content that differs from the header's size corruption; fed
# block by block it says the output buffer is too small (more content) or nothing at all (less).  The streamed
# verdict must not depend on how the bytes arrive, so both become the one-pass error.
_TOO_SMALL: Final = "Destination buffer is too small"
# A frame whose header declares one byte of content and whose only block holds none.
_SIZE_MISMATCH_FRAME: Final = bytes.fromhex("28b52ffd2001010000")


def _size_mismatch() -> CompressionError:
    """The error one-pass decoding gives a frame whose content differs from its declared size, in the binding's words."""
    try:
        for _ in decompressed_pieces(_SIZE_MISMATCH_FRAME, 1):
            pass
    except CompressionError as exc:
        return CompressionError(str(exc))
    return CompressionError("zstd: content size differs from the frame header")


class _Counted:
    """Passes pieces on and counts their bytes."""

    def __init__(self, take: Callable[[bytes], None]) -> None:
        self.take = take
        self.total = 0

    def __call__(self, piece: bytes) -> None:
        self.total += len(piece)
        self.take(piece)


def _zstd_decode(source: _Input, limit: int, large: bool, take: Callable[[bytes], None]) -> None:
    zstd = binding()
    module: Any = zstd.module
    if isinstance(zstd, ZstandardBinding):
        try:
            dctx = module.ZstdDecompressor(max_window_size=0 if large else STREAM_WINDOW_MAX)
            for piece in zstandard_pieces(dctx.stream_reader(source, read_size=_READ_SIZE, read_across_frames=False),
                                          limit):
                take(piece)
            return
        except zstd.error as exc:
            raise CompressionError(f"zstd: {exc}") from None
    assert isinstance(zstd, StdlibBinding)
    total = 0
    try:
        dobj = module.ZstdDecompressor() if large else module.ZstdDecompressor(options=zstd.stream_options)
        data = b""
        while not dobj.eof:
            if dobj.needs_input:
                data = source.read(_READ_SIZE)
                if not data:
                    raise CompressionError("truncated zstd frame")
            out: bytes = dobj.decompress(data, PIECE_SIZE)
            data = b""
            total += len(out)
            if total > limit:
                raise CompressionError("zstd frame larger than expected")
            if out:
                take(out)
    except zstd.error as exc:
        raise CompressionError(f"zstd: {_first_sentence(str(exc))}") from None


def _unstream(source: _Input, dobj: "lzma.LZMADecompressor | zlib._Decompress", name: str, limit: int,
              take: Callable[[bytes], None]) -> None:
    """One xz or gzip stream's content in pieces, as its input arrives; past ``limit`` or followed by other
    bytes is an error."""
    import lzma
    import zlib

    total = 0
    data = b""
    try:
        while not dobj.eof:
            if isinstance(dobj, lzma.LZMADecompressor):
                if dobj.needs_input:
                    data = source.next_piece()
                    if not data:
                        raise CompressionError(f"truncated {name} stream")
                piece = dobj.decompress(data, PIECE_SIZE)
                data = b""
            else:
                if not data:
                    data = source.next_piece()
                    if not data:
                        raise CompressionError(f"truncated {name} stream")
                piece = dobj.decompress(data, PIECE_SIZE)
                data = dobj.unconsumed_tail
            total += len(piece)
            if total > limit:
                raise CompressionError(f"{name} stream larger than expected")
            if piece:
                take(piece)
    except (lzma.LZMAError, zlib.error) as exc:
        raise CompressionError(f"{name}: {exc}") from None
    if dobj.unused_data or data or source.drain():
        raise CompressionError(f"trailing data after the {name} stream")
