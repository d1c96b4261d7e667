"""Decoding chunk files as their bytes arrive agrees with decoding them whole, for every format and zstd binding.

``verify`` of a store checks chunk files of unknown size a piece at a time
(:func:`desync.chunk.verify_stored`); a chunk file must get the same
verdict, and the same error, as :meth:`desync.chunk.Chunk.verify` gives
the whole bytes, however the bytes are cut into pieces.
"""

import gzip
import lzma
import os
import random
import re
from collections.abc import Iterator

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_compression import BINDING_NAMES, _binding, zstd_bomb

from desync import compression
from desync.chunk import Chunk, verify_stored
from desync.digest import SHA512_256_DIGEST as SHA
from desync.errors import ChunkInvalid
from desync.streamdecode import ZstdFrameWalk, stream_content

STORE = "store"


@pytest.fixture(params=BINDING_NAMES)
def binding(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(compression, "_binding", _binding(request.param))
    yield request.param


def _encodings(data: bytes) -> dict[str, bytes]:
    return {
        "zstd": zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data),
        "zstd-unsized": zstandard.ZstdCompressor(level=3, write_content_size=False, write_checksum=True)
        .compress(data),
        "xz": lzma.compress(data),
        "gzip": gzip.compress(data),
    }


def _variants(raw: bytes) -> dict[str, bytes]:
    flipped = bytearray(raw)
    flipped[len(flipped) // 2] ^= 0x55
    return {"valid": raw, "truncated": raw[:-1], "half": raw[:len(raw) // 2], "trailing": raw + b"x",
            "twice": raw + raw, "corrupt": bytes(flipped), "head": raw[:5]}


def _reason(exc: ChunkInvalid) -> str:
    """The reason, with the words zstandard puts before libzstd's own message (they differ between its
    one-shot and streaming decoders) left out."""
    return re.sub(r"^zstd: (zstd decompress error|decompression error|[a-z ]*error): ", "zstd: ", exc.reason)


def _whole(chunk_id: bytes, raw: bytes, compressed: bool) -> str:
    chunk = Chunk(chunk_id, compressed=raw) if compressed else Chunk(chunk_id, data=raw)
    try:
        chunk.verify(SHA, STORE)
    except ChunkInvalid as exc:
        return _reason(exc)
    return "ok"


def _streamed(chunk_id: bytes, pieces: list[bytes], compressed: bool) -> str:
    try:
        verify_stored(chunk_id, iter(pieces), compressed, SHA, STORE)
    except ChunkInvalid as exc:
        return _reason(exc)
    return "ok"


def _cut(raw: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(raw):
        step = rng.choice([1, 2, 3, 7, 100, 4096, 70_000, 1 << 20])
        pieces.append(raw[pos:pos + step])
        pos += step
        if rng.random() < 0.1:
            pieces.append(b"")
    return pieces


_DATA = os.urandom(150_000) + bytes(150_000)
_CASES = [(f"{fmt}-{fault}", raw) for fmt, enc in _encodings(_DATA).items() for fault, raw in _variants(enc).items()]
_CASES += [("bomb", zstd_bomb(200 << 20)), ("bomb-big-window", zstd_bomb(200 << 20, window_log=26)),
           ("xz-bomb", lzma.compress(bytes(130 << 20))), ("gzip-bomb", gzip.compress(bytes(130 << 20))),
           ("empty", b""), ("magic-only", b"\x28\xb5\x2f\xfd"), ("unknown", b"junk" * 10)]


@pytest.mark.parametrize("name, raw", _CASES, ids=[name for name, _ in _CASES])
def test_streamed_and_whole_verification_agree(binding: str, name: str, raw: bytes) -> None:
    chunk_id = SHA.sum(_DATA) if name.endswith("-valid") else SHA.sum(raw)
    whole = _whole(chunk_id, raw, True)
    assert (whole == "ok") == name.endswith("-valid")
    assert _streamed(chunk_id, [raw], True) == whole
    for seed in range(3):
        assert _streamed(chunk_id, _cut(raw, seed), True) == whole


@pytest.mark.parametrize("size", [0, 1, 1000, 1 << 20])
def test_uncompressed_chunk_files_are_hashed_piece_by_piece(size: int) -> None:
    data = os.urandom(size)
    for chunk_id in (SHA.sum(data), SHA.sum(b"other")):
        assert _streamed(chunk_id, _cut(data, size), False) == _whole(chunk_id, data, False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), fmt=st.sampled_from(["zstd", "zstd-unsized", "xz", "gzip"]),
       cut=st.integers(0, 1 << 16), damage=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)),
                                                    max_size=2),
       keep=st.integers(0, 1 << 16), extra=st.binary(max_size=3))
def test_damaged_chunk_files_get_the_same_verdict_streamed(binding: str, data: bytes, fmt: str, cut: int,
                                                          damage: list[tuple[int, int]], keep: int,
                                                          extra: bytes) -> None:
    raw = bytearray(_encodings(data)[fmt])
    for pos, mask in damage:
        raw[pos % len(raw)] ^= mask
    raw = raw[:len(raw) - keep % 4] + extra
    chunk_id = SHA.sum(data)
    whole = _whole(chunk_id, bytes(raw), True)
    assert _streamed(chunk_id, [bytes(raw)], True) == whole
    assert _streamed(chunk_id, _cut(bytes(raw), cut), True) == whole


def test_frame_walk_finds_the_end_of_a_frame_fed_a_byte_at_a_time() -> None:
    raw = zstandard.ZstdCompressor(write_checksum=True).compress(_DATA)
    walk = ZstdFrameWalk()
    for i in range(len(raw)):
        walk.feed(raw[i:i + 1])
    frame = walk.finish()
    assert frame.content_size == len(_DATA)
    walk.feed(b"xyz")
    with pytest.raises(compression.CompressionError, match="3 bytes of trailing data"):
        walk.finish()


class _SourceBound(Exception):
    """What a store's reader raises past its bound on a chunk file's size."""


def test_frame_that_goes_on_past_the_limit_is_refused_by_the_sources_bound_or_as_truncated() -> None:
    block = (128 << 10 << 3).to_bytes(3, "little") + bytes(128 << 10)

    def frame(blocks: int, bounded: bool) -> Iterator[bytes]:
        yield b"\x28\xb5\x2f\xfd\x00\x58"
        for _ in range(blocks):
            yield block
        if bounded:
            raise _SourceBound()

    pieces: list[int] = []
    with pytest.raises(_SourceBound):  # the store's own limit on what it reads ends an endless frame
        stream_content(frame(160, True), 10 << 20, lambda piece: pieces.append(len(piece)))
    assert sum(pieces) <= 10 << 20 and max(pieces) <= compression.PIECE_SIZE
    with pytest.raises(compression.CompressionError, match="truncated zstd frame"):
        stream_content(frame(160, False), 10 << 20, lambda piece: None)


def test_a_window_larger_than_zstd_allows_gets_one_verdict_whole_and_streamed() -> None:
    """Found by the property test on Python 3.13: libzstd refused the header in one path, the window in the other."""
    data = bytes(10) + b"\x01\x00"
    raw = bytearray(_encodings(data)["zstd-unsized"])
    raw[2855 % len(raw)] ^= 176
    raw = raw[:len(raw) - 3] + b"\x00\x00\x00"
    chunk_id = SHA.sum(data)
    whole = _whole(chunk_id, bytes(raw), True)
    assert "window larger than zstd allows" in whole
    assert _streamed(chunk_id, [bytes(raw)], True) == whole


@pytest.mark.parametrize("declared, data", [(1, b""), (2, b""), (32, b"hello world" * 3), (199, bytes(200))])
def test_content_differing_from_the_declared_size_gets_one_verdict_however_it_arrives(binding: str, declared: int,
                                                                                    data: bytes) -> None:
    """libzstd fed block by block says "buffer too small", or nothing when there is less; one pass says corrupt."""
    raw = bytearray(zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data))
    assert raw[4] & 0xE0 == 0x20  # single segment, one byte of content size
    raw[5] = declared
    chunk_id = SHA.sum(data)
    whole = _whole(chunk_id, bytes(raw), True)
    assert "corruption" in whole
    for seed in range(4):
        assert _streamed(chunk_id, _cut(bytes(raw), seed), True) == whole


@pytest.mark.parametrize("declared, repeat", [(1, 32772), (4, 5), (200_000, 131_073)])
def test_an_rle_block_regenerating_more_than_the_block_maximum_is_refused_by_both_paths(binding: str, declared: int,
                                                                                        repeat: int) -> None:
    """Single-segment frames: the block maximum is the declared size (at most 128 KiB); libzstd checks an RLE
    block against it only when fed in steps, so the frame walk refuses it before either path decodes."""
    fcs = declared.to_bytes(4, "little") if declared > 255 else bytes([declared])
    descriptor = 0x20 | (0x80 if declared > 255 else 0)  # single segment; a 4- or 1-byte content size
    head = 1 | 1 << 1 | repeat << 3  # the last block, RLE
    raw = b"\x28\xb5\x2f\xfd" + bytes([descriptor]) + fcs + head.to_bytes(3, "little") + b"\x00"
    chunk_id = SHA.sum(bytes(declared))
    whole = _whole(chunk_id, raw, True)
    assert "block larger than the frame allows" in whole
    for seed in range(4):
        assert _streamed(chunk_id, _cut(raw, seed), True) == whole
