"""Every Go desync spelling of issue 15 point 1, one test each, against real stores and servers.

Each test runs the CLI as a user does and checks that the spelling does
what the Go desync's does (cmd/desync/*.go), not only that it parses.
"""

import io
import json
import os
import random
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import assert_one_line_error, desync_env, run_desync
from http_util import ServerProcess, free_port, request

from desync.stores.indexes import read_index as read_index_file
from desync.stores.layout import chunk_name

CORRUPT_CHUNK = b"\x28\xb5\x2f\xfd" + b"not a chunk at all"


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(file, index, compressed local store): 400 KiB random data in about 25 chunks."""
    d = tmp_path_factory.mktemp("goblob")
    (d / "blob").write_bytes(random.Random(15).randbytes(400 << 10))
    run_desync("make", "-m", "4:16:64", "-s", d / "store", d / "blob.caibx", d / "blob")
    return d / "blob", d / "blob.caibx", d / "store"


def ids_of(index: Path) -> list[str]:
    return run_desync("list-chunks", index).stdout.decode().split()


def stored_file(store: Path, chunk_id: str) -> Path:
    return store / chunk_name(bytes.fromhex(chunk_id), ".cacnk")


def store_ids(store: Path) -> set[str]:
    return {p.name.split(".")[0] for p in store.rglob("*.cacnk")}


# --- inspect-chunks, info ------------------------------------------------------------------------------------


def test_inspect_chunks_reports_each_chunk_and_its_compressed_size_in_a_local_store(
        blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, index, store = blob
    out = tmp_path / "chunks.json"
    run_desync("inspect-chunks", "-s", store, index, out)
    infos = json.loads(out.read_text())
    chunks = read_index_file(str(index)).chunks
    assert [i["id"] for i in infos] == [c.id.hex() for c in chunks]
    assert [i["uncompressed_size"] for i in infos] == [c.size for c in chunks]
    assert [i["compressed_size"] for i in infos] == [stored_file(store, i["id"]).stat().st_size for i in infos]


def test_inspect_chunks_without_a_store_prints_plain_sizes_to_stdout(blob: tuple[Path, Path, Path]) -> None:
    _, index, _ = blob
    infos = json.loads(run_desync("inspect-chunks", index).stdout)
    assert len(infos) == len(read_index_file(str(index)).chunks)
    assert all(set(i) == {"id", "uncompressed_size"} for i in infos)


def test_inspect_chunks_refuses_a_store_that_is_not_local(blob: tuple[Path, Path, Path]) -> None:
    _, index, _ = blob
    proc = run_desync("inspect-chunks", "-s", f"http://127.0.0.1:{free_port()}/", index, check=False)
    assert "not a local store" in assert_one_line_error(proc, 2)


def test_info_seed_counts_the_chunks_a_seed_index_holds(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, index, _ = blob
    half = tmp_path / "half"
    half.write_bytes(data.read_bytes()[: 200 << 10])
    run_desync("make", "-m", "4:16:64", tmp_path / "half.caibx", half)
    shared = set(ids_of(index)) & set(ids_of(tmp_path / "half.caibx"))
    info = json.loads(run_desync("info", "--seed", tmp_path / "half.caibx", index).stdout)
    assert info["in-seed"] == len(shared) > 0


def test_info_chunks_info_adds_the_compressed_size_to_download(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, index, store = blob
    run_desync("inspect-chunks", "-s", store, index, tmp_path / "chunks.json")
    cache = tmp_path / "cache"
    first = ids_of(index)[0]
    run_desync("cache", "-s", store, "-c", cache, index)
    for chunk_id in ids_of(index)[1:]:
        stored_file(cache, chunk_id).unlink()  # the cache holds only the first chunk
    info = json.loads(run_desync("info", "-c", cache, "--chunks-info", tmp_path / "chunks.json", index).stdout)
    expected = sum(stored_file(store, i).stat().st_size for i in set(ids_of(index)) - {first})
    assert info["dedup-size-not-in-seed-nor-cache-compressed"] == expected
    plain = run_desync("info", "-f", "plain", "--chunks-info", tmp_path / "chunks.json", index).stdout.decode()
    total = sum(stored_file(store, i).stat().st_size for i in set(ids_of(index)))
    assert f"Compressed chunks not in seed nor cache: {total}\n" in plain


# --- --ignore-chunks -----------------------------------------------------------------------------------------


def test_cache_ignore_chunks_skips_the_listed_chunks(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, index, store = blob
    ids = ids_of(index)
    (tmp_path / "ids.txt").write_text("\n".join(ids[:5]) + "\n\n")
    run_desync("cache", "-s", store, "-c", tmp_path / "cache", "--ignore-chunks", tmp_path / "ids.txt", index)
    assert store_ids(tmp_path / "cache") == set(ids) - set(ids[:5])


def test_chop_ignore_chunks_stores_only_the_others(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, index, _ = blob
    ids = ids_of(index)
    (tmp_path / "ids.txt").write_text("\n".join(ids[-3:]) + "\n")
    run_desync("chop", "-s", tmp_path / "new", "--ignore-chunks", tmp_path / "ids.txt", index, data)
    assert store_ids(tmp_path / "new") == set(ids) - set(ids[-3:])
    (tmp_path / "bad.txt").write_text("not-an-id\n")
    proc = run_desync("chop", "-s", tmp_path / "new", "--ignore-chunks", tmp_path / "bad.txt", index, data,
                      check=False)
    assert "not a chunk ID" in assert_one_line_error(proc)


# --- mount-index -----------------------------------------------------------------------------------------------


@pytest.fixture
def fuse() -> None:
    from test_mount import _fuse_missing

    if _fuse_missing():
        pytest.skip(_fuse_missing())


def test_mount_index_store_file_is_reloaded_on_sighup(fuse: None, blob: tuple[Path, Path, Path],
                                                      tmp_path: Path) -> None:
    from test_mount import mounted

    data, index, store = blob
    (tmp_path / "empty").mkdir()
    store_file = tmp_path / "stores.json"
    store_file.write_text(json.dumps({"stores": [str(tmp_path / "empty")]}))
    with mounted(tmp_path / "mnt", "--store-file", store_file, index) as mount:
        with pytest.raises(OSError):
            (mount.mountpoint / "blob").read_bytes()  # no store holds the chunks yet
        store_file.write_text(json.dumps({"stores": [str(store)], "cache": str(tmp_path / "cache")}))
        mount.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while True:
            try:
                assert (mount.mountpoint / "blob").read_bytes() == data.read_bytes()
                break
            except OSError:
                assert time.monotonic() < deadline, "the store file was not reloaded"
                time.sleep(0.1)
        assert mount.proc.poll() is None, "SIGHUP must not end the mount"
    assert store_ids(tmp_path / "cache") == set(ids_of(index))


def test_mount_index_sighup_saves_the_copy_on_read_state(fuse: None, blob: tuple[Path, Path, Path],
                                                         tmp_path: Path) -> None:
    from test_mount import mounted

    data, index, store = blob
    state = tmp_path / "state"
    with mounted(tmp_path / "mnt", "-s", store, "--cor-file", tmp_path / "cor", "--cor-state-save", state,
                 index) as mount:
        with open(mount.mountpoint / "blob", "rb") as f:
            assert f.read(1000) == data.read_bytes()[:1000]
        assert not state.exists()
        mount.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while not state.exists():
            assert time.monotonic() < deadline, "SIGHUP did not save the state"
            time.sleep(0.05)
        assert state.read_bytes()[0] & 1, "the first chunk was read, the state must say so"
        assert mount.proc.poll() is None


# --- tar, untar ------------------------------------------------------------------------------------------------


def _tree(root: Path) -> Path:
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"hello\n")
    os.chmod(root / "d", 0o700)
    os.chmod(root / "d" / "f", 0o751)
    os.utime(root / "d" / "f", (1_600_000_000, 1_600_000_000))
    return root


def test_tar_no_time_stores_every_time_as_zero(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree")
    run_desync("tar", "--no-time", tmp_path / "a.catar", tree)
    lines = run_desync("mtree", tmp_path / "a.catar").stdout.decode().splitlines()
    assert len(lines) == 3 and all("time=0.000000000" in line for line in lines)
    run_desync("tar", tmp_path / "b.catar", tree)
    assert "time=1600000000.000000000" in run_desync("mtree", tmp_path / "b.catar").stdout.decode()


def _tar_with_root(path: Path) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        root = tarfile.TarInfo("./")
        root.type, root.mode, root.mtime = tarfile.DIRTYPE, 0o700, 1_600_000_000
        tf.addfile(root)
        member = tarfile.TarInfo("./x")
        member.size, member.mode = 3, 0o644
        tf.addfile(member, io.BytesIO(b"abc"))


def test_tar_add_root_gives_a_tar_stream_a_root_of_its_own(tmp_path: Path) -> None:
    _tar_with_root(tmp_path / "in.tar")
    run_desync("tar", "--input-format", "tar", tmp_path / "plain.catar", tmp_path / "in.tar")
    run_desync("tar", "--input-format", "tar", "--tar-add-root", tmp_path / "root.catar", tmp_path / "in.tar")
    plain = run_desync("mtree", tmp_path / "plain.catar").stdout.decode().splitlines()
    added = run_desync("mtree", tmp_path / "root.catar").stdout.decode().splitlines()
    assert plain[0].startswith(". type=dir mode=0700 ") and "time=1600000000" in plain[0]
    assert added[0].startswith(". type=dir mode=0755 uid=0 gid=0 time=0.000000000")
    assert plain[1:] == added[1:]
    proc = run_desync("tar", "--tar-add-root", tmp_path / "x.catar", tmp_path, check=False)
    assert "--tar-add-root works only with --input-format tar" in assert_one_line_error(proc, 2)


@pytest.fixture
def submount(tmp_path: Path) -> Iterator[Path]:
    """A tree with a tmpfs mounted in it (needs root and mount(8))."""
    tree = _tree(tmp_path / "tree")
    (tree / "mnt").mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(tree / "mnt")], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (tree / "mnt" / "inside").write_bytes(b"other fs")
        yield tree
    finally:
        subprocess.run(["umount", str(tree / "mnt")], capture_output=True)


@pytest.mark.parametrize("flag", ["-x", "--one-file-system"])
def test_tar_one_file_system_stays_on_the_source_file_system(submount: Path, tmp_path: Path, flag: str) -> None:
    run_desync("tar", flag, tmp_path / "a.catar", submount)
    listed = run_desync("list", tmp_path / "a.catar").stdout.decode()
    assert "d/f" in listed and "mnt/inside" not in listed
    run_desync("tar", tmp_path / "b.catar", submount)
    assert "mnt/inside" in run_desync("list", tmp_path / "b.catar").stdout.decode()


def test_untar_no_same_permissions_uses_the_umask(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree")
    run_desync("tar", tmp_path / "a.catar", tree)
    run_desync("untar", tmp_path / "a.catar", tmp_path / "same")
    assert (tmp_path / "same" / "d").stat().st_mode & 0o777 == 0o700
    env = desync_env()
    proc = subprocess.run(["sh", "-c", 'umask 027 && exec "$@"', "sh", *run_args("untar", "--no-same-permissions",
                                                                              tmp_path / "a.catar", tmp_path / "own")],
                          env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "own" / "d").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "own" / "d" / "f").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "own" / "d" / "f").read_bytes() == b"hello\n"


def run_args(*args: object) -> list[str]:
    import sys

    return [sys.executable, "-m", "desync", *map(str, args)]


# --- chunk-server, index-server -------------------------------------------------------------------------------


def test_chunk_server_writeable_accepts_uploads(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, index, _ = blob
    with ServerProcess("chunk-server", "--writeable", "-s", tmp_path / "up") as server:
        run_desync("make", "-m", "4:16:64", "-s", server.url, tmp_path / "x.caibx", data)
    assert store_ids(tmp_path / "up") == set(ids_of(index))


def test_chunk_server_skip_verify_read_false_refuses_a_corrupt_chunk(blob: tuple[Path, Path, Path],
                                                                     tmp_path: Path) -> None:
    _, index, store = blob
    shutil.copytree(store, tmp_path / "store")
    bad = ids_of(index)[0]
    stored_file(tmp_path / "store", bad).write_bytes(CORRUPT_CHUNK)
    path = "/" + chunk_name(bytes.fromhex(bad), ".cacnk")
    with ServerProcess("chunk-server", "-s", tmp_path / "store") as server:
        assert request(server.port, "GET", path) == (200, CORRUPT_CHUNK)  # default: served as stored
    with ServerProcess("chunk-server", "--skip-verify-read=false", "-s", tmp_path / "store") as server:
        assert request(server.port, "GET", path)[0] == 500


def test_chunk_server_skip_verify_write_stores_uploads_unchecked(blob: tuple[Path, Path, Path],
                                                                 tmp_path: Path) -> None:
    chunk_id = ids_of(blob[1])[0]
    path = "/" + chunk_name(bytes.fromhex(chunk_id), ".cacnk")
    with ServerProcess("chunk-server", "-w", "-s", tmp_path / "checked") as server:
        assert request(server.port, "PUT", path, CORRUPT_CHUNK)[0] == 400
    with ServerProcess("chunk-server", "-w", "--skip-verify-write", "-s", tmp_path / "unchecked") as server:
        assert request(server.port, "PUT", path, CORRUPT_CHUNK)[0] == 200
    assert stored_file(tmp_path / "unchecked", chunk_id).read_bytes() == CORRUPT_CHUNK


def test_index_server_writeable_accepts_index_uploads(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, index, _ = blob
    (tmp_path / "indexes").mkdir()
    with ServerProcess("index-server", "--writeable", "-s", tmp_path / "indexes") as server:
        assert request(server.port, "PUT", "/up.caibx", index.read_bytes())[0] == 200
    assert (tmp_path / "indexes" / "up.caibx").read_bytes() == index.read_bytes()


def test_index_server_proxies_an_http_index_store(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, index, store = blob
    (tmp_path / "indexes").mkdir()
    shutil.copy(index, tmp_path / "indexes" / "a.caibx")
    with ServerProcess("index-server", "-w", "-s", tmp_path / "indexes") as upstream, \
            ServerProcess("index-server", "-w", "-e", "1", "--timeout", "30s", "-s", upstream.url) as proxy:
        run_desync("extract", "-s", store, f"{proxy.url}a.caibx", tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == data.read_bytes()
        assert request(proxy.port, "GET", "/missing.caibx")[0] == 404
        assert request(proxy.port, "PUT", "/b.caibx", index.read_bytes())[0] == 200
    assert (tmp_path / "indexes" / "b.caibx").read_bytes() == index.read_bytes()


def test_index_server_serves_an_s3_index_store(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("moto.server", reason="moto's server is not installed (pip install desync[test])")
    from s3_server import S3Server

    _, index, _ = blob
    s3 = S3Server(auth=True)
    try:
        bucket = s3.new_bucket()
        env = desync_env(HOME=str(tmp_path), **s3.env())
        run_desync("make", "-m", "4:16:64", s3.url(bucket, "idx/a.caibx"), blob[0], env=env)
        with ServerProcess("index-server", "-w", "-n", "2", "-s", s3.url(bucket, "idx"), env=env) as server:
            status, body = request(server.port, "GET", "/a.caibx")
            assert (status, body) == (200, index.read_bytes())
            assert request(server.port, "GET", "/none.caibx")[0] == 404
            assert request(server.port, "PUT", "/b.caibx", index.read_bytes())[0] == 200
        assert s3.keys(bucket, "idx/") == ["idx/a.caibx", "idx/b.caibx"]
    finally:
        s3.stop()


# --- store options -------------------------------------------------------------------------------------------


def test_list_chunks_takes_store_options_for_a_remote_index(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, index, _ = blob
    (tmp_path / "indexes").mkdir()
    shutil.copy(index, tmp_path / "indexes" / "a.caibx")
    with ServerProcess("index-server", "-s", tmp_path / "indexes") as server:
        proc = run_desync("list-chunks", "-t", "-n", "2", "--error-retry", "0", "--timeout", "5s",
                          f"{server.url}a.caibx")
    assert proc.stdout.decode().split() == ids_of(index)


def _timed_failure(*args: object) -> float:
    start = time.monotonic()
    proc = run_desync(*args, check=False)
    assert proc.returncode == 1
    return time.monotonic() - start


def test_short_e_sets_the_number_of_retries(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, index, _ = blob
    dead = f"http://127.0.0.1:{free_port()}/"
    quick = _timed_failure("extract", "-e", "0", "-b", "300ms", "-s", dead, index, tmp_path / "o")
    slow = _timed_failure("extract", "-e", "2", "-b", "300ms", "-s", dead, index, tmp_path / "o")
    assert slow - quick >= 0.8  # two waits: 300 ms, then 600 ms


def test_short_b_sets_the_first_wait_between_retries(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, index, _ = blob
    dead = f"http://127.0.0.1:{free_port()}/"
    short = _timed_failure("extract", "-e", "1", "-b", "10ms", "-s", dead, index, tmp_path / "o")
    long = _timed_failure("extract", "-e", "1", "-b", "1.5s", "-s", dead, index, tmp_path / "o")
    assert long - short >= 1.2


@pytest.mark.parametrize("flag", ["-r", "--cache-repair", "--cache-repair=true"])
def test_cache_repair_replaces_an_invalid_cache_chunk(blob: tuple[Path, Path, Path], tmp_path: Path,
                                                      flag: str) -> None:
    data, index, store = blob
    cache = tmp_path / "cache"
    run_desync("cache", "-s", store, "-c", cache, index)
    bad = ids_of(index)[2]
    stored_file(cache, bad).write_bytes(CORRUPT_CHUNK)
    run_desync("extract", flag, "-s", store, "-c", cache, index, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data.read_bytes()
    assert stored_file(cache, bad).read_bytes() == stored_file(store, bad).read_bytes()


def test_cache_repair_false_makes_an_invalid_cache_chunk_an_error(blob: tuple[Path, Path, Path],
                                                                  tmp_path: Path) -> None:
    _, index, store = blob
    cache = tmp_path / "cache"
    run_desync("cache", "-s", store, "-c", cache, index)
    bad = ids_of(index)[2]
    stored_file(cache, bad).write_bytes(CORRUPT_CHUNK)
    proc = run_desync("extract", "--cache-repair=false", "-s", store, "-c", cache, index, tmp_path / "out",
                      check=False)
    assert bad in assert_one_line_error(proc)
    assert stored_file(cache, bad).read_bytes() == CORRUPT_CHUNK
    proc = run_desync("extract", "--cache-repair=maybe", "-s", store, index, tmp_path / "out", check=False)
    assert "invalid boolean value" in assert_one_line_error(proc, 2)


def test_durations_are_accepted_on_the_command_line(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, index, store = blob
    with ServerProcess("chunk-server", "-s", store) as server:
        run_desync("extract", "--timeout", "30s", "--error-retry-base-interval", "500ms", "-s", server.url, index,
                   tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data.read_bytes()
    proc = run_desync("extract", "--timeout", "30 parsecs", "-s", store, index, tmp_path / "o", check=False)
    assert "invalid duration" in assert_one_line_error(proc, 2)


# --- --print-stats ---------------------------------------------------------------------------------------------


def test_make_print_stats_is_json_on_stderr(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, index, _ = blob
    proc = run_desync("make", "-m", "4:16:64", "--print-stats", "-s", tmp_path / "s", tmp_path / "x.caibx", data)
    stats = json.loads(proc.stderr)
    assert stats["ChunksAccepted"] == stats["ChunksProduced"] == len(read_index_file(str(index)).chunks)
    assert proc.stdout == b""


def test_extract_print_stats_is_json_on_stdout(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, index, store = blob
    proc = run_desync("extract", "--print-stats", "-s", store, index, tmp_path / "out")
    stats = json.loads(proc.stdout)
    chunks = read_index_file(str(index)).chunks
    assert stats["chunks-total"] == len(chunks) and stats["bytes-total"] == data.stat().st_size
    assert stats["chunks-from-store"] == len({c.id for c in chunks}) and stats["seeds"] == 0
    seeded = run_desync("extract", "--print-stats", "--seed", index, "-s", store, index, tmp_path / "again")
    again = json.loads(seeded.stdout)
    assert again["seeds"] == 1 and again["chunks-from-seeds"] > 0 and again["chunks-from-store"] == 0


# --- completion, manpage -----------------------------------------------------------------------------------------


def _bash_complete(script: Path, words: list[str]) -> list[str]:
    line = " ".join(words)
    code = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _desync; "
            'printf "%s\\n" "${COMPREPLY[@]}"')
    proc = subprocess.run(["bash", "-c", code], capture_output=True, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().split()


def test_completion_bash_completes_commands_options_and_choices(tmp_path: Path) -> None:
    script = tmp_path / "desync.bash"
    script.write_bytes(run_desync("completion", "bash").stdout)
    assert _bash_complete(script, ["desync", "inspect"]) == ["inspect-chunks"]
    assert "--tar-add-root" in _bash_complete(script, ["desync", "tar", "--t"])
    assert "--cache-repair" in _bash_complete(script, ["desync", "extract", "--cache"])
    assert _bash_complete(script, ["desync", "tar", "--input-format", ""]) == ["disk", "tar"]
    assert _bash_complete(script, ["desync", "completion", ""]) == ["bash", "zsh", "fish"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_completion_zsh_and_fish_name_every_command_and_option(shell: str) -> None:
    script = run_desync("completion", shell).stdout.decode()
    for command in ("inspect-chunks", "chunk-server", "mount-index", "completion", "manpage"):
        assert command in script
    for option in ("tar-add-root", "skip-verify-write", "cache-repair", "store-file", "chunks-info"):
        assert option in script
    if shell == "zsh":
        assert script.startswith("#compdef desync\n")
        if shutil.which("zsh"):
            assert subprocess.run(["zsh", "-n"], input=script.encode()).returncode == 0
    elif shutil.which("fish"):
        assert subprocess.run(["fish", "-n"], input=script.encode()).returncode == 0


def test_manpage_writes_a_page_per_command(tmp_path: Path) -> None:
    run_desync("manpage", tmp_path / "man")
    pages = sorted(p.name for p in (tmp_path / "man").iterdir())
    for command in ("desync.1", "desync-inspect-chunks.1", "desync-tar.1", "desync-completion.1"):
        assert command in pages
    tar_page = (tmp_path / "man" / "desync-tar.1").read_text()
    assert tar_page.startswith('.TH "DESYNC-TAR" "1"') and "\\-\\-tar\\-add\\-root" in tar_page
    if shutil.which("man"):
        shown = subprocess.run(["man", "-l", str(tmp_path / "man" / "desync-tar.1")], capture_output=True,
                               env={**os.environ, "MANWIDTH": "120", "MANPAGER": "cat"})
        assert shown.returncode == 0 and b"tar-add-root" in shown.stdout.replace(b"\xe2\x80\x90", b"-")
