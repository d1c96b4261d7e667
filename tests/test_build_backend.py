"""The in-tree build backend asks for mypy only for the compiled build (a pure build works without it).

setuptools itself is replaced by a recorder here: the test environment's
setuptools may be older than the one the build installs, and what matters
is what the wrapper adds and what setup.py sees while setuptools runs it.
"""

import importlib.util
import os
import tomllib
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ["get_requires_for_build_wheel", "get_requires_for_build_editable", "get_requires_for_build_sdist"]


def load_backend(monkeypatch: pytest.MonkeyPatch, seen: list[str | None]) -> ModuleType:
    spec = importlib.util.spec_from_file_location("desync_build", ROOT / "tools/desync_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def setuptools_hook(config_settings: object = None) -> list[str]:
        seen.append(os.environ.get("DESYNC_PURE"))  # what setup.py would see
        return ["wheel"]

    monkeypatch.setattr(module, "_setuptools", SimpleNamespace(**{name: setuptools_hook for name in HOOKS}))
    return module


@pytest.mark.parametrize("hook", HOOKS)
def test_pure_build_does_not_ask_for_mypy(monkeypatch: pytest.MonkeyPatch, hook: str) -> None:
    monkeypatch.setenv("DESYNC_PURE", "1")
    seen: list[str | None] = []
    assert getattr(load_backend(monkeypatch, seen), hook)() == ["wheel"]
    assert os.environ["DESYNC_PURE"] == "1"


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("value", [None, "0"])
def test_compiled_build_asks_for_mypyc(monkeypatch: pytest.MonkeyPatch, hook: str, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("DESYNC_PURE", raising=False)
    else:
        monkeypatch.setenv("DESYNC_PURE", value)
    seen: list[str | None] = []
    assert getattr(load_backend(monkeypatch, seen), hook)() == ["wheel", "mypy[mypyc]>=1.10"]
    # setup.py ran in pure mode (mypy is not installed yet when setuptools asks), and the environment is restored.
    assert seen == ["1"]
    assert os.environ.get("DESYNC_PURE") == value


def test_static_build_requirements_leave_mypy_out() -> None:
    system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert system["build-backend"] == "desync_build" and system["backend-path"] == ["tools"]
    assert not [r for r in system["requires"] if r.startswith("mypy")]


def test_sdist_carries_the_backend() -> None:
    assert "include tools/desync_build.py" in (ROOT / "MANIFEST.in").read_text().splitlines()
