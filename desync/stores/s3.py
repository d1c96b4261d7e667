"""S3 chunk stores and index stores: ``s3+http://HOST[:PORT]/BUCKET[/PREFIX]`` and ``s3+https://``.

The object layout is the Go desync's, so both tools share buckets: chunk
``PREFIX/<id[:4]>/<id>.cacnk`` (zstd), or without the suffix for an
uncompressed (``-u``) store.  ``?lookup=path|dns|auto`` picks path-style or
virtual-host addressing (auto: virtual host for AWS and Google endpoints,
path style elsewhere).  An S3 PUT replaces an object whole, so writers need
no temp names and several clients may store the same chunk at once.

boto3 is an optional dependency, imported when the first S3 location is
opened.  One client serves all threads; botocore retries throttling, 5xx
answers and connection failures ("standard" mode), ``--error-retry`` times.

The server is a peer, not trusted: a chunk object is read only up to the
largest chunk file it may hold, any other answer (listing pages, error
bodies) up to :data:`MAX_ANSWER` bytes, listings end with an error when a
continuation token comes back or pages stop advancing, and the server's
words reach error messages escaped and shortened.
"""

import hashlib
import os
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TypeVar

from .._version import __version__
from ..chunk import Chunk, verify_stored
from ..compression import stored_size_limit
from ..constants import COMPRESSED_CHUNK_SUFFIX
from ..digest import Digest
from ..errors import ChunkInvalid, ChunkMissing, DesyncError, IndexMissing, InvalidArgument, StoreError
from ..fsutil import capped_pieces
from ..index import INDEX_SIZE_LIMIT
from ..peertext import peer_text
from ..readbudget import ReadBudget
from .base import Store, StoreOptions, put_each_missing, stored_chunk
from .layout import chunk_id_from_name, chunk_name
from .s3auth import S3Credentials, credentials_for, endpoint_of

_T = TypeVar("_T")
LOOKUPS: Final = ("auto", "dns", "path")
_MISSING: Final = ("NoSuchKey", "404", "NotFound")
# Keeps botocore from reading ~/.aws/config or AWS_PROFILE: credentials come from s3auth only.
_ISOLATED: Final = {"profile": (None, None, None, None), "config_file": (None, None, os.devnull, None)}

# The most bytes read of an answer that is not an object's content: a listing page of 1000 keys is ~300 KB.
MAX_ANSWER: Final = 16 << 20
# Listing pages in a row that are truncated yet hold no key: a real server never sends one.
MAX_EMPTY_PAGES: Final = 16
_READ_BLOCK: Final = 1 << 20

# The lazily imported boto3 pieces, filled by _boto() on first use.
_MODULES: dict[str, Any] = {}


def _boto() -> dict[str, Any]:
    if not _MODULES:
        try:
            import boto3  # noqa: F401  (what the s3 extra installs; botocore, its base, does the work)
            import botocore
            import botocore.config
            import botocore.exceptions
            import botocore.session
        except ImportError:
            raise DesyncError("S3 stores need boto3, which is not installed: pip install boto3") from None
        _MODULES.update(Config=botocore.config.Config, UNSIGNED=botocore.UNSIGNED,
                        ClientError=botocore.exceptions.ClientError,
                        BotoCoreError=botocore.exceptions.BotoCoreError,
                        session=botocore.session.Session(session_vars=dict(_ISOLATED)))
    return _MODULES


@dataclass(slots=True)
class S3Location:
    location: str
    endpoint: str  # "http://host:port": the server, and the key of s3-credentials entries
    bucket: str
    prefix: str  # "" or "dir/sub/"
    lookup: str


def parse_location(location: str) -> S3Location:
    parts = urllib.parse.urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme not in ("s3+http", "s3+https"):
        raise InvalidArgument(f"invalid S3 location {location!r}: expected s3+http:// or s3+https://")
    if not parts.netloc:
        raise InvalidArgument(f"invalid S3 location {location!r}: no host")
    path = parts.path.strip("/")
    if not path:
        raise InvalidArgument(f"invalid S3 location {location!r}: no bucket in the path")
    bucket, _, prefix = path.partition("/")
    query = urllib.parse.parse_qs(parts.query)
    lookup = (query.get("lookup") or [""])[-1] or "auto"
    if lookup not in LOOKUPS:
        raise InvalidArgument(f"unknown S3 bucket lookup type {lookup!r} in {location} (use dns, path or auto)")
    return S3Location(location, endpoint_of(location), bucket, f"{prefix}/" if prefix else "", lookup)


def addressing_style(loc: S3Location) -> str:
    """botocore's name for the bucket lookup: virtual host for AWS and Google Cloud Storage under auto."""
    if loc.lookup != "auto":
        return "virtual" if loc.lookup == "dns" else "path"
    host = (urllib.parse.urlsplit(loc.endpoint).hostname or "").lower()
    virtual = host.endswith("amazonaws.com") or host == "storage.googleapis.com"
    return "virtual" if virtual else "path"


def _credentials(loc: S3Location, options: StoreOptions) -> S3Credentials:
    """The credentials whoever opened the store passed in, else those of the environment."""
    given = options.s3_credentials
    return given if given is not None else credentials_for(loc.endpoint)


def make_client(loc: S3Location, creds: S3Credentials, options: StoreOptions) -> Any:
    """A thread-safe boto3 S3 client for the location's endpoint."""
    mods = _boto()
    client_cert: str | tuple[str, str] | None = None
    if options.client_cert:
        client_cert = (options.client_cert, options.client_key) if options.client_key else options.client_cert
    config = mods["Config"](
        region_name=creds.region,
        signature_version=mods["UNSIGNED"] if creds.anonymous else None,
        retries={"mode": "standard", "total_max_attempts": options.error_retry + 1},
        connect_timeout=options.timeout,
        read_timeout=options.timeout,
        max_pool_connections=max(10, options.workers),
        s3={"addressing_style": addressing_style(loc)},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        client_cert=client_cert,
        user_agent_extra=f"desync/{__version__}",
    )
    verify: bool | str = True
    if options.trust_insecure:
        verify = False
        # urllib3 warns on every unverified request; -t asked for exactly that.
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    elif options.ca_cert:
        verify = options.ca_cert
    # Anonymous requests go unsigned; placeholder keys keep botocore from searching for credentials.
    try:
        client = mods["session"].create_client(
            "s3", region_name=creds.region, endpoint_url=loc.endpoint, verify=verify, config=config,
            aws_access_key_id=creds.access_key or "anonymous", aws_secret_access_key=creds.secret_key or "anonymous",
            aws_session_token=creds.session_token or None)
    except Exception as exc:
        raise DesyncError(f"S3 location {loc.location}: {_describe(exc)}") from None
    _bound_answers(client)
    return client


class AnswerTooLarge(StoreError):
    """An S3 answer that is not an object's content (a listing page, an error) exceeds MAX_ANSWER."""


def _bound_answers(client: Any) -> None:
    """Make the client read every answer body except an object's content at most MAX_ANSWER bytes.

    botocore reads error bodies and listing pages whole before parsing
    them, so an endless one would grow without end: its HTTP session is
    wrapped so those bodies come through a bounded reader instead.
    """
    endpoint = getattr(client, "_endpoint", None)
    session = getattr(endpoint, "http_session", None)
    if endpoint is None or session is None:
        raise DesyncError("this botocore version is not supported (no HTTP session to bound S3 answers with)")
    endpoint.http_session = _BoundedSession(session)


class _BoundedSession:
    """botocore's HTTP session, with the answers botocore reads whole read through a bound.

    Those are all but an object's content (GetObject answered 200), which
    stays a stream for :func:`read_object` to bound.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def send(self, request: Any) -> Any:
        preload = not request.stream_output
        request.stream_output = True  # the inner session must not read the body: done here, bounded
        response = self.inner.send(request)
        if preload or response.status_code >= 300:
            response.raw = _BoundedRaw(response.raw)
            response.content  # noqa: B018  (botocore reads it whole now or when parsing the error)
        return response

    def close(self) -> None:
        self.inner.close()


class _BoundedRaw:
    """What ``AWSResponse.content`` needs of a urllib3 response: ``stream()``, stopping past MAX_ANSWER."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def stream(self, amt: int = 1 << 16, decode_content: bool | None = None) -> "_BoundedStream":
        return _BoundedStream(self.inner, amt)

    def close(self) -> None:
        self.inner.close()


class _BoundedStream:
    """The pieces of a body, failing with AnswerTooLarge past MAX_ANSWER bytes (an iterator class: compiled
    generators mishandle exceptions raised inside them)."""

    def __init__(self, raw: Any, amt: int) -> None:
        self.raw = raw
        self.amt = amt
        self.total = 0

    def __iter__(self) -> "_BoundedStream":
        return self

    def __next__(self) -> bytes:
        piece: bytes = self.raw.read(self.amt)
        if not piece:
            raise StopIteration
        self.total += len(piece)
        if self.total > MAX_ANSWER:
            self.raw.close()
            raise AnswerTooLarge(f"the server's answer is larger than {MAX_ANSWER} bytes")
        return piece


@dataclass(slots=True)
class _Failure:
    code: str
    status: int
    message: str


def _failure(exc: BaseException) -> _Failure | None:
    """What a boto3 error says, on one line; None for anything that is not a boto3 error."""
    mods = _MODULES
    if not mods:
        return None
    if isinstance(exc, mods["ClientError"]):
        response: dict[str, Any] = getattr(exc, "response", {}) or {}
        error: dict[str, Any] = response.get("Error", {}) or {}
        status = int((response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode", 0) or 0)
        code = str(error.get("Code", "") or status)
        text = peer_text(" ".join(str(error.get("Message", "") or "").split()))
        message = f"HTTP {status} {text}" if code.isdigit() else f"{peer_text(code, 80)}: {text}"
        if status == 403:
            message += " (check the S3 credentials)"
        return _Failure(code, status, message.strip())
    if isinstance(exc, mods["BotoCoreError"]):
        # Some (a reply that does not parse) quote the server's answer.
        return _Failure(type(exc).__name__, 0, peer_text(" ".join(str(exc).split())))
    return None


def _describe(exc: BaseException) -> str:
    found = _failure(exc)
    return found.message if found is not None else f"{type(exc).__name__}: {exc}"


class S3Store(Store):
    def __init__(self, location: str, options: StoreOptions) -> None:
        self.loc = parse_location(location)
        self.location = location
        self.options = options
        self.bucket = self.loc.bucket
        self.prefix = self.loc.prefix
        self.suffix = "" if options.uncompressed else COMPRESSED_CHUNK_SUFFIX
        self.client = make_client(self.loc, _credentials(self.loc, options), options)

    def key(self, chunk_id: bytes) -> str:
        return self.prefix + chunk_name(chunk_id, self.suffix)

    def fail(self, exc: Exception, what: str) -> NoReturn:
        """Raise ``exc`` as a one-line StoreError naming the store (anything not from boto3 unchanged)."""
        if isinstance(exc, (AnswerTooLarge, ListingError)):
            raise StoreError(f"store {self.location}: {what}: {exc}")
        found = _failure(exc)
        if found is None:
            raise exc
        if found.code == "NoSuchBucket":
            raise StoreError(f"store {self.location}: bucket {self.bucket} does not exist")
        raise StoreError(f"store {self.location}: {what}: {found.message}")

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        limit = stored_size_limit(size_hint)
        try:
            raw = self._read_body(chunk_id, lambda body, length: read_object(body, length, limit))
        except ObjectTooLarge:
            raise ChunkInvalid(chunk_id, self.location, f"more than {limit} bytes") from None
        return stored_chunk(self.options, chunk_id, raw, not self.options.uncompressed, self.location, size_hint)

    def check_chunk(self, chunk_id: bytes, digest: Digest) -> None:
        """Hash the object as its body arrives, a piece at a time (see :func:`~desync.chunk.verify_stored`);
        a body cut short is fetched and hashed again."""
        limit = stored_size_limit(0)
        try:
            self._read_body(chunk_id, lambda body, length: verify_stored(
                chunk_id, object_pieces(body, length, limit), not self.options.uncompressed, digest, self.location))
        except ObjectTooLarge:
            raise ChunkInvalid(chunk_id, self.location, f"more than {limit} bytes") from None

    def _get_object(self, chunk_id: bytes) -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(chunk_id))
        except Exception as exc:
            found = _failure(exc)
            if found is not None and found.code in _MISSING:
                raise ChunkMissing(chunk_id, self.location) from None
            self.fail(exc, f"chunk {chunk_id.hex()}")

    def _read_body(self, chunk_id: bytes, read: Callable[[Any, Any], _T]) -> _T:
        """GET the object and pass its body and announced length to ``read``; a body cut short is fetched
        again (botocore retries only the request itself)."""
        attempt = 0
        while True:
            answer = self._get_object(chunk_id)
            body = answer["Body"]
            try:
                return read(body, answer.get("ContentLength"))
            except (ObjectTooLarge, ChunkInvalid):
                raise
            except Exception as read_error:
                if _failure(read_error) is None or attempt >= self.options.error_retry:
                    self.fail(read_error, f"chunk {chunk_id.hex()}")
            finally:
                body.close()
            time.sleep(self.options.error_retry_base_interval * (2 ** attempt))
            attempt += 1

    def has_chunk(self, chunk_id: bytes) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(chunk_id))
        except Exception as exc:
            found = _failure(exc)
            if found is not None and found.code in _MISSING:
                return False
            self.fail(exc, f"chunk {chunk_id.hex()}")
        return True

    @property
    def parallelism(self) -> int:
        return max(1, self.options.workers)

    def put_missing(self, chunks: list[Chunk]) -> int:
        return put_each_missing(self, chunks)

    def put_chunk(self, chunk: Chunk) -> None:
        body = chunk.stored_form(self.options.uncompressed)
        kind = "application/octet-stream" if self.options.uncompressed else "application/zstd"
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(chunk.id), Body=body, ContentType=kind)
        except Exception as exc:
            self.fail(exc, f"cannot store chunk {chunk.id.hex()}")

    def remove_chunk(self, chunk_id: bytes) -> None:
        """Delete the object; a missing one is no error, as everywhere (see desync.stores.capabilities)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(chunk_id))
        except Exception as exc:
            self.fail(exc, f"cannot remove chunk {chunk_id.hex()}")

    def iter_chunks(self) -> Iterator[bytes]:
        return _ChunkListing(self)

    def remove_stray_files(self) -> int:
        """Uploads are atomic in S3: no writer leaves a partial object behind."""
        return 0

    def close(self) -> None:
        self.client.close()


class ObjectTooLarge(StoreError):
    """An object holds more bytes than the caller allows."""


def read_object(body: Any, declared: Any, limit: int) -> bytes:
    """An object's content, at most ``limit`` bytes: ObjectTooLarge when it declares or sends more.

    Past LARGE_READ bytes, one such read at a time (see :mod:`desync.readbudget`).
    """
    if isinstance(declared, int) and declared > limit:
        raise ObjectTooLarge(f"object of {declared} bytes, more than the {limit} allowed")
    out = bytearray()
    budget = ReadBudget()
    try:
        while True:
            piece: bytes = body.read(min(_READ_BLOCK, limit + 1 - len(out)))
            if not piece:
                return bytes(out)
            out += piece
            if len(out) > limit:
                raise ObjectTooLarge(f"object larger than the {limit} bytes allowed")
            budget.grow(len(out))
    finally:
        out.clear()  # a failure's traceback must not keep what was read alive
        budget.release()


def object_pieces(body: Any, declared: Any, limit: int) -> Iterator[bytes]:
    """An object's content in pieces as it arrives, at most ``limit`` bytes: ObjectTooLarge when it declares
    or sends more (for reads that need not hold it whole)."""
    if isinstance(declared, int) and declared > limit:
        raise ObjectTooLarge(f"object of {declared} bytes, more than the {limit} allowed")
    yield from capped_pieces(body.read, limit, _READ_BLOCK,
                             lambda: ObjectTooLarge(f"object larger than the {limit} bytes allowed"))


class ListingError(StoreError):
    """The server's listing does not end: a continuation token came back, or pages stopped advancing."""


class _ChunkListing:
    """Chunk IDs of a store, a page of the bucket listing at a time; other objects are skipped.

    A page at a time in memory, with the tokens seen so far (one per page):
    a token seen before, pages whose keys do not advance past the previous
    page's, or many truncated pages without keys end the listing with an
    error rather than looping forever.  An iterator class rather than a
    generator: listing errors are turned into StoreErrors inside the loop,
    which compiled generators get wrong.
    """

    def __init__(self, store: S3Store) -> None:
        self.store = store
        self.token: str | None = None
        self.done = False
        self.seen: set[bytes] = set()  # digests: the tokens themselves may be long
        self.last_key = ""
        self.empty_pages = 0
        self.ids: list[bytes] = []
        self.pos = 0

    def __iter__(self) -> "_ChunkListing":
        return self

    def __next__(self) -> bytes:
        while self.pos >= len(self.ids):
            if self.done:
                raise StopIteration
            try:
                page = self._page()
            except Exception as exc:
                self.store.fail(exc, "cannot list chunks")
            self._take(page)
        self.pos += 1
        return self.ids[self.pos - 1]

    def _page(self) -> dict[str, Any]:
        store = self.store
        args: dict[str, Any] = {"Bucket": store.bucket, "Prefix": store.prefix}
        if self.token is not None:
            args["ContinuationToken"] = self.token
        page: dict[str, Any] = store.client.list_objects_v2(**args)
        return page

    def _take(self, page: dict[str, Any]) -> None:
        self.ids = []
        self.pos = 0
        skip = len(self.store.prefix)
        keys = [str(obj.get("Key", "")) for obj in page.get("Contents", []) or []]
        for key in keys:
            found = chunk_id_from_name(key[skip:], self.store.suffix) if key.startswith(self.store.prefix) else None
            if found is not None:
                self.ids.append(found)
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            self.done = True
            return
        self.token = str(token)
        digest = hashlib.sha256(self.token.encode("utf-8", "surrogateescape")).digest()
        if digest in self.seen:
            self.store.fail(ListingError("the server's listing loops (a continuation token came back)"),
                            "cannot list chunks")
        self.seen.add(digest)
        if keys:
            if max(keys) <= self.last_key:
                self.store.fail(ListingError("the server's listing does not advance (a page repeats keys)"),
                                "cannot list chunks")
            self.last_key = max(keys)
            self.empty_pages = 0
            return
        self.empty_pages += 1
        if self.empty_pages > MAX_EMPTY_PAGES:
            self.store.fail(ListingError(f"the server sent {self.empty_pages} listing pages in a row that are "
                                         "truncated yet hold no key"), "cannot list chunks")


def open_s3_store(location: str, options: StoreOptions, writable: bool) -> Store:
    """Factory for ``s3+http://`` and ``s3+https://`` store locations (buckets are never created)."""
    return S3Store(location, options)


def _index_object(location: str) -> tuple[S3Location, str]:
    """``s3+http://h/bucket/dir/name.caibx`` -> (location, ``dir/name.caibx``)."""
    loc = parse_location(location)
    key = loc.prefix[:-1]
    if not key or urllib.parse.urlsplit(location).path.endswith("/"):
        raise DesyncError(f"index location {location!r} does not name an index file")
    return loc, key


def read_s3_index(location: str, options: StoreOptions) -> bytes:
    loc, key = _index_object(location)
    client = make_client(loc, _credentials(loc, options), options)
    try:
        answer = client.get_object(Bucket=loc.bucket, Key=key)
        body = answer["Body"]
        try:
            return read_object(body, answer.get("ContentLength"), INDEX_SIZE_LIMIT)
        finally:
            body.close()
    except (ObjectTooLarge, AnswerTooLarge) as too_large:
        raise DesyncError(f"cannot read index {location}: {too_large}") from None
    except Exception as exc:
        found = _failure(exc)
        if found is None:
            raise
        if found.code in _MISSING:
            raise IndexMissing(location) from None
        if found.code == "NoSuchBucket":
            raise DesyncError(f"cannot read index {location}: bucket {loc.bucket} does not exist") from None
        raise DesyncError(f"cannot read index {location}: {found.message}") from None
    finally:
        client.close()


def write_s3_index(location: str, data: bytes, options: StoreOptions) -> None:
    loc, key = _index_object(location)
    client = make_client(loc, _credentials(loc, options), options)
    try:
        client.put_object(Bucket=loc.bucket, Key=key, Body=data, ContentType="application/octet-stream")
    except Exception as exc:
        found = _failure(exc)
        if found is None:
            raise
        if found.code == "NoSuchBucket":
            raise DesyncError(f"cannot write index {location}: bucket {loc.bucket} does not exist") from None
        raise DesyncError(f"cannot write index {location}: {found.message}") from None
    finally:
        client.close()
