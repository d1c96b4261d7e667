"""Store upkeep and inspection commands: verify, verify-index, chop, cache, prune, cat, chunk, info."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from conftest import FIXTURES, assert_one_line_error, run_desync

GO = FIXTURES / "desync"


@pytest.fixture()
def made(tmp_path: Path) -> tuple[Path, Path, bytes]:
    data = os.urandom(700_000) + bytes(300_000)
    (tmp_path / "in").write_bytes(data)
    run_desync("make", "-s", tmp_path / "s", "-m", "4:16:64", tmp_path / "x.caibx", tmp_path / "in")
    return tmp_path / "x.caibx", tmp_path / "s", data


def _corrupt(path: Path) -> None:
    os.chmod(path, 0o644)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x55
    path.write_bytes(bytes(raw))


def test_verify_reports_and_repairs_invalid_chunks(made: tuple[Path, Path, bytes]) -> None:
    _, store, _ = made
    assert run_desync("verify", "-s", store).returncode == 0
    victim = sorted(store.rglob("*.cacnk"))[3]
    _corrupt(victim)
    proc = run_desync("verify", "-s", store, check=False)
    assert proc.returncode == 1
    assert victim.name[:64].encode() in proc.stderr
    assert victim.exists()
    assert run_desync("verify", "-r", "-s", store).returncode == 0
    assert not victim.exists()
    assert run_desync("verify", "-s", store).returncode == 0


def test_verify_index_accepts_match_and_reports_mismatch(made: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    index, _, data = made
    assert run_desync("verify-index", index, tmp_path / "in").returncode == 0
    changed = bytearray(data)
    changed[123_456] ^= 1
    (tmp_path / "changed").write_bytes(bytes(changed))
    proc = run_desync("verify-index", index, tmp_path / "changed", check=False)
    assert proc.returncode == 1
    assert b"does not match" in proc.stderr


def test_chop_stores_chunks_and_honours_ignore(made: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    index, store, data = made
    run_desync("chop", "-s", tmp_path / "chopped", index, tmp_path / "in")
    assert sorted(p.name for p in (tmp_path / "chopped").rglob("*.cacnk")) == \
        sorted(p.name for p in store.rglob("*.cacnk"))
    run_desync("chop", "-s", tmp_path / "none", "--ignore", index, index, tmp_path / "in")
    assert not list((tmp_path / "none").rglob("*.cacnk"))
    (tmp_path / "other").write_bytes(os.urandom(len(data)))
    proc = run_desync("chop", "-s", tmp_path / "bad", index, tmp_path / "other", check=False)
    assert "does not match" in assert_one_line_error(proc)


def test_cache_prefetches_missing_chunks(made: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    index, store, data = made
    run_desync("cache", "-s", store, "-c", tmp_path / "cache", index)
    n = len(list(store.rglob("*.cacnk")))
    assert len(list((tmp_path / "cache").rglob("*.cacnk"))) == n
    run_desync("extract", "-s", tmp_path / "cache", index, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    run_desync("cache", "-s", store, "-c", tmp_path / "cache2", "--ignore", index, index)
    assert not list((tmp_path / "cache2").rglob("*.cacnk"))


def test_prune_removes_unreferenced_chunks(made: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    index, store, data = made
    (tmp_path / "other").write_bytes(os.urandom(200_000))
    run_desync("make", "-s", store, "-m", "4:16:64", tmp_path / "other.caibx", tmp_path / "other")
    before = len(list(store.rglob("*.cacnk")))
    prefix = sorted(p for p in store.iterdir() if p.is_dir())[0]
    (prefix / ".tmp-cacnkdeadbeef").write_bytes(b"stray")
    os.utime(prefix / ".tmp-cacnkdeadbeef", (1.0, 1.0))  # untagged: removed only when a day old
    refused = run_desync("prune", "-s", store, index, check=False)
    assert refused.returncode == 2
    assert len(list(store.rglob("*.cacnk"))) == before
    run_desync("prune", "-y", "-s", store, index)
    assert len(list(store.rglob("*.cacnk"))) < before
    assert not list(store.rglob(".tmp-cacnk*"))
    run_desync("extract", "-s", store, index, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    assert run_desync("extract", "-s", store, tmp_path / "other.caibx", tmp_path / "o", check=False).returncode == 1


def test_cat_whole_blob_and_ranges(made: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    index, store, data = made
    assert run_desync("cat", "-s", store, index).stdout == data
    for offset, length in [(0, 1), (5, 100_000), (65_530, 20), (len(data) - 3, 10), (len(data), 5)]:
        out = run_desync("cat", "-s", store, "-o", offset, "-l", length, index).stdout
        assert out == data[offset:offset + length]
    run_desync("cat", "-s", store, "-o", 1000, index, tmp_path / "tail")
    assert (tmp_path / "tail").read_bytes() == data[1000:]
    assert_one_line_error(run_desync("cat", "-s", store, "-o", len(data) + 1, index, check=False))


def test_chunk_prints_boundaries_and_ids() -> None:
    out = run_desync("chunk", "-m", "2:8:32", GO / "blob1").stdout.decode().splitlines()
    listed = run_desync("list-chunks", GO / "blob1.caibx").stdout.decode().split()
    assert [line.split("\t")[2] for line in out] == listed
    data = (GO / "blob1").read_bytes()
    pos = 0
    for line in out:
        start, size, cid = line.split("\t")
        assert int(start) == pos
        assert hashlib.new("sha512_256", data[pos:pos + int(size)]).hexdigest() == cid
        pos += int(size)
    assert pos == len(data)


def test_info_counts_chunks_in_stores_and_cache(tmp_path: Path) -> None:
    info = json.loads(run_desync("info", "-s", GO / "blob1.store", GO / "blob1.caibx").stdout)
    listed = run_desync("list-chunks", GO / "blob1.caibx").stdout.decode().split()
    assert info["total"] == len(listed)
    assert info["unique"] == len(set(listed))
    assert info["in-store"] == info["unique"]
    assert info["size"] == (GO / "blob1").stat().st_size
    assert (info["chunk-size-min"], info["chunk-size-avg"], info["chunk-size-max"]) == (2048, 8192, 32768)
    (tmp_path / "empty").mkdir()
    info = json.loads(run_desync("info", "-s", tmp_path / "empty", "-c", tmp_path / "empty",
                                 GO / "blob1.caibx").stdout)
    assert info["in-store"] == 0 and info["in-cache"] == 0
    plain = run_desync("info", "-f", "plain", GO / "blob1.caibx").stdout.decode()
    assert f"Total chunks: {len(listed)}" in plain
