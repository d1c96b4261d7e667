"""The .pyi stubs of the C accelerators name exactly the functions the C sources define, and ship."""

import ast
import re
import tomllib
from pathlib import Path

import pytest

import desync._accel as accel

ACCEL = Path(accel.__file__).parent
ROOT = Path(__file__).resolve().parents[1]
MODULES = {"_chunker": "chunker.c", "_fileio": "fileio.c", "_siphash": "siphash.c"}


def stub_functions(name: str) -> set[str]:
    tree = ast.parse((ACCEL / f"{name}.pyi").read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def c_functions(source: str) -> set[str]:
    text = (ROOT / "desync/_accel" / source).read_text()
    table = text[text.index("PyMethodDef"):]
    return set(re.findall(r'\{\s*"([A-Za-z_0-9]+)"\s*,', table))


@pytest.mark.parametrize("name,source", sorted(MODULES.items()))
def test_stub_lists_every_c_function(name: str, source: str) -> None:
    assert stub_functions(name) == c_functions(source)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_loaded_accelerator_has_what_its_stub_promises(name: str) -> None:
    module = getattr(accel, {"_chunker": "chunker_module", "_fileio": "fileio_module",
                             "_siphash": "siphash_module"}[name])
    if module is None:
        assert accel.disabled() or not any(ACCEL.glob(f"{name}.*.so"))
        return
    for func in stub_functions(name):
        assert callable(getattr(module, func)), func


def test_py_typed_marker_and_stubs_are_package_data() -> None:
    assert (ROOT / "desync/py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in data["desync"]
    assert "*.pyi" in data["desync._accel"]
