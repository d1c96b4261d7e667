"""Options and helpers shared by the commands: stores, chunk sizes, digests.

Every command module calls these instead of parsing store flags itself, so
all commands accept the same store options with the same meaning.
"""

import argparse
import os
from collections.abc import Sequence

from .. import digest as digest_mod
from ..chunker import Chunker, parse_chunk_sizes
from ..digest import Digest
from ..errors import UsageError
from ..index import Index
from ..progress import Progress, progress
from ..stores import Store, StoreOptions, open_store, open_stores
from ..stores.indexes import read_index

DEFAULT_WORKERS = 10


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped descriptions as written."""


def add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options valid before or after the command name (like the Go tool's persistent flags)."""
    default: object = argparse.SUPPRESS if suppress else None
    parser.add_argument("--digest", default=argparse.SUPPRESS if suppress else "sha512-256",
                        help="digest for new chunk IDs: sha512-256 (default) or sha256")
    parser.add_argument("--config", default=default, metavar="FILE",
                        help="config file (default $HOME/.config/desync/config.json)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        default=argparse.SUPPRESS if suppress else False, help="more detail on errors")


def add_store_options(parser: argparse.ArgumentParser, stores: bool = True, cache: bool = False,
                      required: bool = False) -> None:
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
    parser.add_argument("-u", "--uncompressed", action="store_true",
                        help="read and write uncompressed chunks")
    parser.add_argument("-t", "--trust-insecure", action="store_true",
                        help="trust any TLS certificate")
    parser.add_argument("--ca-cert", default="", metavar="FILE", help="trust this CA for HTTPS stores")
    parser.add_argument("--client-cert", default="", metavar="FILE", help="TLS client certificate")
    parser.add_argument("--client-key", default="", metavar="FILE", help="TLS client key")
    parser.add_argument("--error-retry", type=non_negative_int, default=None, metavar="N",
                        help="retries on network errors (default 3)")
    parser.add_argument("--error-retry-base-interval", type=float, default=None, metavar="SECONDS",
                        help="first wait between retries; doubles each retry (default 0.5)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="network timeout (default 60)")


def add_chunk_size_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--chunk-size", default="16:64:256", metavar="MIN:AVG:MAX",
                        help="chunk sizes in KiB (default 16:64:256)")


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def store_options(args: argparse.Namespace, digest: Digest | None = None) -> StoreOptions:
    """StoreOptions from the command line; ``digest`` comes from the index being read."""
    opts = StoreOptions()
    opts.digest = digest if digest is not None else digest_mod.by_name(args.digest)
    opts.skip_verify = bool(getattr(args, "skip_verify", False))
    opts.uncompressed = bool(getattr(args, "uncompressed", False))
    opts.trust_insecure = bool(getattr(args, "trust_insecure", False))
    opts.ca_cert = getattr(args, "ca_cert", "") or ""
    opts.client_cert = getattr(args, "client_cert", "") or ""
    opts.client_key = getattr(args, "client_key", "") or ""
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


def chunker_from(args: argparse.Namespace) -> Chunker:
    min_size, avg_size, max_size = parse_chunk_sizes(args.chunk_size)
    return Chunker(min_size, avg_size, max_size)


def load_index(location: str, args: argparse.Namespace) -> Index:
    return read_index(location, store_options(args))


def read_store(args: argparse.Namespace, digest: Digest, required: bool = True) -> Store:
    """The chained read stores of ``-s`` (with ``-c`` cache in front when given)."""
    locations: Sequence[str] = args.stores
    if not locations and required:
        raise UsageError("no store given (use -s STORE)")
    return open_stores(locations, store_options(args, digest), getattr(args, "cache", "") or "")


def write_store(location: str, args: argparse.Namespace, digest: Digest | None = None) -> Store:
    store = open_store(location, store_options(args, digest), writable=True)
    if not store.writable:
        raise UsageError(f"store {location} is read-only")
    return store


def single_store_location(args: argparse.Namespace) -> str:
    if len(args.stores) != 1:
        raise UsageError("exactly one store is required here (-s STORE)")
    location: str = args.stores[0]
    return location


def cpu_workers(args: argparse.Namespace) -> int:
    """Threads for CPU-bound work on local data: more than the cores only adds contention."""
    requested: int = args.workers
    return max(1, min(requested, (os.cpu_count() or 1) + 1))


def show_progress(label: str, total: int) -> Progress:
    return progress(label, total)
