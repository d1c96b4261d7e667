"""Chunk file compression: zstd for writing; zstd, xz and gzip for reading.

casync can write ``.cacnk`` files in any of the three formats and detects
them by magic bytes (formats.md 4.3), so readers must too.  Compressor and
decompressor contexts are not thread-safe, hence one per thread.
"""

import lzma
import threading
import zlib

import zstandard

from .constants import CHUNK_SIZE_LIMIT, GZIP_MAGIC, XZ_MAGIC, ZSTD_LEVEL, ZSTD_MAGIC


class CompressionError(ValueError):
    """The bytes are not one valid compressed stream."""


# A plain threading.local instance: a compiled subclass of it would lose the per-thread storage.
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    ctx: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if ctx is None:
        ctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
        _local.compressor = ctx
    return ctx


def _decompressor() -> zstandard.ZstdDecompressor:
    ctx: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if ctx is None:
        ctx = zstandard.ZstdDecompressor()
        _local.decompressor = ctx
    return ctx


def compress(data: bytes | bytearray | memoryview) -> bytes:
    """One zstd frame at casync's level; it records the content size so readers can size their buffer."""
    result: bytes = _compressor().compress(data)
    return result


def decompress(raw: bytes, size_hint: int = 0) -> bytes:
    """Decompress a chunk file in any format casync writes.

    ``size_hint`` is the expected chunk size when known (from an index);
    it lets frames without a recorded content size (casync's) take the
    fast one-shot path.
    """
    if raw.startswith(ZSTD_MAGIC):
        return _unzstd(raw, size_hint)
    if raw.startswith(XZ_MAGIC):
        return _unstream(lzma.LZMADecompressor(format=lzma.FORMAT_XZ), raw, "xz")
    if raw.startswith(GZIP_MAGIC):
        return _unstream(zlib.decompressobj(wbits=31), raw, "gzip")
    raise CompressionError("unknown compression format")


def _unzstd(raw: bytes, size_hint: int) -> bytes:
    dctx = _decompressor()
    try:
        params = zstandard.get_frame_parameters(raw)
        if params.content_size != zstandard.CONTENTSIZE_UNKNOWN:
            if params.content_size > CHUNK_SIZE_LIMIT:
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
    except zstandard.ZstdError as exc:
        raise CompressionError(f"zstd: {exc}") from None


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
