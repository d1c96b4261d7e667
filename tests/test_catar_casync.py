"""Live cross-checks against the casync binary on random and targeted trees.

Random small trees (files, directories, symlinks, FIFOs; odd byte names,
modes, owners, nanosecond mtimes, user xattrs) are archived by ``casync
make`` and by our encoder for the Go desync set, ``unix`` and casync's
default set, and must match byte for byte; each tool's extraction of the
archive must scan identically; ``casync mtree``/``list`` of the directory
must match ours.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import catar_helpers

from desync import featureflags as ff
from desync.catar import (
    EncodeOptions,
    decode,
    directory_events,
    encode_tree,
    extract_stream,
    list_lines,
    mtree_lines,
    resolve_flags,
)

if TYPE_CHECKING:
    import helpers as H  # the module catar_helpers() loads, by the name mypy finds it under (tests/fixtures/catar)
else:
    H = catar_helpers()

pytestmark = [
    pytest.mark.casync,
    pytest.mark.skipif(H.CASYNC is None, reason="casync is not installed (apt-get install casync)"),
    pytest.mark.skipif(not H.is_root(), reason="random trees use foreign owners: run as root"),
]

SETS = {
    "desync": H.DESYNC_ARGS,
    "unix": ["--with=unix"],
    "default": [],
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    b = H.xattr_base(tmp_path_factory.mktemp("casync"))
    if b is None:
        pytest.skip("no writable file system with user xattrs for the random trees")
    yield b
    shutil.rmtree(b, ignore_errors=True)


@dataclass
class Spec:
    kind: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    data: bytes = b""
    target: bytes = b""
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    children: dict[bytes, "Spec"] = field(default_factory=dict)


_name_text = st.text(
    alphabet=st.sampled_from(list("abcXYZ019 ._-#\\&()[]*?!~é日\n\t")), min_size=1, max_size=10
).map(lambda s: s.encode())
_name_bytes = st.binary(min_size=1, max_size=8)
NAMES = st.one_of(_name_text, _name_bytes).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..", b".caexclude")
)
OWNERS = st.sampled_from([0, 1, 100, 4242, 65534])
MTIMES = st.one_of(st.integers(0, 2**33 * 10**9), st.integers(1_500_000_000, 1_500_000_100).map(lambda s: s * 10**9))
XATTRS = st.dictionaries(
    st.text(alphabet="abcdefxyz_0", min_size=1, max_size=6).map(lambda s: b"user." + s.encode()),
    st.binary(max_size=24),
    max_size=3,
)


@st.composite
def specs(draw: st.DrawFn, depth: int = 0) -> Spec:
    kinds = ["file", "file", "symlink", "fifo"] + (["dir", "dir"] if depth < 3 else [])
    kind = "dir" if depth == 0 else draw(st.sampled_from(kinds))
    s = Spec(kind, uid=draw(OWNERS), gid=draw(OWNERS), mtime_ns=draw(MTIMES))
    if kind == "file":
        s.mode = draw(st.integers(0, 0o7777))
        s.data = draw(st.binary(max_size=300))
        s.xattrs = draw(XATTRS)
    elif kind == "dir":
        s.mode = draw(st.integers(0, 0o7777))
        s.xattrs = draw(XATTRS)
        names = draw(st.lists(NAMES, max_size=6 if depth else 9, unique=True))
        for n in names:
            s.children[n] = draw(specs(depth + 1))
    elif kind == "symlink":
        s.target = draw(NAMES)
    else:
        s.mode = draw(st.integers(0, 0o777))
    return s


def build(spec: Spec, path: bytes) -> None:
    """Create the tree, then metadata bottom-up (children before parents)."""
    if spec.kind == "dir":
        os.mkdir(path, 0o700)
        for name, child in spec.children.items():
            build(child, path + b"/" + name)
    elif spec.kind == "file":
        with open(path, "wb") as f:
            f.write(spec.data)
    elif spec.kind == "symlink":
        os.symlink(spec.target, path)
    else:
        os.mkfifo(path, 0o600)
    os.chown(path, spec.uid, spec.gid, follow_symlinks=False)
    if spec.kind != "symlink":
        os.chmod(path, spec.mode)
        for k, v in spec.xattrs.items():
            os.setxattr(path, k, v)
    os.utime(path, ns=(spec.mtime_ns, spec.mtime_ns), follow_symlinks=False)


def flags_for(args: list[str]) -> int:
    return resolve_flags([a.split("=", 1)[1] for a in args if a.startswith("--with=")])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs())
def test_random_trees_match_casync(base: Path, spec: Spec) -> None:
    work = Path(tempfile.mkdtemp(dir=base))
    try:
        src = bytes(work / "src")
        build(spec, src)
        for name, args in SETS.items():
            ref = work / f"{name}.catar"
            H.casync("make", *args, str(ref), src.decode("utf-8", "surrogateescape"))
            ours = b"".join(encode_tree(src, flags_for(args), EncodeOptions(block_size=4096)))
            assert ours == ref.read_bytes(), f"{name}: encoder output differs from casync make"
            assert "\n".join(mtree_lines(decode(io.BytesIO(ours)))) + "\n" == H.casync("mtree", str(ref)).decode()
        # Each tool extracts the (identical) archive; the results must agree.
        for name in ("desync", "default"):
            ref = work / f"{name}.catar"
            theirs = work / f"x-casync-{name}"
            mine = work / f"x-ours-{name}"
            H.casync("extract", str(ref), str(theirs))
            with ref.open("rb") as f:
                extract_stream(f, str(mine))
            assert H.make_trees.scan_tree(str(mine)) == H.make_trees.scan_tree(str(theirs))
            assert H.make_trees.scan_tree(str(mine)) == H.make_trees.scan_tree(src.decode("utf-8", "surrogateescape"))
        # Directory listings go through casync's encoder, ours through ours.
        for args in (["--with=unix"], []):
            got = "".join(line + "\n" for line in mtree_lines(directory_events(src, flags_for(args))))
            assert got == H.casync("mtree", *args, src.decode("utf-8", "surrogateescape")).decode()
            got = "".join(line + "\n" for line in list_lines(directory_events(src, flags_for(args))))
            assert got == H.casync("list", *args, src.decode("utf-8", "surrogateescape")).decode()
    finally:
        shutil.rmtree(work, ignore_errors=True)


WITH_COMBOS = [
    ["--without=all"],
    ["--with=16bit-uids", "--with=read-only", "--with=symlinks"],
    ["--with=sec-time", "--with=permissions", "--with=16bit-uids"],
    ["--with=2sec-time", "--with=fifos"],
    ["--with=usec-time", "--with=xattrs", "--with=sockets", "--with=device-nodes"],
    ["--with=fat", "--with=symlinks"],
    ["--with=chattr", "--with=nsec-time"],
    ["--with=acl"],
    ["--without=acl"],
    ["--without=xattrs", "--without=user-names"],
    ["--with=best", "--without=selinux", "--without=fcaps"],
]


def _resolved(args: list[str]) -> int:
    return resolve_flags(
        [a.split("=", 1)[1] for a in args if a.startswith("--with=")],
        [a.split("=", 1)[1] for a in args if a.startswith("--without=")],
        exclude_nodump="--exclude-nodump=no" not in args,
        exclude_file="--exclude-file=no" not in args,
        exclude_submounts="--exclude-submounts=yes" in args,
    )


@pytest.fixture(scope="module")
def special_tree(base: Path) -> Path:
    path = base / "special"
    H.make_trees.build_tree("special", str(path))
    return path


@pytest.mark.parametrize("args", WITH_COMBOS, ids=lambda a: " ".join(a))
def test_with_without_combinations(special_tree: Path, tmp_path: Path, args: list[str]) -> None:
    ref = tmp_path / "ref.catar"
    H.casync("make", *args, str(ref), str(special_tree))
    assert b"".join(encode_tree(str(special_tree), _resolved(args))) == ref.read_bytes()


def _set_acl(path: str, name: str, entries: list[tuple[int, int, int]]) -> None:
    data = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)
    os.setxattr(path, name, data)


def test_acls_selinux_fcaps_and_chattr(base: Path, tmp_path: Path) -> None:
    """casync's default set with ACLs, labels, capabilities and chattr flags."""
    root = base / "acl"
    if root.exists():
        shutil.rmtree(root)
    (root / "d").mkdir(parents=True)
    (root / "d2").mkdir()
    for n in ("f", "g", "cap"):
        (root / n).write_bytes(n.encode())
    os.mkfifo(root / "fifo")
    os.symlink("f", root / "sl")
    u = 0xFFFFFFFF
    _set_acl(str(root / "f"), "system.posix_acl_access",
             [(1, 6, u), (2, 6, 4242), (2, 4, 65534), (4, 4, u), (8, 4, 100), (8, 2, 6), (0x10, 6, u), (0x20, 4, u)])
    _set_acl(str(root / "g"), "system.posix_acl_access", [(1, 6, u), (2, 7, 0), (4, 4, u), (0x10, 7, u), (0x20, 0, u)])
    _set_acl(str(root / "d"), "system.posix_acl_default",
             [(1, 7, u), (2, 5, 65534), (4, 5, u), (8, 1, 4343), (0x10, 7, u), (0x20, 5, u)])
    _set_acl(str(root / "d2"), "system.posix_acl_default", [(1, 7, u), (4, 5, u), (0x20, 0, u)])
    os.setxattr(root / "f", "trusted.t", b"trusted value")
    for p in ("f", "fifo", "d"):
        os.setxattr(root / p, "security.selinux", b"system_u:object_r:%s_t:s0\0" % p.encode())
    os.setxattr(root / "sl", "security.selinux", b"system_u:object_r:sl_t:s0\0", follow_symlinks=False)
    os.setxattr(root / "cap", "security.capability", bytes.fromhex("0100000200200000000000000000000000000000"))
    chattr = shutil.which("chattr")
    if chattr:
        subprocess.run([chattr, "+A", str(root / "d2")], check=False, capture_output=True)
    for args in ([], ["--with=acl", "--with=user-names"], ["--without=user-names"], ["--with=unix", "--with=acl"]):
        ref = tmp_path / "ref.catar"
        H.casync("make", *args, str(ref), str(root))
        ours = b"".join(encode_tree(str(root), _resolved(args)))
        assert ours == ref.read_bytes(), args
    # Round trip through our extractor restores the same archive.
    out = base / "acl-out"
    shutil.rmtree(out, ignore_errors=True)
    with ref.open("rb") as f:
        extract_stream(f, str(out))
    assert b"".join(encode_tree(str(out), _resolved(args))) == ref.read_bytes()
    shutil.rmtree(out, ignore_errors=True)


def test_caexclude_nodump_and_exclude_options(base: Path, tmp_path: Path) -> None:
    root = base / "ex"
    if root.exists():
        shutil.rmtree(root)
    for d in ("a/b", "c/a", "sub/deep"):
        (root / d).mkdir(parents=True)
    for f in ("foo", "a/foo", "a/b/foo", "c/a/foo", "x.log", "keep.log", "sub/y.log", "sub/keep2.log",
              "sub/deep/z.log", ".hid", "a/b/bar", "c/bar", "sub/deep/bar", "nodump", "[x]", "c/.dot"):
        (root / f).write_bytes(b"x")
    (root / ".caexclude").write_bytes(b"# comment\n\n  foo  \n/x.log\n*.log\n!keep.log\na/b\n\\[x]\n")
    (root / "sub/.caexclude").write_bytes(b"!keep2.log\nbar\n")
    (root / "c/.caexclude").write_bytes(b"*\n")
    chattr = shutil.which("chattr")
    if chattr:
        subprocess.run([chattr, "+d", str(root / "nodump")], check=False, capture_output=True)
    for args in ([], ["--exclude-nodump=no"], ["--with=unix", "--exclude-nodump=no"]):
        ref = tmp_path / "ref.catar"
        H.casync("make", *args, str(ref), str(root))
        assert b"".join(encode_tree(str(root), _resolved(args))) == ref.read_bytes(), args
    # casync 2 still honours .caexclude with --exclude-file=no (only EXCLUDE_FILE
    # is cleared in the flags), and so do we: the same bytes.
    ref = tmp_path / "plain.catar"
    H.casync("make", "--exclude-file=no", str(ref), str(root))
    plain = b"".join(encode_tree(str(root), _resolved(["--exclude-file=no"])))
    assert plain == ref.read_bytes()
    listed = {line.split(" ", 1)[1] for line in list_lines(decode(io.BytesIO(plain)))}
    assert not {"foo", "a/b/foo", "x.log", "c/bar", "sub/deep/bar", "[x]"} & listed
    # --exclude patterns act like a .caexclude at the root.
    (root / ".caexclude").unlink()
    ours = b"".join(encode_tree(str(root), ff.CASYNC_DEFAULT, EncodeOptions(excludes=["foo", "*.log", "!keep.log"])))
    names = [line.split(" ", 1)[1] for line in list_lines(decode(io.BytesIO(ours)))]
    assert "foo" not in names and "a/foo" not in names and "x.log" not in names and "keep.log" in names


def test_submounts_and_api_file_systems(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "sm"
    (root / "mnt").mkdir(parents=True)
    (root / "proc").mkdir()
    (root / "f").write_bytes(b"f")
    mounted: list[Path] = []
    try:
        for what, where in (("tmpfs", root / "mnt"), ("proc", root / "proc")):
            if subprocess.run(["mount", "-t", what, what, str(where)], capture_output=True).returncode != 0:
                pytest.skip(f"cannot mount {what} here")
            mounted.append(where)
        (root / "mnt/inner").write_bytes(b"inner")
        for args in ([], ["--exclude-submounts=yes"], ["--with=unix"]):
            ref = tmp_path / "ref.catar"
            H.casync("make", *args, str(ref), str(root))
            ours = b"".join(encode_tree(str(root), _resolved(args)))
            assert ours == ref.read_bytes(), args
    finally:
        for m in reversed(mounted):
            subprocess.run(["umount", str(m)], check=False)
