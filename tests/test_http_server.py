"""chunk-server and index-server: request handling, path safety, uploads, reload, concurrency."""

import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import zstandard

from conftest import run_desync, sha512_256
from http_util import ServerProcess, raw_request, request

PAYLOAD = b"chunk payload " * 500
CID = sha512_256(PAYLOAD)
NAME = f"/{CID[:4]}/{CID}.cacnk"

# Request targets that must never reach a file: traversal, encodings, absolute forms, junk.
BAD_CHUNK_TARGETS = [
    "/../../etc/passwd",
    f"/{CID[:4]}/../../secret",
    f"/%2e%2e/%2e%2e/{CID[:4]}/{CID}.cacnk",
    f"/{CID[:4]}/{CID}.cacnk/../../../secret",
    f"/{CID[:4]}%2f{CID}.cacnk",
    f"//{CID[:4]}/{CID}.cacnk",
    f"http://127.0.0.1/{CID[:4]}/{CID}.cacnk",
    f"/{CID[:4]}/{CID.upper()}.cacnk",
    f"/0000/{CID}.cacnk",
    f"/{CID[:4]}/{CID}",
    f"/{CID[:4]}/{CID}.cacnk\x00",
    f"/{CID[:4]}/{CID[:-1]}\x00.cacnk",
    f"\\{CID[:4]}\\{CID}.cacnk",
    "*",
    "/",
]


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    d = tmp_path / "srv" / "store"
    (d / CID[:4]).mkdir(parents=True)
    (d / CID[:4] / f"{CID}.cacnk").write_bytes(zstandard.ZstdCompressor().compress(PAYLOAD))
    (tmp_path / "secret").write_text("outside the store")
    return d


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_get_head_and_methods(store: Path) -> None:
    with ServerProcess("chunk-server", "-s", store) as srv:
        status, body = request(srv.port, "GET", NAME)
        assert status == 200 and zstandard.ZstdDecompressor().decompress(body) == PAYLOAD
        assert body == (store / CID[:4] / f"{CID}.cacnk").read_bytes()
        assert request(srv.port, "HEAD", NAME)[0] == 200
        missing = "ab" * 32
        assert request(srv.port, "GET", f"/{missing[:4]}/{missing}.cacnk") == (404, f"chunk {missing} not found\n".encode())
        assert request(srv.port, "HEAD", f"/{missing[:4]}/{missing}.cacnk")[0] == 404
        assert request(srv.port, "DELETE", NAME)[0] == 405
        assert request(srv.port, "POST", NAME, b"x")[0] == 405
        assert request(srv.port, "GET", NAME + "?x=1")[0] == 200


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_chunk_server_paths_never_leave_the_store(store: Path, tmp_path: Path, method: str) -> None:
    before = _snapshot(tmp_path)
    with ServerProcess("chunk-server", "-w", "-s", store) as srv:
        for target in BAD_CHUNK_TARGETS:
            body = zstandard.ZstdCompressor().compress(PAYLOAD) if method == "PUT" else b""
            head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            status, answer = raw_request(srv.port, head.encode("latin-1") + body)
            assert 400 <= status < 500, (target, answer[:100])
            assert b"outside the store" not in answer
        status, _ = raw_request(srv.port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")
        assert status == 414
    assert _snapshot(tmp_path) == before


def test_uploads(store: Path, tmp_path: Path) -> None:
    data = b"another chunk " * 300
    cid = sha512_256(data)
    name = f"/{cid[:4]}/{cid}.cacnk"
    frame = zstandard.ZstdCompressor().compress(data)
    with ServerProcess("chunk-server", "-s", store) as srv:
        status, body = request(srv.port, "PUT", name, frame)
        assert status == 400 and b"not enabled" in body
    with ServerProcess("chunk-server", "-w", "-s", store, "--log", tmp_path / "req.log") as srv:
        status, body = request(srv.port, "PUT", NAME, frame)
        assert status == 400 and b"hashes to" in body
        assert request(srv.port, "PUT", name, b"not zstd")[0] == 400
        assert request(srv.port, "PUT", name, data)[0] == 400
        assert request(srv.port, "PUT", name, frame) == (200, b"")
        assert request(srv.port, "GET", name) == (200, frame)
    stored = store / cid[:4] / f"{cid}.cacnk"
    assert stored.read_bytes() == frame and stored.stat().st_mode & 0o777 == 0o444
    assert not [p for p in store.rglob("*") if p.name.startswith(".")]
    log = (tmp_path / "req.log").read_text().splitlines()
    assert len(log) == 5 and f'"PUT {name} HTTP/1.1" 200' in log[3]


def test_uncompressed_server(store: Path) -> None:
    with ServerProcess("chunk-server", "-u", "-s", store) as srv:
        assert request(srv.port, "GET", NAME)[0] == 400
        assert request(srv.port, "GET", f"/{CID[:4]}/{CID}") == (200, PAYLOAD)


def test_authorization_header(store: Path) -> None:
    with ServerProcess("chunk-server", "-s", store, "--authorization", "Basic abc") as srv:
        assert request(srv.port, "GET", NAME) == (401, b"Unauthorized\n")
        assert request(srv.port, "GET", NAME, headers={"Authorization": "Basic abd"})[0] == 401
        assert request(srv.port, "GET", NAME, headers={"Authorization": "Basic abc"})[0] == 200


def test_no_head_of_line_blocking(store: Path) -> None:
    with ServerProcess("chunk-server", "-s", store) as srv:
        stalled = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(20)]
        for s in stalled:
            s.sendall(b"GET " + NAME.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        t = time.monotonic()
        for _ in range(20):
            assert request(srv.port, "GET", NAME)[0] == 200
        assert time.monotonic() - t < 3
        for s in stalled:
            s.close()


def test_store_file_reload_under_load(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    datas = [f"chunk {i} ".encode() * 400 for i in range(3)]
    ids = [sha512_256(d) for d in datas]
    for root, members in ((old, datas[:2]), (new, datas)):
        for d in members:
            cid = sha512_256(d)
            (root / cid[:4]).mkdir(parents=True, exist_ok=True)
            (root / cid[:4] / f"{cid}.cacnk").write_bytes(zstandard.ZstdCompressor().compress(d))
    cfg = tmp_path / "stores.json"
    cfg.write_text(json.dumps({"stores": [str(old)], "cache": ""}))
    with ServerProcess("chunk-server", "--store-file", cfg) as srv:
        third = f"/{ids[2][:4]}/{ids[2]}.cacnk"
        assert request(srv.port, "GET", third)[0] == 404
        stop = threading.Event()
        results: list[int] = []

        def load() -> None:
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            while not stop.is_set():
                cid = ids[len(results) % 2]
                conn.request("GET", f"/{cid[:4]}/{cid}.cacnk")
                resp = conn.getresponse()
                resp.read()
                results.append(resp.status)
            conn.close()

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        cfg.write_text(json.dumps({"stores": [str(new)]}))
        srv.signal(signal.SIGHUP)
        srv.wait_for("reloaded stores")
        cfg.write_text("{not json")
        mark = len(srv.lines)
        srv.signal(signal.SIGHUP)
        srv.wait_for("reload failed", start=mark)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert len(results) > 50 and set(results) == {200}
        assert request(srv.port, "GET", third)[0] == 200


def test_index_server(tmp_path: Path) -> None:
    served = tmp_path / "srv" / "indexes"
    served.mkdir(parents=True)
    (tmp_path / "in").write_bytes(b"index me " * 10000)
    run_desync("make", tmp_path / "srv" / "secret.caibx", tmp_path / "in")
    good = (tmp_path / "srv" / "secret.caibx").read_bytes()
    (served / "a.caibx").write_bytes(good)
    (served / "bad.caibx").write_bytes(b"not an index")
    before = _snapshot(tmp_path)
    with ServerProcess("index-server", "-s", served) as srv:
        assert request(srv.port, "GET", "/a.caibx") == (200, good)
        assert request(srv.port, "GET", "/any/prefix/a.caibx") == (200, good)
        assert request(srv.port, "HEAD", "/a.caibx")[0] == 200
        assert request(srv.port, "GET", "/b.caibx")[0] == 404
        assert request(srv.port, "GET", "/bad.caibx")[0] == 400
        assert request(srv.port, "PUT", "/c.caibx", good)[0] == 400
        assert request(srv.port, "DELETE", "/a.caibx")[0] == 405
    with ServerProcess("index-server", "-w", "-s", served) as srv:
        for method in ("GET", "PUT"):
            for target in ["/../secret.caibx", "/%2e%2e/secret.caibx", "/..%2fsecret.caibx", "/%2e%2e%2fsecret.caibx",
                           "/..", "/%2e%2e", "/", "/.hidden", "/a.caibx%00", "/..%5csecret.caibx", "/%ff%fe"]:
                head = f"{method} {target} HTTP/1.1\r\nContent-Length: {len(good)}\r\nConnection: close\r\n\r\n"
                status, answer = raw_request(srv.port, head.encode() + good)
                assert 400 <= status < 500, (method, target, answer[:100])
        assert _snapshot(tmp_path) == before
        status, body = request(srv.port, "PUT", "/c.caibx", b"junk")
        assert status == 415 and body.startswith(b"invalid index")
        assert request(srv.port, "PUT", "/c.caibx", good) == (200, b"")
    assert (served / "c.caibx").read_bytes() == good
    assert sorted(p.name for p in served.iterdir()) == ["a.caibx", "bad.caibx", "c.caibx"]
