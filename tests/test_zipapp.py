"""The single-file zipapp (scripts/build-zipapp) in fresh venvs that hold nothing but a zstd binding.

Everything it writes is compared with what the build under test writes from
the same input: same index, store, catar and tree bytes.  It also serves the
build under test (chunk-server) and casync (as the far end of SSH).  One venv
has ``zstandard``; one has only the standard library's ``compression.zstd``
(on Python 3.11-3.13, ``backports.zstd`` stands in for it, mapped to that name
by a .pth file, since that is the module Python 3.14 ships); one has nothing.
"""

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import (CASYNC, NEUTRAL_DIR, assert_one_line_error, desync_env, requires_casync, run_casync,
                      run_desync)
from desync._version import __version__
from sshd_harness import LoopbackSSHD, requires_sshd, sshd  # noqa: F401  (sshd is a fixture)

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "scripts" / "build-zipapp"

pytestmark = [
    pytest.mark.skipif(os.environ.get("DESYNC_TEST_MODE") == "pure",
                       reason="the zipapp holds the same pure sources either way: tested in the compiled run, "
                              "against the compiled build"),
    pytest.mark.timeout(180),
]

# Maps the backport to the name the standard library gives the module from Python 3.14 on.
STDLIB_STAND_IN = ("import sys, types, backports.zstd as z; p = sys.modules.setdefault('compression', "
                   "types.ModuleType('compression')); p.zstd = z; sys.modules.setdefault('compression.zstd', z)\n")


def _clean_env(**extra: str) -> dict[str, str]:
    """What a user's shell on a server would have: no PYTHONPATH pointing at the build under test."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "DESYNC_", "CASYNC_")) and k != "VIRTUAL_ENV"}
    env.update(extra)
    return env


class Zipapp:
    """The zipapp run by one venv's interpreter."""

    def __init__(self, pyz: Path, python: Path) -> None:
        self.pyz = pyz
        self.python = python
        self.command = f"{python} {pyz}"

    def run(self, *args: object, check: bool = True, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(self.python), str(self.pyz), *map(str, args)]
        proc = subprocess.run(cmd, capture_output=True, cwd=NEUTRAL_DIR, env=env or _clean_env(), timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
        return proc

    def imports(self, module: str) -> bool:
        code = f"import importlib; importlib.import_module({module!r})"
        return subprocess.run([str(self.python), "-c", code], capture_output=True, cwd=NEUTRAL_DIR,
                              env=_clean_env()).returncode == 0


def _make_venv(root: Path, *requirements: str) -> Path:
    """A venv without pip or anything else, then exactly ``requirements`` installed into it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, capture_output=True)
    python = root / "bin" / "python"
    if requirements:
        proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                               "--disable-pip-version-check", *requirements], capture_output=True, timeout=300)
        assert proc.returncode == 0, f"pip install {requirements} failed:\n{proc.stderr.decode(errors='replace')}"
    return python


def _pinned(distribution: str) -> str:
    """The version the build under test runs with, so both sides use the same libzstd."""
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return distribution


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zipapp") / "desync.pyz"
    subprocess.run([sys.executable, str(BUILD), "--output", str(out)], check=True, capture_output=True,
                   cwd=NEUTRAL_DIR, env=_clean_env())
    return out


@pytest.fixture(scope="module")
def app(pyz: Path, tmp_path_factory: pytest.TempPathFactory) -> Zipapp:
    """The zipapp in a venv holding only zstandard."""
    return Zipapp(pyz, _make_venv(tmp_path_factory.mktemp("venv") / "zstandard", _pinned("zstandard")))


@pytest.fixture(scope="module")
def stdlib_app(pyz: Path, tmp_path_factory: pytest.TempPathFactory) -> Zipapp:
    """The zipapp in a venv whose only zstd binding is ``compression.zstd``."""
    root = tmp_path_factory.mktemp("venv") / "stdlib-zstd"
    if sys.version_info >= (3, 14):
        python = _make_venv(root)
    else:
        python = _make_venv(root, _pinned("backports.zstd"))
        site = next((root / "lib").glob("python3.*/site-packages"))
        (site / "compression_zstd_stand_in.pth").write_text(STDLIB_STAND_IN)
    return Zipapp(pyz, python)


@pytest.fixture(scope="module")
def bare_app(pyz: Path, tmp_path_factory: pytest.TempPathFactory) -> Zipapp:
    """The zipapp with no zstd binding at all (Python 3.11-3.13 without zstandard)."""
    if sys.version_info >= (3, 14):
        pytest.skip("Python 3.14+ always has compression.zstd")
    return Zipapp(pyz, _make_venv(tmp_path_factory.mktemp("venv") / "bare"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 MiB blob with repeats, a tree, and the build under test's make of the blob."""
    root = tmp_path_factory.mktemp("zipapp-data")
    part = os.urandom(1 << 20)
    (root / "blob").write_bytes(part + os.urandom(1 << 20) + part + b"tail" * 1000)
    tree = root / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "empty-dir").mkdir()
    (tree / "big.bin").write_bytes(os.urandom(600_000))
    (tree / "sub" / "text.txt").write_text("hello\n" * 5000)
    (tree / "sub" / "deeper" / "empty").write_bytes(b"")
    (tree / "sub" / "name with spaces").write_bytes(part[:70_000])
    tool = tree / "tool.sh"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o750)
    os.symlink("sub/text.txt", tree / "link")
    os.mkfifo(tree / "fifo")
    os.utime(tree / "sub", (1_600_000_000, 1_600_000_000))
    run_desync("make", "-s", root / "store", root / "blob.caibx", root / "blob")
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _mtree(directory: Path) -> str:
    """The build under test's description of a tree: types, modes, owners, times, content digests."""
    return run_desync("mtree", directory).stdout.decode()


def test_build_is_reproducible_and_holds_only_the_python_sources(pyz: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.pyz"
    subprocess.run([sys.executable, str(BUILD), "-o", str(again)], check=True, capture_output=True,
                   cwd=NEUTRAL_DIR, env=_clean_env())
    assert again.read_bytes() == pyz.read_bytes()
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.stat(pyz).st_mode & 0o100
    sources = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "desync").rglob("*.py")
                     if "__pycache__" not in p.parts)
    with zipfile.ZipFile(pyz) as z:
        names = z.namelist()
        assert names == sorted(["__main__.py", *sources])
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert z.read("desync/_version.py") == (REPO / "desync" / "_version.py").read_bytes()


def test_version_and_help_need_no_zstd_binding(bare_app: Zipapp) -> None:
    assert not bare_app.imports("zstandard")
    assert run_desync("--version").stdout.decode().startswith(f"desync {__version__} (")
    line = bare_app.run("--version").stdout.decode()
    assert line.startswith(f"desync {__version__} (pure Python; Python chunker, Python fileio, Python siphash, Python codec; zstd: ")
    # Nothing installed: Python 3.14+ has compression.zstd, older ones have no zstd at all.
    assert line.rstrip().endswith(("zstd: none (install zstandard))", "zstd: compression.zstd)")), line
    assert b"chunk-server" in bare_app.run("--help").stdout


def test_without_a_zstd_binding_make_is_a_one_line_error(bare_app: Zipapp, data: Path, tmp_path: Path) -> None:
    proc = bare_app.run("make", "-s", tmp_path / "store", tmp_path / "x.caibx", data / "blob", check=False)
    assert "pip install zstandard" in assert_one_line_error(proc)
    proc = bare_app.run("extract", "-s", data / "store", data / "blob.caibx", tmp_path / "out", check=False)
    assert "pip install zstandard" in assert_one_line_error(proc)


def test_make_and_extract_match_the_installed_build(app: Zipapp, data: Path, tmp_path: Path) -> None:
    # The venv has no desync and no stand-in: the archive's sources run, with zstandard.
    assert not app.imports("desync") and not app.imports("backports.zstd") and app.imports("zstandard")
    app.run("make", "-s", tmp_path / "store", tmp_path / "blob.caibx", data / "blob")
    assert (tmp_path / "blob.caibx").read_bytes() == (data / "blob.caibx").read_bytes()
    assert _files(tmp_path / "store") == _files(data / "store")
    app.run("extract", "-s", data / "store", data / "blob.caibx", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == (data / "blob").read_bytes()


def test_tar_and_untar_match_the_installed_build(app: Zipapp, data: Path, tmp_path: Path) -> None:
    ours, theirs = tmp_path / "zipapp", tmp_path / "installed"
    for d in (ours, theirs):
        d.mkdir()
    app.run("tar", ours / "t.catar", data / "tree")
    run_desync("tar", theirs / "t.catar", data / "tree")
    assert (ours / "t.catar").read_bytes() == (theirs / "t.catar").read_bytes()
    app.run("tar", "-i", "-s", ours / "store", ours / "t.caidx", data / "tree")
    run_desync("tar", "-i", "-s", theirs / "store", theirs / "t.caidx", data / "tree")
    assert (ours / "t.caidx").read_bytes() == (theirs / "t.caidx").read_bytes()
    assert _files(ours / "store") == _files(theirs / "store")
    app.run("untar", theirs / "t.catar", ours / "from-catar")
    run_desync("untar", theirs / "t.catar", theirs / "from-catar")
    app.run("untar", "-i", "-s", theirs / "store", theirs / "t.caidx", ours / "from-index")
    run_desync("untar", "-i", "-s", theirs / "store", theirs / "t.caidx", theirs / "from-index")
    expected = _mtree(data / "tree")
    for tree in ("from-catar", "from-index"):
        assert _mtree(ours / tree) == _mtree(theirs / tree) == expected


def test_verify_and_prune_match_the_installed_build(app: Zipapp, data: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_bytes(os.urandom(500_000))
    stores = {name: tmp_path / name for name in ("zipapp", "installed")}
    for store in stores.values():
        shutil.copytree(data / "store", store)
        run_desync("make", "-s", store, tmp_path / "other.caibx", other)
    app.run("verify", "-s", stores["zipapp"])
    app.run("prune", "-y", "-s", stores["zipapp"], data / "blob.caibx")
    run_desync("prune", "-y", "-s", stores["installed"], data / "blob.caibx")
    assert _files(stores["zipapp"]) == _files(stores["installed"]) == _files(data / "store")
    victims = []
    for store in stores.values():
        victim = sorted(store.rglob("*.cacnk"))[3]
        victim.write_bytes(b"\x28\xb5\x2f\xfd" + b"broken")
        victims.append(victim.name)
    failed = app.run("verify", "-s", stores["zipapp"], check=False)
    assert failed.returncode != 0 and victims[0][:64].encode() in failed.stderr
    assert failed.returncode == run_desync("verify", "-s", stores["installed"], check=False).returncode
    app.run("verify", "-r", "-s", stores["zipapp"], check=False)
    run_desync("verify", "-r", "-s", stores["installed"], check=False)
    assert _files(stores["zipapp"]) == _files(stores["installed"])
    assert victims[0] not in {p.name for p in stores["zipapp"].rglob("*.cacnk")}


def test_chunk_server_serves_the_installed_build(app: Zipapp, data: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with log.open("wb") as stderr:
        server = subprocess.Popen([str(app.python), str(app.pyz), "chunk-server", "-s", str(data / "store"),
                                   "-l", "127.0.0.1:0"], stderr=stderr, cwd=NEUTRAL_DIR, env=_clean_env())
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"listening on (\S+)", log.read_text())):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        run_desync("extract", "-s", found.group(1), data / "blob.caibx", tmp_path / "out")
    finally:
        server.terminate()
        server.wait(10)
    assert (tmp_path / "out").read_bytes() == (data / "blob").read_bytes()


def _pseudo_ssh(directory: Path) -> Path:
    """ssh without the network: drops the options and the host, runs the command in a login-clean environment."""
    script = directory / "pseudo-ssh"
    script.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do\n  case "$1" in\n    --) shift; break ;;\n'
                      '    -p) shift 2 ;;\n    -*) shift ;;\n    *) break ;;\n  esac\ndone\nshift\n'
                      'exec env -i PATH="$PATH" HOME="$HOME" sh -c "$*"\n')
    script.chmod(0o755)
    return script


def test_installed_build_extracts_through_an_ssh_store_served_by_the_zipapp(app: Zipapp, data: Path,
                                                                          tmp_path: Path) -> None:
    env = desync_env(CASYNC_SSH_PATH=str(_pseudo_ssh(tmp_path)), CASYNC_REMOTE_PATH=app.command)
    run_desync("extract", "-s", f"ssh://127.0.0.1{data / 'store'}", data / "blob.caibx", tmp_path / "out", env=env)
    assert (tmp_path / "out").read_bytes() == (data / "blob").read_bytes()


@requires_casync
@pytest.mark.parametrize("binding", ["zstandard", "stdlib"])
def test_casync_extracts_from_the_zipapp_as_its_remote(binding: str, request: pytest.FixtureRequest,
                                                       data: Path, tmp_path: Path) -> None:
    remote: Zipapp = request.getfixturevalue("app" if binding == "zstandard" else "stdlib_app")
    assert CASYNC is not None
    env = _clean_env(CASYNC_SSH_PATH=str(_pseudo_ssh(tmp_path)), CASYNC_REMOTE_PATH=remote.command)
    # Index and chunks both come over the remote.  The store is casync's xz one, so the zipapp
    # reads every chunk and sends it recompressed with zstd, through the binding under test.
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    run_casync("make", "--compression=xz", f"--store={remote_dir / 'default.castr'}", remote_dir / "x.caibx",
               data / "blob")
    proc = subprocess.run([CASYNC, "extract", f"localhost:{remote_dir / 'x.caibx'}", tmp_path / "out"],
                          capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert (tmp_path / "out").read_bytes() == (data / "blob").read_bytes()


@requires_casync
@requires_sshd
def test_casync_extracts_over_real_ssh_from_the_zipapp(app: Zipapp, sshd: LoopbackSSHD, data: Path,  # noqa: F811
                                                      tmp_path: Path) -> None:
    assert CASYNC is not None
    proc = subprocess.run([CASYNC, "extract", f"--store=127.0.0.1:{data / 'store'}", data / "blob.caibx",
                           tmp_path / "out"], capture_output=True, env=sshd.env(app.command), timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert (tmp_path / "out").read_bytes() == (data / "blob").read_bytes()


def test_stdlib_zstd_writes_and_reads_the_same_chunks(stdlib_app: Zipapp, data: Path, tmp_path: Path) -> None:
    import zstandard

    assert not stdlib_app.imports("zstandard") and stdlib_app.imports("compression.zstd")
    stdlib_app.run("make", "-s", tmp_path / "store", tmp_path / "blob.caibx", data / "blob")
    assert (tmp_path / "blob.caibx").read_bytes() == (data / "blob.caibx").read_bytes()
    ours, theirs = _files(tmp_path / "store"), _files(data / "store")
    assert ours.keys() == theirs.keys()
    dctx = zstandard.ZstdDecompressor()
    for name, raw in ours.items():
        if not name.endswith(".cacnk"):
            continue  # the store's writer lock (.desync-lock)
        plain = dctx.decompress(raw)
        assert plain == dctx.decompress(theirs[name])
        assert hashlib.new("sha512_256", plain).hexdigest() == Path(name).name.removesuffix(".cacnk")
    stdlib_app.run("extract", "-s", data / "store", data / "blob.caibx", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == (data / "blob").read_bytes()
    stdlib_app.run("verify", "-s", data / "store")


def test_missing_optional_packages_are_named(app: Zipapp, data: Path, tmp_path: Path) -> None:
    proc = app.run("extract", "-s", "s3+http://127.0.0.1:9/bucket/store", data / "blob.caibx", tmp_path / "out",
                   check=False)
    assert "boto3" in assert_one_line_error(proc)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    proc = app.run("mount-index", "-s", data / "store", data / "blob.caibx", mountpoint, check=False)
    assert "mfusepy" in assert_one_line_error(proc)



@requires_casync
def test_zipapp_offers_the_casync_mode(app: Zipapp, data: Path, tmp_path: Path) -> None:
    """Started under the name casync (a link to the zipapp) or as ``desync.pyz casync``: casync's command line."""
    link = tmp_path / "casync"
    link.symlink_to(app.pyz)
    tree = data / "tree"
    want_list = run_casync("list", tree).stdout
    assert app.run("casync", "list", tree).stdout == want_list
    named = subprocess.run([str(app.python), str(link), "list", str(tree)], capture_output=True, check=True,
                           cwd=NEUTRAL_DIR, env=_clean_env())
    assert named.stdout == want_list
    made = subprocess.run([str(app.python), str(link), "make", str(tmp_path / "t.caidx"), str(tree)],
                          capture_output=True, check=True, cwd=NEUTRAL_DIR, env=_clean_env())
    (tmp_path / "ref").mkdir()
    assert made.stdout == run_casync("make", tmp_path / "ref" / "t.caidx", tree).stdout
    assert (tmp_path / "t.caidx").read_bytes() == (tmp_path / "ref" / "t.caidx").read_bytes()
