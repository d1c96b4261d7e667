"""Store faults: vanished prefix directories, unreadable entries, prune beside writers, killed writers' leftovers."""

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import zstandard

from conftest import NEUTRAL_DIR, assert_one_line_error, desync_env, run_desync, sha512_256
from http_util import ServerProcess, request

PAYLOAD = b"fault payload " * 400
CID = sha512_256(PAYLOAD)
NAME = f"/{CID[:4]}/{CID}.cacnk"


def _other_index(tmp_path: Path) -> Path:
    """An index of unrelated data, made into its own store: pruning by it removes everything else."""
    (tmp_path / "other.bin").write_bytes(b"unrelated " * 100)
    run_desync("make", "-s", tmp_path / "other-store", tmp_path / "other.caibx", tmp_path / "other.bin")
    return tmp_path / "other.caibx"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _tag(pid: int) -> str:
    from desync import tempnames

    return tempnames.owner_tag().replace(f"-{os.getpid()}-", f"-{pid}-")


def test_writable_chunk_server_recreates_a_prefix_directory_prune_removed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    body = zstandard.ZstdCompressor().compress(PAYLOAD)
    with ServerProcess("chunk-server", "-w", "-s", store) as srv:
        assert request(srv.port, "PUT", NAME, body)[0] == 200
        run_desync("prune", "-y", "-s", store, _other_index(tmp_path))
        assert not (store / CID[:4]).exists()
        assert request(srv.port, "PUT", NAME, body)[0] == 200
        assert (store / CID[:4] / f"{CID}.cacnk").exists()


def test_caching_chunk_server_recreates_a_prefix_directory_prune_removed(tmp_path: Path) -> None:
    upstream, cache = tmp_path / "up", tmp_path / "cache"
    (upstream / CID[:4]).mkdir(parents=True)
    (upstream / CID[:4] / f"{CID}.cacnk").write_bytes(zstandard.ZstdCompressor().compress(PAYLOAD))
    with ServerProcess("chunk-server", "-s", upstream, "-c", cache) as srv:
        assert request(srv.port, "GET", NAME)[0] == 200
        assert (cache / CID[:4] / f"{CID}.cacnk").exists()
        run_desync("prune", "-y", "-s", cache, _other_index(tmp_path))
        assert not (cache / CID[:4]).exists()
        assert request(srv.port, "GET", NAME)[0] == 200
        assert (cache / CID[:4] / f"{CID}.cacnk").exists()


def _store_with_chunks(tmp_path: Path) -> Path:
    data = os.urandom(300_000)
    (tmp_path / "in").write_bytes(data)
    run_desync("make", "-s", tmp_path / "s", "-m", "4:16:64", tmp_path / "x.caibx", tmp_path / "in")
    return tmp_path / "s"


def test_verify_reports_every_unreadable_entry_and_repair_removes_what_it_can(tmp_path: Path) -> None:
    store = _store_with_chunks(tmp_path)
    chunks = sorted(store.rglob("*.cacnk"))
    empty_dir, full_dir, loop = chunks[0], chunks[1], chunks[2]
    for victim in (empty_dir, full_dir, loop):
        victim.unlink()
    empty_dir.mkdir()
    full_dir.mkdir()
    (full_dir / "keep").write_bytes(b"someone's")
    os.symlink(loop.name, loop)  # a symlink to itself: ELOOP
    corrupt = chunks[3]
    os.chmod(corrupt, 0o644)
    corrupt.write_bytes(b"\x28\xb5\x2f\xfd garbage")
    proc = run_desync("verify", "-s", store, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    for victim in (empty_dir, full_dir, loop, corrupt):
        assert victim.name[:64] in err, err
    assert "Traceback" not in err and "internal error" not in err
    repaired = run_desync("verify", "-r", "-s", store, check=False)
    err = repaired.stderr.decode()
    assert repaired.returncode == 1, err  # the non-empty directory could not be removed
    assert any(full_dir.name[:64] in line and "cannot be removed" in line for line in err.splitlines()), err
    assert "could not be removed" in err.splitlines()[-1]
    assert not os.path.lexists(empty_dir) and not os.path.lexists(loop) and not corrupt.exists()
    assert (full_dir / "keep").read_bytes() == b"someone's"
    (full_dir / "keep").unlink()
    assert run_desync("verify", "-r", "-s", store).returncode == 0
    assert run_desync("verify", "-s", store).returncode == 0


def test_prune_refuses_while_a_writer_holds_the_store_and_writers_wait_for_prune(tmp_path: Path) -> None:
    store = _store_with_chunks(tmp_path)
    before = sorted(store.rglob("*.cacnk"))
    lock = os.open(store / ".desync-lock", os.O_RDONLY | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)  # what a running make holds
        proc = run_desync("prune", "-y", "-s", store, _other_index(tmp_path), check=False)
        assert "in use" in assert_one_line_error(proc)
        assert sorted(store.rglob("*.cacnk")) == before
        fcntl.flock(lock, fcntl.LOCK_UN)
        fcntl.flock(lock, fcntl.LOCK_EX)  # what a running prune holds
        (tmp_path / "new").write_bytes(os.urandom(100_000))
        make = subprocess.Popen([sys.executable, "-m", "desync", "make", "-s", str(store), str(tmp_path / "n.caibx"),
                                 str(tmp_path / "new")], env=desync_env(), cwd=NEUTRAL_DIR, stderr=subprocess.PIPE)
        time.sleep(1.0)
        assert make.poll() is None and not (tmp_path / "n.caibx").exists()
        fcntl.flock(lock, fcntl.LOCK_UN)
        assert make.wait(60) == 0
    finally:
        os.close(lock)
    run_desync("extract", "-s", store, tmp_path / "n.caibx", tmp_path / "n.out")
    assert (tmp_path / "n.out").read_bytes() == (tmp_path / "new").read_bytes()


def test_prune_and_verify_remove_temp_chunks_of_dead_writers_only(tmp_path: Path) -> None:
    store = _store_with_chunks(tmp_path)
    prefix = sorted(p for p in store.iterdir() if p.is_dir())[0]
    dead = prefix / f".tmp-cacnk.{_tag(_dead_pid())}"
    live = prefix / f".tmp-cacnk.{_tag(os.getppid())}"
    old_foreign = prefix / ".tmp-cacnkdeadbeefdeadbeef"  # untagged (older desync): removed when a day old
    fresh_foreign = prefix / "abc.tmp"
    for p in (dead, live, old_foreign, fresh_foreign):
        p.write_bytes(b"partial")
    os.utime(old_foreign, (time.time() - 2 * 86400,) * 2)
    run_desync("verify", "-r", "-s", store)
    assert not dead.exists() and not old_foreign.exists()
    assert live.exists() and fresh_foreign.exists()
    dead.write_bytes(b"partial")
    run_desync("prune", "-y", "-s", store, tmp_path / "x.caibx")
    assert not dead.exists() and live.exists()


def test_next_extract_removes_the_hidden_temp_of_a_killed_one(tmp_path: Path) -> None:
    store = _store_with_chunks(tmp_path)
    dead_tmp = tmp_path / f".out.{_tag(_dead_pid())}.tmp"
    live_tmp = tmp_path / f".out.{_tag(os.getppid())}.tmp"
    old_style = tmp_path / ".out.0123456789ab.tmp"
    unrelated = tmp_path / ".out.notours.tmp"
    for p in (dead_tmp, live_tmp, old_style, unrelated):
        p.write_bytes(bytes(1000))
    os.utime(old_style, (time.time() - 2 * 86400,) * 2)
    run_desync("extract", "-s", store, tmp_path / "x.caibx", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == (tmp_path / "in").read_bytes()
    assert not dead_tmp.exists() and not old_style.exists()
    assert live_tmp.exists() and unrelated.exists()


def test_next_untar_removes_the_partial_tree_of_a_killed_one(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"content")
    run_desync("tar", tmp_path / "a.catar", tmp_path / "src")
    partial = tmp_path / f".out.{_tag(_dead_pid())}.tmp"
    (partial / "sub").mkdir(parents=True)
    (partial / "sub" / "half").write_bytes(b"half")
    run_desync("untar", tmp_path / "a.catar", tmp_path / "out")
    assert (tmp_path / "out" / "f").read_bytes() == b"content"
    assert not partial.exists()


def test_next_make_removes_the_temp_index_of_a_killed_one(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(os.urandom(50_000))
    dead = tmp_path / f".x.caibx.{_tag(_dead_pid())}.tmp"
    dead.write_bytes(b"half an index")
    run_desync("make", tmp_path / "x.caibx", tmp_path / "in")
    assert not dead.exists() and (tmp_path / "x.caibx").exists()
