"""Chunk file compression: zstd for writing; zstd, xz and gzip for reading.

casync can write ``.cacnk`` files in any of the three formats and detects
them by magic bytes (docs/formats.md 4.3), so readers must too.

zstd comes from the ``zstandard`` package when it is installed (always, in
a normal install: it is the fast path), else from the standard library's
``compression.zstd`` (Python 3.14+), so the zipapp runs with nothing but
Python.  Both wrap the same libzstd and write the same frames.  The
binding is chosen on first use, not at import, so ``--help`` works
without either.  Compression contexts are not thread-safe, hence one per
thread.
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod

from .constants import CHUNK_SIZE_LIMIT, GZIP_MAGIC, XZ_MAGIC, ZSTD_LEVEL, ZSTD_MAGIC
# CompressionError is defined in desync.errors and stays importable from here.
from .errors import CompressionError as CompressionError, DesyncError
from .fsutil import capped_pieces

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    import lzma  # xz and gzip are imported where a stream needs them: most runs see only zstd
    import zlib
    from collections.abc import Iterator
    from types import ModuleType
    from typing import Any, Final

NO_BINDING = "zstd compression needs the zstandard package, which is not installed: pip install zstandard"
# Output pieces of streamed decompression: small enough to keep memory flat, large enough to be cheap.
PIECE_SIZE: Final = 1 << 20
# Largest zstd window a streamed decompression may allocate (casync writes 2 MiB windows at level 3);
# frames that ask for more are decoded in one go, one at a time per process.
STREAM_WINDOW_LOG: Final = 24
STREAM_WINDOW_MAX: Final = 1 << STREAM_WINDOW_LOG
# The largest window libzstd accepts (64-bit builds); a header asking for more is not a zstd frame.
ZSTD_WINDOW_LOG_MAX: Final = 31
WINDOW_TOO_LARGE: Final = "zstd: the frame header asks for a window larger than zstd allows"
_BLOCK_MAX: Final = 128 * 1024
_LARGE = threading.Lock()
# Memory an xz stream may ask for: its dictionary, up to what ``xz -9`` uses (64 MiB).
XZ_MEMLIMIT: Final = 72 << 20


class ZstdFrame:
    """What a zstd frame's headers say, read without decompressing it (immutable; a plain class, as
    dataclasses cost start-up time)."""

    __slots__ = ("content_size", "window_size", "length", "content_bound")

    def __init__(self, content_size: int, window_size: int, length: int, content_bound: int) -> None:
        self.content_size: Final = content_size  # -1: not recorded
        self.window_size: Final = window_size
        self.length: Final = length  # bytes of the frame, checksum included
        self.content_bound: Final = content_bound  # the most its blocks can hold: what a one-shot decode allocates

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ZstdFrame):
            return NotImplemented
        return (self.content_size == other.content_size and self.window_size == other.window_size
                and self.length == other.length and self.content_bound == other.content_bound)

    def __hash__(self) -> int:
        return hash((self.content_size, self.window_size, self.length, self.content_bound))

    def __repr__(self) -> str:
        return (f"ZstdFrame(content_size={self.content_size!r}, window_size={self.window_size!r}, "
                f"length={self.length!r}, content_bound={self.content_bound!r})")


def zstd_frame(raw: bytes) -> ZstdFrame:
    """Walk the frame header and block headers of the zstd frame ``raw`` must consist of.

    Finding the frame's end here, the same way for both bindings, is what
    lets bytes after it be refused (as casync does) and a truncated frame
    be told apart before any memory is spent on its content.
    """
    n = len(raw)
    if n < 6:
        raise CompressionError("truncated zstd frame")
    descriptor = raw[4]
    if descriptor & 0x08:
        raise CompressionError("zstd: reserved bit set in the frame header")
    fcs_flag = descriptor >> 6
    single = bool(descriptor & 0x20)
    pos = 5
    window = 0
    if not single:
        wd = raw[5]
        log = 10 + (wd >> 3)
        if log > ZSTD_WINDOW_LOG_MAX:
            raise CompressionError(WINDOW_TOO_LARGE)
        window = (1 << log) + ((1 << log) >> 3) * (wd & 7)
        pos = 6
    pos += (0, 1, 2, 4)[descriptor & 3]
    fcs_len = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if pos + fcs_len > n:
        raise CompressionError("truncated zstd frame")
    content = -1
    if fcs_len:
        content = int.from_bytes(raw[pos:pos + fcs_len], "little") + (256 if fcs_len == 2 else 0)
    pos += fcs_len
    if single:
        window = content
    block_max = min(window, _BLOCK_MAX)
    bound = 0
    while True:
        if pos + 3 > n:
            raise CompressionError("truncated zstd frame")
        head = raw[pos] | raw[pos + 1] << 8 | raw[pos + 2] << 16
        pos += 3
        kind = (head >> 1) & 3
        size = head >> 3
        if kind == 3:
            raise CompressionError("zstd: reserved block type")
        # An RLE block's size is what it regenerates: the block maximum bounds it too (RFC 8878 3.1.1.2).
        # libzstd checks that only when decoding in steps, so the walk refuses it for both paths alike.
        if size > block_max:
            raise CompressionError("zstd: block larger than the frame allows")
        pos += 1 if kind == 1 else size
        bound += block_max if kind == 2 else size
        if head & 1:
            break
    if descriptor & 0x04:
        pos += 4
    if pos > n:
        raise CompressionError("truncated zstd frame")
    if pos < n:
        raise CompressionError(f"zstd: {n - pos} bytes of trailing data after the frame")
    return ZstdFrame(content, window, pos, bound)


class ZstdBinding(ABC):
    """One zstd library behind the operations chunk files need.

    Callers pass frames :func:`zstd_frame` has accepted, with a content
    size (when recorded) within ``limit``; both bindings then refuse
    output past ``limit`` and give identical results.
    """

    def __init__(self, module: ModuleType) -> None:
        self.module: Any = module
        # A plain threading.local instance: a compiled subclass of it would lose the per-thread storage.
        self.contexts = threading.local()

    @abstractmethod
    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """One frame at casync's level, recording the content size."""

    @abstractmethod
    def decompress(self, raw: bytes, limit: int) -> bytes:
        """The content of the zstd frame ``raw``; more than ``limit`` bytes is an error."""

    @abstractmethod
    def pieces(self, raw: bytes, limit: int) -> Iterator[bytes]:
        """The content in pieces of at most PIECE_SIZE, using a window of at most STREAM_WINDOW_MAX."""


class ZstandardBinding(ZstdBinding):
    """The ``zstandard`` package: reusable per-thread contexts and one-shot decompression."""

    def __init__(self, module: ModuleType) -> None:
        super().__init__(module)
        self.error: Any = module.ZstdError

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        ctx: Any = getattr(self.contexts, "compressor", None)
        if ctx is None:
            ctx = self.module.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
            self.contexts.compressor = ctx
        result: bytes = ctx.compress(data)
        return result

    def decompress(self, raw: bytes, limit: int) -> bytes:
        dctx: Any = getattr(self.contexts, "decompressor", None)
        if dctx is None:
            dctx = self.module.ZstdDecompressor()
            self.contexts.decompressor = dctx
        try:
            out: bytes = dctx.decompress(raw, max_output_size=limit)
        except self.error as exc:
            raise CompressionError(_zstandard_reason(str(exc))) from None
        return out

    def pieces(self, raw: bytes, limit: int) -> Iterator[bytes]:
        dctx: Any = getattr(self.contexts, "streamer", None)
        if dctx is None:
            dctx = self.module.ZstdDecompressor(max_window_size=STREAM_WINDOW_MAX)
            self.contexts.streamer = dctx
        try:
            yield from zstandard_pieces(dctx.stream_reader(raw, read_across_frames=False), limit)
        except self.error as exc:
            raise CompressionError(f"zstd: {exc}") from None


def zstandard_pieces(reader: Any, limit: int) -> Iterator[bytes]:
    """A python-zstandard stream reader's output in pieces of at most PIECE_SIZE; more than ``limit`` bytes
    in all is a CompressionError (the caller maps the module's own errors)."""
    return capped_pieces(reader.read, limit, PIECE_SIZE, lambda: CompressionError("zstd frame larger than expected"))


def _zstandard_reason(message: str) -> str:
    if "did not decompress full frame" in message:
        return "zstd frame larger than expected"
    return f"zstd: {message}"


class StdlibBinding(ZstdBinding):
    """The standard library's ``compression.zstd`` (PEP 784): its decompressors serve one frame each."""

    def __init__(self, module: ModuleType) -> None:
        super().__init__(module)
        self.flush_frame: int = module.ZstdCompressor.FLUSH_FRAME
        self.error: Any = module.ZstdError
        self.stream_options: dict[Any, int] = {module.DecompressionParameter.window_log_max: STREAM_WINDOW_LOG}

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        ctx: Any = getattr(self.contexts, "compressor", None)
        if ctx is None:
            # Ending the frame in the first call lets libzstd record the content size.
            ctx = self.module.ZstdCompressor(level=ZSTD_LEVEL)
            self.contexts.compressor = ctx
        result: bytes = ctx.compress(data, self.flush_frame)
        return result

    def decompress(self, raw: bytes, limit: int) -> bytes:
        try:
            dobj = self.module.ZstdDecompressor()
            # One byte of room past the limit tells a frame that is too large from one that fits exactly.
            out: bytes = dobj.decompress(raw, limit + 1)
        except self.error as exc:
            raise CompressionError(f"zstd: {_first_sentence(str(exc))}") from None
        if len(out) > limit:
            raise CompressionError("zstd frame larger than expected")
        if not dobj.eof:
            raise CompressionError("truncated zstd frame")
        return out

    def pieces(self, raw: bytes, limit: int) -> Iterator[bytes]:
        total = 0
        try:
            dobj = self.module.ZstdDecompressor(options=self.stream_options)
            data = raw
            while not dobj.eof:
                piece: bytes = dobj.decompress(data, PIECE_SIZE)
                data = b""
                if not piece and dobj.needs_input:
                    raise CompressionError("truncated zstd frame")
                total += len(piece)
                if total > limit:
                    raise CompressionError("zstd frame larger than expected")
                if piece:
                    yield piece
        except self.error as exc:
            raise CompressionError(f"zstd: {_first_sentence(str(exc))}") from None


def _first_sentence(message: str) -> str:
    head, _, _ = message.partition(". ")
    return head.rstrip(".")


def choose_binding(zstandard: ModuleType | None, stdlib: ModuleType | None) -> ZstdBinding:
    """``zstandard`` when there, else ``compression.zstd``; neither is a one-line error naming the package."""
    if zstandard is not None:
        return ZstandardBinding(zstandard)
    if stdlib is not None:
        return StdlibBinding(stdlib)
    raise DesyncError(NO_BINDING)


def _optional_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_binding: ZstdBinding | None = None


def binding() -> ZstdBinding:
    """The zstd library this process uses, imported on first call."""
    global _binding
    if _binding is None:
        _binding = choose_binding(_optional_module("zstandard"), _optional_module("compression.zstd"))
    return _binding


def compress(data: bytes | bytearray | memoryview) -> bytes:
    """One zstd frame at casync's level; it records the content size so readers can size their buffer."""
    return binding().compress(data)


def compress_as(data: bytes | bytearray | memoryview, kind: str) -> bytes:
    """``data`` as one zstd, xz or gzip stream: the three formats casync writes (``--compression``)."""
    if kind == "zstd":
        return compress(data)
    if kind == "xz":
        import lzma

        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)
    if kind == "gzip":
        import zlib

        packer = zlib.compressobj(6, zlib.DEFLATED, 31)
        return packer.compress(data) + packer.flush()
    raise DesyncError(f"unknown compression {kind!r} (zstd, xz or gzip)")


def decompress(raw: bytes, limit: int = CHUNK_SIZE_LIMIT) -> bytes:
    """Decompress a chunk file in any format casync writes, producing at most ``limit`` bytes.

    ``limit`` is the chunk's size when an index gives it, else the
    store-wide maximum.  The bytes must be exactly one stream: a frame
    that is truncated, is followed by other bytes, or holds more than
    ``limit`` bytes is a :class:`CompressionError`, whatever its header
    claims.
    """
    limit = min(limit, CHUNK_SIZE_LIMIT)
    if raw.startswith(ZSTD_MAGIC):
        frame = zstd_frame(raw)
        _check_declared(frame, limit)
        # Nothing to gain from room the blocks cannot fill (the output buffer is allocated up front).
        return binding().decompress(raw, min(limit, max(frame.content_bound, 1)))
    if raw.startswith(XZ_MAGIC):
        return b"".join(_unstream(_xz(), raw, "xz", limit, limit + 1))
    if raw.startswith(GZIP_MAGIC):
        import zlib

        return b"".join(_unstream(zlib.decompressobj(wbits=31), raw, "gzip", limit, limit + 1))
    raise CompressionError("unknown compression format")


def decompressed_pieces(raw: bytes, limit: int = CHUNK_SIZE_LIMIT) -> Iterator[bytes]:
    """Like :func:`decompress`, in pieces of at most PIECE_SIZE bytes, so memory stays small.

    For checking a chunk whose size nothing tells (a whole store's
    ``verify``, an upload): however much a hostile frame claims or
    inflates to, only a piece and a bounded window are held at a time, and
    the stream is refused once it passes ``limit``.
    """
    limit = min(limit, CHUNK_SIZE_LIMIT)
    if raw.startswith(ZSTD_MAGIC):
        frame = zstd_frame(raw)
        _check_declared(frame, limit)
        if frame.content_size < 0 and frame.window_size > STREAM_WINDOW_MAX:
            # The window would cost as much as the content: decode whole, one such frame at a time.
            with _LARGE:
                data = binding().decompress(raw, limit)
            for start in range(0, len(data), PIECE_SIZE):
                yield data[start:start + PIECE_SIZE]
            return
        yield from binding().pieces(raw, limit)
    elif raw.startswith(XZ_MAGIC):
        yield from _unstream(_xz(), raw, "xz", limit, PIECE_SIZE)
    elif raw.startswith(GZIP_MAGIC):
        import zlib

        yield from _unstream(zlib.decompressobj(wbits=31), raw, "gzip", limit, PIECE_SIZE)
    else:
        raise CompressionError("unknown compression format")


def stored_size_limit(size: int) -> int:
    """The most bytes a chunk file may hold for content of ``size`` bytes (0: size unknown).

    Room for any of the three formats' overhead on incompressible data;
    anything larger is not a chunk of that size and is not read.
    """
    content = size if 0 < size < CHUNK_SIZE_LIMIT else CHUNK_SIZE_LIMIT
    return content + content // 64 + 4096


def _xz() -> lzma.LZMADecompressor:
    import lzma

    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)


def _check_declared(frame: ZstdFrame, limit: int) -> None:
    if frame.content_size > limit:
        raise CompressionError("chunk too large" if frame.content_size > CHUNK_SIZE_LIMIT
                               else "zstd frame larger than expected")


def _unstream(dobj: "lzma.LZMADecompressor | zlib._Decompress", raw: bytes, name: str, limit: int,
              piece_size: int) -> Iterator[bytes]:
    """The content of one xz or gzip stream in pieces; past ``limit`` or followed by other bytes is an error."""
    import lzma
    import zlib

    total = 0
    data = raw
    try:
        while True:
            if isinstance(dobj, lzma.LZMADecompressor):
                piece = dobj.decompress(data, piece_size)
                data = b""
                stalled = not piece and dobj.needs_input
            else:
                piece = dobj.decompress(data, piece_size)
                data = dobj.unconsumed_tail
                stalled = not piece and not data
            total += len(piece)
            if total > limit:
                raise CompressionError(f"{name} stream larger than expected")
            if piece:
                yield piece
            if dobj.eof:
                break
            if stalled:
                raise CompressionError(f"truncated {name} stream")
    except (lzma.LZMAError, zlib.error) as exc:
        raise CompressionError(f"{name}: {exc}") from None
    if dobj.unused_data or (not isinstance(dobj, lzma.LZMADecompressor) and dobj.unconsumed_tail):
        raise CompressionError(f"trailing data after the {name} stream")
