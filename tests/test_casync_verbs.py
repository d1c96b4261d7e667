"""casync mode's ``stat``, ``gc`` and ``mount`` against casync 2 itself.

``stat`` must print casync's lines for every entry of the fixture
archives, of archive indexes and of directories; ``gc`` must remove
exactly the chunks casync removes (``--dry-run`` none) and report as it
does; ``mount`` must show the tree casync's own mount shows.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CASYNC, NEUTRAL_DIR, assert_one_line_error, catar_helpers, desync_env
from desync.catar import Node, decode
from test_casync_cli import ours, theirs, trees  # noqa: F401  (trees is a fixture)

pytestmark = [
    pytest.mark.casync,
    pytest.mark.skipif(CASYNC is None, reason="casync is not installed (apt-get install casync)"),
    pytest.mark.timeout(300),
]
ARCHIVES = Path(__file__).parent / "fixtures" / "catar" / "archives"
if TYPE_CHECKING:
    import helpers as H  # the module catar_helpers() loads, by the name mypy finds it under (tests/fixtures/catar)
else:
    H = catar_helpers()


def entry_paths(archive: Path) -> list[str]:
    """Every entry of a catar as the seek path casync takes ("" for the top)."""
    with open(archive, "rb") as f:
        return ["/".join(os.fsdecode(p) for p in ev.path) for ev in decode(f) if isinstance(ev, Node)]


@pytest.mark.parametrize("archive", sorted(p.name for p in ARCHIVES.glob("*.catar")))
def test_stat_of_every_entry_of_the_fixture_archives(archive: str) -> None:
    for path in entry_paths(ARCHIVES / archive):
        args = ["--", ARCHIVES / archive, *([path] if path else [])]  # "--": names may start with a dash
        assert ours("stat", *args).stdout == theirs("stat", *args), path


def test_stat_of_archive_index_directory_and_digest(trees: Path, tmp_path: Path) -> None:  # noqa: F811
    src = trees / "basic"
    theirs("make", tmp_path / "t.caidx", src)
    theirs("--digest=sha256", "make", tmp_path / "s.catar", src)
    for path in entry_paths_of_index(tmp_path / "t.caidx"):
        assert ours("stat", "--", tmp_path / "t.caidx", path).stdout == \
            theirs("stat", "--", tmp_path / "t.caidx", path), path
    for path in entry_paths(tmp_path / "s.catar")[:6]:
        got = ours("--digest=sha256", "stat", "--", tmp_path / "s.catar", path).stdout
        assert got == theirs("--digest=sha256", "stat", "--", tmp_path / "s.catar", path), path
    # casync 2 cannot stat a directory without the xattrs feature ("Failed to enumerate extended attributes:
    # No data available"), so --with=unix is not compared here; we print the report without XAttr lines.
    for flags in ([], ["--without=quota-projid"], ["--without=acl"]):
        assert ours(*flags, "stat", src).stdout == theirs(*flags, "stat", src), flags
    assert ours("--with=unix", "stat", src).stdout.startswith(b"    File: .\n")


def entry_paths_of_index(index: Path) -> list[str]:
    out = theirs("list", index).decode()
    return [line.split(" ", 1)[1] for line in out.splitlines() if " " in line and "\\" not in line][1:]


@pytest.mark.skipif(not H.is_root(), reason="random trees use foreign owners: run as root")
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_stat_of_random_trees(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("rand-stat")
    src = base / "src"
    src.mkdir()
    names = data.draw(st.lists(st.text("abcxyz-_. ", min_size=1, max_size=6).filter(lambda s: s not in (".", "..")),
                               max_size=5, unique=True))
    for i, name in enumerate(names):
        kind = data.draw(st.sampled_from(["file", "dir", "link", "fifo"]))
        path = src / name
        if kind == "file":
            path.write_bytes(data.draw(st.binary(max_size=2000)))
            os.chmod(path, data.draw(st.sampled_from([0o644, 0o600, 0o4755, 0o444])))
            if data.draw(st.booleans()):
                os.setxattr(path, "user.k", data.draw(st.binary(min_size=1, max_size=20)))
        elif kind == "dir":
            path.mkdir()
            (path / f"in{i}").write_bytes(b"x")
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to(data.draw(st.sampled_from(["nowhere", names[0]])))
        os.chown(path, data.draw(st.sampled_from([0, 1, 1000, 60000])), data.draw(st.sampled_from([0, 5, 4242])),
                 follow_symlinks=False)
        os.utime(path, ns=(0, data.draw(st.integers(0, 2**40)) * 1000 + 7), follow_symlinks=False)
    flags = data.draw(st.sampled_from([[], ["--with=unix"], ["--without=user-names"], ["--with=16bit-uids"]]))
    theirs(*flags, "make", base / "t.catar", src)
    for entry in entry_paths(base / "t.catar"):
        args = ["--", base / "t.catar", *([entry] if entry else [])]
        assert ours("stat", *args).stdout == theirs("stat", *args), entry
    shutil.rmtree(base, ignore_errors=True)


def _chunks(store: Path) -> set[str]:
    return {str(p.relative_to(store)) for p in store.rglob("*")}


def test_gc_removes_what_casync_removes(tmp_path: Path) -> None:
    rng = random.Random(5)
    (tmp_path / "b1").write_bytes(rng.randbytes(3 << 20))
    (tmp_path / "b2").write_bytes(rng.randbytes(2 << 20))
    store = tmp_path / "st"
    theirs(f"--store={store}", "make", tmp_path / "a.caibx", tmp_path / "b1")
    theirs(f"--store={store}", "make", tmp_path / "b.caibx", tmp_path / "b2")
    before = _chunks(store)
    for n, case in enumerate((["-n", "gc", "a.caibx"], ["-v", "-n", "gc", "a.caibx", "a.caibx"],
                              ["gc", "b.caibx"], ["-v", "gc", "a.caibx"], ["--dry-run", "gc", "b.caibx"])):
        theirs_store: Path = tmp_path / f"c{n}"
        ours_store: Path = tmp_path / f"d{n}"
        shutil.copytree(store, theirs_store)
        shutil.copytree(store, ours_store)
        args: list[object] = [a if not a.endswith(".caibx") else tmp_path / a for a in case]
        want = theirs(f"--store={theirs_store}", *args)
        got = ours(f"--store={ours_store}", *args).stdout
        assert sorted(got.splitlines()) == sorted(want.splitlines()), case  # casync walks in readdir order
        assert _chunks(ours_store) == _chunks(theirs_store), case
        if "-n" in case or "--dry-run" in case:
            assert _chunks(ours_store) == before
    assert_one_line_error(ours("gc", check=False), 2)


FUSERMOUNT = shutil.which("fusermount3") or shutil.which("fusermount")


def _unmount(mountpoint: Path) -> None:
    if os.path.ismount(mountpoint):
        assert FUSERMOUNT is not None
        subprocess.run([FUSERMOUNT, "-u", "-z", str(mountpoint)], capture_output=True, timeout=30)


def _mount(cmd: list[object], mountpoint: Path, env: dict[str, str] | None) -> "subprocess.Popen[bytes]":
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=NEUTRAL_DIR, env=env)
    deadline = time.monotonic() + 30
    while not os.path.ismount(mountpoint):
        if proc.poll() is not None:
            err = proc.communicate()[1].decode(errors="replace")
            if "Operation not permitted" in err or "Permission denied" in err:
                pytest.skip(f"mounting FUSE file systems is not permitted here: {err.strip()}")
            raise AssertionError(f"{cmd} exited {proc.returncode} without mounting:\n{err}")
        assert time.monotonic() < deadline, f"{mountpoint} was not mounted within 30 s"
        time.sleep(0.02)
    return proc


def _scan(root: Path) -> list[tuple[str, int, str]]:
    """What a mount shows: every path, its mode, and a file's content digest or a link's target."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                what = os.readlink(p)
            elif p.is_file():
                what = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                what = ""
            out.append((str(p.relative_to(root)), st.st_mode, what))
    return out


@pytest.mark.skipif(not os.path.exists("/dev/fuse") or FUSERMOUNT is None, reason="needs /dev/fuse and fusermount3")
def test_mount_shows_what_casyncs_mount_shows(trees: Path, tmp_path: Path) -> None:  # noqa: F811
    theirs("make", tmp_path / "t.caidx", trees / "data")
    theirs("make", tmp_path / "t.catar", trees / "basic")
    for name in ("t.caidx", "t.catar"):
        mine, theirs_mp = tmp_path / f"m-{name}", tmp_path / f"c-{name}"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs.append(_mount([CASYNC, "mount", tmp_path / name, theirs_mp], theirs_mp, None))
            procs.append(_mount([sys.executable, "-m", "desync", "casync", "mount", tmp_path / name, mine], mine,
                                desync_env()))
            assert _scan(mine) == _scan(theirs_mp)
        finally:
            for mp in (mine, theirs_mp):
                _unmount(mp)
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
    # --mkdir=no: a missing mount point is an error, as in casync.
    refused = ours("--mkdir=no", "mount", tmp_path / "t.caidx", tmp_path / "missing", check=False)
    assert refused.returncode != 0 and not (tmp_path / "missing").exists()
