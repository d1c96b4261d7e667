"""HTTP(S) requests for the HTTP chunk and index stores: keep-alive, TLS, retries.

Each worker thread keeps its own persistent connection, so parallel chunk
fetches never queue behind each other.  Network errors and 5xx answers are
retried with exponential backoff; every other answer goes back to the
caller, which decides what a 404 means.
"""

import io
import os
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Final

from .._version import __version__
from ..compression import stored_size_limit
from ..errors import NetworkError, StoreError
from ..peertext import peer_text
from ..ratelimit import Throttle
from ..rawio import SocketSource
from .base import StoreOptions

USER_AGENT: Final = f"desync/{__version__}"
MAX_LINE: Final = 65536
MAX_HEADERS: Final = 200
# Pipelined responses arrive back to back: one receive takes several of them.
RECV_BUFFER: Final = 256 << 10
# The largest response body taken when the caller names no bound: a chunk file of the largest size.
BODY_LIMIT: Final = stored_size_limit(0)


@dataclass(slots=True)
class Response:
    status: int
    body: bytes

    def reason(self) -> str:
        """The status and the first line of the body, for error messages (escaped: the server is a peer)."""
        text = self.body[:200].decode("utf-8", "replace").strip().splitlines()
        return f"HTTP {self.status}" + (f" ({peer_text(text[0])})" if text else "")


class Disconnected(NetworkError):
    """The server closed the connection before answering (typically an idle keep-alive one)."""


# Connection-level failures that a request on a reused keep-alive connection may hit
# when the server closed it while idle; one immediate reconnect is not a retry.
_STALE: Final = (Disconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read exactly one response.

    Written directly on a socket because ``http.client`` parses every
    response header block with the email package and builds a new reader
    per response, which halves chunk throughput on a fast link.
    """

    def __init__(self, host: str, port: int, timeout: float | None, tls: ssl.SSLContext | None) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
                rfile: "io.BufferedReader[Any]" = io.BufferedReader(socket.SocketIO(sock, "rb"), RECV_BUFFER)
            else:
                _kernel_timeouts(sock, timeout)
                rfile = io.BufferedReader(SocketSource(sock), RECV_BUFFER)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.rfile: "io.BufferedReader[Any]" = rfile
        self.open = True

    def exchange(self, head: bytes, body: bytes | None, method: str, limit: int = BODY_LIMIT) -> Response:
        self.sock.sendall(head + body if body else head)
        return self.read_response(method, limit)

    def read_response(self, method: str, limit: int = BODY_LIMIT) -> Response:
        """Read the next response on the connection (requests may be pipelined ahead of it).

        A body longer than ``limit`` is a :class:`NetworkError` before any
        of it is buffered, whatever length the server declares.
        """
        while True:
            status, headers = self._read_head()
            if status >= 200:
                break
        if method == "HEAD" or status in (204, 304):
            data = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            data = self._read_chunked(limit)
        elif "content-length" in headers:
            data = self._read_exactly(_bounded(_number(headers["content-length"]), limit))
        else:
            self.open = False
            data = self.rfile.read(limit + 1)
            _bounded(len(data), limit)
        if "close" in headers.get("connection", "").lower():
            self.open = False
        return Response(status, data)

    def _read_head(self) -> tuple[int, dict[str, str]]:
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            raise Disconnected("server closed the connection without answering")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise NetworkError("not an HTTP response")
        if parts[0] == b"HTTP/1.0":
            self.open = False
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = self.rfile.readline(MAX_LINE + 1)
            if line in (b"\r\n", b"\n"):
                return int(parts[1]), headers
            if not line:
                raise NetworkError("connection closed in the middle of the response")
            name, _, value = line.decode("latin-1").partition(":")
            key = name.strip().lower()
            if key == "connection" and "keep-alive" in value.lower():
                self.open = True
            headers[key] = value.strip()
        raise NetworkError("too many response headers")

    def _read_exactly(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise NetworkError("connection closed in the middle of the response")
        return data

    def _read_chunked(self, limit: int) -> bytes:
        pieces: list[bytes] = []
        total = 0
        while True:
            size = _number(self.rfile.readline(MAX_LINE + 1).split(b";", 1)[0].strip().decode("latin-1"), 16)
            if size == 0:
                break
            total = _bounded(total + size, limit)
            pieces.append(self._read_exactly(size))
            self._read_exactly(2)
        while self.rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(pieces)

    def close(self) -> None:
        """Close, even while another thread is blocked reading: shutting the socket down wakes it first."""
        self.open = False
        try:
            # Wake a thread blocked reading first: closing its buffered reader would wait for it.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass


def _kernel_timeouts(sock: socket.socket, timeout: float | None) -> None:
    """Let the kernel time out blocking sends and receives.

    A Python-level socket timeout polls before every recv: two system calls
    and two GIL hand-offs each time, which many fetching threads pay dearly.
    """
    sock.settimeout(None)
    if timeout:
        seconds = int(timeout)
        value = struct.pack("ll", seconds, int((timeout - seconds) * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _number(text: str, base: int = 10) -> int:
    try:
        value = int(text, base)
    except ValueError:
        raise NetworkError(f"invalid length {text!r} in the response") from None
    if value < 0:
        raise NetworkError("negative length in the response")
    return value


def _bounded(length: int, limit: int) -> int:
    if length > limit:
        raise NetworkError(f"response body of {length} bytes is larger than the {limit} expected")
    return length


class _Connections:
    """One connection per thread; all of them, for close()."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.all: list[Connection] = []

    def get(self) -> Connection | None:
        conn: Connection | None = getattr(self.local, "conn", None)
        return conn

    def set(self, conn: Connection | None) -> None:
        old = self.get()
        if old is not None:
            old.close()
            with self.lock:
                if old in self.all:
                    self.all.remove(old)
        self.local.conn = conn
        if conn is not None:
            with self.lock:
                self.all.append(conn)

    def close_all(self) -> None:
        with self.lock:
            conns, self.all = self.all, []
        for conn in conns:
            conn.close()


class HTTPClient:
    """Requests against one ``http(s)://host[:port]/base/`` URL."""

    def __init__(self, url: str, options: StoreOptions) -> None:
        parts = urllib.parse.urlsplit(url)
        self.scheme = parts.scheme.lower()
        if self.scheme not in ("http", "https") or not parts.hostname:
            raise StoreError(f"invalid HTTP location {url!r}")
        self.host = parts.hostname
        try:
            self.port = parts.port or (443 if self.scheme == "https" else 80)
        except ValueError:
            raise StoreError(f"invalid port in {url!r}") from None
        path = parts.path or "/"
        self.base_path = path if path.endswith("/") else path + "/"
        self.url = f"{self.scheme}://{parts.netloc}{self.base_path}"
        self.options = options
        self.tls = _tls_context(options) if self.scheme == "https" else None
        default_port = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        headers = [f"Host: {host if self.port == default_port else f'{host}:{self.port}'}",
                   f"User-Agent: {USER_AGENT}", "Accept-Encoding: identity"]
        if options.http_auth:
            headers.append(f"Authorization: {options.http_auth}")
        if options.http_cookie:
            headers.append(f"Cookie: {options.http_cookie}")
        if any("\r" in h or "\n" in h for h in headers):
            raise StoreError(f"{self.url}: line breaks in HTTP header values")
        self.header_lines = "".join(h + "\r\n" for h in headers)
        self.conns = _Connections()
        self.throttle = Throttle(options.rate_limit)

    def _connect(self) -> Connection:
        timeout = self.options.timeout if self.options.timeout > 0 else None
        return Connection(self.host, self.port, timeout, self.tls)

    def request(self, method: str, name: str, body: bytes | None = None, limit: int = BODY_LIMIT) -> Response:
        """``method`` on base + ``name``, retried on network errors, 5xx answers and bodies over ``limit``."""
        path = self.base_path + name
        attempts = 1 + max(0, self.options.error_retry)
        delay = self.options.error_retry_base_interval
        failure = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(delay)
                delay *= 2
            try:
                response = self._once(method, path, body, limit)
            except ssl.SSLCertVerificationError as untrusted:
                raise StoreError(f"{self.url}: TLS certificate not trusted: {untrusted.verify_message}") from None
            except (OSError, NetworkError) as exc:
                failure = _describe(exc, self.options.timeout)
                continue
            if response.status >= 500:
                failure = response.reason()
                continue
            return response
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        raise NetworkError(f"{method} {self.url}{name}: {failure}{tries}")

    def _once(self, method: str, path: str, body: bytes | None, limit: int) -> Response:
        conn = self.conns.get()
        reused = conn is not None
        if conn is None:
            conn = self._connect()
            self.conns.set(conn)
        try:
            return self._exchange(conn, method, path, body, limit)
        except _STALE:
            if not reused:
                self.conns.set(None)
                raise
        except BaseException:
            self.conns.set(None)
            raise
        conn = self._connect()
        self.conns.set(conn)
        try:
            return self._exchange(conn, method, path, body, limit)
        except BaseException:
            self.conns.set(None)
            raise

    def get_many(self, names: list[str], limit: int = BODY_LIMIT) -> list[Response]:
        """GET several names pipelined on this thread's connection: one send, responses in order.

        Fewer system calls and thread hand-offs than one request at a time.
        Returns the responses read before anything went wrong (possibly none);
        the caller asks for the rest with :meth:`request`, which retries.
        """
        got: list[Response] = []
        conn = self.conns.get()
        try:
            if conn is None:
                conn = self._connect()
                self.conns.set(conn)
            heads = b"".join((self._head("GET", self.base_path + n, None) + "\r\n").encode("latin-1")
                             for n in names)
            conn.sock.sendall(heads)
            for _ in names:
                got.append(conn.read_response("GET", limit))
                self.throttle.account(len(got[-1].body))
                if not conn.open:
                    break
            if not conn.open:
                self.conns.set(None)
        except (OSError, NetworkError):
            self.conns.set(None)
        except BaseException:
            self.conns.set(None)
            raise
        return got

    def _head(self, method: str, path: str, body: bytes | None) -> str:
        head = f"{method} {urllib.parse.quote(path, safe='/%:@!$&()*+,;=~-._')} HTTP/1.1\r\n{self.header_lines}"
        if body is not None:
            head += f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
        return head

    def _exchange(self, conn: Connection, method: str, path: str, body: bytes | None, limit: int) -> Response:
        head = self._head(method, path, body)
        response = conn.exchange((head + "\r\n").encode("latin-1"), body, method, limit)
        if not conn.open:
            self.conns.set(None)
        self.throttle.account(len(response.body) + (len(body) if body else 0))
        return response

    def close(self) -> None:
        self.conns.close_all()


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, (TimeoutError, BlockingIOError)):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _tls_context(options: StoreOptions) -> ssl.SSLContext:
    """The system trust store, a custom CA, or (``trust_insecure``) no verification at all."""
    try:
        ctx = ssl.create_default_context(cafile=options.ca_cert or None)
        if options.trust_insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if options.client_cert:
            ctx.load_cert_chain(options.client_cert, options.client_key or None)
        elif options.client_key:
            raise StoreError("a client key needs a client certificate (--client-cert)")
    except (OSError, ssl.SSLError) as exc:
        what = next((f for f in (options.ca_cert, options.client_cert, options.client_key)
                     if f and not os.path.exists(f)), "")
        detail = f"{what}: no such file" if what else (getattr(exc, "reason", None) or str(exc))
        raise StoreError(f"cannot set up TLS: {detail}") from None
    return ctx
