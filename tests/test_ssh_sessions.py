"""Session lifetimes over the casync protocol: what `desync pull`/`push` answer before they exit, and how the
ssh:// client treats remotes that lie, stall or pile up."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import NEUTRAL_DIR, assert_one_line_error, desync_env, run_desync
from measure import RSS_LIMIT, run_measured
from desync import index as index_mod
from desync.featureflags import SHA512_256
from desync.protocol import messages as m
from desync.server.remote import ServerConfig, serve
from desync.protocol.stream import Message, MessageReader

PUSH_FLAGS = m.PUSH_CHUNKS | m.PUSH_INDEX | m.PUSH_INDEX_CHUNKS


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
def test_pull_answers_every_request_that_arrives_with_the_end_of_the_session_in_order(
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
        answered = [m.parse_chunk_flags(x.body)[1] if x.type == m.CHUNK else x.body for x in msgs[1:]]
        assert answered[:3] == ids[:3], f"run {run}: answers out of order"  # the first IDs taken, in order
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

def _push(root: Path, feed: bytes) -> subprocess.CompletedProcess[bytes]:
    """Run `desync push` on ``feed`` (the whole client side at once)."""
    target = root / "remote"
    target.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "desync", "push", "-", "-", str(target / "b.caibx"),
                           str(target / "store")], input=feed, capture_output=True, env=desync_env(),
                          cwd=NEUTRAL_DIR, timeout=60)


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
    proc = _push(tmp_path, feed)
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
    proc = _push(tmp_path, feed + m.goodbye())
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
    proc = _push(root, feed + m.goodbye())
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
    target = root / "remote"
    target.mkdir(exist_ok=True)
    result = run_measured("push", "-", "-", target / "b.caibx", target / "store",
                          input=_index_feed((root / "b.caibx").read_bytes()) + m.chunk_header(cid, len(bomb), True)
                          + bomb)
    line = assert_one_line_error(subprocess.CompletedProcess([], result.returncode, result.stdout, result.stderr),
                                 status=1)
    assert cid.hex() in line, line
    assert result.peak_rss < RSS_LIMIT, f"push peaked at {result.peak_rss >> 20} MiB resident"
    assert not list((root / "remote" / "store").rglob("*.cacnk"))


# --- the ssh:// client against remotes that lie, stall or pile up ----------------------------------------------

_LIAR = """
import sys
from desync import compression
from desync.protocol import messages as m
from desync.protocol.stream import MessageReader, MessageWriter
reader, writer = MessageReader(0), MessageWriter(1)
writer.send(m.hello(m.READABLE_STORE))
while (msg := reader.read()) is not None and msg.type != m.GOODBYE:
    if msg.type == m.REQUEST:
        for cid in m.parse_request(msg.body)[1]:
            data = compression.compress(b"not what you asked for")
            writer.send(m.chunk_header(bytes([cid[0] ^ 1]) + cid[1:], len(data), True), data)
"""

# Answers the first ID of each REQUEST with MISSING, then repeats that answer forever and never answers the rest.
_CHATTERER = """
import threading, time
from desync.protocol import messages as m
from desync.protocol.stream import MessageReader, MessageWriter
reader, writer = MessageReader(0), MessageWriter(1)
writer.send(m.hello(m.READABLE_STORE))

def repeat(answer):
    while True:
        writer.send(answer)
        time.sleep(0.05)

while (msg := reader.read()) is not None and msg.type != m.GOODBYE:
    if msg.type == m.REQUEST:
        first = m.parse_request(msg.body)[1][0]
        threading.Thread(target=repeat, args=(m.missing(first),), daemon=True).start()
"""

# Records its pid and runs the remote command like ssh does, over a link that hangs after passing STALL_AFTER
# bytes of the answer: it stops forwarding, never exits on its own and ignores SIGTERM.
_FLAKY = """
import os, signal, subprocess, sys, threading, time
open(os.path.join(os.environ["FAKE_SSH_DIR"], f"pid.{os.getpid()}"), "w").close()
command = sys.argv[sys.argv.index("--") + 2]
signal.signal(signal.SIGTERM, signal.SIG_IGN)
budget = int(os.environ["STALL_AFTER"])
remote = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

def forward_requests():
    while block := os.read(0, 65536):
        remote.stdin.write(block)
    remote.stdin.close()

threading.Thread(target=forward_requests, daemon=True).start()
while block := os.read(remote.stdout.fileno(), 65536):
    if len(block) > budget:
        while True:
            time.sleep(60)
    os.write(1, block)
    budget -= len(block)
"""


def _fake_ssh(tmp_path: Path, name: str, body: str) -> Path:
    script = tmp_path / name
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(0o755)
    return script


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


class _ProcessWatch:
    """Samples how many fake ssh processes exist at once while a command runs."""

    def __init__(self, record: Path) -> None:
        self.record = record
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def pids(self) -> list[int]:
        return [int(p.name.split(".")[1]) for p in self.record.glob("pid.*")]

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, sum(_alive(pid) for pid in self.pids()))
            time.sleep(0.005)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()


def _extract_over_ssh(root: Path, ssh: Path, *args: str, timeout: float,
                      **env: str) -> tuple[subprocess.CompletedProcess[bytes], float]:
    started = time.monotonic()
    proc = run_desync("extract", *args, "-s", f"ssh://127.0.0.1{root / 'store'}", root / "b.caibx",
                      root / "out", check=False, timeout=timeout,
                      env=desync_env(CASYNC_SSH_PATH=str(ssh), CASYNC_REMOTE_PATH=f"{sys.executable} -m desync",
                                     **env))
    return proc, time.monotonic() - started


def test_ssh_client_fails_at_once_on_chunks_nobody_asked_for(
        made: tuple[Path, list[index_mod.IndexChunk]]) -> None:
    root, _ = made
    ssh = _fake_ssh(root, "lying-ssh", _LIAR)
    proc, elapsed = _extract_over_ssh(root, ssh, "--timeout", "60", timeout=50)
    line = assert_one_line_error(proc)
    assert "not requested" in line, line
    assert elapsed < 15, f"took {elapsed:.1f} s"


def test_ssh_client_gives_up_on_a_remote_that_only_repeats_old_answers(
        made: tuple[Path, list[index_mod.IndexChunk]]) -> None:
    root, _ = made
    ssh = _fake_ssh(root, "chattering-ssh", _CHATTERER)
    proc, elapsed = _extract_over_ssh(root, ssh, "--timeout", "1", "--error-retry", "0", timeout=30)
    line = assert_one_line_error(proc)
    assert "no answer" in line, line
    assert elapsed < 8, f"took {elapsed:.1f} s"


def test_ssh_client_gives_up_on_a_stalled_remote_within_its_timeout(
        made: tuple[Path, list[index_mod.IndexChunk]]) -> None:
    root, _ = made
    record = root / "record"
    record.mkdir()
    ssh = _fake_ssh(root, "stalling-ssh", _FLAKY)
    watch = _ProcessWatch(record)
    try:
        proc, elapsed = _extract_over_ssh(root, ssh, "-n", "2", "--timeout", "1", "--error-retry", "1", timeout=60,
                                          FAKE_SSH_DIR=str(record), 
                                          STALL_AFTER="0")
    finally:
        watch.finish()
    line = assert_one_line_error(proc)
    assert "no answer" in line, line
    # Two attempts of at most a second (plus the poll interval) each, a second to kill, and start-up.
    assert elapsed < 8, f"took {elapsed:.1f} s"
    assert watch.peak <= 2
    assert not [pid for pid in watch.pids() if _alive(pid)]


def test_stalled_ssh_sessions_are_killed_at_once_and_never_exceed_the_limit(
        made: tuple[Path, list[index_mod.IndexChunk]]) -> None:
    root, _ = made
    record = root / "record"
    record.mkdir()
    ssh = _fake_ssh(root, "flaky-ssh", _FLAKY)
    watch = _ProcessWatch(record)
    try:
        proc, elapsed = _extract_over_ssh(root, ssh, "-n", "4", "--timeout", "1", "--error-retry", "20",
                                          timeout=120, FAKE_SSH_DIR=str(record), 
                                          STALL_AFTER="100000")
    finally:
        watch.finish()
    assert proc.returncode == 0, proc.stderr
    assert (root / "out").read_bytes() == (root / "blob").read_bytes()
    started = len(watch.pids())
    assert started > 4  # every session stalls after a while; more were needed than may run at once
    assert watch.peak <= 4, f"{watch.peak} ssh processes at once"
    assert not [pid for pid in watch.pids() if _alive(pid)], "ssh processes left behind"
    # Each session costs its timeout (polled) and a kill once it stalls; nothing is reaped one by one at the end.
    assert elapsed < 6 + 1.5 * started, f"{started} sessions, {elapsed:.1f} s"
