"""The batched file reader behind local-store extraction, and its pure-Python twin."""

import errno
import os
from pathlib import Path

import pytest

from desync import digest as digest_mod
from desync._accel import fileio_module
from desync.chunk import Chunk
from desync.errors import ChunkMissing
from desync.stores import LocalStore, StoreOptions

needs_c = pytest.mark.skipif(fileio_module is None, reason="C accelerator not built (pure-Python run)")


@pytest.mark.parametrize("accel", [True, False])
def test_read_files_returns_contents_or_errno(tmp_path: Path, accel: bool) -> None:
    """The C reader and its Python twin: regular files up to their limit, errnos for everything else."""
    from desync import fsutil

    if accel and fileio_module is None:
        pytest.skip("C accelerator not built (pure-Python run)")
    read = fileio_module.read_files if accel and fileio_module is not None else fsutil.read_files_py
    (tmp_path / "a").write_bytes(b"alpha")
    (tmp_path / "empty").write_bytes(b"")
    big = os.urandom(300_000)
    (tmp_path / "big").write_bytes(big)
    os.mkfifo(tmp_path / "fifo")  # nobody writes: a blocking open or read would hang here
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(1 << 40)
    names = ("a", "missing", "empty", "big", "fifo", "sparse", "big")
    paths = [os.fsencode(tmp_path / n) for n in names] + [os.fsencode(tmp_path)]
    limits = [10, 10, 0, 300_000, 10, 1 << 20, 299_999, 10]
    got = read(paths, limits)
    assert got == [b"alpha", errno.ENOENT, b"", big, errno.EINVAL, errno.EFBIG, errno.EFBIG, errno.EISDIR]
    with pytest.raises(TypeError):
        read(["not bytes"], [1])  # type: ignore[list-item]  # the wrong type on purpose: the C code must refuse it


def test_batched_get_matches_single_gets_and_falls_back(tmp_path: Path) -> None:
    sha = digest_mod.SHA512_256_DIGEST
    store = LocalStore(str(tmp_path), StoreOptions(), create=True)
    chunks = [Chunk.from_data(os.urandom(1000 + i), sha) for i in range(10)]
    for c in chunks:
        store.put_chunk(c)
    # One chunk stored uncompressed (casync's other form): found through the fallback.
    plain = os.urandom(777)
    pid = sha.sum(plain)
    (tmp_path / pid.hex()[:4]).mkdir(exist_ok=True)
    (tmp_path / pid.hex()[:4] / pid.hex()).write_bytes(plain)
    requests = [(c.id, len(c.data())) for c in chunks] + [(pid, 777)]
    got = store.get_chunks(requests)
    assert [g.data() for g in got] == [c.data() for c in chunks] + [plain]
    with pytest.raises(ChunkMissing):
        store.get_chunks(requests + [(sha.sum(b"absent"), 6)])


@pytest.mark.parametrize("accel", [True, False])
def test_pwrite_many_writes_every_piece_at_its_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      accel: bool) -> None:
    from desync import fsutil

    if accel and fileio_module is None:
        pytest.skip("C accelerator not built (pure-Python run)")
    if not accel:
        monkeypatch.setattr(fsutil, "_FILEIO", None)
    target = tmp_path / "out"
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        big = os.urandom(200_000)
        fsutil.pwrite_many(fd, [(b"tail", 300_000), (big, 10), (b"head", 0)])
        fsutil.pwrite_many(fd, [])
    finally:
        os.close(fd)
    data = target.read_bytes()
    assert len(data) == 300_004
    assert data[:4] == b"head" and data[10:200_010] == big and data[300_000:] == b"tail"
    assert data[4:10] == bytes(6) and data[200_010:300_000] == bytes(99_990)
    read_only = os.open(target, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as info:
            fsutil.pwrite_many(read_only, [(b"x", 0)])
        assert info.value.errno == errno.EBADF
    finally:
        os.close(read_only)


@needs_c
def test_syncfs_flushes_a_file_system_and_reports_errors_as_errno(tmp_path: Path) -> None:
    assert fileio_module is not None
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert fileio_module.syncfs(fd) == 0
    finally:
        os.close(fd)
    assert fileio_module.syncfs(fd) == errno.EBADF  # closed: the caller falls back to sync()
    with pytest.raises(ValueError):
        fileio_module.syncfs(-1)


@pytest.mark.parametrize("accel", [True, False])
def test_sync_filesystem_with_and_without_the_accelerator(tmp_path: Path, accel: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways flush with syncfs; a failed syncfs (here: a closed descriptor) is reported, not raised."""
    from desync import fsutil

    if accel and fileio_module is None:
        pytest.skip("C accelerator not built (pure-Python run)")
    if not accel:
        monkeypatch.setattr(fsutil, "_FILEIO", None)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert fsutil._syncfs(fd)
    finally:
        os.close(fd)
    assert not fsutil._syncfs(fd)
    fsutil.sync_filesystem(str(tmp_path))
