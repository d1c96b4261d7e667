"""A small threaded HTTP/1.1 server for the chunk and index servers.

One thread per connection with keep-alive, so a slow client or a slow
upstream store never holds up anyone else.  Requests are parsed here
(request line, headers, a Content-Length body; no chunked uploads) and the
raw request target is handed to the service untouched: services match it
exactly and never decode it into a file path.  The optional
``Authorization`` check happens before any service code runs.

Slow or idle clients cannot starve the others: a request's headers must
arrive within ``header_timeout`` of its first byte (and a new connection's
first byte within it too), an idle keep-alive connection is closed after
``idle_timeout``, a body must keep coming, and at most
``max_connections`` connections are open; when a new one arrives at the
cap, the connection that has waited longest for its next request is
closed to make room (busy ones are never cut).  The open-file limit is
raised to the hard limit so the cap, not the limit, decides.
"""

import hmac
import os
import re
import resource
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
from ..errors import InvalidArgument
from ..readbudget import ReadBudget, request_scope

MAX_LINE: Final = 8192
MAX_HEADERS: Final = 100
MAX_HEAD: Final = MAX_LINE * 4
IDLE_TIMEOUT: Final = 60.0
HEADER_TIMEOUT: Final = 20.0
MAX_CONNECTIONS: Final = 1024
# A body must arrive at least this fast (bytes/s) on top of one header_timeout of slack.
MIN_BODY_RATE: Final = 64 * 1024
# Descriptors kept free for the store, logs and the listeners.
_RESERVED_FDS: Final = 64
_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")
SERVER_NAME: Final = f"desync/{__version__}"
SEND_BLOCK: Final = 1 << 20


class IncompleteBody(Exception):
    """The client closed the connection (or stalled past its deadline) before sending the whole body."""


class BodyStream:
    """A request body read piece by piece by the service (servers made with ``stream_put``).

    The body must arrive by ``deadline`` (time.monotonic), as a buffered
    body must: a trickling upload cannot hold its thread forever.
    """

    def __init__(self, reader: "_Reader", length: int, deadline: float) -> None:
        self.reader = reader
        self.remaining = length
        self.deadline = deadline

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body; b"" at its end; IncompleteBody if the client left early."""
        if self.remaining <= 0:
            return b""
        try:
            data = self.reader.some(min(limit, self.remaining), self.deadline)
        except _Gone:
            raise IncompleteBody("connection closed in the middle of the request body") from None
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


class _Gone(Exception):
    """The connection timed out or was closed: drop it without an answer."""


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
        raise InvalidArgument(f"invalid listen address {spec!r} (expected HOST:PORT)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        number = int(port) if port.isdigit() else socket.getservbyname(port, "tcp")
    except OSError:
        raise InvalidArgument(f"unknown port {port!r} in {spec!r}") from None
    if not 0 <= number <= 65535:
        raise InvalidArgument(f"invalid port in {spec!r}")
    return host, number


class HTTPServer:
    """Listens on each address; ``service`` answers every authorised request."""

    def __init__(self, service: Service, tls: ssl.SSLContext | None = None, authorization: str = "",
                 log: RequestLog | None = None, max_body: int = 1 << 30, max_connections: int = MAX_CONNECTIONS,
                 header_timeout: float = HEADER_TIMEOUT, idle_timeout: float = IDLE_TIMEOUT,
                 stream_put: bool = False) -> None:
        """``stream_put``: PUT bodies are left for the service to read from ``Request.stream``."""
        self.service = service
        self.stream_put = stream_put
        self.tls = tls
        self.authorization = authorization.encode()
        self.log = log
        self.max_body = max_body
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max(1, min(max_connections, raise_open_file_limit() - _RESERVED_FDS))
        self.listeners: list[socket.socket] = []
        self.ready_message = ""  # what the command prints once serving
        self.stopped = threading.Event()
        self._conns = _Connections()

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
            sock.listen(1024)
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

    def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting, close idle connections, give requests in progress ``grace`` seconds to finish."""
        self.stop()
        self._conns.close_idle()
        self._conns.wait_empty(grace)

    @property
    def connections(self) -> int:
        return self._conns.count

    def _accept(self, sock: socket.socket) -> None:
        while not self.stopped.is_set():
            try:
                conn, peer = sock.accept()
            except OSError:
                if self.stopped.is_set():
                    return
                time.sleep(0.05)
                continue
            if not self._conns.admit(self.max_connections, self.header_timeout):
                conn.close()
                continue
            threading.Thread(target=self._connection, args=(conn, str(peer[0])), name="desync-conn",
                             daemon=True).start()

    def _connection(self, conn: socket.socket, client: str) -> None:
        sock = conn
        key = id(conn)
        state = _Conn(conn)
        self._conns.enter(key, state)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                conn.settimeout(self.header_timeout)
                sock = self.tls.wrap_socket(conn, server_side=True)
            reader = _Reader(sock)
            wait = self.header_timeout  # a new connection must start its request promptly
            while not self.stopped.is_set() and self._one(sock, reader, client, wait, state):
                wait = self.idle_timeout
        except (OSError, ValueError, _Gone):
            pass
        finally:
            self._conns.leave(key)
            try:
                sock.close()
            except OSError:
                pass

    def _one(self, sock: socket.socket, reader: "_Reader", client: str, wait: float, state: "_Conn") -> bool:
        """Serve one request; False when the connection should close.

        A request that holds a large object (a body or a chunk past
        readbudget.LARGE_READ) keeps the process's one large-object permit
        until its reply is sent, so many connections cannot each hold one.
        """
        with request_scope():
            return self._serve_one(sock, reader, client, wait, state)

    def _serve_one(self, sock: socket.socket, reader: "_Reader", client: str, wait: float, state: "_Conn") -> bool:
        req = Request("-", "-", "-", client)
        state.idle_since = time.monotonic()
        try:
            head = reader.head(wait, self.header_timeout)
            state.idle_since = 0.0
            if head is None:
                return False
            _parse_head(head, req)
            if req.headers.get("transfer-encoding"):
                raise _Refused(HTTPStatus.NOT_IMPLEMENTED, "chunked request bodies are not supported")
            self._read_body(sock, reader, req)
        except _Refused as refused:
            state.idle_since = 0.0
            self._send(sock, reader, req, text(refused.status, str(refused)), keep=False)
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
        self._send(sock, reader, req, reply, keep)
        return keep

    def _read_body(self, sock: socket.socket, reader: "_Reader", req: Request) -> None:
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
            reader.set_timeout(self.header_timeout)
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        allowed = self.header_timeout + length / MIN_BODY_RATE
        if self.stream_put and req.method == "PUT":
            req.stream = BodyStream(reader, length, time.monotonic() + allowed)
            return
        ReadBudget().grow(length)  # kept by the request scope until the reply is sent
        req.body = reader.body(length, allowed)

    def _send(self, sock: socket.socket, reader: "_Reader", req: Request, reply: Reply, keep: bool) -> None:
        if reply.file_fd < 0:
            self._send_reply(sock, reader, req, reply, keep)
            return
        try:
            self._send_reply(sock, reader, req, reply, keep)
            if req.method != "HEAD":
                _send_file(sock, reply.file_fd, reply.file_size)
        finally:
            os.close(reply.file_fd)

    def _send_reply(self, sock: socket.socket, reader: "_Reader", req: Request, reply: Reply, keep: bool) -> None:
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
        # A client that stops reading is dropped after the idle timeout, like one that stops sending.
        reader.set_timeout(self.idle_timeout)
        if len(body) > SEND_BLOCK:
            sock.sendall(head.encode("latin-1") + b"\r\n")  # no copy of a large body to glue the head on
            sock.sendall(body)
        else:
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


class _Conn:
    """One open connection; ``idle_since`` is when it began waiting for its next request (0: busy).

    Only its own thread sets ``idle_since`` (a plain store, no lock on the
    per-request path); the accept thread reads it to choose whom to close.
    """

    __slots__ = ("sock", "idle_since")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.idle_since = 0.0


class _Connections:
    """The open connections and which of them wait for a request (the ones that may be closed for room)."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.count = 0
        self.open: dict[int, _Conn] = {}

    def admit(self, limit: int, patience: float) -> bool:
        """Make room for one more connection: close the longest-waiting idle one at the cap.

        When every connection is busy, wait up to ``patience`` for one to end;
        False if none did (the new connection is then closed).
        """
        deadline = time.monotonic() + patience
        with self.cond:
            while self.count >= limit:
                idle = [c for c in self.open.values() if c.idle_since > 0.0]
                if idle:
                    victim = min(idle, key=_idle_since)
                    victim.idle_since = 0.0
                    _cut(victim.sock)
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.05))
            self.count += 1
        return True

    def enter(self, key: int, conn: _Conn) -> None:
        with self.cond:
            self.open[key] = conn

    def leave(self, key: int) -> None:
        with self.cond:
            self.open.pop(key, None)
            self.count -= 1
            self.cond.notify_all()

    def close_idle(self) -> None:
        with self.cond:
            for conn in self.open.values():
                if conn.idle_since > 0.0:
                    _cut(conn.sock)

    def wait_empty(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.count > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.cond.wait(left)


def _idle_since(conn: _Conn) -> float:
    return conn.idle_since


def _cut(sock: socket.socket) -> None:
    """Wake the thread blocked on ``sock`` by shutting the connection down; it then closes it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Reader:
    """Buffered reads from a connection, each read bounded by an overall deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.timeout = -1.0

    def set_timeout(self, seconds: float) -> None:
        """Set the socket timeout, skipping the system call when it is within half a second already."""
        if abs(seconds - self.timeout) > 0.5:
            self.sock.settimeout(seconds)
            self.timeout = seconds

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Gone()
        self.set_timeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise _Gone() from None
        if not data:
            raise _Gone()
        self.buf += data

    def head(self, wait: float, limit: float) -> bytes | None:
        """The next request's head (without the blank line); None on a clean close before it began.

        The first byte may take ``wait``; from then the whole head (blank
        lines before it included) must arrive within ``limit``.
        """
        buf = self.buf
        if not buf:
            try:
                self._fill(time.monotonic() + wait)
            except _Gone:
                return None
        deadline = time.monotonic() + limit
        searched = 0
        while True:
            if buf[0] in (13, 10):  # blank lines before a request are allowed
                blank = len(buf) - len(buf.lstrip(b"\r\n"))  # bound first (mypyc: slice bounds)
                del buf[:blank]
                searched = 0
                if not buf:
                    self._fill(deadline)
                    continue
            m = _HEAD_END.search(buf, max(0, searched - 3))
            if m is not None:
                start, end = m.span()  # bound first: mypyc evaluates a call in a slice bound twice
                head = bytes(buf[:start])
                del buf[:end]
                return head
            if len(buf) > MAX_HEAD:
                first = buf.find(b"\n")
                if first < 0 or first > MAX_LINE:
                    raise _Refused(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
                raise _Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large")
            searched = len(buf)
            self._fill(deadline)

    def some(self, most: int, deadline: float) -> bytes:
        """Up to ``most`` bytes: what is buffered, else what the next receive brings (_Gone at the deadline)."""
        if not self.buf:
            self._fill(deadline)
        take = min(most, len(self.buf))
        data = bytes(self.buf[:take])
        del self.buf[:take]
        return data

    def body(self, length: int, limit: float) -> bytes:
        deadline = time.monotonic() + limit
        while len(self.buf) < length:
            try:
                self._fill(deadline)
            except _Gone:
                raise OSError("connection closed in the middle of the request body") from None
        # One copy out of the buffer: slicing the bytearray first would hold the body three times at once.
        with memoryview(self.buf) as view:
            body = bytes(view[:length])
        del self.buf[:length]
        return body


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (each connection needs a descriptor); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (OSError, ValueError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _parse_head(head: bytes, req: Request) -> None:
    """Fill in the request line and headers from a complete head."""
    lines = head.split(b"\n")
    line = lines[0]
    if len(line) > MAX_LINE:
        raise _Refused(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
    parts = line.decode("latin-1").rstrip("\r").split(" ")
    if len(parts) != 3:
        raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request line")
    req.method, req.target, req.version = parts
    if req.version not in ("HTTP/1.1", "HTTP/1.0"):
        version = req.version
        req.version = "HTTP/1.1"
        if version.startswith("HTTP/"):
            raise _Refused(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "unsupported HTTP version")
        raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request line")
    if len(lines) > MAX_HEADERS + 1:
        raise _Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header lines")
    for raw in lines[1:]:
        if len(raw) > MAX_LINE:
            raise _Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "header line too long")
        name, sep, value = raw.decode("latin-1").rstrip("\r").partition(":")
        if not sep or not name or name != name.strip():
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed header line")
        req.headers[name.lower()] = value.strip()


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
