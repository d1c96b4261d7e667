"""Chunk compression: every format casync writes is readable, bad frames are refused."""

import gzip
import lzma
import os

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from desync import compression


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
    assert compression.decompress(raw, size_hint=len(data)) == data


def test_xz_and_gzip_chunks_are_read() -> None:
    data = os.urandom(3000) * 3
    assert compression.decompress(lzma.compress(data, preset=6, check=lzma.CHECK_CRC64)) == data
    assert compression.decompress(gzip.compress(data)) == data


@pytest.mark.parametrize("raw", [b"", b"plain bytes", b"\x28\xb5\x2f\xfd\x00\x01", lzma.compress(b"x")[:-3],
                                 gzip.compress(b"x") + b"junk"])
def test_damaged_or_unknown_data_is_refused(raw: bytes) -> None:
    with pytest.raises(compression.CompressionError):
        compression.decompress(raw)
