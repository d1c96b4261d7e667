"""The shared guards for untrusted input: peer text on one safe line, regular-file reads with a bound."""

import os
import threading

import pytest
from hypothesis import given, strategies as st

from desync.fsutil import UnreadableFile, read_regular
from desync.peertext import peer_text


@given(st.text() | st.binary())
def test_peer_text_is_one_printable_bounded_line(text: str | bytes) -> None:
    out = peer_text(text, 50)
    assert "\n" not in out and "\x1b" not in out
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) < 0xA0 for c in out)
    assert len(out) <= 53


def test_peer_text_escapes_terminal_sequences() -> None:
    assert peer_text("bad\x1b[31mred\nnext") == "bad\\x1b[31mred\\nnext"


def test_read_regular_reads_a_small_file(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "f")
    with open(path, "wb") as f:
        f.write(b"x" * 1000)
    assert read_regular(path, 1000) == b"x" * 1000


def test_read_regular_refuses_a_fifo_without_blocking(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "fifo")
    os.mkfifo(path)
    done = threading.Event()

    def attempt() -> None:
        with pytest.raises(UnreadableFile):
            read_regular(path, 1000)
        done.set()

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    assert done.wait(10)


def test_read_regular_refuses_a_huge_sparse_file(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "sparse")
    with open(path, "wb") as f:
        f.truncate(3 << 30)
    with pytest.raises(UnreadableFile, match="more than"):
        read_regular(path, 1 << 20)


def test_read_regular_refuses_a_directory(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(UnreadableFile, match="not a regular file"):
        read_regular(str(tmp_path), 1 << 20)
