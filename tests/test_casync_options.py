"""casync mode's owner, hole and immutable-flag options against casync 2 itself.

``--uid-shift``/``--uid-range`` must give the archive bytes casync gives
and restore the owners casync restores; ``--punch-holes`` must leave runs
of zeros as holes (and ``=no`` none); ``--undo-immutable`` must let an
extraction replace and remove ``chattr +i`` entries where casync can, and
fail where casync fails.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import CASYNC, assert_one_line_error
from desync.catar.model import UidShift
from test_casync_cli import ours, theirs

pytestmark = [pytest.mark.timeout(300)]
needs_casync = pytest.mark.skipif(CASYNC is None, reason="casync is not installed (apt-get install casync)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving files foreign owners and chattr +i needs root")

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x10


def owners(root: Path) -> list[tuple[str, int, int]]:
    out = [(".", root.lstat().st_uid, root.lstat().st_gid)]
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out.append((str(p.relative_to(root)), st.st_uid, st.st_gid))
    return out


def posix_acl(entries: list[tuple[int, int, int]]) -> bytes:
    """A system.posix_acl_access value: (tag, permissions, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def shifted_tree(base: Path) -> Path:
    """Files owned inside a user namespace's range at 100000, one with a named ACL entry."""
    tree = base / "t"
    (tree / "d").mkdir(parents=True)
    (tree / "a").write_bytes(b"a\n")
    (tree / "b").write_bytes(b"b\n")
    (tree / "d" / "c").write_bytes(b"c\n")
    os.symlink("a", tree / "l")
    os.chown(tree, 100000, 100000)
    os.chown(tree / "a", 170000, 100002)
    os.chown(tree / "b", 100000, 100000)
    os.chown(tree / "d", 100001, 100001)
    os.chown(tree / "d" / "c", 100123, 100050)
    os.chown(tree / "l", 100007, 100008, follow_symlinks=False)
    try:
        os.setxattr(tree / "a", "system.posix_acl_access",
                    posix_acl([(1, 6, 0xFFFFFFFF), (2, 4, 100009), (4, 4, 0xFFFFFFFF), (8, 4, 100011),
                               (0x10, 6, 0xFFFFFFFF), (0x20, 4, 0xFFFFFFFF)]))
    except OSError:
        pass  # no ACLs on this file system: the owners alone are compared
    return tree


SHIFT_ARGS = [
    ["--uid-shift=100000"],
    ["--uid-shift=100000", "--uid-range=4"],
    ["--uid-shift=100000", "--with=32bit-uids", "--without=user-names"],
    ["--uid-shift=100000", "--with=user-names", "--with=permissions"],
    ["--uid-shift=100000", "--with=32bit-uids", "--with=acl"],
    ["--uid-shift=99990", "--uid-range=4294967296"],
    ["--uid-shift=100000", "--uid-range=65536", "--with=16bit-uids"],
]


@needs_casync
@needs_root
@pytest.mark.parametrize("args", SHIFT_ARGS, ids=lambda a: " ".join(a))
def test_uid_shift_make_gives_casyncs_archive(args: list[str], tmp_path: Path) -> None:
    tree = shifted_tree(tmp_path)
    theirs(*args, "make", tmp_path / "c.catar", tree)
    ours(*args, "make", tmp_path / "d.catar", tree)
    assert (tmp_path / "d.catar").read_bytes() == (tmp_path / "c.catar").read_bytes()
    theirs(*args, "make", tmp_path / "c.caidx", tree)
    ours(*args, "make", tmp_path / "d.caidx", tree)
    assert (tmp_path / "d.caidx").read_bytes() == (tmp_path / "c.caidx").read_bytes()


@needs_casync
@needs_root
@pytest.mark.parametrize("args, why", [
    (["--uid-shift=100001"], "shift"),  # the root directory's 100000 lies below the shift
    (["--uid-shift=99990", "--uid-range=4294967296", "--with=16bit-uids"], "16-bit"),  # 70010 needs 32 bits
], ids=["below", "16bit"])
def test_unmappable_owner_fails_like_casync(args: list[str], why: str, tmp_path: Path) -> None:
    tree = shifted_tree(tmp_path)
    assert CASYNC is not None
    proc = subprocess.run([CASYNC, *args, "make", tmp_path / "c.catar", tree], capture_output=True)
    assert proc.returncode != 0
    msg = assert_one_line_error(ours(*args, "make", tmp_path / "d.catar", tree, check=False))
    assert why in msg
    assert not (tmp_path / "d.catar").exists()


@needs_casync
@needs_root
@pytest.mark.parametrize("args", [["--uid-shift=200000"], ["--uid-shift=200000", "--uid-range=100"],
                                  ["--uid-range=1000"], ["--uid-shift=yes"], ["--uid-shift=no"]],
                         ids=lambda a: " ".join(a))
def test_uid_shift_extract_gives_casyncs_owners(args: list[str], tmp_path: Path) -> None:
    tree = tmp_path / "src"
    (tree / "sub").mkdir(parents=True)
    (tree / "f").write_bytes(b"x")
    (tree / "sub" / "g").write_bytes(b"y")
    os.symlink("f", tree / "l")
    os.chown(tree / "f", 5, 7)
    os.chown(tree / "sub", 1, 1)  # a named owner on most systems: casync restores it by name, unshifted
    os.chown(tree / "l", 70000, 3, follow_symlinks=False)
    os.chown(tree / "sub" / "g", 4000000000, 12)
    theirs("make", tmp_path / "a.catar", tree)
    theirs(*args, "extract", tmp_path / "a.catar", tmp_path / "c")
    ours(*args, "extract", tmp_path / "a.catar", tmp_path / "d")
    assert owners(tmp_path / "d") == owners(tmp_path / "c")


@given(shift=st.integers(0, 0xFFFFFFFF), size=st.integers(0, 1 << 32), ident=st.integers(0, 0xFFFFFFFF))
def test_uid_shift_out_and_back(shift: int, size: int, ident: int) -> None:
    """An ID shifted into the archive comes back as itself when it lies in the shifted range."""
    m = UidShift(shift, size & 0xFFFFFFFF)
    stored = m.to_archive(ident)
    if stored is None:
        return
    assert 0 <= stored < (m.range or 1 << 32)
    back = m.from_archive(stored)
    if m.range == 0 or ident - shift < m.range:
        assert back == ident


def _sparse_tree(root: Path) -> Path:
    root.mkdir()
    with open(root / "sparse", "wb") as f:
        f.write(os.urandom(5000))
        f.write(bytes(1 << 20))
        f.write(os.urandom(3000))
        f.write(bytes(300000))
    (root / "small").write_bytes(b"a" * 10 + bytes(64 << 10) + b"b")
    return root


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


@needs_casync
def test_punch_holes_tree_and_blob(tmp_path: Path) -> None:
    tree = _sparse_tree(tmp_path / "t")
    theirs("make", tmp_path / "a.catar", tree)
    theirs("make", tmp_path / "b.caibx", tree / "sparse")
    for who, run in (("c", theirs), ("d", ours)):
        run("extract", tmp_path / "a.catar", tmp_path / f"{who}-holes")
        run("--punch-holes=no", "extract", tmp_path / "a.catar", tmp_path / f"{who}-full")
        run("extract", tmp_path / "b.caibx", tmp_path / f"{who}-blob")
        run("--punch-holes=no", "extract", tmp_path / "b.caibx", tmp_path / f"{who}-blobfull")
    for who in ("c", "d"):
        for name in ("sparse", "small"):
            want = (tree / name).read_bytes()
            holes, full = tmp_path / f"{who}-holes" / name, tmp_path / f"{who}-full" / name
            assert holes.read_bytes() == want and full.read_bytes() == want
            assert _allocated(holes) < len(want) // 2, f"{who}: no holes in {name}"
            assert _allocated(full) >= len(want), f"{who}: holes in {name} with --punch-holes=no"
        blob, blobfull = tmp_path / f"{who}-blob", tmp_path / f"{who}-blobfull"
        assert blob.read_bytes() == blobfull.read_bytes() == (tree / "sparse").read_bytes()
        assert _allocated(blob) < blob.stat().st_size // 2
        assert _allocated(blobfull) >= blobfull.stat().st_size
    # The same blocks stay unallocated, give or take casync's 64-byte granules at the edges of data.
    assert abs(_allocated(tmp_path / "d-blob") - _allocated(tmp_path / "c-blob")) <= 8192


def _chattr(path: Path, flag: int, on: bool) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        cur = struct.unpack("=I", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(4)))[0]
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("=I", cur | flag if on else cur & ~flag))
    finally:
        os.close(fd)


def _immutable_target(path: Path) -> None:
    """An old tree with immutable files where the archive has a file and where it has nothing."""
    (path / "sub").mkdir(parents=True)
    (path / "gone").mkdir()
    (path / "f").write_bytes(b"old\n")
    (path / "extra").write_bytes(b"old\n")
    (path / "gone" / "z").write_bytes(b"old\n")
    for p in (path / "f", path / "extra", path / "gone" / "z"):
        _chattr(p, FS_IMMUTABLE_FL, True)


def _unlock(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink() and (p.is_file() or p.is_dir()):
            try:
                _chattr(p, FS_IMMUTABLE_FL, False)
            except OSError:
                pass


@needs_casync
@needs_root
def test_undo_immutable_replaces_and_removes_like_casync(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    try:
        _chattr(probe, FS_IMMUTABLE_FL, True)
        _chattr(probe, FS_IMMUTABLE_FL, False)
    except OSError as exc:
        pytest.skip(f"no chattr flags on {tmp_path}: {exc.strerror}")
    tree = tmp_path / "src"
    (tree / "sub").mkdir(parents=True)
    (tree / "f").write_bytes(b"new\n")
    (tree / "sub" / "g").write_bytes(b"g\n")
    theirs("make", tmp_path / "a.catar", tree)
    assert CASYNC is not None
    try:
        for who in ("c", "d"):
            _immutable_target(tmp_path / who)
        # Without the option both refuse to replace the immutable file.
        refused = subprocess.run([CASYNC, "extract", tmp_path / "a.catar", tmp_path / "c"], capture_output=True)
        assert refused.returncode != 0
        assert_one_line_error(ours("extract", tmp_path / "a.catar", tmp_path / "d", check=False))
        for who, run in (("c", theirs), ("d", ours)):
            run("--undo-immutable=yes", "extract", tmp_path / "a.catar", tmp_path / who)
        for who in ("c", "d"):
            got = tmp_path / who
            assert sorted(str(p.relative_to(got)) for p in got.rglob("*")) == ["f", "sub", "sub/g"]
            assert (got / "f").read_bytes() == b"new\n"
    finally:
        for who in ("c", "d"):
            if (tmp_path / who).exists():
                _unlock(tmp_path / who)
