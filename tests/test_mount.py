"""desync mount-index with a real FUSE mount: blobs as a file, archives as a tree, signals, EIO, copy-on-read.

Every mount runs ``desync mount-index`` in a subprocess (the way users run
it) and is unmounted with fusermount3 in teardown, so a failing test leaves
no stale mount.  Tests skip, saying why, only where this system cannot
mount FUSE file systems.
"""

import errno
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desync.index import Index, IndexChunk
from desync.stores.indexes import read_index

from conftest import NEUTRAL_DIR, assert_one_line_error, desync_env, run_desync
from hostile_peers import sftp_ssh

MOUNT_TIMEOUT = 30.0
FUSERMOUNT = shutil.which("fusermount3") or shutil.which("fusermount")
_NOT_PERMITTED = ("Operation not permitted", "Permission denied", "fuse device not found", "No such device")


def _fuse_missing() -> str:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent: this system cannot mount FUSE file systems"
    if FUSERMOUNT is None:
        return "fusermount3 is not installed (scripts/setup-system installs fuse3)"
    return ""


pytestmark = pytest.mark.skipif(bool(_fuse_missing()), reason=_fuse_missing() or "FUSE available")


def _unmount(mountpoint: Path) -> None:
    if os.path.ismount(mountpoint):
        assert FUSERMOUNT is not None
        subprocess.run([FUSERMOUNT, "-u", "-z", str(mountpoint)], capture_output=True, timeout=30)


class Mount:
    """A running ``desync mount-index``; ``stderr`` is filled in when it has exited."""

    def __init__(self, proc: "subprocess.Popen[bytes]", mountpoint: Path) -> None:
        self.proc = proc
        self.mountpoint = mountpoint
        self.stderr = ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process and wait for it; returns its exit status."""
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=MOUNT_TIMEOUT)
        self.stderr = err.decode(errors="replace")
        return self.proc.returncode


@contextmanager
def mounted(mountpoint: Path, *args: object) -> Iterator[Mount]:
    """Start ``desync mount-index ARGS... MOUNTPOINT`` and wait until the mount is there."""
    mountpoint.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "desync", "mount-index", *map(str, args), str(mountpoint)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=NEUTRAL_DIR,
                            env=desync_env())
    mount = Mount(proc, mountpoint)
    try:
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not os.path.ismount(mountpoint):
            if proc.poll() is not None:
                err = proc.communicate()[1].decode(errors="replace")
                if any(text in err for text in _NOT_PERMITTED):
                    pytest.skip(f"mounting FUSE file systems is not permitted here: {err.strip()}")
                raise AssertionError(f"desync mount-index exited {proc.returncode} without mounting:\n{err}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{mountpoint} was not mounted within {MOUNT_TIMEOUT} s")
            time.sleep(0.02)
        yield mount
    finally:
        _unmount(mountpoint)
        if proc.poll() is None:
            try:
                mount.stop(signal.SIGTERM)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def _make_blob(tmp: Path, data: bytes, name: str = "disk.img.caibx") -> tuple[Path, Path, Index]:
    src, store, idx = tmp / "blob.bin", tmp / "store", tmp / name
    src.write_bytes(data)
    run_desync("make", "-s", store, idx, src)
    return idx, store, read_index(str(idx))


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path, Path, Index]:
    tmp = tmp_path_factory.mktemp("mount-blob")
    data = random.Random(11).randbytes(3 * 1024 * 1024 + 12345)
    idx, store, index = _make_blob(tmp, data)
    assert len(index.chunks) > 20
    return data, idx, store, index


def test_blob_appears_as_one_read_only_file_named_after_the_index(
        blob: tuple[bytes, Path, Path, Index], tmp_path: Path) -> None:
    data, idx, store, _ = blob
    with mounted(tmp_path / "mnt", "-s", store, idx) as m:
        assert os.listdir(m.mountpoint) == ["disk.img"]
        path = m.mountpoint / "disk.img"
        st_ = os.stat(path)
        assert stat.S_ISREG(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o444
        assert st_.st_size == len(data)
        with open(path, "rb") as f:
            assert f.read() == data
        with pytest.raises(OSError) as info:
            open(path, "r+b")
        assert info.value.errno in (errno.EROFS, errno.EACCES)
        assert m.stop() == 0
    assert not os.path.ismount(tmp_path / "mnt")


@pytest.fixture(scope="module")
def random_mount(blob: tuple[bytes, Path, Path, Index], tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    _, idx, store, _ = blob
    with mounted(tmp_path_factory.mktemp("random") / "mnt", "-s", store, idx) as m:
        fd = os.open(m.mountpoint / "disk.img", os.O_RDONLY)
        try:
            yield fd
        finally:
            os.close(fd)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 3 * 1024 * 1024 + 20000), size=st.integers(1, 600_000))
def test_random_reads_equal_the_blob(blob: tuple[bytes, Path, Path, Index], random_mount: int,
                                     offset: int, size: int) -> None:
    data = blob[0]
    assert os.pread(random_mount, size, offset) == data[offset:offset + size]


def test_sequential_reads_in_small_and_odd_sizes(blob: tuple[bytes, Path, Path, Index], tmp_path: Path) -> None:
    data, idx, store, _ = blob
    with mounted(tmp_path / "mnt", "-s", store, "-n", "3", idx) as m:
        got = bytearray()
        with open(m.mountpoint / "disk.img", "rb", buffering=0) as f:
            while block := f.read(77_777):
                got += block
        assert bytes(got) == data


def test_unmounting_ends_the_command(blob: tuple[bytes, Path, Path, Index], tmp_path: Path) -> None:
    _, idx, store, _ = blob
    with mounted(tmp_path / "mnt", "-s", store, idx) as m:
        assert FUSERMOUNT is not None
        subprocess.run([FUSERMOUNT, "-u", str(m.mountpoint)], check=True, capture_output=True, timeout=30)
        assert m.proc.wait(timeout=MOUNT_TIMEOUT) == 0


def test_sigint_unmounts_and_exits_zero(blob: tuple[bytes, Path, Path, Index], tmp_path: Path) -> None:
    data, idx, store, _ = blob
    with mounted(tmp_path / "mnt", "-s", store, idx) as m:
        with open(m.mountpoint / "disk.img", "rb") as f:
            assert f.read(1000) == data[:1000]
        assert m.stop(signal.SIGINT) == 0, m.stderr
        assert not os.path.ismount(m.mountpoint)
        assert m.stderr == ""


def test_a_missing_chunk_gives_eio_and_one_line(blob: tuple[bytes, Path, Path, Index], tmp_path: Path) -> None:
    data, idx, store, index = blob
    broken = tmp_path / "store"
    shutil.copytree(store, broken)
    bad = index.chunks[len(index.chunks) // 2]
    hexid = bad.id.hex()
    (broken / hexid[:4] / f"{hexid}.cacnk").unlink()
    with mounted(tmp_path / "mnt", "-s", broken, idx) as m:
        fd = os.open(m.mountpoint / "disk.img", os.O_RDONLY)
        try:
            with pytest.raises(OSError) as info:
                os.pread(fd, 100, bad.start + 10)
            assert info.value.errno == errno.EIO
            assert os.pread(fd, 1000, 0) == data[:1000]
            assert os.pread(fd, 1000, len(data) - 1000) == data[-1000:]
        finally:
            os.close(fd)
        assert m.stop() == 0
    lines = m.stderr.splitlines()
    assert lines, "the failed read was not reported"
    for line in lines:
        assert line.startswith("desync: error: reading disk.img at offset ") and hexid in line, m.stderr


def test_copy_on_read_file_survives_a_remount(blob: tuple[bytes, Path, Path, Index], tmp_path: Path) -> None:
    data, idx, store, index = blob
    cor, state = tmp_path / "disk.cor", tmp_path / "disk.state"
    # Reads near the end: read-ahead has nothing after them, so the rest of the blob stays unfetched.
    tail = len(data) - 200_000
    with mounted(tmp_path / "mnt", "-s", store, "--cor-file", cor, "--cor-state-save", state, idx) as m:
        fd = os.open(m.mountpoint / "disk.img", os.O_RDONLY)
        try:
            assert os.pread(fd, 200_000, tail) == data[tail:]
        finally:
            os.close(fd)
        assert m.stop() == 0
    saved = state.read_bytes()
    assert len(saved) == (len(index.chunks) + 7) // 8
    present = [i for i in range(len(index.chunks)) if saved[i >> 3] & (1 << (i & 7))]
    assert set(present) >= {i for i, c in enumerate(index.chunks) if c.end > tail}
    assert 0 not in present
    assert cor.stat().st_size == len(data)

    # Remounted against an empty store: what was read before comes from the file, the rest fails.
    empty = tmp_path / "empty-store"
    empty.mkdir()
    with mounted(tmp_path / "mnt", "-s", empty, "--cor-file", cor, "--cor-state-save", state, idx) as m:
        fd = os.open(m.mountpoint / "disk.img", os.O_RDONLY)
        try:
            assert os.pread(fd, 150_000, tail + 1000) == data[tail + 1000:tail + 151_000]
            with pytest.raises(OSError) as info:
                os.pread(fd, 10, 0)
            assert info.value.errno == errno.EIO
        finally:
            os.close(fd)
        assert m.stop() == 0

    # A new file initialised from that state loads the same chunks in the background.
    cor2, state2 = tmp_path / "disk2.cor", tmp_path / "disk2.state"
    with mounted(tmp_path / "mnt", "-s", store, "--cor-file", cor2, "--cor-state-init", state,
                 "--cor-state-save", state2, idx) as m:
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not _holds(cor2.read_bytes(), data, [index.chunks[i] for i in present]):
            assert time.monotonic() < deadline, "the chunks of the init state were not loaded"
            time.sleep(0.05)
        assert m.stop() == 0
    assert state2.read_bytes() == saved


def _holds(copy: bytes, data: bytes, chunks: list[IndexChunk]) -> bool:
    return all(copy[c.start:c.end] == data[c.start:c.end] for c in chunks)


def _build_tree(root: Path) -> None:
    rng = random.Random(5)
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "emptydir").mkdir()
    (root / "empty").write_bytes(b"")
    (root / "hello.txt").write_text("hello\n")
    (root / "dir" / "big.bin").write_bytes(rng.randbytes(1_500_000))
    (root / "dir" / "sub" / "medium.bin").write_bytes(rng.randbytes(300_000))
    (root / "dir" / "odd name \xe9.txt").write_text("é")
    os.symlink("hello.txt", root / "link")
    os.symlink("../nowhere", root / "dir" / "dangling")
    os.mkfifo(root / "fifo")
    os.chmod(root / "hello.txt", 0o600)
    os.chmod(root / "dir" / "big.bin", 0o755)
    try:
        os.setxattr(root / "hello.txt", "user.note", b"kept")
    except OSError:
        pass
    if os.geteuid() == 0:
        os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    stamp = 1_600_000_000_123_456_789
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            n += 1
            os.utime(os.path.join(dirpath, name), ns=(stamp + n, stamp + n * 1000), follow_symlinks=False)
    os.utime(root, ns=(stamp, stamp))


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything the mount must reproduce, per relative path."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st_ = os.lstat(path)
            rel = os.path.relpath(path, root)
            kind = stat.S_IFMT(st_.st_mode)
            extra: object = None
            if kind == stat.S_IFREG:
                with open(path, "rb") as f:
                    extra = f.read()
            elif kind == stat.S_IFLNK:
                extra = os.readlink(path)
            elif kind == stat.S_IFDIR:
                extra = sorted(os.listdir(path))
            elif kind == stat.S_IFCHR:
                extra = st_.st_rdev
            xattrs = {} if kind == stat.S_IFLNK else {k: os.getxattr(path, k) for k in os.listxattr(path)
                                                      if k.startswith("user.")}
            size = st_.st_size if kind in (stat.S_IFREG, stat.S_IFLNK) else None
            out[rel] = (kind, stat.S_IMODE(st_.st_mode), st_.st_mtime_ns, size, st_.st_uid, st_.st_gid, extra,
                        xattrs)
    return out


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mount-tree") / "tree"
    root.mkdir()
    _build_tree(root)
    return root


@pytest.mark.parametrize("kind", ["caidx", "catar"])
def test_archive_mount_equals_the_original_tree(tree: Path, tmp_path: Path, kind: str) -> None:
    if kind == "caidx":
        archive, store = tmp_path / "tree.caidx", tmp_path / "store"
        run_desync("tar", "-i", "-s", store, archive, tree)
        args: list[object] = ["-s", store, archive]
    else:
        archive = tmp_path / "tree.catar"
        run_desync("tar", archive, tree)
        args = [archive]
    with mounted(tmp_path / "mnt", *args) as m:
        assert _snapshot(m.mountpoint) == _snapshot(tree)
        with open(m.mountpoint / "dir" / "big.bin", "rb") as f:
            f.seek(700_001)
            assert f.read(123_456) == (tree / "dir" / "big.bin").read_bytes()[700_001:823_457]
        with pytest.raises(OSError) as info:
            open(m.mountpoint / "new-file", "wb")
        assert info.value.errno in (errno.EROFS, errno.EACCES)
        assert m.stop() == 0


def test_usage_errors_are_one_line(blob: tuple[bytes, Path, Path, Index], tmp_path: Path) -> None:
    _, idx, store, _ = blob
    proc = run_desync("mount-index", "-s", store, idx, tmp_path / "absent", check=False)
    assert "absent does not exist" in assert_one_line_error(proc)
    proc = run_desync("mount-index", "--cor-state-save", tmp_path / "s", "-s", store, idx, tmp_path, check=False)
    assert "need --cor-file" in assert_one_line_error(proc, status=2)
    proc = run_desync("mount-index", idx, tmp_path, check=False)
    assert "no store given" in assert_one_line_error(proc, status=2)
    proc = run_desync("mount-index", "--cor-file", tmp_path / "c", tmp_path / "x.catar", tmp_path, check=False)
    assert "needs an index" in assert_one_line_error(proc, status=2)


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.mark.parametrize("how", ["fusermount", "sigterm"])
def test_unmounting_ends_the_command_while_a_read_is_stuck_in_the_store(
        blob: tuple[bytes, Path, Path, Index], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    _, idx, store, _ = blob
    for key, value in sftp_ssh(tmp_path, "stall").items():
        monkeypatch.setenv(key, value)
    with mounted(tmp_path / "mnt", "--timeout", "600", "-s", f"sftp://127.0.0.1{store}", idx) as m:
        reader = subprocess.Popen([sys.executable, "-c", f"open({str(m.mountpoint / 'disk.img')!r}, 'rb').read(10)"])
        with pytest.raises(subprocess.TimeoutExpired):
            reader.wait(timeout=2)  # the store never answers: the read is stuck
        reader.kill()
        reader.wait(timeout=MOUNT_TIMEOUT)
        if how == "sigterm":
            assert m.stop(signal.SIGTERM) == 0, m.stderr
        else:
            assert FUSERMOUNT is not None
            subprocess.run([FUSERMOUNT, "-u", str(m.mountpoint)], check=True, capture_output=True, timeout=30)
            assert m.proc.wait(timeout=MOUNT_TIMEOUT) == 0
        assert not os.path.ismount(m.mountpoint)


def test_a_chunk_far_larger_than_the_index_says_is_refused_with_eio(
        blob: tuple[bytes, Path, Path, Index], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, idx, store, _ = blob
    for key, value in sftp_ssh(tmp_path, "endless-file").items():
        monkeypatch.setenv(key, value)
    with mounted(tmp_path / "mnt", "-s", f"sftp://127.0.0.1{store}", idx) as m:
        with pytest.raises(OSError) as info:
            with open(m.mountpoint / "disk.img", "rb") as f:
                f.read(len(data))
        assert info.value.errno == errno.EIO
        assert _peak_rss(m.proc.pid) < 256 << 20
        assert FUSERMOUNT is not None
        subprocess.run([FUSERMOUNT, "-u", str(m.mountpoint)], check=True, capture_output=True, timeout=30)
        assert m.proc.wait(timeout=MOUNT_TIMEOUT) == 0
        assert m.proc.stderr is not None
        assert "is invalid: more than" in m.proc.stderr.read().decode()
