"""Rebuild a blob from its index and stores (``desync extract``).

Without in-place mode the blob is assembled in a temp file beside the
target and renamed over it only when complete, so a failed or interrupted
extract never leaves a half-written target; the data is synced before the
rename, so not even a power loss can (see tempnames for how leftovers of
killed runs are removed by the next extract to the same target).  Each distinct chunk is fetched
once and written to every offset it occurs at; all-zero chunks are left as
holes in the fresh (sparse) temp file.
"""

import os
import stat
import threading
from bisect import bisect_right
from collections.abc import Callable

from ..errors import DesyncError
from .. import tempnames
from ..fsutil import adopt_attributes, has_zero_run, pwrite_all, pwrite_many, pwrite_sparse, resolve_target, \
    sync_directory, zero_runs
from ..index import Index
from ..progress import Progress
from ..stores.base import Store
from ..parallel import ordered_map, run_all
from ..reflink import RangeCopier, SourceEnded, block_size, punch_hole
from .seed import SeedSet


# Distinct chunks per worker job: enough to batch the store's I/O, few enough to spread the work.
BATCH = 16
# In-place updates stage old bytes of the output that a later write would clobber: in memory up to this much,
# then in a temp file beside the output.
STAGE_MEMORY = 256 << 20


_STAT_NAMES = ("chunks", "fetched", "skipped_in_place", "zero", "seed_chunks", "seed_invalid", "bytes_kept",
               "bytes_seed_cloned", "bytes_seed_copied", "bytes_self_cloned", "bytes_self_copied", "bytes_zero",
               "bytes_staged", "bytes_store")


class ExtractStats:
    """What an extract did, counted by its workers (a plain class: dataclasses cost start-up time)."""

    def __init__(self) -> None:
        self.chunks = 0
        self.fetched = 0
        self.skipped_in_place = 0
        self.zero = 0
        self.seed_chunks = 0
        self.seed_invalid = 0
        self.bytes_kept = 0
        self.bytes_seed_cloned = 0
        self.bytes_seed_copied = 0
        self.bytes_self_cloned = 0
        self.bytes_self_copied = 0
        self.bytes_zero = 0
        self.bytes_staged = 0
        self.bytes_store = 0

    def add(self, other: "ExtractStats") -> None:
        for name in _STAT_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def __repr__(self) -> str:
        return "ExtractStats(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in _STAT_NAMES) + ")"


def _group(index: Index) -> dict[bytes, tuple[int, list[int]]]:
    """Chunk ID -> (size, offsets), in first-occurrence order."""
    groups: dict[bytes, tuple[int, list[int]]] = {}
    for c in index.chunks:
        entry = groups.get(c.id)
        if entry is None:
            groups[c.id] = (c.size, [c.start])
        else:
            entry[1].append(c.start)
    return groups


def write_chunks(fd: int, index: Index, store: Store | None, *, workers: int, fresh: bool,
                 progress: Progress | None = None, stats: ExtractStats | None = None,
                 seeds: SeedSet | None = None, copier: RangeCopier | None = None,
                 output_identity: tuple[int, int] = (0, 0), punch: bool = False,
                 holes: bool | None = None) -> None:
    """Write every chunk of ``index`` into ``fd`` at its offsets.

    ``fresh`` means the file is new and sparse (zero chunks need no write);
    otherwise existing content that already matches a chunk is kept, and
    with ``punch`` zero chunks become holes.  Each chunk is taken from the
    first place that has it: the output itself (kept), the seeds (verified
    copies), the store; further occurrences are copied from the first.
    ``output_identity`` names the output file when it is also a seed:
    its old bytes are then staged before anything can overwrite them.
    ``holes`` is casync's ``--punch-holes``: True leaves every run of zeros
    (``fsutil.HOLE_MIN`` bytes or more) as a hole, False writes even
    all-zero chunks; None (the default) leaves all-zero chunks as holes.
    """
    plan = _Plan(fd, index, store, fresh, progress, seeds or SeedSet(), copier or RangeCopier("auto"),
                 punch, holes)
    try:
        plan.stage_output_seed(output_identity, workers)
        items = [(cid, size, offsets) for cid, (size, offsets) in plan.groups.items()]
        run_all(plan.work, [items[i:i + BATCH] for i in range(0, len(items), BATCH)], workers)
    finally:
        plan.close()
    if stats is not None:
        stats.add(plan.counters)
        stats.chunks = len(index.chunks)


class _Plan:
    """The shared state of one extraction: seeds, staged bytes, counters."""

    def __init__(self, fd: int, index: Index, store: Store | None, fresh: bool, progress: Progress | None,
                 seeds: SeedSet, copier: RangeCopier, punch: bool, holes: bool | None = None) -> None:
        self.fd = fd
        self.index = index
        self.store = store
        self.fresh = fresh
        self.progress = progress
        self.seeds = seeds
        self.copier = copier
        self.punch = punch
        self.holes = holes
        self.digest = index.digest
        self.groups = _group(index)
        self.block = block_size(fd)
        # The "null chunk": a max-size run of zeros, common in disk images.
        self.null_id = self.digest.sum(bytes(index.max_size)) if index.length >= index.max_size else b""
        self.counters = ExtractStats()
        self.lock = threading.Lock()
        self.seed_fds: list[int] = []
        self.staged: dict[bytes, bytes] = {}
        self.spilled: dict[bytes, int] = {}
        self.spill_fd = -1
        for seed in seeds.seeds:
            try:
                self.seed_fds.append(os.open(seed.path, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as exc:
                self.close()
                raise DesyncError(f"cannot open seed {seed.path}: {exc.strerror}") from None

    def close(self) -> None:
        for sfd in self.seed_fds:
            os.close(sfd)
        self.seed_fds = []
        if self.spill_fd >= 0:
            os.close(self.spill_fd)
            self.spill_fd = -1

    def count(self, **amounts: int) -> None:
        with self.lock:
            for name, n in amounts.items():
                setattr(self.counters, name, getattr(self.counters, name) + n)

    def stage_output_seed(self, identity: tuple[int, int], workers: int) -> None:
        """Read now what the output holds of other chunks where a write would clobber it.

        Destinations that will be written are those where the output's own
        index has another chunk; a seed range of the output overlapping one
        of them is read (and verified) before any write, so swapped, chained
        and cyclic moves all see the old bytes.  Ranges nothing overwrites
        stay ordinary seed locations.
        """
        numbers = [n for n, s in enumerate(self.seeds.seeds) if identity != (0, 0) and s.identity == identity]
        if not numbers:
            return
        own = set(numbers)
        old_at = {c.start: c.id for n in numbers for c in self.seeds.seeds[n].index.chunks}
        starts = [c.start for c in self.index.chunks]
        written = [old_at.get(c.start) != c.id for c in self.index.chunks]

        def clobbered(start: int, end: int) -> bool:
            i = max(bisect_right(starts, start) - 1, 0)
            while i < len(starts) and starts[i] < end:
                if written[i] and self.index.chunks[i].end > start:
                    return True
                i += 1
            return False

        wanted: list[tuple[bytes, int, int]] = []
        for cid, places in self.seeds.where.items():
            if cid not in self.groups:
                continue
            keep = [(n, c) for n, c in places if n not in own or not clobbered(c.start, c.end)]
            risky = [(n, c) for n, c in places if n in own and clobbered(c.start, c.end)]
            if risky and not keep:
                wanted.append((cid, self.seed_fds[risky[0][0]], risky[0][1].start))
            self.seeds.where[cid] = keep
        budget = STAGE_MEMORY

        def read(item: tuple[bytes, int, int]) -> tuple[bytes, bytes]:
            cid, sfd, start = item
            data = os.pread(sfd, self.groups[cid][0], start)
            return cid, data if self.digest.sum(data) == cid else b""

        results = ordered_map(read, wanted, workers)
        try:
            for cid, data in results:
                if not data:
                    self.count(seed_invalid=1)
                    continue
                self.count(bytes_staged=len(data))
                if len(data) <= budget:
                    budget -= len(data)
                    self.staged[cid] = data
                    continue
                if self.spill_fd < 0:
                    self.spill_fd = _anonymous_file()
                at = os.lseek(self.spill_fd, 0, os.SEEK_END)
                pwrite_all(self.spill_fd, data, at)
                self.spilled[cid] = at
        finally:
            results.close()

    def work(self, batch: list[tuple[bytes, int, list[int]]]) -> None:
        fetch: list[tuple[bytes, int, list[int]]] = []
        for chunk_id, size, offsets in batch:
            todo = offsets
            if not self.fresh:
                todo = [o for o in offsets if not _matches(self.fd, o, size, chunk_id, self.digest.sum)]
                if len(todo) < len(offsets):
                    self.count(skipped_in_place=len(offsets) - len(todo),
                               bytes_kept=size * (len(offsets) - len(todo)))
            if not todo:
                continue
            if chunk_id == self.null_id and size == self.index.max_size:
                self.zeros(size, todo)
                continue
            data = self.from_local(chunk_id, size, todo[0])
            if data is None:
                fetch.append((chunk_id, size, todo))
            else:
                self.replicate(data, todo)
        if fetch:
            if self.store is None:
                cid = fetch[0][0]
                raise DesyncError(f"chunk {cid.hex()} is in no seed and no store was given (use -s STORE)")
            chunks = self.store.get_chunks([(chunk_id, size) for chunk_id, size, _ in fetch])
            # One pwrite_many for the batch (the C helper releases the GIL once); clones need the first copy
            # on disk, so they come after it.
            pieces: list[tuple[bytes, int]] = []
            clones: list[tuple[bytes, list[int]]] = []
            fetched_bytes = 0
            for (chunk_id, size, todo), chunk in zip(fetch, chunks):
                data = chunk.data(size)
                if len(data) != size:
                    raise DesyncError(f"chunk {chunk_id.hex()} is {len(data)} bytes, index says {size}")
                fetched_bytes += size
                # Both ends first: a full scan for zeros only where it can succeed (the hot path skips it).
                if data[0] == 0 and data[-1] == 0 and data.count(0) == size:
                    self.zeros(size, todo, fetched=True)
                    continue
                if self.holes and has_zero_run(data):
                    for off in todo:
                        self.sparse(data, off)
                    continue
                pieces.append((data, todo[0]))
                if len(todo) > 1:
                    if self.copier.may_clone(self.fd) and size >= 2 * self.block:
                        clones.append((data, todo))
                    else:
                        pieces.extend((data, off) for off in todo[1:])
                        self.count(bytes_self_copied=size * (len(todo) - 1))
            pwrite_many(self.fd, pieces)
            # Counted once per batch: each count takes the lock and sets the counters by name.
            self.count(fetched=len(fetch), bytes_store=fetched_bytes)
            for data, todo in clones:
                self.replicate(data, todo)
        if self.progress is not None:
            self.progress.add(sum(size * len(offsets) for _, size, offsets in batch))

    def zeros(self, size: int, todo: list[int], fetched: bool = False) -> None:
        """A chunk of zeros: a hole in a fresh file, punched (or written) in an existing one.

        With ``holes`` False (``--punch-holes=no``) the zeros are written, so the file has no holes.
        """
        if self.holes is False:
            self.count(zero=len(todo))
            for off in todo:
                pwrite_all(self.fd, bytes(size), off)
            return
        self.count(zero=len(todo), bytes_zero=size * (len(todo) - 1 if fetched else len(todo)))
        if self.fresh:
            return
        for off in todo:
            if not (self.punch and punch_hole(self.fd, off, size)):
                pwrite_all(self.fd, bytes(size), off)

    def sparse(self, data: bytes, off: int) -> None:
        """Write a chunk at ``off`` with its runs of zeros as holes (``--punch-holes``)."""
        if self.fresh:
            self.count(bytes_zero=pwrite_sparse(self.fd, data, off))
            return
        pos = 0
        view = memoryview(data)
        for start, end in zero_runs(view):
            if start > pos:
                pwrite_all(self.fd, view[pos:start], off + pos)
            if punch_hole(self.fd, off + start, end - start):
                self.count(bytes_zero=end - start)
            else:
                pwrite_all(self.fd, view[start:end], off + start)
            pos = end
        if pos < len(view):
            pwrite_all(self.fd, view[pos:], off + pos)

    def from_local(self, chunk_id: bytes, size: int, dest: int) -> bytes | None:
        """Put the chunk at ``dest`` from staged bytes or a seed; its bytes, or None when no seed has them."""
        data = self.staged.get(chunk_id)
        if data is not None:
            pwrite_all(self.fd, data, dest)
            self.count(seed_chunks=1, bytes_seed_copied=size)
            return data
        at = self.spilled.get(chunk_id)
        if at is not None:
            self.copier.copy(self.spill_fd, at, self.fd, dest, size, self.block)
            staged = self._verified(chunk_id, size, dest)
            if staged is not None:
                self.count(seed_chunks=1, bytes_seed_copied=size)
                return staged
        for number, c in self.seeds.where.get(chunk_id, ()):
            if c.size != size:
                continue
            try:
                done = self.copier.copy(self.seed_fds[number], c.start, self.fd, dest, size, self.block)
            except SourceEnded:
                self.count(seed_invalid=1)
                continue
            data = self._verified(chunk_id, size, dest)
            if data is None:
                self.count(seed_invalid=1)
                continue
            self.count(seed_chunks=1, bytes_seed_cloned=done.cloned, bytes_seed_copied=done.copied)
            return data
        return None

    def _verified(self, chunk_id: bytes, size: int, dest: int) -> bytes | None:
        data = os.pread(self.fd, size, dest)
        return data if len(data) == size and self.digest.sum(data) == chunk_id else None

    def replicate(self, data: bytes, todo: list[int]) -> None:
        """Further occurrences of a chunk already at ``todo[0]``: cloned from there where aligned, else written."""
        first = todo[0]
        size = len(data)
        for off in todo[1:]:
            if self.copier.may_clone(self.fd) and off % self.block == first % self.block and size >= 2 * self.block:
                done = self.copier.copy(self.fd, first, self.fd, off, size, self.block)
                self.count(bytes_self_cloned=done.cloned, bytes_self_copied=done.copied)
            else:
                pwrite_all(self.fd, data, off)
                self.count(bytes_self_copied=size)


def _matches(fd: int, offset: int, size: int, chunk_id: bytes, digest_sum: Callable[[bytes], bytes]) -> bool:
    try:
        data = os.pread(fd, size, offset)
    except OSError:
        return False
    return len(data) == size and digest_sum(data) == chunk_id


def _anonymous_file() -> int:
    """A temp file for staged bytes, unlinked at once so nothing is left behind."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="desync-stage-")
    os.unlink(path)
    return fd


def extract_blob(index: Index, store: Store | None, target: str, *, in_place: bool = False, workers: int = 4,
                 progress: Progress | None = None, stats: ExtractStats | None = None,
                 seeds: SeedSet | None = None, copier: RangeCopier | None = None,
                 holes: bool | None = None) -> None:
    """Assemble the blob of ``index`` at ``target`` (``-`` is not a valid target; use cat).

    ``store`` may be None when the seeds are expected to hold every chunk.

    An existing target keeps its permission bits and, where the caller may
    set it, its owner; a symlink is kept and the file it points at is
    replaced (see :func:`desync.fsutil.resolve_target`).  A new file gets
    the default mode (0666 less the umask).  ``holes``: see :func:`write_chunks`.
    """
    try:
        target, st = resolve_target(target)
    except OSError as exc:
        raise DesyncError(f"cannot access {target}: {exc.strerror}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise DesyncError(f"{target} is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        in_place = True  # block devices and the like cannot be replaced by a rename
    if in_place:
        _extract_in_place(index, store, target, st, workers, progress, stats, seeds, copier, holes)
        return
    tempnames.sweep_beside(target)
    tmp = tempnames.temp_beside(target)
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise DesyncError(f"cannot create {tmp}: {exc.strerror}") from None
    try:
        try:
            if st is not None:
                adopt_attributes(fd, st)
            os.ftruncate(fd, index.length)
            write_chunks(fd, index, store, workers=workers, fresh=True, progress=progress, stats=stats,
                         seeds=seeds, copier=copier, holes=holes)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, target)
        sync_directory(os.path.dirname(tmp))
    except BaseException as failure:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(failure, OSError):
            raise DesyncError(f"cannot write {target}: {failure.strerror}") from None
        raise


def _extract_in_place(index: Index, store: Store | None, target: str, st: os.stat_result | None, workers: int,
                      progress: Progress | None, stats: ExtractStats | None, seeds: SeedSet | None,
                      copier: RangeCopier | None, holes: bool | None = None) -> None:
    try:
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise DesyncError(f"cannot open {target}: {exc.strerror}") from None
    try:
        regular = st is None or stat.S_ISREG(st.st_mode)
        identity = (st.st_dev, st.st_ino) if st is not None else (0, 0)
        own_seed = seeds is not None and any(s.identity == identity for s in seeds.seeds)
        # Shrink only at the end when the output is also a seed: its tail may hold chunks still to be moved.
        if regular and (st is None or st.st_size > index.length) and not own_seed:
            os.ftruncate(fd, index.length)
        write_chunks(fd, index, store, workers=workers, fresh=st is None, progress=progress, stats=stats,
                     seeds=seeds, copier=copier, output_identity=identity, punch=regular and holes is not False,
                     holes=holes if regular else False)
        if regular:
            os.ftruncate(fd, index.length)
    except OSError as exc:
        raise DesyncError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        os.close(fd)
