"""Archive commands: tar, untar, mtree, list.

``tar`` turns a directory (or a tar stream with ``--input-format tar``)
into a catar file or, with ``-i``, a ``.caidx`` index plus chunks in the
store.  ``untar`` extracts a catar or an archive index into a directory,
or writes it as a GNU/pax tar stream.  ``mtree`` and ``list`` print what
``casync mtree``/``casync list`` print, for archives, archive indexes and
directories.  The work is in :mod:`desync.ops.archive`; this module parses
the arguments, opens stores and indexes, and calls it.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import digest as digest_mod
from .. import featureflags as ff
from ..errors import UsageError
from ..ops import archive
from ..reflink import MODES
from . import common, targets

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from collections.abc import Iterator
    from typing import Any

    from ..catar.decoder import DirEnd, Node
    from ..catar.encoder import FileSlice
    from ..catar.seedfiles import SeedFiles
    from ..digest import Digest
    from ..index import Index
    from ..ops.treeseed import TreeSeed, TreeSeedStats
    from ..progress import Progress
    from ..stores import Store, WriteStore


def _add_feature_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--with", action="append", default=[], dest="with_features", metavar="FEATURE",
                   help="store this casync feature (repeatable; e.g. best, unix, xattrs, acl); "
                        "giving any --with starts from none instead of from the default set")
    p.add_argument("--without", action="append", default=[], dest="without_features", metavar="FEATURE",
                   help="do not store this casync feature (repeatable)")
    p.add_argument("--exclude-nodump", choices=("yes", "no"), default="yes",
                   help="skip files with chattr +d (default yes)")
    p.add_argument("--exclude-submounts", choices=("yes", "no"), default="no",
                   help="skip other file systems mounted below the source (default no)")
    p.add_argument("--exclude-file", choices=("yes", "no"), default="yes",
                   help="set the archive's EXCLUDE_FILE flag (default yes); .caexclude files are honoured "
                        "either way, as casync 2 does")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="exclude matching entries (.caexclude syntax, relative to the source; repeatable)")


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    p = sub.add_parser("tar", help="archive a directory into a catar or an archive index",
                       description="Store the directory SOURCE as a catar archive ARCHIVE ('-' for stdout) or, "
                                   "with -i, as an archive index (.caidx) whose chunks go to the store. "
                                   "With --input-format tar, SOURCE is a tar stream ('-' for stdin). The "
                                   "default feature set is the Go desync's (32-bit uids, ns times, "
                                   "permissions, symlinks, devices, FIFOs, sockets, xattrs); --with/--without "
                                   "select casync features as 'casync make' does.")
    common.add_store_options(p)
    common.add_chunk_size_option(p)
    p.add_argument("-i", "--index", action="store_true", help="write an archive index instead of a catar")
    p.add_argument("--input-format", choices=("disk", "tar"), default="disk",
                   help="SOURCE is a directory (disk, default) or a tar stream (tar)")
    p.add_argument("--no-time", action="store_true", help="store every file time as 0 (an unchanged tree then "
                                                            "gives the same archive whenever it is archived)")
    p.add_argument("--tar-add-root", action="store_true",
                   help="with --input-format tar: give the tree a root directory of its own (mode 0755) "
                        "instead of the stream's '.' entry")
    p.add_argument("-x", "--one-file-system", action="store_true",
                   help="do not cross into other file systems mounted below SOURCE (as --exclude-submounts yes)")
    _add_feature_options(p)
    targets.add_force_option(p, "archive or index")
    p.add_argument("archive", help="catar file to write (*.catar, '-' for stdout), or with -i the archive index "
                                   "(*.caidx or an index store URL)")
    p.add_argument("source", help="directory to archive, or tar file/'-' with --input-format tar")
    p.set_defaults(func=run_tar)

    p = sub.add_parser("untar", help="extract a catar or archive index",
                       description="Extract ARCHIVE (a catar file, '-' for stdin) or, with -i, the archive "
                                   "index INDEX into the directory DIR; with --output-format gnu-tar or pax "
                                   "write a tar stream to DIR instead ('-' for stdout).")
    common.add_store_options(p, cache=True)
    p.add_argument("-i", "--index", action="store_true", help="the input is an archive index (.caidx)")
    p.add_argument("--no-same-owner", action="store_true", help="do not restore owners (root only)")
    p.add_argument("--no-same-permissions", action="store_true",
                   help="do not restore permissions: new files get 0666 and directories 0777 less the umask")
    p.add_argument("--no-xattrs", action="store_true", help="do not restore extended attributes and ACLs")
    p.add_argument("--output-format", choices=("disk", "gnu-tar", "pax"), default="disk",
                   help="write files to disk (default), or a GNU or pax tar stream")
    p.add_argument("--seed", action="append", default=[], dest="seeds", metavar="DIR",
                   help="an existing tree holding some of the archive (e.g. its previous version): with -i, "
                        "chunks found in it are read from it instead of the store; files with the same contents "
                        "share its data per --reflink/--hardlink (repeatable)")
    p.add_argument("--reflink", choices=MODES, default="auto",
                   help="share a seed file's data by cloning it where the file system can (auto, default), "
                        "always (yes: an error where it cannot) or never (no)")
    p.add_argument("--hardlink", choices=("yes", "no"), default="no",
                   help="hardlink seed files whose contents and metadata are what the archive holds (default no)")
    p.add_argument("--print-stats", action="store_true", help="print where the bytes came from to stderr")
    p.add_argument("--delete", action="store_true",
                   help="when DIR exists, remove what the archive does not have (updating a tree in place)")
    p.add_argument("archive", help="catar file or archive index")
    p.add_argument("target", help="directory to extract into, or tar output ('-' for stdout)")
    p.set_defaults(func=run_untar)

    for name, what in (("mtree", "an mtree listing"), ("list", "the mode and path of every entry")):
        p = sub.add_parser(name, help=f"print {what} of an archive, archive index or directory",
                           description=f"Print {what}, exactly as 'casync {name}' does, for a catar file, an "
                                       "archive index (-i, or a name ending in .caidx) or a directory (encoded "
                                       "with the --with/--without feature set; default the Go desync's).")
        common.add_store_options(p, cache=True)
        p.add_argument("-i", "--index", action="store_true", help="the input is an archive index (.caidx)")
        _add_feature_options(p)
        p.add_argument("input", help="catar file ('-' for stdin), archive index or directory")
        p.set_defaults(func=run_mtree if name == "mtree" else run_list)


def archive_flags(args: argparse.Namespace, digest: Digest) -> int:
    """The feature flags selected by --with/--without/--exclude-* and --digest."""
    return archive.archive_flags(args.with_features, args.without_features, digest,
                                 exclude_nodump=args.exclude_nodump == "yes",
                                 exclude_file=args.exclude_file == "yes",
                                 exclude_submounts=args.exclude_submounts == "yes"
                                 or getattr(args, "one_file_system", False))


def _items(args: argparse.Namespace, flags: int, slices: bool = False) -> Iterator[bytes | FileSlice]:
    return archive.archive_items(args.source, flags, tar_input=args.input_format == "tar", excludes=args.exclude,
                                 slices=slices, zero_times=args.no_time, add_root=args.tar_add_root)


def run_tar(args: argparse.Namespace) -> int:
    if args.tar_add_root and args.input_format != "tar":
        raise UsageError("--tar-add-root works only with --input-format tar")
    digest = digest_mod.by_name(args.digest)
    flags = archive_flags(args, digest)
    if args.index:
        if args.archive == "-":
            raise UsageError("an archive index needs a file name")
        targets.check_index_target(args.archive, ".caidx", args.force)
        items = _items(args, flags)
        chunker = common.chunker_from(args)
        store: WriteStore | None = None
        if args.stores:
            store = common.write_store(common.single_store_location(args), args, digest, lock="shared",
                                       command="tar")
        try:
            with common.show_progress("Chunking", 0) as prog:
                index = archive.archive_index(items, flags, chunker, digest, store, workers=common.cpu_workers(args),
                                              progress=prog)
            common.save_index(args.archive, index, args)  # under the store lock: no prune in between
        finally:
            if store is not None:
                store.close()
        return 0
    targets.check_archive_target(args.archive, args.force)
    archive.write_catar(args.archive, _items(args, flags, slices=True))
    return 0


def _events(args: argparse.Namespace, location: str, progress_label: str = "",
            seed_stats: TreeSeedStats | None = None) -> tuple[Iterator[Node | DirEnd], Store | None, Progress | None]:
    """Decoded events of a catar file or archive index, the store and the progress to close.

    With ``progress_label``, an archive index's bytes are shown as they are fetched; with
    ``seed_stats``, the ``--seed`` trees are offered before the store and the sources counted.
    """
    seeds: list[str] = getattr(args, "seeds", [])
    if args.index or location.endswith(".caidx") or targets.is_index_file(location):
        index = common.load_index(location, args)
        if not ff.describes_archive(index.flags) and not location.endswith(".caidx"):
            raise UsageError(f"{location} is a blob index (.caibx): use 'desync extract' to rebuild its file")
        store = common.read_store(args, index.digest)
        try:
            tree_seeds = _tree_seeds(seeds, index, common.cpu_workers(args))
            progress = common.show_progress(progress_label, index.length) if progress_label else None
        except BaseException:
            store.close()
            raise
        return (archive.index_events(index, store, args.workers, progress, tree_seeds, seed_stats), store,
                progress)
    return archive.catar_events(location), None, None


def _tree_seeds(dirs: list[str], index: Index, workers: int) -> list[TreeSeed]:
    """Each --seed directory encoded and chunked like ``index`` (progress shows the bytes read)."""
    found: list[TreeSeed] = []
    if not dirs:
        return found
    from ..ops.treeseed import TreeSeed

    for d in dirs:
        with common.show_progress(f"Chunking seed {d}", 0) as prog:
            found.append(TreeSeed(d, index, workers, prog))
    return found


def run_untar(args: argparse.Namespace) -> int:
    stats: TreeSeedStats | None = None
    if args.print_stats:
        from ..ops.treeseed import TreeSeedStats

        stats = TreeSeedStats()
    events, store, prog = _events(args, args.archive, "Extracting", stats)
    seed_files: SeedFiles | None = None
    try:
        if args.output_format == "disk":
            if args.target == "-":
                raise UsageError("extracting to disk needs a directory (use --output-format gnu-tar for stdout)")
            if args.seeds:
                from ..catar.seedfiles import SeedFiles

                seed_files = SeedFiles(args.seeds, args.reflink, args.hardlink == "yes")
            archive.extract_to_disk(events, args.target, same_owner=not args.no_same_owner,
                                    same_permissions=not args.no_same_permissions,
                                    xattrs=not args.no_xattrs, on_warning=common.warn, delete=args.delete,
                                    seed_files=seed_files)
        else:
            if args.delete:
                raise UsageError("--delete needs --output-format disk")
            archive.write_tar(events, args.target, "gnu" if args.output_format == "gnu-tar" else "pax",
                              on_warning=common.warn)
    finally:
        if prog is not None:
            prog.finish()
        if store is not None:
            store.close()
    if stats is not None:
        sys.stderr.write(f"Chunks from seeds: {stats.seed_chunks}\nBytes from seeds: {stats.seed_bytes}\n"
                         f"Chunks from the store: {stats.store_chunks}\nBytes from the store: {stats.store_bytes}\n"
                         f"Stale seed chunks: {stats.stale_chunks}\n")
        if seed_files is not None:
            shared = seed_files.stats
            sys.stderr.write(f"Files cloned from seeds: {shared.cloned_files}\nBytes cloned from seeds: "
                             f"{shared.cloned_bytes}\nFiles hardlinked from seeds: {shared.hardlinked_files}\n"
                             f"Bytes hardlinked from seeds: {shared.hardlinked_bytes}\n")
    return 0


def _listing(args: argparse.Namespace) -> tuple[Iterator[Node | DirEnd], Store | None]:
    if not args.index and args.input != "-" and os.path.isdir(args.input):
        from ..catar.encoder import EncodeOptions
        from ..catar.mtree import directory_events

        flags = archive_flags(args, digest_mod.by_name(args.digest))
        return directory_events(args.input, flags, EncodeOptions(excludes=args.exclude)), None
    events, store, _ = _events(args, args.input)
    return events, store


def _print(lines: Iterator[str]) -> None:
    out = sys.stdout
    for line in lines:
        out.write(line + "\n")
    out.flush()


def run_mtree(args: argparse.Namespace) -> int:
    from ..catar.mtree import mtree_lines

    events, store = _listing(args)
    try:
        _print(mtree_lines(events))
    finally:
        if store is not None:
            store.close()
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ..catar.mtree import list_lines

    events, store = _listing(args)
    try:
        _print(list_lines(events))
    finally:
        if store is not None:
            store.close()
    return 0
