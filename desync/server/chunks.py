"""The chunk server's service: GET/HEAD/PUT of ``/<id[:4]>/<id>[.cacnk]`` (docs/layout.md 2.3).

Only a target of exactly that shape is served; everything else is a 400,
so no request can name a file outside the store.  Reads are passed through
in the store's own form (a compressed local chunk goes out as it lies on
disk, neither decompressed nor verified, as the Go server does by default:
clients verify).  Uploads are always decompressed and hashed before they
are stored, because a bad chunk in a shared store would hurt every client.
"""

import re
import sys
from http import HTTPStatus
from typing import Final

from ..chunk import Chunk
from ..constants import COMPRESSED_CHUNK_SUFFIX, ZSTD_MAGIC
from ..digest import Digest
from ..errors import ChunkInvalid, ChunkMissing, DesyncError
from ..stores.base import Store
from ..stores.capabilities import WriteStore
from .httpd import Reply, Request, text

_TARGET: Final = re.compile(r"/([0-9a-f]{4})/([0-9a-f]{64})((?:\.[A-Za-z0-9.-]+)?)")
_OCTETS: Final = "application/octet-stream"


class ChunkService:
    """Serves one (possibly composed) store; ``store`` may be swapped at any time (reload)."""

    def __init__(self, store: Store, digest: Digest, writable: bool = False, uncompressed: bool = False,
                 verify_uploads: bool = True) -> None:
        self.store = store
        self.verify_uploads = verify_uploads  # off: the Go server's --skip-verify-write
        self.digest = digest
        self.writable = writable
        self.uncompressed = uncompressed
        self.suffix = "" if uncompressed else COMPRESSED_CHUNK_SUFFIX

    def __call__(self, req: Request) -> Reply:
        path = req.target.partition("?")[0]
        m = _TARGET.fullmatch(path)
        if m is None:
            return text(HTTPStatus.BAD_REQUEST, "invalid chunk path")
        if m.group(3) != self.suffix:
            return text(HTTPStatus.BAD_REQUEST, "invalid chunk extension, verify compression settings")
        if not m.group(2).startswith(m.group(1)):
            return text(HTTPStatus.BAD_REQUEST, "chunk prefix does not match the chunk ID")
        chunk_id = bytes.fromhex(m.group(2))
        store = self.store
        if req.method == "GET":
            return self._get(store, chunk_id)
        if req.method == "HEAD":
            return self._head(store, chunk_id)
        if req.method == "PUT":
            return self._put(store, chunk_id, req.body)
        return text(HTTPStatus.METHOD_NOT_ALLOWED, "only GET, PUT and HEAD are supported")

    def _get(self, store: Store, chunk_id: bytes) -> Reply:
        try:
            body = store.get_chunk(chunk_id).stored_form(self.uncompressed)
        except ChunkMissing:
            return text(HTTPStatus.NOT_FOUND, f"chunk {chunk_id.hex()} not found")
        except DesyncError as exc:
            return _failed(exc)
        return Reply(HTTPStatus.OK, body, _OCTETS)

    def _head(self, store: Store, chunk_id: bytes) -> Reply:
        try:
            found = store.has_chunk(chunk_id)
        except DesyncError as exc:
            return _failed(exc)
        return Reply(HTTPStatus.OK if found else HTTPStatus.NOT_FOUND, b"", _OCTETS)

    def _put(self, store: Store, chunk_id: bytes, body: bytes) -> Reply:
        if not self.writable:
            return text(HTTPStatus.BAD_REQUEST, "writing to upstream chunk store is not enabled")
        if not isinstance(store, WriteStore):
            return text(HTTPStatus.BAD_REQUEST, "upstream chunk store does not support writing")
        chunk = Chunk(chunk_id, data=body) if self.uncompressed else Chunk(chunk_id, compressed=body)
        try:
            # Decoded in pieces into the hash: an upload claiming gigabytes costs a piece of memory.
            if self.verify_uploads:
                chunk.verify(self.digest, "upload")
            if not self.uncompressed and not body.startswith(ZSTD_MAGIC):
                # A zstd upload is stored as sent; xz/gzip ones are re-encoded when the store writes them.
                chunk = Chunk(chunk_id, data=chunk.data())
        except ChunkInvalid as bad:
            return text(HTTPStatus.BAD_REQUEST, f"chunk {chunk_id.hex()} refused: {bad.reason}")
        try:
            store.put_chunk(chunk)
        except DesyncError as exc:
            return _failed(exc)
        return Reply(HTTPStatus.OK)


def _failed(exc: BaseException) -> Reply:
    sys.stderr.write(f"desync: {exc}\n")
    return text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal server error")
