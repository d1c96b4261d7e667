"""The library under the FUSE mount: blob reads by offset, read-ahead, the cache, the sparse file, archive trees.

No FUSE here (tests/test_mount.py mounts for real): these drive the
reader and the tree directly; a cache store in front of the store records
which chunks were fetched.
"""

import os
import random
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desync import featureflags as ff
from desync.catar import EncodeOptions, encode_tree
from desync.chunker import Chunker
from desync.digest import SHA512_256_DIGEST
from desync.errors import ChunkMissing, DesyncError
from desync.index import Index
from desync.mount.blob import BlobReader
from desync.mount.source import FileSource, SkippingReader
from desync.mount.sparse import SparseFile
from desync.mount.tree import ArchiveTree
from desync.ops.make import chunk_stream
from desync.stores import CachedStore, Store, StoreOptions
from desync.stores.local import LocalStore

SMALL = Chunker(4096, 16384, 65536)
TAR_FLAGS = ff.normalize((ff.DESYNC_TAR_FLAGS & ~ff.POLICY_MASK) | ff.SHA512_256)


def tracked(store: LocalStore, seen: Path) -> tuple[Store, Callable[[], set[bytes]]]:
    """``store`` behind a cache that ends up holding exactly the chunks fetched through it.

    (Composed from the package's own stores: compiled store classes cannot be subclassed here.)
    """
    cache = LocalStore(str(seen), StoreOptions(), create=True)
    return CachedStore(store, cache), lambda: set(cache.iter_chunks())


def copy_store(store: LocalStore, path: Path) -> LocalStore:
    shutil.copytree(store.path, path)
    return LocalStore(str(path), StoreOptions())


def chunk_file(store: LocalStore, chunk_id: bytes) -> Path:
    h = chunk_id.hex()
    return Path(store.path) / h[:4] / f"{h}.cacnk"


def make_blob(data: bytes, path: Path, chunker: Chunker = SMALL, flags: int | None = None) -> tuple[Index, LocalStore]:
    store = LocalStore(str(path), StoreOptions(), create=True)
    if flags is None:
        index = chunk_stream([data], chunker, SHA512_256_DIGEST, store)
    else:
        index = chunk_stream([data], chunker, SHA512_256_DIGEST, store, flags=flags)
    return index, store


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Index, LocalStore]:
    data = random.Random(7).randbytes(600_000)
    index, store = make_blob(data, tmp_path_factory.mktemp("blob") / "store")
    assert len(index.chunks) > 10
    return data, index, store


@pytest.fixture(scope="module")
def shared_reader(blob: tuple[bytes, Index, LocalStore]) -> Iterator[BlobReader]:
    _, index, store = blob
    reader = BlobReader(index, store, workers=2, cache_bytes=100_000, read_ahead_bytes=50_000)
    yield reader
    reader.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 620_000), size=st.integers(0, 200_000))
def test_any_read_equals_the_blob_slice(blob: tuple[bytes, Index, LocalStore], shared_reader: BlobReader,
                                        offset: int, size: int) -> None:
    data = blob[0]
    assert shared_reader.read(offset, size) == data[offset:offset + size]


def test_reads_on_chunk_boundaries_and_at_the_end(blob: tuple[bytes, Index, LocalStore]) -> None:
    data, index, store = blob
    with_reader = BlobReader(index, store, workers=2)
    try:
        for c in index.chunks[:5]:
            for delta in (-1, 0, 1):
                offset = max(0, c.end + delta)
                assert with_reader.read(offset, 3) == data[offset:offset + 3]
            assert with_reader.read(c.start, c.size * 3) == data[c.start:c.start + c.size * 3]
        assert with_reader.read(len(data) - 1, 10) == data[-1:]
        assert with_reader.read(len(data), 10) == b""
        assert with_reader.read(len(data) + 5, 10) == b""
        assert with_reader.read(0, 0) == b""
        assert with_reader.read(0, len(data) + 1000) == data
    finally:
        with_reader.close()


def test_a_random_read_fetches_only_its_chunks(blob: tuple[bytes, Index, LocalStore], tmp_path: Path) -> None:
    data, index, store = blob
    source = copy_store(store, tmp_path / "store")
    counting, fetched = tracked(source, tmp_path / "seen")
    reader = BlobReader(index, counting, workers=2)
    try:
        c = index.chunks[len(index.chunks) // 2]
        assert reader.read(c.start + 10, 20) == data[c.start + 10:c.start + 30]
        time.sleep(0.2)
        assert fetched() == {c.id}
        chunk_file(source, c.id).unlink()
        shutil.rmtree(tmp_path / "seen")
        assert reader.read(c.start, 5) == data[c.start:c.start + 5], "a second read comes from memory"
    finally:
        reader.close()


def test_sequential_reads_fetch_ahead(blob: tuple[bytes, Index, LocalStore], tmp_path: Path) -> None:
    data, index, store = blob
    counting, fetched = tracked(store, tmp_path / "seen")
    reader = BlobReader(index, counting, workers=2, read_ahead_bytes=200_000)
    try:
        assert reader.read(0, 4096) == data[:4096]
        assert reader.read(4096, 4096) == data[4096:8192]
        wanted = {c.id for c in index.chunks if c.start < 8192 + 200_000}
        deadline = time.monotonic() + 10
        while not wanted <= fetched() and time.monotonic() < deadline:
            time.sleep(0.01)
        ahead = fetched()
        assert wanted <= ahead
        assert ahead <= {c.id for c in index.chunks if c.start < 8192 + 200_000}
        pos = 8192
        while pos < 150_000:
            assert reader.read(pos, 8192) == data[pos:pos + 8192]
            pos += 8192
        assert {c.id for c in index.chunks if c.start < 150_000} <= ahead, "the window covered these reads"
    finally:
        reader.close()


def test_the_cache_stays_within_its_bound(blob: tuple[bytes, Index, LocalStore]) -> None:
    data, index, store = blob
    reader = BlobReader(index, store, workers=2, cache_bytes=100_000, read_ahead_bytes=20_000)
    try:
        for pos in range(0, len(data), 30_000):
            assert reader.read(pos, 30_000) == data[pos:pos + 30_000]
            assert reader._cache_bytes <= 100_000 + 65536
    finally:
        reader.close()


def test_a_missing_chunk_fails_only_its_reads_and_is_retried(blob: tuple[bytes, Index, LocalStore],
                                                               tmp_path: Path) -> None:
    data, index, store = blob
    broken = copy_store(store, tmp_path / "store")
    bad = index.chunks[3]
    chunk_file(broken, bad.id).unlink()
    reader = BlobReader(index, broken, workers=2)
    try:
        with pytest.raises(ChunkMissing):
            reader.read(bad.start, 100)
        with pytest.raises(ChunkMissing):
            reader.read(bad.start - 10, 100)
        assert reader.read(bad.end, 100) == data[bad.end:bad.end + 100]
        shutil.copy(chunk_file(store, bad.id), chunk_file(broken, bad.id))
        assert reader.read(bad.start, 100) == data[bad.start:bad.start + 100]
    finally:
        reader.close()


def test_zero_chunks_need_no_store(tmp_path: Path) -> None:
    data = bytes(300_000) + b"tail" * 1000
    index, store = make_blob(data, tmp_path / "store")
    zero_chunks = [c for c in index.chunks if c.size == index.max_size]
    assert zero_chunks
    counting, fetched = tracked(store, tmp_path / "seen")
    reader = BlobReader(index, counting, workers=2)
    try:
        assert reader.read(0, len(data)) == data
        assert fetched() and not {c.id for c in zero_chunks} & fetched()
    finally:
        reader.close()


def test_concurrent_readers_get_the_right_bytes(blob: tuple[bytes, Index, LocalStore]) -> None:
    data, index, store = blob
    reader = BlobReader(index, store, workers=3, cache_bytes=50_000, read_ahead_bytes=10_000)
    errors: list[str] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(200):
            offset = rng.randrange(len(data))
            size = rng.randrange(1, 70_000)
            if reader.read(offset, size) != data[offset:offset + size]:
                errors.append(f"{offset}+{size}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        reader.close()
    assert errors == []


def test_sparse_file_serves_chunks_after_a_remount(blob: tuple[bytes, Index, LocalStore], tmp_path: Path) -> None:
    data, index, store = blob
    cor, state = str(tmp_path / "blob.cor"), str(tmp_path / "blob.state")
    sparse = SparseFile(cor, index, state)
    reader = BlobReader(index, store, workers=2, sparse=sparse)
    try:
        assert reader.read(0, 50_000) == data[:50_000]
    finally:
        reader.close()
        sparse.save_state()
        sparse.close()
    assert os.path.getsize(cor) == len(data)
    saved = Path(state).read_bytes()
    assert len(saved) == (len(index.chunks) + 7) // 8
    present = [i for i in range(len(index.chunks)) if saved[i >> 3] & (1 << (i & 7))]
    assert present == [i for i, c in enumerate(index.chunks) if c.start < 50_000]

    nothing = LocalStore(str(tmp_path / "empty"), StoreOptions(), create=True)
    again = SparseFile(cor, index, state)
    assert not again.preload
    reader = BlobReader(index, nothing, workers=2, sparse=again)
    try:
        assert reader.read(100, 40_000) == data[100:40_100]
        with pytest.raises(ChunkMissing):
            reader.read(len(data) - 10, 10)
    finally:
        reader.close()
        again.close()


def test_sparse_state_for_another_index(blob: tuple[bytes, Index, LocalStore], tmp_path: Path) -> None:
    _, index, _ = blob
    state = tmp_path / "state"
    state.write_bytes(b"\xff" * 3)
    # A saved state of the wrong size is not trusted: the file starts empty.
    sparse = SparseFile(str(tmp_path / "a.cor"), index, str(state))
    assert not any(sparse.present)
    sparse.close()
    with pytest.raises(DesyncError, match="does not match the index"):
        SparseFile(str(tmp_path / "b.cor"), index, "", str(state))


def test_sparse_init_state_lists_chunks_to_preload(blob: tuple[bytes, Index, LocalStore], tmp_path: Path) -> None:
    data, index, store = blob
    bits = bytearray((len(index.chunks) + 7) // 8)
    for i in (0, 2, 9):
        bits[i >> 3] |= 1 << (i & 7)
    init = tmp_path / "init"
    init.write_bytes(bytes(bits))
    sparse = SparseFile(str(tmp_path / "c.cor"), index, str(tmp_path / "c.state"), str(init))
    assert sparse.preload == [0, 2, 9]
    reader = BlobReader(index, store, workers=2, sparse=sparse)
    try:
        for i in sparse.preload:
            reader.preload(i)
            assert sparse.has(i)
        c = index.chunks[9]
        assert sparse.read(c.start, c.size) == data[c.start:c.end]
    finally:
        reader.close()
        sparse.close()


def _tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").write_bytes(b"")
    (root / "small.txt").write_text("hello\n")
    (root / "sub" / "big.bin").write_bytes(random.Random(3).randbytes(400_000))
    (root / "sub" / "deeper" / "mid.bin").write_bytes(random.Random(4).randbytes(70_000))
    os.symlink("small.txt", root / "link")
    os.mkfifo(root / "fifo")
    os.chmod(root / "small.txt", 0o640)


def test_archive_tree_from_a_catar_file(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    _tree(root)
    catar = tmp_path / "t.catar"
    catar.write_bytes(b"".join(encode_tree(str(root), TAR_FLAGS, EncodeOptions())))
    source = FileSource(str(catar))
    try:
        tree = ArchiveTree(source)
        assert tree.lookup(b"/") is tree.entry(1)
        assert tree.lookup(b"/nope") is None
        assert tree.lookup(b"/small.txt/x") is None
        root_children = tree.entry(1).children
        assert root_children is not None
        assert sorted(root_children) == sorted(os.fsencode(n) for n in os.listdir(root))
        for rel in ("small.txt", "empty", "sub/big.bin", "sub/deeper/mid.bin"):
            entry = tree.lookup(b"/" + rel.encode())
            assert entry is not None
            want = (root / rel).read_bytes()
            assert entry.meta.size == len(want)
            assert tree.read(entry, 0, len(want) + 10) == want
            assert tree.read(entry, 5, 7) == want[5:12]
        link = tree.lookup(b"/link")
        assert link is not None and link.meta.is_symlink and link.meta.target == b"small.txt"
        fifo = tree.lookup(b"/fifo")
        assert fifo is not None and stat.S_ISFIFO(fifo.meta.mode)
        small = tree.lookup(b"/small.txt")
        assert small is not None and stat.S_IMODE(small.meta.mode) == 0o640
        deeper = tree.lookup(b"/sub/deeper")
        assert deeper is not None and tree.entry(deeper.parent) is tree.lookup(b"/sub")
    finally:
        source.close()


def test_archive_tree_from_an_index_skips_file_contents(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    # Metadata over several chunks in a row, then a big file: nothing may fetch the file's chunks.
    for n in range(300):
        (root / f"f{n:03}").write_bytes(b"x" * n)
    (root / "zz.bin").write_bytes(random.Random(9).randbytes(400_000))
    stream = b"".join(encode_tree(str(root), TAR_FLAGS, EncodeOptions()))
    index, store = make_blob(stream, tmp_path / "store", flags=TAR_FLAGS)
    counting, fetched = tracked(store, tmp_path / "seen")
    reader = BlobReader(index, counting, workers=2)
    try:
        tree = ArchiveTree(reader, expected_flags=index.flags)
        big = tree.lookup(b"/zz.bin")
        assert big is not None
        head = [c.id for c in index.chunks if c.end <= big.payload_offset]
        inside = [c.id for c in index.chunks
                  if c.start >= big.payload_offset and c.end <= big.payload_offset + big.meta.size]
        assert len(head) > 2 and inside, "the test archive should have metadata chunks and content chunks"
        time.sleep(0.3)
        assert not set(inside) & fetched(), "building the tree fetched file contents"
        assert tree.read(big, 123, 200_000) == (root / "zz.bin").read_bytes()[123:200_123]
        f7 = tree.lookup(b"/f007")
        assert f7 is not None and tree.read(f7, 0, 100) == b"x" * 7
    finally:
        reader.close()


def test_skipping_reader_serves_zeros_only_inside_holes() -> None:
    class Bytes:
        def __init__(self, data: bytes) -> None:
            self.data = data
            self.size = len(data)

        def read(self, offset: int, size: int, read_ahead: bool = True) -> bytes:
            return self.data[offset:offset + size]

        def extent_end(self, offset: int) -> int:
            return min(self.size, (offset // 10 + 1) * 10)

    reader = SkippingReader(Bytes(bytes(range(1, 51))))
    assert reader.read(3) == bytes([1, 2, 3])
    reader.skip(3, 25)
    assert reader.read(100) == bytes([4, 5, 6, 7, 8, 9, 10])  # the rest of the buffered extent
    assert reader.read(100) == bytes(15)
    assert reader.read(4) == bytes([26, 27, 28, 29])
    assert reader.read(-1) == bytes([30])
    assert reader.read(-1) == bytes(range(31, 41))
    assert reader.read(-1) == bytes(range(41, 51))
    assert reader.read(5) == b""
