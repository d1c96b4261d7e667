"""Helpers for the HTTP tests: servers in subprocesses or threads, raw requests, a flaky proxy."""

import http.client
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conftest import FIXTURES, NEUTRAL_DIR, desync_env

if TYPE_CHECKING:
    from desync.server.httpd import HTTPServer, Service

CERTS = FIXTURES / "certs"


class ServerProcess:
    """``desync chunk-server``/``index-server`` on a free loopback port; stderr is collected."""

    def __init__(self, *args: object, env: dict[str, str] | None = None,
                 preexec_fn: Callable[[], None] | None = None) -> None:
        cmd = [sys.executable, "-m", "desync", *map(str, args), "-l", "127.0.0.1:0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or desync_env(),
                                     cwd=NEUTRAL_DIR, preexec_fn=preexec_fn)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        assert self.proc.stderr is not None
        threading.Thread(target=self._drain, daemon=True).start()
        line = self.wait_for(r"listening on (\S+)", 30)
        m = re.search(r"listening on (\S+)", line)
        assert m
        self.url = m.group(1)
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self.changed:
                self.lines.append(raw.decode(errors="replace"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append("<exit>")
            self.changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 10, start: int = 0) -> str:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines[start:]:
                    if re.search(pattern, line):
                        return line
                    if line == "<exit>":
                        raise AssertionError(f"server exited ({self.proc.wait()}): {''.join(self.lines)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} from the server: {''.join(self.lines)}")
                self.changed.wait(left)

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StaticServer:
    """``python -m http.server`` serving a directory (a plain static web server)."""

    def __init__(self, directory: Path) -> None:
        cmd = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(directory)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        m = re.search(r"port (\d+)", line)
        assert m, line
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> "StaticServer":
        return self

    def __exit__(self, *exc: object) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def raw_request(port: int, data: bytes, timeout: float = 5) -> tuple[int, bytes]:
    """Send bytes as they are (no client-side normalisation); the status and the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                block = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not block:
                break
            chunks.append(block)
            if b"\r\n\r\n" in b"".join(chunks) and data.startswith(b"HEAD"):
                break
    answer = b"".join(chunks)
    m = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    assert m, answer[:200]
    return int(m.group(1)), answer


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class FlakyProxy:
    """An HTTP proxy in front of ``upstream`` that spoils every ``every``-th request.

    Spoiled requests rotate through a 500 answer, a connection dropped in the
    middle of the body, and a stall longer than the client's timeout.
    """

    def __init__(self, upstream_port: int, every: int = 4, stall: float = 2.0) -> None:
        self.upstream_port = upstream_port
        self.count = 0
        self.spoiled = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with proxy.lock:
                    proxy.count += 1
                    n = proxy.count
                fate = (n // every) % 3 if n % every == 0 else -1
                if fate == 0:
                    with proxy.lock:
                        proxy.spoiled += 1
                    self.send_response(500)
                    self.send_header("Content-Length", "5")
                    self.end_headers()
                    self.wfile.write(b"oops\n")
                    return
                if fate == 2:
                    with proxy.lock:
                        proxy.spoiled += 1
                    time.sleep(stall)
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=10)
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                self.send_response(resp.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fate == 1 and len(body) > 1:
                    with proxy.lock:
                        proxy.spoiled += 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self) -> "FlakyProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def in_process_server(service: "Service", **kwargs: Any) -> Iterator[tuple["HTTPServer", int]]:
    """A desync HTTPServer in this process (for direct store tests)."""
    from desync.server.httpd import HTTPServer

    server = HTTPServer(service, **kwargs)
    url = server.listen("127.0.0.1:0")
    server.start()
    try:
        yield server, int(url.rsplit(":", 1)[1].strip("/"))
    finally:
        server.stop()


def free_port() -> int:
    """A port nobody listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
