"""Server faults: slow-client floods, trickled headers, the open-file limit, stopping on SIGTERM."""

import resource
import signal
import socket
import time
from pathlib import Path

import pytest
import zstandard

from conftest import sha512_256
from http_util import ServerProcess, request

PAYLOAD = b"served payload " * 300
CID = sha512_256(PAYLOAD)
NAME = f"/{CID[:4]}/{CID}.cacnk"
FLOOD = 300
LOW_LIMIT = 256


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    d = tmp_path / "store"
    (d / CID[:4]).mkdir(parents=True)
    (d / CID[:4] / f"{CID}.cacnk").write_bytes(zstandard.ZstdCompressor().compress(PAYLOAD))
    return d


def _low_file_limit() -> None:
    """The server starts with a soft open-file limit below the flood (the hard limit stays)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_LIMIT, hard))


def _soft_file_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit")


def test_new_clients_are_served_promptly_under_a_slow_client_flood(store: Path) -> None:
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 4 * FLOOD:
        pytest.skip("the hard open-file limit is too low for the flood")
    with ServerProcess("chunk-server", "-s", store, "--max-connections", "100", "--header-timeout", "3",
                       preexec_fn=_low_file_limit) as srv:
        assert _soft_file_limit(srv.proc.pid) > LOW_LIMIT
        flood: list[socket.socket] = []
        try:
            for _ in range(FLOOD):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                s.sendall(b"GET /")  # and never the rest
                flood.append(s)
            for _ in range(5):
                started = time.monotonic()
                assert request(srv.port, "GET", NAME)[0] == 200
                assert time.monotonic() - started < 2.0
            open_fds = len(list(Path(f"/proc/{srv.proc.pid}/fd").iterdir()))
            assert open_fds < 100 + 64, open_fds
        finally:
            for s in flood:
                s.close()


@pytest.mark.parametrize("trickle", [b"GET " + NAME.encode() + b" HTTP/1.1\r\nX-Slow: " + b"y" * 50, b"\r\n" * 40],
                         ids=["headers", "blank-lines"])
def test_a_client_trickling_its_headers_is_cut_off_at_the_header_deadline(store: Path, trickle: bytes) -> None:
    with ServerProcess("chunk-server", "-s", store, "--header-timeout", "1.5") as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            started = time.monotonic()
            closed = False
            for byte in trickle:
                try:
                    s.sendall(bytes([byte]))
                    s.settimeout(0.3)
                    closed = s.recv(1) == b""
                except socket.timeout:
                    continue
                except OSError:
                    closed = True
                if closed:
                    break
            assert closed
            assert 1.0 < time.monotonic() - started < 4.0
        assert request(srv.port, "GET", NAME)[0] == 200


def test_an_idle_new_connection_is_closed_at_the_header_deadline(store: Path) -> None:
    with ServerProcess("chunk-server", "-s", store, "--header-timeout", "1") as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            started = time.monotonic()
            assert s.recv(1) == b""
            assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("command", ["chunk-server", "index-server"])
def test_servers_stop_cleanly_on_sigterm(store: Path, command: str) -> None:
    srv = ServerProcess(command, "-s", store)
    try:
        assert request(srv.port, "HEAD", NAME)[0] in (200, 404)
        srv.signal(signal.SIGTERM)
        assert srv.proc.wait(10) == 0
        srv.wait_for("stopped")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    finally:
        srv.stop()
