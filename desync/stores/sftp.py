"""``sftp://[USER@]HOST[:PORT]/PATH`` stores and index files, over ``ssh -s HOST sftp``.

The same layout as a local store (``PATH/<id[:4]>/<id>.cacnk``), so a
directory can be served by sshd and used locally alike.  Chunks are
uploaded to a temp name and renamed into place (``posix-rename@openssh.com``
when the server offers it, as plain SFTP v3 RENAME will not replace a
file), so readers never see a partial chunk.  Up to ``-n`` sessions
(capped) share the work; each carries many requests at once.
"""

import os
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Final, NoReturn

from .. import tempnames
from ..chunk import Chunk, verify_stored
from ..compression import stored_size_limit
from ..constants import COMPRESSED_CHUNK_SUFFIX
from ..digest import Digest
from ..errors import ChunkInvalid, ChunkMissing, DesyncError, IndexMissing, StoreError
from ..index import INDEX_SIZE_LIMIT
from ..protocol import sftp as s
from ..protocol.sftp_client import SFTPSession
from ..protocol.transport import RemoteTarget, parse_remote_url, sftp_command
from .base import Store, StoreOptions, put_each_missing, stored_chunk
from .layout import chunk_name, chunk_prefix, is_prefix_name, listed_chunk
from .local import TMP_PREFIX

MAX_SESSIONS: Final = 8


def _open_session(target: RemoteTarget, label: str, options: StoreOptions) -> SFTPSession:
    return SFTPSession(sftp_command(target), label, options.timeout)


class SFTPStore(Store):
    def __init__(self, location: str, options: StoreOptions, create: bool = False) -> None:
        self.location = location
        self.options = options
        self.target = parse_remote_url(location, "sftp")
        self.path = self.target.path.rstrip("/") or "/"
        self.suffix = os.environ.get("CASYNC_COMPRESSED_CHUNK_SUFFIX", COMPRESSED_CHUNK_SUFFIX)
        self.limit = max(1, min(options.workers, MAX_SESSIONS))
        self.sessions: list[SFTPSession] = []
        self.lock = threading.Lock()
        session = self._session()
        attrs = session.stat(self.path)
        if attrs is None and create:
            self._makedirs(session, self.path)
        elif attrs is None:
            raise StoreError(f"store {location} does not exist")

    def _session(self) -> SFTPSession:
        """The least busy live session, or a new one while all are busy and the cap allows."""
        with self.lock:
            self.sessions = [x for x in self.sessions if x.alive]
            best = min(self.sessions, key=lambda x: x.load) if self.sessions else None
            if best is not None and (best.load == 0 or len(self.sessions) >= self.limit):
                return best
        fresh = _open_session(self.target, f"store {self.location}", self.options)
        with self.lock:
            self.sessions.append(fresh)
        return fresh

    def _makedirs(self, session: SFTPSession, path: str) -> None:
        parts = path.strip("/").split("/")
        current = ""
        for part in parts:
            current += "/" + part
            if session.stat(current) is None:
                try:
                    session.mkdir(current)
                except s.StatusError:
                    if session.stat(current) is None:
                        raise

    def _paths(self, chunk_id: bytes) -> tuple[str, str]:
        base = f"{self.path}/{chunk_name(chunk_id, '')}"
        compressed = base + self.suffix
        return (base, compressed) if self.options.uncompressed else (compressed, base)

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        session = self._session()
        for path in self._paths(chunk_id):
            compressed = path.endswith(self.suffix)
            try:
                raw = session.read_file(path, stored_size_limit(size_hint))
            except s.StatusError as exc:
                if exc.code == s.FX_NO_SUCH_FILE:
                    continue
                raise StoreError(f"store {self.location}: cannot read chunk {chunk_id.hex()}: {exc}") from None
            except s.TooLarge as too_large:
                raise ChunkInvalid(chunk_id, self.location, f"more than {too_large.limit} bytes") from None
            return stored_chunk(self.options, chunk_id, raw, compressed, self.location, size_hint)
        raise ChunkMissing(chunk_id, self.location)

    def check_chunk(self, chunk_id: bytes, digest: Digest) -> None:
        """Hash the chunk file as it is read, a window at a time (see :func:`~desync.chunk.verify_stored`)."""
        session = self._session()
        limit = stored_size_limit(0)
        for path in self._paths(chunk_id):
            try:
                pieces = session.read_pieces(path, limit)
            except s.StatusError as exc:
                if exc.code == s.FX_NO_SUCH_FILE:
                    continue
                raise StoreError(f"store {self.location}: cannot read chunk {chunk_id.hex()}: {exc}") from None
            try:
                verify_stored(chunk_id, pieces, path.endswith(self.suffix), digest, self.location)
                return
            except s.StatusError as failed:
                raise StoreError(f"store {self.location}: cannot read chunk {chunk_id.hex()}: {failed}") from None
            except s.TooLarge as too_large:
                raise ChunkInvalid(chunk_id, self.location, f"more than {too_large.limit} bytes") from None
            finally:
                pieces.close()
        raise ChunkMissing(chunk_id, self.location)

    def has_chunk(self, chunk_id: bytes) -> bool:
        session = self._session()
        return any(session.stat(path) is not None for path in self._paths(chunk_id))

    def put_missing(self, chunks: list[Chunk]) -> int:
        return put_each_missing(self, chunks)

    def put_chunk(self, chunk: Chunk) -> None:
        session = self._session()
        h = chunk.id.hex()
        prefix = f"{self.path}/{chunk_prefix(chunk.id)}"
        if self.options.uncompressed:
            payload, final = chunk.data(), f"{prefix}/{h}"
        else:
            payload, final = chunk.compressed(), f"{prefix}/{h}{self.suffix}"
        # The prefix directory is not remembered: a prune may remove it at any time, so a write that
        # finds it missing creates it and tries again.
        for attempt in range(3):
            tmp = f"{prefix}/{TMP_PREFIX}{secrets.token_hex(8)}"
            try:
                session.write_file(tmp, payload, 0o444)
                session.rename_over(tmp, final)
                return
            except s.StatusError as missing:
                if missing.code != s.FX_NO_SUCH_FILE or attempt == 2:
                    self._failed_write(session, tmp, h, missing)
            except StoreError as exc:
                self._failed_write(session, tmp, h, exc)
            try:
                session.mkdir(prefix)
            except s.StatusError:
                if session.stat(prefix) is None:
                    raise

    def _failed_write(self, session: SFTPSession, tmp: str, h: str, exc: StoreError) -> NoReturn:
        try:
            session.remove(tmp)
        except StoreError:
            pass
        raise StoreError(f"store {self.location}: cannot write chunk {h}: {exc}") from None

    def remove_chunk(self, chunk_id: bytes) -> None:
        """Remove both forms; a chunk that is not there is no error (see desync.stores.capabilities)."""
        session = self._session()
        for path in self._paths(chunk_id):
            session.remove(path)
        prefix = f"{self.path}/{chunk_prefix(chunk_id)}"
        try:
            session.rmdir(prefix)
        except s.StatusError:
            pass

    def touch_chunk(self, chunk_id: bytes) -> None:
        session = self._session()
        now = int(time.time())
        for path in self._paths(chunk_id):
            try:
                session.set_times(path, now)
                return
            except s.StatusError:
                continue

    def _prefixes(self, session: SFTPSession) -> list[str]:
        """The prefix directories, sorted: at most 65536 names are kept whatever the listing holds."""
        return sorted({n for n in session.listdir(self.path) if is_prefix_name(n)})

    def iter_chunks(self) -> Iterator[bytes]:
        session = self._session()
        for prefix in self._prefixes(session):
            seen: set[str] = set()
            for name in session.listdir(f"{self.path}/{prefix}"):
                hex_id = listed_chunk(prefix, name, self.suffix)
                if hex_id is not None and hex_id not in seen:
                    seen.add(hex_id)
                    yield bytes.fromhex(hex_id)

    def remove_stray_files(self) -> int:
        """Delete temp files of killed writers: those unchanged for a day (see tempnames; a live writer's stays)."""
        session = self._session()
        count = 0
        now = time.time()
        for prefix in self._prefixes(session):
            for name in session.listdir(f"{self.path}/{prefix}"):
                if name.startswith(TMP_PREFIX) or name.endswith(".tmp"):
                    path = f"{self.path}/{prefix}/{name}"
                    attrs = session.stat(path)
                    if attrs is not None and attrs.mtime >= 0 and tempnames.owner_gone("", attrs.mtime, now):
                        count += session.remove(path)
        return count

    def close(self) -> None:
        with self.lock:
            sessions, self.sessions = self.sessions, []
        for session in sessions:
            session.close()


def open_sftp_store(location: str, options: StoreOptions, writable: bool) -> Store:
    return SFTPStore(location, options, create=writable)


def read_sftp_index(location: str, options: StoreOptions) -> bytes:
    target = parse_remote_url(location, "sftp")
    session = _open_session(target, f"index {location}", options)
    try:
        return session.read_file(target.path, INDEX_SIZE_LIMIT)
    except s.StatusError as exc:
        if exc.code == s.FX_NO_SUCH_FILE:
            raise IndexMissing(location) from None
        raise DesyncError(f"cannot read index {location}: {exc}") from None
    except s.TooLarge as too_large:
        raise DesyncError(f"cannot read index {location}: {too_large}") from None
    finally:
        session.close()


def write_sftp_index(location: str, data: bytes, options: StoreOptions) -> None:
    """Upload to a temp name beside the index, then rename over it."""
    target = parse_remote_url(location, "sftp")
    directory, _, name = target.path.rpartition("/")
    tmp = f"{directory}/.{name}.{secrets.token_hex(6)}.tmp"
    session = _open_session(target, f"index {location}", options)
    try:
        session.write_file(tmp, data, 0o644)
        session.rename_over(tmp, target.path)
    except s.StatusError as exc:
        try:
            session.remove(tmp)
        except StoreError:
            pass
        raise DesyncError(f"cannot write index {location}: {exc}") from None
    finally:
        session.close()
