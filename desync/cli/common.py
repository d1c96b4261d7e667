"""Options and helpers shared by the commands: stores, chunk sizes, digests.

Every command module calls these instead of parsing store flags itself, so
all commands accept the same store options with the same meaning.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from .. import digest as digest_mod
from ..errors import DesyncError, UsageError
from ..config import load_config, parse_duration
from ..stores.indexes import read_index, write_index
from ..stores.options import StoreOptions
from ..stores.s3auth import credentials_for, endpoint_of, is_s3_location

# Store composition, the chunker and progress come with the first function that needs them: reading an
# index (list-chunks, info) must not load them (start-up time, tests/test_startup.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Final

    from ..chunker import Chunker
    from ..digest import Digest
    from ..index import Index
    from ..progress import Progress
    from ..stores import PrunableStore, ReadStore, Store, WriteStore, compose

DEFAULT_WORKERS = 10


def add_store_options(parser: argparse.ArgumentParser, stores: bool = True, cache: bool = False,
                      required: bool = False, uncompressed_help: str = "read and write uncompressed chunks",
                      cache_repair: bool = True) -> None:
    """The store flags every command shares, spelled as the Go desync spells them.

    ``cache_repair`` adds ``-r/--cache-repair`` (default on, ``--cache-repair=false`` turns it off);
    ``verify`` has its own ``-r``.
    """
    if stores:
        parser.add_argument("-s", "--store", action="append", default=[], dest="stores", metavar="STORE",
                            required=required, help="chunk store location (repeat to chain stores)")
    if cache:
        parser.add_argument("-c", "--cache", default="", metavar="STORE",
                            help="store used as a cache: read first, filled on a miss")
    parser.add_argument("-n", "--concurrency", type=positive_int, default=DEFAULT_WORKERS, dest="workers",
                        metavar="N", help=f"number of parallel workers (default {DEFAULT_WORKERS})")
    parser.add_argument("--skip-verify", action="store_true",
                        help="do not verify chunk hashes when reading from stores")
    parser.add_argument("-u", "--uncompressed", action="store_true", help=uncompressed_help)
    parser.add_argument("-t", "--trust-insecure", action="store_true",
                        help="trust any TLS certificate")
    parser.add_argument("--ca-cert", default="", metavar="FILE", help="trust this CA for HTTPS stores")
    parser.add_argument("--client-cert", default="", metavar="FILE", help="TLS client certificate")
    parser.add_argument("--client-key", default="", metavar="FILE", help="TLS client key")
    if cache_repair:
        parser.add_argument("-r", "--cache-repair", action="store_true", default=True,
                            help="replace invalid chunks in the cache from the stores (default true; "
                                 "--cache-repair=false makes an invalid cache chunk an error)")
    parser.add_argument("-e", "--error-retry", type=non_negative_int, default=None, metavar="N",
                        help="retries on network errors (default 3)")
    parser.add_argument("-b", "--error-retry-base-interval", type=duration, default=None, metavar="DURATION",
                        help="first wait between retries (e.g. 500ms, 2s; plain numbers are seconds); "
                             "doubles each retry (default 0.5s)")
    parser.add_argument("--timeout", type=duration, default=None, metavar="DURATION",
                        help="network timeout (e.g. 30s, 1m; plain numbers are seconds; default 60s)")


def add_chunk_size_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--chunk-size", default="16:64:256", metavar="MIN:AVG:MAX",
                        help="chunk sizes in KiB (default 16:64:256)")


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def duration(text: str) -> float:
    """Seconds from plain seconds ("30", "0.5") or a duration as the config file takes it ("30s", "1m30s")."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            return parse_duration(text, "duration")
        except DesyncError:
            raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 30s, 500ms, 1m, or plain "
                                             f"seconds)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be a non-negative number of seconds")
    return seconds


def non_negative_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def store_options(args: argparse.Namespace, digest: Digest | None = None, location: str = "") -> StoreOptions:
    """StoreOptions for ``location``: defaults, then its config-file entry, then command-line flags.

    ``digest`` comes from the index being read.
    """
    opts = StoreOptions()
    opts.digest = digest if digest is not None else digest_mod.by_name(args.digest)
    if location:
        config = load_config(getattr(args, "config", None))
        apply_config(opts, config.options_for(location))
        if is_s3_location(location):
            opts.s3_credentials = credentials_for(endpoint_of(location), config)
    opts.skip_verify = opts.skip_verify or bool(getattr(args, "skip_verify", False))
    opts.uncompressed = opts.uncompressed or bool(getattr(args, "uncompressed", False))
    opts.trust_insecure = opts.trust_insecure or bool(getattr(args, "trust_insecure", False))
    opts.ca_cert = getattr(args, "ca_cert", "") or opts.ca_cert
    opts.client_cert = getattr(args, "client_cert", "") or opts.client_cert
    opts.client_key = getattr(args, "client_key", "") or opts.client_key
    retry = getattr(args, "error_retry", None)
    if retry is not None:
        opts.error_retry = retry
    interval = getattr(args, "error_retry_base_interval", None)
    if interval is not None:
        opts.error_retry_base_interval = interval
    timeout = getattr(args, "timeout", None)
    if timeout is not None:
        opts.timeout = timeout
    opts.workers = getattr(args, "workers", DEFAULT_WORKERS)
    return opts


def apply_config(opts: StoreOptions, entry: dict[str, Any]) -> None:
    """Set the options a config-file store-options entry names (types were checked on load)."""
    if "timeout" in entry:
        opts.timeout = float(entry["timeout"])
    if "error-retry" in entry:
        opts.error_retry = int(entry["error-retry"])
    if "error-retry-base-interval" in entry:
        opts.error_retry_base_interval = float(entry["error-retry-base-interval"])
    opts.client_cert = str(entry.get("client-cert", opts.client_cert))
    opts.client_key = str(entry.get("client-key", opts.client_key))
    opts.ca_cert = str(entry.get("ca-cert", opts.ca_cert))
    opts.trust_insecure = bool(entry.get("trust-insecure", opts.trust_insecure))
    opts.skip_verify = bool(entry.get("skip-verify", opts.skip_verify))
    opts.uncompressed = bool(entry.get("uncompressed", opts.uncompressed))
    opts.http_auth = str(entry.get("http-auth", opts.http_auth))
    opts.http_cookie = str(entry.get("http-cookie", opts.http_cookie))


def options_for(args: argparse.Namespace, digest: Digest | None = None) -> compose.OptionsFor:
    """Each location's StoreOptions from the flags and the config file (see store_options)."""
    return lambda location: store_options(args, digest, location)


def open_location(location: str, args: argparse.Namespace, digest: Digest | None = None,
                  writable: bool = False) -> Store:
    """One ``-s``/``-c`` location with its own options; failover members each get theirs."""
    from ..stores import compose

    return compose.open_location(location, options_for(args, digest), writable)


def chunker_from(args: argparse.Namespace) -> Chunker:
    from ..chunker import Chunker, parse_chunk_sizes

    min_size, avg_size, max_size = parse_chunk_sizes(args.chunk_size)
    return Chunker(min_size, avg_size, max_size)


def load_index(location: str, args: argparse.Namespace) -> Index:
    return read_index(location, store_options(args, location=location))


def save_index(location: str, index: Index, args: argparse.Namespace) -> None:
    """Write an index to a file, stdout or a remote index store (with that location's options)."""
    write_index(location, index, store_options(args, index.digest, location))


def read_store(args: argparse.Namespace, digest: Digest, cache: bool = True,
               locations: Sequence[str] | None = None, cache_at: str | None = None) -> Store:
    """The chained read stores of ``-s`` (with the ``-c`` cache in front when given and ``cache``).

    ``locations`` and ``cache_at`` replace ``-s`` and ``-c`` (a ``--store-file``'s stores).
    """
    if locations is None:
        locations = args.stores
    if not locations:
        raise UsageError("no store given (use -s STORE)")
    from ..stores import compose

    find = options_for(args, digest)
    store = compose.chain(locations, find)
    cache_location: str = (getattr(args, "cache", "") or "") if cache_at is None else cache_at
    if not cache:
        cache_location = ""
    if cache_location:
        store = compose.cached(store, cache_location, find, on_unusable=warn, on_error=warn,
                               repair=bool(getattr(args, "cache_repair", True)))
    return store


def stores_from_file(path: str) -> tuple[list[str], str]:
    """The stores and cache of a ``--store-file`` (the Go desync's format; chunk-server and mount-index)."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as os_error:
        raise DesyncError(f"cannot read store file {path}: {os_error.strerror}") from None
    except ValueError as bad:
        raise DesyncError(f"store file {path}: invalid JSON: {bad}") from None
    stores = doc.get("stores") if isinstance(doc, dict) else None
    cache = doc.get("cache", "") if isinstance(doc, dict) else None
    if not isinstance(stores, list) or not stores or not all(isinstance(s, str) and s for s in stores) \
            or not isinstance(cache, str):
        raise DesyncError(f"store file {path}: expected {{\"stores\": [\"LOCATION\", ...], \"cache\": \"LOCATION\"}}")
    return stores, cache


def warn(message: str) -> None:
    """A ``desync: warning:`` line on stderr: something was skipped, the command goes on."""
    sys.stderr.write(f"desync: warning: {message}\n")
    sys.stderr.flush()


_WRITERS: Final = "a local, SFTP, S3 or HTTP store"
_PRUNERS: Final = "a local, SFTP or S3 store"


def write_store(location: str, args: argparse.Namespace, digest: Digest | None = None, lock: str = "",
                command: str = "") -> WriteStore:
    """A write store for ``command``; ``lock`` "shared" or "exclusive" takes its writer lock (Store.writer_lock)."""
    from ..stores.capabilities import WriteStore

    store = open_location(location, args, digest, writable=True)
    if not isinstance(store, WriteStore):
        store.close()
        raise UsageError(f"store {location} cannot store chunks ({command or 'this command'} needs {_WRITERS})")
    _lock(store, lock)
    return store


def prunable_store(location: str, args: argparse.Namespace, digest: Digest | None, command: str,
                   missing: str = "remove chunks", create: bool = True) -> PrunableStore:
    """A store ``command`` can list (and remove) chunks in; a one-line usage error naming it otherwise.

    ``create`` makes a missing local store directory, as for any store written to.
    """
    from ..stores.capabilities import PrunableStore

    store = open_location(location, args, digest, writable=create)
    if not isinstance(store, PrunableStore):
        store.close()
        raise UsageError(f"store {location} cannot {missing} ({command} needs {_PRUNERS})")
    return store


def _lock(store: WriteStore, lock: str) -> None:
    if lock:
        try:
            store.writer_lock(lock == "exclusive")
        except BaseException:
            store.close()
            raise


def single_store_location(args: argparse.Namespace) -> str:
    if len(args.stores) != 1:
        raise UsageError("exactly one store is required here (-s STORE)")
    location: str = args.stores[0]
    return location


def cpu_workers(args: argparse.Namespace, store: ReadStore | None = None) -> int:
    """Threads for the work: ``-n``, but no more than the stores can use (local work stops at the cores)."""
    requested: int = args.workers
    useful = store.parallelism if store is not None else (os.cpu_count() or 1)
    return max(1, min(requested, useful))


def show_progress(label: str, total: int, unit: str | None = None) -> Progress:
    """Progress on stderr; ``total`` 0 when unknown, ``unit`` bytes unless given (see
    :class:`desync.progress.Progress`)."""
    from ..progress import progress

    return progress(label, total) if unit is None else progress(label, total, unit)
