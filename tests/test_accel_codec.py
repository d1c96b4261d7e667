"""The batched chunk codec (hash, decode+verify, store per GIL release) against the per-chunk Python paths."""

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from desync import _accel, compression, tempnames
from desync.chunk import Chunk
from desync.constants import CHUNK_SIZE_LIMIT, ZSTD_LEVEL
from desync.digest import SHA256_DIGEST, SHA512_256_DIGEST, Digest
from desync.errors import ChunkInvalid, StoreError
from desync.stores import LocalStore, StoreOptions

codec = _accel.codec_module()
needs_codec = pytest.mark.skipif(codec is None, reason="the C codec is not built (pure-Python run)")
DIGESTS = [SHA512_256_DIGEST, SHA256_DIGEST]


@pytest.fixture
def no_codec(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The per-chunk Python paths, as a build without the codec runs them."""
    monkeypatch.setattr(_accel, "_codec_loaded", [None])
    yield


def _python_sums(digest: Digest, data: bytes, start: int, ends: list[int]) -> list[bytes]:
    out, pos = [], start
    for end in ends:
        out.append(hashlib.new("sha512_256" if digest is SHA512_256_DIGEST else "sha256", data[pos:end]).digest())
        pos = end
    return out


@needs_codec
@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=12), start=st.integers(0, 100),
       which=st.sampled_from(DIGESTS))
def test_batched_digests_equal_hashlib(data: bytes, cuts: list[int], start: int, which: Digest) -> None:
    start = min(start, len(data))
    ends = sorted(min(max(c, start), len(data)) for c in cuts)
    assert which.sum_ranges(bytearray(data), start, ends) == _python_sums(which, data, start, ends)


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_digest_ranges_without_the_codec_equal_hashlib(data: bytes, cuts: list[int]) -> None:
    ends = sorted(min(c, len(data)) for c in cuts)
    saved = list(_accel._codec_loaded)
    _accel._codec_loaded[:] = [None]
    try:
        assert SHA512_256_DIGEST.sum_ranges(data, 0, ends) == _python_sums(SHA512_256_DIGEST, data, 0, ends)
    finally:
        _accel._codec_loaded[:] = saved


@needs_codec
def test_digests_refuse_ranges_outside_the_buffer() -> None:
    assert codec is not None
    with pytest.raises(ValueError):
        codec.digests(1, b"abc", 0, [4])
    with pytest.raises(ValueError):
        codec.digests(1, b"abc", 2, [1])
    with pytest.raises(ValueError):
        codec.digests(7, b"abc", 0, [3])


def _frame(data: bytes) -> bytes:
    return compression.compress(data)


@needs_codec
def test_decode_verify_accepts_only_exact_single_frames_of_the_right_content() -> None:
    assert codec is not None
    data = os.urandom(50_000) + bytes(20_000)
    cid = SHA512_256_DIGEST.sum(data)
    frame = _frame(data)
    two = _frame(data[:30_000]) + _frame(data[30_000:])
    cases = [
        ((cid, frame, len(data), True), data),
        ((cid, frame, len(data) - 1, True), None),        # the frame holds more than the index says
        ((cid, frame, len(data) + 1, True), None),        # or less
        ((cid, frame + b"\0", len(data), True), None),    # trailing bytes, refused as casync does
        ((cid, two, len(data), True), None),              # two frames adding up to the content
        ((cid, frame[:-10], len(data), True), None),      # truncated
        ((bytes(32), frame, len(data), True), None),      # another chunk's ID
        ((cid, data, len(data), False), data),            # stored plain
        ((cid, data, len(data) - 1, False), None),
        ((cid, b"", 0, False), None),                     # empty: "bad chunk size 0"
        ((cid[:5], frame, len(data), True), None),        # not an ID at all
    ]
    got = codec.decode_verify(SHA512_256_DIGEST.code, [item for item, _ in cases], CHUNK_SIZE_LIMIT)
    assert got == [want for _, want in cases]
    # Without verification (-1) only the decoding is checked.
    assert codec.decode_verify(-1, [(bytes(32), frame, len(data), True)], CHUNK_SIZE_LIMIT) == [data]
    assert codec.decode_verify(-1, [(cid, frame, 10, True)], 10) == [None]  # at the size limit


@needs_codec
@settings(max_examples=150, deadline=None)
@given(data=st.binary(min_size=1, max_size=2000), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)),
                                                                  max_size=3), cut=st.integers(0, 3))
def test_decode_verify_never_accepts_what_the_python_path_refuses(data: bytes, flips: list[tuple[int, int]],
                                                                   cut: int) -> None:
    """Fuzzed frames: any content the codec returns, the ordinary path returns too, byte for byte."""
    assert codec is not None
    raw = bytearray(_frame(data))
    for at, mask in flips:
        raw[at % len(raw)] ^= mask
    stored = bytes(raw[:len(raw) - cut])
    cid = SHA512_256_DIGEST.sum(data)
    got = codec.decode_verify(SHA512_256_DIGEST.code, [(cid, stored, len(data), True)], CHUNK_SIZE_LIMIT)[0]
    try:
        chunk = Chunk(cid, compressed=stored)
        chunk.verify(SHA512_256_DIGEST, "fuzz", len(data))
        python: bytes | None = chunk.data(len(data))
    except ChunkInvalid:
        python = None
    if got is not None:
        assert python == got == data


StoreItem = tuple[bytes, bytes, bytes, bytes | bytearray | memoryview]


def _store_items(root: Path, blobs: list[bytes], level: int) -> list[StoreItem]:
    items: list[StoreItem] = []
    for blob, tag in zip(blobs, tempnames.owner_tags(len(blobs))):
        h = SHA512_256_DIGEST.sum(blob).hex()
        final = root / h[:4] / (h + (".cacnk" if level >= 0 else ""))
        other = root / h[:4] / (h if level >= 0 else h + ".cacnk")
        items.append((os.fsencode(final), os.fsencode(other), os.fsencode(root / h[:4] / f".tmp-cacnk.{tag}"), blob))
    return items


@needs_codec
@pytest.mark.parametrize("level", [ZSTD_LEVEL, -1])
def test_store_chunks_writes_read_only_files_once(tmp_path: Path, level: int) -> None:
    assert codec is not None
    blobs = [os.urandom(3000), os.urandom(10)]
    items = _store_items(tmp_path, blobs, level)
    assert codec.store_chunks(items + items[:1], level) == [0, 0, -1]  # the repeat finds its file
    for (final, _, _, _), blob in zip(items, blobs):
        raw = Path(os.fsdecode(final)).read_bytes()
        assert (compression.decompress(raw, len(blob)) if level >= 0 else raw) == blob
        assert stat.S_IMODE(os.stat(final).st_mode) == 0o444 & ~_umask()
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    # The other form of a chunk counts as present too, as in has_chunk.
    other_only = _store_items(tmp_path, [os.urandom(100)], level)[0]
    Path(os.fsdecode(other_only[1])).parent.mkdir(exist_ok=True)
    Path(os.fsdecode(other_only[1])).write_bytes(b"x")
    assert codec.store_chunks([other_only], level) == [-1]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@needs_codec
def test_store_chunks_reports_errno_and_leaves_no_temp(tmp_path: Path) -> None:
    assert codec is not None
    gone = tmp_path / "no-such-store"
    items = _store_items(gone, [b"abc"], ZSTD_LEVEL)
    assert codec.store_chunks(items, ZSTD_LEVEL) == [errno.ENOENT]  # only the prefix is made, never the store
    assert not gone.exists()
    blocked = _store_items(tmp_path, [b"def"], ZSTD_LEVEL)[0]
    Path(os.fsdecode(blocked[0])).parent.write_bytes(b"a file where the prefix directory goes")
    assert codec.store_chunks([blocked], ZSTD_LEVEL) == [errno.ENOTDIR]


def _listing(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): compression.decompress(p.read_bytes(), CHUNK_SIZE_LIMIT)
            if p.name.endswith(".cacnk") else p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and not p.name.startswith(".desync-lock")}


@pytest.mark.parametrize("uncompressed", [False, True])
def test_put_missing_stores_what_put_chunk_would_with_and_without_the_codec(
        tmp_path: Path, uncompressed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = [os.urandom(n) for n in (1, 500, 70_000)] + [bytes(4000)]
    results = []
    for use_codec in (True, False):
        root = tmp_path / f"codec-{use_codec}"
        if not use_codec:
            monkeypatch.setattr(_accel, "_codec_loaded", [None])
        store = LocalStore(str(root), StoreOptions(uncompressed=uncompressed), create=True)
        view = memoryview(b"".join(blobs))
        chunks, pos = [], 0
        for blob in blobs:
            chunks.append(Chunk.of_view(SHA512_256_DIGEST.sum(blob), view[pos:pos + len(blob)]))
            pos += len(blob)
        chunks.append(Chunk(SHA512_256_DIGEST.sum(b"only compressed"), compressed=compression.compress(b"only compressed")))
        assert store.put_missing(chunks[:2]) == 2
        assert store.put_missing(chunks) == 3
        assert store.put_missing(chunks) == 0
        results.append(_listing(root))
    assert results[0] == results[1]
    assert len(results[0]) == 5


def test_put_missing_gives_put_chunks_error_for_a_chunk_it_cannot_write(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path), StoreOptions(), create=True)
    data = os.urandom(100)
    cid = SHA512_256_DIGEST.sum(data)
    (tmp_path / cid.hex()[:4]).write_bytes(b"a file where the prefix directory goes")
    with pytest.raises(StoreError, match="cannot create"):
        store.put_missing([Chunk(cid, data=data), Chunk(SHA512_256_DIGEST.sum(b"x"), data=b"x")])


@pytest.mark.parametrize("use_codec", [True, False])
def test_batched_reads_give_the_same_chunks_and_errors_with_and_without_the_codec(
        tmp_path: Path, use_codec: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not use_codec:
        monkeypatch.setattr(_accel, "_codec_loaded", [None])
    elif codec is None:
        pytest.skip("the C codec is not built (pure-Python run)")
    store = LocalStore(str(tmp_path), StoreOptions(), create=True)
    blobs = [os.urandom(n) for n in (10, 5000, 66_000)]
    chunks = [Chunk.from_data(b, SHA512_256_DIGEST) for b in blobs]
    for c in chunks:
        store.put_chunk(c)
    requests = [(c.id, len(b)) for c, b in zip(chunks, blobs)]
    assert [c.data() for c in store.get_chunks(requests)] == blobs
    # A chunk file holding another chunk: the ordinary path's verdict and message.
    bad = tmp_path / chunks[1].id.hex()[:4] / (chunks[1].id.hex() + ".cacnk")
    os.chmod(bad, 0o644)
    bad.write_bytes(compression.compress(blobs[0]))
    with pytest.raises(ChunkInvalid, match="bad chunk size 10|content hashes to") as caught:
        store.get_chunks(requests)
    assert chunks[1].id.hex() in str(caught.value)
