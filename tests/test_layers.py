"""Imports point one way: formats <- chunker <- stores <- operations <- servers <- CLI (docs/design.md 1).

The import graph is read with ``ast`` from every module under ``desync/``,
imports inside functions included (a lazy import is still a dependency).
There is no exception for ``typing.TYPE_CHECKING`` blocks: a type a lower
layer needs from a higher one is a sign that the type belongs lower.
Every module must have a layer here, so a new module is placed on purpose.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NEUTRAL_DIR, desync_env

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "desync"

HELPERS, FORMATS, CHUNKER, STORES, OPERATIONS, SERVERS, CLI = range(7)
LAYER_NAMES = ("helpers", "formats", "chunker", "stores", "operations", "servers", "cli")

# Module or package prefix -> layer; the longest matching prefix wins.
LAYERS: dict[str, int] = {
    # Helpers with no layer of their own: usable from anywhere, they use only each other.
    "desync": HELPERS,
    "desync._version": HELPERS,
    "desync._accel": HELPERS,
    "desync.errors": HELPERS,
    "desync.fsutil": HELPERS,
    "desync.reflink": HELPERS,
    "desync.tempnames": HELPERS,
    "desync.parallel": HELPERS,
    "desync.batchthread": HELPERS,
    "desync.progress": HELPERS,
    "desync.ratelimit": HELPERS,
    "desync.rawio": HELPERS,
    "desync.readbudget": HELPERS,
    "desync.peertext": HELPERS,
    "desync.records": HELPERS,
    "desync.backends": HELPERS,
    "desync.reflink": HELPERS,
    # Bytes on disk and on the wire.
    "desync.constants": FORMATS,
    "desync.featureflags": FORMATS,
    "desync.digest": FORMATS,
    "desync.index": FORMATS,
    "desync.chunk": FORMATS,
    "desync.compression": FORMATS,
    "desync.streamdecode": FORMATS,
    "desync.config": FORMATS,
    "desync.catar.format": FORMATS,
    "desync.catar.model": FORMATS,
    "desync.protocol": FORMATS,
    "desync.protocol.messages": FORMATS,
    "desync.protocol.stream": FORMATS,
    "desync.protocol.sftp": FORMATS,
    "desync.chunker": CHUNKER,
    # Stores and the client side of the protocols.
    "desync.stores": STORES,
    "desync.protocol.transport": STORES,
    "desync.protocol.client": STORES,
    "desync.protocol.files": STORES,
    "desync.protocol.sftp_client": STORES,
    "desync.protocol.session": STORES,
    "desync.protocol.scheduler": STORES,
    # Operations written against the store API.
    "desync.ops": OPERATIONS,
    "desync.catar": OPERATIONS,
    "desync.mount": OPERATIONS,
    # Servers, then the command line on top.
    "desync.server": SERVERS,
    "desync.cli": CLI,
    "desync.__main__": CLI,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    if best is None or (best[0] == "desync" and module != "desync"):
        return None  # only the root package itself is placed by the "desync" entry
    return best[1]


def _resolve(base: str, name: str) -> str:
    """``from base import name``: the submodule when there is one, else the module ``base``."""
    candidate = f"{base}.{name}" if base else name
    return candidate if candidate in MODULES else base


def imports_of(module: str, path: Path) -> set[str]:
    """The desync modules ``module`` imports, anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "desync")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.split(".")[0] == "desync":
                found.update(_resolve(base, a.name) for a in node.names)
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in MODULES if layer_of(m) is None]
    assert not unplaced, f"add these modules to LAYERS in {Path(__file__).name}: {unplaced}"


def test_no_layer_imports_a_higher_one() -> None:
    wrong = []
    for module, path in MODULES.items():
        own = layer_of(module)
        assert own is not None
        for target in sorted(imports_of(module, path)):
            theirs = layer_of(target)
            assert theirs is not None, f"{module} imports {target}, which is not a desync module"
            if theirs > own:
                wrong.append(f"{module} ({LAYER_NAMES[own]}) imports {target} ({LAYER_NAMES[theirs]})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("source, expected", [
    ("from ..stores import compose\n", {"desync.stores.compose"}),
    ("from .. import digest as d\n", {"desync.digest"}),
    ("def f():\n    from ..server.remote import serve\n", {"desync.server.remote"}),
    ("import desync.cli.main\n", {"desync.cli.main"}),
])
def test_the_graph_sees_every_form_of_import(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert imports_of("desync.ops.probe", path) == expected


def test_a_lower_layer_importing_a_higher_one_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text("def lazy():\n    from ..cli import common\n")
    targets = imports_of("desync.stores.probe", path)
    assert targets == {"desync.cli.common"}
    assert max(layer_of(t) or 0 for t in targets) > STORES


def test_main_imports_no_command_before_it_knows_the_command() -> None:
    """Starting ``desync`` loads argv handling only; the pull server and the stores come with their commands."""
    code = ("import sys, desync.cli.main\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('desync'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         cwd=NEUTRAL_DIR, env=desync_env()).stdout.split()
    assert "desync.server.remote" not in out
    heavy = [m for m in out if layer_of(m) not in (HELPERS, CLI)]
    assert not heavy, heavy
    # The C accelerators (compiled build only) load with desync._accel: small extension modules.
    accelerators = {"desync._accel._chunker", "desync._accel._fileio", "desync._accel._siphash"}
    assert set(out) - {"desync", "desync._version", "desync._accel", "desync.errors"} - accelerators <= \
        {"desync.cli", "desync.cli.main", "desync.cli.argv", "desync.cli.stopsignals"}
