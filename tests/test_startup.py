"""Start-up of the short commands: what ``--version``, ``list-chunks``, ``info`` and ``pull`` import.

A small job, and every SSH session (``pull``), pays for desync's start-up;
the target is 25 ms for these commands (issue 14).  Timing tests would be
flaky on a shared machine, so this checks the cause instead: the modules a
run leaves in ``sys.modules``.  Each entry below is a module that cost
milliseconds at start-up before it was kept off these paths:

- ``typing`` (it compiles regexes and builds its generic aliases): type
  names come in under ``if TYPE_CHECKING:``;
- ``dataclasses`` (it imports ``inspect``, ``ast``, ``dis``, ``tokenize``):
  the classes on these paths are plain classes;
- ``hashlib``, ``json``, ``urllib``, ``secrets``, ``ctypes``, ``random``,
  ``tempfile``: imported where they are used;
- zstandard (and boto3, ssl, sockets): only for stores and chunks that need them;
- the operations, the archive code, the servers and the other commands.

``argparse`` is allowed for the commands: the command line's behaviour
(``--help``, error messages, option syntax) is defined by the parsers, and a
second hand-written parser would have to copy it.  ``desync --version`` as
the first argument needs no parser and imports none.  ``json`` is allowed
for ``info`` (its default output is JSON), ``threading`` for ``pull`` (the
session runs a reader and a writer thread).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NEUTRAL_DIR, desync_env
from desync._accel import fileio_module

FIXTURES = Path(__file__).parent / "fixtures" / "desync"
INDEX = FIXTURES / "blob1.caibx"

# Run like the ``desync`` script, recording sys.modules on the way out (pull takes over stdout and stderr).
_PROBE = """
import atexit, sys
out = sys.argv[1]
def dump():
    with open(out, "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
atexit.register(dump)
from desync.cli.main import main
status = main(sys.argv[2:])
"""

# Off every one of these paths (prefixes: a package and its submodules).
NEVER = (
    "typing", "dataclasses", "inspect", "ast", "dis", "tokenize", "hashlib", "_hashlib", "urllib", "secrets",
    "random", "ctypes", "tempfile", "queue", "subprocess", "socket", "ssl", "http", "email", "zstandard",
    "boto3", "botocore", "configparser", "tarfile", "concurrent", "importlib.util",
    "desync.ops", "desync.catar", "desync.mount", "desync.chunker", "desync.parallel", "desync.progress",
    "desync.stores.compose", "desync.stores.cache", "desync.stores.capabilities", "desync.stores.http",
    "desync.stores.s3", "desync.stores.sftp", "desync.stores.ssh", "desync.protocol.client",
    "desync.server.httpd", "desync.cli.cmd_archive", "desync.cli.cmd_store", "desync.cli.cmd_server",
    "desync.cli.cmd_mount", "desync.cli.cmd_config",
)


def _imported(*args: str, tmp_path: Path) -> set[str]:
    """The modules a run of ``desync ARGS`` imports beyond what the bare interpreter has."""
    env = desync_env()
    bare = subprocess.run([sys.executable, "-c", "import atexit, sys; print('\\n'.join(sys.modules))"],
                          capture_output=True, text=True, check=True, cwd=NEUTRAL_DIR, env=env, timeout=60)
    out = tmp_path / "modules.txt"
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(out), *args], stdin=subprocess.DEVNULL,
                          capture_output=True, cwd=NEUTRAL_DIR, env=env, timeout=60)
    assert out.exists(), proc.stderr.decode(errors="replace")
    return set(out.read_text().split()) - set(bare.stdout.split())


def _offending(modules: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == b or m.startswith(b + ".") for b in banned))


def test_version_imports_no_parser_and_no_command(tmp_path: Path) -> None:
    modules = _imported("--version", tmp_path=tmp_path)
    bad = _offending(modules, (*NEVER, "json", "threading", "argparse", "re", "enum", "signal", "desync.cli.argv",
                               "desync.cli.stopsignals", "desync.cli.common", "desync.stores", "desync.index",
                               "desync.digest", "desync.server", "desync.cli.cmd_blob", "desync.cli.cmd_remote"))
    assert not bad, bad


@pytest.mark.parametrize("command", [("list-chunks",), ("info",), ("info", "-f", "plain")],
                         ids=lambda c: " ".join(c))
def test_reading_an_index_loads_no_store_stack(command: tuple[str, ...], tmp_path: Path) -> None:
    modules = _imported(*command, str(INDEX), tmp_path=tmp_path)
    assert "desync.cli.cmd_blob" in modules and "desync.index" in modules  # the probe ran the command
    allowed_json = ("json",) if command == ("info",) else ()
    banned = (*NEVER, "threading", "desync.server", "desync.cli.cmd_remote", "desync.stores.local",
              "desync.stores.base", "desync.chunk", "desync.compression", "desync.streamdecode", "zlib", "lzma",
              *(() if allowed_json else ("json",)))
    bad = _offending(modules, banned)
    assert not bad, bad


def test_pull_session_loads_only_the_local_store_and_the_protocol(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    modules = _imported("pull", "-", "-", "-", str(store), tmp_path=tmp_path)
    assert "desync.server.remote" in modules  # the probe ran the session
    bad = _offending(modules, (*NEVER, "json", "desync.cli.cmd_blob", "desync.cli.common"))
    assert not bad, bad


# What the small-job commands may not load: the other direction's code, and the stdlib modules kept off them.
SMALL_JOB_NEVER = (
    "dataclasses", "inspect", "ast", "dis", "tokenize", "ctypes", "tempfile", "shutil", "tarfile", "random",
    "secrets", "json", "subprocess", "socket", "ssl", "http", "urllib", "email", "boto3", "botocore", "concurrent",
    "lzma", "desync.mount", "desync.server", "desync.protocol", "desync.cli.cmd_store", "desync.cli.cmd_server",
    "desync.cli.cmd_mount", "desync.cli.cmd_remote",
)


def test_untar_loads_the_decoder_and_extractor_only(tmp_path: Path) -> None:
    """A small untar pays start-up for every entry's worth of work: no encoder, chunker, stores or hashing."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"x" * 100)
    archive = tmp_path / "a.catar"
    subprocess.run([sys.executable, "-m", "desync", "tar", str(archive), str(src)], check=True, cwd=NEUTRAL_DIR,
                   env=desync_env(), timeout=60)
    modules = _imported("untar", str(archive), str(tmp_path / "out"), tmp_path=tmp_path)
    assert (tmp_path / "out" / "d" / "f").read_bytes() == b"x" * 100  # the probe ran the command
    # Without the C accelerator the file system flush goes through ctypes.
    never = SMALL_JOB_NEVER if fileio_module is not None else tuple(m for m in SMALL_JOB_NEVER if m != "ctypes")
    bad = _offending(modules, (*never, "hashlib", "_hashlib", "zstandard", "queue", "desync.ops.make",
                               "desync.ops.treeseed", "desync.catar.encoder", "desync.catar.tarconv",
                               "desync.catar.mtree", "desync.catar.output", "desync.chunker", "desync.parallel",
                               "desync.compression", "desync.stores.local", "desync.cli.cmd_blob"))
    assert not bad, bad


def test_extract_without_seeds_loads_no_dataclasses_or_archive_code(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(range(256)) * 400)
    store, index = tmp_path / "store", tmp_path / "b.caibx"
    subprocess.run([sys.executable, "-m", "desync", "make", "-s", str(store), str(index), str(blob)], check=True,
                   cwd=NEUTRAL_DIR, env=desync_env(), timeout=60)
    modules = _imported("extract", "-s", str(store), str(index), str(tmp_path / "out"), tmp_path=tmp_path)
    assert (tmp_path / "out").read_bytes() == blob.read_bytes()  # the probe ran the command
    bad = _offending(modules, (*SMALL_JOB_NEVER, "desync.catar", "desync.cli.cmd_archive", "desync.ops.archive"))
    assert not bad, bad


def test_a_mistyped_command_still_lists_every_command(tmp_path: Path) -> None:
    """Only a known command loads alone: an unknown one is answered with the full list of choices."""
    proc = subprocess.run([sys.executable, "-m", "desync", "lsit-chunks"], capture_output=True, text=True,
                          cwd=NEUTRAL_DIR, env=desync_env(), timeout=60)
    assert proc.returncode == 2
    assert "invalid choice: 'lsit-chunks'" in proc.stderr
    for name in ("make", "list-chunks", "untar", "pull", "mount-index", "config"):
        assert f"'{name}'" in proc.stderr

