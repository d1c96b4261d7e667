"""HTTP(S) chunk stores and index stores (docs/layout.md 2.1, 2.2, 2.4).

Chunks live at ``BASE/<id[:4]>/<id>.cacnk`` (no suffix for uncompressed
stores), so any static web server in front of a local store directory is a
read-only store, and ``desync chunk-server`` or any server that accepts PUT
is a writable one.  HTTP has no listing or removal: an HTTP store is a
write store, not a prunable one (see desync.stores.capabilities).  A 404 is a miss (the next store is asked); anything else
that is not a success is an error, after retries for the transient ones.
"""

import urllib.parse

from ..chunk import Chunk
from ..compression import stored_size_limit
from ..constants import COMPRESSED_CHUNK_SUFFIX, INDEX_SIZE_LIMIT
from ..errors import ChunkMissing, DesyncError, IndexMissing, StoreError
from .base import Store, StoreOptions, put_each_missing, stored_chunk
from .layout import chunk_name
from .httpclient import HTTPClient, Response

_PUT_OK = (200, 201, 204)


class HTTPStore(Store):
    def __init__(self, location: str, options: StoreOptions) -> None:
        self.client = HTTPClient(location, options)
        self.location = self.client.url
        self.options = options
        self.suffix = "" if options.uncompressed else COMPRESSED_CHUNK_SUFFIX

    def _name(self, chunk_id: bytes) -> str:
        return chunk_name(chunk_id, self.suffix)

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        return self._chunk_from(chunk_id, size_hint, self.client.request("GET", self._name(chunk_id),
                                                                         limit=stored_size_limit(size_hint)))

    def fetch_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk | None]:
        """Pipelined GETs on one connection; a server error is asked again through the retrying path."""
        names = [self._name(cid) for cid, _ in requests]
        limits = [stored_size_limit(hint) for _, hint in requests]
        answered = self.client.get_many(names, max(limits)) if len(requests) > 1 else []
        chunks: list[Chunk | None] = []
        for i, (cid, hint) in enumerate(requests):
            resp = answered[i] if i < len(answered) and answered[i].status < 500 else None
            if resp is None:  # not answered, or a server error: the retrying path decides
                resp = self.client.request("GET", names[i], limit=limits[i])
            chunks.append(None if resp.status == 404 else self._chunk_from(cid, hint, resp))
        return chunks

    def _chunk_from(self, chunk_id: bytes, size_hint: int, resp: Response) -> Chunk:
        if resp.status == 404:
            raise ChunkMissing(chunk_id, self.location)
        if resp.status != 200:
            raise StoreError(f"store {self.location}: chunk {chunk_id.hex()}: {resp.reason()}")
        return stored_chunk(self.options, chunk_id, resp.body, not self.options.uncompressed, self.location,
                            size_hint, origin=self.location)

    def has_chunk(self, chunk_id: bytes) -> bool:
        resp = self.client.request("HEAD", self._name(chunk_id))
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        raise StoreError(f"store {self.location}: chunk {chunk_id.hex()}: {resp.reason()}")

    @property
    def parallelism(self) -> int:
        return max(1, self.options.workers)

    def put_missing(self, chunks: list[Chunk]) -> int:
        return put_each_missing(self, chunks)

    def put_chunk(self, chunk: Chunk) -> None:
        body = chunk.stored_form(self.options.uncompressed)
        resp = self.client.request("PUT", self._name(chunk.id), body)
        if resp.status not in _PUT_OK:
            raise StoreError(f"store {self.location}: cannot store chunk {chunk.id.hex()}: {resp.reason()}")

    def close(self) -> None:
        self.client.close()


def open_http_store(location: str, options: StoreOptions, writable: bool) -> Store:
    """Factory for ``http://`` and ``https://`` store locations."""
    return HTTPStore(location, options)


def _split_index_url(location: str) -> tuple[str, str]:
    """``http://h/p/name.caibx`` -> (``http://h/p/``, ``name.caibx``)."""
    parts = urllib.parse.urlsplit(location)
    base, _, name = parts.path.rpartition("/")
    if not name:
        raise DesyncError(f"index location {location!r} does not name an index file")
    return f"{parts.scheme}://{parts.netloc}{base}/", name


def read_http_index(location: str, options: StoreOptions) -> bytes:
    base, name = _split_index_url(location)
    client = HTTPClient(base, options)
    try:
        resp = client.request("GET", name, limit=INDEX_SIZE_LIMIT)
    finally:
        client.close()
    if resp.status == 404:
        raise IndexMissing(location)
    if resp.status != 200:
        raise DesyncError(f"cannot read index {location}: {resp.reason()}")
    return resp.body


def write_http_index(location: str, data: bytes, options: StoreOptions) -> None:
    base, name = _split_index_url(location)
    client = HTTPClient(base, options)
    try:
        resp = client.request("PUT", name, data)
    finally:
        client.close()
    if resp.status not in _PUT_OK:
        raise DesyncError(f"cannot write index {location}: {resp.reason()}")
