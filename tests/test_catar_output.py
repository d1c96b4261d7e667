"""The threaded output paths of tar and untar: batched item writing, file finishing, and their fallbacks.

The C helpers and their pure-Python twins must give the same files and the
same failures; the archive written through FileSlice items must equal the
plain encoder's bytes; extraction through file ranges must equal extraction
from a stream.
"""

import fcntl
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desync import fsutil
from desync._accel import fileio_module
from desync.batchthread import BatchThread
from desync.catar import ExtractOptions, decode, encode_tree, extract_stream
from desync.catar.decoder import IterableReader, Node
from desync.catar.encoder import FileSlice, encode_items
from desync.catar.output import write_archive
from desync.catar.writeback import FileJob, _finish_py, finish_batch
from desync.errors import DesyncError

needs_c = pytest.mark.skipif(fileio_module is None, reason="C accelerator not built (pure-Python run)")


def _open_count() -> int:
    """Open descriptors (listing costs the same each time, so counts compare)."""
    return len(os.listdir("/proc/self/fd"))


def _closed(fds: set[int]) -> bool:
    for fd in fds:
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            continue
        return False
    return True


def _source(tmp: Path, name: str, data: bytes) -> int:
    p = tmp / name
    p.write_bytes(data)
    return os.open(p, os.O_RDONLY)


def _write_with(impl: str, tmp: Path, pieces: list[bytes | tuple[str, bytes, int]]) -> tuple[bytes, object]:
    """Write the pieces (bytes, or (name, file data, size to copy)) with one implementation."""
    items: list[bytes | tuple[int, int]] = []
    for p in pieces:
        if isinstance(p, bytes):
            items.append(p)
        else:
            items.append((_source(tmp, f"{impl}-{p[0]}", p[1]), p[2]))
    out = tmp / f"out-{impl}"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if impl == "c":
            assert fileio_module is not None
            result = fileio_module.write_items(fd, items)
        else:
            result = fsutil._write_items_py(fd, items)
    finally:
        os.close(fd)
    return out.read_bytes(), result


piece = st.one_of(
    st.binary(max_size=3000),
    st.tuples(st.text("abcdef", min_size=1, max_size=6), st.binary(max_size=5000), st.integers(0, 6000)),
)


@needs_c
@settings(max_examples=60, deadline=None)
@given(st.lists(piece, max_size=8))
def test_write_items_c_and_python_agree(tmp_path_factory: pytest.TempPathFactory,
                                        pieces: list[bytes | tuple[str, bytes, int]]) -> None:
    tmp = tmp_path_factory.mktemp("items")
    named = [p if isinstance(p, bytes) else (f"{i}{p[0]}", p[1], p[2]) for i, p in enumerate(pieces)]
    before = _open_count()
    c_out, c_result = _write_with("c", tmp, named)
    py_out, py_result = _write_with("py", tmp, named)
    assert (c_out, c_result) == (py_out, py_result)
    assert _open_count() == before  # every source descriptor closed
    want = b""
    for i, p in enumerate(named):
        if isinstance(p, bytes):
            want += p
        elif p[2] > len(p[1]):
            want += p[1]
            assert c_result == (i, 0)  # the source ended early: nothing after it
            break
        else:
            want += p[1][: p[2]]
    assert c_out == want


@pytest.mark.parametrize("impl", ["c", "py"])
def test_write_items_copies_into_a_pipe_through_a_buffer(tmp_path: Path, impl: str) -> None:
    if impl == "c" and fileio_module is None:
        pytest.skip("C accelerator not built (pure-Python run)")
    data = os.urandom(200_000)
    src = _source(tmp_path, "src", data)
    r, w = os.pipe()
    got: list[bytes] = []

    def drain() -> None:
        with os.fdopen(r, "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=drain)
    t.start()
    try:
        items: list[bytes | tuple[int, int]] = [b"head", (src, len(data)), b"tail"]
        if impl == "c":
            assert fileio_module is not None
            result = fileio_module.write_items(w, items)
        else:
            result = fsutil._write_items_py(w, items)
    finally:
        os.close(w)
        t.join()
    assert result is None
    assert got[0] == b"head" + data + b"tail"


def _job(tmp: Path, name: str, blocks: list[bytes], src: tuple[int, int, int] | None, mode: int,
         mtime_ns: int) -> FileJob:
    fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    job = FileJob(fd, (name.encode(),), blocks=blocks, mode=mode, set_times=True, mtime_ns=mtime_ns)
    if src is not None:
        job.src_fd, job.src_offset, job.src_size = src
    return job


@pytest.mark.parametrize("impl", ["c", "py"])
def test_finish_files_writes_contents_mode_and_times(tmp_path: Path, impl: str) -> None:
    if impl == "c" and fileio_module is None:
        pytest.skip("C accelerator not built (pure-Python run)")
    archive = os.urandom(100_000)
    src = _source(tmp_path, "archive", archive)
    jobs = [
        _job(tmp_path, "a", [b"one", b"two"], None, 0o640, 1_500_000_000_123_456_789),
        _job(tmp_path, "b", [], (src, 1000, 50_000), 0o755, -1_000_000_001),  # before 1970
        _job(tmp_path, "c", [], None, 0o400, 0),
    ]
    if impl == "c":
        assert fileio_module is not None
        assert fileio_module.finish_files([j.as_tuple() for j in jobs]) is None
    else:
        assert _finish_py(jobs) is None
    assert _closed({j.fd for j in jobs})
    assert (tmp_path / "a").read_bytes() == b"onetwo"
    assert (tmp_path / "b").read_bytes() == archive[1000:51000]
    assert os.lseek(src, 0, os.SEEK_CUR) == 0  # the archive's own position is untouched
    os.close(src)
    for name, mode, mtime in (("a", 0o640, 1_500_000_000_123_456_789), ("b", 0o755, -1_000_000_001), ("c", 0o400, 0)):
        st_ = os.stat(tmp_path / name)
        assert stat.S_IMODE(st_.st_mode) == mode
        assert st_.st_mtime_ns == mtime


@pytest.mark.parametrize("impl", ["c", "py"])
def test_finish_files_reports_a_short_archive_and_closes_everything(tmp_path: Path, impl: str) -> None:
    if impl == "c" and fileio_module is None:
        pytest.skip("C accelerator not built (pure-Python run)")
    src = _source(tmp_path, "archive", b"x" * 100)
    jobs = [
        _job(tmp_path, "ok", [b"fine"], None, 0o644, 0),
        _job(tmp_path, "short", [], (src, 50, 80), 0o644, 0),
        _job(tmp_path, "after", [b"never"], None, 0o644, 0),
    ]
    if impl == "c":
        assert fileio_module is not None
        result = fileio_module.finish_files([j.as_tuple() for j in jobs])
    else:
        result = _finish_py(jobs)
    assert _closed({j.fd for j in jobs})
    os.close(src)
    assert result == (1, 0, "copy")
    assert (tmp_path / "after").read_bytes() == b""


def test_finish_batch_names_the_file_that_failed(tmp_path: Path) -> None:
    src = _source(tmp_path, "archive", b"x" * 10)
    jobs = [_job(tmp_path, "f", [], (src, 0, 20), 0o644, 0)]
    jobs[0].path = (b"dir", b"f")
    with pytest.raises(DesyncError, match=r"cannot extract dir/f: archive truncated"):
        finish_batch(jobs)
    os.close(src)


def test_batch_thread_reports_the_first_error_and_discards_the_rest() -> None:
    processed: list[int] = []
    discarded: list[int] = []
    gate = threading.Event()

    def process(batch: list[int]) -> None:
        gate.wait(5)
        if batch[0] == 2:
            raise DesyncError("batch 2 failed")
        processed.extend(batch)

    bt: BatchThread[int] = BatchThread(process, discarded.extend, max_batches=8)
    for i in range(5):
        bt.put([i])
    gate.set()
    with pytest.raises(DesyncError, match="batch 2 failed"):
        bt.close()
    assert processed == [0, 1]
    assert discarded == [3, 4]
    with pytest.raises(DesyncError):
        bt.put([9])  # after a failure, new work is refused and released
    assert discarded == [3, 4, 9]


def test_batch_thread_bounds_the_queue() -> None:
    gate = threading.Event()
    seen: list[int] = []

    def slow_sink(batch: list[int]) -> None:
        gate.wait(5)
        seen.extend(batch)

    bt: BatchThread[int] = BatchThread(slow_sink, lambda b: None, max_batches=2)
    bt.put([0])
    bt.put([1])
    blocked = threading.Thread(target=bt.put, args=([2],))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()  # the third batch waits for room
    gate.set()
    blocked.join(5)
    bt.close()
    assert seen == [0, 1, 2]


def _tree(root: Path) -> None:
    (root / "d" / "e").mkdir(parents=True)
    (root / "small").write_bytes(b"s" * 100)
    (root / "big").write_bytes(os.urandom(300_000))
    (root / "d" / "mid").write_bytes(os.urandom(20_000))
    (root / "d" / "e" / "empty").write_bytes(b"")
    os.symlink("../big", root / "d" / "link")


@pytest.mark.parametrize("limit", [-1, 0, 1000, 1 << 20])
def test_items_with_file_slices_make_the_same_archive(tmp_path: Path, limit: int) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    want = b"".join(encode_tree(str(src)))
    items = list(encode_items(str(src), inline_limit=limit))
    slices = [x for x in items if isinstance(x, FileSlice)]
    assert all(x.size > limit for x in slices)
    assert bool(slices) == (0 <= limit < 300_000)
    out = tmp_path / "out.catar"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    write_archive(fd, items)
    os.close(fd)
    assert _closed({x.fd for x in slices})
    assert out.read_bytes() == want


def test_a_file_that_shrinks_before_it_is_copied_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    items = encode_items(str(src), inline_limit=0)
    taken: list[bytes | FileSlice] = []
    for item in items:
        taken.append(item)
    os.truncate(src / "big", 10)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(DesyncError, match="big: file shrank while it was archived"):
            write_archive(fd, taken)
    finally:
        os.close(fd)


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    found: dict[str, tuple[int, int, bytes]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st_ = os.lstat(p)
            body = os.readlink(p).encode() if p.is_symlink() else (p.read_bytes() if p.is_file() else b"")
            found[str(p.relative_to(root))] = (st_.st_mode, st_.st_mtime_ns, body)
    return found


def test_extracting_from_a_file_equals_extracting_from_a_stream(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    os.chmod(src / "d" / "mid", 0o600)
    os.utime(src / "big", ns=(1, 123_456_789_000))
    data = b"".join(encode_tree(str(src)))
    (tmp_path / "a.catar").write_bytes(data)
    with open(tmp_path / "a.catar", "rb") as f:
        extract_stream(f, str(tmp_path / "from-file"))
    extract_stream(IterableReader([data[i:i + 777] for i in range(0, len(data), 777)]), str(tmp_path / "from-stream"))
    assert _snapshot(tmp_path / "from-file") == _snapshot(tmp_path / "from-stream") != {}
    assert (tmp_path / "from-file" / "big").read_bytes() == (src / "big").read_bytes()


def test_a_truncated_archive_file_fails_cleanly(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    data = b"".join(encode_tree(str(src)))
    cut = data.index((src / "big").read_bytes()[:64]) + 1000  # inside big's contents
    (tmp_path / "cut.catar").write_bytes(data[:cut])
    before = _open_count()
    with open(tmp_path / "cut.catar", "rb") as f:
        with pytest.raises(DesyncError, match="truncated"):
            extract_stream(f, str(tmp_path / "out"), ExtractOptions())
    assert _open_count() == before


def test_decoder_offers_file_ranges_only_for_regular_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    contents = os.urandom(50_000)
    (src / "big").write_bytes(contents)
    (src / "small").write_bytes(b"read ahead with the records")
    data = b"".join(encode_tree(str(src)))
    (tmp_path / "a.catar").write_bytes(data)
    with open(tmp_path / "a.catar", "rb") as f:
        ranges = [ev.payload.file_range() for ev in decode(f) if isinstance(ev, Node) and ev.payload is not None]
    assert len(ranges) == 2 and ranges[0] is not None and ranges[1] is None
    _, offset, size = ranges[0]
    assert data[offset:offset + size] == contents
    streamed = [ev.payload.file_range() for ev in decode(IterableReader([data]))
                if isinstance(ev, Node) and ev.payload is not None]
    assert streamed == [None, None]
