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

import importlib
import lzma
import threading
import zlib
from abc import ABC, abstractmethod
from types import ModuleType
from typing import Any

from .constants import CHUNK_SIZE_LIMIT, GZIP_MAGIC, XZ_MAGIC, ZSTD_LEVEL, ZSTD_MAGIC
from .errors import DesyncError

NO_BINDING = "zstd compression needs the zstandard package, which is not installed: pip install zstandard"


class CompressionError(ValueError):
    """The bytes are not one valid compressed stream."""


class ZstdBinding(ABC):
    """One zstd library behind the two operations chunk files need."""

    def __init__(self, module: ModuleType) -> None:
        self.module: Any = module
        # A plain threading.local instance: a compiled subclass of it would lose the per-thread storage.
        self.contexts = threading.local()

    @abstractmethod
    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """One frame at casync's level, recording the content size."""

    @abstractmethod
    def decompress(self, raw: bytes, size_hint: int) -> bytes:
        """The content of the zstd frame at the start of ``raw``; bytes after it are ignored."""


class ZstandardBinding(ZstdBinding):
    """The ``zstandard`` package: reusable per-thread contexts and one-shot decompression."""

    def __init__(self, module: ModuleType) -> None:
        super().__init__(module)
        self.frame_parameters: Any = module.get_frame_parameters
        self.unknown_size: int = module.CONTENTSIZE_UNKNOWN
        self.error: Any = module.ZstdError

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        ctx: Any = getattr(self.contexts, "compressor", None)
        if ctx is None:
            ctx = self.module.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
            self.contexts.compressor = ctx
        result: bytes = ctx.compress(data)
        return result

    def decompress(self, raw: bytes, size_hint: int) -> bytes:
        dctx: Any = getattr(self.contexts, "decompressor", None)
        if dctx is None:
            dctx = self.module.ZstdDecompressor()
            self.contexts.decompressor = dctx
        try:
            size: int = self.frame_parameters(raw).content_size
            if size != self.unknown_size:
                if size > CHUNK_SIZE_LIMIT:
                    raise CompressionError("chunk too large")
                out: bytes = dctx.decompress(raw)
                return out
            if 0 < size_hint <= CHUNK_SIZE_LIMIT:
                out = dctx.decompress(raw, max_output_size=size_hint)
                return out
            dobj = dctx.decompressobj()
            out = dobj.decompress(raw)
            if not dobj.eof:
                raise CompressionError("truncated zstd frame")
            return out
        except self.error as exc:
            raise CompressionError(f"zstd: {exc}") from None


class StdlibBinding(ZstdBinding):
    """The standard library's ``compression.zstd`` (PEP 784): its decompressors serve one frame each."""

    def __init__(self, module: ModuleType) -> None:
        super().__init__(module)
        self.flush_frame: int = module.ZstdCompressor.FLUSH_FRAME
        self.error: Any = module.ZstdError

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        ctx: Any = getattr(self.contexts, "compressor", None)
        if ctx is None:
            # Ending the frame in the first call lets libzstd record the content size.
            ctx = self.module.ZstdCompressor(level=ZSTD_LEVEL)
            self.contexts.compressor = ctx
        result: bytes = ctx.compress(data, self.flush_frame)
        return result

    def decompress(self, raw: bytes, size_hint: int) -> bytes:
        try:
            size: int | None = self.module.get_frame_info(raw).decompressed_size
            if size is not None:
                if size > CHUNK_SIZE_LIMIT:
                    raise CompressionError("chunk too large")
                limit = size
            elif 0 < size_hint <= CHUNK_SIZE_LIMIT:
                limit = size_hint
            else:
                limit = CHUNK_SIZE_LIMIT
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


def decompress(raw: bytes, size_hint: int = 0) -> bytes:
    """Decompress a chunk file in any format casync writes.

    ``size_hint`` is the expected chunk size when known (from an index);
    it lets frames without a recorded content size (casync's) take the
    fast one-shot path.
    """
    if raw.startswith(ZSTD_MAGIC):
        return binding().decompress(raw, size_hint)
    if raw.startswith(XZ_MAGIC):
        return _unstream(lzma.LZMADecompressor(format=lzma.FORMAT_XZ), raw, "xz")
    if raw.startswith(GZIP_MAGIC):
        return _unstream(zlib.decompressobj(wbits=31), raw, "gzip")
    raise CompressionError("unknown compression format")


def _unstream(dobj: "lzma.LZMADecompressor | zlib._Decompress", raw: bytes, name: str) -> bytes:
    try:
        out = dobj.decompress(raw, CHUNK_SIZE_LIMIT + 1)
    except (lzma.LZMAError, zlib.error) as exc:
        raise CompressionError(f"{name}: {exc}") from None
    if not dobj.eof:
        raise CompressionError(f"truncated {name} stream")
    if dobj.unused_data:
        raise CompressionError(f"trailing data after the {name} stream")
    return out
