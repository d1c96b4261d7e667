"""make's pipeline gives the same index whatever the worker count (parallel chunking, batching, backlog)."""

from __future__ import annotations

import io
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from desync import digest as digest_mod
from desync.chunker import ACCELERATED, Chunker
from desync.ops.make import PARALLEL_CHUNKING_WORKERS, chunk_file, chunk_stream
from desync.stores import LocalStore, StoreOptions


def _input(seed: int, size: int, zero_runs: int) -> bytes:
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(size))
    for _ in range(zero_runs):  # runs without boundaries: every section must land on the max-size grid
        at = rng.randrange(size)
        data[at:at + rng.randrange(1, 200_000)] = bytes(min(size - at, 200_000))
    return bytes(data[:size])


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 1_500_000), zero_runs=st.integers(0, 3),
       workers=st.sampled_from([PARALLEL_CHUNKING_WORKERS, 7, 16]))
def test_parallel_chunking_matches_one_worker(seed: int, size: int, zero_runs: int, workers: int) -> None:
    data = _input(seed, size, zero_runs)
    chunker = Chunker(1024, 4096, 16384)
    digest = digest_mod.DEFAULT
    one = chunk_file(io.BytesIO(data), chunker, digest, workers=1)
    many = chunk_file(io.BytesIO(data), chunker, digest, workers=workers)
    assert many.to_bytes() == one.to_bytes()
    assert sum(c.size for c in many.chunks) == len(data)


def test_many_workers_store_every_chunk_once_and_intact(tmp_path: Path) -> None:
    data = _input(5, 1_200_000, 2)
    chunker = Chunker(1024, 4096, 16384)
    digest = digest_mod.DEFAULT
    store = LocalStore(str(tmp_path / "store"), StoreOptions(), create=True)
    pieces = [data[i:i + 70_001] for i in range(0, len(data), 70_001)]  # a stream in odd pieces, as tar -i feeds it
    index = chunk_stream(pieces, chunker, digest, store, workers=16)
    assert b"".join(store.get_chunk(c.id, c.size).data(c.size) for c in index.chunks) == data
    assert len(list(store.iter_chunks())) == len({c.id for c in index.chunks})


def test_repeated_makes_into_a_store_never_lose_a_batch(tmp_path: Path) -> None:
    """Segments freed on worker threads while others queue batches (a compiled-closure hazard, see make._Batch).

    The compiled build failed about one make in three here before batches were objects of their own.
    """
    size = (48 << 20) if ACCELERATED else (1 << 20)
    data = random.Random(9).randbytes(size)
    chunker = Chunker(16 << 10, 64 << 10, 256 << 10)
    digest = digest_mod.DEFAULT
    expected = chunk_file(io.BytesIO(data), chunker, digest, workers=1).to_bytes()
    for attempt in range(6 if ACCELERATED else 2):
        store = LocalStore(str(tmp_path / f"store{attempt}"), StoreOptions(), create=True)
        assert chunk_file(io.BytesIO(data), chunker, digest, store, workers=2).to_bytes() == expected
