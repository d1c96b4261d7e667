"""The index server's service: GET/HEAD/PUT of index files in one directory (docs/layout.md 2.4).

The index name is the last component of the request path (any prefix is
ignored, as in the Go server, except that ``.``/``..`` anywhere is refused).
It is decoded, then refused unless it is a plain file name: no ``/`` or ``\\`` (encoded ones included), no NUL, not
``.``/``..``, and no leading dot (temp files of uploads in progress start
with one).  Uploads are parsed before they are written, atomically.
"""

import os
import sys
import urllib.parse
from http import HTTPStatus

from .. import index as index_mod
from ..errors import DesyncError
from ..stores.indexes import write_file_atomic
from .httpd import Reply, Request, text

_OCTETS = "application/octet-stream"


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


class IndexService:
    def __init__(self, directory: str, writable: bool = False) -> None:
        self.directory = directory
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
            return self._put(path, name, req.body)
        return text(HTTPStatus.METHOD_NOT_ALLOWED, "only GET, PUT and HEAD are supported")

    def _get(self, path: str, name: str) -> Reply:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return text(HTTPStatus.NOT_FOUND, "index not found")
        except OSError as os_error:
            sys.stderr.write(f"desync: cannot read index {path}: {os_error.strerror}\n")
            return text(HTTPStatus.BAD_REQUEST, "failed to retrieve index")
        try:
            index_mod.parse(data, name)
        except DesyncError as exc:
            sys.stderr.write(f"desync: {exc}\n")
            return text(HTTPStatus.BAD_REQUEST, "failed to retrieve index")
        return Reply(HTTPStatus.OK, data, _OCTETS)

    def _put(self, path: str, name: str, body: bytes) -> Reply:
        if not self.writable:
            return text(HTTPStatus.BAD_REQUEST, "writing to upstream index store is not enabled")
        try:
            index_mod.parse(body, name)
        except DesyncError as exc:
            return text(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"invalid index: {exc}")
        try:
            write_file_atomic(path, body, 0o644)
        except DesyncError as exc:
            sys.stderr.write(f"desync: {exc}\n")
            return text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal server error")
        return Reply(HTTPStatus.OK)
