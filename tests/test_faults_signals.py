"""Process faults: SIGTERM/SIGHUP clean up like Ctrl-C; kill -9 at random points leaves nothing the next run keeps;
a full disk; a TCP link that breaks in the middle of answers."""

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import NEUTRAL_DIR, assert_one_line_error, desync_env, run_desync

STOP_SIGNALS = [(signal.SIGTERM, 143), (signal.SIGHUP, 129)]


def _popen(*args: object, stdin: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "desync", *map(str, args)], stdin=stdin, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=desync_env(), cwd=NEUTRAL_DIR)


def _wait_until(check: Callable[[], object], proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        assert time.monotonic() < deadline
        time.sleep(0.02)


@contextmanager
def _stalling_server() -> Iterator[int]:
    """A TCP server that accepts and reads but never answers: an HTTP store that keeps its client waiting."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        for conn in held:
            conn.close()


def _made(tmp_path: Path, size: int = 600_000) -> tuple[Path, Path, bytes]:
    data = os.urandom(size)
    (tmp_path / "in").write_bytes(data)
    run_desync("make", "-s", tmp_path / "s", "-m", "4:16:64", tmp_path / "x.caibx", tmp_path / "in")
    return tmp_path / "x.caibx", tmp_path / "s", data


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("signum,status", STOP_SIGNALS)
def test_stop_signal_during_extract_removes_the_temp_image(tmp_path: Path, signum: int, status: int) -> None:
    index, _, _ = _made(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with _stalling_server() as port:
        proc = _popen("extract", "--timeout", "60", "-s", f"http://127.0.0.1:{port}/", index, out / "image")
        _wait_until(lambda: _hidden(out), proc)
        time.sleep(0.2)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert b"Traceback" not in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("signum,status", STOP_SIGNALS)
def test_stop_signal_during_untar_removes_the_partial_tree(tmp_path: Path, signum: int, status: int) -> None:
    src = tmp_path / "src"
    for i in range(20):
        (src / f"d{i}").mkdir(parents=True)
        (src / f"d{i}" / "f").write_bytes(os.urandom(5000))
    run_desync("tar", tmp_path / "a.catar", src)
    data = (tmp_path / "a.catar").read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    proc = _popen("untar", "-", out / "tree", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(data[: len(data) // 2])  # the rest never comes
    proc.stdin.flush()
    _wait_until(lambda: _hidden(out), proc)
    time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("signum,status", STOP_SIGNALS)
def test_stop_signal_during_make_leaves_no_temp_chunks_or_index(tmp_path: Path, signum: int, status: int) -> None:
    store, out = tmp_path / "s", tmp_path / "out"
    out.mkdir()
    proc = _popen("make", "-s", store, "-m", "4:16:64", out / "x.caibx", "-", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(os.urandom(9 << 20))  # more than one segment: chunks are stored, then stdin stalls
    proc.stdin.flush()
    _wait_until(lambda: store.exists() and any(store.rglob("*.cacnk")), proc)
    time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert list(out.iterdir()) == []
    assert [p for p in store.rglob("*") if p.name.startswith(".tmp")] == []


def _kill_while_busy(proc: subprocess.Popen[bytes], busy: Callable[[], object], rng: random.Random) -> bool:
    """kill -9 ``proc`` at a random moment soon after ``busy()`` holds; whether it was still busy then."""
    deadline = time.monotonic() + 30
    while not busy() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.02))
    caught = bool(busy())
    proc.kill()
    proc.communicate(timeout=30)
    return caught


def test_kill_9_at_random_points_leaves_old_or_complete_targets_and_no_leftovers(tmp_path: Path) -> None:
    index, store, data = _made(tmp_path, 1_500_000)
    old = b"the old image"
    image = tmp_path / "image"
    rng = random.Random(11)
    caught = 0
    for _ in range(4):
        image.write_bytes(old)
        proc = _popen("extract", "-n", "1", "-s", store, index, image)
        caught += _kill_while_busy(proc, lambda: _hidden(tmp_path), rng)
        assert image.read_bytes() in (old, data)
        run_desync("extract", "-s", store, index, image)
        assert image.read_bytes() == data
        assert _hidden(tmp_path) == []
    src = tmp_path / "src"
    for i in range(30):
        (src / f"d{i}").mkdir(parents=True)
        (src / f"d{i}" / "f").write_bytes(os.urandom(20000))
    run_desync("tar", "-s", store, "-i", tmp_path / "t.caidx", src)
    for _ in range(3):
        proc = _popen("untar", "-n", "1", "-s", store, "-i", tmp_path / "t.caidx", tmp_path / "tree")
        caught += _kill_while_busy(proc, lambda: _hidden(tmp_path), rng)
        if (tmp_path / "tree").exists():
            assert len(list((tmp_path / "tree").iterdir())) == 30
            subprocess.run(["rm", "-rf", str(tmp_path / "tree")], check=True)
        run_desync("untar", "-s", store, "-i", tmp_path / "t.caidx", tmp_path / "tree")
        assert len(list((tmp_path / "tree").iterdir())) == 30
        subprocess.run(["rm", "-rf", str(tmp_path / "tree")], check=True)
        assert _hidden(tmp_path) == []
    assert caught > 0
    (tmp_path / "more").write_bytes(os.urandom(3 << 20))
    for _ in range(2):
        proc = _popen("make", "-s", store, tmp_path / "m.caibx", tmp_path / "more")
        _kill_while_busy(proc, lambda: any(p.name.startswith(".tmp") for p in store.rglob("*")), rng)
        run_desync("verify", "-r", "-s", store)
        assert [p for p in store.rglob("*") if p.name.startswith(".tmp")] == []


@contextmanager
def _small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_full_disk_is_one_error_line_and_leaves_no_temp_files(tmp_path: Path) -> None:
    index, store, _ = _made(tmp_path, 1_500_000)
    with _small_tmpfs(tmp_path / "small", "512k") as small:
        proc = run_desync("extract", "-s", store, index, small / "image", check=False)
        assert "No space left" in assert_one_line_error(proc) or "no space" in proc.stderr.decode().lower()
        assert list(small.iterdir()) == []
        proc = run_desync("make", "-s", small / "store", "-m", "4:16:64", tmp_path / "y.caibx", tmp_path / "in",
                          check=False)
        assert "no space left" in assert_one_line_error(proc).lower()
        assert [p for p in (small / "store").rglob("*") if p.name.startswith(".tmp")] == []
        assert not (tmp_path / "y.caibx").exists()


class _BreakingProxy:
    """A TCP proxy that cuts every ``every``-th connection after a random number of answer bytes."""

    def __init__(self, upstream: int, every: int = 3, seed: int = 5) -> None:
        self.upstream = upstream
        self.every = every
        self.rng = random.Random(seed)
        self.cut = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        n = 0
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            n += 1
            budget = self.rng.randint(1, 20000) if n % self.every == 0 else -1
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pipe, args=(client, server, -1), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, budget), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, budget: int) -> None:
        try:
            while True:
                block = src.recv(65536)
                if not block:
                    break
                if budget >= 0 and len(block) >= budget:
                    dst.sendall(block[:budget])
                    self.cut += 1
                    break
                budget -= len(block) if budget >= 0 else 0
                dst.sendall(block)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()


def test_extract_through_a_link_that_breaks_mid_answer_is_complete_or_a_clean_error(tmp_path: Path) -> None:
    from http_util import ServerProcess

    index, store, data = _made(tmp_path, 1_000_000)
    with ServerProcess("chunk-server", "-s", store) as srv:
        proxy = _BreakingProxy(srv.port)
        try:
            proc = run_desync("extract", "--error-retry", "8", "-s", f"http://127.0.0.1:{proxy.port}/", index,
                              tmp_path / "out", check=False)
        finally:
            proxy.close()
    assert proxy.cut > 0
    if proc.returncode == 0:
        assert (tmp_path / "out").read_bytes() == data
    else:
        assert_one_line_error(proc)
        assert not (tmp_path / "out").exists()
    assert _hidden(tmp_path) == []
