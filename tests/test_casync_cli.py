"""casync's command line (``desync casync VERB``, or desync started as ``casync``) against casync 2 itself.

Each check runs the same command line through casync and through our
mode and compares what they write: archives, indexes, chunks, extracted
trees (scanned with ``casync mtree``) and the lines list/mtree/digest/make
print.  Trees are the catar fixtures (tests/fixtures/catar) and random
trees (hypothesis).  The SSH checks use a local stand-in for ssh as
casync's own test scripts do.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CASYNC, NEUTRAL_DIR, assert_one_line_error, catar_helpers, desync_env, run_casync, run_desync

if TYPE_CHECKING:
    import helpers as H  # the module catar_helpers() loads, by the name mypy finds it under (tests/fixtures/catar)
else:
    H = catar_helpers()

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.casync,
    pytest.mark.skipif(CASYNC is None, reason="casync is not installed (apt-get install casync)"),
    pytest.mark.timeout(300),
]


def ours(*args: object, cwd: Path | None = None, check: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``python -m desync casync ARGS``."""
    return run_desync("casync", *args, cwd=cwd, check=check, env=env)


def theirs(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None) -> bytes:
    return run_casync(*args, cwd=cwd, env=env).stdout


def store_files(store: Path) -> dict[str, bytes]:
    """Chunk name -> uncompressed content (casync and we both write zstd, possibly different frames)."""
    from desync import compression

    return {p.name: compression.decompress(p.read_bytes()) for p in store.rglob("*.cacnk")}


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = H.xattr_base(tmp_path_factory.mktemp("trees")) or tmp_path_factory.mktemp("trees-plain")
    for name in H.TREE_NAMES:
        if name == "special" and not H.is_root():
            continue
        H.make_trees.build_tree(name, str(base / name))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _tree_names() -> list[str]:
    return [n for n in H.TREE_NAMES if n != "special" or H.is_root()]


@pytest.mark.parametrize("tree", _tree_names())
def test_make_list_mtree_digest_match_casync(trees: Path, tree: str, tmp_path: Path) -> None:
    src = trees / tree
    for verb in ("list", "mtree", "digest"):
        assert ours(verb, src).stdout == theirs(verb, src), verb
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    # make of a catar and of an archive index: same bytes, same chunks, same digest line on stdout.
    assert ours("make", a / "t.catar", src).stdout == theirs("make", b / "t.catar", src)
    assert (a / "t.catar").read_bytes() == (b / "t.catar").read_bytes()
    assert ours("make", a / "t.caidx", src).stdout == theirs("make", b / "t.caidx", src)
    assert (a / "t.caidx").read_bytes() == (b / "t.caidx").read_bytes()
    assert store_files(a / "default.castr") == store_files(b / "default.castr")
    for name in ("t.catar", "t.caidx"):
        for verb in ("list", "mtree", "digest"):
            assert ours(verb, a / name).stdout == theirs(verb, b / name), (verb, name)


@pytest.mark.parametrize("tree", _tree_names())
def test_extract_of_both_tools_archives_scans_the_same(trees: Path, tree: str, tmp_path: Path) -> None:
    src = trees / tree
    theirs("make", tmp_path / "t.caidx", src)
    theirs("make", tmp_path / "t.catar", src)
    want = theirs("mtree", src)
    for name in ("t.caidx", "t.catar"):
        out = tmp_path / f"out-{name.replace('.', '-')}"
        ours("extract", tmp_path / name, out)
        assert theirs("mtree", out) == want, name


def test_blob_make_extract_digest_match_casync(tmp_path: Path) -> None:
    rng = random.Random(15)
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(rng.getrandbits(8) for _ in range(300_000)) * 3)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert ours("--chunk-size=16384", "make", a / "x.caibx", blob).stdout == \
        theirs("--chunk-size=16384", "make", b / "x.caibx", blob)
    assert (a / "x.caibx").read_bytes() == (b / "x.caibx").read_bytes()
    assert store_files(a / "default.castr") == store_files(b / "default.castr")
    assert ours("digest", a / "x.caibx").stdout == theirs("digest", blob)
    ours("extract", b / "x.caibx", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == blob.read_bytes()
    # A seed holding everything: the store is not needed.
    shutil.rmtree(b / "default.castr")
    (b / "default.castr").mkdir()
    ours("extract", a / "x.caibx", f"--seed={blob}", tmp_path / "out2", cwd=tmp_path)
    assert (tmp_path / "out2").read_bytes() == blob.read_bytes()


@pytest.mark.parametrize("compression", ["xz", "gzip", "zstd"])
def test_compression_writes_that_format_and_casync_reads_it(trees: Path, compression: str, tmp_path: Path) -> None:
    magic = {"xz": b"\xfd7zXZ\x00", "gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}[compression]
    ours(f"--compression={compression}", "make", tmp_path / "t.caidx", trees / "data")
    chunks = list((tmp_path / "default.castr").rglob("*.cacnk"))
    assert chunks and all(p.read_bytes().startswith(magic) for p in chunks)
    theirs("extract", tmp_path / "t.caidx", tmp_path / "out")
    assert theirs("mtree", tmp_path / "out") == theirs("mtree", trees / "data")


def test_seek_path_for_list_mtree_digest_extract(trees: Path, tmp_path: Path) -> None:
    src = trees / "basic"
    theirs("make", tmp_path / "t.catar", src)
    theirs("make", tmp_path / "t.caidx", src)
    sub = next(p.name for p in sorted(src.iterdir()) if p.is_dir() and not p.is_symlink())
    for name in ("t.catar", "t.caidx"):
        for verb in ("list", "mtree", "digest"):
            assert ours(verb, tmp_path / name, sub).stdout == theirs(verb, tmp_path / name, sub), (verb, name)
        ours("extract", tmp_path / name, tmp_path / f"x-{name[2:]}", sub)
        assert theirs("mtree", tmp_path / f"x-{name[2:]}" / sub) == theirs("mtree", src / sub)
    assert ours("digest", tmp_path / "t.catar", sub).stdout == theirs("digest", src / sub)


def test_invoked_under_the_name_casync(trees: Path, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    link = subprocess.run([str(REPO / "scripts" / "casync-link"), bindir, sys.executable], capture_output=True,
                          check=True, text=True).stdout.strip()
    assert Path(link).name == "casync" and Path(link).is_symlink()
    proc = subprocess.run([link, "list", trees / "data"], capture_output=True, check=True)
    assert proc.stdout == theirs("list", trees / "data")
    # The program name decides, wherever the link points: also a link to a link.
    (bindir / "other").symlink_to(link)
    help_text = subprocess.run([bindir / "other", "--help"], capture_output=True, text=True).stdout
    assert "casync-compatible mode" not in help_text


def test_ssh_locations_pull_and_push(trees: Path, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    link = subprocess.run([str(REPO / "scripts" / "casync-link"), bindir, sys.executable], capture_output=True,
                          check=True, text=True).stdout.strip()
    ssh = tmp_path / "pseudo-ssh"
    ssh.write_text('#!/bin/sh\nshift 1\nexec "$@"\n')
    ssh.chmod(0o755)
    env = desync_env(CASYNC_SSH_PATH=str(ssh), CASYNC_REMOTE_PATH=link)
    src = trees / "data"
    # make host:/x.caidx pushes the index and its chunks; list/mtree/digest read it back over SSH.
    ours("make", f"localhost:{tmp_path}/r.caidx", src, env=env)
    ours("make", f"localhost:{tmp_path}/r.catar", src, env=env)
    assert (tmp_path / "default.castr").is_dir()
    for name in ("r.caidx", "r.catar"):
        for verb in ("list", "mtree", "digest"):
            assert ours(verb, f"localhost:{tmp_path}/{name}", env=env).stdout == theirs(verb, src), (verb, name)
    ours("extract", f"localhost:{tmp_path}/r.caidx", tmp_path / "out", env=env)
    assert theirs("mtree", tmp_path / "out") == theirs("mtree", src)


def test_cache_gives_the_same_index_and_notices_changes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(200_000))
    cache = tmp_path / "cache"
    theirs("make", tmp_path / "plain.caidx", src)
    ours("make", f"--cache={cache}", tmp_path / "c1.caidx", src)
    ours("make", f"--cache={cache}", tmp_path / "c2.caidx", src)
    plain = (tmp_path / "plain.caidx").read_bytes()
    assert (tmp_path / "c1.caidx").read_bytes() == plain == (tmp_path / "c2.caidx").read_bytes()
    with open(src / "d" / "f", "ab") as f:
        f.write(b"changed")
    theirs("make", tmp_path / "plain2.caidx", src)
    ours("make", f"--cache={cache}", tmp_path / "c3.caidx", src)
    assert (tmp_path / "c3.caidx").read_bytes() == (tmp_path / "plain2.caidx").read_bytes() != plain


def test_out_of_scope_verbs_and_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    for args in (["mkdev", "x.caibx"], ["udev"], ["--chunk-size=1:2", "make", "x.caibx", "y"],
                 ["--with=nonsense", "list"], ["frobnicate"], ["make", tmp_path / "x.tar", tmp_path]):
        line = assert_one_line_error(ours(*args, check=False), status=2)
        if args[0] in ("mkdev", "udev"):
            assert "out of scope" in line


@pytest.mark.skipif(not H.is_root(), reason="random trees use foreign owners: run as root")
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_trees_match_casync(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("rand")
    src = base / "src"
    src.mkdir()
    names = data.draw(st.lists(st.text("abcxyz-_.", min_size=1, max_size=6).filter(lambda s: s not in (".", "..")),
                               max_size=6, unique=True))
    for i, name in enumerate(names):
        kind = data.draw(st.sampled_from(["file", "dir", "link"]))
        path = src / name
        if kind == "file":
            path.write_bytes(data.draw(st.binary(max_size=3000)) * data.draw(st.integers(1, 40)))
            os.chmod(path, data.draw(st.sampled_from([0o644, 0o600, 0o755, 0o444])))
        elif kind == "dir":
            path.mkdir()
            (path / f"in{i}").write_bytes(data.draw(st.binary(max_size=100)))
        else:
            path.symlink_to(data.draw(st.sampled_from(["nowhere", names[0]])))
        os.utime(path, ns=(0, data.draw(st.integers(0, 2**40)) * 1000 + 7), follow_symlinks=False)
    for verb in ("list", "mtree", "digest"):
        assert ours(verb, src).stdout == theirs(verb, src), verb
    a, b = base / "a", base / "b"
    a.mkdir()
    b.mkdir()
    assert ours("--chunk-size=4096", "make", a / "t.caidx", src).stdout == \
        theirs("--chunk-size=4096", "make", b / "t.caidx", src)
    assert (a / "t.caidx").read_bytes() == (b / "t.caidx").read_bytes()
    ours("extract", b / "t.caidx", base / "out")
    assert theirs("mtree", base / "out") == theirs("mtree", src)
    shutil.rmtree(base, ignore_errors=True)
