"""SSH against a real sshd on loopback: casync and desync on both ends, ssh:// and sftp:// stores."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import CASYNC, assert_one_line_error, requires_casync, run_casync, run_desync
from sshd_harness import LoopbackSSHD, requires_sshd, sshd  # noqa: F401  (sshd is a fixture)

pytestmark = [requires_sshd, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 MiB blob (about 90 chunks), its index, and a local store holding its chunks."""
    root = tmp_path_factory.mktemp("ssh-data")
    blob = root / "blob"
    blob.write_bytes(os.urandom(6 * 1024 * 1024))
    run_desync("make", "-s", root / "store", root / "blob.caibx", blob)
    return root


def _casync(sshd: LoopbackSSHD, *args: object, remote: str | None) -> subprocess.CompletedProcess[bytes]:
    assert CASYNC is not None
    return subprocess.run([CASYNC, *map(str, args)], capture_output=True, env=sshd.env(remote), timeout=60)


@requires_casync
def test_casync_extracts_through_desync_pull(sshd: LoopbackSSHD, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _casync(sshd, "extract", f"--store=127.0.0.1:{data / 'store'}", data / "blob.caibx", out,
                   remote=sshd.remote)
    assert proc.returncode == 0, proc.stderr.decode()
    assert out.read_bytes() == (data / "blob").read_bytes()


@requires_casync
def test_casync_pulls_index_and_archive_from_desync(sshd: LoopbackSSHD, data: Path, tmp_path: Path) -> None:
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    shutil.copy(data / "blob.caibx", remote_dir / "x.caibx")
    os.symlink(data / "store", remote_dir / "default.castr")
    out = tmp_path / "out"
    proc = _casync(sshd, "extract", f"127.0.0.1:{remote_dir / 'x.caibx'}", out, remote=sshd.remote)
    assert proc.returncode == 0, proc.stderr.decode()
    assert out.read_bytes() == (data / "blob").read_bytes()
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "hello.txt").write_text("hello\n")
    run_casync("make", remote_dir / "t.catar", tree)
    proc = _casync(sshd, "list", f"127.0.0.1:{remote_dir / 't.catar'}", remote=sshd.remote)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"hello.txt" in proc.stdout


@requires_casync
def test_casync_pushes_through_desync(sshd: LoopbackSSHD, data: Path, tmp_path: Path) -> None:
    remote = tmp_path / "pushed"
    remote.mkdir()
    proc = _casync(sshd, "make", f"--store=127.0.0.1:{remote / 'store'}", f"127.0.0.1:{remote / 'x.caibx'}",
                   data / "blob", remote=sshd.remote)
    assert proc.returncode == 0, proc.stderr.decode()
    assert (remote / "x.caibx").read_bytes() == (data / "blob.caibx").read_bytes()
    out = tmp_path / "out"
    run_desync("extract", "-s", remote / "store", remote / "x.caibx", out)
    assert out.read_bytes() == (data / "blob").read_bytes()


@requires_casync
def test_desync_extracts_from_casync_pull(sshd: LoopbackSSHD, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_desync("extract", "-n", "4", "-s", f"ssh://127.0.0.1{data / 'store'}", data / "blob.caibx", out,
               env=sshd.env(remote=None))
    assert out.read_bytes() == (data / "blob").read_bytes()


def test_desync_extracts_from_desync_pull(sshd: LoopbackSSHD, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_desync("extract", "-s", f"ssh://root@127.0.0.1{data / 'store'}", data / "blob.caibx", out,
               env=sshd.env(sshd.remote))
    assert out.read_bytes() == (data / "blob").read_bytes()
    out.unlink()
    url = f"ssh://127.0.0.1:{sshd.port}{data / 'store'}"
    run_desync("extract", "-s", url, data / "blob.caibx", out, env=sshd.env(sshd.remote, ssh=sshd.ssh_without_port))
    assert out.read_bytes() == (data / "blob").read_bytes()


def test_missing_chunks_fall_through_to_the_next_store(sshd: LoopbackSSHD, data: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(data / "store", partial)
    prefixes = sorted(p for p in partial.iterdir() if p.is_dir())
    for p in prefixes[: len(prefixes) // 2]:
        shutil.rmtree(p)
    out = tmp_path / "out"
    env = sshd.env(sshd.remote)
    run_desync("extract", "-s", f"ssh://127.0.0.1{tmp_path / 'nonexistent'}", "-s", f"ssh://127.0.0.1{partial}",
               "-s", data / "store", data / "blob.caibx", out, env=env)
    assert out.read_bytes() == (data / "blob").read_bytes()
    proc = run_desync("extract", "-s", f"ssh://127.0.0.1{partial}", data / "blob.caibx", tmp_path / "o2",
                      env=env, check=False)
    assert "missing" in assert_one_line_error(proc)


def test_sftp_store_make_extract_prune_and_cache(sshd: LoopbackSSHD, data: Path, tmp_path: Path) -> None:
    env = sshd.env()
    store = tmp_path / "remote" / "store"
    url = f"sftp://127.0.0.1{store}"
    index_url = f"sftp://127.0.0.1{tmp_path / 'remote' / 'x.caibx'}"
    run_desync("make", "-s", url, index_url, data / "blob", env=env)
    assert (tmp_path / "remote" / "x.caibx").read_bytes() == (data / "blob.caibx").read_bytes()
    local = sorted(p.relative_to(data / "store") for p in (data / "store").rglob("*.cacnk"))
    remote = sorted(p.relative_to(store) for p in store.rglob("*.cacnk"))
    assert remote == local
    assert not [p for p in store.rglob("*") if p.name.startswith(".tmp")]
    out = tmp_path / "out"
    run_desync("extract", "-s", url, index_url, out, env=env)
    assert out.read_bytes() == (data / "blob").read_bytes()
    run_desync("verify", "-s", url, env=env)
    cache = tmp_path / "cache"
    run_desync("extract", "-s", data / "store", "-c", f"sftp://127.0.0.1{cache}", data / "blob.caibx",
               tmp_path / "o2", env=env)
    assert len(list(cache.rglob("*.cacnk"))) == len(local)
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(300_000))
    run_desync("make", "-s", url, tmp_path / "other.caibx", other, env=env)
    run_desync("prune", "-y", "-s", url, index_url, env=env)
    assert sorted(p.relative_to(store) for p in store.rglob("*.cacnk")) == local
    listed = run_desync("list-chunks", index_url, env=env).stdout
    assert listed == run_desync("list-chunks", data / "blob.caibx").stdout


@pytest.mark.parametrize("location", [
    "ssh://-oProxyCommand=touch%20{marker}/x",
    "ssh://-oProxyCommand=touch%20{marker}@localhost/x",
    "ssh://local host/x",
    "ssh://local'host/x",
    'ssh://local"host/x',
    "ssh://localhost%0a-oProxyCommand=x/x",
    "ssh://localhost/x%0atouch%20{marker}",
    "ssh://localhost",
    "sftp://-oProxyCommand=touch%20{marker}/x",
    "sftp://user;touch@localhost/x",
])
def test_injection_through_store_urls_is_rejected(sshd: LoopbackSSHD, data: Path, tmp_path: Path,
                                                  location: str) -> None:
    marker = tmp_path / "pwned"
    proc = run_desync("extract", "-s", location.format(marker=marker), data / "blob.caibx", tmp_path / "out",
                      env=sshd.env(sshd.remote), check=False)
    assert_one_line_error(proc, status=2)
    assert not marker.exists()


def test_quotes_in_a_path_reach_the_remote_as_data(sshd: LoopbackSSHD, data: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    location = f"ssh://127.0.0.1/nowhere'; touch {marker}; echo '"
    proc = run_desync("extract", "-s", location, data / "blob.caibx", tmp_path / "out",
                      env=sshd.env(sshd.remote), check=False)
    assert "missing" in assert_one_line_error(proc)
    assert not marker.exists()


def test_sftp_store_recreates_pruned_prefixes_and_spares_live_temp_files(sshd: LoopbackSSHD, data: Path,
                                                                         tmp_path: Path) -> None:
    import time

    env = sshd.env()
    store = tmp_path / "remote" / "store"
    url = f"sftp://127.0.0.1{store}"
    keep = tmp_path / "keep.bin"
    keep.write_bytes(b"kept " * 100)
    run_desync("make", "-s", url, tmp_path / "keep.caibx", keep, env=env)
    prefix = next(p for p in store.iterdir() if p.is_dir())
    fresh, old = prefix / ".tmp-cacnk0123456789abcdef", prefix / ".tmp-cacnkfedcba9876543210"
    fresh.write_bytes(b"a live writer's")
    old.write_bytes(b"a killed writer's")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    run_desync("prune", "-y", "-s", url, tmp_path / "keep.caibx", env=env)
    assert fresh.exists() and not old.exists()
    # A running chunk-server writing through SFTP: prune removes a prefix under it, the next upload re-creates it.
    import zstandard
    from conftest import sha512_256
    from http_util import ServerProcess, request

    payload = b"uploaded " * 300
    cid = sha512_256(payload)
    name = f"/{cid[:4]}/{cid}.cacnk"
    body = zstandard.ZstdCompressor().compress(payload)
    with ServerProcess("chunk-server", "-w", "-s", url, env=env) as srv:
        assert request(srv.port, "PUT", name, body)[0] == 200
        run_desync("prune", "-y", "-s", url, tmp_path / "keep.caibx", env=env)
        assert not (store / cid[:4]).exists()
        assert request(srv.port, "PUT", name, body)[0] == 200
        assert (store / cid[:4] / f"{cid}.cacnk").exists()
