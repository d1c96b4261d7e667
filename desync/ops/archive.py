"""Archive operations: a directory or tar stream as a catar or an archive index, and back.

What ``tar``, ``untar``, ``mtree`` and ``list`` do, as functions of paths,
stores and streams (``-`` is stdin or stdout); the CLI parses its
arguments and calls these.  The catar format itself is :mod:`desync.catar`.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO

from .. import digest as digest_mod
from .. import featureflags as ff
from .. import fsutil
from ..catar.decoder import DirEnd, Node, decode
from ..catar.format import resolve_flags
from ..errors import DesyncError, InvalidArgument
from ..rawio import BlockSource

# Each command needs one direction: the encoder, chunker and store writers are imported by the
# functions that archive, the extractor by those that extract, so neither pays the other's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..catar.encoder import FileSlice
    from ..catar.extract import TreeExtractStats
    from ..catar.model import UidShift
    from ..catar.seedfiles import SeedFiles
    from ..chunker import Chunker
    from ..digest import Digest
    from ..index import Index
    from ..progress import Progress
    from ..stores.base import Store
    from ..stores.capabilities import WriteStore
    from .treeseed import TreeSeed, TreeSeedStats

Events = Iterator[Node | DirEnd]


def archive_flags(with_features: Sequence[str], without_features: Sequence[str], digest: Digest, *,
                  exclude_nodump: bool = True, exclude_file: bool = True, exclude_submounts: bool = False) -> int:
    """The feature flags of a new archive: casync's ``--with``/``--without`` rules, else the Go desync's set."""
    sha = digest is digest_mod.SHA512_256_DIGEST
    if with_features or without_features:
        return resolve_flags(with_features, without_features, exclude_nodump=exclude_nodump,
                             exclude_file=exclude_file, exclude_submounts=exclude_submounts, sha512_256=sha)
    flags = ff.DESYNC_TAR_FLAGS & ~ff.POLICY_MASK
    flags |= ff.EXCLUDE_NODUMP if exclude_nodump else 0
    flags |= ff.EXCLUDE_FILE if exclude_file else 0
    flags |= ff.EXCLUDE_SUBMOUNTS if exclude_submounts else 0
    flags |= ff.SHA512_256 if sha else 0
    return ff.normalize(flags)


def open_input(path: str) -> IO[bytes]:
    """A file to read, or stdin for ``-``."""
    if path == "-":
        return fsutil.stdin_binary()
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DesyncError(f"cannot open {path}: {exc.strerror}") from None


def archive_items(source: str, flags: int, *, tar_input: bool = False, excludes: Sequence[str] = (),
                  slices: bool = False, zero_times: bool = False, add_root: bool = False,
                  uid_shift: UidShift | None = None,
                  on_entry: Callable[[bytes, bool], None] | None = None) -> Iterator[bytes | FileSlice]:
    """The catar of the directory ``source`` (or of the tar stream ``source`` with ``tar_input``).

    With ``slices``, larger files' contents stay in the files (see encode_items).  ``zero_times``
    stores every mtime as 0 (``--no-time``); ``add_root`` gives a tar stream's tree a fresh root
    directory (``--tar-add-root``).  ``uid_shift`` stores owners shifted (casync's ``--uid-shift``).
    ``on_entry`` follows a directory's walk (see :class:`~desync.catar.EncodeOptions`).
    """
    from ..catar.encoder import INLINE_LIMIT, EncodeOptions, encode_items
    from ..catar.tarconv import tar_to_catar

    if add_root and not tar_input:
        raise InvalidArgument("--tar-add-root works only with --input-format tar")
    if tar_input:
        f = open_input(source)
        try:
            yield from tar_to_catar(f, flags, zero_times=zero_times, add_root=add_root)
        finally:
            if source != "-":
                f.close()
        return
    if not os.path.isdir(source):
        raise DesyncError(f"{source} is not a directory")
    yield from encode_items(source, flags, EncodeOptions(excludes=list(excludes), zero_times=zero_times,
                                                         uid_shift=uid_shift, on_entry=on_entry),
                            inline_limit=INLINE_LIMIT if slices else -1)


def archive_bytes(items: Iterable[bytes | FileSlice]) -> Iterator[bytes]:
    """The archive as plain byte pieces, file slices read in."""
    for item in items:
        yield item if isinstance(item, bytes) else item.read_all()


def write_catar(target: str, items: Iterator[bytes | FileSlice]) -> None:
    """Write an archive to the file ``target`` (atomically) or to stdout for ``-``."""
    from ..catar.output import write_archive

    if target == "-":
        sys.stdout.flush()
        write_archive(sys.stdout.buffer.fileno(), items)
        return
    fsutil.replace_user_file(target, lambda fd: write_archive(fd, items))


def archive_index(items: Iterator[bytes | FileSlice], flags: int, chunker: Chunker, digest: Digest,
                  store: WriteStore | None, *, workers: int, progress: Progress | None = None) -> Index:
    """The ``tar -i`` pipeline: the archive chunked into an archive index, its chunks stored in ``store``."""
    from .make import MakeStats, chunk_stream

    return chunk_stream(archive_bytes(items), chunker, digest, store, workers=workers, flags=flags,
                        progress=progress, stats=MakeStats())


def index_blocks(index: Index, store: Store, workers: int, progress: Progress | None = None,
                 tree_seeds: Sequence[TreeSeed] = (), seed_stats: TreeSeedStats | None = None) -> BlockSource:
    """The byte stream an index describes, in order: from the seed trees where they have a chunk, else ``store``.

    ``seed_stats`` counts where the chunks came from.
    """
    blocks: Iterator[bytes]
    if tree_seeds or seed_stats is not None:
        from .treeseed import SeededChunks

        blocks = SeededChunks(index, list(tree_seeds), store, workers, seed_stats).blocks()
    else:
        from ..parallel import ordered_map

        blocks = ordered_map(lambda c: store.get_chunk(c.id, c.size).data(c.size), index.chunks, workers)
    return BlockSource(blocks if progress is None else _counted(blocks, progress))


def _counted(blocks: Iterator[bytes], progress: Progress) -> Iterator[bytes]:
    for block in blocks:
        progress.add(len(block))
        yield block


def index_events(index: Index, store: Store, workers: int, progress: Progress | None = None,
                 tree_seeds: Sequence[TreeSeed] = (), seed_stats: TreeSeedStats | None = None) -> Events:
    """The decoded entries of an archive index, its chunks taken from the seed trees or fetched from ``store``."""
    source = io.BufferedReader(index_blocks(index, store, workers, progress, tree_seeds, seed_stats), 1 << 20)
    return decode(source, expected_flags=index.flags)


def catar_events(path: str) -> Events:
    """The decoded entries of a catar file (stdin for ``-``)."""
    return decode(open_input(path))


def extract_to_disk(events: Events, target: str, *, same_owner: bool = True, same_permissions: bool = True,
                    xattrs: bool = True,
                    on_warning: Callable[[str], None] | None = None, delete: bool = False,
                    seed_files: SeedFiles | None = None, uid_shift: UidShift | None = None,
                    undo_immutable: bool = False, punch_holes: bool = False,
                    stats: TreeExtractStats | None = None) -> None:
    """Extract the entries into the directory ``target``; without ``xattrs`` no xattrs, ACLs or capabilities.

    ``delete`` removes what the archive does not have (an existing target
    updated in place); ``seed_files`` lends file contents from seed trees.
    casync's options: ``uid_shift`` maps owners, ``undo_immutable`` clears
    chattr +i where an entry must be replaced, ``punch_holes`` leaves runs
    of zeros as holes (counted in ``stats``).
    """
    from ..catar.extract import ExtractOptions, extract_events

    opts = ExtractOptions(no_same_owner=not same_owner, no_same_permissions=not same_permissions,
                          on_warning=on_warning, delete=delete, seed_files=seed_files, uid_shift=uid_shift,
                          undo_immutable=undo_immutable, punch_holes=punch_holes, stats=stats)
    if not xattrs:
        opts.xattrs = opts.acls = opts.fcaps = opts.selinux = False
    extract_events(events, target, opts)


def write_tar(events: Events, target: str, fmt: str, on_warning: Callable[[str], None] | None = None) -> None:
    """The entries as a ``gnu`` or ``pax`` tar stream, to the file ``target`` (atomically) or stdout for ``-``."""
    from ..catar.tarconv import catar_to_tar

    if target == "-":
        catar_to_tar(events, sys.stdout.buffer, fmt, on_warning=on_warning)
        sys.stdout.buffer.flush()
        return

    def produce(fd: int) -> None:
        with open(fd, "wb", closefd=False) as out:
            catar_to_tar(events, out, fmt, on_warning=on_warning)

    fsutil.replace_user_file(target, produce)
