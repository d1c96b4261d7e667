"""The index server's service: GET/HEAD/PUT of index files in one directory (docs/layout.md 2.4).

The index name is the last component of the request path (any prefix is
ignored, as in the Go server, except that ``.``/``..`` anywhere is refused).
It is decoded, then refused unless it is a plain file name: no ``/`` or ``\\`` (encoded ones included), no NUL, not
``.``/``..``, and no leading dot (temp files of uploads in progress start
with one).  A name that is a symlink is served only when it resolves to a
file directly in the directory: links never lead out of it.  Served files
must be regular and at most :data:`~desync.index.INDEX_SIZE_LIMIT` bytes,
and are checked and sent a block at a time.  Uploads are streamed to a temp
file beside the target, checked as they arrive, and renamed into place
only when they are a valid index, so memory stays small whatever their size.
"""

import errno
import os
import sys
import urllib.parse
from http import HTTPStatus

from ..errors import DesyncError, IndexMissing
from ..fsutil import UnreadableFile, open_regular, write_atomic_with, write_all
from ..index import INDEX_SIZE_LIMIT, IndexCheck
from ..stores.base import StoreOptions
from ..stores.capabilities import IndexWriteStore
from ..stores.indexes import index_store, read_index_bytes
from .httpd import BodyStream, IncompleteBody, Reply, Request, text

_OCTETS = "application/octet-stream"
_BLOCK = 1 << 20


def index_name(target: str) -> str:
    """The file name a request target refers to, or "" if it is not an acceptable one."""
    path = target.partition("?")[0]
    if not path.startswith("/"):
        return ""
    segments = [urllib.parse.unquote(s, errors="strict") for s in path.split("/")]
    if any(s in (".", "..") for s in segments):
        return ""
    name = segments[-1]
    if not name or name.startswith(".") or len(name.encode()) > 255:
        return ""
    if any(c in name for c in "/\\\x00"):
        return ""
    return name


class _Outside(Exception):
    """The name is a symlink leading out of the served directory."""


class IndexService:
    def __init__(self, directory: str, writable: bool = False) -> None:
        self.directory = directory
        self.real_directory = os.path.realpath(directory)
        self.writable = writable

    def __call__(self, req: Request) -> Reply:
        try:
            name = index_name(req.target)
        except UnicodeDecodeError:
            name = ""
        if not name:
            return text(HTTPStatus.BAD_REQUEST, "invalid index name")
        path = os.path.join(self.directory, name)
        if req.method in ("GET", "HEAD"):
            return self._get(path, name)
        if req.method == "PUT":
            return self._put(path, name, req.stream)
        return text(HTTPStatus.METHOD_NOT_ALLOWED, "only GET, PUT and HEAD are supported")

    def _open(self, path: str) -> tuple[int, int]:
        """Open a served index: a regular file of this directory, directly or through symlinks that stay in it.

        The resolved file is opened without following a symlink, so a link
        swapped in meanwhile is refused rather than followed out of the
        directory.
        """
        resolved = os.path.realpath(path)
        if os.path.dirname(resolved) != self.real_directory:
            raise _Outside(path)
        return open_regular(resolved, INDEX_SIZE_LIMIT, follow=False)

    def _get(self, path: str, name: str) -> Reply:
        try:
            fd, size = self._open(path)
        except (FileNotFoundError, NotADirectoryError):
            return text(HTTPStatus.NOT_FOUND, "index not found")
        except _Outside:
            sys.stderr.write(f"desync: not serving {path}: a symlink to a file outside {self.directory}\n")
            return text(HTTPStatus.NOT_FOUND, "index not found")
        except UnreadableFile as unreadable:
            sys.stderr.write(f"desync: cannot serve index {unreadable}\n")
            return text(HTTPStatus.BAD_REQUEST, "failed to retrieve index")
        except OSError as os_error:
            reason = "a symlink changed while being opened" if os_error.errno == errno.ELOOP else os_error.strerror
            sys.stderr.write(f"desync: cannot read index {path}: {reason}\n")
            return text(HTTPStatus.BAD_REQUEST, "failed to retrieve index")
        try:
            _check_file(fd, size, name)
        except (DesyncError, OSError) as exc:
            os.close(fd)
            sys.stderr.write(f"desync: {exc}\n")
            return text(HTTPStatus.BAD_REQUEST, "failed to retrieve index")
        return Reply(HTTPStatus.OK, content_type=_OCTETS, file_fd=fd, file_size=size)

    def _put(self, path: str, name: str, body: BodyStream | None) -> Reply:
        """Stream the upload to a temp file beside ``path``, checking it on the way; renamed in only if valid."""
        if not self.writable:
            return text(HTTPStatus.BAD_REQUEST, "writing to upstream index store is not enabled")
        if body is None:
            return text(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        try:
            write_atomic_with(path, _Upload(body, name), 0o644)
        except DesyncError as invalid:
            return text(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"invalid index: {invalid}")
        except IncompleteBody:
            return text(HTTPStatus.BAD_REQUEST, "incomplete request body")
        except OSError as exc:
            sys.stderr.write(f"desync: cannot write {path}: {exc.strerror}\n")
            return text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal server error")
        return Reply(HTTPStatus.OK)


class _Upload:
    """Copies a request body into a file, validating it as an index on the way (bounded memory)."""

    def __init__(self, body: BodyStream, name: str) -> None:
        self.body = body
        self.name = name

    def __call__(self, fd: int) -> None:
        check = IndexCheck(self.name)
        while True:
            block = self.body.read(_BLOCK)
            if not block:
                break
            check.feed(block)
            write_all(fd, block)
        check.finish()


def _check_file(fd: int, size: int, name: str) -> None:
    """Raise FormatError unless the first ``size`` bytes of ``fd`` are a valid index (read a block at a time)."""
    check = IndexCheck(name)
    offset = 0
    while offset < size:
        block = os.pread(fd, min(_BLOCK, size - offset), offset)
        if not block:
            raise DesyncError(f"{name}: the file shrank while being read")
        check.feed(block)
        offset += len(block)
    check.finish()


class StoreIndexService:
    """GET/HEAD/PUT of indexes kept in a remote index store (HTTP, S3, SFTP), as the Go index server proxies.

    Names are checked as for a directory (:func:`index_name`); each request
    reads or writes ``BASE/NAME`` through the index store API, the upload
    validated as an index before it is passed on.
    """

    def __init__(self, base: str, options: StoreOptions, writable: bool = False) -> None:
        self.base = base.rstrip("/")
        self.options = options
        self.writable = writable
        self.quote = urllib.parse.urlsplit(base).scheme.lower() in ("http", "https")

    def location(self, name: str) -> str:
        return f"{self.base}/{urllib.parse.quote(name) if self.quote else name}"

    def __call__(self, req: Request) -> Reply:
        try:
            name = index_name(req.target)
        except UnicodeDecodeError:
            name = ""
        if not name:
            return text(HTTPStatus.BAD_REQUEST, "invalid index name")
        if req.method in ("GET", "HEAD"):
            return self._get(name)
        if req.method == "PUT":
            return self._put(name, req.stream)
        return text(HTTPStatus.METHOD_NOT_ALLOWED, "only GET, PUT and HEAD are supported")

    def _get(self, name: str) -> Reply:
        location = self.location(name)
        try:
            data = read_index_bytes(location, self.options)
            check = IndexCheck(name)
            check.feed(data)
            check.finish()
        except IndexMissing:
            return text(HTTPStatus.NOT_FOUND, "index not found")
        except DesyncError as exc:
            sys.stderr.write(f"desync: {exc}\n")
            return text(HTTPStatus.BAD_REQUEST, "failed to retrieve index")
        return Reply(HTTPStatus.OK, data, _OCTETS)

    def _put(self, name: str, body: BodyStream | None) -> Reply:
        if not self.writable:
            return text(HTTPStatus.BAD_REQUEST, "writing to upstream index store is not enabled")
        if body is None:
            return text(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        check = IndexCheck(name)
        data = bytearray()
        try:
            while True:
                block = body.read(_BLOCK)
                if not block:
                    break
                check.feed(block)
                data += block
            check.finish()
        except DesyncError as invalid:
            return text(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"invalid index: {invalid}")
        except IncompleteBody:
            return text(HTTPStatus.BAD_REQUEST, "incomplete request body")
        store = index_store(self.base)
        if not isinstance(store, IndexWriteStore):
            return text(HTTPStatus.BAD_REQUEST, "upstream index store does not support writing")
        try:
            store.write_index_bytes(self.location(name), bytes(data), self.options)
        except DesyncError as exc:
            sys.stderr.write(f"desync: {exc}\n")
            return text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal server error")
        return Reply(HTTPStatus.OK)
