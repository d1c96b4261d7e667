"""tar <-> catar conversion: fixtures, round trips, GNU tar interoperability."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator, cast

import pytest

from conftest import catar_helpers

from desync import featureflags as ff
from desync.catar import Node, catar_to_tar, decode, mtree_lines, tar_to_catar
from desync.errors import DesyncError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

if TYPE_CHECKING:
    import helpers as H  # the module catar_helpers() loads, by the name mypy finds it under (tests/fixtures/catar)
else:
    H = catar_helpers()

GNU_TAR = shutil.which("tar")


def _mtree(data: bytes) -> list[str]:
    return list(mtree_lines(decode(io.BytesIO(data))))


def _whole_seconds(lines: list[str]) -> list[str]:
    return [re.sub(r"time=(\d+)\.\d{9}", r"time=\1.000000000", line) for line in lines]


class _Pipe(io.RawIOBase):
    """A non-seekable reader, like stdin."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        with memoryview(b) as view:
            chunk = self._data.read(min(len(view), 777))
            view[: len(chunk)] = chunk
        return len(chunk)


def _pipe(data: bytes) -> IO[bytes]:
    """A :class:`_Pipe` as the binary file it is at run time (typeshed does not count a RawIOBase as one)."""
    return cast(IO[bytes], _Pipe(data))


def test_go_desync_gnu_tar_to_catar() -> None:
    tar = (H.GO / "complex.gnu-tar").read_bytes()
    data = b"".join(tar_to_catar(_pipe(tar)))
    ref = (H.GO / "complex.catar").read_bytes()
    assert len(data) == len(ref)
    assert _mtree(data) == _whole_seconds((H.GO / "complex.mtree").read_text().splitlines())


def test_go_desync_catar_to_gnu_tar() -> None:
    out = io.BytesIO()
    with (H.GO / "complex.catar").open("rb") as f:
        catar_to_tar(decode(f), out)
    ours = tarfile.open(fileobj=io.BytesIO(out.getvalue()))
    theirs = tarfile.open(H.GO / "complex.gnu-tar")
    for a, b in zip(ours.getmembers(), theirs.getmembers(), strict=True):
        assert a.name.rstrip("/") == b.name
        assert (a.type, a.mode & 0o7777, a.uid, a.gid, a.mtime, a.size, a.linkname) == (
            b.type, b.mode & 0o7777, b.uid, b.gid, b.mtime, b.size, b.linkname,
        )
        if a.isreg():
            fa, fb = ours.extractfile(a), theirs.extractfile(b)
            assert fa is not None and fb is not None and fa.read() == fb.read()


@pytest.mark.parametrize("tree", ["basic", "special", "empty"])
def test_pax_round_trip_is_exact(tree: str) -> None:
    """catar -> pax tar -> catar keeps every byte the desync feature set stores."""
    src = (H.ARCHIVES / f"{tree}.desync.catar").read_bytes()
    tar = io.BytesIO()
    warnings: list[str] = []
    catar_to_tar(decode(io.BytesIO(src)), tar, "pax", on_warning=warnings.append)
    again = b"".join(tar_to_catar(io.BytesIO(tar.getvalue())))
    if tree == "special":
        assert warnings == ["sock: sockets cannot be stored in tar, skipped"]
        assert _mtree(again) == [line for line in _mtree(src) if not line.startswith("sock ")]
    else:
        assert again == src


@pytest.mark.parametrize("tree", ["basic", "special"])
def test_gnu_round_trip_keeps_all_but_subsecond_times_and_xattrs(tree: str) -> None:
    src = (H.ARCHIVES / f"{tree}.desync.catar").read_bytes()
    tar = io.BytesIO()
    catar_to_tar(decode(io.BytesIO(src)), tar, "gnu")
    again = b"".join(tar_to_catar(io.BytesIO(tar.getvalue())))
    want = [line for line in _whole_seconds(_mtree(src)) if not line.startswith("sock ")]
    assert _mtree(again) == want


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o644 if kind != tarfile.DIRTYPE else 0o755
    info.mtime = 1_500_000_000
    for k, v in kw.items():
        setattr(info, k, v)
    return info


def test_tar_order_is_rearranged_and_parents_are_implied() -> None:
    members = [
        (_info("z/deep/file"), b"deep"),
        (_info("a"), b"a"),
        (_info(".", tarfile.DIRTYPE, mtime=7), b""),
        (_info("m", tarfile.SYMTYPE, linkname="a"), b""),
        (_info("z", tarfile.DIRTYPE, mode=0o700), b""),
        (_info("a"), b"replaced"),
    ]
    data = b"".join(tar_to_catar(io.BytesIO(_tar_bytes(members))))
    nodes = [e for e in decode(io.BytesIO(data)) if isinstance(e, Node)]
    assert [n.relpath for n in nodes] == [b".", b"a", b"m", b"z", b"z/deep", b"z/deep/file"]
    assert nodes[0].meta.mtime_ns == 7_000_000_000
    assert nodes[3].meta.mode & 0o7777 == 0o700
    assert nodes[4].meta.mode == 0o40755 and nodes[4].meta.mtime_ns == 0
    lines = _mtree(data)
    assert "size=8" in lines[1]


@pytest.mark.parametrize(
    "members,message",
    [
        ([(_info("a"), b"1"), (_info("b", tarfile.LNKTYPE, linkname="a"), b"")], "hard link"),
        ([(_info("../evil"), b"1")], "leaves the archive root"),
        ([(_info("a/../../evil"), b"1")], "leaves the archive root"),
        ([(_info(".", tarfile.REGTYPE), b"1")], "is not a directory"),
    ],
)
def test_unsupported_tar_members(members: list[tuple[tarfile.TarInfo, bytes]], message: str) -> None:
    with pytest.raises(DesyncError, match=message):
        b"".join(tar_to_catar(io.BytesIO(_tar_bytes(members))))


def test_not_a_tar_stream() -> None:
    with pytest.raises(DesyncError):
        b"".join(tar_to_catar(io.BytesIO(b"definitely not a tar archive" * 40)))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not H.is_root():
        pytest.skip("rebuilding the fixture trees needs root")
    base = H.xattr_base(tmp_path_factory.mktemp("tar"))
    if base is None:
        pytest.skip("no file system with user xattrs")
    for name in ("basic", "special"):
        H.make_trees.build_tree(name, str(base / name))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(GNU_TAR is None, reason="GNU tar is not installed")
@pytest.mark.parametrize("tree", ["basic", "special"])
def test_gnu_tar_posix_stream_gives_the_casync_archive(built: Path, tree: str) -> None:
    """``tar --format=posix --xattrs`` of a tree converts to casync's own archive."""
    assert GNU_TAR is not None
    proc = subprocess.run(
        [GNU_TAR, "--format=posix", "--xattrs", "--xattrs-include=user.*", "--hard-dereference",
         "--sort=name", "-C", str(built / tree), "-cf", "-", "."],
        capture_output=True, check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: "socket ignored"
    data = b"".join(tar_to_catar(_pipe(proc.stdout)))
    ref = (H.ARCHIVES / f"{tree}.desync.catar").read_bytes()
    if tree == "basic":
        assert data == ref
    else:
        assert _mtree(data) == [line for line in _mtree(ref) if not line.startswith("sock ")]


@pytest.mark.skipif(GNU_TAR is None, reason="GNU tar is not installed")
def test_our_gnu_tar_extracts_with_gnu_tar(tmp_path: Path) -> None:
    assert GNU_TAR is not None
    tar = tmp_path / "basic.tar"
    with (H.ARCHIVES / "basic.desync.catar").open("rb") as f, tar.open("wb") as out:
        catar_to_tar(decode(f), out)
    out_dir = tmp_path / "x"
    out_dir.mkdir()
    subprocess.run([GNU_TAR, "-xf", str(tar), "-C", str(out_dir)], check=True)
    expected = H.expected_scan("basic", "desync")
    got = H.make_trees.scan_tree(str(out_dir))
    assert [e["path"] for e in got] == [e["path"] for e in expected]
    for g, e in zip(got, expected):
        assert g.get("sha512_256") == e.get("sha512_256") and g.get("target") == e.get("target")


def test_default_flags_archive_converts_with_names(tmp_path: Path) -> None:
    """User/group names of a casync default archive survive catar -> tar -> catar."""
    src = (H.ARCHIVES / "special.default.catar").read_bytes()
    tar = io.BytesIO()
    catar_to_tar(decode(io.BytesIO(src)), tar, "pax")
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(tar.getvalue()))}
    assert members["owned-nobody"].uname == "nobody" and members["owned-nobody"].gname == "nogroup"
    again = b"".join(tar_to_catar(io.BytesIO(tar.getvalue()), ff.CASYNC_DEFAULT & ~ff.WITH_FAT_ATTRS))
    lines = _mtree(again)
    assert any(line.startswith("owned-nobody ") and "uname=nobody gname=nogroup" in line for line in lines)
