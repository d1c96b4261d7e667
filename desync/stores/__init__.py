"""Chunk stores, opened by location string.

``open_store`` maps a location to a backend by its scheme; backends with
optional dependencies are imported only when a location needs them.
Stacks of stores (chains, failover groups, caches) are built by
:mod:`desync.stores.compose`; what a store can do is in
:mod:`desync.stores.capabilities`.
"""

from __future__ import annotations

import importlib

from ..errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only; the names below are loaded on first use (see __getattr__)
    from collections.abc import Callable
    from typing import Final

    from .base import Store
    from .cache import CachedStore, cached_store
    from .capabilities import PrunableStore, ReadStore, WriteStore
    from .local import LocalStore
    from .options import StoreOptions
    from .router import StoreRouter

    StoreFactory = Callable[[str, StoreOptions, bool], Store]

__all__ = ["Store", "StoreOptions", "LocalStore", "StoreRouter", "CachedStore", "cached_store", "open_store",
           "register_scheme", "ReadStore", "WriteStore", "PrunableStore"]

# Name -> the submodule that defines it.  Loaded when first asked for (PEP 562), so that a command
# importing one store module (``desync.stores.indexes`` to read an index) does not load them all.
_LAZY: Final = {
    "Store": "base", "StoreOptions": "options", "LocalStore": "local", "StoreRouter": "router",
    "CachedStore": "cache", "cached_store": "cache", "ReadStore": "capabilities", "WriteStore": "capabilities",
    "PrunableStore": "capabilities",
}


def __getattr__(name: str) -> object:
    submodule = _LAZY.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{submodule}"), name)

# scheme -> "module:function"; the module is imported on first use.
_SCHEMES: Final[dict[str, str]] = {}


def register_scheme(scheme: str, target: str) -> None:
    """Make ``scheme://`` locations open with ``target`` ("package.module:function")."""
    _SCHEMES[scheme] = target


def _scheme(location: str) -> str:
    head, sep, _ = location.partition("://")
    return head.lower() if sep and head and "/" not in head else ""


def open_store(location: str, options: StoreOptions, writable: bool = False) -> Store:
    """Open one store; ``writable`` creates a missing local directory."""
    if not location:
        raise InvalidArgument("empty store location")
    if "|" in location:
        target = _SCHEMES.get("|")
        if target is None:
            raise InvalidArgument(f"failover groups are not available: {location}")
        return _load(target)(location, options, writable)
    scheme = _scheme(location)
    if scheme in ("", "file"):
        from .local import LocalStore

        path = location[len("file://"):] if scheme == "file" else location
        return LocalStore(path, options, create=writable)
    target = _SCHEMES.get(scheme)
    if target is None:
        raise InvalidArgument(f"unsupported store location {location!r}")
    return _load(target)(location, options, writable)


def _load(target: str) -> StoreFactory:
    module_name, _, func = target.partition(":")
    module = importlib.import_module(module_name)
    factory: StoreFactory = getattr(module, func)
    return factory


register_scheme("|", "desync.stores.failover:open_failover")
register_scheme("http", "desync.stores.http:open_http_store")
register_scheme("https", "desync.stores.http:open_http_store")
register_scheme("ssh", "desync.stores.ssh:open_ssh_store")
register_scheme("sftp", "desync.stores.sftp:open_sftp_store")
register_scheme("s3+http", "desync.stores.s3:open_s3_store")
register_scheme("s3+https", "desync.stores.s3:open_s3_store")
