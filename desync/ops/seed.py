"""Blob seeds: local files whose chunks are reused instead of fetched.

A seed is a file (or block device) plus an index of it.  The index is a
``.caibx`` given with ``--seed INDEX[:FILE]`` or ``--seed-dir``, or, for a
plain file, device or directory with no index (casync's ``--seed=PATH``),
made on the spot by chunking the file with the chunk sizes of the index
being extracted, so its boundaries line up with the wanted chunks (one read
of the seed).  An indexed seed is checked against its index before use, as
the Go desync does: a file changed since indexing is an error naming the
seed, skipped with ``--skip-invalid-seeds``, or re-chunked with
``--regenerate-invalid-seeds``.  Bytes taken from a seed are verified
against the chunk ID again when used, so a seed changing during the run
costs a store fetch, never wrong output.
"""

import os
import stat
from collections.abc import Callable, Iterator

from ..chunk import Chunk
from ..chunker import Chunker
from ..digest import Digest
from ..errors import DesyncError
from ..fsutil import regular_files, write_file_atomic
from ..index import Index, IndexChunk
from ..ops.make import make_blob_index
from ..parallel import ordered_map
from ..progress import Progress
from ..stores.indexes import read_index
from ..stores.base import Store, StoreOptions

INDEX_SUFFIX = ".caibx"


class InvalidSeed(DesyncError):
    """A seed's file does not match its index (and neither skipping nor regenerating was asked for)."""


class SeedFile:
    """One seed: the file and the chunks it holds (start, size, id).

    The records here are plain classes: every extract loads this module, and
    the dataclass machinery costs more start-up time than a small extract.
    """

    __slots__ = ("path", "index", "identity")

    def __init__(self, path: str, index: Index, identity: tuple[int, int] = (0, 0)) -> None:
        self.path = path
        self.index = index
        self.identity = identity  # (st_dev, st_ino) of the file, to recognise the output itself


class SeedOptions:
    __slots__ = ("skip_invalid", "regenerate_invalid", "workers", "warn", "progress", "validate")

    def __init__(self, skip_invalid: bool = False, regenerate_invalid: bool = False, workers: int = 2,
                 warn: Callable[[str], None] | None = None, progress: Progress | None = None,
                 validate: bool = True) -> None:
        self.skip_invalid = skip_invalid
        self.regenerate_invalid = regenerate_invalid
        self.workers = workers
        self.warn = warn
        self.progress = progress
        # info trusts seed indexes as the Go desync does; extract checks each seed file against its index.
        self.validate = validate


class SeedSet:
    """Where each chunk ID can be found in the seeds: ID -> [(seed number, chunk)]."""

    __slots__ = ("seeds", "where")

    def __init__(self) -> None:
        self.seeds: list[SeedFile] = []
        self.where: dict[bytes, list[tuple[int, IndexChunk]]] = {}

    def add(self, seed: SeedFile, wanted: set[bytes] | None = None) -> None:
        number = len(self.seeds)
        self.seeds.append(seed)
        for c in seed.index.chunks:
            if wanted is not None and c.id not in wanted:
                continue
            self.where.setdefault(c.id, []).append((number, c))

    def __len__(self) -> int:
        return len(self.seeds)


def split_spec(spec: str) -> tuple[str, str]:
    """``INDEX[:FILE]`` -> (index path or "", file path); a spec without an index names the file itself.

    FILE defaults to INDEX without its extension.  A plain path whose name
    does not end in .caibx is a seed without an index, unless ``PATH.caibx``
    lies beside it.
    """
    head, sep, tail = spec.partition(":")
    if sep and head.endswith(INDEX_SUFFIX) and tail:
        return head, tail
    if spec.endswith(INDEX_SUFFIX):
        return spec, spec[:-len(INDEX_SUFFIX)]
    if os.path.isfile(spec + INDEX_SUFFIX):
        return spec + INDEX_SUFFIX, spec
    return "", spec


def dir_specs(directory: str) -> list[str]:
    """``--seed-dir``: every ``*.caibx`` in DIR, each with the file of the same name without the extension."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise DesyncError(f"cannot read seed directory {directory}: {exc.strerror}") from None
    return [os.path.join(directory, n) for n in names if n.endswith(INDEX_SUFFIX)]


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def load_seeds(specs: list[str], seed_dirs: list[str], target: Index, store_options: StoreOptions,
               options: SeedOptions) -> SeedSet:
    """Open, check or chunk every seed given on the command line."""
    seeds = SeedSet()
    wanted = {c.id for c in target.chunks}
    chunker = Chunker(target.min_size, target.avg_size, target.max_size)
    indexed: list[tuple[str, str]] = []
    plain: list[str] = []
    for spec in list(specs) + [p for d in seed_dirs for p in dir_specs(d)]:
        index_path, file_path = split_spec(spec)
        if index_path:
            indexed.append((index_path, file_path))
        elif os.path.isdir(file_path):
            plain.extend(os.fsdecode(path) for path, _ in regular_files(os.fsencode(file_path), ordered=True))
        else:
            plain.append(file_path)
    for index_path, file_path in indexed:
        seed = _indexed_seed(index_path, file_path, target, chunker, store_options, options)
        if seed is not None:
            seeds.add(seed, wanted)
    for file_path in plain:
        try:
            seeds.add(chunk_seed(file_path, target.digest, chunker, options), wanted)
        except InvalidSeed as unusable:
            if not options.skip_invalid:
                raise
            if options.warn is not None:
                options.warn(f"skipping seed {file_path}: {unusable}")
    return seeds


def chunk_seed(path: str, digest: Digest, chunker: Chunker, options: SeedOptions) -> SeedFile:
    """A seed without an index: chunk it now with the target's chunk sizes."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidSeed(f"cannot open seed {path}: {exc.strerror}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InvalidSeed(f"seed {path} is not a file, block device or directory")
    index = make_blob_index(path, chunker, digest, None, workers=options.workers, progress=options.progress)
    return SeedFile(path, index, (st.st_dev, st.st_ino))


def _indexed_seed(index_path: str, file_path: str, target: Index, chunker: Chunker, store_options: StoreOptions,
                  options: SeedOptions) -> SeedFile | None:
    index = read_index(index_path, store_options)
    if index.digest.name != target.digest.name:
        raise DesyncError(f"seed index {index_path} uses {index.digest.name}, the index to extract "
                          f"{target.digest.name}")
    problem = check_seed(file_path, index, options.workers) if options.validate else ""
    if not problem:
        try:
            return SeedFile(file_path, index, _identity(file_path))
        except OSError as exc:
            raise DesyncError(f"cannot open seed {file_path}: {exc.strerror}") from None
    if options.regenerate_invalid and os.path.exists(file_path):
        if options.warn is not None:
            options.warn(f"seed {file_path} does not match {index_path} ({problem}): re-chunking it")
        sized = Chunker(index.min_size, index.avg_size, index.max_size)
        fresh = make_blob_index(file_path, sized, index.digest, None, workers=options.workers,
                                progress=options.progress)
        try:
            write_file_atomic(index_path, fresh.to_bytes())
        except OSError as exc:
            if options.warn is not None:
                options.warn(f"cannot rewrite seed index {index_path}: {exc.strerror}")
        return SeedFile(file_path, fresh, _identity(file_path))
    if options.skip_invalid:
        if options.warn is not None:
            options.warn(f"skipping seed {file_path}: {problem}")
        return None
    raise InvalidSeed(f"seed {file_path} does not match its index {index_path}: {problem} "
                      f"(use --skip-invalid-seeds or --regenerate-invalid-seeds)")


def check_seed(path: str, index: Index, workers: int) -> str:
    """Why ``path`` does not match ``index`` ("" when it does): its size, or the first chunk that differs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot open it: {exc.strerror}"
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size != index.length:
            return f"it is {size} bytes, the index describes {index.length}"
        digest = index.digest

        def matches(c: IndexChunk) -> bool:
            return digest.sum(os.pread(fd, c.size, c.start)) == c.id

        results = ordered_map(matches, index.chunks, workers)
        try:
            for c, ok in zip(index.chunks, results):
                if not ok:
                    return f"chunk at offset {c.start} has changed"
        finally:
            results.close()
        return ""
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    finally:
        os.close(fd)


class SeededStore(Store):
    """Chunks from the seeds (read and verified) first, then from ``backend``; for streaming readers (cat).

    The cache behind ``backend`` only ever sees store fetches: seed bytes
    never reach it.
    """

    def __init__(self, seeds: SeedSet, backend: Store | None, digest: Digest) -> None:
        self.seeds = seeds
        self.backend = backend
        self.digest = digest
        self.location = f"seeds, then {backend}" if backend is not None else "seeds"
        self._fds: list[int] = []
        try:
            for seed in seeds.seeds:
                self._fds.append(os.open(seed.path, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as exc:
            self.close()
            raise DesyncError(f"cannot open seed {seed.path}: {exc.strerror}") from None

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        for number, c in self.seeds.where.get(chunk_id, ()):
            try:
                data = os.pread(self._fds[number], c.size, c.start)
            except OSError:
                continue
            if self.digest.sum(data) == chunk_id:
                return Chunk(chunk_id, data=data, origin=self.seeds.seeds[number].path)
        if self.backend is None:
            raise DesyncError(f"chunk {chunk_id.hex()} is in no seed and no store was given (use -s STORE)")
        return self.backend.get_chunk(chunk_id, size_hint)

    def has_chunk(self, chunk_id: bytes) -> bool:
        return chunk_id in self.seeds.where or (self.backend is not None and self.backend.has_chunk(chunk_id))

    def iter_chunks(self) -> Iterator[bytes]:
        return iter(list(self.seeds.where))

    @property
    def parallelism(self) -> int:
        return self.backend.parallelism if self.backend is not None else os.cpu_count() or 1

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        if self.backend is not None:
            self.backend.close()
