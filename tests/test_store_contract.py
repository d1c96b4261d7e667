"""One contract for every chunk store: the same answers from each backend and wrapper.

Each backend is a real peer on loopback (our chunk server, moto's S3
server, sshd for SFTP, ``desync pull`` behind a stand-in ssh for ssh://)
or a wrapper over local stores.  Every test runs against all of them;
where a capability is missing, the store must not have its methods at all.
"""

import os
import random
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import NEUTRAL_DIR, assert_one_line_error, desync_env, run_desync
from http_util import in_process_server
from s3_server import S3Server
from sshd_harness import SSHD, LoopbackSSHD

from desync.chunk import Chunk
from desync.digest import DEFAULT
from desync.errors import ChunkMissing, StoreError
from desync.server.chunks import ChunkService
from desync.stores import (LocalStore, PrunableStore, ReadStore, StoreOptions, StoreRouter, WriteStore,
                           cached_store, open_store)
from desync.stores import indexes
from desync.stores.failover import failover_group
from desync.stores.capabilities import IndexReadStore, IndexWriteStore
from desync.stores.indexes import index_store, register_index_scheme, write_index

BACKENDS = ["local", "local-uncompressed", "http", "s3", "sftp", "ssh", "cache", "router", "failover"]
PRUNABLE = ["local", "local-uncompressed", "s3", "sftp", "cache", "failover"]


def _chunk(seed: int, size: int = 3000) -> Chunk:
    return Chunk.from_data(random.Random(seed).randbytes(size), DEFAULT)


@dataclass
class Backend:
    """A store under test and the means to change what lies behind it."""

    store: ReadStore
    capability: str  # "read", "write" or "prune": what the store must declare, and nothing more
    seed: Callable[[Chunk], None]
    corrupt: Callable[[Chunk], None]  # leave bytes that do not hash to the ID under the chunk's name
    closers: list[Callable[[], None]] = field(default_factory=list)


def _dir_seeder(path: Path, uncompressed: bool = False) -> tuple[Callable[[Chunk], None], Callable[[Chunk], None]]:
    """Seed and corrupt functions for a store directory, written the way any writer would (atomically)."""
    store = LocalStore(str(path), StoreOptions(uncompressed=uncompressed), create=True)
    other = _chunk(99999)

    def corrupt(chunk: Chunk) -> None:
        h = chunk.id.hex()
        (path / h[:4]).mkdir(exist_ok=True)
        name = path / h[:4] / (h if uncompressed else h + ".cacnk")
        name.write_bytes(other.stored_form(uncompressed))

    return store.put_chunk, corrupt


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server(auth=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSSHD]:
    if SSHD is None:
        pytest.skip("sshd not found (apt-get install openssh-server)")
    server = LoopbackSSHD(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def _pseudo_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ssh:// through a stand-in that runs the remote command here (``desync pull`` from these sources)."""
    ssh = tmp_path / "pseudo-ssh"
    ssh.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift 2\nexec sh -c "$*"\n')
    ssh.chmod(0o755)
    for key, value in desync_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CASYNC_SSH_PATH", str(ssh))
    monkeypatch.setenv("CASYNC_REMOTE_PATH", f"{sys.executable} -m desync")
    monkeypatch.chdir(NEUTRAL_DIR)


def _make(name: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Backend:
    opts = StoreOptions(error_retry=0, timeout=20)
    root = tmp_path / "store"
    if name in ("local", "local-uncompressed"):
        uncompressed = name == "local-uncompressed"
        seed, corrupt = _dir_seeder(root, uncompressed)
        store = open_store(str(root), StoreOptions(uncompressed=uncompressed))
        return Backend(store, "prune", seed, corrupt)
    if name == "http":
        seed, corrupt = _dir_seeder(root)
        served = ChunkService(LocalStore(str(root), opts), DEFAULT, writable=True)
        server = in_process_server(served)
        _, port = server.__enter__()
        store = open_store(f"http://127.0.0.1:{port}/", opts)
        def stop() -> None:
            server.__exit__(None, None, None)

        return Backend(store, "write", seed, corrupt, [stop])
    if name == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        for key, value in s3.env().items():
            monkeypatch.setenv(key, value)
        bucket = s3.new_bucket()
        # moto answers some concurrent PUTs of one key with a 500, which real S3 does not: retried.
        from desync.stores.s3 import S3Store

        store = open_store(s3.url(bucket, "chunks"), StoreOptions(timeout=20, error_retry_base_interval=0.05),
                           writable=True)
        assert isinstance(store, S3Store)
        client = s3.client()
        other = _chunk(99999)

        def s3_corrupt(chunk: Chunk) -> None:
            client.put_object(Bucket=bucket, Key=store.key(chunk.id), Body=other.compressed())

        return Backend(store, "prune", store.put_chunk, s3_corrupt)
    if name == "sftp":
        sshd: LoopbackSSHD = request.getfixturevalue("sshd_server")
        for key, value in sshd.env().items():
            monkeypatch.setenv(key, value)
        seed, corrupt = _dir_seeder(root)
        return Backend(open_store(f"sftp://127.0.0.1{root}", opts), "prune", seed, corrupt)
    if name == "ssh":
        _pseudo_ssh(tmp_path, monkeypatch)
        seed, corrupt = _dir_seeder(root)
        return Backend(open_store(f"ssh://127.0.0.1{root}", StoreOptions(error_retry=0, timeout=20, workers=4)),
                       "read", seed, corrupt)
    if name == "cache":
        seed, corrupt = _dir_seeder(root)
        backend = LocalStore(str(root), opts)
        return Backend(cached_store(backend, LocalStore(str(tmp_path / "cache"), opts, create=True)),
                       "prune", seed, corrupt)
    if name == "router":
        seed, corrupt = _dir_seeder(root)
        first = LocalStore(str(tmp_path / "first"), opts, create=True)
        return Backend(StoreRouter([first, LocalStore(str(root), opts)]), "read", seed, corrupt)
    assert name == "failover"
    seed_a, corrupt_a = _dir_seeder(tmp_path / "a")
    seed_b, corrupt_b = _dir_seeder(tmp_path / "b")

    def seed_both(chunk: Chunk) -> None:
        seed_a(chunk)
        seed_b(chunk)

    def corrupt_both(chunk: Chunk) -> None:
        corrupt_a(chunk)
        corrupt_b(chunk)

    group = failover_group([LocalStore(str(tmp_path / "a"), opts), LocalStore(str(tmp_path / "b"), opts)])
    return Backend(group, "prune", seed_both, corrupt_both)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    made = _make(request.param, tmp_path, request, monkeypatch)
    try:
        yield made
    finally:
        made.store.close()
        for close in made.closers:
            close()


def test_a_present_chunk_is_read_verified(backend: Backend) -> None:
    chunk = _chunk(1)
    backend.seed(chunk)
    assert backend.store.has_chunk(chunk.id)
    assert backend.store.get_chunk(chunk.id, 3000).data() == chunk.data()


def test_a_missing_chunk_is_chunk_missing(backend: Backend) -> None:
    absent = _chunk(2)
    assert not backend.store.has_chunk(absent.id)
    with pytest.raises(ChunkMissing):
        backend.store.get_chunk(absent.id)


def test_a_corrupt_chunk_is_a_store_error_not_a_miss(backend: Backend) -> None:
    chunk = _chunk(3)
    backend.corrupt(chunk)
    with pytest.raises(StoreError) as raised:
        backend.store.get_chunk(chunk.id, 3000)
    assert not isinstance(raised.value, ChunkMissing)
    assert chunk.id.hex() in str(raised.value) and "\n" not in str(raised.value)


def test_batched_reads_mark_each_missing_chunk(backend: Backend) -> None:
    present = [_chunk(10 + i) for i in range(6)]
    for chunk in present:
        backend.seed(chunk)
    absent = _chunk(20)
    requests = [(c.id, 3000) for c in present[:3]] + [(absent.id, 3000)] + [(c.id, 3000) for c in present[3:]]
    found = backend.store.fetch_chunks(requests)
    assert [c.data() if c is not None else None for c in found] == \
        [c.data() for c in present[:3]] + [None] + [c.data() for c in present[3:]]
    assert [c.id for c in backend.store.get_chunks([(c.id, 3000) for c in present])] == [c.id for c in present]
    with pytest.raises(ChunkMissing) as raised:
        backend.store.get_chunks(requests)
    assert raised.value.chunk_id == absent.id


def test_concurrently_written_chunks_are_whole_or_missing(backend: Backend) -> None:
    chunks = [_chunk(30 + i, 20000) for i in range(6)]
    store = backend.store
    write = store.put_chunk if isinstance(store, WriteStore) else backend.seed
    seen: list[bytes | None] = []
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            for chunk in chunks:
                try:
                    seen.append(store.get_chunk(chunk.id, 20000).data())
                except ChunkMissing:
                    seen.append(None)
        except BaseException as exc:  # reported below
            failures.append(exc)

    def writer() -> None:
        try:
            for chunk in chunks:
                write(chunk)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)] + [threading.Thread(target=reader)
                                                                   for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    good = {c.data() for c in chunks}
    assert all(data is None or data in good for data in seen)
    assert [c.data() for c in store.get_chunks([(c.id, 20000) for c in chunks])] == [c.data() for c in chunks]


def test_capabilities_are_declared_by_the_methods_a_store_has(backend: Backend) -> None:
    store = backend.store
    assert isinstance(store, ReadStore)
    assert isinstance(store, WriteStore) == (backend.capability in ("write", "prune"))
    assert isinstance(store, PrunableStore) == (backend.capability == "prune")
    assert hasattr(store, "put_chunk") == isinstance(store, WriteStore)
    assert hasattr(store, "iter_chunks") == hasattr(store, "remove_chunk") == isinstance(store, PrunableStore)
    assert not hasattr(store, "writable")


@pytest.mark.parametrize("backend", PRUNABLE, indirect=True)
def test_listing_and_removal_including_a_missing_chunk(backend: Backend) -> None:
    store = backend.store
    assert isinstance(store, PrunableStore)
    chunks = [_chunk(40 + i) for i in range(4)]
    for chunk in chunks:
        store.put_chunk(chunk)
    assert sorted(store.iter_chunks()) == sorted(c.id for c in chunks)
    store.remove_chunk(chunks[0].id)
    assert not store.has_chunk(chunks[0].id)
    store.remove_chunk(chunks[0].id)  # already gone: no error, in every store
    store.remove_chunk(_chunk(49).id)  # never there: no error either
    assert sorted(store.iter_chunks()) == sorted(c.id for c in chunks[1:])
    assert store.remove_stray_files() == 0


class Recording:
    """A local store behind a counter of how it is asked: one chunk at a time or in batches.

    Composition, not a subclass: the compiled build's store classes cannot be subclassed from Python.
    """

    def __init__(self, path: Path) -> None:
        self.local = LocalStore(str(path), StoreOptions(), create=True)
        self.location = str(path)
        self.single = 0
        self.batches: list[int] = []

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        self.single += 1
        return self.local.get_chunk(chunk_id, size_hint)

    def fetch_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk | None]:
        self.batches.append(len(requests))
        return self.local.fetch_chunks(requests)

    def get_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk]:
        self.batches.append(len(requests))
        return self.local.get_chunks(requests)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.local, name)

    def __str__(self) -> str:
        return self.location


def _filled(path: Path, chunks: list[Chunk]) -> Recording:
    store = Recording(path)
    for chunk in chunks:
        store.put_chunk(chunk)
    return store


@pytest.mark.parametrize("wrapper", ["cache-full", "cache-empty", "router", "failover"])
def test_wrappers_pass_batches_on(wrapper: str, tmp_path: Path) -> None:
    chunks = [_chunk(50 + i) for i in range(12)]
    requests = [(c.id, 3000) for c in chunks]
    members: list[Recording]
    store: ReadStore
    if wrapper.startswith("cache"):
        backend = _filled(tmp_path / "backend", chunks)
        cache = _filled(tmp_path / "cache", chunks if wrapper == "cache-full" else [])
        store, members = cached_store(backend, cache), [cache] if wrapper == "cache-full" else [cache, backend]
    elif wrapper == "router":
        first = _filled(tmp_path / "first", chunks[:4])
        second = _filled(tmp_path / "second", chunks)
        store, members = StoreRouter([first, second]), [first, second]
    else:
        active = _filled(tmp_path / "a", chunks)
        store, members = failover_group([active, _filled(tmp_path / "b", chunks)]), [active]
    assert [c.data() for c in store.get_chunks(requests)] == [c.data() for c in chunks]
    for member in members:
        assert member.single == 0, f"{wrapper} read {member} one chunk at a time"
        assert len(member.batches) == 1
    expected = {"cache-full": [12], "cache-empty": [12, 12], "router": [12, 8], "failover": [12]}[wrapper]
    assert [m.batches[0] for m in members] == expected


def test_prune_over_a_failover_group_of_two_local_stores(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(300_000))
    other = tmp_path / "other"
    other.write_bytes(os.urandom(300_000))
    for store in ("a", "b"):
        run_desync("make", "-s", tmp_path / store, tmp_path / "keep.caibx", blob)
        run_desync("make", "-s", tmp_path / store, tmp_path / "drop.caibx", other)
    proc = run_desync("prune", "-y", "-s", f"{tmp_path / 'a'}|{tmp_path / 'b'}", tmp_path / "keep.caibx")
    assert b"removed" in proc.stderr
    keep = set(run_desync("list-chunks", tmp_path / "keep.caibx").stdout.decode().split())
    for store in ("a", "b"):
        left = {p.name.removesuffix(".cacnk") for p in (tmp_path / store).glob("*/*.cacnk")}
        assert left == keep


@pytest.mark.parametrize(("args", "message"), [
    (["prune", "-y", "-s", "http://127.0.0.1:9/"],
     "store http://127.0.0.1:9/ cannot remove chunks (prune needs a local, SFTP or S3 store)"),
    (["verify", "-r", "-s", "http://127.0.0.1:9/"],
     "store http://127.0.0.1:9/ cannot remove chunks (verify -r needs a local, SFTP or S3 store)"),
    (["verify", "-s", "ssh://127.0.0.1/x"],
     "store ssh://127.0.0.1/x cannot list its chunks (verify needs a local, SFTP or S3 store)"),
    (["make", "-s", "ssh://127.0.0.1/x"],
     "store ssh://127.0.0.1/x cannot store chunks (make needs a local, SFTP, S3 or HTTP store)"),
])
def test_a_command_names_the_capability_a_store_lacks(args: list[str], message: str, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(10_000))
    run_desync("make", tmp_path / "x.caibx", blob)
    tail = [tmp_path / "out.caibx", blob] if args[0] == "make" else [tmp_path / "x.caibx"] if args[0] == "prune" \
        else []
    proc = run_desync(*args, *tail, check=False)
    assert assert_one_line_error(proc, 2) == f"desync: error: {message}"


@pytest.mark.parametrize("location", ["x.caibx", "file:///x.caibx", "-", "http://h/x.caibx", "https://h/x.caibx",
                                      "sftp://h/x.caibx", "s3+http://h/b/x.caibx", "s3+https://h/b/x.caibx"])
def test_index_stores_declare_reading_and_writing(location: str) -> None:
    assert isinstance(index_store(location), IndexWriteStore)


def test_an_index_store_that_can_only_be_read_is_refused_for_writing(tmp_path: Path) -> None:
    from desync.errors import InvalidArgument
    from desync.index import Index

    register_index_scheme("readonly-test", "desync.stores.http:read_http_index")
    try:
        store = index_store("readonly-test://h/x.caibx")
        assert isinstance(store, IndexReadStore) and not isinstance(store, IndexWriteStore)
        with pytest.raises(InvalidArgument, match="^index location readonly-test://h/x.caibx cannot be written"):
            write_index("readonly-test://h/x.caibx", Index(0, 16384, 65536, 262144))
    finally:
        indexes._SCHEMES.pop("readonly-test")


def test_verify_of_a_missing_store_directory_does_not_create_it(tmp_path: Path) -> None:
    proc = run_desync("verify", "-s", tmp_path / "absent", check=False)
    assert assert_one_line_error(proc) == f"desync: error: store {tmp_path / 'absent'} does not exist"
    assert not (tmp_path / "absent").exists()
