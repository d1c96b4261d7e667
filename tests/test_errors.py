"""One error hierarchy (desync/errors.py): the library raises its classes, the CLI maps each to an exit status."""

from __future__ import annotations

import argparse
import ast
import signal
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_one_line_error, run_desync
from desync import compression, errors
from desync.cli import main as cli_main
from desync.errors import (
    ChunkInvalid,
    ChunkMissing,
    CompressionError,
    DesyncError,
    FormatError,
    IntegrityError,
    InvalidArgument,
    NetworkError,
    StoreError,
    UsageError,
)

PACKAGE = Path(__file__).resolve().parent.parent / "desync"
CID = bytes(range(32))

CASES: list[tuple[DesyncError, int]] = [
    (UsageError("no store given (use -s STORE)"), 2),
    (InvalidArgument("unknown digest 'md5'"), 2),
    (FormatError("index: bad table header", offset=64), 1),
    (CompressionError("zstd: corrupt frame"), 1),
    (StoreError("store /x does not exist"), 1),
    (ChunkMissing(CID, "/x"), 1),
    (ChunkInvalid(CID, "/x", "content hashes to 00"), 1),
    (NetworkError("GET http://h/x: connection refused"), 1),
    (IntegrityError("file does not match index.caibx"), 1),
    (DesyncError("anything else expected"), 1),
]


def test_the_hierarchy() -> None:
    top: tuple[type[DesyncError], ...] = (UsageError, InvalidArgument, FormatError, StoreError, IntegrityError,
                                          errors.Interrupted)
    for cls in top:
        assert issubclass(cls, DesyncError)
    assert issubclass(CompressionError, FormatError)
    assert compression.CompressionError is CompressionError
    for kind in (ChunkMissing, ChunkInvalid, NetworkError):
        assert issubclass(kind, StoreError)


def test_format_error_names_the_byte_offset() -> None:
    located = FormatError("index: chunk 3 ends at 10, not after 20", offset=184)
    assert str(located) == "index: chunk 3 ends at 10, not after 20 at offset 184"
    assert (located.message, located.offset) == ("index: chunk 3 ends at 10, not after 20", 184)
    unlocated = FormatError("malformed POSIX ACL xattr")
    assert str(unlocated) == "malformed POSIX ACL xattr" and unlocated.offset is None


@pytest.fixture
def failing_command(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[DesyncError]]:
    """A command ``fail-with`` whose work raises the error put in the returned list.

    Registered the way main() finds commands (a module name in COMMANDS), so
    the compiled build runs its real dispatch too; the stop-signal handlers
    main() installs are put back afterwards.
    """
    raised: list[DesyncError] = []

    def run(_args: argparse.Namespace) -> int:
        raise raised[0]

    def register(sub: Any) -> None:
        sub.add_parser("fail-with").set_defaults(func=run)

    module = types.ModuleType("desync_test_fail_with")
    setattr(module, "register", register)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli_main.COMMANDS, "fail-with", module.__name__)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    yield raised
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("failure, status", CASES, ids=[type(c).__name__ for c, _ in CASES])
def test_each_error_class_is_one_line_and_its_exit_status(failing_command: list[DesyncError],
                                                          capsys: pytest.CaptureFixture[str],
                                                          failure: DesyncError, status: int) -> None:
    assert cli_main.exit_status(failure) == status
    failing_command.append(failure)
    assert cli_main.main(["fail-with"]) == status
    assert [line for line in capsys.readouterr().err.splitlines() if line] == [f"desync: error: {failure}"]


@pytest.mark.parametrize("failure", [c for c, _ in CASES], ids=[type(c).__name__ for c, _ in CASES])
def test_a_server_invocation_exits_1_for_every_error(failure: DesyncError) -> None:
    assert cli_main.exit_status(failure, server=True) == 1


def test_a_server_usage_error_exits_1() -> None:
    """casync's clients expect status 1 from any failing remote end."""
    proc = run_desync("pull", "-", check=False)
    assert_one_line_error(proc, status=1)


def test_invalid_values_from_the_command_line_exit_2(tmp_path: Path) -> None:
    """Values the library rejects (InvalidArgument) are the user's typing, as before: status 2."""
    (tmp_path / "f").write_bytes(b"x")
    proc = run_desync("make", "--digest", "md5", tmp_path / "f.caibx", tmp_path / "f", check=False)
    assert "unknown digest" in assert_one_line_error(proc, status=2)
    proc = run_desync("verify", "-s", "nope://x", check=False)
    assert "unsupported store location" in assert_one_line_error(proc, status=2)
    proc = run_desync("chunk-server", "-s", str(tmp_path), "--listen", "no-port-here", check=False)
    assert "invalid listen address" in assert_one_line_error(proc, status=2)


def _library_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "cli" not in p.relative_to(PACKAGE).parts[:1]]


def test_library_modules_never_raise_usage_or_argparse_errors() -> None:
    """UsageError and argparse belong to desync/cli/; the library raises InvalidArgument and friends."""
    found = []
    for path in _library_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            elif isinstance(node, ast.Name):
                names = [node.id]
            elif isinstance(node, ast.Attribute):
                names = [node.attr]
            bad = {"UsageError", "argparse", "ArgumentTypeError", "ArgumentError"} & set(names)
            if bad:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')} {sorted(bad)}")
    assert not found, "\n".join(found)
