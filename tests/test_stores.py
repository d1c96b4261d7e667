"""Local store, chaining and caching: layout, atomic writes, verification."""

import gzip
import lzma
import multiprocessing
import os
from pathlib import Path

import pytest

from desync import digest as digest_mod
from desync.chunk import Chunk
from desync.errors import ChunkInvalid, ChunkMissing, StoreError
from desync.stores import CachedStore, LocalStore, PrunableStore, StoreOptions, StoreRouter, open_store
from desync.stores import compose

SHA = digest_mod.SHA512_256_DIGEST


def _chunk(data: bytes) -> Chunk:
    return Chunk.from_data(data, SHA)


def test_put_get_has_remove_iterate(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path), StoreOptions())
    chunks = [_chunk(os.urandom(1000 + i)) for i in range(20)]
    for c in chunks:
        store.put_chunk(c)
    for c in chunks:
        h = c.id.hex()
        path = tmp_path / h[:4] / (h + ".cacnk")
        assert path.is_file() and (path.stat().st_mode & 0o777) == 0o444
        assert store.has_chunk(c.id)
        assert store.get_chunk(c.id).data() == c.data()
    assert sorted(store.iter_chunks()) == sorted(c.id for c in chunks)
    store.remove_chunk(chunks[0].id)
    assert not store.has_chunk(chunks[0].id)
    with pytest.raises(ChunkMissing):
        store.get_chunk(chunks[0].id)
    store.remove_chunk(chunks[0].id)  # already gone: no error, as in every store
    assert not list(tmp_path.rglob(".tmp-cacnk*"))


@pytest.mark.parametrize("form", ["uncompressed", "xz", "gzip"])
def test_casync_chunk_forms_are_read(tmp_path: Path, form: str) -> None:
    data = os.urandom(4000)
    cid = SHA.sum(data)
    h = cid.hex()
    (tmp_path / h[:4]).mkdir()
    if form == "uncompressed":
        (tmp_path / h[:4] / h).write_bytes(data)
    else:
        raw = lzma.compress(data) if form == "xz" else gzip.compress(data)
        (tmp_path / h[:4] / (h + ".cacnk")).write_bytes(raw)
    store = LocalStore(str(tmp_path), StoreOptions())
    assert store.has_chunk(cid)
    assert store.get_chunk(cid).data() == data
    assert list(store.iter_chunks()) == [cid]


def test_uncompressed_store_writes_plain_files(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path), StoreOptions(uncompressed=True))
    c = _chunk(b"plain chunk")
    store.put_chunk(c)
    h = c.id.hex()
    assert (tmp_path / h[:4] / h).read_bytes() == b"plain chunk"


def test_corrupt_chunk_names_chunk_and_store(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path), StoreOptions())
    c = _chunk(os.urandom(2000))
    store.put_chunk(c)
    h = c.id.hex()
    path = tmp_path / h[:4] / (h + ".cacnk")
    os.chmod(path, 0o644)
    path.write_bytes(Chunk(c.id, data=os.urandom(2000)).compressed())
    with pytest.raises(ChunkInvalid) as exc:
        store.get_chunk(c.id)
    assert h in str(exc.value) and str(tmp_path) in str(exc.value)
    skipping = LocalStore(str(tmp_path), StoreOptions(skip_verify=True))
    assert len(skipping.get_chunk(c.id).data()) == 2000


def test_missing_or_non_directory_store_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        LocalStore(str(tmp_path / "nope"), StoreOptions())
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreError, match="not a directory"):
        open_store(str(tmp_path / "file"), StoreOptions())
    created = open_store(str(tmp_path / "new"), StoreOptions(), writable=True)
    assert isinstance(created, PrunableStore) and (tmp_path / "new").is_dir()


def _writer(path: str, data: bytes, rounds: int) -> None:
    store = LocalStore(path, StoreOptions())
    for _ in range(rounds):
        store.put_chunk(Chunk.from_data(data, SHA))


def test_concurrent_writers_of_the_same_chunk(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    procs = [multiprocessing.Process(target=_writer, args=(str(tmp_path), data, 50)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    store = LocalStore(str(tmp_path), StoreOptions())
    assert list(store.iter_chunks()) == [SHA.sum(data)]
    assert store.get_chunk(SHA.sum(data)).data() == data
    assert not list(tmp_path.rglob(".tmp-cacnk*"))


def test_router_falls_through_on_miss(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    sa = LocalStore(str(a), StoreOptions(), create=True)
    sb = LocalStore(str(b), StoreOptions(), create=True)
    only_b = _chunk(b"only in b")
    sb.put_chunk(only_b)
    router = StoreRouter([sa, sb])
    assert router.get_chunk(only_b.id).data() == b"only in b"
    assert router.has_chunk(only_b.id)
    with pytest.raises(ChunkMissing):
        router.get_chunk(SHA.sum(b"nowhere"))


def test_cache_is_filled_on_miss_and_touched_on_hit(tmp_path: Path) -> None:
    remote = LocalStore(str(tmp_path / "remote"), StoreOptions(), create=True)
    cache = LocalStore(str(tmp_path / "cache"), StoreOptions(), create=True)
    c = _chunk(os.urandom(3000))
    remote.put_chunk(c)
    cached = CachedStore(remote, cache)
    assert cached.get_chunk(c.id).data() == c.data()
    assert cache.has_chunk(c.id)
    h = c.id.hex()
    path = tmp_path / "cache" / h[:4] / (h + ".cacnk")
    os.utime(path, (1000, 1000))
    remote.remove_chunk(c.id)
    assert cached.get_chunk(c.id).data() == c.data()
    assert path.stat().st_mtime > 1000


def test_compose_chains_and_caches(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    options = StoreOptions()
    chained = compose.chain([str(tmp_path / "a"), f"file://{tmp_path / 'a'}"], lambda _: options)
    assert isinstance(chained, StoreRouter)
    store = compose.cached(chained, str(tmp_path / "c"), lambda _: options)
    assert isinstance(store, CachedStore)
    assert (tmp_path / "c").is_dir()


@pytest.mark.parametrize("uncompressed", [False, True])
def test_batched_reads_find_both_forms_and_mark_missing_chunks(tmp_path: Path, uncompressed: bool) -> None:
    compressed_store = LocalStore(str(tmp_path), StoreOptions())
    plain_store = LocalStore(str(tmp_path), StoreOptions(uncompressed=True))
    chunks = [_chunk(os.urandom(2000 + i)) for i in range(6)]
    for i, c in enumerate(chunks[:5]):
        (plain_store if i % 2 else compressed_store).put_chunk(c)
    reader = plain_store if uncompressed else compressed_store
    found = reader.fetch_chunks([(c.id, 0) for c in chunks])
    assert [c.data() if c is not None else None for c in found] == [c.data() for c in chunks[:5]] + [None]


def test_local_store_opens_the_compressed_file_for_a_zero_copy_send(tmp_path: Path) -> None:
    """The pull server sends stored files through this, without building chunk paths itself."""
    store = LocalStore(str(tmp_path), StoreOptions())
    c = Chunk.from_data(b"sent as stored" * 100, digest_mod.DEFAULT)
    store.put_chunk(c)
    opened = store.open_compressed(c.id)
    assert opened is not None
    fd, size = opened
    try:
        assert os.pread(fd, size + 1, 0) == c.compressed()
    finally:
        os.close(fd)
    assert store.open_compressed(bytes(32)) is None
    plain = LocalStore(str(tmp_path / "plain"), StoreOptions(uncompressed=True), create=True)
    plain.put_chunk(c)
    assert plain.open_compressed(c.id) is None  # only a plain file: the caller reads it through get_chunk
