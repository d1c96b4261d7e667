"""Shared test helpers: fixture paths, running the CLI, casync availability."""

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
CASYNC = shutil.which("casync")
NEUTRAL_DIR = tempfile.gettempdir()

requires_casync = pytest.mark.skipif(CASYNC is None, reason="casync is not installed (apt-get install casync)")


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def catar_helpers() -> ModuleType:
    """tests/fixtures/catar/helpers.py (fixture trees, casync runners), loaded once for every test module.

    It is registered before it runs: its dataclasses look their module up in sys.modules.
    """
    module = sys.modules.get("catar_helpers")
    if module is None:
        spec = importlib.util.spec_from_file_location("catar_helpers", FIXTURES / "catar" / "helpers.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["catar_helpers"] = module
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def gen_inputs() -> ModuleType:
    """The fixtures' deterministic input generator (``generate(name) -> bytes``)."""
    return _load_module("gen_inputs", FIXTURES / "casync" / "gen_inputs.py")


def desync_env(**extra: str) -> dict[str, str]:
    """The environment for CLI subprocesses: they import the same desync as the tests."""
    import desync

    env = dict(os.environ)
    home = str(Path(desync.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (home, env.get("PYTHONPATH", "")) if p)
    env.pop("DESYNC_PROGRESSBAR_ENABLED", None)
    env.pop("DESYNC_ENABLE_PARSABLE_PROGRESS", None)
    env.update(extra)
    return env


def run_desync(*args: object, check: bool = True, input: bytes | None = None, cwd: Path | None = None,
               env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI the way a user does (``python -m desync``) and capture its output."""
    cmd = [sys.executable, "-m", "desync", *map(str, args)]
    # Never the checkout as working directory: ``-m`` would import the sources from there
    # instead of the install under test.
    proc = subprocess.run(cmd, input=input, capture_output=True, cwd=cwd or NEUTRAL_DIR, env=env or desync_env(),
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    return proc


def run_casync(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None,
               check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run the real casync and capture its output."""
    assert CASYNC is not None
    proc = subprocess.run([CASYNC, *map(str, args)], capture_output=True, cwd=cwd or NEUTRAL_DIR, env=env,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"casync {' '.join(map(str, args))} failed:\n{proc.stderr.decode(errors='replace')}")
    return proc


def sha512_256(data: bytes) -> str:
    return hashlib.new("sha512_256", data).hexdigest()


def assert_one_line_error(proc: subprocess.CompletedProcess[bytes], status: int = 1) -> str:
    """The CLI's failure contract: one ``desync: error:`` line, no traceback."""
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == status, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("desync: error: "), err
    assert "Traceback" not in err
    return lines[0]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench", action="store_true", help="also collect the micro-benchmarks in tests/bench")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/bench holds timings, not checks: only ``--bench`` (scripts/bench --only micro) collects it."""
    if collection_path == Path(__file__).parent / "bench" and not config.getoption("--bench"):
        return True
    return None
