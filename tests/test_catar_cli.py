"""The archive commands (tar, untar, mtree, list) through the CLI."""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from conftest import assert_one_line_error, catar_helpers, requires_casync, run_casync, run_desync

if TYPE_CHECKING:
    import helpers as H  # the module catar_helpers() loads, by the name mypy finds it under (tests/fixtures/catar)
else:
    H = catar_helpers()

@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not H.is_root():
        pytest.skip("rebuilding the fixture trees needs root")
    base = H.xattr_base(tmp_path_factory.mktemp("cli"))
    if base is None:
        pytest.skip("no file system with user xattrs")
    for name in ("basic", "special", "data"):
        H.make_trees.build_tree(name, str(base / name))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    "variant,args",
    [("desync", []), ("unix", ["--with=unix"]), ("default", ["--with=best"]), ("default", ["--with=all"])],
)
def test_tar_writes_casync_catar(trees: Path, tmp_path: Path, variant: str, args: list[str]) -> None:
    out = tmp_path / "x.catar"
    run_desync("tar", *args, out, trees / "special")
    assert out.read_bytes() == (H.ARCHIVES / f"special.{variant}.catar").read_bytes()


def test_tar_to_stdout_and_mtree_from_stdin(trees: Path) -> None:
    data = run_desync("tar", "-", trees / "basic").stdout
    assert data == (H.ARCHIVES / "basic.desync.catar").read_bytes()
    mtree = run_desync("mtree", "-", input=data).stdout.decode()
    assert mtree == (H.ARCHIVES / "basic.desync.mtree").read_text()


@pytest.mark.parametrize("name,chunk", [("basic.desync", []), ("basic.desync.m1-4-16", ["-m", "1:4:16"]),
                                        ("data.desync", []), ("data.desync.m4-16-64", ["-m", "4:16:64"])])
def test_tar_index_matches_casync(trees: Path, tmp_path: Path, name: str, chunk: list[str]) -> None:
    tree = name.split(".")[0]
    idx = tmp_path / "x.caidx"
    store = tmp_path / "store"
    run_desync("tar", "-i", "-s", store, *chunk, idx, trees / tree)
    assert idx.read_bytes() == (H.ARCHIVES / f"{name}.caidx").read_bytes()
    # ...and the index extracts back to the recorded tree.
    out = tmp_path / "out"
    run_desync("untar", "-i", "-s", store, idx, out)
    assert H.make_trees.scan_tree(str(out)) == H.expected_scan(tree, "desync")
    assert run_desync("list", "-s", store, idx).stdout.decode() == (H.ARCHIVES / f"{tree}.desync.list").read_text()


CASYNC_DESYNC_FLAGS = [f"--with={name}" for name in ("32bit-uids", "nsec-time", "permissions", "symlinks",
                                                       "device-nodes", "fifos", "sockets", "xattrs")]


@requires_casync
@pytest.mark.parametrize("name,chunk", [("basic.desync", []),
                                        ("basic.desync.m1-4-16", ["--chunk-size=1024:4096:16384"]),
                                        ("data.desync", []),
                                        ("data.desync.m4-16-64", ["--chunk-size=4096:16384:65536"])])
def test_index_fixtures_are_what_casync_writes(trees: Path, tmp_path: Path, name: str, chunk: list[str]) -> None:
    """The copied .caidx fixtures above are casync's own output for the rebuilt trees."""
    idx = tmp_path / "x.caidx"
    run_casync("make", f"--store={tmp_path / 'store'}", *chunk, *CASYNC_DESYNC_FLAGS, idx, trees / name.split(".")[0])
    assert idx.read_bytes() == (H.ARCHIVES / f"{name}.caidx").read_bytes()


def test_untar_catar_and_directory_listings(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_desync("untar", H.ARCHIVES / "basic.unix.catar", out)
    assert run_desync("list", H.ARCHIVES / "basic.unix.catar").stdout.decode() == (
        H.ARCHIVES / "basic.unix.list"
    ).read_text()
    if H.is_root():
        assert run_desync("mtree", "--with=unix", out).stdout.decode() == (H.ARCHIVES / "basic.unix.mtree").read_text()


def test_tar_round_trip_through_gnu_tar_stream(tmp_path: Path) -> None:
    tar = run_desync("untar", "--output-format", "gnu-tar", H.GO / "complex.catar", "-").stdout
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(tar))]
    assert "subdir2/subdir21/symlink" in names
    catar = run_desync("tar", "--input-format", "tar", "-", "-", input=tar).stdout
    lines = run_desync("mtree", "-", input=catar).stdout.decode().splitlines()
    assert len(lines) == len((H.GO / "complex.mtree").read_text().splitlines())


def test_archive_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.catar"
    bad.write_bytes((H.ARCHIVES / "basic.desync.catar").read_bytes()[:1000])
    proc = run_desync("untar", bad, tmp_path / "out", check=False)
    assert re.search(r"catar: .* at offset [0-9]+$", assert_one_line_error(proc))
    proc = run_desync("tar", tmp_path / "x.catar", tmp_path / "missing", check=False)
    assert "is not a directory" in assert_one_line_error(proc)
    proc = run_desync("tar", "--with=nonsense", tmp_path / "x.catar", tmp_path, check=False)
    assert "unknown archive feature" in assert_one_line_error(proc, status=2)
    assert not (tmp_path / "x.catar").exists()


def _small_tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    for i in range(30):
        (root / "sub" / f"f{i}").write_bytes(bytes([i]) * (5000 + 997 * i))
    (root / "top").write_bytes(b"top")


def test_failed_untar_into_a_new_directory_leaves_nothing(tmp_path: Path) -> None:
    _small_tree(tmp_path / "src")
    run_desync("tar", tmp_path / "a.catar", tmp_path / "src")
    data = (tmp_path / "a.catar").read_bytes()
    (tmp_path / "cut.catar").write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out"
    proc = run_desync("untar", tmp_path / "cut.catar", out, check=False)
    assert "truncated" in assert_one_line_error(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.catar", "cut.catar", "src"]  # no out, no temp
    run_desync("untar", tmp_path / "a.catar", out)
    assert (out / "sub" / "f29").read_bytes() == (tmp_path / "src" / "sub" / "f29").read_bytes()


def test_failed_untar_into_an_existing_directory_keeps_it(tmp_path: Path) -> None:
    _small_tree(tmp_path / "src")
    run_desync("tar", tmp_path / "a.catar", tmp_path / "src")
    data = (tmp_path / "a.catar").read_bytes()
    (tmp_path / "cut.catar").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine").write_bytes(b"kept")
    proc = run_desync("untar", tmp_path / "cut.catar", out, check=False)
    assert "truncated" in assert_one_line_error(proc)
    assert (out / "mine").read_bytes() == b"kept"


def test_failed_untar_to_a_tar_file_leaves_no_file(tmp_path: Path) -> None:
    _small_tree(tmp_path / "src")
    run_desync("tar", tmp_path / "a.catar", tmp_path / "src")
    data = (tmp_path / "a.catar").read_bytes()
    (tmp_path / "cut.catar").write_bytes(data[: len(data) // 2])
    proc = run_desync("untar", "--output-format", "gnu-tar", tmp_path / "cut.catar", tmp_path / "out.tar",
                      check=False)
    assert "truncated" in assert_one_line_error(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.catar", "cut.catar", "src"]


def test_ctrl_c_during_untar_into_a_new_directory_leaves_nothing(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from conftest import NEUTRAL_DIR, desync_env

    _small_tree(tmp_path / "src")
    run_desync("tar", tmp_path / "a.catar", tmp_path / "src")
    data = (tmp_path / "a.catar").read_bytes()
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "desync", "untar", "-", str(out)], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=NEUTRAL_DIR, env=desync_env())
    assert proc.stdin is not None
    proc.stdin.write(data[: len(data) // 2])  # the rest never comes: extraction waits mid-archive
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while not any(p.name.startswith(".out.") for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.catar", "src"]


@pytest.mark.skipif(os.geteuid() != 0, reason="owners can only be given as root")
def test_untar_gives_owners_and_modes_in_a_set_group_id_directory(tmp_path: Path) -> None:
    """Files are created with their final mode and owner where that is what they get anyway; a
    set-group-ID directory hands its group to new files, which must still get the archive's group."""
    import stat

    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    os.chown(src / "d", 0, 4321)
    os.chmod(src / "d", 0o2755)
    files = {"root-group": (0, 0, 0o644), "read-only": (0, 0, 0o444), "own-group": (0, 4321, 0o640),
             "other": (1234, 5678, 0o755), "group-writable": (0, 0, 0o666), "setuid": (0, 0, 0o4755)}
    for name, (uid, gid, mode) in files.items():
        path = src / "d" / name
        path.write_bytes(name.encode())
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    run_desync("tar", tmp_path / "a.catar", src)
    old = os.umask(0o022)
    try:
        run_desync("untar", tmp_path / "a.catar", tmp_path / "out")
    finally:
        os.umask(old)
    d = (tmp_path / "out" / "d").stat()
    assert (d.st_gid, stat.S_IMODE(d.st_mode)) == (4321, 0o2755)
    for name, (uid, gid, mode) in files.items():
        st = (tmp_path / "out" / "d" / name).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode), name
        assert (tmp_path / "out" / "d" / name).read_bytes() == name.encode()
