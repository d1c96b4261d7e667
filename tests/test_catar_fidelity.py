"""Archive fidelity against casync 2 under every feature set it accepts.

For random small trees (files, directories, symlinks, FIFOs; read-only and
odd modes, foreign owners, user xattrs, access and default ACLs, mtimes as far
out as the year 2400, ``.caexclude`` files) and random ``--with``/``--without``
sets, our encoder must write the bytes ``casync make`` writes, and our
extraction of that archive must leave the tree ``casync extract`` leaves:
the same types, modes, owners, contents, link targets, xattrs and ACLs, and
the same mtimes where the archive holds them.  Extractions go to a fresh
directory, sometimes below a directory with a default ACL (what new nodes
inherit is part of the result), sometimes twice into the same tree.

casync 2 cannot extract its own usec-time archives unless every mtime is a
whole millisecond (its reader checks for 10**6 ns steps, its writer keeps
microseconds), so such trees are rounded to milliseconds first; nor can it
extract an archive with user names but no numeric ids when some owner has no
name (it writes the digits as the name and then refuses them), and then only
both it and we refuse it.  It cannot extract any archive with user names but
no numeric ids at all; there only our extraction runs.

Targeted tests pin the three differences found by earlier checks:
``--exclude-file=no`` (casync still honours ``.caexclude``), the modes left
without the permissions bit and with the read-only bit (``fat``), and mtimes
beyond a signed 64-bit nanosecond count (year 2400).
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import CASYNC, desync_env, run_desync
from desync import featureflags as ff
from desync.catar import decode, encode_tree, extract_stream, list_lines, resolve_flags
from desync.catar import writeback
from desync.catar.extract import read_only_mode
from desync.errors import FormatError

pytestmark = [
    pytest.mark.casync,
    pytest.mark.skipif(CASYNC is None, reason="casync is not installed (apt-get install casync)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the trees use foreign owners and ACLs: run as root"),
]

U = 0xFFFFFFFF  # ACL entries without an id
ACCESS = "system.posix_acl_access"
DEFAULT = "system.posix_acl_default"
YEAR_2400_NS = 13_569_465_600 * 10**9  # beyond 2**63: only an unsigned 64-bit count holds it

FEATURE_NAMES = sorted(ff.NAMES)


def _acl(entries: list[tuple[int, int, int]]) -> bytes:
    """A ``system.posix_acl_*`` value from (tag, permissions, id) entries in kernel order."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


def _probe(base: str) -> bool:
    """Whether ``base`` takes user xattrs, ACLs and year-2400 mtimes (the trees need all three)."""
    d = tempfile.mkdtemp(dir=base)
    try:
        os.setxattr(d, "user.desync-probe", b"1")
        os.setxattr(d, DEFAULT, _acl([(1, 7, U), (4, 5, U), (0x20, 5, U)]))
        os.utime(d, ns=(YEAR_2400_NS + 1, YEAR_2400_NS + 1))
        return os.stat(d).st_mtime_ns == YEAR_2400_NS + 1
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EINVAL):
            return False
        raise
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    for cand in ("/dev/shm", str(tmp_path_factory.mktemp("fidelity"))):
        if os.path.isdir(cand) and os.access(cand, os.W_OK) and _probe(cand):
            b = Path(tempfile.mkdtemp(prefix="desync-fidelity-", dir=cand))
            yield b
            shutil.rmtree(b, ignore_errors=True)
            return
    pytest.skip("no writable file system with user xattrs, POSIX ACLs and 64-bit mtimes")


@pytest.fixture
def work(base: Path) -> Iterator[Path]:
    w = Path(tempfile.mkdtemp(dir=base))
    yield w
    shutil.rmtree(w, ignore_errors=True)


# --- trees -------------------------------------------------------------------------------------


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
    named_acl: list[tuple[int, int, int]] = field(default_factory=list)  # ACL_USER/ACL_GROUP entries
    group_obj: int = -1  # with named entries: the owning group's own permissions (the mask is the group bits)
    default_acl: list[tuple[int, int, int]] = field(default_factory=list)
    caexclude: bytes | None = None
    children: dict[bytes, "Spec"] = field(default_factory=dict)


NAMES = st.text(alphabet="abcxyz019._-", min_size=1, max_size=6).map(str.encode).filter(
    lambda b: b not in (b".", b"..", b".caexclude")
)
OWNERS = st.sampled_from([0, 100, 1000, 4242, 65534])
MTIMES = st.one_of(
    st.integers(0, 2**33).map(lambda s: s * 10**9),
    st.integers(0, 2**62),
    st.integers(YEAR_2400_NS, YEAR_2400_NS + 10**12),
    st.just(YEAR_2400_NS + 987_654_321),
)
FILE_MODES = st.one_of(st.sampled_from([0o444, 0o400, 0o000, 0o644, 0o600, 0o640, 0o755, 0o4755, 0o2640]),
                       st.integers(0, 0o7777))
DIR_MODES = st.one_of(st.sampled_from([0o555, 0o500, 0o700, 0o755, 0o750, 0o1777, 0o2775, 0o000]),
                      st.integers(0, 0o7777))
XATTRS = st.dictionaries(st.sampled_from([b"user.a", b"user.b", b"user.zz"]), st.binary(max_size=12), max_size=2)
NAMED = st.lists(
    st.tuples(st.sampled_from([2, 8]), st.integers(0, 7), st.sampled_from([0, 100, 1000, 4242, 65534])),
    max_size=3,
    unique_by=lambda e: (e[0], e[2]),
)


@st.composite
def specs(draw: st.DrawFn, depth: int = 0) -> Spec:
    kinds = ["file", "file", "symlink", "fifo"] + (["dir", "dir"] if depth < 2 else [])
    kind = "dir" if depth == 0 else draw(st.sampled_from(kinds))
    s = Spec(kind, uid=draw(OWNERS), gid=draw(OWNERS), mtime_ns=draw(MTIMES))
    if kind in ("file", "dir"):
        s.mode = draw(FILE_MODES if kind == "file" else DIR_MODES)
        s.xattrs = draw(XATTRS)
        if draw(st.integers(0, 3)) == 0:
            s.named_acl = draw(NAMED)
            s.group_obj = draw(st.integers(0, 7))
    if kind == "file":
        s.data = draw(st.binary(max_size=64))
    elif kind == "dir":
        if draw(st.integers(0, 4)) == 0:
            s.default_acl = draw(NAMED)
        names = draw(st.lists(NAMES, max_size=5 if depth else 7, unique=True))
        for n in names:
            s.children[n] = draw(specs(depth + 1))
        if names and draw(st.integers(0, 3)) == 0:
            picked = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
            lines = [(b"!" if draw(st.booleans()) and i else b"") + n for i, n in enumerate(picked)]
            s.caexclude = b"\n".join(lines + [b"*.x"]) + b"\n"
    elif kind == "symlink":
        s.target = draw(NAMES)
    else:
        s.mode = draw(st.integers(0, 0o777))
    return s


def _access_acl(s: Spec) -> bytes:
    named = sorted(s.named_acl, key=lambda e: (e[0], e[2]))
    entries = [(1, (s.mode >> 6) & 7, U)] + [e for e in named if e[0] == 2] + [(4, s.group_obj, U)]
    entries += [e for e in named if e[0] == 8] + [(0x10, (s.mode >> 3) & 7, U), (0x20, s.mode & 7, U)]
    return _acl(entries)


def _default_acl(s: Spec) -> bytes:
    named = sorted(s.default_acl, key=lambda e: (e[0], e[2]))
    entries = [(1, 7, U)] + [e for e in named if e[0] == 2] + [(4, 5, U)] + [e for e in named if e[0] == 8]
    return _acl(entries + ([(0x10, 7, U)] if named else []) + [(0x20, 5, U)])


def build(spec: Spec, path: bytes) -> None:
    """Create the tree, children before their directory's metadata (a read-only directory can be filled)."""
    if spec.kind == "dir":
        os.mkdir(path, 0o700)
        for name, child in spec.children.items():
            build(child, path + b"/" + name)
        if spec.caexclude is not None:
            with open(path + b"/.caexclude", "wb") as f:
                f.write(spec.caexclude)
            os.utime(path + b"/.caexclude", ns=(spec.mtime_ns, spec.mtime_ns))
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
        if spec.named_acl:
            os.setxattr(path, ACCESS, _access_acl(spec))  # sets the group bits to the mask: they are the mode's
        if spec.default_acl:
            os.setxattr(path, DEFAULT, _default_acl(spec))
    os.utime(path, ns=(spec.mtime_ns, spec.mtime_ns), follow_symlinks=False)


# --- comparing trees ---------------------------------------------------------------------------


def snapshot(root: Path, times: bool) -> dict[bytes, tuple[object, ...]]:
    """Everything either tool restores, per path (mtimes only when the archive holds them)."""
    out: dict[bytes, tuple[object, ...]] = {}
    top = bytes(root)

    def visit(path: bytes, rel: bytes) -> None:
        st_ = os.lstat(path)
        body: object = None
        xattrs: list[tuple[str, bytes]] = []
        if stat.S_ISLNK(st_.st_mode):
            body = os.readlink(path)
        else:
            xattrs = sorted((n, os.getxattr(path, n)) for n in os.listxattr(path))
            if stat.S_ISREG(st_.st_mode):
                with open(path, "rb") as f:
                    body = f.read()
        out[rel] = (oct(st_.st_mode), st_.st_uid, st_.st_gid, st_.st_mtime_ns if times else None, body, xattrs)
        if stat.S_ISDIR(st_.st_mode):
            for name in sorted(os.listdir(path)):
                visit(path + b"/" + name, rel + b"/" + name if rel else name)

    visit(top, b"")
    return out


def casync_run(*args: str, umask: int | None = None) -> bytes:
    assert CASYNC is not None

    def set_umask() -> None:
        if umask is not None:
            os.umask(umask)

    proc = subprocess.run([CASYNC, *args], capture_output=True, timeout=120, preexec_fn=set_umask)
    if proc.returncode != 0:
        raise AssertionError(f"casync {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def our_extract(archive: Path, target: Path, umask: int | None = None) -> None:
    """The library path ``desync untar`` takes, under ``umask`` when given."""
    old = os.umask(umask) if umask is not None else None
    try:
        with archive.open("rb") as f:
            extract_stream(f, str(target))
    finally:
        if old is not None:
            os.umask(old)


def _flags(with_: list[str], without: list[str], exclude_file: bool = True) -> int:
    return resolve_flags(with_, without, exclude_file=exclude_file)


def _args(with_: list[str], without: list[str], exclude_file: bool = True) -> list[str]:
    return [f"--with={n}" for n in with_] + [f"--without={n}" for n in without] + (
        [] if exclude_file else ["--exclude-file=no"])


def _round_to_ms(root: Path) -> None:
    """casync's reader wants usec-time mtimes in whole milliseconds (its writer keeps microseconds)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames + ["."]:
            p = os.path.join(dirpath, name)
            t = os.lstat(p).st_mtime_ns
            os.utime(p, ns=(t - t % 10**6, t - t % 10**6), follow_symlinks=False)


def _readable(archive: bytes) -> bool:
    """Whether our reader, strict as casync's, takes the archive.

    casync's reader wants user and group names to start with a letter or
    ``_``; with user names but no numeric ids its writer stores an owner or
    ACL entry without a name as digits, which it then refuses ("Bad message").
    """
    try:
        for _ in decode(io.BytesIO(archive)):
            pass
    except FormatError:
        return False
    return True


def check_against_casync(work: Path, src: Path, with_: list[str], without: list[str], exclude_file: bool = True,
                         inherit: bool = False, twice: bool = False) -> str:
    """Same bytes as ``casync make``; our extraction of them is casync's extraction (returns which check ran)."""
    args = _args(with_, without, exclude_file)
    flags = _flags(with_, without, exclude_file)
    if ff.time_granularity(flags) == 1000:
        _round_to_ms(src)  # else casync refuses to extract its own archive ("Bad message")
    ref = work / "ref.catar"
    casync_run("make", *args, str(ref), str(src))
    ours = b"".join(encode_tree(str(src), flags))
    want = ref.read_bytes()
    assert ours == want, f"{args}: encoder output differs from casync make"
    parent = work / "out"
    parent.mkdir()
    if inherit:
        os.setxattr(parent, DEFAULT, _acl([(1, 7, U), (2, 5, 1000), (4, 5, U), (8, 3, 4343), (0x10, 7, U),
                                           (0x20, 5, U)]))
    theirs, mine = parent / "casync", parent / "ours"
    if flags & ff.WITH_USER_NAMES and not flags & (ff.WITH_16BIT_UIDS | ff.WITH_32BIT_UIDS):
        # casync 2 refuses to extract any archive with names but no ids, even an empty directory.
        if _readable(want):
            our_extract(ref, mine)
            assert snapshot(mine, False)
        return "casync cannot extract names without ids"
    if not _readable(want):
        # Both readers refuse the digits as a name, each with an error; ours leaves nothing behind.
        assert CASYNC is not None
        assert subprocess.run([CASYNC, "extract", str(ref), str(theirs)], capture_output=True).returncode != 0
        with pytest.raises(FormatError, match=r"invalid (\S+ name|name in)"):
            our_extract(ref, mine)
        assert not mine.exists()
        return "both refuse digits as names"
    for _ in range(2 if twice else 1):
        casync_run("extract", str(ref), str(theirs))
        our_extract(ref, mine)
        times = bool(ff.time_granularity(flags))
        assert snapshot(mine, times) == snapshot(theirs, times), f"{args}: extraction differs from casync extract"
    return "extractions compared"


# --- property tests ----------------------------------------------------------------------------


FEATURE_ARGS = st.tuples(
    st.lists(st.sampled_from(FEATURE_NAMES), max_size=4, unique=True),
    st.lists(st.sampled_from(FEATURE_NAMES), max_size=3, unique=True),
    st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(spec=specs(), features=FEATURE_ARGS, inherit=st.booleans(), twice=st.booleans())
def test_random_trees_and_feature_sets_match_casync(
    base: Path, spec: Spec, features: tuple[list[str], list[str], bool], inherit: bool, twice: bool
) -> None:
    w = Path(tempfile.mkdtemp(dir=base))
    try:
        src = w / "src"
        build(spec, bytes(src))
        with_, without, exclude_file = features
        event(check_against_casync(w, src, with_, without, exclude_file, inherit, twice))
    finally:
        shutil.rmtree(w, ignore_errors=True)


@pytest.fixture
def rich_tree(work: Path) -> Path:
    """One tree with every kind of node and metadata the feature sets choose between."""
    root = Spec("dir", mode=0o755, mtime_ns=YEAR_2400_NS + 5, default_acl=[(2, 5, 1000)])
    kids = {
        b"plain": Spec("file", mode=0o644, data=b"plain", mtime_ns=1_500_000_000_123_456_789),
        b"ro": Spec("file", mode=0o444, data=b"ro", uid=1000, gid=100, mtime_ns=YEAR_2400_NS + 3_000_000_001),
        b"noperm": Spec("file", mode=0o000, data=b"", uid=4242, gid=4343, mtime_ns=7),
        b"suid": Spec("file", mode=0o4750, data=b"s", gid=100, xattrs={b"user.k": b"v"}),
        b"acl": Spec("file", mode=0o650, data=b"acl", named_acl=[(2, 7, 1000), (8, 6, 4343)], group_obj=4),
        b"fifo": Spec("fifo", mode=0o640, mtime_ns=YEAR_2400_NS),
        b"link": Spec("symlink", target=b"plain", mtime_ns=YEAR_2400_NS + 11),
        b"skipped.x": Spec("file", data=b"excluded by .caexclude"),
        b"rodir": Spec("dir", mode=0o555, mtime_ns=YEAR_2400_NS + 2_000_000_000, children={
            b"inner": Spec("file", mode=0o664, data=b"in", mtime_ns=3_000_000_000)}),
        b"private": Spec("dir", mode=0o2750, gid=100, named_acl=[(8, 5, 4343)], group_obj=5,
                         default_acl=[(8, 7, 100)], children={b"f": Spec("file", data=b"f")}),
    }
    root.children = kids
    root.caexclude = b"*.x\n"
    path = work / "rich"
    build(root, bytes(path))
    return path


@pytest.mark.parametrize("name", FEATURE_NAMES)
@pytest.mark.parametrize("how", ["with", "without"])
def test_each_feature_name_matches_casync(rich_tree: Path, work: Path, name: str, how: str) -> None:
    with_, without = ([name], []) if how == "with" else ([], [name])
    check_against_casync(work, rich_tree, with_, without)


# --- targeted checks ---------------------------------------------------------------------------


def test_exclude_file_no_still_honours_caexclude(base: Path, work: Path) -> None:
    """casync 2 leaves out what .caexclude files list with --exclude-file=no too; only the flag bit differs."""
    src = work / "src"
    (src / "sub/deep").mkdir(parents=True)
    for f in ("a", "b", "keep.log", "x.log", "sub/a", "sub/x", "sub/deep/y", "sub/deep/z.log"):
        (src / f).write_bytes(f.encode())
    (src / ".caexclude").write_bytes(b"a\n*.log\n!keep.log\n")
    (src / "sub/.caexclude").write_bytes(b"x\ndeep/y\n")
    for extra in ([], ["--with=unix"], ["--with=best", "--without=acl"]):
        for policy in ("yes", "no"):
            ref, ours = work / f"ref-{policy}.catar", work / f"ours-{policy}.catar"
            casync_run("make", *extra, f"--exclude-file={policy}", str(ref), str(src))
            run_desync("tar", *(extra or ["--with=best"]), f"--exclude-file={policy}", ours, src)
            assert ours.read_bytes() == ref.read_bytes(), (extra, policy)
        listed = sorted(line.split(" ", 1)[1] for line in list_lines(decode(io.BytesIO(ours.read_bytes()))))
        assert listed == [".", ".caexclude", "b", "keep.log", "sub", "sub/.caexclude", "sub/deep"], extra
        flags = struct.unpack_from("<Q", (work / "ref-no.catar").read_bytes(), 16)[0]
        assert not flags & ff.EXCLUDE_FILE
        assert struct.unpack_from("<Q", (work / "ref-yes.catar").read_bytes(), 16)[0] & ff.EXCLUDE_FILE


def _mode_tree(src: Path) -> None:
    (src / "rodir/sub").mkdir(parents=True)
    (src / "rwdir").mkdir()
    for f, mode in (("ro", 0o444), ("rw", 0o640), ("none", 0o000), ("x", 0o755), ("rodir/f", 0o444),
                    ("rwdir/f", 0o666)):
        (src / f).write_bytes(f.encode())
        os.chmod(src / f, mode)
    os.mkfifo(src / "rofifo", 0o444)
    os.mkfifo(src / "fifo", 0o660)
    os.chmod(src / "rodir/sub", 0o500)
    os.chmod(src / "rodir", 0o555)
    os.chmod(src / "rwdir", 0o750)
    os.chmod(src, 0o555)


MODE_SETS = [
    (["fat", "fifos"], []),
    (["read-only", "sec-time", "fifos", "symlinks"], []),
    (["fifos", "symlinks"], []),
    (["unix"], ["permissions"]),
    (["2sec-time", "fifos"], []),
    ([], ["permissions", "acl"]),
]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000, 0o277])
@pytest.mark.parametrize("features", MODE_SETS, ids=lambda f: "+".join(f[0]) + "-" + "-".join(f[1]))
def test_modes_without_permissions_match_casync(work: Path, umask: int,
                                                features: tuple[list[str], list[str]]) -> None:
    """What casync restores when the archive has no permission bits, or only the read-only bit."""
    src = work / "src"
    src.mkdir()
    _mode_tree(src)
    with_, without = features
    ref = work / "ref.catar"
    casync_run("make", *_args(with_, without), str(ref), str(src))
    assert b"".join(encode_tree(str(src), _flags(with_, without))) == ref.read_bytes()
    times = bool(ff.time_granularity(_flags(with_, without)))
    # A fresh target, then the same archive again into the trees the first round left.
    for _ in range(2):
        casync_run("extract", str(ref), str(work / "casync"), umask=umask)
        our_extract(ref, work / "ours", umask=umask)
        assert snapshot(work / "ours", times) == snapshot(work / "casync", times)
    if with_ == ["fat", "fifos"] and umask == 0o022:
        got = snapshot(work / "ours", times)
        assert got[b"ro"][0] == oct(stat.S_IFREG)  # casync's read-only step clears the read bits too
        assert got[b"rodir"][0] == oct(stat.S_IFDIR | 0o100)
        assert got[b"rwdir"][0] == oct(stat.S_IFDIR | 0o700)
        assert got[b"rw"][0] == oct(stat.S_IFREG | 0o644)


def test_read_only_mode_rule() -> None:
    """The read-only step on its own: kept when readable and the write bit agrees, else rebuilt."""
    assert read_only_mode(0o644, True, False) == 0o644
    assert read_only_mode(0o444, False, False) == 0o444
    assert read_only_mode(0o644, False, False) == 0o000
    assert read_only_mode(0o700, False, True) == 0o100
    assert read_only_mode(0o400, True, False) == 0o600
    assert read_only_mode(0o444, True, False) == 0o666
    assert read_only_mode(0o600, True, True) == 0o700
    assert read_only_mode(0o2755, True, True) == 0o2755


@pytest.mark.parametrize("features", [["permissions"], ["unix"], ["fat"], ["acl"], ["best"], ["symlinks"]],
                         ids=lambda f: "+".join(f))
def test_acl_group_bits_are_the_mask(work: Path, features: list[str]) -> None:
    """A file with an ACL shows its mask as group bits; every feature set restores what casync does."""
    src = work / "src"
    (src / "d").mkdir(parents=True)
    f = src / "f"
    f.write_bytes(b"f")
    os.chmod(f, 0o640)
    os.setxattr(f, ACCESS, _acl([(1, 6, U), (2, 7, 1000), (4, 4, U), (0x10, 7, U), (0x20, 0, U)]))
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o670  # the mask (rwx), not the owning group's r--
    os.setxattr(src / "d", DEFAULT, _acl([(1, 7, U), (2, 5, 1000), (4, 5, U), (0x10, 5, U), (0x20, 0, U)]))
    (src / "d/inherited").write_bytes(b"i")
    ref = work / "ref.catar"
    casync_run("make", *_args(features, []), str(ref), str(src))
    assert b"".join(encode_tree(str(src), _flags(features, []))) == ref.read_bytes()
    mode = next(ln for ln in casync_run("mtree", str(ref)).decode().splitlines() if ln.startswith("f "))
    if ff.normalize(_flags(features, [])) & (ff.WITH_PERMISSIONS | ff.WITH_ACL):
        assert " mode=0670 " in f" {mode} "
    for inherit in (False, True):
        parent = work / f"out{int(inherit)}"
        parent.mkdir()
        if inherit:
            os.setxattr(parent, DEFAULT, _acl([(1, 7, U), (4, 7, U), (8, 2, 100), (0x10, 7, U), (0x20, 0, U)]))
        casync_run("extract", str(ref), str(parent / "casync"))
        our_extract(ref, parent / "ours")
        times = bool(ff.time_granularity(_flags(features, [])))
        assert snapshot(parent / "ours", times) == snapshot(parent / "casync", times), inherit


def _future_tree(src: Path) -> None:
    (src / "d").mkdir(parents=True)
    (src / "d/f").write_bytes(b"future")
    (src / "big").write_bytes(os.urandom(3 << 20))  # written in place, not through the writeback batch
    os.symlink("d/f", src / "l")
    os.mkfifo(src / "p")
    for i, p in enumerate(("d/f", "big", "l", "p", "d", ".")):
        os.utime(src / p, ns=(YEAR_2400_NS + i, YEAR_2400_NS + i), follow_symlinks=False)


@pytest.mark.parametrize("accel", ["1", ""], ids=["no-accel", "accel"])
def test_far_future_mtimes_are_restored(work: Path, accel: str) -> None:
    """Year-2400 mtimes (past 2**63 ns) survive untar, fresh and into an existing tree, on both code paths."""
    src = work / "src"
    _future_tree(src)
    ref = work / "ref.catar"
    casync_run("make", str(ref), str(src))
    env = desync_env(DESYNC_NO_ACCEL=accel) if accel else desync_env()
    run_desync("untar", ref, work / "ours", env=env)
    casync_run("extract", str(ref), str(work / "casync"))
    assert snapshot(work / "ours", True) == snapshot(work / "casync", True)
    assert os.lstat(work / "ours/l").st_mtime_ns == YEAR_2400_NS + 2
    (work / "ours/extra").write_bytes(b"x")
    run_desync("untar", "--delete", ref, work / "ours", env=env)
    assert snapshot(work / "ours", True) == snapshot(work / "casync", True)
    run_desync("untar", "--output-format", "pax", ref, work / "out.tar", env=env)
    run_desync("tar", "--input-format", "tar", "--with=best", work / "back.catar", work / "out.tar", env=env)
    assert (work / "back.catar").read_bytes() == ref.read_bytes()


def test_writeback_sets_unsigned_mtimes(work: Path) -> None:
    """Both finishers of the writeback thread take an mtime above 2**63 ns."""
    finishers: list[Callable[[list[writeback.FileJob]], tuple[int, int, str] | None]] = [writeback._finish_py]
    fileio = writeback._FILEIO
    if fileio is not None:
        finishers.append(lambda jobs: fileio.finish_files([j.as_tuple() for j in jobs]))
    for i, finish in enumerate(finishers):
        path = work / f"f{i}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        job = writeback.FileJob(fd, (b"f",), blocks=[b"x"], mode=0o640, set_times=True, mtime_ns=YEAR_2400_NS + 9)
        assert finish([job]) is None
        st_ = os.stat(path)
        assert (st_.st_mtime_ns, stat.S_IMODE(st_.st_mode), st_.st_size) == (YEAR_2400_NS + 9, 0o640, 1)
