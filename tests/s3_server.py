"""A real S3-compatible server on loopback for the S3 tests and ``scripts/bench``: moto's standalone server.

The server runs in its own process (its request handling would otherwise
share the GIL with the client under test) and stops when its stdin closes,
so it never outlives the test session.  With ``auth`` the harness creates
an IAM user with full rights and then switches signature checking on, so
wrong credentials are refused as a real S3 would refuse them.

As a script (``python tests/s3_server.py BUCKET...``) it starts a server
without authentication, creates the buckets and prints the endpoint URL.
"""

import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

# Runs in the server process: prints the port, serves until stdin closes.
SERVER_CODE = r"""
import logging, sys
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""

# Anything goes until authentication is switched on; then only this user's key does.
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
REGION = "us-east-1"


class S3Server:
    """One moto server process; ``access_key``/``secret_key`` are valid on it."""

    def __init__(self, auth: bool = True, python: str = sys.executable) -> None:
        env = dict(os.environ)
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        self.proc = subprocess.Popen([python, "-c", SERVER_CODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError("the moto server did not start (pip install 'moto[server]')")
        self.port = int(line)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.access_key = "AKIADESYNCTESTKEY000"
        self.secret_key = "desync-test-secret"
        self._buckets = 0
        if auth:
            iam = self._client("iam", self.access_key, self.secret_key)
            iam.create_user(UserName="desync")
            iam.put_user_policy(UserName="desync", PolicyName="all", PolicyDocument=json.dumps(ADMIN_POLICY))
            key = iam.create_access_key(UserName="desync")["AccessKey"]
            self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
            req = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()

    def _client(self, service: str, access_key: str, secret_key: str) -> Any:
        import boto3

        return boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                     region_name=REGION).client(service, endpoint_url=self.endpoint)

    def client(self) -> Any:
        """A boto3 S3 client with valid credentials, for looking behind desync's back."""
        return self._client("s3", self.access_key, self.secret_key)

    def new_bucket(self, name: str = "") -> str:
        """A fresh, empty bucket (each test gets its own)."""
        self._buckets += 1
        bucket = name or f"bucket-{self._buckets}-{int(time.time() * 1000) % 100000}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def url(self, bucket: str, path: str = "", scheme: str = "s3+http") -> str:
        tail = f"/{path.strip('/')}" if path.strip("/") else ""
        return f"{scheme}://127.0.0.1:{self.port}/{bucket}{tail}"

    def env(self, **extra: str) -> dict[str, str]:
        """Credential variables for the desync CLI (added to its environment)."""
        return {"S3_ACCESS_KEY": self.access_key, "S3_SECRET_KEY": self.secret_key, **extra}

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _s3_error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>").encode()


# What a spoiled request gets: (status, body), or None for a body cut off halfway (GETs only).
FAULTS: list[tuple[int, bytes] | None] = [
    (500, _s3_error("InternalError", "We encountered an internal error. Please try again.")),
    None,
    (503, _s3_error("SlowDown", "Please reduce your request rate.")),
]


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up on a cut-off body are part of the plan."""


class FaultyProxy:
    """A proxy in front of the S3 server that spoils every ``every``-th request (0: all of them).

    Spoiled requests rotate through a 500 InternalError, a GET body cut off
    halfway, and a 503 SlowDown (S3's throttling); with ``every=0`` every
    request gets the SlowDown.  Requests are passed on with their Host
    header, so signatures made for the proxy's address stay valid.
    """

    def __init__(self, upstream_port: int, every: int = 4) -> None:
        self.upstream_port = upstream_port
        self.count = 0
        self.spoiled = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length", "0") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.count += 1
                    n = proxy.count
                    spoil = every == 0 or n % every == 0
                    fault = FAULTS[-1] if every == 0 else FAULTS[(n // max(every, 1)) % len(FAULTS)]
                    if fault is None and self.command != "GET":
                        fault = FAULTS[0]
                    if spoil:
                        proxy.spoiled += 1
                if spoil and fault is not None:
                    status, answer = fault
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(answer)
                    return
                cut = spoil
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body if length else None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(k, v)
                size = resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", size)
                self.end_headers()
                if cut and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = forward

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, bucket: str, path: str = "") -> str:
        tail = f"/{path.strip('/')}" if path.strip("/") else ""
        return f"s3+http://127.0.0.1:{self.port}/{bucket}{tail}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(buckets: list[str]) -> None:
    server = S3Server(auth=False)
    try:
        for bucket in buckets:
            server.new_bucket(bucket)
        print(server.endpoint, flush=True)
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
