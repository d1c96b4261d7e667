"""make and extract through the CLI, against casync's fixtures and casync itself."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from desync.chunker import ACCELERATED

from conftest import (
    FIXTURES,
    NEUTRAL_DIR,
    assert_one_line_error,
    desync_env,
    requires_casync,
    run_casync,
    run_desync,
    sha512_256,
)

MANIFEST = json.loads((FIXTURES / "casync" / "manifest.json").read_text())
BLOB_FIXTURES = [f for f in MANIFEST["fixtures"] if f["file"].startswith("blobs/")]
# The pure-Python chunker is slow; keep its share of the suite small.
MAX_PURE_INPUT = 1 << 20


def _chunk_flag(name: str) -> list[str]:
    """desync -m / casync --chunk-size arguments encoded in a fixture name (.mA-B-C)."""
    for part in name.split("."):
        if part.startswith("m") and part.count("-") == 2 and part[1:].replace("-", "").isdigit():
            a, b, c = part[1:].split("-")
            return ["-m", f"{a}:{b}:{c}"]
    return []


def _blob_params() -> list[object]:
    params: list[object] = []
    for f in BLOB_FIXTURES:
        size = MANIFEST["inputs"][f["input"]]["size"]
        marks = [pytest.mark.slow] if size > MAX_PURE_INPUT else []
        params.append(pytest.param(f, id=Path(f["file"]).name, marks=marks))
    return params


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory: pytest.TempPathFactory, gen_inputs: ModuleType) -> Path:
    d = tmp_path_factory.mktemp("inputs")
    for name, info in MANIFEST["inputs"].items():
        data = gen_inputs.generate(name)
        assert sha512_256(data) == info["sha512_256"]
        (d / name).write_bytes(data)
    return d


@pytest.mark.parametrize("fixture", _blob_params())
def test_make_writes_casync_identical_index(fixture: dict[str, object], inputs_dir: Path, tmp_path: Path) -> None:
    name = Path(str(fixture["file"])).name
    size = MANIFEST["inputs"][fixture["input"]]["size"]
    if not ACCELERATED and size > MAX_PURE_INPUT:
        pytest.skip("input too large for the pure-Python chunker within the suite's time budget")
    args = _chunk_flag(name)
    if ".sha256." in name:
        args += ["--digest", "sha256"]
    store = tmp_path / "store"
    run_desync("make", "-s", store, *args, tmp_path / "out.caibx", inputs_dir / str(fixture["input"]))
    expected = (FIXTURES / "casync" / "blobs" / name).read_bytes()
    assert (tmp_path / "out.caibx").read_bytes() == expected
    run_desync("extract", "-s", store, FIXTURES / "casync" / "blobs" / name, tmp_path / "blob")
    assert (tmp_path / "blob").read_bytes() == (inputs_dir / str(fixture["input"])).read_bytes()


def test_go_desync_index_gives_identical_chunk_table_and_blob(tmp_path: Path) -> None:
    go = FIXTURES / "desync"
    run_desync("make", "-m", "2:8:32", tmp_path / "ours.caibx", go / "blob1")
    ours, theirs = (tmp_path / "ours.caibx").read_bytes(), (go / "blob1.caibx").read_bytes()
    assert ours[24:] == theirs[24:]  # everything after the flags word
    assert ours[16:24] != theirs[16:24]  # we write casync's EXCLUDE_FILE bit, the Go tool does not
    run_desync("extract", "-s", go / "blob1.store", go / "blob1.caibx", tmp_path / "blob1")
    assert (tmp_path / "blob1").read_bytes() == (go / "blob1").read_bytes()


def _random_blob(rng: random.Random, size: int) -> bytes:
    kind = rng.choice(["random", "zeros", "repeat", "text"])
    if kind == "random":
        return rng.randbytes(size)
    if kind == "zeros":
        return bytes(size)
    if kind == "repeat":
        block = rng.randbytes(rng.randint(1, 70000))
        return (block * (size // len(block) + 1))[:size]
    words = [rng.randbytes(rng.randint(1, 8)).hex().encode() for _ in range(500)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


@pytest.mark.parametrize("seed", range(8))
def test_make_extract_round_trip_random(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    limit = 3_000_000 if ACCELERATED else 400_000
    data = _random_blob(rng, rng.choice([0, 1, 47, 48, 4096, rng.randint(1, limit)]))
    lo = rng.choice([1, 2, 4, 16])
    sizes = f"{lo}:{lo * rng.choice([1, 2, 4])}:{lo * rng.choice([4, 8])}"
    (tmp_path / "in").write_bytes(data)
    run_desync("make", "-s", tmp_path / "s", "-m", sizes, tmp_path / "x.caibx", tmp_path / "in")
    run_desync("extract", "-s", tmp_path / "s", tmp_path / "x.caibx", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


def test_large_blob_with_many_workers(tmp_path: Path) -> None:
    """Many chunks in flight at once across threads (found a thread-safety bug in the compiled build)."""
    size = 48 * 1024 * 1024 if ACCELERATED else 2 * 1024 * 1024
    data = random.Random(99).randbytes(size)
    (tmp_path / "in").write_bytes(data)
    run_desync("make", "-n", "8", "-s", tmp_path / "s", tmp_path / "x.caibx", tmp_path / "in")
    run_desync("make", "-n", "8", "-s", tmp_path / "s", tmp_path / "y.caibx", tmp_path / "in")
    assert (tmp_path / "x.caibx").read_bytes() == (tmp_path / "y.caibx").read_bytes()
    run_desync("extract", "-n", "8", "-s", tmp_path / "s", tmp_path / "x.caibx", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


def test_index_via_stdin_and_stdout(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    (tmp_path / "in").write_bytes(data)
    made = run_desync("make", "-s", tmp_path / "s", "-", tmp_path / "in")
    run_desync("extract", "-s", tmp_path / "s", "-", tmp_path / "out", input=made.stdout)
    assert (tmp_path / "out").read_bytes() == data
    piped = run_desync("make", tmp_path / "y.caibx", "-", input=data)
    assert piped.returncode == 0
    assert (tmp_path / "y.caibx").read_bytes() == made.stdout


def test_make_without_store_writes_only_the_index(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(os.urandom(100_000))
    run_desync("make", tmp_path / "x.caibx", tmp_path / "in")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "x.caibx"]


@requires_casync
@pytest.mark.casync
@pytest.mark.parametrize("seed", range(6))
def test_live_cross_check_with_casync(seed: int, tmp_path: Path) -> None:
    rng = random.Random(1000 + seed)
    data = _random_blob(rng, rng.randint(1, 2_000_000 if ACCELERATED else 300_000))
    (tmp_path / "in").write_bytes(data)
    lo = rng.choice([1, 4, 16])
    avg, hi = lo * rng.choice([1, 4]), lo * 16
    run_casync("make", f"--store={tmp_path / 'cs'}", f"--chunk-size={lo * 1024}:{avg * 1024}:{hi * 1024}",
               tmp_path / "c.caibx", tmp_path / "in")
    run_desync("make", "-s", tmp_path / "ds", "-m", f"{lo}:{avg}:{hi}", tmp_path / "d.caibx", tmp_path / "in")
    assert (tmp_path / "d.caibx").read_bytes() == (tmp_path / "c.caibx").read_bytes()
    # Each tool rebuilds from the other's store.
    run_casync("extract", f"--store={tmp_path / 'ds'}", tmp_path / "d.caibx", tmp_path / "by-casync")
    run_desync("extract", "-s", tmp_path / "cs", tmp_path / "c.caibx", tmp_path / "by-desync")
    assert (tmp_path / "by-casync").read_bytes() == data
    assert (tmp_path / "by-desync").read_bytes() == data


@requires_casync
@pytest.mark.casync
def test_casync_xz_and_gzip_stores_extract(tmp_path: Path) -> None:
    data = _random_blob(random.Random(7), 500_000)
    (tmp_path / "in").write_bytes(data)
    for comp in ("xz", "gzip"):
        run_casync("make", f"--store={tmp_path / comp}", f"--compression={comp}", tmp_path / f"{comp}.caibx",
                   tmp_path / "in")
        run_desync("extract", "-s", tmp_path / comp, tmp_path / f"{comp}.caibx", tmp_path / f"out-{comp}")
        assert (tmp_path / f"out-{comp}").read_bytes() == data


def test_store_chaining_and_cache(tmp_path: Path) -> None:
    go = FIXTURES / "desync"
    empty = tmp_path / "empty"
    empty.mkdir()
    cache = tmp_path / "cache"
    run_desync("extract", "-s", empty, "-s", go / "blob1.store", "-c", cache, go / "blob1.caibx", tmp_path / "a")
    assert (tmp_path / "a").read_bytes() == (go / "blob1").read_bytes()
    cached = {p.name[:64] for p in cache.rglob("*.cacnk")}
    listed = set(run_desync("list-chunks", go / "blob1.caibx").stdout.decode().split())
    null_chunk = sha512_256(bytes(32 * 1024))  # all-zero max-size chunks are holes, never fetched
    assert cached == listed - {null_chunk}
    # The cache alone now suffices.
    run_desync("extract", "-s", empty, "-c", cache, go / "blob1.caibx", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == (go / "blob1").read_bytes()


def test_in_place_extract_keeps_matching_content(tmp_path: Path) -> None:
    go = FIXTURES / "desync"
    target = tmp_path / "t"
    data = bytearray((go / "blob1").read_bytes())
    data[100_000:100_010] = b"XXXXXXXXXX"
    target.write_bytes(bytes(data) + b"extra tail")
    proc = run_desync("extract", "-k", "--print-stats", "-s", go / "blob1.store", go / "blob1.caibx", target)
    assert target.read_bytes() == (go / "blob1").read_bytes()
    assert b"Fetched: 1\n" in proc.stderr


def test_zero_blob_extracts_sparse_and_exact(tmp_path: Path) -> None:
    (tmp_path / "zeros").write_bytes(bytes(3 * 262144 + 5))
    run_desync("make", "-s", tmp_path / "s", tmp_path / "z.caibx", tmp_path / "zeros")
    run_desync("extract", "-s", tmp_path / "s", tmp_path / "z.caibx", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == bytes(3 * 262144 + 5)


# --- failures: one line, right exit status, nothing half-written ---------------------------------


def _made(tmp_path: Path, size: int = 400_000) -> tuple[Path, Path, bytes]:
    data = os.urandom(size)
    (tmp_path / "in").write_bytes(data)
    run_desync("make", "-s", tmp_path / "s", "-m", "4:16:64", tmp_path / "x.caibx", tmp_path / "in")
    return tmp_path / "x.caibx", tmp_path / "s", data


def test_truncated_index_is_a_one_line_error(tmp_path: Path) -> None:
    index, store, _ = _made(tmp_path)
    (tmp_path / "cut.caibx").write_bytes(index.read_bytes()[:-13])
    proc = run_desync("extract", "-s", store, tmp_path / "cut.caibx", tmp_path / "out", check=False)
    assert "truncated" in assert_one_line_error(proc)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.glob(".out.*")) == []


def test_flipped_byte_in_chunk_names_chunk_and_store(tmp_path: Path) -> None:
    index, store, _ = _made(tmp_path)
    victim = sorted(store.rglob("*.cacnk"))[0]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    os.chmod(victim, 0o644)
    victim.write_bytes(bytes(raw))
    proc = run_desync("extract", "-s", store, index, tmp_path / "out", check=False)
    line = assert_one_line_error(proc)
    assert victim.name.split(".")[0] in line and str(store) in line
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.glob(".out.*")) == []


def test_missing_chunk_is_a_one_line_error(tmp_path: Path) -> None:
    index, store, _ = _made(tmp_path)
    victim = sorted(store.rglob("*.cacnk"))[-1]
    victim.unlink()
    proc = run_desync("extract", "-s", store, index, tmp_path / "out", check=False)
    line = assert_one_line_error(proc)
    assert "missing" in line and victim.name.split(".")[0] in line
    assert not (tmp_path / "out").exists()


def test_existing_target_survives_a_failed_extract(tmp_path: Path) -> None:
    index, store, _ = _made(tmp_path)
    (tmp_path / "out").write_bytes(b"precious")
    for p in store.rglob("*.cacnk"):
        p.unlink()
    proc = run_desync("extract", "-s", store, index, tmp_path / "out", check=False)
    assert_one_line_error(proc)
    assert (tmp_path / "out").read_bytes() == b"precious"


@pytest.mark.parametrize("store_kind", ["missing", "file"])
def test_unreadable_store_is_a_one_line_error(tmp_path: Path, store_kind: str) -> None:
    index, _, _ = _made(tmp_path)
    bad = tmp_path / "bad"
    if store_kind == "file":
        bad.write_bytes(b"not a store")
    proc = run_desync("extract", "-s", bad, index, tmp_path / "out", check=False)
    assert str(bad) in assert_one_line_error(proc)


@pytest.mark.parametrize("sizes", ["16:64", "a:b:c", "64:16:256", "0:0:0", "16:64:256:1", "", "1:1:999999999"])
def test_bad_chunk_sizes_are_usage_errors(tmp_path: Path, sizes: str) -> None:
    (tmp_path / "in").write_bytes(b"data")
    proc = run_desync("make", "-m", sizes, tmp_path / "x.caibx", tmp_path / "in", check=False)
    assert_one_line_error(proc, status=2)


def test_usage_errors_exit_2_on_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run_desync("extract", check=False), status=2)
    assert_one_line_error(run_desync("no-such-command", check=False), status=2)
    assert_one_line_error(run_desync("make", "--bogus", "a", "b", check=False), status=2)


def test_missing_input_file_is_a_one_line_error(tmp_path: Path) -> None:
    proc = run_desync("make", tmp_path / "x.caibx", tmp_path / "nope", check=False)
    assert "nope" in assert_one_line_error(proc)


def test_version_and_help() -> None:
    from desync import __version__

    assert run_desync("--version").stdout.decode().startswith(f"desync {__version__} (")
    helptext = run_desync("--help").stdout.decode()
    for cmd in ("make", "extract", "verify", "prune", "chop", "cache", "cat", "chunk", "info", "list-chunks"):
        assert cmd in helptext
        assert run_desync(cmd, "--help").returncode == 0


def test_ctrl_c_exits_130_and_leaves_no_temp_file(tmp_path: Path) -> None:
    index, _, _ = _made(tmp_path)
    # A chunk store that accepts connections and never answers: extract is certainly still running.
    silent = socket.create_server(("127.0.0.1", 0))
    target = tmp_path / "target"
    cmd = [sys.executable, "-m", "desync", "extract", "-s", f"http://127.0.0.1:{silent.getsockname()[1]}/",
           str(index), str(target)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=desync_env(), cwd=NEUTRAL_DIR)
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".target.*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert not target.exists()
    assert list(tmp_path.glob(".target.*")) == []
    silent.close()
