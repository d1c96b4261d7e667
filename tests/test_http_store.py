"""The HTTP store client: extract/make/cache against static servers and our chunk-server."""

import os
import random
import shutil
from pathlib import Path

import pytest

from conftest import assert_one_line_error, desync_env, run_desync
from http_util import FlakyProxy, ServerProcess, StaticServer, free_port, in_process_server


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(blob, index, store): 1 MiB random data in about 60 chunks."""
    d = tmp_path_factory.mktemp("blob")
    data = random.Random(4).randbytes(1 << 20)
    (d / "blob").write_bytes(data)
    run_desync("make", "-m", "4:16:64", "-s", d / "store", d / "blob.caibx", d / "blob")
    return d / "blob", d / "blob.caibx", d / "store"


def test_extract_from_a_static_web_server(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, idx, store = blob
    with StaticServer(store) as web:
        run_desync("extract", "-s", web.url, idx, tmp_path / "out")
        run_desync("extract", "-s", web.url.rstrip("/"), idx, tmp_path / "out2")
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    assert (tmp_path / "out2").read_bytes() == src.read_bytes()


def test_uncompressed_store_over_http(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, idx, _ = blob
    plain = tmp_path / "plain"
    run_desync("make", "-u", "-m", "4:16:64", "-s", plain, tmp_path / "x.caibx", src)
    assert not list(plain.rglob("*.cacnk"))
    with StaticServer(plain) as web:
        run_desync("extract", "-u", "-s", web.url, idx, tmp_path / "out")
        proc = run_desync("extract", "-s", web.url, idx, tmp_path / "out2", check=False)
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    assert "missing" in assert_one_line_error(proc)


def test_miss_falls_through_to_the_next_store(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, idx, store = blob
    partial = tmp_path / "partial"
    shutil.copytree(store, partial)
    prefixes = sorted(p for p in partial.iterdir() if p.is_dir())
    for p in prefixes[: len(prefixes) // 2]:
        shutil.rmtree(p)
    with StaticServer(partial) as web:
        run_desync("extract", "-s", web.url, "-s", store, idx, tmp_path / "out")
        proc = run_desync("extract", "-s", web.url, idx, tmp_path / "out2", check=False)
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    assert "missing from store http://127.0.0.1" in assert_one_line_error(proc)
    assert not (tmp_path / "out2").exists()


def test_make_and_cache_through_a_writable_chunk_server(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, idx, store = blob
    served, cached = tmp_path / "served", tmp_path / "cached"
    served.mkdir()
    cached.mkdir()
    with ServerProcess("chunk-server", "-w", "-s", served) as up, ServerProcess("chunk-server", "-w", "-s", cached) as cache:
        run_desync("make", "-m", "4:16:64", "-s", up.url, tmp_path / "x.caibx", src)
        assert (tmp_path / "x.caibx").read_bytes() == idx.read_bytes()
        assert sorted(p.name for p in served.rglob("*.cacnk")) == sorted(p.name for p in store.rglob("*.cacnk"))
        run_desync("extract", "-s", up.url, "-c", cache.url, idx, tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == src.read_bytes()
        assert len(list(cached.rglob("*.cacnk"))) == len(list(store.rglob("*.cacnk")))
    for f in served.rglob("*.cacnk"):
        assert f.stat().st_mode & 0o777 == 0o444


def test_put_refused_without_writable_flag(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, _, _ = blob
    (tmp_path / "ro").mkdir()
    with ServerProcess("chunk-server", "-s", tmp_path / "ro") as srv:
        proc = run_desync("make", "-s", srv.url, tmp_path / "x.caibx", src, check=False)
    line = assert_one_line_error(proc)
    assert "HTTP 400" in line and "not enabled" in line
    assert not list((tmp_path / "ro").iterdir())


def test_remote_indexes_through_the_index_server(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, idx, store = blob
    indexes = tmp_path / "indexes"
    indexes.mkdir()
    with ServerProcess("index-server", "-w", "-s", indexes) as isrv, ServerProcess("chunk-server", "-s", store) as csrv:
        url = f"{isrv.url}sub/path/blob.caibx"
        run_desync("make", "-m", "4:16:64", url, src)
        assert (indexes / "blob.caibx").read_bytes() == idx.read_bytes()
        run_desync("extract", "-s", csrv.url, url, tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == src.read_bytes()
        listed = run_desync("list-chunks", url).stdout.decode().split()
        assert listed == run_desync("list-chunks", idx).stdout.decode().split()
        proc = run_desync("list-chunks", f"{isrv.url}nope.caibx", check=False)
        assert "not found" in assert_one_line_error(proc)


def test_authorization(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, idx, store = blob
    home = tmp_path / "home"
    cfg = home / ".config" / "desync" / "config.json"
    cfg.parent.mkdir(parents=True)
    with ServerProcess("chunk-server", "-s", store, env=desync_env(DESYNC_HTTP_AUTH="Bearer s3cret")) as srv:
        proc = run_desync("extract", "-s", srv.url, idx, tmp_path / "out", check=False,
                          env=desync_env(HOME=str(home)))
        assert "HTTP 401" in assert_one_line_error(proc)
        cfg.write_text('{"store-options": {"http://127.0.0.1:*/": {"http-auth": "Bearer s3cret"}}}')
        run_desync("extract", "-s", srv.url, idx, tmp_path / "out", env=desync_env(HOME=str(home)))
    assert (tmp_path / "out").read_bytes() == src.read_bytes()


def test_failover_group(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, idx, store = blob
    dead = f"http://127.0.0.1:{free_port()}/"
    with StaticServer(store) as web:
        run_desync("extract", "--error-retry", "0", "-s", f"{dead}|{web.url}", idx, tmp_path / "out")
        # A miss is not a failure: the group answers "missing" without trying the next member.
        empty = tmp_path / "empty"
        empty.mkdir()
        with StaticServer(empty) as nothing:
            proc = run_desync("extract", "-s", f"{nothing.url}|{web.url}", idx, tmp_path / "o2", check=False)
            assert "missing" in assert_one_line_error(proc)
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    proc = run_desync("extract", "--error-retry", "0", "-s", f"{dead}|{dead}", idx, tmp_path / "o3", check=False)
    assert "all stores of failover group" in assert_one_line_error(proc)


def test_failover_switches_member_on_errors(tmp_path: Path) -> None:
    from desync.chunk import Chunk
    from desync.digest import SHA512_256_DIGEST
    from desync.errors import ChunkMissing
    from desync.stores import LocalStore, StoreOptions, open_store
    from desync.stores.failover import FailoverGroup

    dead = open_store(f"http://127.0.0.1:{free_port()}/", StoreOptions(error_retry=0))
    local = LocalStore(str(tmp_path / "s"), StoreOptions(), create=True)
    chunk = Chunk.from_data(b"present" * 100, SHA512_256_DIGEST)
    local.put_chunk(chunk)
    group = FailoverGroup([dead, local])
    assert group.has_chunk(chunk.id)
    assert group.active == 1
    with pytest.raises(ChunkMissing):
        group.get_chunk(bytes(32))
    assert group.active == 1
    assert group.get_chunk(chunk.id).data() == b"present" * 100


def test_flaky_network_with_and_without_retries(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, idx, store = blob
    with ServerProcess("chunk-server", "-s", store) as srv, FlakyProxy(srv.port, every=4, stall=1.5) as proxy:
        run_desync("extract", "--timeout", "0.5", "--error-retry", "6", "--error-retry-base-interval", "0.01",
                   "-s", proxy.url, idx, tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == src.read_bytes()
        assert proxy.spoiled >= 6
        proc = run_desync("extract", "--timeout", "0.5", "--error-retry", "0", "-s", proxy.url, idx,
                          tmp_path / "out2", check=False)
    line = assert_one_line_error(proc)
    assert "HTTP 500" in line or "timed out" in line or "closed" in line, line
    assert not (tmp_path / "out2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_http_store_api(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from desync.chunk import Chunk
    from desync.digest import SHA512_256_DIGEST
    from desync.errors import ChunkMissing, StoreError
    from desync.server.chunks import ChunkService
    from desync.stores import LocalStore, PrunableStore, StoreOptions, WriteStore, open_store

    local = LocalStore(str(tmp_path / "s"), StoreOptions(), create=True)
    service = ChunkService(local, SHA512_256_DIGEST, writable=True)
    with in_process_server(service) as (_, port):
        store = open_store(f"http://127.0.0.1:{port}", StoreOptions(error_retry=0))
        assert not isinstance(store, PrunableStore)
        assert isinstance(store, WriteStore)
        good = Chunk.from_data(b"hello" * 1000, SHA512_256_DIGEST)
        assert not store.has_chunk(good.id)
        with pytest.raises(ChunkMissing):
            store.get_chunk(good.id)
        store.put_chunk(good)
        assert store.has_chunk(good.id)
        assert store.get_chunk(good.id).data() == b"hello" * 1000
        with pytest.raises(StoreError, match="HTTP 400"):
            store.put_chunk(Chunk(bytes(32), data=b"not this"))
        assert not hasattr(store, "iter_chunks") and not hasattr(store, "remove_chunk")
        store.close()
    assert os.listdir(tmp_path / "s") == [good.id.hex()[:4]]
