"""Patterns that type-check and run as plain Python but break once mypyc compiles them.

Each was found the hard way: the compiled build crashed while the sources passed.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "desync"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), str(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_except_names_are_not_reused_with_other_types(path: Path) -> None:
    """mypyc types an ``except ... as NAME`` variable once per function; rebinding it to another type fails."""
    for fn in ast.walk(_tree(path)):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            types: dict[str, set[str]] = {}
            for node in ast.walk(fn):
                if isinstance(node, ast.ExceptHandler) and node.name:
                    types.setdefault(node.name, set()).add(ast.unparse(node.type) if node.type else "")
            clashes = {name: t for name, t in types.items() if len(t) > 1}
            assert not clashes, f"{path}:{fn.lineno} {fn.name}: {clashes}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_no_compiled_subclass_of_threading_local(path: Path) -> None:
    """A mypyc-compiled subclass of threading.local shares its attributes between threads."""
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b) for b in node.bases}
            assert not bases & {"threading.local", "local"}, f"{path}:{node.lineno} {node.name}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_no_attribute_names_that_mangle_to_c_keywords(path: Path) -> None:
    """mypyc prefixes attributes with '_' in C structs: ``_thread`` becomes the GCC keyword ``__thread``."""
    bad = {"_thread", "_inline", "_asm", "_restrict", "_attribute__", "_typeof", "_extension__", "_label__"}
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            assert node.attr not in bad, f"{path}:{node.lineno} self.{node.attr}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_no_side_effecting_calls_in_slice_bounds(path: Path) -> None:
    """mypyc may evaluate a slice bound twice: ``view[os.write(fd, view):]`` wrote the data twice."""
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Slice):
            for part in (node.lower, node.upper, node.step):
                calls = [n for n in ast.walk(part) if isinstance(n, ast.Call)] if part is not None else []
                names = {ast.unparse(c.func) for c in calls}
                assert names <= {"len", "min", "max", "int"}, f"{path}:{node.lineno} {ast.unparse(node)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_no_dataclass_field_annotated_object(path: Path) -> None:
    """A compiled dataclass with a field annotated ``object`` fails at import (KeyError: 'object'); use Any."""
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign):
                    assert ast.unparse(stmt.annotation) != "object", f"{path}:{stmt.lineno}"


# Modules setup.py leaves interpreted; everything else under desync/ is compiled.
INTERPRETED = {"__main__.py", "_version.py", "_accel/__init__.py", "rawio.py", "stores/capabilities.py",
               "stores/__init__.py", "catar/__init__.py"}
IO_BASES = {"io.RawIOBase", "io.BufferedIOBase", "io.IOBase", "io.TextIOBase", "RawIOBase", "BufferedIOBase", "IOBase"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_no_compiled_subclass_of_io_base_classes(path: Path) -> None:
    """On Python 3.12+ a compiled subclass of io's C base classes fails at import (managed dict vs dict slot)."""
    if path.relative_to(PACKAGE).as_posix() in INTERPRETED:
        return
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b) for b in node.bases}
            assert not bases & IO_BASES, f"{path}:{node.lineno} {node.name} (put it in desync/rawio.py)"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_runtime_checkable_protocols_are_interpreted(path: Path) -> None:
    """mypyc compiles a Protocol class as a plain class, and @runtime_checkable then fails at import."""
    if path.relative_to(PACKAGE).as_posix() in INTERPRETED:
        return
    assert "runtime_checkable" not in path.read_text(), f"{path} (put the protocol in desync/stores/capabilities.py)"


def test_interpreted_modules_match_setup_py() -> None:
    setup = (Path(__file__).parent.parent / "setup.py").read_text()
    for name in INTERPRETED:
        assert f'"desync/{name}"' in setup, name


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_a_module_getattr_is_left_to_the_interpreter(path: Path) -> None:
    """A compiled module with a module-level ``__getattr__`` (PEP 562) crashed on import."""
    if path.relative_to(PACKAGE).as_posix() in INTERPRETED:
        return
    top = ast.iter_child_nodes(_tree(path))
    assert not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in top), \
        f"{path} (add it to NOT_COMPILED in setup.py and to INTERPRETED here)"
