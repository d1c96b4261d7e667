"""Peers that lie, for the hostile-peer tests.

- :func:`sftp_ssh`: an ssh stand-in (for ``CASYNC_SSH_PATH``) that runs ``lying_sftp.py``;
- :class:`LyingS3`: an HTTP server answering ListObjectsV2 and GetObject with the lie its ``mode`` names;
- :func:`assert_bounded`: the contract every command keeps against them (run with ``measure.run_measured``).
"""

import http.server
import socketserver
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from conftest import desync_env
from lying_sftp import endless_frame
from measure import RSS_LIMIT, TIMED_OUT, Measured, run_measured

LYING_SFTP = Path(__file__).parent / "lying_sftp.py"
MIB = 1 << 20
# What a check that streams chunk files may reach: a piece per worker, never a whole chunk file (~130 MiB).
STREAMED_RSS = 128 * MIB


def assert_bounded(result: Measured) -> list[str]:
    """The hostile-peer contract: ended in time, under 256 MiB, failed, with short escaped lines; the lines."""
    assert result.returncode != TIMED_OUT, f"still running after the timeout: {result.error[-2000:]}"
    assert result.peak_rss < RSS_LIMIT, f"peak RSS {result.peak_rss >> 20} MiB"
    assert result.returncode == 1, result.error[-2000:]
    assert not any(c in result.error for c in "\x1b\x07\r\x9b"), "control characters reached the terminal"
    lines = [line for line in result.error.splitlines() if line.strip()]
    assert lines and all(len(line) < 1000 for line in lines), result.error[-2000:]
    return lines


def assert_bounded_failure(result: Measured) -> str:
    """:func:`assert_bounded`, with one ``desync: error:`` line as the whole output; that line."""
    lines = assert_bounded(result)
    assert len(lines) == 1 and lines[0].startswith("desync: error: "), result.error[-2000:]
    return lines[0]


def sftp_ssh(tmp_path: Path, mode: str) -> dict[str, str]:
    """The CLI's environment with an ssh stand-in that talks to a lying SFTP server telling lie ``mode``."""
    ssh = tmp_path / f"ssh-{mode}"
    ssh.write_text(f"#!/bin/sh\nLYING_SFTP={mode} exec {sys.executable} {LYING_SFTP}\n")
    ssh.chmod(0o755)
    return desync_env(CASYNC_SSH_PATH=str(ssh))


def chunk_key(i: int) -> str:
    prefix = f"{i:04x}"
    return f"{prefix}/{prefix}{i:060x}.cacnk"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "LyingS3"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.server.requests += 1
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        try:
            if "list-type" in query:
                self.listing((query.get("continuation-token") or [""])[0])
            else:
                self.get_object()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send_xml(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def endless(self, status: int, declared: int = -1) -> None:
        """Headers, then bytes for ever (until the client hangs up)."""
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        if declared >= 0:
            self.send_header("Content-Length", str(declared))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"<ListBucketResult><Name>b</Name>")
        block = b"<Prefix></Prefix>" * (MIB // 17)
        while True:
            self.wfile.write(block)

    def listing(self, token: str) -> None:
        mode = self.server.mode
        if mode == "endless-page":
            self.endless(200)
        step = int(token[1:]) if token.startswith("T") else 0
        if mode == "cycling-tokens":  # none -> T1 -> T2 -> T1 -> ...
            following = f"T{1 if step == 2 else step + 1}"
            keys = [chunk_key(step + 1)]
        elif mode == "endless-pages":  # fresh tokens for ever, pages without keys
            following, keys = f"T{step + 1}", []
        else:  # the lie is in the objects: one honest page of a few keys
            following, keys = "", [chunk_key(i) for i in range(1, 9)]
        contents = "".join(f"<Contents><Key>{k}</Key><Size>10</Size></Contents>" for k in keys)
        more = f"<IsTruncated>true</IsTruncated><NextContinuationToken>{following}</NextContinuationToken>" \
            if following else "<IsTruncated>false</IsTruncated>"
        body = ('<?xml version="1.0" encoding="UTF-8"?>'
                '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name>'
                f"<Prefix></Prefix><KeyCount>{len(keys)}</KeyCount><MaxKeys>1000</MaxKeys>"
                f"{more}{contents}</ListBucketResult>")
        self.send_xml(body.encode())

    def get_object(self) -> None:
        mode = self.server.mode
        if mode == "huge-object":
            self.endless(200, declared=8 << 30)
        elif mode == "endless-object":
            self.endless(200)
        elif mode == "endless-frame":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            offset = 0
            while True:
                piece = endless_frame(offset, MIB)
                self.wfile.write(piece)
                offset += len(piece)
        elif mode == "giant-error":
            head = b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>\x1b[2J\x1b]2;owned\x07"
            self.send_xml(head + b"A" * (64 * MIB) + b"</Message></Error>", 403)
        elif mode == "escape-error":
            # XML allows C1 controls (CSI, U+009B, starts an escape sequence on many terminals) but not ESC.
            body = ("<?xml version=\"1.0\"?><Error><Code>Access\u009b31mDenied</Code><Message>line one\nline two "
                    "\u009b2J\u009b31m" + "z" * 5000 + "</Message></Error>")
            self.send_xml(body.encode(), 403)
        else:
            raise AssertionError(f"unknown mode {mode}")


class LyingS3(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """An S3 endpoint on loopback that tells the lie ``mode`` names (see ``_Handler``); ``requests`` counts GETs."""

    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.requests = 0
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
