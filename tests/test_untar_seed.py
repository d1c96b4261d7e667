"""untar with seed trees (--seed DIR): same tree as without seeds, and only chunks no seed has are fetched."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_one_line_error, run_desync
from desync.reflink import clone_range
from desync.index import Index, parse
from desync.ops.treeseed import SeededChunks, TreeSeed, TreeSeedStats
from desync.stores.base import StoreOptions
from desync.stores.local import LocalStore

SIZES = ("-m", "2:8:32")


def _content(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    root.mkdir()
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    # Fixed times: the same file in v1 and v2 encodes to the same records.
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), ns=(10**18, 10**18))
    os.utime(root, ns=(10**18, 10**18))


def _index(path: Path) -> Index:
    return parse(path.read_bytes())


def _chunk_file(store: Path, chunk_id: bytes) -> Path:
    h = chunk_id.hex()
    return store / h[:4] / f"{h}.cacnk"


def _mtree(path: Path) -> bytes:
    return run_desync("mtree", path).stdout


def _stats(stderr: bytes) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in stderr.decode().splitlines():
        key, _, value = line.rpartition(": ")
        if value.isdigit():
            out[key] = int(value)
    return out


_names = st.sampled_from(["a", "b", "c", "d/e", "d/f", "d/g/h", "x/y", "x/z"])
_sizes = st.sampled_from([0, 1, 100, 5000, 40000, 120000])


@st.composite
def _tree_pair(draw: st.DrawFn) -> tuple[dict[str, bytes], dict[str, bytes]]:
    v1: dict[str, bytes] = {}
    for i, name in enumerate(draw(st.lists(_names, min_size=1, max_size=6, unique=True))):
        v1[name] = _content(draw(st.integers(0, 1000)) * 10 + i, draw(_sizes))
    v2 = dict(v1)
    for op in draw(st.lists(st.sampled_from(["add", "remove", "rename", "edit", "move"]), max_size=4)):
        keys = sorted(v2)
        if op == "add":
            v2[draw(st.sampled_from(["new", "d/new", "q/r/s"]))] = _content(draw(st.integers(0, 99)), draw(_sizes))
        elif keys and op == "remove":
            del v2[draw(st.sampled_from(keys))]
        elif keys and op in ("rename", "move"):
            old = draw(st.sampled_from(keys))
            new = old + "2" if op == "rename" else "moved/" + old.replace("/", "_")
            if new not in v2 and not any(k.startswith(new + "/") or new.startswith(k + "/") for k in v2):
                v2[new] = v2.pop(old)
        elif keys and op == "edit":
            k = draw(st.sampled_from(keys))
            data = bytearray(v2[k] or b"?")
            at = draw(st.integers(0, len(data) - 1))
            data[at:at + 10] = b"edited!!!!"
            v2[k] = bytes(data)
    # A name may not be both a file and a directory.
    for k in sorted(v2):
        if any(other.startswith(k + "/") for other in v2):
            del v2[k]
    return v1, v2


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tree_pair())
def test_untar_with_seed_gives_the_archive_tree_and_fetches_only_chunks_the_seed_lacks_also_in_place(
        pair: tuple[dict[str, bytes], dict[str, bytes]]) -> None:
    v1, v2 = pair
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        _write_tree(t / "v1", v1)
        _write_tree(t / "v2", v2)
        store = t / "store"
        run_desync("tar", "-i", *SIZES, "-s", store, t / "v1.caidx", t / "v1")
        run_desync("tar", "-i", *SIZES, "-s", store, t / "v2.caidx", t / "v2")
        run_desync("untar", "-i", "-s", store, t / "v1.caidx", t / "seed")
        full_store = t / "full-store"
        shutil.copytree(store, full_store)
        # The seed has every chunk of v1: take them out of the store, so fetching one fails the untar.
        seed_ids = {c.id for c in _index(t / "v1.caidx").chunks}
        for cid in seed_ids:
            _chunk_file(store, cid).unlink(missing_ok=True)
        proc = run_desync("untar", "-i", "-s", store, "--seed", t / "seed", "--print-stats",
                          t / "v2.caidx", t / "out")
        assert _mtree(t / "out") == _mtree(t / "v2")
        for rel, data in v2.items():
            assert (t / "out" / rel).read_bytes() == data
        v2_chunks = _index(t / "v2.caidx").chunks
        stats = _stats(proc.stderr)
        assert stats["Chunks from the store"] == sum(1 for c in v2_chunks if c.id not in seed_ids)
        assert stats["Chunks from seeds"] == sum(1 for c in v2_chunks if c.id in seed_ids)
        # In place: the seed tree itself becomes v2 (a seed file replaced before a later reader of its old
        # bytes costs a store fetch, so the store must be complete here).
        run_desync("untar", "-i", "-s", full_store, "--seed", t / "seed", "--delete", t / "v2.caidx", t / "seed")
        assert _walk(t / "seed") == _walk(t / "v2")
        assert _mtree(t / "seed") == _mtree(t / "v2")


def test_seed_file_changed_after_chunking_is_not_used(tmp_path: Path) -> None:
    files = {f"f{i}": _content(i, 50000) for i in range(4)}
    _write_tree(tmp_path / "v1", files)
    store = tmp_path / "store"
    run_desync("tar", "-i", *SIZES, "-s", store, tmp_path / "v1.caidx", tmp_path / "v1")
    run_desync("untar", "-i", "-s", store, tmp_path / "v1.caidx", tmp_path / "seed")
    index = _index(tmp_path / "v1.caidx")
    seed = TreeSeed(str(tmp_path / "seed"), index)
    assert {c.id for c in index.chunks} <= set(seed.chunks)
    # Same size, other bytes: the seed's chunk table now promises what the files no longer hold.
    for name in files:
        (tmp_path / "seed" / name).write_bytes(bytes(50000))
    stats = TreeSeedStats()
    with LocalStore(str(store), StoreOptions()) as st_:
        data = b"".join(SeededChunks(index, [seed], st_, 2, stats).blocks())
    assert data == b"".join(_chunk_file_data(store, c.id) for c in index.chunks)
    assert stats.stale_chunks > 0
    assert stats.store_chunks + stats.seed_chunks == len(index.chunks)


def _chunk_file_data(store: Path, chunk_id: bytes) -> bytes:
    with LocalStore(str(store), StoreOptions()) as s:
        return s.get_chunk(chunk_id, 0).data()


def test_seed_with_other_contents_at_the_same_paths_gives_the_archive_bytes(tmp_path: Path) -> None:
    _write_tree(tmp_path / "v2", {"a": _content(1, 90000), "d/b": _content(2, 70000)})
    _write_tree(tmp_path / "seed", {"a": _content(3, 90000), "d/b": _content(2, 70000)[:-5] + b"XXXXX"})
    store = tmp_path / "store"
    run_desync("tar", "-i", *SIZES, "-s", store, tmp_path / "v2.caidx", tmp_path / "v2")
    run_desync("untar", "-i", "-s", store, "--seed", tmp_path / "seed", tmp_path / "v2.caidx", tmp_path / "out")
    assert _mtree(tmp_path / "out") == _mtree(tmp_path / "v2")
    assert (tmp_path / "out" / "a").read_bytes() == _content(1, 90000)


def _can_clone(directory: Path) -> bool:
    a, b = directory / "probe-a", directory / "probe-b"
    a.write_bytes(b"x" * 4096)
    b.write_bytes(b"")
    try:
        with open(a, "rb") as fa, open(b, "r+b") as fb:
            clone_range(fa.fileno(), 0, fb.fileno(), 0, 4096)
        return True
    except OSError:
        return False
    finally:
        a.unlink()
        b.unlink()


def test_hardlink_shares_only_seed_files_with_the_same_bytes_and_metadata(tmp_path: Path) -> None:
    src = {"same": _content(1, 40000), "d/moved": _content(2, 30000), "changed": _content(3, 20000),
           "mode": _content(4, 10000), "new": _content(5, 5000)}
    _write_tree(tmp_path / "v2", src)
    (tmp_path / "v2" / "mode").chmod(0o600)
    seed = {"same": src["same"], "elsewhere/moved": src["d/moved"], "changed": _content(6, 20000),
            "mode": src["mode"]}
    _write_tree(tmp_path / "seed", seed)
    (tmp_path / "seed" / "mode").chmod(0o644)
    run_desync("tar", tmp_path / "v2.catar", tmp_path / "v2")
    proc = run_desync("untar", "--seed", tmp_path / "seed", "--hardlink", "yes", "--reflink", "no", "--print-stats",
                      tmp_path / "v2.catar", tmp_path / "out")
    out, sd = tmp_path / "out", tmp_path / "seed"
    assert _walk(out) == _walk(tmp_path / "v2")
    assert _mtree(out) == _mtree(tmp_path / "v2")
    assert os.stat(out / "same").st_ino == os.stat(sd / "same").st_ino
    assert os.stat(out / "d/moved").st_ino == os.stat(sd / "elsewhere/moved").st_ino
    assert os.stat(out / "changed").st_ino != os.stat(sd / "changed").st_ino
    assert os.stat(out / "mode").st_ino != os.stat(sd / "mode").st_ino
    stats = _stats(proc.stderr)
    assert stats["Files hardlinked from seeds"] == 2
    assert stats["Bytes hardlinked from seeds"] == 70000


def test_without_hardlink_no_file_shares_the_seed_inode(tmp_path: Path) -> None:
    _write_tree(tmp_path / "v2", {"same": _content(1, 40000)})
    _write_tree(tmp_path / "seed", {"same": _content(1, 40000)})
    run_desync("tar", tmp_path / "v2.catar", tmp_path / "v2")
    run_desync("untar", "--seed", tmp_path / "seed", tmp_path / "v2.catar", tmp_path / "out")
    assert os.stat(tmp_path / "out/same").st_ino != os.stat(tmp_path / "seed/same").st_ino
    assert (tmp_path / "out/same").read_bytes() == _content(1, 40000)


def test_reflink_yes_clones_or_fails_clearly(tmp_path: Path) -> None:
    _write_tree(tmp_path / "v2", {"same": _content(1, 40000), "other": _content(2, 100)})
    _write_tree(tmp_path / "seed", {"same": _content(1, 40000)})
    run_desync("tar", tmp_path / "v2.catar", tmp_path / "v2")
    proc = run_desync("untar", "--seed", tmp_path / "seed", "--reflink", "yes", "--print-stats",
                      tmp_path / "v2.catar", tmp_path / "out", check=False)
    if _can_clone(tmp_path):
        assert proc.returncode == 0
        assert _stats(proc.stderr)["Bytes cloned from seeds"] == 40000
        assert _mtree(tmp_path / "out") == _mtree(tmp_path / "v2")
    else:
        assert "cannot clone" in assert_one_line_error(proc)
        assert not (tmp_path / "out").exists()


def test_missing_seed_directory_is_a_one_line_error(tmp_path: Path) -> None:
    _write_tree(tmp_path / "v", {"a": b"x"})
    run_desync("tar", "-i", "-s", tmp_path / "store", tmp_path / "v.caidx", tmp_path / "v")
    proc = run_desync("untar", "-i", "-s", tmp_path / "store", "--seed", tmp_path / "nope",
                      tmp_path / "v.caidx", tmp_path / "out", check=False)
    assert "is not a directory" in assert_one_line_error(proc)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("casync") is None, reason="casync is not installed")
def test_same_tree_as_casync_extract_with_seed(tmp_path: Path) -> None:
    v1 = {f"d{i % 3}/f{i}": _content(i, 30000 * (i % 4)) for i in range(12)}
    v2 = dict(v1)
    v2["d0/f0"] = _content(99, 12345)
    v2["moved/f4"] = v2.pop("d1/f4")
    del v2["d2/f5"]
    _write_tree(tmp_path / "v1", v1)
    _write_tree(tmp_path / "v2", v2)
    store = tmp_path / "store"
    run_desync("tar", "-i", "-s", store, tmp_path / "v2.caidx", tmp_path / "v2")
    import subprocess
    subprocess.run(["casync", "extract", f"--store={store}", f"--seed={tmp_path / 'v1'}",
                    str(tmp_path / "v2.caidx"), str(tmp_path / "by_casync")], check=True, capture_output=True,
                   timeout=120)
    run_desync("untar", "-i", "-s", store, "--seed", tmp_path / "v1", tmp_path / "v2.caidx", tmp_path / "ours")
    assert _mtree(tmp_path / "ours") == _mtree(tmp_path / "by_casync") == _mtree(tmp_path / "v2")


def _walk(root: Path) -> dict[str, str]:
    """Every entry below ``root``: type and contents or target (what --delete must make equal)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "file:" + p.read_bytes().hex()
    return out


def _messy_target(target: Path) -> None:
    """An existing tree with extra entries and entries of the wrong type where the archive has others."""
    _write_tree(target, {"a": b"old a", "extra": b"gone", "deep/x/y": b"gone", "d/b": b"old b", "d/more": b"gone"})
    (target / "f_is_dir").mkdir()
    (target / "f_is_dir" / "inner").write_bytes(b"gone")
    (target / "dir_is_file").write_bytes(b"gone")
    os.symlink("a", target / "extra_link")


def _archive_tree(root: Path) -> None:
    _write_tree(root, {"a": _content(1, 30000), "d/b": b"new b", "f_is_dir": b"file now",
                       "dir_is_file/c": b"c", "keep/k": b"k"})
    os.symlink("d/b", root / "link")


def test_delete_leaves_the_tree_equal_to_the_archive(tmp_path: Path) -> None:
    _archive_tree(tmp_path / "src")
    run_desync("tar", tmp_path / "v.catar", tmp_path / "src")
    _messy_target(tmp_path / "out")
    run_desync("untar", "--delete", tmp_path / "v.catar", tmp_path / "out")
    assert _walk(tmp_path / "out") == _walk(tmp_path / "src")
    assert _mtree(tmp_path / "out") == _mtree(tmp_path / "src")


def test_without_delete_extra_entries_stay(tmp_path: Path) -> None:
    _archive_tree(tmp_path / "src")
    run_desync("tar", tmp_path / "v.catar", tmp_path / "src")
    _messy_target(tmp_path / "out")
    (tmp_path / "out" / "f_is_dir" / "inner").unlink()
    run_desync("untar", tmp_path / "v.catar", tmp_path / "out")
    assert (tmp_path / "out" / "extra").read_bytes() == b"gone"
    assert (tmp_path / "out" / "deep/x/y").read_bytes() == b"gone"
    assert (tmp_path / "out" / "a").read_bytes() == _content(1, 30000)


def test_in_place_update_keeps_the_old_file_until_the_new_one_is_complete(tmp_path: Path) -> None:
    _write_tree(tmp_path / "src", {"f": _content(5, 200000)})
    run_desync("tar", tmp_path / "v.catar", tmp_path / "src")
    data = (tmp_path / "v.catar").read_bytes()
    _write_tree(tmp_path / "out", {"f": b"old contents"})
    # From a pipe: the archive's end is only found while the file's contents are read.
    proc = run_desync("untar", "-", tmp_path / "out", input=data[:100000], check=False)
    assert_one_line_error(proc)
    assert sorted(os.listdir(tmp_path / "out")) == ["f"]
    assert (tmp_path / "out" / "f").read_bytes() == b"old contents"


def test_in_place_update_with_the_target_as_seed(tmp_path: Path) -> None:
    v1 = {f"d{i % 3}/f{i}": _content(i, 20000 * (i % 5)) for i in range(15)}
    v2 = dict(v1)
    v2["d0/f3"] = _content(77, 50000)
    v2["moved/f1"] = v2.pop("d1/f1")
    del v2["d2/f2"]
    _write_tree(tmp_path / "v1", v1)
    _write_tree(tmp_path / "v2", v2)
    store = tmp_path / "store"
    run_desync("tar", "-i", *SIZES, "-s", store, tmp_path / "v1.caidx", tmp_path / "v1")
    run_desync("tar", "-i", *SIZES, "-s", store, tmp_path / "v2.caidx", tmp_path / "v2")
    run_desync("untar", "-i", "-s", store, tmp_path / "v1.caidx", tmp_path / "slot")
    proc = run_desync("untar", "-i", "-s", store, "--seed", tmp_path / "slot", "--delete", "--print-stats",
                      tmp_path / "v2.caidx", tmp_path / "slot")
    assert _walk(tmp_path / "slot") == _walk(tmp_path / "v2")
    assert _mtree(tmp_path / "slot") == _mtree(tmp_path / "v2")
    assert _stats(proc.stderr)["Chunks from seeds"] > 0


def test_delete_needs_disk_output(tmp_path: Path) -> None:
    _write_tree(tmp_path / "v", {"a": b"x"})
    run_desync("tar", tmp_path / "v.catar", tmp_path / "v")
    proc = run_desync("untar", "--delete", "--output-format", "pax", tmp_path / "v.catar", tmp_path / "o.tar",
                      check=False)
    assert "--delete needs --output-format disk" in assert_one_line_error(proc, status=2)


def test_in_place_update_reads_a_file_moved_to_a_later_directory_from_its_old_place(tmp_path: Path) -> None:
    # "a/moving" goes to "z/moving"; with --delete, "a/moving" must stay until "z/" is done.
    v1 = {"a/moving": _content(1, 300000), "a/stay": b"s", "m/filler": _content(2, 4 << 20)}
    v2 = {"a/stay": b"s", "m/filler": v1["m/filler"], "z/moving": v1["a/moving"]}
    _write_tree(tmp_path / "v1", v1)
    _write_tree(tmp_path / "v2", v2)
    store = tmp_path / "store"
    run_desync("tar", "-i", *SIZES, "-s", store, tmp_path / "v1.caidx", tmp_path / "v1")
    run_desync("tar", "-i", *SIZES, "-s", store, tmp_path / "v2.caidx", tmp_path / "v2")
    run_desync("untar", "-i", "-s", store, tmp_path / "v1.caidx", tmp_path / "slot")
    for c in _index(tmp_path / "v1.caidx").chunks:
        _chunk_file(store, c.id).unlink(missing_ok=True)
    run_desync("untar", "-i", "-s", store, "--seed", tmp_path / "slot", "--delete", tmp_path / "v2.caidx",
               tmp_path / "slot")
    assert _walk(tmp_path / "slot") == _walk(tmp_path / "v2")
    assert _mtree(tmp_path / "slot") == _mtree(tmp_path / "v2")


def test_hardlink_skips_a_seed_file_with_extended_attributes_the_archive_lacks(tmp_path: Path) -> None:
    _write_tree(tmp_path / "v2", {"f": _content(1, 40000)})
    _write_tree(tmp_path / "seed", {"f": _content(1, 40000)})
    try:
        os.setxattr(tmp_path / "seed" / "f", "user.extra", b"1")
    except OSError:
        pytest.skip("no user xattrs on this file system")
    run_desync("tar", tmp_path / "v2.catar", tmp_path / "v2")
    run_desync("untar", "--seed", tmp_path / "seed", "--hardlink", "yes", tmp_path / "v2.catar", tmp_path / "out")
    assert os.stat(tmp_path / "out/f").st_ino != os.stat(tmp_path / "seed/f").st_ino
    assert os.listxattr(tmp_path / "out/f") == []
    assert _mtree(tmp_path / "out") == _mtree(tmp_path / "v2")


def _shared_extents(path: Path) -> bool:
    """Whether every extent of the file has FIEMAP_EXTENT_SHARED (its data is stored once with another file)."""
    import fcntl
    import struct
    count = 32
    out = bytearray(struct.pack("=QQIIII", 0, 2**64 - 1, 0, 0, count, 0) + bytes(56 * count))
    with open(path, "rb") as f:
        fcntl.ioctl(f.fileno(), 0xC020660B, out, True)  # FS_IOC_FIEMAP
    mapped = struct.unpack_from("=I", out, 20)[0]
    flags = [struct.unpack_from("=I", out, 32 + 56 * i + 40)[0] for i in range(mapped)]
    return bool(flags) and all(fl & 0x2000 for fl in flags)


@pytest.fixture
def xfs_reflink(tmp_path: Path) -> Iterator[Path]:
    """A loop-mounted XFS file system with reflink (root only)."""
    import subprocess
    if os.geteuid() != 0 or shutil.which("mkfs.xfs") is None:
        pytest.skip("needs root and mkfs.xfs (xfsprogs)")
    image, mnt = tmp_path / "xfs.img", tmp_path / "mnt"
    with open(image, "wb") as f:
        f.truncate(320 << 20)
    mnt.mkdir()
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True, capture_output=True, timeout=60)
    if subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, timeout=60).returncode:
        pytest.skip("cannot loop-mount here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=60)


def test_untar_clones_seed_files_on_xfs(xfs_reflink: Path) -> None:
    mnt = xfs_reflink
    files = {f"d/f{i}": _content(i, 8 << 20) for i in range(6)}
    _write_tree(mnt / "seed", files)
    run_desync("tar", mnt / "v.catar", mnt / "seed")
    os.sync()
    before = os.statvfs(mnt)
    proc = run_desync("untar", "--seed", mnt / "seed", "--print-stats", mnt / "v.catar", mnt / "out")
    os.sync()
    after = os.statvfs(mnt)
    grown = (before.f_bfree - after.f_bfree) * before.f_frsize
    assert _stats(proc.stderr)["Bytes cloned from seeds"] == 6 * (8 << 20)
    assert grown < 0.1 * 6 * (8 << 20)
    assert _shared_extents(mnt / "out/d/f0")
    assert _mtree(mnt / "out") == _mtree(mnt / "seed")
