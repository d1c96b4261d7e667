"""Which implementations this process runs: compiled or pure Python, C or Python helpers, which zstd.

A compiled install whose C accelerator failed to load still works (the
Python twins give identical results) but is slower, so ``desync
--version`` says what is active instead of leaving it to be guessed.
Nothing here imports zstd: naming it must not cost start-up time.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import PathFinder

from . import _accel
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from collections.abc import Callable


def compiled() -> bool:
    """Whether the package modules are mypyc-compiled (a .py file is the pure install or a checkout)."""
    return not __file__.endswith(".py")


def accelerators() -> list[str]:
    """One phrase per C accelerator: "C chunker" when loaded, "Python chunker" when the fallback runs."""
    loaded = (("chunker", _accel.chunker_module is not None), ("fileio", _accel.fileio_module is not None),
              ("siphash", _accel.siphash_module is not None), ("codec", _codec_available()))
    return [f"{'C' if present else 'Python'} {name}" for name, present in loaded]


def _codec_available() -> bool:
    """Whether the batched chunk codec is installed and allowed; found, not loaded (libcrypto costs ms to load)."""
    if _accel.disabled():
        return False
    if _accel._codec_loaded:
        return _accel._codec_loaded[0] is not None
    return _find("desync._accel._codec") is not None


def _installed_version(name: str, origin: str) -> str:
    """The version in the ``NAME-VERSION.dist-info`` beside an installed package, or ""."""
    site = os.path.dirname(os.path.dirname(origin))
    prefix = f"{name}-"
    try:
        entries = os.listdir(site)
    except OSError:
        return ""
    for entry in entries:
        if entry.startswith(prefix) and entry.endswith(".dist-info"):
            return entry[len(prefix):-len(".dist-info")]
    return ""


def _find(name: str) -> str | None:
    """The file a module would load from, without importing it; None when it is not installed.

    Searches sys.path as the import system would (a package first, then its submodule), with the
    path finder the interpreter has already loaded: importlib.util would cost start-up time.
    """
    loaded = sys.modules.get(name)
    if loaded is not None:
        return getattr(loaded, "__file__", None) or ""
    parts = name.split(".")
    path: list[str] | None = None
    spec = None
    try:
        for depth in range(len(parts)):
            if depth and path is None:
                return None  # the parent is a plain module: it has no submodules
            spec = PathFinder.find_spec(".".join(parts[:depth + 1]), path)
            if spec is None:
                return None
            locations = spec.submodule_search_locations
            path = list(locations) if locations is not None else None
    except (ImportError, ValueError):
        return None
    return None if spec is None else spec.origin or ""


def zstd_backend(find: Callable[[str], str | None] = _find) -> str:
    """The zstd library desync.compression will pick (same order: zstandard, then the standard library)."""
    origin = find("zstandard")
    if origin is not None:
        version = _installed_version("zstandard", origin)
        return f"zstandard {version}" if version else "zstandard"
    if find("compression.zstd") is not None:
        return "compression.zstd"
    return "none (install zstandard)"


def describe() -> str:
    """The ``desync --version`` line."""
    build = "compiled" if compiled() else "pure Python"
    notes = "; accelerators disabled by DESYNC_NO_ACCEL" if _accel.disabled() else ""
    return f"desync {__version__} ({build}; {', '.join(accelerators())}; zstd: {zstd_backend()}{notes})"
