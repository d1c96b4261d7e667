"""Index locations: a local path, ``-`` for stdin/stdout, or a remote index store.

Remote backends (HTTP, S3, SFTP) register a scheme here, with a writer when
they can store indexes; what a location's store can do is declared by the
protocols in desync.stores.capabilities, as for chunk stores.
Every command that takes an index goes through :func:`read_index` /
:func:`write_index`.
"""

from __future__ import annotations

import importlib
import os
import sys

from .. import fsutil
from .. import index as index_mod
from ..errors import DesyncError, InvalidArgument
from ..index import INDEX_SIZE_LIMIT
from .options import StoreOptions

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from collections.abc import Callable
    from typing import BinaryIO, Final

    from ..index import Index
    from .capabilities import IndexReadStore


_BLOCK: Final = 1 << 20


def _load(target: str) -> Callable[..., object]:
    module_name, _, func = target.partition(":")
    fn: Callable[..., object] = getattr(importlib.import_module(module_name), func)
    return fn


class _RemoteIndexReader:
    """A registered scheme that can only be read; its module is imported on first use."""

    def __init__(self, reader: str) -> None:
        self.reader = reader

    def read_index_bytes(self, location: str, options: StoreOptions) -> bytes:
        data = _load(self.reader)(location, options)
        assert isinstance(data, bytes)
        return data


class _RemoteIndexStore(_RemoteIndexReader):
    """A registered scheme that can be read and written."""

    def __init__(self, reader: str, writer: str) -> None:
        super().__init__(reader)
        self.writer = writer

    def write_index_bytes(self, location: str, data: bytes, options: StoreOptions) -> None:
        _load(self.writer)(location, data, options)


class _LocalIndexes:
    """Index files on this machine, and stdin/stdout for ``-``."""

    def read_index_bytes(self, location: str, options: StoreOptions) -> bytes:
        if location == "-":
            return _read_bounded(fsutil.stdin_binary(), "on stdin")
        path = _local_path(location)
        try:
            # Opened blocking: a pipe the user names (``<(...)``) is read as they asked, up to the limit.
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > INDEX_SIZE_LIMIT:
                    raise DesyncError(f"index {path} is larger than the {INDEX_SIZE_LIMIT} bytes allowed")
                return _read_bounded(f, path)
        except OSError as exc:
            raise DesyncError(f"cannot read index {path}: {exc.strerror}") from None

    def write_index_bytes(self, location: str, data: bytes, options: StoreOptions) -> None:
        """Atomically (temp file + rename), or to stdout for ``-``."""
        if location == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        path = _local_path(location)
        try:
            fsutil.replace_user_file(path, lambda fd: fsutil.write_all(fd, data))
        except OSError as exc:
            raise DesyncError(f"cannot write {path}: {exc.strerror}") from None


_LOCAL: Final = _LocalIndexes()
LOCAL_INDEXES: Final[IndexReadStore] = _LOCAL  # what index_store() gives for files on this machine
# scheme -> its index store
_SCHEMES: Final[dict[str, IndexReadStore]] = {}


def register_index_scheme(scheme: str, reader: str, writer: str = "") -> None:
    """Make ``scheme://`` index locations readable through ``reader`` ("module:function"), writable through
    ``writer`` when given."""
    _SCHEMES[scheme] = _RemoteIndexStore(reader, writer) if writer else _RemoteIndexReader(reader)


def index_store(location: str) -> IndexReadStore:
    """The index store a location belongs to: a registered scheme, else local files."""
    head, sep, _ = location.partition("://")
    if not sep or not head or "/" in head or head.lower() == "file":
        return _LOCAL
    found = _SCHEMES.get(head.lower())
    if found is None:
        raise InvalidArgument(f"unsupported index location {location!r}")
    return found


def _local_path(location: str) -> str:
    return location[len("file://"):] if location.lower().startswith("file://") else location


def read_index_bytes(location: str, options: StoreOptions | None = None) -> bytes:
    return index_store(location).read_index_bytes(location, options or StoreOptions())


def _read_bounded(f: BinaryIO, what: str) -> bytes:
    """All of ``f``, refused past INDEX_SIZE_LIMIT bytes (read a block at a time, so nothing is allocated ahead)."""
    data = bytearray()
    while True:
        block = f.read(_BLOCK)
        if not block:
            return bytes(data)
        data += block
        if len(data) > INDEX_SIZE_LIMIT:
            raise DesyncError(f"index {what} is larger than the {INDEX_SIZE_LIMIT} bytes allowed")


def read_index(location: str, options: StoreOptions | None = None) -> Index:
    """Read and validate an index from any supported location."""
    return index_mod.parse(read_index_bytes(location, options), "stdin" if location == "-" else location)


def write_index(location: str, index: Index, options: StoreOptions | None = None) -> None:
    """Write an index where ``location`` says; a usage error naming it when that store cannot be written."""
    from .capabilities import IndexWriteStore  # runtime-checkable protocols need typing: only when writing

    store = index_store(location)
    if not isinstance(store, IndexWriteStore):
        raise InvalidArgument(f"index location {location} cannot be written (its store can only be read)")
    store.write_index_bytes(location, index.to_bytes(), options or StoreOptions())


def write_file_atomic(path: str, data: bytes, mode: int = 0o666) -> None:
    """Replace ``path`` with ``data`` atomically, as a DesyncError on failure."""
    try:
        fsutil.write_file_atomic(path, data, mode)
    except OSError as exc:
        raise DesyncError(f"cannot write {path}: {exc.strerror}") from None


register_index_scheme("http", "desync.stores.http:read_http_index", "desync.stores.http:write_http_index")
register_index_scheme("https", "desync.stores.http:read_http_index", "desync.stores.http:write_http_index")
register_index_scheme("sftp", "desync.stores.sftp:read_sftp_index", "desync.stores.sftp:write_sftp_index")
register_index_scheme("s3+http", "desync.stores.s3:read_s3_index", "desync.stores.s3:write_s3_index")
register_index_scheme("s3+https", "desync.stores.s3:read_s3_index", "desync.stores.s3:write_s3_index")
