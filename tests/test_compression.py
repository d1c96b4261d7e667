"""Chunk compression: every format casync writes is readable, bad frames are refused.

Both zstd bindings (``zstandard``, and the standard library's ``compression.zstd``
that the zipapp falls back to) must write frames the other reads and agree on
which frames are bad.
"""

import gzip
import importlib
import lzma
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from desync import compression
from desync.constants import CHUNK_SIZE_LIMIT
from desync.errors import DesyncError


@given(st.binary(min_size=1, max_size=200_000))
@settings(max_examples=50, deadline=None)
def test_zstd_round_trip(data: bytes) -> None:
    assert compression.decompress(compression.compress(data)) == data


def test_written_frames_are_single_zstd_frames_with_content_size() -> None:
    data = os.urandom(5000)
    raw = compression.compress(data)
    assert raw.startswith(b"\x28\xb5\x2f\xfd")
    assert zstandard.get_frame_parameters(raw).content_size == len(data)


def test_casync_style_frame_without_content_size_is_read() -> None:
    data = b"casync" * 10000
    raw = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(data)
    assert zstandard.get_frame_parameters(raw).content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert compression.decompress(raw) == data
    assert compression.decompress(raw, limit=len(data)) == data


def test_xz_and_gzip_chunks_are_read() -> None:
    data = os.urandom(3000) * 3
    assert compression.decompress(lzma.compress(data, preset=6, check=lzma.CHECK_CRC64)) == data
    assert compression.decompress(gzip.compress(data)) == data


@pytest.mark.parametrize("raw", [b"", b"plain bytes", b"\x28\xb5\x2f\xfd\x00\x01", lzma.compress(b"x")[:-3],
                                 gzip.compress(b"x") + b"junk"])
def test_damaged_or_unknown_data_is_refused(raw: bytes) -> None:
    with pytest.raises(compression.CompressionError):
        compression.decompress(raw)


def _stdlib_zstd() -> ModuleType | None:
    """``compression.zstd`` (Python 3.14+), or the backport of exactly that API standing in for it on 3.11–3.13."""
    for name in ("compression.zstd", "backports.zstd"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


STDLIB_ZSTD = _stdlib_zstd()
requires_stdlib_zstd = pytest.mark.skipif(
    STDLIB_ZSTD is None, reason="neither compression.zstd (Python 3.14+) nor backports.zstd is installed")
BINDING_NAMES = ["zstandard", pytest.param("stdlib", marks=requires_stdlib_zstd)]


def _binding(name: str) -> compression.ZstdBinding:
    if name == "zstandard":
        return compression.ZstandardBinding(zstandard)
    assert STDLIB_ZSTD is not None
    return compression.StdlibBinding(STDLIB_ZSTD)


def test_zstandard_is_preferred_and_the_stdlib_module_is_the_fallback() -> None:
    stand_in = ModuleType("compression.zstd")  # never touched while zstandard is there
    assert isinstance(compression.choose_binding(zstandard, stand_in), compression.ZstandardBinding)
    assert isinstance(compression.binding(), compression.ZstandardBinding)  # the compiled build's hot path


@requires_stdlib_zstd
def test_stdlib_module_is_used_without_zstandard() -> None:
    assert isinstance(compression.choose_binding(None, STDLIB_ZSTD), compression.StdlibBinding)


def test_no_zstd_library_is_a_one_line_error_naming_the_package() -> None:
    with pytest.raises(DesyncError, match=r"^zstd compression needs the zstandard package.*pip install zstandard$"):
        compression.choose_binding(None, None)


@pytest.mark.parametrize("name", BINDING_NAMES)
@given(data=st.binary(max_size=200_000))
@settings(max_examples=30, deadline=None)
def test_each_binding_round_trips_and_writes_what_zstandard_reads(name: str, data: bytes) -> None:
    ours = _binding(name)
    raw = ours.compress(data)
    assert raw.startswith(b"\x28\xb5\x2f\xfd")
    assert zstandard.get_frame_parameters(raw).content_size == len(data)
    assert ours.decompress(raw, CHUNK_SIZE_LIMIT) == data
    assert zstandard.ZstdDecompressor().decompress(raw) == data


@requires_stdlib_zstd
@given(data=st.binary(max_size=200_000))
@settings(max_examples=30, deadline=None)
def test_stdlib_binding_reads_what_zstandard_writes(data: bytes) -> None:
    assert _binding("stdlib").decompress(_binding("zstandard").compress(data), CHUNK_SIZE_LIMIT) == data


@requires_stdlib_zstd
def test_both_bindings_write_the_same_bytes_on_the_same_libzstd() -> None:
    assert STDLIB_ZSTD is not None
    if tuple(STDLIB_ZSTD.zstd_version_info) != tuple(int(x) for x in zstandard.ZSTD_VERSION):
        pytest.skip(f"different libzstd versions: {STDLIB_ZSTD.zstd_version_info} and {zstandard.ZSTD_VERSION}")
    data = os.urandom(20_000) * 3 + b"casync" * 5000
    assert _binding("stdlib").compress(data) == _binding("zstandard").compress(data)


@pytest.mark.parametrize("name", BINDING_NAMES)
def test_contexts_are_per_thread(name: str) -> None:
    ours = _binding(name)
    inputs = [os.urandom(1000) * (i + 1) for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        frames = list(pool.map(ours.compress, inputs))
        back = list(pool.map(lambda raw: ours.decompress(raw, CHUNK_SIZE_LIMIT), frames))
    assert back == inputs


_CASYNC_DATA = b"casync" * 10000
_CASYNC_FRAME = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(_CASYNC_DATA)
_SIZED = zstandard.ZstdCompressor(level=3).compress(os.urandom(5000))
_CHECKED = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(_CASYNC_DATA)
# A header declaring one byte more than a chunk may hold.
_HUGE = b"\x28\xb5\x2f\xfd\xe0" + struct.pack("<Q", CHUNK_SIZE_LIMIT + 1) + b"\x01\x00\x00"


def zstd_bomb(size: int, window_log: int = 21) -> bytes:
    """A frame without a content size whose RLE blocks inflate to ``size`` zero bytes (4 bytes per 128 KiB)."""
    block = 128 * 1024
    out = bytearray(b"\x28\xb5\x2f\xfd\x00" + bytes([(window_log - 10) << 3]))
    left = size
    while left > 0:
        n = min(block, left)
        left -= n
        out += (n << 3 | 1 << 1 | (1 if left == 0 else 0)).to_bytes(3, "little") + b"\x00"
    return bytes(out)


_BOMB = zstd_bomb(200 << 20)


@pytest.mark.parametrize("name", BINDING_NAMES)
@pytest.mark.parametrize("raw, limit, expected", [
    (_CASYNC_FRAME, 0, len(_CASYNC_DATA)),
    (_CASYNC_FRAME, len(_CASYNC_DATA), len(_CASYNC_DATA)),
    (_CASYNC_FRAME + b"junk", 0, None),
    (_SIZED + _SIZED, 0, None),
    (_CHECKED, 0, len(_CASYNC_DATA)),
    (zstandard.ZstdCompressor().compress(b""), 0, 0),
    (_CASYNC_FRAME, 5000, None),
    (_SIZED, 4999, None),
    (_SIZED, 5000, 5000),
    (_CASYNC_FRAME[:-5], 0, None),
    (_CASYNC_FRAME[:-5], len(_CASYNC_DATA), None),
    (_SIZED[:-5], 0, None),
    (_CHECKED[:-1] + bytes([_CHECKED[-1] ^ 1]), 0, None),
    (_HUGE, 0, None),
    (b"\x28\xb5\x2f\xfd", 0, None),
    (b"\x28\xb5\x2f\xfd\x00\x01", 0, None),
    (_BOMB, 0, None),
    (_BOMB, 64 * 1024, None),
    (zstd_bomb(3 << 20), 0, 3 << 20),
    (zstd_bomb(3 << 20, window_log=27), 0, 3 << 20),
], ids=["casync", "casync-limit", "trailing", "two-frames", "checksum", "empty", "larger-than-limit",
        "sized-over-limit", "sized-at-limit", "truncated", "truncated-limit", "truncated-sized", "bad-checksum",
        "too-large", "magic-only", "bad-header", "bomb", "bomb-limit", "rle", "rle-big-window"])
def test_bindings_accept_and_refuse_the_same_frames(name: str, raw: bytes, limit: int, expected: int | None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole and streamed decompression, with either binding, agree; nothing passes its limit or has a tail."""
    monkeypatch.setattr(compression, "_binding", _binding(name))
    bound = limit or CHUNK_SIZE_LIMIT
    for decode in (compression.decompress, lambda r, n: b"".join(compression.decompressed_pieces(r, n))):
        if expected is None:
            with pytest.raises(compression.CompressionError, match=r"^(zstd|truncated zstd|chunk too large)"):
                decode(raw, bound)
        else:
            assert len(decode(raw, bound)) == expected


@pytest.mark.parametrize("raw", [lzma.compress(b"x" * 1000) + b"tail", gzip.compress(b"x" * 1000) + b"tail",
                                 lzma.compress(bytes(300_000)), gzip.compress(bytes(300_000))])
def test_xz_and_gzip_are_bounded_and_strict_about_trailing_bytes(raw: bytes) -> None:
    for decode in (compression.decompress, lambda r, n: b"".join(compression.decompressed_pieces(r, n))):
        with pytest.raises(compression.CompressionError, match=r"trailing data|larger than expected"):
            decode(raw, 100_000)


def test_streamed_pieces_stay_small_whatever_the_frame_inflates_to() -> None:
    pieces = compression.decompressed_pieces(zstd_bomb(CHUNK_SIZE_LIMIT + (1 << 20)))
    seen = 0
    with pytest.raises(compression.CompressionError, match="larger than expected"):
        for piece in pieces:
            assert len(piece) <= compression.PIECE_SIZE
            seen += len(piece)
    assert seen <= CHUNK_SIZE_LIMIT


def test_compression_errors_are_desync_errors() -> None:
    assert issubclass(compression.CompressionError, DesyncError)
