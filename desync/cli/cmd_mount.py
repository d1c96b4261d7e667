"""mount-index: FUSE-mount a blob index as one read-only file, or an archive as a read-only tree.

A blob index (.caibx) appears as a single file named like the index
without its extension (as the Go desync names it); an archive index
(.caidx) or a catar file appears as the directory tree it holds.  Reads
fetch only the chunks they touch (see :mod:`desync.mount.blob`).  The
command stays in the foreground until the mount is unmounted (fusermount3
-u) or it gets SIGINT/SIGTERM, then unmounts and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from ..digest import Digest
from ..errors import DesyncError, UsageError
from ..mount import fuselib
from ..mount.blob import BlobReader
from ..mount.fs import BlobFS, MountOperations, TreeFS
from ..mount.source import FileSource
from ..mount.sparse import SparseFile
from ..mount.tree import ArchiveTree
from ..parallel import run_all
from ..stores import Store
from . import common, stopsignals

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Any


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    p = sub.add_parser("mount-index", help="FUSE-mount a blob index as a file, or an archive as a tree",
                       description="Mount the blob of INDEX read-only at MOUNTPOINT as one file named like the "
                                   "index without its extension; reads fetch only the chunks they need. An "
                                   "archive index (.caidx) or a catar file (.catar) is mounted as the directory "
                                   "tree it holds. Runs until unmounted (fusermount3 -u MOUNTPOINT) or "
                                   "interrupted (SIGINT/SIGTERM), then unmounts and exits 0. "
                                   "With --cor-file, chunks read are also written to that sparse file, which "
                                   "serves them from then on; --cor-state-save records which chunks it holds so "
                                   "a later mount can reuse it without the store.")
    common.add_store_options(p, cache=True)
    p.add_argument("--store-file", default="", metavar="FILE",
                   help='JSON file naming the stores and cache ({"stores": [...], "cache": "..."}) instead of '
                        "-s/-c; SIGHUP reloads it while mounted")
    p.add_argument("--cor-file", "--sparse-file", dest="cor_file", default="", metavar="FILE",
                   help="copy-on-read sparse file used as a persistent cache of the blob")
    p.add_argument("--cor-state-save", default="", metavar="FILE",
                   help="file recording which chunks the copy-on-read file holds (written on unmount and on SIGHUP)")
    p.add_argument("--cor-state-init", default="", metavar="FILE",
                   help="state file whose chunks are loaded into a new copy-on-read file in the background")
    p.add_argument("--cor-init-n", type=common.positive_int, default=10, metavar="N",
                   help="parallel loads for --cor-state-init (default 10)")
    p.add_argument("index", help="blob index (.caibx), archive index (.caidx) or catar file; '-' for stdin")
    p.add_argument("mountpoint", help="directory to mount on")
    p.set_defaults(func=run_mount_index)


def blob_file_name(location: str) -> str:
    """The Go desync's rule: the index's base name without its extension."""
    base = os.path.basename(location.rstrip("/")) or location
    stem, _ = os.path.splitext(base)
    return stem or base


def run_mount_index(args: argparse.Namespace) -> int:
    if (args.cor_state_save or args.cor_state_init) and not args.cor_file:
        raise UsageError("--cor-state-save and --cor-state-init need --cor-file")
    library = fuselib.load_library()
    fuselib.check_environment(args.mountpoint)
    teardown = _Teardown()
    if args.index.endswith(".catar"):
        if args.cor_file:
            raise UsageError("--cor-file needs an index; a catar file is read directly")
        source = FileSource(args.index)
        teardown.source = source
        try:
            ops: MountOperations = TreeFS(ArchiveTree(source))
            fuselib.serve(library, ops, args.mountpoint, f"desync:{os.path.basename(args.index)}", teardown)
        finally:
            teardown()
        return 0
    index = common.load_index(args.index, args)
    if args.store_file:
        if args.stores or args.cache:
            raise UsageError("use either --store-file or -s/-c, not both")
        locations, cache = common.stores_from_file(args.store_file)
        teardown.store = common.read_store(args, index.digest, locations=locations, cache_at=cache)
    else:
        teardown.store = common.read_store(args, index.digest)
    try:
        if args.cor_file:
            teardown.sparse = SparseFile(args.cor_file, index, args.cor_state_save, args.cor_state_init)
        reader = BlobReader(index, teardown.store, workers=common.cpu_workers(args, teardown.store),
                            sparse=teardown.sparse)
        teardown.reader = reader
        if teardown.sparse is not None and teardown.sparse.preload:
            teardown.preload = _start_preload(reader, teardown.sparse.preload, args.cor_init_n)
        if args.store_file or args.cor_state_save:
            stopsignals.on_hangup(lambda: _hangup(args, index.digest, teardown))
        name = blob_file_name(args.index)
        if args.index.endswith(".caidx"):
            ops = TreeFS(ArchiveTree(reader, expected_flags=index.flags))
        else:
            ops = BlobFS(reader, name)
        fuselib.serve(library, ops, args.mountpoint, f"desync:{name}", teardown)
    finally:
        teardown()
    return 0


def _hangup(args: argparse.Namespace, digest: Digest, teardown: "_Teardown") -> None:
    """SIGHUP: save the copy-on-read state, and take the stores afresh from the --store-file (as the Go tool does).

    A store file that cannot be read or opened leaves the current stores
    in place.  The old stores stay open: reads running on them finish.
    """
    if teardown.sparse is not None and args.cor_state_save:
        try:
            teardown.sparse.save_state()
            sys.stderr.write(f"desync: saved the copy-on-read state to {args.cor_state_save}\n")
        except DesyncError as failed:
            sys.stderr.write(f"desync: {failed}\n")
    if args.store_file and teardown.reader is not None:
        try:
            locations, cache = common.stores_from_file(args.store_file)
            store = common.read_store(args, digest, locations=locations, cache_at=cache)
        except DesyncError as failed:
            sys.stderr.write(f"desync: reload failed, keeping the current stores: {failed}\n")
        else:
            teardown.reader.store = store
            with teardown.lock:
                teardown.retired.append(teardown.store)
                teardown.store = store
            sys.stderr.write(f"desync: reloaded stores from {args.store_file}\n")
    sys.stderr.flush()


class _Teardown:
    """What ends a mount: stop fetching, save the copy-on-read state, close the store.

    Run once, by whichever comes first: the command after libfuse returns,
    or the unmount watch when libfuse does not (a read stuck in the store).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.source: FileSource | None = None
        self.store: Store | None = None
        self.retired: list[Store | None] = []  # stores replaced by a reload, closed at the end
        self.sparse: SparseFile | None = None
        self.reader: BlobReader | None = None
        self.preload: threading.Thread | None = None

    def __call__(self) -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
            try:
                if self.source is not None:
                    self.source.close()
                if self.reader is not None:
                    self.reader.close()
                if self.preload is not None:
                    self.preload.join(timeout=10.0)
                if self.sparse is not None:
                    try:
                        self.sparse.save_state()
                    finally:
                        self.sparse.close()
            finally:
                for store in [*self.retired, self.store]:
                    if store is not None:
                        store.close()


def _start_preload(reader: BlobReader, chunks: list[int], workers: int) -> threading.Thread:
    """Fill the copy-on-read file from an init state while the mount serves reads (as the Go tool does)."""
    thread = threading.Thread(target=run_all, args=(reader.preload, chunks, workers), daemon=True,
                              name="desync-preload")
    thread.start()
    return thread
