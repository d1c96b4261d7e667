"""A small threaded HTTP/1.1 server for the chunk and index servers.

One thread per connection with keep-alive, so a slow client or a slow
upstream store never holds up anyone else.  Requests are parsed here
(request line, headers, a Content-Length body; no chunked uploads) and the
raw request target is handed to the service untouched: services match it
exactly and never decode it into a file path.  The optional
``Authorization`` check happens before any service code runs.
"""

import hmac
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import IO, Final

from .._version import __version__

MAX_LINE: Final = 8192
SEND_BLOCK: Final = 1 << 20
MAX_HEADERS: Final = 100
IDLE_TIMEOUT: Final = 300.0
SERVER_NAME: Final = f"desync/{__version__}"


class IncompleteBody(Exception):
    """The client closed the connection before sending the whole request body."""


class BodyStream:
    """A request body read piece by piece by the service (servers made with ``stream_put``)."""

    def __init__(self, rfile: IO[bytes], length: int) -> None:
        self.rfile = rfile
        self.remaining = length

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body; b"" at its end; IncompleteBody if the client left early."""
        if self.remaining <= 0:
            return b""
        data = self.rfile.read(min(limit, self.remaining))
        if not data:
            raise IncompleteBody("connection closed in the middle of the request body")
        self.remaining -= len(data)
        return data


@dataclass(slots=True)
class Request:
    method: str
    target: str
    version: str
    client: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: BodyStream | None = None


@dataclass(slots=True)
class Reply:
    """An answer; with ``file_fd`` set, the body is the first ``file_size`` bytes of that file (closed after)."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    file_fd: int = -1
    file_size: int = 0


Service = Callable[[Request], Reply]


class _Refused(Exception):
    """A request that cannot be read properly; answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def text(status: int, message: str) -> Reply:
    return Reply(status, (message + "\n").encode())


class RequestLog:
    """Request lines in the common log format, to a file or stdout; thread-safe."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def write(self, req: Request, status: int, size: int) -> None:
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
        line = f'{req.client} - - [{stamp}] "{_printable(req.method)} {_printable(req.target)} ' \
               f'{_printable(req.version)}" {status} {size}\n'
        with self.lock:
            self.stream.write(line)
            self.stream.flush()


def _printable(s: str) -> str:
    return "".join(c if " " < c < "\x7f" and c != '"' else f"\\x{ord(c):02x}" for c in s)


def parse_address(spec: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all interfaces); PORT may be a service name."""
    host, sep, port = spec.rpartition(":")
    if not sep:
        raise ValueError(f"invalid listen address {spec!r} (expected HOST:PORT)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        number = int(port) if port.isdigit() else socket.getservbyname(port, "tcp")
    except OSError:
        raise ValueError(f"unknown port {port!r} in {spec!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"invalid port in {spec!r}")
    return host, number


class HTTPServer:
    """Listens on each address; ``service`` answers every authorised request."""

    def __init__(self, service: Service, tls: ssl.SSLContext | None = None, authorization: str = "",
                 log: RequestLog | None = None, max_body: int = 1 << 30, stream_put: bool = False) -> None:
        """``stream_put``: PUT bodies are left for the service to read from ``Request.stream``."""
        self.service = service
        self.stream_put = stream_put
        self.tls = tls
        self.authorization = authorization.encode()
        self.log = log
        self.max_body = max_body
        self.listeners: list[socket.socket] = []
        self.stopped = threading.Event()

    def listen(self, spec: str) -> str:
        """Bind one address; returns the URL it serves (with the real port when 0 was asked)."""
        host, port = parse_address(spec)
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                                   socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and not host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.bind(addr)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self.listeners.append(sock)
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        return f"{'https' if self.tls else 'http'}://{shown}:{bound[1]}/"

    def start(self) -> None:
        for sock in self.listeners:
            threading.Thread(target=self._accept, args=(sock,), name="desync-accept", daemon=True).start()

    def wait(self) -> None:
        """Block until stop(); wakes up regularly so signal handlers run in the main thread."""
        while not self.stopped.wait(0.5):
            pass

    def stop(self) -> None:
        self.stopped.set()
        for sock in self.listeners:
            sock.close()

    def _accept(self, sock: socket.socket) -> None:
        while not self.stopped.is_set():
            try:
                conn, peer = sock.accept()
            except OSError:
                if self.stopped.is_set():
                    return
                time.sleep(0.05)
                continue
            threading.Thread(target=self._connection, args=(conn, str(peer[0])), name="desync-conn",
                             daemon=True).start()

    def _connection(self, conn: socket.socket, client: str) -> None:
        sock = conn
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(IDLE_TIMEOUT)
            if self.tls is not None:
                sock = self.tls.wrap_socket(conn, server_side=True)
            rfile = sock.makefile("rb")
            try:
                while self._one(sock, rfile, client):
                    pass
            finally:
                rfile.close()
        except (OSError, ValueError):
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _one(self, sock: socket.socket, rfile: IO[bytes], client: str) -> bool:
        """Serve one request; False when the connection should close."""
        req = Request("-", "-", "-", client)
        try:
            if not _read_head(rfile, req):
                return False
            if req.headers.get("transfer-encoding"):
                raise _Refused(HTTPStatus.NOT_IMPLEMENTED, "chunked request bodies are not supported")
            self._read_body(sock, rfile, req)
        except _Refused as refused:
            self._send(sock, req, text(refused.status, str(refused)), keep=False)
            return False
        keep = _keep_alive(req)
        if self.authorization and not hmac.compare_digest(
                req.headers.get("authorization", "").encode("latin-1"), self.authorization):
            reply = text(HTTPStatus.UNAUTHORIZED, "Unauthorized")
        else:
            try:
                reply = self.service(req)
            except Exception as exc:
                sys.stderr.write(f"desync: {req.method} {_printable(req.target)}: internal error: {exc}\n")
                reply = text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal server error")
        if req.stream is not None and req.stream.remaining:
            keep = False  # the rest of the body is still on the connection
        self._send(sock, req, reply, keep)
        return keep

    def _read_body(self, sock: socket.socket, rfile: IO[bytes], req: Request) -> None:
        raw = req.headers.get("content-length", "")
        if not raw:
            if req.method in ("PUT", "POST"):
                raise _Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
            return
        if not raw.isdigit():
            raise _Refused(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
        length = int(raw)
        if length > self.max_body:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
        if req.headers.get("expect", "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.stream_put and req.method == "PUT":
            req.stream = BodyStream(rfile, length)
            return
        body = rfile.read(length)
        if len(body) != length:
            raise OSError("connection closed in the middle of the request body")
        req.body = body

    def _send(self, sock: socket.socket, req: Request, reply: Reply, keep: bool) -> None:
        if reply.file_fd < 0:
            self._send_reply(sock, req, reply, keep)
            return
        try:
            self._send_reply(sock, req, reply, keep)
            if req.method != "HEAD":
                _send_file(sock, reply.file_fd, reply.file_size)
        finally:
            os.close(reply.file_fd)

    def _send_reply(self, sock: socket.socket, req: Request, reply: Reply, keep: bool) -> None:
        status = reply.status
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        body = b"" if req.method == "HEAD" else reply.body
        length = len(reply.body) if reply.file_fd < 0 else reply.file_size
        head = (f"HTTP/1.1 {status} {phrase}\r\nServer: {SERVER_NAME}\r\nContent-Type: {reply.content_type}\r\n"
                f"Content-Length: {length}\r\n")
        if not keep:
            head += "Connection: close\r\n"
        elif req.version == "HTTP/1.0":
            head += "Connection: keep-alive\r\n"
        if self.log is not None:
            self.log.write(req, status, 0 if req.method == "HEAD" else length)
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)


def _send_file(sock: socket.socket, fd: int, size: int) -> None:
    """Send the first ``size`` bytes of ``fd``; a file that shrank meanwhile drops the connection."""
    offset = 0
    while offset < size:
        block = os.pread(fd, min(SEND_BLOCK, size - offset), offset)
        if not block:
            raise OSError("the file shrank while being sent")
        sock.sendall(block)
        offset += len(block)


def _read_head(rfile: IO[bytes], req: Request) -> bool:
    """Fill in the request line and headers; False on a clean end of the connection."""
    line = rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(MAX_LINE + 1)
    if not line:
        return False
    if len(line) > MAX_LINE:
        raise _Refused(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3:
        raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request line")
    req.method, req.target, req.version = parts
    if req.version not in ("HTTP/1.1", "HTTP/1.0"):
        version = req.version
        req.version = "HTTP/1.1"
        if version.startswith("HTTP/"):
            raise _Refused(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "unsupported HTTP version")
        raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request line")
    for _ in range(MAX_HEADERS + 1):
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise _Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "header line too long")
        if line in (b"\r\n", b"\n"):
            return True
        if not line:
            raise OSError("connection closed in the middle of the request headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed header line")
        req.headers[name.lower()] = value.strip()
    raise _Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header lines")


def _keep_alive(req: Request) -> bool:
    connection = req.headers.get("connection", "").lower()
    if req.version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def server_tls(cert: str, key: str, client_ca: str = "") -> ssl.SSLContext:
    """TLS for the server; with ``client_ca`` every client must present a certificate it signed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key or None)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=client_ca)
    return ctx
