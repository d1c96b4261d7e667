"""The chunker must cut exactly where casync cuts, on every code path.

Boundaries decide chunk IDs, so one byte of disagreement with casync breaks
deduplication against existing stores.  Every test runs against the pure
Python scanner and, when it is built, the C accelerator; an independent
transcription of docs/formats.md 6.4 serves as the oracle for random inputs.
"""

import hashlib
import importlib.util
import json
import mmap
import random
import shutil
import struct
import subprocess
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desync._accel import chunker_module
from desync.chunker import (
    ACCELERATED,
    Chunker,
    discriminator,
    parse_chunk_sizes,
    window_hash,
)
from desync.errors import InvalidArgument

FIXTURES = Path(__file__).parent / "fixtures"
CASYNC_FIXTURES = FIXTURES / "casync"
DESYNC_FIXTURES = FIXTURES / "desync"

IMPLS = ["python", "c"] if ACCELERATED else ["python"]

DEFAULTS = (16384, 65536, 262144)
SHA512_256_FLAG = 0x2000000000000000
INDEX_TYPE = 0x96824D9C7B129FF9
TABLE_TYPE = 0xE75B9E112F17417D
TAIL_MARKER = 0x4B4F050E5549ECD1
NULL_CHUNK_ID = "1c8109946feed9f9e9fe4b5144d90f05a50fb3275e848cb72f4b9546d8c533f2"

# Spec 6.6: chunk lengths of S[0:1 MiB] with the default sizes.
S_1M_LENGTHS = [80921, 57299, 49192, 49960, 59423, 52114, 88424, 46418, 100282, 92236, 99913,
                16782, 72780, 41585, 38454, 102793]
# Spec 6.6: Go desync's testdata/chunker.input with the default sizes.
CHUNKER_INPUT_LENGTHS = [81590, 46796, 36543, 83172, 76749, 79550, 41484, 20326, 31652, 19995,
                         103873, 38087, 38377, 23449, 47321, 86692, 28268, 65465, 33255, 65932]


def make_chunker(impl: str, min_size: int, avg_size: int, max_size: int) -> Chunker:
    chunker = Chunker(min_size, avg_size, max_size, pure=impl == "python")
    assert chunker.accelerated == (impl == "c")
    return chunker


def lengths(ends: list[int], start: int = 0) -> list[int]:
    return [b - a for a, b in zip([start, *ends], ends)]


def chunk_ids(data: bytes, ends: list[int], algorithm: str = "sha512_256") -> list[bytes]:
    return [hashlib.new(algorithm, data[a:b]).digest() for a, b in zip([0, *ends], ends)]


def stream_s(size: int) -> bytes:
    """Spec 6.6 stream S: SHA-256 of i as u64 LE, for i = 0, 1, ..."""
    blocks = (size + 31) // 32
    return b"".join(hashlib.sha256(i.to_bytes(8, "little")).digest() for i in range(blocks))[:size]


def read_caibx(path: Path) -> tuple[int, tuple[int, int, int], list[int], list[bytes]]:
    """(feature flags, (min, avg, max), chunk end offsets, chunk IDs) of a blob index."""
    data = path.read_bytes()
    size, kind, flags, min_size, avg_size, max_size = struct.unpack_from("<6Q", data, 0)
    assert (size, kind) == (48, INDEX_TYPE)
    assert struct.unpack_from("<2Q", data, 48) == (0xFFFFFFFFFFFFFFFF, TABLE_TYPE)
    count, rest = divmod(len(data) - 104, 40)
    assert rest == 0
    ends: list[int] = []
    ids: list[bytes] = []
    for i in range(count):
        end, chunk_id = struct.unpack_from("<Q32s", data, 64 + 40 * i)
        ends.append(end)
        ids.append(chunk_id)
    tail = struct.unpack_from("<5Q", data, 64 + 40 * count)
    assert tail == (0, 0, 48, 16 + 40 * count + 40, TAIL_MARKER)
    return flags, (min_size, avg_size, max_size), ends, ids


def _load_gen_inputs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_inputs", CASYNC_FIXTURES / "gen_inputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN_INPUTS = _load_gen_inputs()
MANIFEST: dict[str, Any] = json.loads((CASYNC_FIXTURES / "manifest.json").read_text())
BLOB_FIXTURES = [
    f for f in MANIFEST["fixtures"] if f["kind"] == "caibx" and f["file"].startswith("blobs/")
]


@lru_cache(maxsize=None)
def blob_input(name: str) -> bytes:
    data: bytes = GEN_INPUTS.generate(name)
    assert hashlib.new("sha512_256", data).hexdigest() == MANIFEST["inputs"][name]["sha512_256"]
    return data



# --- an independent oracle --------------------------------------------------

TABLE_SHA256 = "5b52080d38287da9d2e278466e3e0db7ec98e5e8b226f50612a56fa012b1f660"


def _checked_table() -> list[int]:
    from desync.chunker import _TABLE

    packed = b"".join(struct.pack("<I", v) for v in _TABLE)
    assert hashlib.sha256(packed).hexdigest() == TABLE_SHA256
    return list(_TABLE)


TABLE = _checked_table()


def rol32(x: int, r: int) -> int:
    r %= 32
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF


def oracle_hash(w: bytes) -> int:
    h = 0
    for i in range(48):
        h ^= rol32(TABLE[w[i]], 47 - i)
    return h


def reference_boundaries(data: bytes, min_size: int, avg_size: int, max_size: int) -> list[int]:
    """docs/formats.md 6.4 transcribed literally, without any of the shortcuts."""
    d = discriminator(min_size, avg_size, max_size)
    out: list[int] = []
    s = 0
    end = len(data)
    while s < end:
        if min_size == avg_size == max_size:
            s += min(avg_size, end - s)
            out.append(s)
            continue
        length = min_size if min_size > 48 else 48
        if end - s < length:
            out.append(end)
            break
        h = oracle_hash(data[s + length - 48 : s + length])
        while not (length >= max_size or h % d == d - 1 or s + length == end):
            h = rol32(h, 1) ^ rol32(TABLE[data[s + length - 48]], 48) ^ TABLE[data[s + length]]
            length += 1
        s += length
        out.append(s)
    return out


def build_data(segments: list[tuple[str, int, int]]) -> bytes:
    """Random, zero and short-period runs: the three shapes chunkers trip on."""
    out = bytearray()
    for kind, size, seed in segments:
        rng = random.Random(seed)
        if kind == "rand":
            out += rng.randbytes(size)
        elif kind == "zero":
            out += bytes(size)
        else:
            block = rng.randbytes(rng.randint(1, 80))
            out += (block * (size // len(block) + 1))[:size]
    return bytes(out)


segments_st = st.lists(
    st.tuples(
        st.sampled_from(["rand", "zero", "repeat"]),
        st.integers(0, 4000),
        st.integers(0, 2**32),
    ),
    max_size=4,
)


@st.composite
def sizes_st(draw: st.DrawFn) -> tuple[int, int, int]:
    if draw(st.integers(0, 9)) == 0:
        size = draw(st.integers(1, 700))
        return size, size, size
    min_size = draw(st.integers(1, 300))
    avg_size = draw(st.integers(min_size, min_size + 400))
    max_size = draw(st.integers(max(avg_size, 48), max(avg_size, 48) * 4))
    return min_size, avg_size, max_size


HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- hash, table, discriminator ----------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_window_hash_vectors(impl: str) -> None:
    fn: Callable[[bytes], int] = window_hash
    if impl == "c":
        assert chunker_module is not None
        fn = chunker_module.window_hash
    assert fn(bytes(range(48))) == 0x6B67DEC6
    assert fn(b"a" * 48) == 0x0D7C0D7C
    assert fn(bytes(48)) == 0x9E489E48
    assert fn(bytes(range(1, 49))) == 0xA3FC25F1
    for bad in (b"", bytes(47), bytes(49)):
        with pytest.raises(ValueError):
            fn(bad)


def test_rolling_vector() -> None:
    h = oracle_hash(bytes(range(48)))
    assert h == 0x6B67DEC6
    rolled = rol32(h, 1) ^ rol32(TABLE[0], 48) ^ TABLE[48]
    assert rolled == 0xA3FC25F1 == oracle_hash(bytes(range(1, 49)))


@pytest.mark.parametrize(
    "avg, expected",
    [(100, 75), (1024, 768), (8192, 6153), (16384, 12318), (32768, 24680), (65536, 49535),
     (131072, 99777), (262144, 202440), (1048576, 886711), (4194304, 5721670),
     (8388608, 62724856)],
)
def test_discriminator_unclamped(avg: int, expected: int) -> None:
    assert discriminator(1, avg, 2**27) == expected


def test_discriminator_clamps_like_casync() -> None:
    assert discriminator(*DEFAULTS) == 49535
    assert discriminator(61440, 65536, 262144) == 61440
    assert discriminator(2097152, 8388608, 33554432) == 33554432
    # Beyond avg ~9.3e6 the quotient is negative; casync's size_t cast wraps
    # it to a huge value, so it clamps to max (checked: one 5000-byte chunk
    # for --chunk-size=1:100000000:134217728).
    assert discriminator(1, 100_000_000, 2**27) == 2**27
    assert discriminator(1000, 9_324_570, 2**27) == 2**27


# --- spec test vectors -------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_stream_s_vector(impl: str) -> None:
    data = stream_s(1 << 20)
    ends = make_chunker(impl, *DEFAULTS).boundaries(data, 0, len(data), True)
    assert lengths(ends) == S_1M_LENGTHS
    ids = chunk_ids(data, ends)
    assert ids[0].hex() == "0fac270dc01e8432b80e21552476de6483653a3b261f710457abdd5c8f22e860"
    assert ids[-1].hex() == "1a8885417125d1230d2f171bff771a5f50a48f3f5ede5dbc7f0ef47419bb7c7d"


@pytest.mark.parametrize("impl", IMPLS)
def test_exact_min_vector(impl: str) -> None:
    window = hashlib.sha512((45428).to_bytes(8, "little")).digest()[:48]
    assert window.hex() == (
        "0114598e8e394ae7b3d49cb76696c231be972f1f3ea7067278872584"
        "c3253694443178873d93cd3b9e813415943b6f86"
    )
    s = stream_s(316384)
    data = s[:16336] + window + s[16384:316384]
    ends = make_chunker(impl, *DEFAULTS).boundaries(data, 0, len(data), True)
    assert lengths(ends)[:4] == [16384, 64537, 57299, 49192]
    assert chunk_ids(data, ends)[0].hex() == (
        "94e8dd9056446020a27f08ab1068fcc39e39bd2da698d1ce9daa642ddc512743"
    )


@pytest.mark.parametrize("impl", IMPLS)
def test_zeros_are_max_size_null_chunks(impl: str) -> None:
    data = bytes(1 << 20)
    chunker = make_chunker(impl, *DEFAULTS)
    ends = chunker.boundaries(data, 0, len(data), True)
    assert ends == [262144, 524288, 786432, 1048576]
    assert {i.hex() for i in chunk_ids(data, ends)} == {NULL_CHUNK_ID}
    assert chunker.parallel_boundaries(data, 0, len(data), True, 3) == ends


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "input_name, index_name", [("chunker.input", "chunker.index"), ("blob1", "blob1.caibx")]
)
def test_go_desync_indexes(impl: str, input_name: str, index_name: str) -> None:
    data = (DESYNC_FIXTURES / input_name).read_bytes()
    flags, sizes, expected_ends, expected_ids = read_caibx(DESYNC_FIXTURES / index_name)
    assert flags & SHA512_256_FLAG
    ends = make_chunker(impl, *sizes).boundaries(data, 0, len(data), True)
    if input_name == "chunker.input":
        assert lengths(ends) == CHUNKER_INPUT_LENGTHS
    assert ends == expected_ends
    assert chunk_ids(data, ends) == expected_ids


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fixture", BLOB_FIXTURES, ids=[f["file"] for f in BLOB_FIXTURES])
def test_casync_blob_fixture(impl: str, fixture: dict[str, Any]) -> None:
    data = blob_input(fixture["input"])
    flags, sizes, expected_ends, expected_ids = read_caibx(CASYNC_FIXTURES / fixture["file"])
    algorithm = "sha512_256" if flags & SHA512_256_FLAG else "sha256"
    chunker = make_chunker(impl, *sizes)
    ends = chunker.boundaries(data, 0, len(data), True)
    assert ends == expected_ends
    assert chunk_ids(data, ends, algorithm) == expected_ids
    if impl == "c":
        for workers in (2, 3, 7):
            assert chunker.parallel_boundaries(data, 0, len(data), True, workers) == ends


# --- modes and edge cases ----------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_fixed_size_mode(impl: str) -> None:
    data = random.Random(1).randbytes(10000)
    chunker = make_chunker(impl, 4096, 4096, 4096)
    assert chunker.boundaries(data, 0, 10000, True) == [4096, 8192, 10000]
    assert chunker.boundaries(data, 0, 10000, False) == [4096, 8192]
    assert chunker.boundaries(data, 100, 8292, False) == [4196, 8292]
    assert chunker.parallel_boundaries(data, 0, 10000, True, 4) == [4096, 8192, 10000]
    # Below the window size is fine: nothing is hashed.
    assert make_chunker(impl, 1, 1, 1).boundaries(data, 0, 5, True) == [1, 2, 3, 4, 5]
    assert make_chunker(impl, 10, 10, 10).boundaries(data, 0, 25, True) == [10, 20, 25]


def test_c_fixed_size_mode_matches() -> None:
    if chunker_module is None:
        pytest.skip("C accelerator not built")
    data = bytes(1000)
    assert chunker_module.boundaries(data, 3, 1000, True, 100, 100, 100) == [
        *range(103, 1000, 100), 1000
    ]
    assert chunker_module.boundaries(data, 3, 1000, False, 100, 100, 100) == [
        *range(103, 1000, 100)
    ]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("sizes", [(1, 100, 400), (25, 100, 400), (48, 64, 96), (49, 64, 96)])
def test_small_min_primes_from_chunk_start(impl: str, sizes: tuple[int, int, int]) -> None:
    data = build_data([("rand", 20000, 5), ("zero", 1000, 0), ("repeat", 3000, 9)])
    ends = make_chunker(impl, *sizes).boundaries(data, 0, len(data), True)
    assert ends == reference_boundaries(data, *sizes)
    assert min(lengths(ends)[:-1]) >= max(sizes[0], 48)


@pytest.mark.parametrize("impl", IMPLS)
def test_short_inputs(impl: str) -> None:
    chunker = make_chunker(impl, *DEFAULTS)
    data = random.Random(2).randbytes(300000)
    for size in (1, 47, 48, 49, 16383, 16384, 16385):
        assert chunker.boundaries(data, 0, size, True) == reference_boundaries(
            data[:size], *DEFAULTS
        )
    assert chunker.boundaries(data, 0, 16383, False) == []
    assert chunker.boundaries(data, 10, 10, True) == []
    assert chunker.boundaries(b"", 0, 0, True) == []


@pytest.mark.parametrize("impl", IMPLS)
def test_accepts_any_buffer(impl: str, tmp_path: Path) -> None:
    data = random.Random(3).randbytes(300000)
    chunker = make_chunker(impl, 1024, 4096, 16384)
    expected = chunker.boundaries(data, 5, len(data) - 5, True)
    assert chunker.boundaries(bytearray(data), 5, len(data) - 5, True) == expected
    assert chunker.boundaries(memoryview(data), 5, len(data) - 5, True) == expected
    assert chunker.boundaries(memoryview(data).cast("I"), 5, len(data) - 5, True) == expected
    path = tmp_path / "blob"
    path.write_bytes(data)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert chunker.boundaries(mapped, 5, len(data) - 5, True) == expected
        assert chunker.parallel_boundaries(mapped, 5, len(data) - 5, True, 2) == expected


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_ranges(impl: str) -> None:
    chunker = make_chunker(impl, *DEFAULTS)
    for start, end in ((-1, 10), (10, 5), (0, 101)):
        with pytest.raises(ValueError):
            chunker.boundaries(bytes(100), start, end, True)
    with pytest.raises(ValueError):
        chunker.parallel_boundaries(bytes(100), 0, 100, True, 0)


@pytest.mark.parametrize(
    "sizes",
    [(0, 1, 1), (2, 1, 4), (1, 3, 2), (1, 1, 2**27 + 1), (2**27 + 1,) * 3, (1, 10, 40),
     (40, 40, 47)],
)
def test_chunker_rejects_bad_sizes(sizes: tuple[int, int, int]) -> None:
    with pytest.raises(InvalidArgument):
        Chunker(*sizes)


def test_chunker_attributes() -> None:
    chunker = Chunker(*DEFAULTS)
    assert (chunker.min_size, chunker.avg_size, chunker.max_size) == DEFAULTS
    assert chunker.discriminator == 49535
    assert chunker.accelerated == ACCELERATED
    assert Chunker(40, 40, 40).max_size == 40
    assert Chunker(2**27, 2**27, 2**27).discriminator == 2**27
    assert repr(chunker) == "Chunker(16384, 65536, 262144)"


def test_parse_chunk_sizes() -> None:
    assert parse_chunk_sizes("16:64:256") == DEFAULTS
    assert parse_chunk_sizes("1:1:1") == (1024, 1024, 1024)
    for bad in ("", "64", "16:64", "16:64:256:1024", "a:b:c", "16:64:x", "0:64:256",
                "16:0:256", "64:16:256", "16:256:64", "-1:2:3", " 16:64:256", "1.5:2:3",
                "16:64:262144"):
        with pytest.raises(InvalidArgument):
            parse_chunk_sizes(bad)


# --- equivalence of all paths on random shapes -------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@HYPOTHESIS
@given(segments=segments_st, sizes=sizes_st())
def test_matches_reference(
    impl: str, segments: list[tuple[str, int, int]], sizes: tuple[int, int, int]
) -> None:
    data = build_data(segments)
    chunker = make_chunker(impl, *sizes)
    expected = reference_boundaries(data, *sizes)
    assert chunker.boundaries(data, 0, len(data), True) == expected
    partial = chunker.boundaries(data, 0, len(data), False)
    assert partial == expected[: len(partial)]
    assert len(expected) - len(partial) <= 1
    if len(partial) < len(expected):
        assert len(data) - (partial[-1] if partial else 0) < sizes[2]


@pytest.mark.parametrize("impl", IMPLS)
@HYPOTHESIS
@given(
    segments=segments_st,
    sizes=sizes_st(),
    workers=st.integers(1, 6),
    final=st.booleans(),
    trim=st.tuples(st.integers(0, 100), st.integers(0, 100)),
)
def test_parallel_matches_sequential(
    impl: str,
    segments: list[tuple[str, int, int]],
    sizes: tuple[int, int, int],
    workers: int,
    final: bool,
    trim: tuple[int, int],
) -> None:
    data = build_data(segments)
    start = min(trim[0], len(data))
    end = max(start, len(data) - trim[1])
    chunker = make_chunker(impl, *sizes)
    expected = chunker.boundaries(data, start, end, final)
    assert chunker.parallel_boundaries(data, start, end, final, workers) == expected


@pytest.mark.parametrize("impl", IMPLS)
@HYPOTHESIS
@given(
    segments=segments_st,
    sizes=sizes_st(),
    pieces=st.lists(st.integers(1, 3000), min_size=1, max_size=30),
)
def test_streaming_matches_one_shot(
    impl: str,
    segments: list[tuple[str, int, int]],
    sizes: tuple[int, int, int],
    pieces: list[int],
) -> None:
    data = build_data(segments)
    chunker = make_chunker(impl, *sizes)
    expected = chunker.boundaries(data, 0, len(data), True)
    got: list[int] = []
    pending = b""  # the bytes after the last boundary, as a streaming caller keeps them
    base = 0  # offset of pending[0] in data
    pos = 0
    i = 0
    while pos < len(data):
        step = pieces[i % len(pieces)]
        i += 1
        pending += data[pos : pos + step]
        pos += step
        ends = chunker.boundaries(pending, 0, len(pending), False)
        got.extend(base + e for e in ends)
        if ends:
            pending = pending[ends[-1] :]
            base += ends[-1]
    got.extend(base + e for e in chunker.boundaries(pending, 0, len(pending), True))
    assert got == expected


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("workers", [2, 3, 4, 8])
@pytest.mark.parametrize(
    "sizes",
    [
        (256, 1024, 4096),
        # The zero window passes this discriminator (3943): zero runs cut at min.
        (64, 5251, 21004),
    ],
)
def test_parallel_without_sync_points(
    impl: str, workers: int, sizes: tuple[int, int, int]
) -> None:
    """Boundary-free runs off the workers' grid leave whole sections unsynchronised."""
    chunker = make_chunker(impl, *sizes)
    fillers = (bytes(150000), b"\7" * 150000, bytes(75000) + b"\1" + bytes(74999))
    for filler in fillers:
        data = build_data([("rand", 1001, 1)]) + filler + build_data([("rand", 7000, 2)])
        expected = reference_boundaries(data, *sizes)
        assert chunker.boundaries(data, 0, len(data), True) == expected
        assert chunker.parallel_boundaries(data, 0, len(data), True, workers) == expected
        assert chunker.parallel_boundaries(data, 0, len(data), False, workers) == expected[:-1]
        assert chunker.parallel_boundaries(filler, 0, 99999, True, workers) == (
            chunker.boundaries(filler, 0, 99999, True)
        )


# --- live cross-check against casync -----------------------------------------

LIVE_CASES = [
    (1, 200_000, "25:100:400"),
    (2, 100_000, "48:64:96"),
    (3, 30_000, "40:100:100"),
    (4, 1_000_000, "61440:65536:262144"),
    (5, 10_000, "1000:1000:1000"),
    (6, 300, "1:1:1"),
    (7, 5_000, "1:100000000:134217728"),
] + [
    (seed, random.Random(seed).randint(0, 400_000), "random")
    for seed in range(100, 110)
]


def _live_sizes(seed: int, spec: str) -> tuple[int, int, int]:
    if spec != "random":
        a, b, c = (int(x) for x in spec.split(":"))
        return a, b, c
    rng = random.Random(seed)
    min_size = rng.choice([rng.randint(1, 64), rng.randint(64, 8192)])
    avg_size = rng.randint(min_size, min_size * 8)
    max_size = rng.randint(max(avg_size, 48), max(avg_size, 48) * 6)
    return min_size, avg_size, max_size


@pytest.mark.casync
@pytest.mark.parametrize("seed, size, spec", LIVE_CASES)
def test_against_casync(tmp_path: Path, seed: int, size: int, spec: str) -> None:
    casync = shutil.which("casync")
    if casync is None:
        pytest.skip("casync is not installed")
    sizes = _live_sizes(seed, spec)
    rng = random.Random(seed)
    data = build_data([("rand", size // 2, seed), ("zero", rng.randint(0, 3000), 0),
                       ("repeat", rng.randint(0, 3000), seed), ("rand", size // 2, seed + 1)])
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    index = tmp_path / "blob.caibx"
    subprocess.run(
        [casync, "make", f"--store={tmp_path / 'store'}", "--chunk-size=" + ":".join(map(str, sizes)),
         str(index), str(blob)],
        check=True,
        capture_output=True,
    )
    _, header_sizes, expected_ends, expected_ids = read_caibx(index)
    assert header_sizes == sizes
    for impl in IMPLS:
        chunker = make_chunker(impl, *sizes)
        ends = chunker.boundaries(data, 0, len(data), True)
        assert ends == expected_ends, impl
        assert chunk_ids(data, ends) == expected_ids
        assert chunker.parallel_boundaries(data, 0, len(data), True, 3) == expected_ends
