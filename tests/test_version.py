"""``desync --version`` names the active backends: compiled or pure, C or Python helpers, the zstd library."""

import os
import subprocess
import sys

import pytest

from conftest import NEUTRAL_DIR, desync_env, run_desync
from desync import backends
from desync._version import __version__

MODE = os.environ.get("DESYNC_TEST_MODE", "")


def _zstd_version() -> str:
    import zstandard

    return str(zstandard.__version__)


@pytest.mark.skipif(MODE != "compiled", reason="only meaningful in the compiled run of scripts/test")
def test_compiled_install_says_compiled_with_every_c_accelerator() -> None:
    line = run_desync("--version").stdout.decode().strip()
    assert line == (f"desync {__version__} (compiled; C chunker, C fileio, C siphash, C codec; "
                    f"zstd: zstandard {_zstd_version()})")


@pytest.mark.skipif(MODE != "pure", reason="only meaningful in the pure-Python run of scripts/test")
def test_pure_run_says_pure_python_and_why_the_accelerators_are_off() -> None:
    line = run_desync("--version").stdout.decode().strip()
    assert line == (f"desync {__version__} (pure Python; Python chunker, Python fileio, Python siphash, Python codec; "
                    f"zstd: zstandard {_zstd_version()}; accelerators disabled by DESYNC_NO_ACCEL)")


def _version_with(code: str) -> str:
    """--version from a process that runs ``code`` first, printing the line and whether zstandard got imported."""
    env = desync_env()
    env.pop("DESYNC_NO_ACCEL", None)
    script = (f"import sys\n{code}\nfrom desync.cli.main import main\ntry:\n    main(['--version'])\n"
              "except SystemExit:\n    pass\nprint('zstandard' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, cwd=NEUTRAL_DIR, env=env,
                         check=True, timeout=60).stdout.decode()
    return out


def test_an_accelerator_that_cannot_load_is_named_as_its_python_fallback() -> None:
    out = _version_with("sys.modules['desync._accel._chunker'] = None  # its import now fails")
    line, imported = out.splitlines()
    assert "Python chunker" in line and "C chunker" not in line
    assert imported == "False"


def test_version_does_not_import_zstd() -> None:
    line, imported = _version_with("").splitlines()
    assert line.startswith(f"desync {__version__} (") and "zstd: zstandard " in line
    assert imported == "False"


def test_zstd_backend_falls_back_to_the_standard_library_name() -> None:
    found: dict[str, str | None] = {"zstandard": None,
                                    "compression.zstd": "/usr/lib/python3.14/compression/zstd/__init__.py"}
    assert backends.zstd_backend(found.get) == "compression.zstd"
    found["compression.zstd"] = None
    assert backends.zstd_backend(found.get) == "none (install zstandard)"
