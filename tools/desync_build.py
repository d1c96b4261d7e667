"""The build backend: setuptools, asking for mypy only when it will compile.

The normal build compiles the package with mypyc, so it needs mypy; a pure
build (``DESYNC_PURE=1``) installs the Python sources and must work from a
wheel cache that has no mypy.  pyproject.toml cannot make a build
requirement depend on the environment, so this thin wrapper around
``setuptools.build_meta`` adds mypy to the dynamic requirements instead.
It lives outside the package (``backend-path``) and is not installed.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (the hooks passed through unchanged)
    build_editable,
    build_sdist,
    build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

MYPYC_REQUIREMENT = "mypy[mypyc]>=1.10"
ConfigSettings = dict[str, str | list[str]] | None


def pure() -> bool:
    """Whether this build installs the plain Python sources (no mypyc, no C accelerators)."""
    return os.environ.get("DESYNC_PURE", "") not in ("", "0")


@contextmanager
def _setup_without_mypyc() -> Iterator[None]:
    """setuptools runs setup.py to ask for requirements, before mypy can be there: keep it from importing mypyc."""
    saved = os.environ.get("DESYNC_PURE")
    os.environ["DESYNC_PURE"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["DESYNC_PURE"]
        else:
            os.environ["DESYNC_PURE"] = saved


def _requires(hook: Callable[[ConfigSettings], list[str]], config_settings: ConfigSettings) -> list[str]:
    compiled = not pure()
    with _setup_without_mypyc():
        found = hook(config_settings)
    return [*found, MYPYC_REQUIREMENT] if compiled else found


def get_requires_for_build_wheel(config_settings: ConfigSettings = None) -> list[str]:
    return _requires(_setuptools.get_requires_for_build_wheel, config_settings)


def get_requires_for_build_editable(config_settings: ConfigSettings = None) -> list[str]:
    return _requires(_setuptools.get_requires_for_build_editable, config_settings)


def get_requires_for_build_sdist(config_settings: ConfigSettings = None) -> list[str]:
    """An sdist build runs setup.py in full, which compiles unless DESYNC_PURE is set."""
    return _requires(_setuptools.get_requires_for_build_sdist, config_settings)
