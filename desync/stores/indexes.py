"""Index locations: a local path, ``-`` for stdin/stdout, or a remote index store.

Remote backends (HTTP, S3, SFTP) register a scheme here; every command
that takes an index goes through :func:`read_index`/:func:`write_index`.
"""

import importlib
import os
import sys
from collections.abc import Callable
from typing import BinaryIO, Final

from .. import fsutil
from .. import index as index_mod
from ..errors import DesyncError, InvalidArgument
from ..index import INDEX_SIZE_LIMIT, Index
from .base import StoreOptions

IndexReader = Callable[[str, StoreOptions], bytes]
IndexWriter = Callable[[str, bytes, StoreOptions], None]

_BLOCK: Final = 1 << 20

# scheme -> ("module:read_function", "module:write_function")
_SCHEMES: Final[dict[str, tuple[str, str]]] = {}


def register_index_scheme(scheme: str, reader: str, writer: str) -> None:
    _SCHEMES[scheme] = (reader, writer)


def _remote(location: str) -> tuple[str, str] | None:
    head, sep, _ = location.partition("://")
    if not sep or not head or "/" in head:
        return None
    if head.lower() == "file":
        return None
    found = _SCHEMES.get(head.lower())
    if found is None:
        raise InvalidArgument(f"unsupported index location {location!r}")
    return found


def _load(target: str) -> Callable[..., object]:
    module_name, _, func = target.partition(":")
    fn: Callable[..., object] = getattr(importlib.import_module(module_name), func)
    return fn


def _local_path(location: str) -> str:
    return location[len("file://"):] if location.lower().startswith("file://") else location


def read_index_bytes(location: str, options: StoreOptions | None = None) -> bytes:
    opts = options or StoreOptions()
    remote = _remote(location)
    if remote is not None:
        data = _load(remote[0])(location, opts)
        assert isinstance(data, bytes)
        return data
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
    """Write an index atomically (temp file + rename) or to stdout for ``-``."""
    data = index.to_bytes()
    remote = _remote(location)
    if remote is not None:
        _load(remote[1])(location, data, options or StoreOptions())
        return
    if location == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = _local_path(location)
    try:
        fsutil.replace_user_file(path, lambda fd: fsutil.write_all(fd, data))
    except OSError as exc:
        raise DesyncError(f"cannot write {path}: {exc.strerror}") from None


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
