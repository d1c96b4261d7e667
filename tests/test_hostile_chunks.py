"""Hostile chunk files, uploads and HTTP answers: refused with one line, in bounded time and memory.

Memory is measured, not assumed: a CLI run's peak resident size comes from
``os.wait4`` on that very child, a server's from ``VmHWM`` in its
``/proc`` status.  The bound is the issue's 256 MiB.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
import measure
from conftest import assert_one_line_error, run_desync, sha512_256
from http_util import ServerProcess, request
from test_compression import zstd_bomb

from desync import digest as digest_mod
from desync.chunk import Chunk
from desync.errors import StoreError
from desync.stores import LocalStore, StoreOptions
from desync.stores.failover import FailoverGroup
from desync.stores.http import HTTPStore

RSS_LIMIT_KIB = 256 * 1024
# A check that streams chunk files holds a piece per worker, never a whole chunk file (~130 MiB).
STREAMED_RSS_KIB = 128 * 1024
SHA = digest_mod.SHA512_256_DIGEST


def run_measured(*args: object, timeout: float = 60) -> tuple[int, str, int]:
    """Run the CLI; (exit status, stderr, peak resident KiB of the desync process)."""
    result = measure.run_measured(*args, timeout=timeout)
    if result.returncode == measure.TIMED_OUT:
        raise AssertionError(f"desync {' '.join(map(str, args))} still running after {timeout}s")
    return result.returncode, result.error, result.peak_rss // 1024


def one_line(status: int, err: str, code: int = 1) -> str:
    return assert_one_line_error(subprocess.CompletedProcess([], status, b"", err.encode()), code)


def put_file(store: Path, chunk_id: bytes, suffix: str = ".cacnk") -> Path:
    h = chunk_id.hex()
    (store / h[:4]).mkdir(parents=True, exist_ok=True)
    return store / h[:4] / (h + suffix)


@pytest.fixture
def blob_store(tmp_path: Path) -> tuple[Path, Path, list[bytes]]:
    """A store and an index of a blob of at least three chunks (the maximum size forces them), made by desync."""
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(200_000))
    store = tmp_path / "store"
    run_desync("make", "-s", store, "-m", "16:64:96", tmp_path / "blob.caibx", blob)
    ids = sorted({bytes.fromhex(p.name[:64]) for p in store.rglob("*.cacnk")})
    return store, tmp_path / "blob.caibx", ids


def test_fifo_under_a_chunk_name_fails_extract_and_verify_at_once(blob_store: tuple[Path, Path, list[bytes]],
                                                                  tmp_path: Path) -> None:
    store, index, ids = blob_store
    path = put_file(store, ids[0])
    path.unlink()
    os.mkfifo(path)  # no writer: a blocking open would hang for ever
    for args in (("extract", "-s", store, index, tmp_path / "out"), ("verify", "-s", store)):
        started = time.monotonic()
        status, err, _ = run_measured(*args, timeout=30)
        assert time.monotonic() - started < 20
        if args[0] == "extract":
            line = one_line(status, err)
            assert ids[0].hex() in line and "not a regular file" in line
        else:  # verify names each bad chunk, then sums up
            assert status == 1 and "Traceback" not in err and "internal error" not in err
            assert f"{ids[0].hex()} in store {store} is invalid" in err and "not a regular file" in err


def test_huge_sparse_chunk_file_is_not_read(blob_store: tuple[Path, Path, list[bytes]], tmp_path: Path) -> None:
    store, index, ids = blob_store
    for cid in ids[:2]:  # two, so the batched reader sees them too
        path = put_file(store, cid)
        path.chmod(0o644)
        with open(path, "r+b") as f:
            f.truncate(3 << 30)
    status, err, rss = run_measured("extract", "-s", store, index, tmp_path / "out", timeout=60)
    line = one_line(status, err)
    assert "allowed" in line and rss < RSS_LIMIT_KIB
    status, err, rss = run_measured("verify", "-s", store, timeout=60)
    assert status == 1 and err.count("allowed") == 2 and rss < RSS_LIMIT_KIB


def test_verify_of_a_store_of_bombs_stays_small(tmp_path: Path) -> None:
    store = tmp_path / "store"
    bomb = zstd_bomb(2 << 30)  # 64 KiB of RLE blocks claiming 2 GiB
    ids = [SHA.sum(os.urandom(16)) for _ in range(8)]
    for cid in ids:
        put_file(store, cid).write_bytes(bomb)
    status, err, rss = run_measured("verify", "-n", "4", "-s", store, timeout=120)
    assert status != 0
    assert sum(cid.hex() in err for cid in ids) == len(ids)
    assert "larger than expected" in err
    assert rss < RSS_LIMIT_KIB, f"verify peaked at {rss // 1024} MiB"


def _sparse_zstd_frame(path: Path, content: int) -> None:
    """A zstd frame of raw 128 KiB blocks of zeros, ``content`` bytes in all: only its block headers take disk."""
    block = 128 << 10
    with open(path, "wb") as f:
        f.write(b"\x28\xb5\x2f\xfd\x00\x58")  # no content size, 2 MiB window
        for start in range(0, content, block):
            size = min(block, content - start)
            f.write(((size << 3) | (start + size >= content)).to_bytes(3, "little"))
            f.seek(size, os.SEEK_CUR)
        f.truncate()


def test_verify_of_a_store_of_huge_chunk_files_streams_them(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ids = [SHA.sum(os.urandom(16)) for _ in range(8)]
    for cid in ids[:4]:  # compressed: decoded as they are read
        _sparse_zstd_frame(put_file(store, cid), 120 << 20)
    for cid in ids[4:]:  # uncompressed: hashed as they are read
        with open(put_file(store, cid, ""), "wb") as f:
            f.truncate(120 << 20)
    status, err, rss = run_measured("verify", "-n", "4", "-s", store, timeout=120)
    assert status == 1
    assert all(f"{cid.hex()} in store {store} is invalid: content hashes to" in err for cid in ids), err
    assert rss < STREAMED_RSS_KIB, f"verify peaked at {rss // 1024} MiB"


def test_chunk_with_trailing_bytes_is_invalid(blob_store: tuple[Path, Path, list[bytes]], tmp_path: Path) -> None:
    store, index, ids = blob_store
    path = put_file(store, ids[1])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"junk")
    line = one_line(*run_measured("extract", "-s", store, index, tmp_path / "out")[:2])
    assert ids[1].hex() in line and "trailing data" in line
    status, err, _ = run_measured("verify", "-s", store)
    assert status != 0 and "trailing data" in err


def test_skip_verify_of_a_corrupt_chunk_names_chunk_and_store(blob_store: tuple[Path, Path, list[bytes]],
                                                              tmp_path: Path) -> None:
    store, index, ids = blob_store
    path = put_file(store, ids[0])
    path.chmod(0o644)
    raw = path.read_bytes()
    path.write_bytes(raw[:8] + bytes(b ^ 0x5A for b in raw[8:]))
    status, err, _ = run_measured("extract", "--skip-verify", "-s", store, index, tmp_path / "out")
    line = one_line(status, err)
    assert "internal error" not in line
    assert ids[0].hex() in line and str(store) in line


def test_upload_bomb_to_a_writable_chunk_server_is_refused_in_little_memory(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    bomb = zstd_bomb(2 << 30)
    cid = SHA.sum(b"anything").hex()
    with ServerProcess("chunk-server", "-w", "-s", store) as srv:
        for _ in range(3):
            status, body = request(srv.port, "PUT", f"/{cid[:4]}/{cid}.cacnk", bomb)
            assert status == 400 and b"larger than expected" in body
        with open(f"/proc/{srv.proc.pid}/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        assert peak < RSS_LIMIT_KIB, f"chunk-server peaked at {peak // 1024} MiB"
        data = b"a good chunk" * 100
        good = sha512_256(data)
        assert request(srv.port, "PUT", f"/{good[:4]}/{good}.cacnk",
                       zstandard.ZstdCompressor(write_content_size=False).compress(data)) == (200, b"")
    assert not list(store.glob(f"{cid[:4]}/*"))


class _LyingServer:
    """Answers every request with a 1 TB Content-Length and a few bytes, then closes; counts requests."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n" + b"x" * 1000)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def liar() -> Iterator[_LyingServer]:
    server = _LyingServer()
    yield server
    server.close()


def test_http_body_larger_than_a_chunk_is_a_retried_store_error(liar: _LyingServer, tmp_path: Path) -> None:
    options = StoreOptions(error_retry=1, error_retry_base_interval=0.01, timeout=5)
    http = HTTPStore(f"http://127.0.0.1:{liar.port}/", options)
    data = os.urandom(5000)
    chunk = Chunk.from_data(data, SHA)
    with pytest.raises(StoreError, match="larger than") as info:
        http.get_chunk(chunk.id, len(data))
    assert "after 2 attempts" in str(info.value) and liar.requests == 2
    good = LocalStore(str(tmp_path / "good"), StoreOptions(), create=True)
    good.put_chunk(chunk)
    group = FailoverGroup([http, good])
    assert group.get_chunk(chunk.id, len(data)).data() == data
    assert group.get_chunks([(chunk.id, len(data)), (chunk.id, len(data))])[1].data() == data
    http.close()


def test_extract_fails_over_from_a_lying_http_store(liar: _LyingServer, blob_store: tuple[Path, Path, list[bytes]],
                                                   tmp_path: Path) -> None:
    store, index, _ = blob_store
    status, err, rss = run_measured("extract", "--error-retry", "0", "-s", f"http://127.0.0.1:{liar.port}/|{store}",
                                    index, tmp_path / "out", timeout=60)
    assert status == 0, err
    assert (tmp_path / "out").read_bytes() == (tmp_path / "blob").read_bytes()
    assert rss < RSS_LIMIT_KIB


def test_pull_server_reports_a_fifo_chunk_missing_instead_of_hanging(
        blob_store: tuple[Path, Path, list[bytes]]) -> None:
    from test_ssh_protocol import _Conversation

    from desync.protocol import messages as m

    store, _, ids = blob_store
    path = put_file(store, ids[0])
    path.unlink()
    os.mkfifo(path)
    conv = _Conversation("pull", "-", "-", "-", str(store))
    try:
        conv.send(m.hello(m.PULL_CHUNKS) + m.request(ids, False))
        msgs = conv.receive(1 + len(ids))
        assert [x.body for x in msgs if x.type == m.MISSING] == [ids[0]]
        assert sorted(m.parse_chunk_flags(x.body)[1] for x in msgs if x.type == m.CHUNK) == ids[1:]
        conv.send(m.goodbye())
        assert conv.end() == 0
    finally:
        if conv.proc.poll() is None:
            conv.proc.kill()
            conv.proc.wait()


def test_verify_without_a_size_streams_a_bomb_in_little_memory() -> None:
    """What every size-unknown check (verify, uploads, push) goes through: a piece at a time into the hash."""
    import tracemalloc

    from desync.errors import ChunkInvalid

    bomb = zstd_bomb(300 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ChunkInvalid, match="in store pushed is invalid: zstd frame larger than expected"):
            Chunk(SHA.sum(b"x"), compressed=bomb).verify(SHA, "pushed")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak >> 20} MiB"


def _large_uncompressed_chunks(store: Path, count: int, size: int) -> list[str]:
    """``count`` valid chunks of ``size`` bytes in an uncompressed store (sparse files: cheap to make)."""
    ids = []
    for i in range(count):
        data = bytes(size - 1) + bytes([i + 1])
        cid = sha512_256(data)
        (store / cid[:4]).mkdir(parents=True, exist_ok=True)
        with open(store / cid[:4] / cid, "wb") as f:
            f.truncate(size - 1)
            f.seek(size - 1)
            f.write(bytes([i + 1]))
        ids.append(cid)
    return ids


def test_concurrent_large_gets_and_puts_take_turns_on_a_chunk_server(tmp_path: Path) -> None:
    """Each connection may ask for (or send) a ~60 MiB chunk; together they must not hold one each."""
    store = tmp_path / "store"
    store.mkdir()
    size = 60 << 20
    ids = _large_uncompressed_chunks(store, 4, size)
    upload = bytes(size - 2) + b"up"
    with ServerProcess("chunk-server", "-u", "-w", "-s", store) as srv:
        results: list[int] = []

        def get(cid: str) -> None:
            status, body = request(srv.port, "GET", f"/{cid[:4]}/{cid}")
            results.append(status if len(body) == size else -1)

        def put() -> None:
            cid = sha512_256(upload)
            results.append(request(srv.port, "PUT", f"/{cid[:4]}/{cid}", upload)[0])

        workers = [threading.Thread(target=get, args=(cid,)) for cid in ids] + [threading.Thread(target=put)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        with open(f"/proc/{srv.proc.pid}/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    assert sorted(results) == [200] * 5
    assert peak < RSS_LIMIT_KIB, f"chunk-server peaked at {peak // 1024} MiB"
