"""The verbs of casync's command line (see :mod:`desync.cli.casync_cli`), written against the library.

Which operation a verb runs follows casync: ``--what``, else the suffix of
the file named (``.catar`` archive, ``.caidx`` archive index, ``.caibx``
blob index), else the kind of the local file (a directory, a regular file
or block device).  An index's chunks live in ``--store``, else
``$CASYNC_STORE``, else ``default.castr`` beside the index.  Output lines
(list, mtree, stat, digest, and the ``-v`` report on stderr) are casync's.
"""

import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Final

from .. import featureflags as ff
from ..catar.decoder import DirEnd, Node, decode
from ..catar.encoder import EncodeOptions
from ..catar.extract import TreeExtractStats
from ..catar.format import resolve_flags
from ..catar.fsread import read_projid
from ..catar.model import UidShift
from ..catar.mtree import directory_events, escape, list_lines, mode_string, mtree_lines
from ..catar.seedfiles import SeedFiles
from ..chunker import Chunker, validate_chunk_sizes
from ..digest import SHA512_256_DIGEST, Digest, with_digest_flag
from ..errors import ChunkMissing, DesyncError, UsageError
from ..index import Index
from ..ops import archive
from ..ops import casync as cs
from ..ops.extract import ExtractStats, extract_blob
from ..ops.make import MakeStats, chunk_file, chunk_stream
from ..ops.seed import SeedOptions, SeedSet, load_seeds
from ..ops.treeseed import TreeSeed, TreeSeedStats
from ..protocol.files import parse_ssh_path, push_archive, push_index, with_last_component
from ..reflink import RangeCopier
from ..stores import PrunableStore, Store, StoreOptions, WriteStore
from ..stores.indexes import write_index
from .casync_cli import LOG_DEBUG, LOG_INFO, LOG_WARNING, CasyncOptions

WORKERS: Final = max(2, min(10, os.cpu_count() or 2))
_ARCHIVE: Final = "archive"
_ARCHIVE_INDEX: Final = "archive-index"
_BLOB: Final = "blob"
_BLOB_INDEX: Final = "blob-index"
_DIRECTORY: Final = "directory"
_BY_SUFFIX: Final = {".catar": _ARCHIVE, ".caidx": _ARCHIVE_INDEX, ".caibx": _BLOB_INDEX}


# ---------------------------------------------------------------- shared


_SPIN_MARKS: Final = "-\\|/"
_SPIN_INTERVAL: Final = 0.25


class Spinner:
    """casync -v's progress mark on stderr: ``-``, ``\\``, ``|``, ``/`` in turn, each followed by a backspace.

    The first mark comes when the work starts, then one at most every
    quarter second while it runs.  Report lines and marks share a lock, so
    a mark never lands inside a line.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.turn = 0
        self.last = 0.0
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def line(self, text: str) -> None:
        with self.lock:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def tick(self) -> None:
        with self.lock:
            now = time.monotonic()
            if self.last and now - self.last < _SPIN_INTERVAL:
                return
            sys.stderr.write(_SPIN_MARKS[self.turn % len(_SPIN_MARKS)] + "\b")
            sys.stderr.flush()
            self.turn += 1
            self.last = now

    def start(self) -> None:
        self.tick()
        if self.thread is None:
            self.done.clear()
            self.thread = threading.Thread(target=self._run, name="casync-progress", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(_SPIN_INTERVAL):
            self.tick()

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join(1.0)
            self.thread = None


SPINNER: Final = Spinner()


def _info(opts: CasyncOptions, line: str) -> None:
    """A line of -v's report; casync logs these at level info, so --log-level below info hides them."""
    if opts.verbose and opts.log_level >= LOG_INFO:
        SPINNER.line(line)


def _debug(opts: CasyncOptions, line: str) -> None:
    if opts.log_level >= LOG_DEBUG:
        SPINNER.line(line)


def _progress(opts: CasyncOptions) -> None:
    """Start -v's progress mark (shown whatever the log level, as casync's)."""
    if opts.verbose:
        SPINNER.start()


def failed(opts: CasyncOptions, failure: DesyncError) -> None:
    """What casync logs at debug level before the error a verb ends with."""
    if isinstance(failure, ChunkMissing):
        _debug(opts, "Failed to acquire chunk: No such file or directory")


_TIMESPAN_UNITS: Final = (("y", 31557600_000000), ("month", 2629800_000000), ("w", 604800_000000),
                          ("d", 86400_000000), ("h", 3600_000000), ("min", 60_000000), ("s", 1_000000),
                          ("ms", 1000), ("us", 1))


def format_timespan(usec: int, accuracy: int = 1000) -> str:
    """A duration as casync (systemd) prints it: ``538us``, ``5ms``, ``2.128s``, ``1min 3.250s``, ``0``."""
    if usec <= 0:
        return "0"
    parts: list[str] = []
    left = usec
    for suffix, unit in _TIMESPAN_UNITS:
        if left <= 0 or (left < accuracy and parts):
            break
        if left < unit:
            continue
        whole, rest = divmod(left, unit)
        if left < 60_000000 and rest > 0:
            # Under a minute the rest is a decimal fraction, cut to the accuracy.
            digits = 0
            scale = unit
            while scale > 1:
                digits += 1
                scale //= 10
            scale = accuracy
            while scale > 1:
                rest //= 10
                digits -= 1
                scale //= 10
            if digits > 0:
                parts.append(f"{whole}.{rest:0{digits}d}{suffix}")
                break
        parts.append(f"{whole}{suffix}")
        left = left % unit
    return " ".join(parts)


def _elapsed_usec(since: float) -> int:
    return int((time.monotonic() - since) * 1_000_000)


class _Entries:
    """casync -v's per-entry lines (``Packing a`` ... ``Packed a``); ``first`` runs after the first line."""

    def __init__(self, opts: CasyncOptions, starting: str, finished: str, first: Callable[[], None]) -> None:
        self.opts = opts
        self.starting = starting
        self.finished = finished
        self.first: Callable[[], None] | None = first

    def __call__(self, path: bytes, starting: bool) -> None:
        name = os.fsdecode(path) if path and path != b"." else "./"
        _info(self.opts, f"{self.starting if starting else self.finished} {name}")
        if self.first is not None:
            first, self.first = self.first, None
            first()

    def events(self, events: Iterator[Node | DirEnd]) -> Iterator[Node | DirEnd]:
        """Pass decoded entries through, telling each start and (once written) end."""
        leaf: bytes | None = None
        for ev in events:
            if leaf is not None:
                self(leaf, False)
                leaf = None
            if isinstance(ev, Node):
                path = b"/".join(ev.path)
                self(path, True)
                if not ev.meta.is_dir:
                    leaf = path
            else:
                self(b"/".join(ev.path), False)
            yield ev
        if leaf is not None:
            self(leaf, False)


def _strip_file_url(location: str) -> str:
    return location[len("file://"):] if location.startswith("file://") else location


def _suffix_what(location: str) -> str:
    path = location.split("?", 1)[0]
    for suffix, what in _BY_SUFFIX.items():
        if path.endswith(suffix):
            return what
    return ""


def format_bytes(n: int) -> str:
    """casync's (systemd's) byte count: ``645B``, ``1.5K``, ``12.0M``."""
    for exp, suffix in ((6, "E"), (5, "P"), (4, "T"), (3, "G"), (2, "M"), (1, "K")):
        factor = 1 << (10 * exp)
        if n >= factor:
            return f"{n // factor}.{(n * 10 // factor) % 10}{suffix}"
    return f"{n}B"


def feature_names(flags: int) -> str:
    """casync's list of the single ``--with`` features set in ``flags`` (``none`` when empty)."""
    single = {bits: name for name, bits in reversed(list(ff.NAMES.items())) if bits & (bits - 1) == 0}
    names = [single[1 << i] for i in range(64) if flags & (1 << i) and (1 << i) in single]
    return " ".join(names) or "none"


def _archive_flags(opts: CasyncOptions) -> int:
    return resolve_flags(opts.with_features, opts.without_features, exclude_nodump=opts.exclude_nodump,
                         exclude_file=opts.exclude_file, exclude_submounts=opts.exclude_submounts,
                         sha512_256=opts.digest is SHA512_256_DIGEST)


def _blob_flags(opts: CasyncOptions) -> int:
    flags = ff.EXCLUDE_NODUMP if opts.exclude_nodump else 0
    flags |= ff.EXCLUDE_SUBMOUNTS if opts.exclude_submounts else 0
    flags |= ff.EXCLUDE_FILE if opts.exclude_file else 0
    return with_digest_flag(flags, opts.digest)


def _print_flags(opts: CasyncOptions, flags: int) -> None:
    _info(opts, f"Using feature flags: {feature_names(flags & ff.WITH_MASK)}")
    _info(opts, f"Excluding files and directories with chattr(1) -d flag: {_yes(flags & ff.EXCLUDE_NODUMP)}")
    _info(opts, f"Excluding submounts: {_yes(flags & ff.EXCLUDE_SUBMOUNTS)}")
    _info(opts, f"Excluding files and directories listed in .caexclude: {_yes(flags & ff.EXCLUDE_FILE)}")
    _info(opts, f"Digest algorithm: {opts.digest.name}")


def _uid_shift(opts: CasyncOptions) -> UidShift | None:
    """``--uid-shift``/``--uid-range`` as the library takes them (None: owners as they are)."""
    return UidShift(opts.uid_shift, opts.uid_range) if opts.uid_shift_apply else None


def _yes(value: int) -> str:
    return "yes" if value else "no"


def _chunker(opts: CasyncOptions) -> Chunker:
    lo, avg, hi = opts.chunk_sizes()
    validate_chunk_sizes(lo, avg, hi)
    _info(opts, f"Selected chunk sizes: min={lo}..avg={avg}..max={hi}")
    return Chunker(lo, avg, hi)


def _store_options(opts: CasyncOptions, digest: Digest | None = None) -> StoreOptions:
    return StoreOptions(digest=digest or opts.digest, workers=WORKERS, compression=opts.compression,
                        rate_limit=opts.rate_limit)


def default_store(opts: CasyncOptions, index_location: str | None) -> str:
    """``--store``, else ``$CASYNC_STORE``, else ``default.castr`` beside the index (or here)."""
    if opts.store:
        return opts.store
    env = os.environ.get("CASYNC_STORE")
    if env:
        return env
    if index_location and index_location != "-":
        return with_last_component(index_location, "default.castr")
    return "default.castr"


def _read_store(opts: CasyncOptions, index_location: str | None, digest: Digest) -> Store:
    locations = [default_store(opts, index_location), *opts.extra_stores]
    return cs.chain_stores(locations, _store_options(opts, digest))


def _write_store(opts: CasyncOptions, location: str) -> WriteStore:
    options = _store_options(opts)
    store = cs.open_store(location, options, writable=True)
    if not isinstance(store, WriteStore):
        store.close()
        raise UsageError(f"store {location} cannot be written to (a local directory, or host:/path as part of "
                         f"'make host:/path.caidx')")
    return store


def _stat_input(location: str | None) -> os.stat_result:
    try:
        return os.fstat(0) if location is None else os.stat(location)
    except OSError as exc:
        raise DesyncError(f"failed to open {location or 'standard input'}: {exc.strerror}") from None


def _index(opts: CasyncOptions, location: str) -> Index:
    return cs.load_index(location, _store_options(opts))


# ---------------------------------------------------------------- make


def verb_make(opts: CasyncOptions, args: list[str]) -> int:
    if len(args) > 2:
        raise UsageError("a pair of output and input path/URL expected")
    output = _strip_file_url(args[0]) if args else None
    source = _strip_file_url(args[1]) if len(args) > 1 else None
    what = {_ARCHIVE: _ARCHIVE, _ARCHIVE_INDEX: _ARCHIVE_INDEX, _BLOB_INDEX: _BLOB_INDEX}.get(opts.what, "")
    if opts.what and not what:
        raise UsageError('"make" operation may only be combined with --what=archive, --what=archive-index or '
                         '--what=blob-index')
    if not what and output and output != "-":
        what = _suffix_what(output)
        if not what:
            raise UsageError("file to create does not have a valid suffix, refusing (may be one of: .catar, "
                             ".caidx, .caibx)")
    if not source and what in (_ARCHIVE, _ARCHIVE_INDEX):
        source = "."
    if source == "-":
        source = None
    if source is not None and not cs.is_local(source):
        raise UsageError(f"input must be a local path: {source}")
    st = _stat_input(source)
    if stat.S_ISDIR(st.st_mode):
        what = what or _ARCHIVE
        if what == _BLOB_INDEX:
            raise UsageError("input is a directory, but attempted to make a blob index; refusing")
        if source is None:
            raise UsageError("a directory to archive cannot come from standard input")
    elif stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode):
        what = what or _BLOB_INDEX
        if what != _BLOB_INDEX:
            raise UsageError("input is a regular file or block device, but attempted to make a directory "
                             "archive; refusing")
    else:
        raise UsageError("input is neither a directory, a regular file, nor a block device; refusing")
    if output == "-":
        output = None
    if output is not None and cs.is_url(output):
        raise UsageError(f"output must be a local path or host:/path: {output}")
    if what == _BLOB_INDEX and (opts.cache or opts.cache_auto):
        raise UsageError("caching is only supported when archiving file trees")
    # casync reports the chunk sizes for every make, the feature flags once the walk has started.
    chunker = _chunker(opts)
    if what == _ARCHIVE:
        flags = _archive_flags(opts)
        assert source is not None
        digest, length = _make_archive(opts, source, output, flags)
        _info(opts, f"Selected feature flags: {feature_names(flags & ff.WITH_MASK)}")
        _info(opts, f"Archive size: {format_bytes(length)}")
        _print_digest(digest)
        return 0
    flags = _archive_flags(opts) if what == _ARCHIVE_INDEX else _blob_flags(opts)
    if what == _BLOB_INDEX:
        _print_flags(opts, flags)
        _progress(opts)
    store_location = default_store(opts, output)
    stats = MakeStats()
    index_digest, length = _make_index(opts, what, source, output, store_location, flags, chunker, stats)
    _info(opts, f"Selected feature flags: {feature_names(flags & ff.WITH_MASK)}")
    if what == _BLOB_INDEX:
        # A blob selects no archive features, so none can be missing from the file system.
        _info(opts, "Selected feature flags not actually applicable to backing file systems: none")
    _info(opts, f"Archive size: {format_bytes(length)}")
    _info(opts, f"Number of chunks: {stats.chunks}")
    reused = stats.chunks - stats.stored
    share = f" ({reused * 100 // stats.chunks}%)" if stats.chunks else ""
    _info(opts, f"Reused (non-cached) chunks: {reused}{share}")
    if stats.chunks:
        _info(opts, f"Effective average chunk size: {format_bytes(length // stats.chunks)}")
    if index_digest is not None:
        _print_digest(index_digest)
    return 0


def _print_digest(digest: bytes) -> None:
    sys.stdout.write(digest.hex() + "\n")
    sys.stdout.flush()


def _tree_items(opts: CasyncOptions, source: str, flags: int) -> Iterator[bytes]:
    """The archive of ``source``, with -v's Packing/Packed lines (and the flags after the first) as it is walked."""
    def first() -> None:
        _print_flags(opts, flags)
        _progress(opts)

    entries = _Entries(opts, "Packing", "Packed", first) if opts.verbose else None
    return archive.archive_bytes(archive.archive_items(source, flags, uid_shift=_uid_shift(opts), on_entry=entries))


def _make_archive(opts: CasyncOptions, source: str, output: str | None, flags: int) -> tuple[bytes, int]:
    """Write the archive; (its digest, its length)."""
    pieces = cs.HashingPieces(_tree_items(opts, source, flags), opts.digest)
    remote = parse_ssh_path(output) if output else None
    if remote is not None:
        push_archive(remote, iter(pieces), opts.rate_limit)
    else:
        archive.write_catar(output or "-", iter(pieces))
    return pieces.digest(), pieces.length


def _make_index(opts: CasyncOptions, what: str, source: str | None, output: str | None, store_location: str,
                flags: int, chunker: Chunker, stats: MakeStats) -> tuple[bytes | None, int]:
    """Chunk the tree or blob into the store and write the index; (the digest casync prints, its length)."""
    remote = parse_ssh_path(output) if output else None
    remote_store = ""
    staging = ""
    if remote is not None:
        # The chunks go to the remote store with the index, in one push session: stage them here first.
        target = parse_ssh_path(store_location)
        if target is None or target.host != remote.host:
            raise UsageError(f"the store of {output} must be on the same host (host:/path), not {store_location}")
        remote_store = target.path
        staging = tempfile.mkdtemp(prefix=".casync-push-")
        store_location = os.path.join(staging, "store")
    cache = _tree_cache(opts, source, what)
    try:
        store = _write_store(opts, store_location)
        with store:
            digest: bytes | None
            if what == _ARCHIVE_INDEX:
                assert source is not None
                index = cache.lookup(store) if cache is not None else None
                if index is not None:
                    _print_flags(opts, flags)
                    stats.chunks = len(index.chunks)
                    digest = None
                else:
                    pieces = cs.HashingPieces(_tree_items(opts, source, flags), opts.digest)
                    index = chunk_stream(pieces, chunker, opts.digest, store, workers=WORKERS, flags=flags,
                                         stats=stats)
                    digest = pieces.digest() if cache is None else None
                    if cache is not None:
                        cache.save(index)
            else:
                reader = cs.HashingReader(_open_blob(source), opts.digest)
                try:
                    index = chunk_file(reader, chunker, opts.digest, store,  # type: ignore[arg-type]
                                       workers=WORKERS, flags=flags, stats=stats)
                finally:
                    reader.close()
                digest = reader.digest()
            if remote is not None:
                local = store

                def stored(chunk_id: bytes) -> tuple[bytes, bool]:
                    chunk = local.get_chunk(chunk_id)
                    return chunk.stored_form(False), True

                push_index(remote, remote_store, index.to_bytes(), stored, opts.rate_limit)
            else:
                write_index(output or "-", index, _store_options(opts))
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    return digest, index.length


def _open_blob(source: str | None) -> IO[bytes]:
    if source is None:
        return os.fdopen(os.dup(0), "rb", buffering=0)
    try:
        return open(source, "rb", buffering=0)
    except OSError as exc:
        raise DesyncError(f"failed to open {source}: {exc.strerror}") from None


def _tree_cache(opts: CasyncOptions, source: str | None, what: str) -> "cs.TreeCache | None":
    if what != _ARCHIVE_INDEX or not (opts.cache or opts.cache_auto):
        return None
    assert source is not None
    path = opts.cache or os.path.join(source, ".cacac")
    lo, avg, hi = opts.chunk_sizes()
    return cs.TreeCache(path, source, _archive_flags(opts), (lo, avg, hi), opts.digest, _uid_shift(opts))


# ---------------------------------------------------------------- extract


def verb_extract(opts: CasyncOptions, args: list[str]) -> int:
    if len(args) > 3:
        raise UsageError("input path/URL, output path, and subtree path expected")
    source = _strip_file_url(args[0]) if args else None
    output = _strip_file_url(args[1]) if len(args) > 1 else None
    seek = cs.split_seek(args[2]) if len(args) > 2 else ()
    what = {_ARCHIVE: _ARCHIVE, _ARCHIVE_INDEX: _ARCHIVE_INDEX, _BLOB_INDEX: _BLOB_INDEX}.get(opts.what, "")
    if opts.what and not what:
        raise UsageError('"extract" operation may only be combined with --what=archive, --what=archive-index, '
                         '--what=blob-index')
    if not what and source and source != "-":
        what = _suffix_what(source)
        if not what:
            raise UsageError("file to read from does not have a valid suffix, refusing (may be one of: .catar, "
                             ".caidx, .caibx)")
    if source in (None, "-"):
        source = "-"
    if not output and what in (_ARCHIVE, _ARCHIVE_INDEX):
        output = "."
    if output == "-":
        output = None
    if output is not None:
        if not cs.is_local(output):
            raise UsageError(f"output must be a local path: {output}")
        try:
            st: os.stat_result | None = os.stat(output)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise DesyncError(f"failed to open {output}: {exc.strerror}") from None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                what = what or _ARCHIVE_INDEX
                if what == _BLOB_INDEX:
                    raise UsageError("output is a directory, but attempted to extract a blob index; refusing")
            elif stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode):
                what = what or _BLOB_INDEX
                if what != _BLOB_INDEX:
                    raise UsageError("output is a regular file or block device, but attempted to extract an "
                                     "archive")
            else:
                raise UsageError("output is neither a directory, a regular file, nor a block device; refusing")
    if not what:
        raise UsageError("couldn't figure out what to extract; refusing (use --what=archive, "
                         "--what=archive-index or --what=blob-index)")
    if seek and what == _BLOB_INDEX:
        raise UsageError("subtree path only supported when extracting archive or archive index")
    # casync names no feature flags for a blob; for a tree it does after the first entry's line.
    started = time.monotonic()
    _progress(opts)
    if what == _BLOB_INDEX:
        _extract_blob(opts, source, output, started)
    else:
        assert output is not None
        _extract_tree(opts, what, source, output, seek, started)
    return 0


def _extract_blob(opts: CasyncOptions, source: str, output: str | None, started: float) -> None:
    index = _index(opts, source)
    if ff.describes_archive(index.flags):
        raise UsageError(f"{source} is an archive index, not a blob index")
    with _read_store(opts, source, index.digest) as store:
        if output is None:
            from ..ops.cat import cat

            cat(index, store, sys.stdout.buffer, workers=WORKERS)
            sys.stdout.buffer.flush()
            return
        specs = list(opts.seeds)
        if opts.seed_output and os.path.isfile(output) and os.path.getsize(output) > 0:
            specs.append(output)
        seeding = time.monotonic()
        _seed_chunk_sizes(opts, index, len(specs))
        seeds = load_seeds(specs, [], index, _store_options(opts, index.digest),
                           SeedOptions(skip_invalid=True, workers=WORKERS)) if specs else SeedSet()
        seed_usec = _elapsed_usec(seeding) if specs else 0
        stats = ExtractStats()
        decoding = time.monotonic()
        extract_blob(index, store, output, workers=WORKERS, stats=stats, seeds=seeds,
                     copier=RangeCopier("auto" if opts.reflink else "no"), holes=opts.punch_holes)
        decode_usec = _elapsed_usec(decoding)
    _info(opts, f"Zero bytes written as sparse files: {format_bytes(stats.bytes_zero)}")
    _info(opts, f"Bytes cloned through reflinks: {format_bytes(stats.bytes_seed_cloned + stats.bytes_self_cloned)}")
    seeded = stats.bytes_seed_cloned + stats.bytes_seed_copied + stats.bytes_self_cloned + stats.bytes_self_copied
    _report_sources(opts, _remote_store(opts, source), stats.fetched, stats.bytes_store, stats.seed_chunks, seeded)
    total_usec = _elapsed_usec(started)
    _info(opts, f"Time spent seeding: {format_timespan(seed_usec)} ({_pct(seed_usec, total_usec)}%)")
    _info(opts, f"Time spent decoding: {format_timespan(decode_usec)} ({_pct(decode_usec, total_usec)}%)")
    _info(opts, f"Total extract time: {format_timespan(total_usec)}")


def _seed_chunk_sizes(opts: CasyncOptions, index: Index, seeds: int) -> None:
    """casync's debug line for each seed it chunks, with the index's chunk sizes."""
    for _ in range(seeds):
        _debug(opts, f"Setting min/avg/max chunk size: {index.min_size} / {index.avg_size} / {index.max_size}")


def _remote_store(opts: CasyncOptions, index_location: str) -> bool:
    """Whether the chunks come from a remote store (ssh or http), which casync reports apart from local ones."""
    return not cs.is_local(default_store(opts, index_location))


def _pct(n: int, total: int) -> int:
    return n * 100 // total if total > 0 else 0


def _report_sources(opts: CasyncOptions, remote: bool, store_chunks: int, store_bytes: int, seed_chunks: int,
                    seed_bytes: int) -> None:
    total_chunks = store_chunks + seed_chunks
    total_bytes = store_bytes + seed_bytes
    local_chunks, local_bytes = (0, 0) if remote else (store_chunks, store_bytes)
    remote_chunks, remote_bytes = (store_chunks, store_bytes) if remote else (0, 0)
    _info(opts, f"Chunk requests fulfilled from local store: {local_chunks} ({_pct(local_chunks, total_chunks)}%)")
    _info(opts, f"Bytes used from local store: {format_bytes(local_bytes)} ({_pct(local_bytes, total_bytes)}%)")
    _info(opts, f"Chunk requests fulfilled from local seed: {seed_chunks} ({_pct(seed_chunks, total_chunks)}%)")
    _info(opts, f"Bytes used from local seed: {format_bytes(seed_bytes)} ({_pct(seed_bytes, total_bytes)}%)")
    _info(opts, f"Chunk requests fulfilled from remote store: {remote_chunks} "
                f"({_pct(remote_chunks, total_chunks)}%)")
    _info(opts, f"Bytes used from remote store: {format_bytes(remote_bytes)} ({_pct(remote_bytes, total_bytes)}%)")


def _tree_events(opts: CasyncOptions, what: str, source: str, seeds: list[str] = (),  # type: ignore[assignment]
                 seed_stats: TreeSeedStats | None = None) -> tuple[Iterator[Node | DirEnd], Store | None]:
    """The decoded entries of an archive or archive index (and the store to close afterwards)."""
    if what == _ARCHIVE:
        return decode(cs.open_archive(source, _store_options(opts))), None
    index = _index(opts, source)
    if not ff.describes_archive(index.flags):
        raise UsageError(f"{source} is a blob index, not an archive index")
    store = _read_store(opts, source, index.digest)
    try:
        _seed_chunk_sizes(opts, index, len(seeds))
        tree_seeds = [TreeSeed(d, index, WORKERS) for d in seeds]
    except BaseException:
        store.close()
        raise
    return archive.index_events(index, store, WORKERS, None, tree_seeds, seed_stats), store


def _extract_tree(opts: CasyncOptions, what: str, source: str, output: str, seek: tuple[bytes, ...],
                  started: float) -> None:
    seed_dirs = [s for s in opts.seeds if os.path.isdir(s)]
    index_seeds = list(seed_dirs)
    if opts.seed_output and what == _ARCHIVE_INDEX and not seek and os.path.isdir(output):
        index_seeds.append(output)
    stats = TreeSeedStats()
    tree_stats = TreeExtractStats()
    seeding = time.monotonic()
    events, store = _tree_events(opts, what, source, index_seeds if what == _ARCHIVE_INDEX else [], stats)
    seed_usec = _elapsed_usec(seeding) if what == _ARCHIVE_INDEX and index_seeds else 0
    try:
        target = output
        if opts.verbose:
            entries = _Entries(opts, "Extracting", "Extracted", lambda: _print_flags(opts, _archive_flags(opts)))
            events = entries.events(cs.subtree(events, seek) if seek else events)
        if seek:
            os.makedirs(output, exist_ok=True)
            target = os.path.join(output, os.fsdecode(seek[-1]))
            events = cs.rerooted(events, seek)
        seed_files = SeedFiles(seed_dirs, "auto" if opts.reflink else "no", opts.hardlink) if seed_dirs else None
        archive.extract_to_disk(events, target, on_warning=_warner(opts), delete=opts.delete, seed_files=seed_files,
                                uid_shift=_uid_shift(opts), undo_immutable=opts.undo_immutable,
                                punch_holes=opts.punch_holes, stats=tree_stats)
    finally:
        if store is not None:
            store.close()
    _info(opts, f"Zero bytes written as sparse files: {format_bytes(tree_stats.hole_bytes)}")
    cloned = seed_files.stats.cloned_bytes if seed_files is not None else 0
    _info(opts, f"Bytes cloned through reflinks: {format_bytes(cloned)}")
    if opts.hardlink and seed_files is not None:
        _info(opts, f"Bytes cloned through hardlinks: {format_bytes(seed_files.stats.hardlinked_bytes)}")
    remote = what == _ARCHIVE_INDEX and _remote_store(opts, source)
    _report_sources(opts, remote, stats.store_chunks, stats.store_bytes, stats.seed_chunks, stats.seed_bytes)
    total_usec = _elapsed_usec(started)
    _info(opts, f"Time spent seeding: {format_timespan(seed_usec)} ({_pct(seed_usec, total_usec)}%)")
    _info(opts, f"Total extract time: {format_timespan(total_usec)}")


def _warner(opts: CasyncOptions) -> Callable[[str], None]:
    """Warnings on stderr, unless --log-level is below warning."""
    def warn(message: str) -> None:
        if opts.log_level >= LOG_WARNING:
            SPINNER.line(f"desync: warning: {message}")

    return warn


# ---------------------------------------------------------------- list, mtree, stat


def _listing_input(opts: CasyncOptions, verb: str, args: list[str],
                   kinds: tuple[str, ...]) -> tuple[str, str, tuple[bytes, ...]]:
    """(what, location, seek path) for list/mtree/stat/digest, decided as casync does."""
    if len(args) > 2:
        raise UsageError("input path/URL and subtree path expected")
    source = _strip_file_url(args[0]) if args else None
    seek = cs.split_seek(args[1]) if len(args) > 1 else ()
    what = opts.what if opts.what in kinds else ""
    if opts.what and not what:
        raise UsageError(f'"{verb}" operation may only be combined with --what={", --what=".join(kinds)}')
    if not what and source and source != "-":
        what = _suffix_what(source)
        if what not in kinds:
            what = ""
    if not source and what in ("", _DIRECTORY):
        source = "."
    if source is None or source == "-":
        source = "-"
        st: os.stat_result | None = _stat_input(None)
    elif cs.is_local(source):
        st = _stat_input(source)
    else:
        st = None
        if what == _DIRECTORY:
            raise UsageError(f"input must be a local path: {source}")
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            what = what or _DIRECTORY
            if what != _DIRECTORY:
                raise UsageError("input is a directory, but attempted to read it as an archive or index")
        elif stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode):
            if not what:
                if verb == "digest":
                    what = _ARCHIVE if seek else _BLOB
                elif source == "-":
                    what = _ARCHIVE
                else:
                    raise UsageError("input should be a directory, .catar or .caidx file; refusing")
            elif what == _DIRECTORY:
                raise UsageError("input is a regular file, but attempted to read it as a directory")
        else:
            raise UsageError("input is neither a file nor a directory; refusing")
    if not what:
        raise UsageError(f"failed to determine what to {verb}; use --what=")
    if seek and what not in (_ARCHIVE, _ARCHIVE_INDEX):
        raise UsageError("subtree path only supported with an archive or archive index")
    return what, source, seek


def _listing_events(opts: CasyncOptions, what: str, source: str) -> tuple[Iterator[Node | DirEnd], Store | None]:
    if what == _DIRECTORY:
        flags = _archive_flags(opts)
        _print_flags(opts, flags)
        return directory_events(source, flags, EncodeOptions()), None
    return _tree_events(opts, what, source)


def _selected(opts: CasyncOptions, events: Iterator[Node | DirEnd], seek: tuple[bytes, ...]) -> Iterator[Node | DirEnd]:
    if seek:
        events = cs.subtree(events, seek)
    if opts.recursive:
        return events
    return _top_level(events)


def _top_level(events: Iterator[Node | DirEnd]) -> Iterator[Node | DirEnd]:
    """The first entry and, for a directory, its immediate children (``--recursive=no``)."""
    depth = -1
    for ev in events:
        if depth < 0:
            depth = len(ev.path)
            yield ev
        elif isinstance(ev, Node) and len(ev.path) == depth + 1:
            yield ev


def _lines(opts: CasyncOptions, verb: str, args: list[str]) -> int:
    what, source, seek = _listing_input(opts, verb, args, (_ARCHIVE, _ARCHIVE_INDEX, _DIRECTORY))
    events, store = _listing_events(opts, what, source)
    try:
        selected = _selected(opts, events, seek)
        if verb == "list":
            lines: Iterator[str] = list_lines(selected)
        elif verb == "mtree":
            lines = mtree_lines(selected)
        else:
            lines = iter(_stat(opts, what, source, events, seek))
        out = sys.stdout
        for line in lines:
            out.write(line + "\n")
        out.flush()
    finally:
        if store is not None:
            store.close()
    return 0


def verb_list(opts: CasyncOptions, args: list[str]) -> int:
    return _lines(opts, "list", args)


def verb_mtree(opts: CasyncOptions, args: list[str]) -> int:
    return _lines(opts, "mtree", args)


def verb_stat(opts: CasyncOptions, args: list[str]) -> int:
    return _lines(opts, "stat", args)


def _stat(opts: CasyncOptions, what: str, source: str, events: Iterator[Node | DirEnd],
          seek: tuple[bytes, ...]) -> list[str]:
    """casync's ``stat``: the report of the one entry asked for (the top of the archive or directory)."""
    node = next((ev for ev in (cs.subtree(events, seek) if seek else events) if isinstance(ev, Node)), None)
    if node is None:
        raise DesyncError(f"{source}: empty archive")
    projid = None
    if what == _DIRECTORY and node.feature_flags & ff.WITH_QUOTA_PROJID:
        projid = read_projid(os.path.join(source, os.fsdecode(node.relpath)))
    return cs.stat_report(node, opts.digest, projid)


# ---------------------------------------------------------------- digest


def verb_digest(opts: CasyncOptions, args: list[str]) -> int:
    what, source, seek = _listing_input(opts, "digest", args,
                                        (_ARCHIVE, _ARCHIVE_INDEX, _BLOB, _BLOB_INDEX, _DIRECTORY))
    digest = opts.digest
    if what == _DIRECTORY:
        flags = _archive_flags(opts)
        _print_flags(opts, flags)
        value = cs.digest_stream(archive.archive_bytes(archive.archive_items(source, flags)), digest)
    elif what == _BLOB:
        _print_flags(opts, _blob_flags(opts))
        with cs.open_archive(source, _store_options(opts)) as f:
            value = cs.digest_stream(cs.file_pieces(f), digest)
    elif what == _BLOB_INDEX or (what == _ARCHIVE_INDEX and not seek):
        index = _index(opts, source)
        with _read_store(opts, source, index.digest) as store:
            value = cs.digest_stream(archive.index_blocks(index, store, WORKERS), digest)
    elif not seek:
        with cs.open_archive(source, _store_options(opts)) as f:
            value = cs.digest_stream(cs.file_pieces(f), digest)
    else:
        value = _subtree_digest(opts, what, source, seek)
    _print_digest(value)
    return 0


def _subtree_digest(opts: CasyncOptions, what: str, source: str, seek: tuple[bytes, ...]) -> bytes:
    """A file's contents digest, or a directory's archive digest, found by a first pass over the archive."""
    events, store = _tree_events(opts, what, source)
    try:
        node, start, end = cs.subtree_range(events, seek)
        if not node.meta.is_dir:
            if not stat.S_ISREG(node.meta.mode):
                raise DesyncError(f"path {args_path(seek)} does not refer to a file or directory")
            return cs.payload_digest(node, opts.digest)
    finally:
        if store is not None:
            store.close()
    if what == _ARCHIVE:
        with cs.open_archive(source, _store_options(opts)) as f:
            return cs.digest_stream(cs.file_pieces(f), opts.digest, start, end)
    index = _index(opts, source)
    with _read_store(opts, source, index.digest) as store2:
        return cs.digest_stream(archive.index_blocks(index, store2, WORKERS), opts.digest, start, end)


def args_path(seek: tuple[bytes, ...]) -> str:
    return os.fsdecode(b"/".join(seek))


# ---------------------------------------------------------------- mount


def verb_mount(opts: CasyncOptions, args: list[str]) -> int:
    from ..mount import fuselib
    from ..mount.blob import BlobReader
    from ..mount.fs import TreeFS
    from ..mount.source import FileSource
    from ..mount.tree import ArchiveTree

    if len(args) == 1:
        source, mountpoint = "-", args[0]
    elif len(args) == 2:
        source, mountpoint = _strip_file_url(args[0]), args[1]
    else:
        raise UsageError("an archive or archive index and a mount path expected")
    what = opts.what if opts.what in (_ARCHIVE, _ARCHIVE_INDEX) else _suffix_what(source)
    if what not in (_ARCHIVE, _ARCHIVE_INDEX):
        raise UsageError("mount needs an archive (.catar) or archive index (.caidx); use --what=")
    if opts.mkdir:
        os.makedirs(mountpoint, exist_ok=True)
    library = fuselib.load_library()
    fuselib.check_environment(mountpoint)
    store: Store | None = None
    reader: BlobReader | None = None
    file_source: FileSource | None = None
    try:
        if what == _ARCHIVE:
            if not cs.is_local(source) or source == "-":
                raise UsageError("mount reads a local archive file")
            file_source = FileSource(source)
            tree = ArchiveTree(file_source)
        else:
            index = _index(opts, source)
            store = _read_store(opts, source, index.digest)
            reader = BlobReader(index, store, workers=WORKERS)
            tree = ArchiveTree(reader, expected_flags=index.flags)
        _notify_when_mounted(mountpoint)
        fuselib.serve(library, TreeFS(tree), mountpoint, f"casync:{os.path.basename(source)}")
    finally:
        if file_source is not None:
            file_source.close()
        if reader is not None:
            reader.close()
        if store is not None:
            store.close()
    return 0


def _notify_when_mounted(mountpoint: str) -> None:
    """Tell a service manager (``$NOTIFY_SOCKET``) READY=1 once the mount is up, as casync does."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    from ..mount import fuselib

    def watch() -> None:
        for _ in range(600):
            if fuselib.is_mounted(mountpoint):
                notify(address, "READY=1")
                return
            time.sleep(0.05)

    threading.Thread(target=watch, name="casync-notify", daemon=True).start()


def notify(address: str, text: str) -> None:
    """One sd_notify datagram; an abstract socket is written ``@name``."""
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(target)
            s.send(text.encode())
    except OSError:
        pass


# ---------------------------------------------------------------- gc


def verb_gc(opts: CasyncOptions, args: list[str]) -> int:
    """casync's gc: remove the chunks none of the indexes names; its report lines on stdout."""
    if not args:
        raise UsageError("Expected at least one argument.")
    indexes = [_index(opts, _strip_file_url(location)) for location in args]
    location = default_store(opts, _strip_file_url(args[0]))
    store = cs.open_store(location, _store_options(opts, indexes[0].digest))
    if not isinstance(store, PrunableStore):
        store.close()
        raise UsageError(f"store {location} cannot be garbage collected (needs a local directory)")
    out = sys.stdout
    verb = "Would remove" if opts.dry_run else "Removing"

    def tell(chunk_id: bytes) -> None:
        if opts.verbose:
            out.write(f"{verb} chunk {chunk_id.hex()}.cacnk.\n")

    with store:
        if opts.verbose:
            refs = sum(len(i.chunks) for i in indexes)
            out.write(f"Chunk store usage: {refs} references, {len({c.id for i in indexes for c in i.chunks})} "
                      "chunks\n")
        result = cs.collect_garbage(store, indexes, opts.dry_run, tell)
    if opts.dry_run:
        out.write(f"Would remove {result.removed} chunks, {result.remaining} chunks remaining.\n")
    elif opts.verbose:
        out.write(f"Removed {result.removed} chunks, {result.directories} directories, {result.remaining} chunks "
                  "remaining.\n")
    out.flush()
    return 0
