"""Blob commands: make, extract, cat, chunk, list-chunks, info, verify-index."""

from __future__ import annotations

import argparse
import os
import sys

from .. import digest as digest_mod
from ..errors import DesyncError, IntegrityError, UsageError
from ..reflink import MODES
from . import common, targets

# The operations are imported by the command that runs them: list-chunks and info start without
# loading make, extract or the stores (start-up time, tests/test_startup.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..index import Index
    from ..ops.extract import ExtractStats
    from ..ops.seed import SeedSet
    from ..ops.sourcestats import ByteCounts
    from ..progress import Progress
    from ..stores import Store, WriteStore


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    p = sub.add_parser("make", help="chunk a file into an index and store its chunks",
                       description="Split FILE into chunks, write the index to INDEX and, with -s, store "
                                   "the chunks. FILE may be '-' for stdin, INDEX '-' for stdout.")
    common.add_store_options(p)
    common.add_chunk_size_option(p)
    p.add_argument("--print-stats", action="store_true",
                   help="print chunking statistics to stderr (JSON, the Go desync's keys)")
    targets.add_force_option(p, "index")
    p.add_argument("index", help="index to write: a name ending in .caibx, '-' for stdout, or an index store URL")
    p.add_argument("file", help="file or block device to chunk, '-' for stdin")
    p.set_defaults(func=run_make)

    p = sub.add_parser("extract", help="rebuild a file from its index and stores",
                       description="Assemble the blob described by INDEX into FILE, taking chunks from local "
                                   "seeds (--seed, --seed-dir; verified against their IDs) before the stores. "
                                   "The file is written to a temp name and renamed when complete, unless -k "
                                   "(in place) is given; with -k and FILE also given as --seed, chunks that "
                                   "moved inside FILE are reused, their old bytes read before anything "
                                   "overwrites them.")
    common.add_store_options(p, cache=True)
    p.add_argument("-k", "--in-place", action="store_true",
                   help="write into FILE directly, keeping content that already matches")
    p.add_argument("--print-stats", action="store_true",
                   help="print statistics: JSON as the Go desync prints it to stdout, and where every byte "
                        "came from to stderr")
    add_seed_options(p)
    p.add_argument("--reflink", choices=MODES, default="auto",
                   help="clone seed chunks on file systems that share extents: auto (default) where "
                        "possible, yes (fail when the file system cannot), no (always copy)")
    p.add_argument("index", help="blob index (.caibx): a file, '-' for stdin, or an index store URL")
    p.add_argument("file", help="output file or block device ('-' for stdout); an existing file keeps its mode "
                                "and owner, a symlink stays and the file it points at is replaced")
    p.set_defaults(func=run_extract)

    p = sub.add_parser("cat", help="write a blob, or part of it, to stdout or a file")
    common.add_store_options(p, cache=True)
    p.add_argument("-o", "--offset", type=common.non_negative_int, default=0, help="first byte to write")
    p.add_argument("-l", "--length", type=common.non_negative_int, default=None,
                   help="number of bytes (default: to the end)")
    add_seed_options(p)
    p.add_argument("index", help="index file")
    p.add_argument("output", nargs="?", default="-", help="output file (default stdout)")
    p.set_defaults(func=run_cat)

    p = sub.add_parser("chunk", help="print the chunk boundaries and IDs of a file",
                       description="Print START, SIZE and ID (tab-separated) of every chunk of FILE.")
    common.add_chunk_size_option(p)
    p.add_argument("-S", "--start", type=common.non_negative_int, default=0,
                   help="start chunking at this offset")
    p.add_argument("file", help="file or block device to chunk")
    p.set_defaults(func=run_chunk)

    p = sub.add_parser("list-chunks", help="print the chunk IDs of an index")
    common.add_store_options(p, stores=False)
    p.add_argument("index", help="index (.caibx or .caidx): a file, '-' for stdin, or an index store URL")
    p.set_defaults(func=run_list_chunks)

    p = sub.add_parser("info", help="show chunk counts and sizes of an index",
                       description="Show information about INDEX: chunk counts, sizes, and with -s how many "
                                   "chunks the stores hold.")
    common.add_store_options(p, cache=True)
    p.add_argument("-f", "--format", choices=("json", "plain"), default="json", help="output format")
    p.add_argument("--seed", action="append", default=[], metavar="INDEX[:FILE]|PATH",
                   help="count the chunks this seed holds (as for extract; an index is trusted, a file "
                        "without one is chunked)")
    p.add_argument("--seed-dir", action="append", default=[], metavar="DIR",
                   help="every *.caibx in DIR is a seed")
    p.add_argument("--chunks-info", default="", metavar="FILE",
                   help="JSON file written by inspect-chunks: adds the compressed size of the chunks "
                        "in neither seed nor cache")
    p.add_argument("index", help="index (.caibx or .caidx): a file, '-' for stdin, or an index store URL")
    p.set_defaults(func=run_info)

    p = sub.add_parser("inspect-chunks", help="print every chunk of an index as JSON, with its size in a store",
                       description="Write a JSON array with the ID and size of every chunk of INDEX to OUTPUT "
                                   "(default stdout); with -s, a local store, also each chunk's compressed size "
                                   "in it (info --chunks-info reads the result).")
    common.add_store_options(p, stores=False)
    p.add_argument("-s", "--store", default="", metavar="DIR", dest="local_store",
                   help="local store whose compressed chunk sizes to report")
    p.add_argument("index", help="index (.caibx or .caidx): a file, '-' for stdin, or an index store URL")
    p.add_argument("output", nargs="?", default="-", help="JSON file to write (default stdout)")
    p.set_defaults(func=run_inspect_chunks)

    p = sub.add_parser("verify-index", help="check that a file matches an index")
    common.add_store_options(p, stores=False)
    p.add_argument("index", help="blob index (.caibx) the file should match")
    p.add_argument("file", help="file or block device to check")
    p.set_defaults(func=run_verify_index)


def add_seed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", action="append", default=[], metavar="INDEX[:FILE]|PATH",
                   help="reuse chunks of a local file: INDEX of it (FILE defaults to INDEX without its "
                        "extension), or a file, block device or directory without an index, chunked on the "
                        "fly (repeatable)")
    p.add_argument("--seed-dir", action="append", default=[], metavar="DIR",
                   help="every *.caibx in DIR is a seed, with the file of the same name (repeatable)")
    p.add_argument("--skip-invalid-seeds", action="store_true",
                   help="skip a seed whose file no longer matches its index instead of failing")
    p.add_argument("--regenerate-invalid-seeds", action="store_true",
                   help="re-chunk a seed whose file no longer matches its index and use the fresh index")


def open_seeds(args: argparse.Namespace, index: Index, prog: Progress | None = None,
               validate: bool = True) -> SeedSet:
    """The seeds of ``--seed``/``--seed-dir`` for extracting ``index`` (empty without them)."""
    from ..ops.seed import SeedOptions, SeedSet, load_seeds

    if not args.seed and not args.seed_dir:
        return SeedSet()
    options = SeedOptions(skip_invalid=getattr(args, "skip_invalid_seeds", False),
                          regenerate_invalid=getattr(args, "regenerate_invalid_seeds", False),
                          workers=common.cpu_workers(args), warn=common.warn, progress=prog, validate=validate)
    return load_seeds(args.seed, args.seed_dir, index, common.store_options(args), options)


def run_make(args: argparse.Namespace) -> int:
    from ..ops.make import MakeStats, make_blob_index

    targets.check_index_target(args.index, ".caibx", args.force)
    chunker = common.chunker_from(args)
    digest = digest_mod.by_name(args.digest)
    store: WriteStore | None = None
    if args.stores:
        store = common.write_store(common.single_store_location(args), args, digest, lock="shared",
                                   command="make")
    stats = MakeStats()
    size = _size_of(args.file)
    try:
        with common.show_progress("Chunking", size) as prog:
            index = make_blob_index(args.file, chunker, digest, store, workers=common.cpu_workers(args, store),
                                    progress=prog, stats=stats)
        common.save_index(args.index, index, args)  # under the store lock: no prune between chunks and index
    finally:
        if store is not None:
            store.close()
    if args.print_stats:
        # The Go tool's ChunkingStats (untagged field names); its parallel chunkers may produce chunks
        # they then drop, ours produce each chunk once.
        import json

        report = {"ChunksAccepted": stats.chunks, "ChunksProduced": stats.chunks, "ChunksUnique": stats.unique,
                  "ChunksStored": stats.stored, "Bytes": stats.bytes}
        sys.stderr.write(json.dumps(report, indent=2) + "\n")
    return 0


def _size_of(path: str) -> int:
    try:
        return os.stat(path).st_size if path != "-" else 0
    except OSError:
        return 0


def run_extract(args: argparse.Namespace) -> int:
    from ..featureflags import describes_archive
    from ..ops.cat import cat
    from ..ops.extract import ExtractStats, extract_blob
    from ..ops.sourcestats import ByteCounts, count_sources
    from ..reflink import RangeCopier

    index = common.load_index(args.index, args)
    if describes_archive(index.flags):
        raise UsageError(f"{args.index} is an archive index (.caidx): use 'desync untar -i' to extract it")
    seeded = bool(args.seed or args.seed_dir)
    if args.file == "-":
        # casync's meaning of '-': the blob goes to stdout.
        if seeded:
            raise UsageError("--seed needs an output file, not '-'")
        with common.read_store(args, index.digest) as store:
            cat(index, store, sys.stdout.buffer, workers=common.cpu_workers(args, store))
            sys.stdout.buffer.flush()
        return 0
    # With seeds the stores are optional: a chunk no seed has is then an error.
    maybe_store = common.read_store(args, index.digest) if args.stores or not seeded else None
    counts = ByteCounts()
    if maybe_store is not None and args.print_stats:
        maybe_store = count_sources(maybe_store, counts)
    stats = ExtractStats()
    try:
        with common.show_progress("Chunking seeds", 0) as seed_prog:
            seeds = open_seeds(args, index, seed_prog)
        with common.show_progress("Assembling", index.length) as prog:
            workers = common.cpu_workers(args, maybe_store)
            extract_blob(index, maybe_store, args.file, in_place=args.in_place, workers=workers, progress=prog,
                         stats=stats, seeds=seeds, copier=RangeCopier(args.reflink))
    finally:
        if maybe_store is not None:
            maybe_store.close()
    if args.print_stats:
        import json

        sys.stdout.write(json.dumps(go_stats(stats, index, len(seeds), args.file), indent=2) + "\n")
        sys.stdout.flush()
        sys.stderr.write(format_stats(stats, len(seeds), counts))
    return 0


def go_stats(stats: ExtractStats, index: Index, seeds: int, output: str) -> dict[str, int]:
    """extract's statistics under the Go desync's JSON keys (zero chunks come from its null seed)."""
    try:
        blocksize = os.stat(output).st_blksize
    except OSError:
        blocksize = 0
    return {
        "chunks-from-seeds": stats.seed_chunks + stats.zero,
        "chunks-from-store": stats.fetched,
        "chunks-in-place": stats.skipped_in_place,
        "bytes-copied-from-seeds": stats.bytes_seed_copied + stats.bytes_self_copied,
        "bytes-cloned-from-seeds": stats.bytes_seed_cloned + stats.bytes_self_cloned,
        "blocksize": blocksize,
        "bytes-total": index.length,
        "chunks-total": len(index.chunks),
        "seeds": seeds,
    }


def format_stats(stats: ExtractStats, seeds: int, counts: ByteCounts) -> str:
    """The ``--print-stats`` report of extract: where every byte of the output came from."""
    lines = [
        ("Chunks", stats.chunks), ("Seeds", seeds), ("Chunks from seeds", stats.seed_chunks),
        ("Invalid seed chunks", stats.seed_invalid), ("Fetched", stats.fetched),
        ("Kept in place", stats.skipped_in_place), ("Zero chunks", stats.zero),
        ("Bytes kept in place", stats.bytes_kept), ("Bytes cloned from seeds", stats.bytes_seed_cloned),
        ("Bytes copied from seeds", stats.bytes_seed_copied),
        ("Bytes cloned from the output (self seed)", stats.bytes_self_cloned),
        ("Bytes copied from the output (self seed)", stats.bytes_self_copied),
        ("Bytes of zero chunks", stats.bytes_zero), ("Bytes staged for in-place moves", stats.bytes_staged),
        ("Bytes fetched (cache and stores)", stats.bytes_store),
    ]
    lines += [(f"Bytes from {label}", n) for label, n in counts.bytes.items()]
    return "".join(f"{label}: {value}\n" for label, value in lines)


def run_cat(args: argparse.Namespace) -> int:
    from ..ops.cat import cat
    from ..ops.seed import SeededStore

    index = common.load_index(args.index, args)
    seeded = bool(args.seed or args.seed_dir)
    store: Store | None = common.read_store(args, index.digest) if args.stores or not seeded else None
    if seeded:
        try:
            seeds = open_seeds(args, index)
        except BaseException:
            if store is not None:
                store.close()
            raise
        store = SeededStore(seeds, store, index.digest)
    assert store is not None
    length = -1 if args.length is None else args.length
    workers = common.cpu_workers(args, store)
    with store:
        if args.output == "-":
            cat(index, store, sys.stdout.buffer, offset=args.offset, length=length, workers=workers)
            sys.stdout.buffer.flush()
        else:
            try:
                out = open(args.output, "wb")
            except OSError as exc:
                raise DesyncError(f"cannot write {args.output}: {exc.strerror}") from None
            with out:
                cat(index, store, out, offset=args.offset, length=length, workers=workers)
    return 0


def run_chunk(args: argparse.Namespace) -> int:
    from ..ops.make import chunk_file

    chunker = common.chunker_from(args)
    digest = digest_mod.by_name(args.digest)
    try:
        f = open(args.file, "rb")
    except OSError as exc:
        raise DesyncError(f"cannot open {args.file}: {exc.strerror}") from None
    with f:
        f.seek(args.start)
        index = chunk_file(f, chunker, digest, None, workers=2)
    out = sys.stdout
    for c in index.chunks:
        out.write(f"{args.start + c.start}\t{c.size}\t{c.id.hex()}\n")
    return 0


def run_list_chunks(args: argparse.Namespace) -> int:
    index = common.load_index(args.index, args)
    sys.stdout.write("".join(f"{c.id.hex()}\n" for c in index.chunks))
    return 0


def run_info(args: argparse.Namespace) -> int:
    index = common.load_index(args.index, args)
    unique = list(dict.fromkeys(c.id for c in index.chunks))
    sizes = {c.id: c.size for c in index.chunks}
    infos = None
    if args.chunks_info:
        from ..ops.inspect import read_chunk_infos

        infos = read_chunk_infos(args.chunks_info)
    seeded: set[bytes] = set()
    if args.seed or args.seed_dir:  # without seeds nothing of them is loaded (start-up time)
        with common.show_progress("Chunking seeds", 0) as seed_prog:
            seeded = set(open_seeds(args, index, seed_prog, validate=False).where)
    not_in_seed = [i for i in unique if i not in seeded]
    missing = not_in_seed
    results: dict[str, int] = {
        "total": len(index.chunks),
        "unique": len(unique),
        "in-store": 0,
        "in-seed": len(unique) - len(not_in_seed),
        "in-cache": 0,
        "not-in-seed-nor-cache": len(not_in_seed),
        "size": index.length,
        "dedup-size-not-in-seed": sum(sizes[i] for i in not_in_seed),
        "dedup-size-not-in-seed-nor-cache": sum(sizes[i] for i in not_in_seed),
        "dedup-size-not-in-seed-nor-cache-compressed": 0,
        "chunk-size-min": index.min_size,
        "chunk-size-avg": index.avg_size,
        "chunk-size-max": index.max_size,
    }
    if args.cache:
        from ..parallel import ordered_map  # threads only when stores are asked

        cache = common.write_store(args.cache, args, index.digest, command="info -c")
        with cache:
            cached = [i for i in ordered_map(lambda i: i if cache.has_chunk(i) else None, unique, args.workers)
                      if i is not None]
        results["in-cache"] = len(cached)
        cached_set = set(cached)
        results["not-in-seed-nor-cache"] = sum(1 for i in not_in_seed if i not in cached_set)
        results["dedup-size-not-in-seed-nor-cache"] = sum(sizes[i] for i in not_in_seed if i not in cached_set)
        missing = [i for i in not_in_seed if i not in cached_set]
    if infos is not None:
        from ..ops.inspect import compressed_size_of

        results["dedup-size-not-in-seed-nor-cache-compressed"] = compressed_size_of(missing, sizes, infos)
    if args.stores:
        from ..parallel import ordered_map as each  # one name per import site (mypyc types locals once)

        store = common.read_store(args, index.digest, cache=False)
        with store:
            results["in-store"] = sum(1 for ok in each(store.has_chunk, unique, args.workers) if ok)
    if args.format == "json":
        import json

        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        labels = [
            ("Blob size", "size"), ("Size of deduplicated chunks not in seed", "dedup-size-not-in-seed"),
            ("Size of deduplicated chunks not in seed nor cache", "dedup-size-not-in-seed-nor-cache"),
            ("Total chunks", "total"), ("Unique chunks", "unique"), ("Chunks in store", "in-store"),
            ("Chunks in seed", "in-seed"), ("Chunks in cache", "in-cache"),
            ("Chunks not in seed nor cache", "not-in-seed-nor-cache"),
            ("Compressed chunks not in seed nor cache", "dedup-size-not-in-seed-nor-cache-compressed"),
            ("Chunk size min", "chunk-size-min"), ("Chunk size avg", "chunk-size-avg"),
            ("Chunk size max", "chunk-size-max"),
        ]
        sys.stdout.write("".join(f"{label}: {results[key]}\n" for label, key in labels))
    return 0


def run_inspect_chunks(args: argparse.Namespace) -> int:
    from ..ops.inspect import chunk_infos, chunk_infos_json
    from ..stores.indexes import write_file_atomic
    from ..stores.local import LocalStore

    index = common.load_index(args.index, args)
    store: LocalStore | None = None
    if args.local_store:
        opened = common.open_location(args.local_store, args, index.digest)
        if not isinstance(opened, LocalStore):
            opened.close()
            raise UsageError(f"'{args.local_store}' is not a local store (inspect-chunks -s needs a directory)")
        store = opened
    try:
        text = chunk_infos_json(chunk_infos(index, store))
    finally:
        if store is not None:
            store.close()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        write_file_atomic(args.output, text.encode(), 0o644)
    return 0


def run_verify_index(args: argparse.Namespace) -> int:
    from ..ops.verify import verify_file

    index = common.load_index(args.index, args)
    with common.show_progress("Verifying", index.length) as prog:
        bad = verify_file(index, args.file, workers=common.cpu_workers(args), progress=prog)
    for c in bad:
        sys.stderr.write(f"desync: chunk {c.id.hex()} at offset {c.start} (size {c.size}) does not match\n")
    if bad:
        raise IntegrityError(f"{args.file} does not match {args.index}: {len(bad)} of {len(index.chunks)} chunks differ")
    return 0

