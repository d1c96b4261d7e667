"""Friction a new user meets: hints, usage errors, progress, durations, config checks, help text."""

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from desync.cli.main import build_parser

from conftest import NEUTRAL_DIR, assert_one_line_error, desync_env, run_desync

ROOT = Path(__file__).resolve().parent.parent
PROGRESS_ENV = desync_env(DESYNC_ENABLE_PARSABLE_PROGRESS="1")


def _blob(tmp_path: Path, data: bytes) -> tuple[Path, Path, Path]:
    src, idx, store = tmp_path / "src.bin", tmp_path / "src.caibx", tmp_path / "store"
    src.write_bytes(data)
    run_desync("make", "-m", "4:16:64", "-s", store, idx, src)
    return src, idx, store


def _progress_lines(proc: subprocess.CompletedProcess[bytes], label: str) -> list[str]:
    return [line for line in proc.stderr.decode().splitlines() if line.startswith(label + " ")]


def test_missing_fuse_binding_names_the_real_package(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['mfusepy'] = None; sys.modules['fuse'] = None; "
            "from desync.cli.main import main; sys.exit(main())")
    proc = subprocess.run([sys.executable, "-c", code, "mount-index", str(tmp_path / "x.caibx"), str(tmp_path)],
                          env=desync_env(), cwd=NEUTRAL_DIR, capture_output=True, timeout=60)
    line = assert_one_line_error(proc)
    assert "pip install mfusepy" in line and "desync[" not in line, line


def test_unknown_option_points_at_the_command_help(tmp_path: Path) -> None:
    line = assert_one_line_error(run_desync("extract", "--bogus", "x", "y", check=False), status=2)
    assert line == "desync: error: unrecognized arguments: --bogus (see 'desync extract --help')", line
    line = assert_one_line_error(run_desync("make", "a.caibx", "b", "c", check=False), status=2)
    assert "unrecognized arguments: c" in line and "'desync make --help'" in line, line


def test_cache_and_chop_progress_counts_bytes_and_reaches_100(tmp_path: Path) -> None:
    half = os.urandom(1 << 20)
    src, idx, store = _blob(tmp_path, half + half)  # the second half repeats the first's chunks
    proc = run_desync("cache", "-s", store, "-c", tmp_path / "cache", idx, env=PROGRESS_ENV)
    last = _progress_lines(proc, "Caching")[-1]
    assert last.startswith("Caching 100% (") and " 0.0 MiB/s" not in last, last
    proc = run_desync("chop", "-s", tmp_path / "chopped", idx, src, env=PROGRESS_ENV)
    last = _progress_lines(proc, "Chopping")[-1]
    assert last.startswith("Chopping 100% (") and " 0.0 MiB/s" not in last, last
    assert re.search(r"\(\d+/\d+\) \d+\.\d MiB/s", last), last


def test_tar_untar_index_and_verify_show_progress(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "big").write_bytes(os.urandom(1 << 20))
    idx, store = tmp_path / "t.caidx", tmp_path / "store"
    proc = run_desync("tar", "-i", "-s", store, idx, tree, env=PROGRESS_ENV)
    assert re.fullmatch(r"Chunking 1\.\d MiB \d+\.\d MiB/s", _progress_lines(proc, "Chunking")[-1])
    proc = run_desync("untar", "-i", "-s", store, idx, tmp_path / "out", env=PROGRESS_ENV)
    assert _progress_lines(proc, "Extracting")[-1].startswith("Extracting 100% (")
    assert (tmp_path / "out" / "big").read_bytes() == (tree / "big").read_bytes()
    chunks = sum(1 for _ in store.rglob("*.cacnk"))
    proc = run_desync("verify", "-s", store, env=PROGRESS_ENV)
    assert re.fullmatch(rf"Verifying {chunks} chunks \d+ chunks/s", _progress_lines(proc, "Verifying")[-1])


def _unwritable_cache(tmp_path: Path, store: Path) -> Path:
    """A cache where no chunk can be written: every prefix directory name is taken by a file."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for prefix in {p.parent.name for p in store.rglob("*.cacnk")}:
        (cache / prefix).write_bytes(b"")
    return cache


def test_unwritable_cache_is_a_warning_and_extract_completes(tmp_path: Path) -> None:
    src, idx, store = _blob(tmp_path, os.urandom(300_000))
    cache = _unwritable_cache(tmp_path, store)
    proc = run_desync("extract", "-s", store, "-c", cache, idx, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    warnings = [line for line in proc.stderr.decode().splitlines() if line.startswith("desync: warning: ")]
    assert len(warnings) == 1 and "cache" in warnings[0], proc.stderr.decode()
    # A cache that cannot even be created (its parent is a file) is skipped the same way.
    (tmp_path / "afile").write_bytes(b"")
    proc = run_desync("extract", "-s", store, "-c", tmp_path / "afile" / "cache", idx, tmp_path / "out2")
    assert (tmp_path / "out2").read_bytes() == src.read_bytes()
    assert proc.stderr.decode().count("desync: warning: ") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_cache_is_a_warning(tmp_path: Path) -> None:
    src, idx, store = _blob(tmp_path, os.urandom(300_000))
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o555)
    proc = run_desync("extract", "-s", store, "-c", cache, idx, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    assert proc.stderr.decode().count("desync: warning: ") == 1


@pytest.mark.parametrize("text,seconds", [("30s", 30.0), ("500ms", 0.5), ("1m", 60.0), ("30", 30.0),
                                          ("1m30s", 90.0), ("0.25", 0.25)])
def test_durations_on_the_command_line(text: str, seconds: float) -> None:
    from desync.cli.common import duration

    assert duration(text) == seconds


def test_duration_options_are_accepted_and_checked(tmp_path: Path) -> None:
    src, idx, store = _blob(tmp_path, os.urandom(100_000))
    run_desync("extract", "--timeout", "30s", "--error-retry-base-interval", "500ms", "-s", store, idx,
               tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    for bad in ("3x", "-1", "nan"):
        line = assert_one_line_error(run_desync("extract", "--timeout", bad, "-s", store, idx, tmp_path / "o",
                                                check=False), status=2)
        assert "--timeout" in line and "duration" in line, line


@pytest.mark.parametrize("doc,key", [
    ({"store-options": {"/s": {"timout": "5s"}}}, "timout"),
    ({"store-option": {}}, "store-option"),
    ({"s3-credentials": {"http://h": {"acess-key": "k"}}}, "acess-key"),
])
def test_unknown_config_keys_are_rejected(tmp_path: Path, doc: dict[str, object], key: str) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(doc))
    line = assert_one_line_error(run_desync("--config", cfg, "config", check=False))
    assert repr(key) in line and str(cfg) in line, line


def test_pyproject_license_is_an_spdx_expression() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "BSD-3-Clause"
    setuptools_req = next(r for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    assert setuptools_req == "setuptools>=77"  # the first setuptools that takes an SPDX license string


def test_setup_venv_says_it_compiles_before_installing() -> None:
    script = (ROOT / "scripts" / "setup-venv").read_text()
    notice = script.index("compiling desync with mypyc")
    assert notice < script.index("pip install --quiet --disable-pip-version-check --no-warn-script-location")
    assert ">&2" in script[notice:script.index("\n", notice)]


def test_every_command_and_positional_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command_help = {choice.dest: choice.help for choice in sub._choices_actions}
    missing = [name for name in sub.choices if not command_help.get(name)]
    for name, command in sub.choices.items():
        missing += [f"{name} {a.dest}" for a in command._actions if not a.option_strings and not a.help]
    assert not missing, missing
    assert len(sub.choices) >= 20
