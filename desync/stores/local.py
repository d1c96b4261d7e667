"""A chunk store in a local directory: ``<dir>/<id[:4]>/<id>.cacnk`` (docs/layout.md 1).

Writes go to a temp file in the prefix directory and are renamed into
place, so readers and other writers (several processes may fill the same
store) only ever see complete chunks.  Reads accept every form casync
writes: zstd/xz/gzip ``.cacnk`` files and uncompressed files without suffix.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from .. import _accel, compression, fsutil, tempnames
from ..chunk import Chunk, verify_stored
from ..constants import CHUNK_SIZE_LIMIT, COMPRESSED_CHUNK_SUFFIX, ZSTD_LEVEL
from ..compression import stored_size_limit
from ..digest import Digest
from ..errors import ChunkInvalid, ChunkMissing, StoreError
from .base import Store, StoreOptions, put_each_missing, stored_chunk
from .layout import chunk_name, chunk_prefix, is_prefix_name, listed_chunk

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from collections.abc import Callable, Iterator
    from typing import Final, TypeVar

    _T = TypeVar("_T")

TMP_PREFIX: Final = ".tmp-cacnk"
LOCK_NAME: Final = ".desync-lock"
_PREFIX_ATTEMPTS: Final = 3


class LocalStore(Store):
    def __init__(self, path: str, options: StoreOptions, create: bool = False) -> None:
        self.path = path
        self.location = path
        self.options = options
        self.suffix = os.environ.get("CASYNC_COMPRESSED_CHUNK_SUFFIX", COMPRESSED_CHUNK_SUFFIX)
        self._lock_fd = -1
        self._written = False
        self._prefixes: set[str] = set()
        # Chunk paths are built by concatenation: os.path.join runs as interpreted code, per chunk.
        self._root = os.path.join(path, "")
        if create:
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create store {path}: {exc.strerror}") from None
        if not os.path.isdir(path):
            what = "is not a directory" if os.path.exists(path) else "does not exist"
            raise StoreError(f"store {path} {what}")

    def _paths(self, chunk_id: bytes) -> tuple[str, str]:
        """(preferred, fallback) file names: compressed first unless the store is uncompressed."""
        base = self._root + chunk_name(chunk_id, "")
        compressed = base + self.suffix
        if self.options.uncompressed:
            return base, compressed
        return compressed, base

    def _open_first(self, chunk_id: bytes, open_one: Callable[[str], _T]) -> tuple[_T, str]:
        """``open_one`` of the first of the chunk's files that exists, and that file's name."""
        for path in self._paths(chunk_id):
            try:
                return open_one(path), path
            except FileNotFoundError:
                continue
            except fsutil.UnreadableFile as unreadable:
                raise ChunkInvalid(chunk_id, self.path, str(unreadable)) from None
            except OSError as exc:
                raise StoreError(f"store {self.path}: cannot read chunk {chunk_id.hex()}: {exc.strerror}") from None
        raise ChunkMissing(chunk_id, self.path)

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        limit = stored_size_limit(size_hint)
        raw, path = self._open_first(chunk_id, lambda name: fsutil.read_regular(name, limit))
        return stored_chunk(self.options, chunk_id, raw, path.endswith(self.suffix), self.path, size_hint,
                            origin=self.path)

    def check_chunk(self, chunk_id: bytes, digest: Digest) -> None:
        """Hash the chunk file as it is read, a piece at a time (see :func:`~desync.chunk.verify_stored`)."""
        limit = stored_size_limit(0)
        (fd, _), path = self._open_first(chunk_id, lambda name: fsutil.open_regular(name, limit))
        try:
            verify_stored(chunk_id, fsutil.read_pieces(fd, path, limit), path.endswith(self.suffix), digest,
                          self.path)
        except fsutil.UnreadableFile as grown:
            raise ChunkInvalid(chunk_id, self.path, str(grown)) from None
        except OSError as failed:
            raise StoreError(f"store {self.path}: cannot read chunk {chunk_id.hex()}: {failed.strerror}") \
                from None
        finally:
            os.close(fd)

    def fetch_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk | None]:
        """One C call reads the preferred form of every file, one more the other form of those not found."""
        if len(requests) < 2:
            return super().fetch_chunks(requests)
        found: list[Chunk | None] = [None] * len(requests)
        absent = self._read_batch(requests, list(range(len(requests))), 0, found)
        if absent:
            self._read_batch(requests, absent, 1, found)
        return found

    def _read_batch(self, requests: list[tuple[bytes, int]], positions: list[int], form: int,
                    found: list[Chunk | None]) -> list[int]:
        """Read form ``form`` (0 preferred, 1 the other) of the chunks at ``positions``; returns those not there."""
        paths = [self._paths(requests[i][0])[form] for i in positions]
        compressed = (form == 0) != self.options.uncompressed
        raws = fsutil.read_files([fsutil.fsencode(p) for p in paths],
                                 [stored_size_limit(requests[i][1]) for i in positions])
        # With the C codec, chunks of known size are decoded and verified in one GIL release for the batch.
        codec = None if self.options.skip_verify else _accel.codec_module()
        batch: list[tuple[bytes, bytes, int, bool]] = []
        batched: list[int] = []
        absent: list[int] = []
        for i, raw, path in zip(positions, raws, paths):
            cid, hint = requests[i]
            if isinstance(raw, int):
                if raw in fsutil.UNREADABLE:
                    raise ChunkInvalid(cid, self.path, f"{path}: {fsutil.UNREADABLE[raw]}")
                if raw != errno.ENOENT:
                    raise StoreError(f"store {self.path}: cannot read chunk {cid.hex()}: {os.strerror(raw)}")
                absent.append(i)
            elif codec is not None and hint > 0:
                batch.append((cid, raw, hint, compressed))
                batched.append(i)
            else:
                found[i] = stored_chunk(self.options, cid, raw, compressed, self.path, hint, origin=self.path)
        if codec is not None and batch:
            contents = codec.decode_verify(self.options.digest.code, batch, CHUNK_SIZE_LIMIT)
            for i, (cid, raw, hint, _), content in zip(batched, batch, contents):
                if content is None:  # the ordinary path gives the verdict, and its error
                    found[i] = stored_chunk(self.options, cid, raw, compressed, self.path, hint, origin=self.path)
                else:
                    found[i] = Chunk(cid, data=content, compressed=raw if compressed else None, origin=self.path)
        return absent

    def open_compressed(self, chunk_id: bytes) -> tuple[int, int] | None:
        """The chunk's compressed file opened for sending as it is: (descriptor, size), or None if there is none.

        Lets the pull server send stored chunks without reading them into
        memory; the caller owns the descriptor.  The file is not verified.
        A file that is not a regular file of a chunk's size is ChunkInvalid.
        """
        first, second = self._paths(chunk_id)
        path = second if self.options.uncompressed else first
        try:
            return fsutil.open_regular(path, stored_size_limit(0))
        except FileNotFoundError:
            return None
        except fsutil.UnreadableFile as unreadable:
            raise ChunkInvalid(chunk_id, self.path, str(unreadable)) from None
        except OSError as exc:
            raise StoreError(f"store {self.path}: cannot read chunk {chunk_id.hex()}: {exc.strerror}") from None

    def stored_size(self, chunk_id: bytes) -> int:
        """Bytes of the chunk's compressed file; 0 when the store keeps chunks uncompressed or has no such file."""
        if self.options.uncompressed:
            return 0
        try:
            return os.stat(self._paths(chunk_id)[0]).st_size
        except OSError:
            return 0

    def has_chunk(self, chunk_id: bytes) -> bool:
        first, second = self._paths(chunk_id)
        return fsutil.exists(first) or fsutil.exists(second)

    def touch_chunk(self, chunk_id: bytes) -> None:
        for path in self._paths(chunk_id):
            try:
                os.utime(path)
                return
            except OSError:
                continue

    def writer_lock(self, exclusive: bool) -> None:
        """flock ``<store>/.desync-lock``: shared waits for a running prune, exclusive fails at once if held."""
        if self._lock_fd >= 0:
            return
        path = os.path.join(self.path, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise StoreError(f"store {self.path}: cannot open its lock {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"store {self.path} is in use by a running make, tar, chop or cache; "
                             f"prune it when they have finished") from None
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def flush(self) -> None:
        """One syncfs for all chunks written since the last flush (an fsync per chunk costs ~2x the write)."""
        if self._written:
            self._written = False
            fsutil.sync_filesystem(self.path)

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def put_missing(self, chunks: list[Chunk]) -> int:
        """With the C codec, one call checks, compresses and writes the batch in one GIL release.

        The chunks it cannot take (no plain content at hand, xz or gzip
        wanted) and those it could not write go through :meth:`put_chunk`,
        which makes a vanished prefix again or raises the usual error.
        """
        codec = _accel.codec_module()
        if codec is None or (self.options.compression != "zstd" and not self.options.uncompressed):
            return put_each_missing(self, chunks)
        level = -1 if self.options.uncompressed else ZSTD_LEVEL
        items: list[tuple[bytes, bytes, bytes, bytes | bytearray | memoryview]] = []
        taken: list[Chunk] = []
        rest: list[Chunk] = []
        tags = tempnames.owner_tags(len(chunks))
        for chunk, tag in zip(chunks, tags):
            content = chunk.plain_content()
            if content is None:
                rest.append(chunk)
                continue
            final, other = self._paths(chunk.id)
            cut = final.rfind("/") + 1
            tmp = final[:cut] + TMP_PREFIX + "." + tag
            items.append((fsutil.fsencode(final), fsutil.fsencode(other), fsutil.fsencode(tmp), content))
            taken.append(chunk)
        stored = 0
        for chunk, code in zip(taken, codec.store_chunks(items, level) if items else []):
            if code == 0:
                stored += 1
                self._written = True
            elif code > 0:
                rest.append(chunk)
        return stored + put_each_missing(self, rest)

    def put_chunk(self, chunk: Chunk) -> None:
        h = chunk.id.hex()
        prefix = self._root + chunk_prefix(chunk.id)
        if self.options.uncompressed:
            payload = chunk.data()
            final = f"{prefix}/{h}"
        else:
            payload = chunk.compressed() if self.options.compression == "zstd" else \
                compression.compress_as(chunk.data(), self.options.compression)
            final = f"{prefix}/{h}{self.suffix}"
        # A prefix directory this process made or wrote into is written to directly; others are made
        # first (an empty store has none), so the common case costs no failed open.  prune or verify -r
        # (here or in another process) may remove a remembered one at any time: a write that finds it
        # missing makes it again and tries again.
        if prefix not in self._prefixes:
            self._make_prefix(prefix)
        for attempt in range(_PREFIX_ATTEMPTS):
            try:
                write_atomic(final, payload, 0o444)
                self._written = True
                return
            except FileNotFoundError:
                if attempt == _PREFIX_ATTEMPTS - 1:
                    raise StoreError(f"cannot write {final}: its directory keeps disappearing") from None
            self._make_prefix(prefix)

    def _make_prefix(self, prefix: str) -> None:
        try:
            os.makedirs(prefix, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store {self.path}: cannot create {prefix}: {exc.strerror}") from None
        self._prefixes.add(prefix)

    def remove_chunk(self, chunk_id: bytes) -> None:
        """Remove both forms; a chunk that is not there is no error (see desync.stores.capabilities)."""
        for path in self._paths(chunk_id):
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except IsADirectoryError:
                _remove_empty_dir(path, self.path)
            except OSError as exc:
                raise StoreError(f"store {self.path}: cannot remove {path}: {exc.strerror}") from None
        prefix = os.path.dirname(self._paths(chunk_id)[0])
        try:
            os.rmdir(prefix)
        except OSError:
            pass

    def iter_chunks(self) -> Iterator[bytes]:
        suffix = self.suffix
        try:
            prefixes = sorted(e.name for e in os.scandir(self.path) if e.is_dir() and is_prefix_name(e.name))
        except OSError as exc:
            raise StoreError(f"cannot list store {self.path}: {exc.strerror}") from None
        for prefix in prefixes:
            seen: set[str] = set()
            with os.scandir(os.path.join(self.path, prefix)) as it:
                for e in it:
                    hex_id = listed_chunk(prefix, e.name, suffix)
                    if hex_id is not None and hex_id not in seen:
                        seen.add(hex_id)
                        yield bytes.fromhex(hex_id)

    def remove_stray_files(self) -> int:
        """Delete temp files left by killed writers (ours, casync's, the Go tool's); see tempnames.

        Ours carry their owner and go once it is gone; the others go when
        they have not changed for a day, so a live writer's file is spared.
        """
        count = 0
        now = time.time()
        for e in os.scandir(self.path):
            if not (e.is_dir(follow_symlinks=False) and is_prefix_name(e.name)):
                continue
            try:
                with os.scandir(e.path) as files:
                    temps = [f for f in files if f.name.startswith(TMP_PREFIX) or f.name.endswith(".tmp")]
            except OSError:
                continue
            for f in temps:
                token = f.name[len(TMP_PREFIX) + 1:] if f.name.startswith(TMP_PREFIX + ".") else ""
                try:
                    if tempnames.owner_gone(token, f.stat(follow_symlinks=False).st_mtime, now) \
                            and tempnames.remove_leftover(f.path):
                        count += 1
                except OSError:
                    continue
        return count


def _remove_empty_dir(path: str, store: str) -> None:
    """A directory under a chunk name: removed if empty, else a StoreError (its content may be someone's)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StoreError(f"store {store}: {path} is a directory and cannot be removed: {exc.strerror}") from None


def write_atomic(final: str, payload: bytes, mode: int) -> None:
    """Write ``payload`` to a temp file beside ``final`` and rename it into place.

    FileNotFoundError (the directory is missing) is passed on for the caller
    to handle; every other failure becomes a StoreError.
    """
    try:
        fsutil.write_file_atomic(final, payload, mode, f"{TMP_PREFIX}.{tempnames.owner_tag()}", durable=False)
    except FileNotFoundError:
        raise
    except OSError as exc:
        reason = "no space left on device" if exc.errno == errno.ENOSPC else exc.strerror
        raise StoreError(f"cannot write {final}: {reason}") from None
