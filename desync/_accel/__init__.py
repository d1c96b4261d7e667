"""Optional C accelerators.

The compiled ``_chunker``, ``_fileio``, ``_siphash`` and ``_codec`` modules are missing from source checkouts and from
the zipapp, and ``DESYNC_NO_ACCEL=1`` hides them on purpose (to test or
benchmark the pure-Python path); users of :data:`chunker_module` fall back
to Python code with identical results when it is ``None``.

Each module is typed by its ``.pyi`` stub beside the C source; the
protocols below are what callers rely on, and the loaders only type-check
because the stubs satisfy them.
"""

from __future__ import annotations

import os

_Bytes = bytes | bytearray | memoryview
FinishJob = tuple[int, list[bytes], int, int, int, int, int, int, bool, int]

TYPE_CHECKING = False
if TYPE_CHECKING:  # the protocols are for the type checker; typing costs milliseconds at start-up
    import mmap
    from typing import Protocol

    class ChunkerModule(Protocol):
        def boundaries(self, buf: _Bytes | mmap.mmap, start: int, end: int, final: bool, min_size: int,
                       max_size: int, discriminator: int, /) -> list[int]: ...

        def window_hash(self, buf: _Bytes, /) -> int: ...

    class FileIOModule(Protocol):
        def tune_allocator(self) -> bool: ...

        def syncfs(self, fd: int, /) -> int: ...

        def read_files(self, paths: list[bytes], limits: list[int], /) -> list[bytes | int]: ...

        def finish_files(self, jobs: list[FinishJob], /) -> tuple[int, int, str] | None: ...

        def pwrite_many(self, fd: int, pieces: list[tuple[bytes, int]], /) -> int: ...

        def write_items(self, out_fd: int, items: list[bytes | tuple[int, int]], /) -> tuple[int, int] | None: ...

    class SipHashModule(Protocol):
        def siphash24(self, key: bytes, data: _Bytes, /) -> int: ...

    class CodecModule(Protocol):
        def digests(self, algo: int, buf: _Bytes, start: int, ends: list[int], /) -> list[bytes]: ...

        def decode_verify(self, algo: int, items: list[tuple[bytes, bytes, int, bool]], limit: int, /) \
                -> list[bytes | None]: ...

        def store_chunks(self, items: list[tuple[bytes, bytes, bytes, _Bytes]], level: int, /) -> list[int]: ...


def disabled() -> bool:
    """Whether ``DESYNC_NO_ACCEL`` asks for the pure-Python paths."""
    return os.environ.get("DESYNC_NO_ACCEL", "") not in ("", "0")


def _load_chunker() -> ChunkerModule | None:
    if disabled():
        return None
    try:
        from . import _chunker
    except ImportError:
        return None
    return _chunker


def _load_fileio() -> FileIOModule | None:
    if disabled():
        return None
    try:
        from . import _fileio
    except ImportError:
        return None
    return _fileio


def _load_siphash() -> SipHashModule | None:
    if disabled():
        return None
    try:
        from . import _siphash
    except ImportError:
        return None
    return _siphash


_codec_loaded: list[CodecModule | None] = []


def codec_module() -> CodecModule | None:
    """The batched chunk codec, loaded on first use: it brings in libcrypto and libzstd, which commands that
    hash nothing (``--version``, ``untar``) should not pay for.  None without it (a build without libzstd's
    or libcrypto's headers, a checkout, the zipapp, ``DESYNC_NO_ACCEL``)."""
    if not _codec_loaded:
        module: CodecModule | None = None
        if not disabled():
            try:
                from . import _codec
            except ImportError:
                pass
            else:
                module = _codec
        _codec_loaded.append(module)
    return _codec_loaded[0]


chunker_module: ChunkerModule | None = _load_chunker()
fileio_module: FileIOModule | None = _load_fileio()
siphash_module: SipHashModule | None = _load_siphash()
