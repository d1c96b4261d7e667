"""Micro-benchmarks of the hot library functions (pytest-benchmark); run by ``scripts/bench --only micro``.

Not part of the normal suite: tests/conftest.py leaves this folder out of
a run over ``tests`` unless ``--bench`` is given.  Each benchmark also checks its result, so a
fast wrong answer cannot pass for a speed-up.
"""

import hashlib
import random

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from desync import compression
from desync import index as index_mod
from desync.chunk import Chunk
from desync.chunker import Chunker
from desync.constants import CHUNK_SIZE_AVG_DEFAULT, CHUNK_SIZE_MAX_DEFAULT, CHUNK_SIZE_MIN_DEFAULT
from desync.digest import SHA512_256_DIGEST
from desync.featureflags import BLOB_INDEX_FLAGS
from desync.index import Index, IndexChunk

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def random_data() -> bytes:
    return random.Random(12).randbytes(8 * MIB)


def test_chunker_8mib(benchmark: BenchmarkFixture, random_data: bytes) -> None:
    chunker = Chunker(CHUNK_SIZE_MIN_DEFAULT, CHUNK_SIZE_AVG_DEFAULT, CHUNK_SIZE_MAX_DEFAULT)
    ends = benchmark(chunker.boundaries, random_data, 0, len(random_data), True)
    assert ends[-1] == len(random_data) and len(ends) > 8 * MIB // CHUNK_SIZE_MAX_DEFAULT


def test_index_parse_100k_chunks(benchmark: BenchmarkFixture) -> None:
    rng = random.Random(5)
    chunks, start = [], 0
    for _ in range(100_000):
        size = rng.randrange(CHUNK_SIZE_MIN_DEFAULT, CHUNK_SIZE_MAX_DEFAULT)
        chunks.append(IndexChunk(start, size, rng.randbytes(32)))
        start += size
    data = Index(BLOB_INDEX_FLAGS, CHUNK_SIZE_MIN_DEFAULT, CHUNK_SIZE_AVG_DEFAULT, CHUNK_SIZE_MAX_DEFAULT,
                 chunks).to_bytes()
    parsed = benchmark(index_mod.parse, data)
    assert parsed.chunks == chunks


def test_chunk_decode_and_verify_64_chunks(benchmark: BenchmarkFixture, random_data: bytes) -> None:
    """What every store read does: zstd frame -> bytes -> SHA-512/256 compared with the ID."""
    pieces = [random_data[i:i + CHUNK_SIZE_AVG_DEFAULT] for i in range(0, 64 * CHUNK_SIZE_AVG_DEFAULT,
                                                                        CHUNK_SIZE_AVG_DEFAULT)]
    stored = [(hashlib.new("sha512_256", p).digest(), compression.compress(p)) for p in pieces]

    def decode_all() -> int:
        total = 0
        for chunk_id, raw in stored:
            chunk = Chunk(chunk_id, compressed=raw)
            chunk.verify(SHA512_256_DIGEST, "bench", CHUNK_SIZE_AVG_DEFAULT)
            total += len(chunk.data())
        return total

    assert benchmark(decode_all) == 64 * CHUNK_SIZE_AVG_DEFAULT
