"""The casync protocol codec, the request scheduler, URL checks and `desync pull` over plain pipes."""

import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import NEUTRAL_DIR, assert_one_line_error, desync_env, run_desync
from desync.cli.argv import prepare_argv
from desync.cli.cmd_remote import byte_rate, log_level
from desync.errors import InvalidArgument
from desync.protocol import messages as m
from desync.protocol import sftp
from desync.protocol.scheduler import RequestScheduler
from desync.protocol.stream import Message, MessageReader
from desync.protocol.transport import parse_remote_url, pull_command, shell_quote

ID1, ID2, ID3 = b"\1" * 32, b"\2" * 32, b"\3" * 32


def _read_all(raw: bytes) -> list[Message]:
    with tempfile.TemporaryFile() as f:
        f.write(raw)
        f.seek(0)
        reader = MessageReader(f.fileno())
        out: list[Message] = []
        while True:
            msg = reader.read()
            if msg is None:
                return out
            out.append(msg)


def test_messages_round_trip() -> None:
    raw = (m.hello(m.PULL_CHUNKS) + m.request([ID1, ID2], True) + m.chunk_header(ID3, 3, True) + b"abc"
           + m.missing(ID1) + m.abort(5, "no\nway") + m.goodbye() + b"".join(m.file_pieces(m.INDEX, b"x" * 70000)))
    msgs = _read_all(raw)
    assert [m.type_name(x.type) for x in msgs] == ["HELLO", "REQUEST", "CHUNK", "MISSING", "ABORT", "GOODBYE",
                                                   "INDEX", "INDEX", "INDEX_EOF"]
    assert m.parse_hello(msgs[0].body) == m.PULL_CHUNKS
    assert m.parse_request(msgs[1].body) == (True, [ID1, ID2])
    assert m.parse_chunk_flags(msgs[2].body) == (True, ID3) and msgs[2].data == b"abc"
    assert msgs[3].body == ID1
    assert m.parse_abort(msgs[4].body) == (5, "no way")
    assert len(msgs[6].body) == m.FILE_PIECE_SIZE and len(msgs[7].body) == 70000 - m.FILE_PIECE_SIZE


@pytest.mark.parametrize("raw, error", [
    (struct.pack("<QQ", 8, m.GOODBYE), "smaller than"),
    (struct.pack("<QQ", m.MAX_MESSAGE_SIZE + 1, m.CHUNK), "exceeds"),
    (struct.pack("<QQ", 16, 0x1234), "unknown type"),
    (struct.pack("<QQQ", 24, m.GOODBYE, 0), "GOODBYE with a 8-byte body"),
    (struct.pack("<QQ", 32, m.MISSING) + ID1[:16], "MISSING with a 16-byte body"),
    (struct.pack("<QQQ", 56, m.REQUEST, 0) + ID1[:31] + b"\0", None),
    (struct.pack("<QQQ", 57, m.REQUEST, 0) + ID1 + b"\0", "REQUEST with a 41-byte body"),
    (struct.pack("<QQ", 1000, m.INDEX) + b"short", "closed in the middle of a INDEX"),
    (b"\1\2\3", "message header"),
])
def test_malformed_frames_are_refused(raw: bytes, error: str | None) -> None:
    if error is None:
        assert len(_read_all(raw)) == 1
        return
    with pytest.raises(m.ProtocolError, match=error):
        _read_all(raw)


@pytest.mark.parametrize("body, error", [
    (struct.pack("<Q", 0), "feature flags"),
    (struct.pack("<Q", 2**64 - 1), "feature flags"),
    (struct.pack("<Q", 0x2000), "not supported"),
    (struct.pack("<Q", m.PUSH_INDEX_CHUNKS | m.PUSH_INDEX), "PUSH_INDEX_CHUNKS"),
])
def test_bad_hello_flags(body: bytes, error: str) -> None:
    with pytest.raises(m.ProtocolError, match=error):
        m.parse_hello(body)


def test_exchange_rules() -> None:
    m.check_exchange(m.READABLE_STORE, m.PULL_CHUNKS)
    with pytest.raises(m.ProtocolError, match="does not offer"):
        m.check_exchange(m.PULL_CHUNKS, m.READABLE_INDEX)
    with pytest.raises(m.ProtocolError, match="wants an index"):
        m.check_exchange(m.READABLE_STORE, m.PULL_INDEX)
    with pytest.raises(m.ProtocolError, match="neither side"):
        m.check_exchange(m.READABLE_STORE, m.READABLE_INDEX)
    with pytest.raises(m.ProtocolError, match="flags"):
        m.parse_request(struct.pack("<Q", 2) + ID1)
    with pytest.raises(m.ProtocolError, match="flags"):
        m.parse_chunk_flags(struct.pack("<Q", 4) + ID1)
    with pytest.raises(m.ProtocolError, match="NUL"):
        m.parse_abort(struct.pack("<Q", 1) + b"x")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzzed_streams_decode_or_fail_cleanly(raw: bytes) -> None:
    try:
        for msg in _read_all(raw):
            if msg.type == m.HELLO:
                m.parse_hello(msg.body)
            elif msg.type == m.REQUEST:
                m.parse_request(msg.body)
            elif msg.type == m.CHUNK:
                m.parse_chunk_flags(msg.body)
            elif msg.type == m.ABORT:
                m.parse_abort(msg.body)
    except m.ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([m.HELLO, m.REQUEST, m.CHUNK, m.MISSING, m.GOODBYE, m.INDEX]),
                          st.binary(min_size=1, max_size=64)), max_size=8), st.integers(0, 400))
def test_fuzzed_valid_frames_survive_truncation(frames: list[tuple[int, bytes]], cut: int) -> None:
    raw = b""
    for msg_type, payload in frames:
        if msg_type == m.HELLO:
            raw += m.hello(1 + payload[0] % m.ALL_FEATURES)
        elif msg_type == m.REQUEST:
            raw += m.request([payload[:1] * 32], bool(payload[0] & 1))
        elif msg_type == m.CHUNK:
            raw += m.chunk_header(ID1, len(payload), True) + payload
        elif msg_type == m.MISSING:
            raw += m.missing(ID2)
        elif msg_type == m.GOODBYE:
            raw += m.goodbye()
        else:
            raw += m.frame(m.INDEX, payload)
    assert len(_read_all(raw)) == len(frames)
    try:
        _read_all(raw[:cut])
    except m.ProtocolError as exc:
        assert "closed" in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_sftp_payloads_fail_cleanly(raw: bytes) -> None:
    try:
        sftp.parse_version(raw)
    except sftp.SFTPError:
        pass
    try:
        sftp.parse_names(sftp.Parser(raw))
    except sftp.SFTPError:
        pass


def test_sftp_packet_limits() -> None:
    with pytest.raises(sftp.SFTPError, match="exceeds"):
        sftp.check_length(sftp.MAX_PACKET + 1)
    with pytest.raises(sftp.SFTPError, match="truncated"):
        sftp.Parser(b"\0\0\0\x09abc").string()
    assert sftp.parse_version(sftp.u32(3) + sftp.string("posix-rename@openssh.com") + sftp.string("1")) == \
        (3, {"posix-rename@openssh.com": b"1"})


def test_scheduler_answers_casync_once_and_go_clients_again() -> None:
    s = RequestScheduler()
    s.add([ID1, ID2, ID3], False)   # casync prefetch
    s.add([ID3], True)             # promoted: served first, once
    assert [s.take(), s.take()] == [ID3, ID1]
    s.add([ID1], True)             # taken at low priority: the answer is on its way
    s.add([ID2, ID2], False)
    assert s.take() == ID2
    s.add([ID3], True)             # answered at high priority before: a Go client asking again
    assert s.take() == ID3
    s.close()
    assert s.take() is None


def test_prepare_argv_moves_casync_options_behind_the_verb() -> None:
    assert prepare_argv(["--log-level=7", "--rate-limit-bps=100", "pull", "-", "-", "-", "/s"]) == \
        (["pull", "--log-level=7", "--rate-limit-bps=100", "-", "-", "-", "/s"], True)
    assert prepare_argv(["--digest", "sha256", "--log-level", "debug", "pull", "-", "-", "-", "/s"]) == \
        (["--digest", "sha256", "pull", "--log-level", "debug", "-", "-", "-", "/s"], True)
    assert prepare_argv(["extract", "-s", "x", "pull"]) == (["extract", "-s", "x", "pull"], False)
    assert log_level("warning") == 4 and log_level("7") == 7
    assert byte_rate("1M") == 1048576 and byte_rate("500") == 500


@pytest.mark.parametrize("location", [
    "ssh://-oProxyCommand=x/p", "ssh://a b/p", "ssh://h'/p", "ssh://h/p\x01", "ssh://u:pw@h/p", "ssh://h/p?x=1",
    "ssh://h", "ssh://-u@h/p", "ssh://h:99999/p", "ssh://h/%0a",
])
def test_bad_remote_urls(location: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_remote_url(location, "ssh")


def test_remote_command_quotes_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASYNC_SSH_PATH", "/x/ssh")
    monkeypatch.setenv("CASYNC_REMOTE_PATH", "python3 -m desync")
    target = parse_remote_url("ssh://me@host:2222/a b/it's", "ssh")
    assert pull_command(target) == ["/x/ssh", "-p", "2222", "--", "me@host",
                                    "python3 -m desync pull - - - '/a b/it'\\''s'"]
    assert subprocess.run(["sh", "-c", f"printf %s {shell_quote(target.path)}"], capture_output=True,
                          check=True).stdout == b"/a b/it's"


def _pull(args: list[str], feed: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "desync", *args], input=feed, capture_output=True,
                          env=desync_env(), timeout=60, cwd=NEUTRAL_DIR)


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[bytes]]:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(400_000))
    run_desync("make", "-s", tmp_path / "store", tmp_path / "b.caibx", blob)
    ids = [bytes.fromhex(x) for x in run_desync("list-chunks", tmp_path / "b.caibx").stdout.decode().split()]
    return tmp_path, ids


class _Conversation:
    """A pull server driven step by step, like a real client that waits for answers."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "desync", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=desync_env(),
                                     cwd=NEUTRAL_DIR)
        assert self.proc.stdout is not None
        self.reader = MessageReader(self.proc.stdout.fileno())

    def send(self, raw: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(raw)
        self.proc.stdin.flush()

    def receive(self, n: int) -> list[Message]:
        out = []
        for _ in range(n):
            msg = self.reader.read()
            assert msg is not None
            out.append(msg)
        return out

    def end(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=30)


def test_pull_answers_casync_batches_once_and_go_style_repeats(store: tuple[Path, list[bytes]]) -> None:
    root, ids = store
    unique = list(dict.fromkeys(ids))
    conv = _Conversation("--log-level=7", "pull", "-", "-", "-", str(root / "store"))
    conv.send(m.hello(m.PULL_CHUNKS) + m.request(unique, False) + m.request(unique[:1], True)
              + m.request([ID1], True))
    msgs = conv.receive(len(unique) + 2)
    assert m.parse_hello(msgs[0].body) == m.READABLE_STORE
    assert sorted(m.parse_chunk_flags(x.body)[1] for x in msgs if x.type == m.CHUNK) == sorted(unique)
    assert [x.body for x in msgs if x.type == m.MISSING] == [ID1]
    conv.send(m.request(unique[:1], True))  # a Go desync client asking again later
    again = conv.receive(1)[0]
    assert again.type == m.CHUNK and m.parse_chunk_flags(again.body)[1] == unique[0]
    assert conv.end() == 0


def test_pull_serves_an_index(store: tuple[Path, list[bytes]]) -> None:
    root, _ = store
    proc = _pull(["pull", "-", "-", str(root / "b.caibx"), "-"], m.hello(m.PULL_INDEX))
    msgs = _read_all(proc.stdout)
    assert m.parse_hello(msgs[0].body) == m.READABLE_INDEX
    assert b"".join(x.body for x in msgs if x.type == m.INDEX) == (root / "b.caibx").read_bytes()
    assert msgs[-1].type == m.INDEX_EOF and proc.returncode == 0


@pytest.mark.parametrize("args, feed, error", [
    (["pull", "--bogus", "-", "-", "-", "/s"], b"", "unrecognized arguments"),
    (["pull", "-", "-", "-"], b"", "required"),
    (["pull", "x", "-", "-", "/s"], b"", "base"),
    (["pull", "-", "-", "-", "-"], b"", "nothing to do"),
    (["--log-level=9", "pull", "-", "-", "-", "/s"], b"", "log level"),
    (["pull", "-", "-", "-", "/s"], m.request([ID1], True), "before HELLO"),
    (["pull", "-", "-", "-", "/s"], m.hello(m.PULL_CHUNKS) + struct.pack("<QQ", 1 << 30, m.CHUNK), "exceeds"),
    (["pull", "-", "-", "-", "/s"], m.hello(m.PULL_INDEX), "does not offer|wants an index"),
    (["pull", "-", "-", "/nonexistent.caibx", "-"], b"", "cannot read index"),
])
def test_pull_failures_are_one_line_with_status_1(args: list[str], feed: bytes, error: str) -> None:
    proc = _pull(args, feed)
    line = assert_one_line_error(proc, status=1)
    assert pytest.importorskip("re").search(error, line), line
    assert all(x.type == m.HELLO for x in _read_all(proc.stdout))


def test_push_receives_an_index_and_requests_its_missing_chunks(store: tuple[Path, list[bytes]]) -> None:
    root, ids = store
    index = (root / "b.caibx").read_bytes()
    target = root / "remote"
    target.mkdir()
    conv = _Conversation("push", "-", "-", str(target / "b.caibx"), str(target / "store"))
    pieces = [m.frame(m.INDEX, index[i:i + 1000]) for i in range(0, len(index), 1000)]
    conv.send(m.hello(m.PUSH_CHUNKS | m.PUSH_INDEX | m.PUSH_INDEX_CHUNKS) + b"".join(pieces) + m.frame(m.INDEX_EOF))
    hello, request = conv.receive(2)
    assert m.parse_hello(hello.body) == m.WRITABLE_STORE | m.WRITABLE_INDEX
    high, wanted = m.parse_request(request.body)
    assert not high and sorted(wanted) == sorted(set(ids))
    assert not (target / "b.caibx").exists()  # installed only once its chunks are stored
    for cid in wanted:
        h = cid.hex()
        data = (root / "store" / h[:4] / f"{h}.cacnk").read_bytes()
        conv.send(m.chunk_header(cid, len(data), True) + data)
    assert conv.receive(1)[0].type == m.GOODBYE
    assert conv.end() == 0
    assert (target / "b.caibx").read_bytes() == index
    out = root / "out"
    run_desync("extract", "-s", target / "store", target / "b.caibx", out)
    assert out.read_bytes() == (root / "blob").read_bytes()


def test_ssh_store_asks_for_a_whole_batch_in_one_request(store: tuple[Path, list[bytes]], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from desync.stores import StoreOptions, open_store

    root, ids = store
    unique = list(dict.fromkeys(ids))
    ssh = tmp_path / "recording-ssh"
    ssh.write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift 2\n'
                   f'tee {tmp_path}/sent.$$.bin | sh -c "$*"\n')
    ssh.chmod(0o755)
    for key, value in desync_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CASYNC_SSH_PATH", str(ssh))
    monkeypatch.setenv("CASYNC_REMOTE_PATH", f"{sys.executable} -m desync")
    monkeypatch.chdir(NEUTRAL_DIR)
    s = open_store(f"ssh://127.0.0.1{root / 'store'}", StoreOptions(workers=4))
    try:
        got = s.get_chunks([(cid, 0) for cid in unique])
        again = s.get_chunks([(unique[0], 0), (unique[-1], 0)])  # asked before: another session answers
    finally:
        s.close()
    assert [c.id for c in got] == unique and len(unique) > 3
    assert [c.id for c in again] == [unique[0], unique[-1]]
    logs = sorted(tmp_path.glob("sent.*.bin"))
    assert len(logs) == 2  # the repeat went to a second session
    sizes = sorted(len(x.body) for log in logs for x in _read_all(log.read_bytes()) if x.type == m.REQUEST)
    assert sizes == [8 + 32 * 2, 8 + 32 * len(unique)]  # one REQUEST per batch
