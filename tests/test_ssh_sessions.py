"""Session lifetimes over the casync protocol: what `desync pull`/`push` answer before they exit, and how the
ssh:// client treats remotes that lie, stall or pile up."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import NEUTRAL_DIR, assert_one_line_error, desync_env, run_desync
from desync import index as index_mod
from desync.featureflags import SHA512_256
from desync.protocol import messages as m
from desync.protocol.server import ServerConfig, serve
from desync.protocol.stream import Message, MessageReader

PUSH_FLAGS = m.PUSH_CHUNKS | m.PUSH_INDEX | m.PUSH_INDEX_CHUNKS
RSS_LIMIT_KIB = 256 * 1024


def _messages(path: Path) -> list[Message]:
    with open(path, "rb") as f:
        reader = MessageReader(f.fileno())
        out = []
        while (msg := reader.read()) is not None:
            out.append(msg)
        return out


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, list[index_mod.IndexChunk]]:
    """A blob, its index and a local store holding its chunks."""
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(600_000))
    run_desync("make", "-m", "4:16:64", "-s", tmp_path / "store", tmp_path / "b.caibx", blob)
    return tmp_path, index_mod.parse((tmp_path / "b.caibx").read_bytes()).chunks


def _chunk_file(root: Path, chunk_id: bytes) -> bytes:
    h = chunk_id.hex()
    return (root / "store" / h[:4] / f"{h}.cacnk").read_bytes()


# --- pull: every request received before GOODBYE or EOF is answered -------------------------------------------

@pytest.mark.parametrize("ending", [m.goodbye(), b""], ids=["goodbye", "eof"])
def test_pull_answers_every_request_that_arrives_with_the_end_of_the_session(
        made: tuple[Path, list[index_mod.IndexChunk]], ending: bytes) -> None:
    root, chunks = made
    ids = list(dict.fromkeys(c.id for c in chunks))
    assert len(ids) > 8
    unknown = b"\x07" * 32
    conversation = (m.hello(m.PULL_CHUNKS) + m.request(ids[:3], True) + m.request(ids[3:], False)
                    + m.request([unknown], True) + m.request(ids[-2:], True) + ending)
    (root / "in").write_bytes(conversation)
    for run in range(40):
        with open(root / "in", "rb") as src, open(root / "out", "wb") as dst:
            serve(ServerConfig("pull", read_stores=[str(root / "store")]), src.fileno(), dst.fileno())
        msgs = _messages(root / "out")
        sent = sorted(m.parse_chunk_flags(x.body)[1] for x in msgs if x.type == m.CHUNK)
        assert sent == sorted(ids), f"run {run}: {len(sent)} of {len(ids)} chunks answered"
        assert [x.body for x in msgs if x.type == m.MISSING] == [unknown]


def test_pull_exits_0_after_answering_requests_sent_with_goodbye(
        made: tuple[Path, list[index_mod.IndexChunk]]) -> None:
    root, chunks = made
    ids = list(dict.fromkeys(c.id for c in chunks))
    feed = m.hello(m.PULL_CHUNKS) + m.request(ids, False) + m.goodbye()
    proc = subprocess.run([sys.executable, "-m", "desync", "pull", "-", "-", "-", str(root / "store")],
                          input=feed, capture_output=True, env=desync_env(), timeout=60, cwd=NEUTRAL_DIR)
    assert proc.returncode == 0, proc.stderr
    (root / "out").write_bytes(proc.stdout)
    assert sorted(m.parse_chunk_flags(x.body)[1] for x in _messages(root / "out") if x.type == m.CHUNK) \
        == sorted(ids)


# --- push: chunks verified with the index's digest and size, incomplete transfers fail --------------------------

def _push(root: Path, feed: bytes, *, measure: bool = False) -> tuple[subprocess.CompletedProcess[bytes], int]:
    """Run `desync push` on ``feed`` (the whole client side at once); (result, peak RSS in KiB)."""
    target = root / "remote"
    target.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "desync", "push", "-", "-", str(target / "b.caibx"),
                             str(target / "store")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=desync_env(), cwd=NEUTRAL_DIR)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [threading.Thread(target=lambda: out.append(proc.stdout.read())),  # type: ignore[union-attr]
               threading.Thread(target=lambda: err.append(proc.stderr.read()))]  # type: ignore[union-attr]
    for t in readers:
        t.start()
    try:
        proc.stdin.write(feed)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    killer = threading.Timer(60, proc.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join(timeout=10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, b"".join(out), b"".join(err)), usage.ru_maxrss


def _index_feed(index_bytes: bytes) -> bytes:
    return m.hello(PUSH_FLAGS) + m.frame(m.INDEX, index_bytes) + m.frame(m.INDEX_EOF)


def test_push_rejects_a_chunk_named_by_the_other_digest(tmp_path: Path) -> None:
    """An index claiming SHA-512/256 whose IDs are SHA-256 names: the chunks match only the other digest."""
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(200_000))
    run_desync("make", "--digest", "sha256", "-m", "4:16:64", "-s", tmp_path / "store", tmp_path / "b.caibx", blob)
    honest = index_mod.parse((tmp_path / "b.caibx").read_bytes())
    assert honest.digest.name == "sha256"
    disguised = index_mod.Index(honest.flags | SHA512_256, honest.min_size, honest.avg_size, honest.max_size,
                                honest.chunks)
    feed = _index_feed(disguised.to_bytes())
    for cid in dict.fromkeys(c.id for c in honest.chunks):
        data = _chunk_file(tmp_path, cid)
        feed += m.chunk_header(cid, len(data), True) + data
    proc, _ = _push(tmp_path, feed)
    line = assert_one_line_error(proc, status=1)
    assert "invalid" in line and "sha512-256" in line, line
    assert not (tmp_path / "remote" / "b.caibx").exists()
    assert not list((tmp_path / "remote" / "store").rglob("*.cacnk"))


def test_push_accepts_an_index_made_with_sha256(tmp_path: Path) -> None:
    """The index names its digest; its chunks are checked with that one (casync --digest=sha256 pushes)."""
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(200_000))
    run_desync("make", "--digest", "sha256", "-m", "4:16:64", "-s", tmp_path / "store", tmp_path / "b.caibx", blob)
    index_bytes = (tmp_path / "b.caibx").read_bytes()
    feed = _index_feed(index_bytes)
    for cid in dict.fromkeys(c.id for c in index_mod.parse(index_bytes).chunks):
        data = _chunk_file(tmp_path, cid)
        feed += m.chunk_header(cid, len(data), True) + data
    proc, _ = _push(tmp_path, feed + m.goodbye())
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "remote" / "b.caibx").read_bytes() == index_bytes


def test_push_fails_when_the_client_says_goodbye_with_chunks_missing(
        made: tuple[Path, list[index_mod.IndexChunk]]) -> None:
    root, chunks = made
    ids = list(dict.fromkeys(c.id for c in chunks))
    feed = _index_feed((root / "b.caibx").read_bytes())
    for cid in ids[:-2]:
        data = _chunk_file(root, cid)
        feed += m.chunk_header(cid, len(data), True) + data
    proc, _ = _push(root, feed + m.goodbye())
    line = assert_one_line_error(proc, status=1)
    assert "2 chunks" in line and "not installed" in line, line
    assert not (root / "remote" / "b.caibx").exists()


def _zstd_bomb(size: int) -> bytes:
    """One zstd frame of ``size`` zero bytes that does not record its content size."""
    zstandard = pytest.importorskip("zstandard")
    cobj = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    block = bytes(1 << 20)
    parts = [cobj.compress(block) for _ in range(size >> 20)]
    parts.append(cobj.flush())
    return b"".join(parts)


@pytest.mark.parametrize("requested", [True, False], ids=["requested", "unrequested"])
def test_push_never_inflates_a_zstd_frame_without_content_size(
        made: tuple[Path, list[index_mod.IndexChunk]], requested: bool) -> None:
    root, chunks = made
    bomb = _zstd_bomb(512 << 20)
    assert len(bomb) < m.MAX_MESSAGE_SIZE // 4
    cid = chunks[0].id if requested else b"\x05" * 32
    proc, peak_kib = _push(root, _index_feed((root / "b.caibx").read_bytes())
                           + m.chunk_header(cid, len(bomb), True) + bomb)
    line = assert_one_line_error(proc, status=1)
    assert cid.hex() in line, line
    assert peak_kib < RSS_LIMIT_KIB, f"push peaked at {peak_kib >> 10} MiB resident"
    assert not list((root / "remote" / "store").rglob("*.cacnk"))
