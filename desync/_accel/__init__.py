"""Optional C accelerators.

The compiled ``_chunker``, ``_fileio`` and ``_siphash`` modules are missing from source checkouts and from
the zipapp, and ``DESYNC_NO_ACCEL=1`` hides it on purpose (to test or
benchmark the pure-Python path); users of :data:`chunker_module` fall back
to Python code with identical results when it is ``None``.
"""

import importlib
import os
from types import ModuleType


def _load(name: str) -> ModuleType | None:
    if os.environ.get("DESYNC_NO_ACCEL", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module(f"desync._accel.{name}")
    except ImportError:
        return None


chunker_module: ModuleType | None = _load("_chunker")
fileio_module: ModuleType | None = _load("_fileio")
siphash_module: ModuleType | None = _load("_siphash")
