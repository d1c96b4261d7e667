"""index-server against hostile files and clients: FIFOs, huge files, symlinks out of its directory, big uploads.

Memory is the server's peak resident size (VmHWM) after the requests: it
must stay under 256 MiB whatever it is asked to serve or store.
"""

import http.client
import os
import random
import struct
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_one_line_error, run_desync
from http_util import ServerProcess, request

from desync.errors import FormatError
from desync.index import INDEX_SIZE_LIMIT, IndexCheck, parse

RSS_LIMIT = 256 << 20
BIG_CHUNKS = 2_500_000  # a 100 MB index


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("idx")
    (d / "blob").write_bytes(random.Random(3).randbytes(300 << 10))
    run_desync("make", "-m", "16:64:256", "-s", d / "store", d / "blob.caibx", d / "blob")
    return (d / "blob.caibx").read_bytes()


def big_index(small: bytes, n: int) -> bytes:
    """A valid index of ``n`` chunks of 64 KiB (the small index's header, a table made up here)."""
    items = struct.Struct("<Q32s")
    table = b"".join(items.pack((i + 1) << 16, i.to_bytes(32, "little")) for i in range(n))
    tail = struct.pack("<QQQQQ", 0, 0, 48, 16 + 40 * n + 40, 0x4B4F050E5549ECD1)
    return small[:64] + table + tail


@pytest.fixture
def served(tmp_path: Path, small_index: bytes) -> Path:
    d = tmp_path / "served"
    d.mkdir()
    (d / "good.caibx").write_bytes(small_index)
    return d


def test_get_of_a_fifo_is_refused_at_once_and_the_server_keeps_serving(served: Path) -> None:
    os.mkfifo(served / "pipe.caibx")
    with ServerProcess("index-server", "-s", served) as srv:
        started = time.monotonic()
        status, _ = request(srv.port, "GET", "/pipe.caibx")
        assert status == 400 and time.monotonic() - started < 5
        srv.wait_for("not a regular file")
        assert request(srv.port, "GET", "/good.caibx") == (200, (served / "good.caibx").read_bytes())


def test_get_of_a_huge_sparse_file_is_refused_unread(served: Path) -> None:
    with open(served / "huge.caibx", "wb") as f:
        f.truncate(3 << 30)
    with ServerProcess("index-server", "-s", served) as srv:
        started = time.monotonic()
        assert request(srv.port, "GET", "/huge.caibx")[0] == 400
        assert time.monotonic() - started < 5
        srv.wait_for(f"more than the {INDEX_SIZE_LIMIT} allowed")
        assert peak_rss(srv.proc.pid) < RSS_LIMIT


def test_symlinks_are_followed_only_to_files_of_the_served_directory(served: Path, tmp_path: Path,
                                                                      small_index: bytes) -> None:
    (tmp_path / "secret.caibx").write_bytes(small_index)
    (served / "escape.caibx").symlink_to(tmp_path / "secret.caibx")
    (served / "relative.caibx").symlink_to("../secret.caibx")
    (served / "sub").mkdir()
    (served / "sub" / "nested.caibx").write_bytes(small_index)
    (served / "nested.caibx").symlink_to("sub/nested.caibx")
    (served / "alias.caibx").symlink_to("good.caibx")
    with ServerProcess("index-server", "-s", served) as srv:
        for name in ("escape.caibx", "relative.caibx", "nested.caibx"):
            assert request(srv.port, "GET", f"/{name}")[0] == 404, name
        srv.wait_for("a symlink to a file outside")
        assert request(srv.port, "GET", "/alias.caibx") == (200, small_index)
        assert request(srv.port, "HEAD", "/alias.caibx")[0] == 200


def _put_file(port: int, name: str, path: Path) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        with open(path, "rb") as body:
            conn.request("PUT", f"/{name}", body=body, headers={"Content-Length": str(path.stat().st_size)})
            resp = conn.getresponse()
            resp.read()
            return resp.status
    finally:
        conn.close()


def test_a_100_mb_upload_and_download_stay_under_256_mib(served: Path, tmp_path: Path, small_index: bytes) -> None:
    upload = tmp_path / "upload.caibx"
    upload.write_bytes(big_index(small_index, BIG_CHUNKS))
    with ServerProcess("index-server", "-w", "-s", served) as srv:
        assert _put_file(srv.port, "big.caibx", upload) == 200
        assert (served / "big.caibx").read_bytes() == upload.read_bytes()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
        conn.request("GET", "/big.caibx")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == upload.read_bytes()
        conn.close()
        assert peak_rss(srv.proc.pid) < RSS_LIMIT
    assert sorted(p.name for p in served.iterdir()) == ["big.caibx", "good.caibx"]


@pytest.mark.parametrize("damage", ["truncated", "trailing", "bad-order"])
def test_an_invalid_upload_leaves_nothing_behind(served: Path, tmp_path: Path, small_index: bytes,
                                                 damage: str) -> None:
    data = big_index(small_index, 1000)
    if damage == "truncated":
        data = data[:-41]
    elif damage == "trailing":
        data += b"x"
    else:
        data = data[:64] + data[104:144] + data[64:104] + data[144:]
    (tmp_path / "bad.caibx").write_bytes(data)
    with ServerProcess("index-server", "-w", "-s", served) as srv:
        assert _put_file(srv.port, "bad.caibx", tmp_path / "bad.caibx") == 415
    assert sorted(p.name for p in served.iterdir()) == ["good.caibx"]


def test_a_local_index_too_large_to_be_one_is_refused_unread(tmp_path: Path) -> None:
    with open(tmp_path / "huge.caibx", "wb") as f:
        f.truncate(3 << 30)
    started = time.monotonic()
    proc = run_desync("list-chunks", tmp_path / "huge.caibx", check=False, timeout=60)
    assert "larger than the 1073741824 bytes allowed" in assert_one_line_error(proc)
    assert time.monotonic() - started < 30


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_index_check_in_pieces_agrees_with_parse(small_index: bytes, data: st.DataObject) -> None:
    raw = bytearray(small_index)
    for _ in range(data.draw(st.integers(0, 3))):
        kind = data.draw(st.sampled_from(["flip", "cut", "add"]))
        if kind == "flip" and raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "cut":
            del raw[data.draw(st.integers(0, len(raw))):]
        else:
            raw += data.draw(st.binary(max_size=80))
    try:
        parse(bytes(raw), "x")
        expected = ""
    except FormatError as exc:
        expected = str(exc)
    check = IndexCheck("x")
    got = ""
    try:
        pos = 0
        while pos < len(raw):
            step = data.draw(st.integers(1, 200))
            check.feed(raw[pos:pos + step])
            pos += step
        check.finish()
    except FormatError as exc:
        got = str(exc)
    assert got == expected
