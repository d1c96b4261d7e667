"""Durability: what is renamed into place was flushed to disk first (checked with strace)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NEUTRAL_DIR, desync_env, run_desync

STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(STRACE is None, reason="strace is not installed")


def _traced(tmp_path: Path, *args: object) -> list[str]:
    """The sync and rename system calls of a desync run, in order."""
    log = tmp_path / "trace"
    assert STRACE is not None
    subprocess.run([STRACE, "-f", "-qq", "-o", str(log), "-e", "trace=fsync,fdatasync,syncfs,sync,rename,renameat,renameat2",
                    sys.executable, "-m", "desync", *map(str, args)], check=True, env=desync_env(), cwd=NEUTRAL_DIR,
                   capture_output=True, timeout=120)
    return log.read_text().splitlines()


def _synced_before_rename_to(calls: list[str], target: Path) -> bool:
    renamed = [i for i, line in enumerate(calls) if re.search(r"rename\w*\(.*" + re.escape(str(target)) + r'"', line)]
    assert renamed, calls
    return any(re.search(r"\b(fsync|fdatasync|syncfs|sync)\(", line) for line in calls[:renamed[-1]])


def test_make_flushes_chunks_and_index_before_the_index_is_renamed(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(os.urandom(200_000))
    calls = _traced(tmp_path, "make", "-s", tmp_path / "s", tmp_path / "x.caibx", tmp_path / "in")
    assert any("syncfs(" in line or re.search(r"\bsync\(", line) for line in calls), calls
    assert _synced_before_rename_to(calls, tmp_path / "x.caibx")


def test_extract_and_untar_flush_their_target_before_the_rename(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(os.urandom(200_000))
    run_desync("make", "-s", tmp_path / "s", tmp_path / "x.caibx", tmp_path / "in")
    calls = _traced(tmp_path, "extract", "-s", tmp_path / "s", tmp_path / "x.caibx", tmp_path / "out")
    assert _synced_before_rename_to(calls, tmp_path / "out")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"data")
    run_desync("tar", tmp_path / "a.catar", tmp_path / "src")
    calls = _traced(tmp_path, "untar", tmp_path / "a.catar", tmp_path / "tree")
    assert _synced_before_rename_to(calls, tmp_path / "tree")
