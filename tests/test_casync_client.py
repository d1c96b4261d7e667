"""casync mode's client sessions: --rate-limit-bps, --log-level and -v's per-entry lines, against casync 2.

The SSH checks use a local stand-in for ssh (it drops the host and runs
the rest), with our casync link as the remote program, as casync's own
test scripts do.  -v's output is compared with casync's after masking
what depends on the clock: the progress marks (a character and a
backspace) and the durations of the extract report.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import CASYNC, NEUTRAL_DIR, catar_helpers, desync_env, run_casync, run_desync

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

SPIN = re.compile(rb"[-\\|/]\x08")
TIMING = re.compile(rb"^(Time spent seeding|Time spent decoding|Total extract time): (.*)$", re.M)
TIMESPAN = rb"(0|\d+(\.\d+)?(us|ms|s|min|h|d|w|month|y)( \d+(\.\d+)?(us|ms|s|min|h|d|w|month|y))*)"


def ours(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return run_desync("casync", *args, check=False, env=env)


def theirs(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return run_casync(*args, env=env, check=False)


def ok(proc: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc


def masked(stderr: bytes) -> bytes:
    """stderr without progress marks, durations as T, and the line about the backing file system's features.

    The last is casync's guess at what the file system can hold (see the README's table); we leave it out.
    """
    text = SPIN.sub(b"", stderr)
    for m in TIMING.finditer(text):
        assert re.fullmatch(TIMESPAN + rb"( \(\d+%\))?", m.group(2)), m.group(0)
    text = re.sub(rb"^(Time spent seeding|Time spent decoding|Total extract time): .*$", rb"\1: T", text, flags=re.M)
    return b"".join(line for line in text.splitlines(keepends=True)
                    if not line.startswith(b"Selected feature flags not actually applicable"))


def entry_lines(stderr: bytes) -> list[bytes]:
    """The per-entry lines of -v (casync counts the chunks of a subtree extract its own way: see the README)."""
    return [line for line in SPIN.sub(b"", stderr).splitlines() if line.startswith((b"Extract", b"Pack", b"Seed"))]


def ssh_env(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    link = subprocess.run([str(REPO / "scripts" / "casync-link"), bindir, sys.executable], capture_output=True,
                          check=True, text=True).stdout.strip()
    ssh = tmp_path / "pseudo-ssh"
    ssh.write_text('#!/bin/sh\nshift 1\nexec "$@"\n')
    ssh.chmod(0o755)
    return desync_env(CASYNC_SSH_PATH=str(ssh), CASYNC_REMOTE_PATH=link)


def timed(*args: object, env: dict[str, str]) -> float:
    started = time.monotonic()
    ok(ours(*args, env=env))
    return time.monotonic() - started


def test_rate_limit_bounds_ssh_pull_and_push(tmp_path: Path) -> None:
    env = ssh_env(tmp_path)
    size, rate = 500_000, 100_000  # random bytes: the chunks do not compress, 5 s at the limit
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(size))
    ok(ours("make", tmp_path / "b.caibx", blob))
    # pull: the index and chunks of host:/path come from the remote end, which casync asks to keep to the limit.
    remote = f"localhost:{tmp_path}/b.caibx"
    limited = timed(f"--rate-limit-bps={rate}", "extract", remote, tmp_path / "out1", env=env)
    free = timed("extract", remote, tmp_path / "out2", env=env)
    assert (tmp_path / "out1").read_bytes() == (tmp_path / "out2").read_bytes() == blob.read_bytes()
    assert limited >= 0.9 * size / rate, limited  # the bucket starts full: the first piece goes at once
    assert free < 0.6 * size / rate, free
    # push: make host:/path sends the chunks (to stores that lack them), and what it sends keeps to the limit.
    (tmp_path / "up1").mkdir()
    (tmp_path / "up2").mkdir()
    limited = timed(f"--rate-limit-bps={rate // 1000}K", "make", f"localhost:{tmp_path}/up1/p.caibx", blob, env=env)
    assert limited >= 0.9 * size / (rate // 1000 * 1024), limited
    free = timed("make", f"localhost:{tmp_path}/up2/p.caibx", blob, env=env)
    assert free < 0.6 * size / rate, free
    assert (tmp_path / "up1" / "p.caibx").read_bytes() == (tmp_path / "b.caibx").read_bytes()
    assert len(list((tmp_path / "up1" / "default.castr").rglob("*.cacnk"))) > 1


def test_rate_limit_bounds_an_http_store(tmp_path: Path) -> None:
    """casync hands --rate-limit-bps to its http(s) helper; our HTTP store keeps to it over all its connections."""
    from http_util import ServerProcess

    size, rate = 400_000, 100_000  # random bytes: the chunks do not compress, 4 s at the limit
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(size))
    ok(ours("make", f"--store={tmp_path / 'store'}", tmp_path / "b.caibx", blob))
    with ServerProcess("chunk-server", "-s", tmp_path / "store") as server:
        store = f"--store={server.url.rstrip('/')}/"
        limited = timed(f"--rate-limit-bps={rate}", "extract", store, tmp_path / "b.caibx", tmp_path / "out1",
                        env=desync_env())
        free = timed("extract", store, tmp_path / "b.caibx", tmp_path / "out2", env=desync_env())
    assert (tmp_path / "out1").read_bytes() == (tmp_path / "out2").read_bytes() == blob.read_bytes()
    assert limited >= size / rate, limited
    assert free < 0.6 * size / rate, free


def _seeded_tree(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(100_000))
    (src / "g").write_bytes(b"g" * 3000)
    assert theirs("make", tmp_path / "t.caidx", src).returncode == 0
    return src, tmp_path / "t.caidx"


def test_log_level_debug_prints_what_casync_prints_and_more_than_the_default(tmp_path: Path) -> None:
    src, index = _seeded_tree(tmp_path)
    for level in ("debug", "7"):
        args = (f"--log-level={level}", "extract", f"--seed={src}", index)
        mine = ok(ours(*args, tmp_path / f"a{level}")).stderr
        assert mine == ok(theirs(*args, tmp_path / f"b{level}")).stderr
        assert b"Setting min/avg/max chunk size: 16384 / 65536 / 262144\n" in mine
    default = ok(ours("extract", f"--seed={src}", index, tmp_path / "c")).stderr
    assert default == b""
    # The level reaches casync mode from the environment too; a bad name is refused as casync refuses it.
    env = desync_env(CASYNC_LOG_LEVEL="debug")
    assert b"Setting min/avg/max" in ok(ours("extract", f"--seed={src}", index, tmp_path / "d", env=env)).stderr
    for bad in ("DEBUG", "8", "loud"):
        proc = ours(f"--log-level={bad}", "list", src)
        assert proc.returncode == 2 and b"log level" in proc.stderr, proc.stderr


def test_log_level_err_prints_only_the_error(tmp_path: Path) -> None:
    src, index = _seeded_tree(tmp_path)
    verbose = SPIN.sub(b"", ok(ours("-v", "extract", index, tmp_path / "a")).stderr)
    assert b"Extracting ./\n" in verbose and b"Total extract time: " in verbose
    assert SPIN.sub(b"", ok(ours("-v", "--log-level=err", "extract", index, tmp_path / "b")).stderr) == b""
    for chunk in (tmp_path / "default.castr").rglob("*.cacnk"):
        chunk.unlink()
    for level in ("err", "3", "warning", "info"):
        failing = ours("-v", f"--log-level={level}", "extract", index, tmp_path / "c")
        assert failing.returncode == 1
        lines = SPIN.sub(b"", failing.stderr).splitlines()
        assert len(lines) == 1 and lines[0].startswith(b"desync: error: chunk "), failing.stderr
    debug = ours("--log-level=debug", "extract", index, tmp_path / "d")
    assert debug.stderr.splitlines()[0] == b"Failed to acquire chunk: No such file or directory"
    # Below err casync says nothing at all; the exit status still tells.
    silent = ours("--log-level=emerg", "extract", index, tmp_path / "e")
    assert silent.returncode == 1 and silent.stderr == b""


@pytest.mark.parametrize("tree", ["basic", "data"])
def test_verbose_make_and_extract_lines_match_casync(tree: str, tmp_path: Path) -> None:
    src = tmp_path / tree
    H.make_trees.build_tree(tree, str(src))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for name in ("t.caidx", "t.catar"):
        mine = ok(ours("-v", "make", a / name, src))
        casync = ok(theirs("-v", "make", b / name, src))
        assert mine.stdout == casync.stdout
        assert masked(mine.stderr) == masked(casync.stderr), name
        assert b"Packing ./\n" in mine.stderr and b"Packed ./\n" in mine.stderr
    for name in ("t.caidx", "t.catar"):
        mine = ok(ours("-v", "extract", a / name, a / f"out-{name}"))
        casync = ok(theirs("-v", "extract", b / name, b / f"out-{name}"))
        assert masked(mine.stderr) == masked(casync.stderr), name
        assert b"Extracted ./\n" in mine.stderr and b"Total extract time: " in mine.stderr
    # A subtree: paths as they are in the archive.
    sub = next((p.name for p in sorted(src.iterdir()) if p.is_dir() and not p.is_symlink()), None)
    if sub is not None:
        mine = ok(ours("-v", "extract", a / "t.caidx", a / "sub", sub))
        casync = ok(theirs("-v", "extract", b / "t.caidx", b / "sub", sub))
        assert entry_lines(mine.stderr) == entry_lines(casync.stderr)
        assert entry_lines(mine.stderr)[0] == f"Extracting {sub}".encode()


def test_verbose_blob_make_and_extract_lines_match_casync(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(300_000))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    mine, casync = ok(ours("-v", "make", a / "x.caibx", blob)), ok(theirs("-v", "make", b / "x.caibx", blob))
    assert masked(mine.stderr) == masked(casync.stderr)
    mine = ok(ours("-v", "extract", a / "x.caibx", a / "out"))
    casync = ok(theirs("-v", "extract", b / "x.caibx", b / "out"))
    assert masked(mine.stderr) == masked(casync.stderr)
    assert b"Time spent decoding: " in mine.stderr
