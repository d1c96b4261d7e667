"""Stacks of stores built from locations: failover groups, chains, a cache in front.

The one place that turns a list of locations into a store (``-s`` and
``-c`` of the commands, the served stores of ``chunk-server``).  Each
location gets its own options from ``options_for``, so config-file
settings apply per member of a failover group.
"""

from collections.abc import Callable, Sequence

from ..errors import InvalidArgument, StoreError
from . import open_store
from .base import Store, StoreOptions
from .cache import cached_store
from .capabilities import WriteStore
from .failover import failover_group, split_group
from .router import StoreRouter

OptionsFor = Callable[[str], StoreOptions]


def open_location(location: str, options_for: OptionsFor, writable: bool = False) -> Store:
    """One location; ``a|b`` is a failover group whose members each get their own options.

    ``writable`` creates a local store directory that is not there yet.
    """
    if "|" in location:
        return failover_group([open_location(m, options_for, writable) for m in split_group(location)])
    return open_store(location, options_for(location), writable)


def chain(locations: Sequence[str], options_for: OptionsFor, writable: bool = False) -> Store:
    """The stores in order, asked one after the other for each chunk (a router when more than one)."""
    if not locations:
        raise InvalidArgument("no store given")
    stores = [open_location(loc, options_for, writable) for loc in locations]
    return stores[0] if len(stores) == 1 else StoreRouter(stores)


def cached(store: Store, cache: str, options_for: OptionsFor,
           on_unusable: Callable[[str], None] | None = None,
           on_error: Callable[[str], None] | None = None, repair: bool = True) -> Store:
    """``store`` with the store at ``cache`` in front: read first, filled on a miss.

    ``repair`` replaces an invalid cache entry from ``store``; without it such an entry fails the read.

    A cache that cannot be opened or cannot store chunks fails the call,
    unless ``on_unusable`` is given: it is then told why and the store goes
    on without a cache.  ``on_error`` hears about later cache failures
    (see CachedStore).  The result has the capabilities of ``store``.
    """
    try:
        cache_store = open_location(cache, options_for, writable=True)
    except StoreError as unusable:
        if on_unusable is None:
            raise
        on_unusable(f"cache {cache} is not usable, continuing without it: {unusable}")
        return store
    if not isinstance(cache_store, WriteStore):
        cache_store.close()
        if on_unusable is None:
            raise StoreError(f"cache {cache} cannot store chunks (a cache needs a local, SFTP, S3 or HTTP store)")
        on_unusable(f"cache {cache} is not usable, continuing without it: it cannot store chunks")
        return store
    return cached_store(store, cache_store, on_error=on_error, repair=repair)

