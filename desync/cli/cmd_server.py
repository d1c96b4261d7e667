"""Server commands: chunk-server and index-server."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from .. import digest as digest_mod
from ..constants import CHUNK_SIZE_LIMIT
from ..errors import DesyncError, UsageError
from ..index import INDEX_SIZE_LIMIT
from ..server.chunks import ChunkService
from ..server.httpd import HEADER_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS, HTTPServer, RequestLog, Service, server_tls
from ..server.indexes import IndexService, StoreIndexService
from ..stores import Store, compose
from ..stores.indexes import LOCAL_INDEXES, index_store
from . import common, stopsignals

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from types import FrameType
    from typing import IO, Any


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", "--listen", action="append", default=[], metavar="ADDR:PORT",
                   help="address to listen on (repeatable; default :http, port 0 picks a free port)")
    p.add_argument("-w", "--writable", "--writeable", action="store_true", dest="writable",
                   help="accept uploads (PUT)")
    p.add_argument("--cert", default="", metavar="FILE", help="serve HTTPS with this certificate")
    p.add_argument("--key", default="", metavar="FILE", help="private key of --cert")
    p.add_argument("--mutual-tls", action="store_true", help="require client certificates")
    p.add_argument("--client-ca", default="", metavar="FILE", help="CA that signs the client certificates")
    p.add_argument("--authorization", default="", metavar="VALUE",
                   help="required Authorization header value (default $DESYNC_HTTP_AUTH)")
    p.add_argument("--log", default="", metavar="FILE", help="request log file ('-' for stdout)")
    p.add_argument("--max-connections", type=common.positive_int, default=MAX_CONNECTIONS, metavar="N",
                   help="open connections at most; at the cap the longest-idle one is closed for a new one "
                        f"(default {MAX_CONNECTIONS})")
    p.add_argument("--header-timeout", type=_positive_float, default=HEADER_TIMEOUT, metavar="SECONDS",
                   help="time a client has to send a request's headers; idle keep-alive connections are "
                        f"closed after {IDLE_TIMEOUT:g} s (default {HEADER_TIMEOUT:g})")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    p = sub.add_parser("chunk-server", help="serve chunk stores over HTTP(S)",
                       description="Serve the chunks of the stores (-s, chained; '|' for failover groups) "
                                   "over HTTP(S), optionally with a cache (-c). Chunks are served in the "
                                   "stores' own form without verification (clients verify); uploads (-w) "
                                   "are verified. With --store-file, stores come from a JSON file "
                                   '({"stores": [...], "cache": "..."}) that SIGHUP reloads.')
    common.add_store_options(p, cache=True, uncompressed_help="serve and accept uncompressed chunks (no .cacnk)")
    _add_server_options(p)
    p.add_argument("--store-file", default="", metavar="FILE", help="JSON file listing stores and cache")
    p.add_argument("--skip-verify-read", action="store_true", default=True,
                   help="serve chunks without checking them against their IDs (default true: clients verify; "
                        "--skip-verify-read=false checks every chunk read from the stores)")
    p.add_argument("--skip-verify-write", action="store_true", default=False,
                   help="store uploads (-w) without checking them against their IDs (default false: every "
                        "upload is verified)")
    p.set_defaults(func=run_chunk_server)

    p = sub.add_parser("index-server", help="serve index files over HTTP(S)",
                       description="Serve the index files of a directory, or of a remote index store (HTTP(S), "
                                   "S3, SFTP; read with the store options), over HTTP(S); with -w, accept "
                                   "uploads (validated, written atomically).")
    p.add_argument("-s", "--store", required=True, metavar="LOCATION", dest="index_dir",
                   help="index directory or index store URL")
    common.add_store_options(p, stores=False)
    _add_server_options(p)
    p.set_defaults(func=run_index_server)


def _upstream(args: argparse.Namespace, locations: list[str], cache: str) -> Store:
    """The served store: reads unverified, each location with its own (config) options.

    ``-u`` is the server's wire format, not a property of the upstream stores.
    """
    upstream = argparse.Namespace(**vars(args))
    upstream.uncompressed = False
    upstream.skip_verify = args.skip_verify_read
    digest = digest_mod.by_name(args.digest)
    find = common.options_for(upstream, digest)
    store = compose.chain(locations, find, writable=args.writable)
    return compose.cached(store, cache, find) if cache else store


def _serve(args: argparse.Namespace, service: Service, what: str, max_body: int,
           stream_put: bool = False) -> HTTPServer:
    if args.mutual_tls and not args.client_ca:
        raise UsageError("--mutual-tls needs --client-ca")
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key go together")
    if (args.mutual_tls or args.client_ca) and not args.cert:
        raise UsageError("client certificates need HTTPS (--cert and --key)")
    try:
        tls = server_tls(args.cert, args.key, args.client_ca if args.mutual_tls else "") if args.cert else None
    except OSError as exc:
        raise DesyncError(f"cannot load TLS certificate: {exc.strerror or exc}") from None
    log: RequestLog | None = None
    if args.log:
        stream: IO[str]
        if args.log == "-":
            stream = sys.stdout
        else:
            try:
                stream = open(args.log, "a", encoding="utf-8")
            except OSError as exc:
                raise DesyncError(f"cannot open log {args.log}: {exc.strerror}") from None
        log = RequestLog(stream)
    auth = args.authorization or os.environ.get("DESYNC_HTTP_AUTH", "")
    server = HTTPServer(service, tls=tls, authorization=auth, log=log, max_body=max_body, stream_put=stream_put,
                        max_connections=args.max_connections, header_timeout=args.header_timeout)
    for spec in args.listen or [":http"]:
        try:
            url = server.listen(spec)
        except OSError as os_error:
            raise DesyncError(f"cannot listen on {spec}: {os_error.strerror or os_error}") from None
        server.ready_message += f"desync: {what} listening on {url}\n"
    return server


def run_chunk_server(args: argparse.Namespace) -> int:
    if args.store_file:
        if args.stores or args.cache:
            raise UsageError("use either --store-file or -s/-c, not both")
        locations, cache = common.stores_from_file(args.store_file)
    else:
        if not args.stores:
            raise UsageError("no store given (use -s STORE or --store-file FILE)")
        locations, cache = list(args.stores), args.cache
    service = ChunkService(_upstream(args, locations, cache), digest_mod.by_name(args.digest),
                           writable=args.writable, uncompressed=args.uncompressed,
                           verify_uploads=not args.skip_verify_write)
    server = _serve(args, service, "chunk-server", 2 * CHUNK_SIZE_LIMIT)

    reloading = threading.Lock()

    def reload() -> None:
        with reloading:
            try:
                new_locations, new_cache = common.stores_from_file(args.store_file)
                service.store = _upstream(args, new_locations, new_cache)
            except DesyncError as exc:
                sys.stderr.write(f"desync: reload failed, keeping the current stores: {exc}\n")
                return
        # The old stores are not closed: requests still running on them finish normally.
        sys.stderr.write(f"desync: reloaded stores from {args.store_file}\n")
        sys.stderr.flush()

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        if args.store_file:
            threading.Thread(target=reload, name="desync-reload", daemon=True).start()

    if args.store_file:
        signal.signal(signal.SIGHUP, on_hangup)
    return _run_until_stopped(server)


def run_index_server(args: argparse.Namespace) -> int:
    service: Service
    if index_store(args.index_dir) is not LOCAL_INDEXES:
        service = StoreIndexService(args.index_dir, common.store_options(args, location=args.index_dir),
                                    writable=args.writable)
    elif not os.path.isdir(args.index_dir):
        raise DesyncError(f"index directory {args.index_dir} does not exist")
    else:
        service = IndexService(args.index_dir, writable=args.writable)
    server = _serve(args, service, "index-server", INDEX_SIZE_LIMIT, stream_put=True)
    return _run_until_stopped(server)


def _run_until_stopped(server: HTTPServer) -> int:
    """Serve until a signal: SIGTERM stops cleanly (requests in progress finish) with status 0."""
    try:
        server.start()
        # Announced inside the try: a SIGTERM from anyone who saw the message stops cleanly.
        sys.stderr.write(server.ready_message)
        sys.stderr.flush()
        server.wait()
    except KeyboardInterrupt:
        server.shutdown()
        if stopsignals.received() == signal.SIGTERM:
            sys.stderr.write("desync: stopped\n")
            return 0
        raise
    return 0
