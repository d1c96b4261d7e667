"""Store upkeep commands: verify, chop, cache, prune."""

from __future__ import annotations

import argparse
import sys

from .. import digest as digest_mod
from ..errors import DesyncError, UsageError
from ..index import Index
from ..ops.inspect import read_chunk_id_files
from ..ops.upkeep import chop, fill_cache, prune, unique_ids
from ..ops.verify import verify_store
from . import common

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Any


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    p = sub.add_parser("verify", help="check every chunk in a store",
                       description="Read every chunk of the store and check it against its ID, reporting "
                                   "every invalid or unreadable entry; with -r remove them (a directory under "
                                   "a chunk name only when empty) and the temp files of killed writers. The "
                                   "exit status is non-zero while anything bad remains.")
    common.add_store_options(p, cache_repair=False)
    p.add_argument("-r", "--repair", action="store_true", help="remove invalid chunks")
    p.set_defaults(func=run_verify)

    p = sub.add_parser("chop", help="store the chunks of a file along an existing index")
    common.add_store_options(p)
    p.add_argument("--ignore", action="append", default=[], metavar="INDEX",
                   help="do not store chunks that are in this index")
    _add_ignore_chunks(p, "store")
    p.add_argument("index", help="blob index (.caibx) whose chunks to store")
    p.add_argument("file", help="the file the index was made from")
    p.set_defaults(func=run_chop)

    p = sub.add_parser("cache", help="copy the chunks of indexes from stores into a cache store")
    common.add_store_options(p, cache=True)
    p.add_argument("--ignore", action="append", default=[], metavar="INDEX",
                   help="do not fetch chunks that are in this index")
    _add_ignore_chunks(p, "fetch")
    p.add_argument("indexes", nargs="+", metavar="INDEX", help="indexes whose chunks to copy into the cache")
    p.set_defaults(func=run_cache)

    p = sub.add_parser("prune", help="remove chunks no index refers to",
                       description="Remove every chunk from the store that is not referenced by one of "
                                   "the given indexes. Asks for confirmation unless -y is given. A local "
                                   "store is locked while pruning: prune refuses to start while a make, "
                                   "tar, chop or cache is adding chunks to it, and those wait for a running "
                                   "prune, so an index just written never refers to a pruned chunk. Temp "
                                   "files of killed writers are removed once their process is gone.")
    common.add_store_options(p)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("indexes", nargs="+", metavar="INDEX", help="indexes whose chunks to keep")
    p.set_defaults(func=run_prune)


def _add_ignore_chunks(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("--ignore-chunks", action="append", default=[], metavar="FILE",
                   help=f"do not {verb} the chunks listed in this text file (one ID in hex a line, as "
                        "list-chunks prints them; repeatable)")


def _ignored(args: argparse.Namespace) -> set[bytes]:
    """The chunks of the --ignore indexes and the --ignore-chunks files."""
    return set(unique_ids(_load_all(args.ignore, args))) | read_chunk_id_files(args.ignore_chunks)


def _load_all(locations: list[str], args: argparse.Namespace) -> list[Index]:
    return [common.load_index(loc, args) for loc in locations]


def run_verify(args: argparse.Namespace) -> int:
    location = common.single_store_location(args)
    digest = digest_mod.by_name(args.digest)
    if args.repair:
        store = common.prunable_store(location, args, digest, "verify -r")
    else:
        store = common.prunable_store(location, args, digest, "verify", "list its chunks", create=False)

    def report(bad: DesyncError) -> None:
        sys.stderr.write(f"desync: {bad}\n")

    with store, common.show_progress("Verifying", 0, "chunks") as prog:
        result = verify_store(store, digest, repair=args.repair, workers=common.cpu_workers(args, store),
                              progress=prog, report=report)
    if result.removed:
        sys.stderr.write(f"desync: removed {result.removed} invalid chunks from {location}\n")
    if result.strays:
        sys.stderr.write(f"desync: removed {result.strays} temp files of killed writers from {location}\n")
    if result.left:
        raise DesyncError(f"{len(result.left)} bad entries in {location} could not be removed")
    if result.bad and not args.repair:
        raise DesyncError(f"{result.bad} of {result.checked} chunks in {location} are invalid or unreadable "
                          f"(use -r to remove them)")
    return 0


def run_chop(args: argparse.Namespace) -> int:
    index = common.load_index(args.index, args)
    ignore = _ignored(args)
    store = common.write_store(common.single_store_location(args), args, index.digest, lock="shared",
                               command="chop")
    with store, common.show_progress("Chopping", 0) as prog:
        chop(index, args.file, store, ignore=ignore, workers=common.cpu_workers(args, store), progress=prog)
    return 0


def run_cache(args: argparse.Namespace) -> int:
    if not args.cache:
        raise UsageError("no cache given (use -c STORE)")
    indexes = _load_all(args.indexes, args)
    ignore = _ignored(args)
    digest = indexes[0].digest
    ids = [i for i in unique_ids(indexes) if i not in ignore]
    sizes = {c.id: c.size for idx in indexes for c in idx.chunks}
    source = common.read_store(args, digest, cache=False)
    cache = common.write_store(args.cache, args, digest, lock="shared", command="cache")
    with source, cache, common.show_progress("Caching", sum(sizes[i] for i in ids)) as prog:
        fill_cache(ids, source, cache, workers=common.cpu_workers(args, source), progress=prog, sizes=sizes)
    return 0


def run_prune(args: argparse.Namespace) -> int:
    indexes = _load_all(args.indexes, args)
    keep = set(unique_ids(indexes))
    location = common.single_store_location(args)
    store = common.prunable_store(location, args, indexes[0].digest, "prune")
    if not args.yes:
        if sys.stdin is None or not sys.stdin.isatty():
            raise UsageError("prune needs confirmation: run it in a terminal or pass -y")
        sys.stderr.write(f"Warning: The store {location} will be pruned; chunks not referenced by the given "
                         f"indexes are deleted. Continue? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            sys.stderr.write("desync: prune cancelled\n")
            return 1
    with store:
        store.writer_lock(exclusive=True)  # after the question: a waiting prompt must not hold up makes
        removed = prune(store, keep)
    sys.stderr.write(f"desync: removed {removed} chunks from {location}\n")
    return 0
