"""Blob seeds on extract: indexed, unindexed, stale, the output itself, zeros, reflink modes.

The property tests build v1/v2 pairs from random edits and check that every
way of rebuilding v2 from v1 gives v2 byte for byte; the CLI tests check the
flags, the errors, and (with a chunk-server's request log) that only chunks
the seed lacks are downloaded.
"""

import os
import random
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desync import digest as digest_mod
from desync.chunker import Chunker
from desync.digest import with_digest_flag
from desync.featureflags import BLOB_INDEX_FLAGS
from desync.index import Index, IndexChunk
from desync.ops.extract import ExtractStats, extract_blob
from desync.ops.make import make_blob_index
from desync.ops.seed import InvalidSeed, SeedFile, SeedOptions, SeedSet, load_seeds
from desync.reflink import RangeCopier
from desync.stores import LocalStore, StoreOptions, open_store

from conftest import assert_one_line_error, run_desync
from http_util import ServerProcess

SIZES = (1024, 4096, 16384)
DIGEST = digest_mod.by_name("sha512-256")


def _chunker() -> Chunker:
    return Chunker(*SIZES)


def _random_blob(rng: random.Random, size: int) -> bytearray:
    """Random data with repeated and zero regions, like a disk image."""
    out = bytearray()
    pieces: list[bytes] = []
    while len(out) < size:
        kind = rng.random()
        n = rng.randrange(1000, 40000)
        if kind < 0.2:
            out += bytes(n)
        elif kind < 0.35 and pieces:
            out += rng.choice(pieces)
        else:
            piece = rng.randbytes(n)
            pieces.append(piece)
            out += piece
    return out[:size]


def _edit(rng: random.Random, v1: bytes, edits: int) -> bytes:
    """v2: insertions, deletions, moves, repeats and zeroed ranges applied to v1."""
    v2 = bytearray(v1)
    for _ in range(edits):
        kind = rng.randrange(5)
        at = rng.randrange(len(v2) + 1)
        n = rng.randrange(1, 30000)
        if kind == 0:
            v2[at:at] = rng.randbytes(n)
        elif kind == 1:
            del v2[at:at + n]
        elif kind == 2:
            piece = bytes(v2[at:at + n])
            del v2[at:at + n]
            to = rng.randrange(len(v2) + 1)
            v2[to:to] = piece
        elif kind == 3:
            v2[at:at] = v2[max(0, at - n):at]
        else:
            v2[at:at + n] = bytes(len(v2[at:at + n]))
    return bytes(v2)


def _store(path: Path) -> LocalStore:
    store = open_store(str(path), StoreOptions(), writable=True)
    assert isinstance(store, LocalStore)
    return store


def _index(path: Path, store_dir: Path | None = None) -> Index:
    store = _store(store_dir) if store_dir is not None else None
    try:
        return make_blob_index(str(path), _chunker(), DIGEST, store)
    finally:
        if store is not None:
            store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), edits=st.integers(0, 6),
       mode=st.sampled_from(["indexed", "unindexed", "stale-skip", "stale-regenerate", "stale-bypassed", "none"]),
       in_place=st.sampled_from(["fresh", "output-is-seed", "output-is-junk"]),
       reflink=st.sampled_from(["auto", "no"]))
def test_every_way_of_rebuilding_from_a_seed_gives_v2_byte_for_byte(
        tmp_path: Path, seed: int, edits: int, mode: str, in_place: str, reflink: str) -> None:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis may run the same example twice
    v1 = bytes(_random_blob(rng, rng.randrange(20000, 200000)))
    v2 = _edit(rng, v1, edits)
    (work / "v1").write_bytes(v1)
    (work / "v2").write_bytes(v2)
    target = _index(work / "v2", work / "store")
    seed_index = _index(work / "v1")
    (work / "v1.caibx").write_bytes(seed_index.to_bytes())
    out = work / "out"
    if in_place == "output-is-seed":
        out.write_bytes(v1)
    elif in_place == "output-is-junk":
        out.write_bytes(rng.randbytes(len(v1)))
    if mode.startswith("stale"):
        damaged = bytearray(v1)
        for _ in range(3):
            at = rng.randrange(len(damaged))
            damaged[at] ^= 0xFF
        (work / "v1").write_bytes(damaged)
    seeds = SeedSet()
    options = SeedOptions(skip_invalid=mode == "stale-skip", regenerate_invalid=mode == "stale-regenerate")
    if mode in ("indexed", "stale-skip", "stale-regenerate"):
        seeds = load_seeds([str(work / "v1.caibx")], [], target, StoreOptions(), options)
    elif mode == "unindexed":
        (work / "v1.caibx").unlink()
        seeds = load_seeds([str(work / "v1")], [], target, StoreOptions(), options)
    elif mode == "stale-bypassed":
        # The seed changed after the up-front check: the copy-time verification must catch it.
        seeds.add(SeedFile(str(work / "v1"), seed_index, (0, 0)))
    if in_place == "output-is-seed":
        seeds.add(SeedFile(str(out), seed_index, (os.stat(out).st_dev, os.stat(out).st_ino)))
    with _store(work / "store") as store:
        extract_blob(target, store, str(out), in_place=in_place != "fresh", workers=3, seeds=seeds,
                     copier=RangeCopier(reflink))
    assert out.read_bytes() == v2


def _blocks(*names: str, size: int = 5000) -> tuple[bytes, Index]:
    """A blob of named fixed-size blocks ("A", "B", ...) and its hand-made index."""
    data = b"".join(bytes([ord(n)]) * size + n.encode() * 7 for n in names)
    each = size + 7
    chunks = [IndexChunk(i * each, each, DIGEST.sum(data[i * each:(i + 1) * each])) for i in range(len(names))]
    return data, Index(with_digest_flag(BLOB_INDEX_FLAGS, DIGEST), 64, each, 4 * each, chunks)


@pytest.mark.parametrize("old,new", [
    ("AB", "BA"),                 # two chunks swap places
    ("ABCD", "BCDA"),             # a cycle through every position
    ("ABCDE", "AABCD"),           # a chain: each chunk moves onto the next one's place
    ("ABC", "CCC"),               # one chunk copied over everything, itself included
    ("ABCD", "DCBA"),             # two swaps at once
    ("ABCDEF", "FABCDE"),         # the last chunk moves to the front of a longer chain
    ("ABCD", "BA"),               # the file shrinks while chunks move
], ids=["swap", "cycle", "chain", "fan-out", "reverse", "rotate", "shrink"])
def test_in_place_moves_inside_the_output_never_read_clobbered_bytes(tmp_path: Path, old: str, new: str) -> None:
    old_data, old_index = _blocks(*old)
    new_data, new_index = _blocks(*new)
    out = tmp_path / "blob"
    out.write_bytes(old_data)
    st_out = os.stat(out)
    seeds = SeedSet()
    seeds.add(SeedFile(str(out), old_index, (st_out.st_dev, st_out.st_ino)))
    stats = ExtractStats()
    # No store at all: every byte must come from the output's own old content.
    extract_blob(new_index, None, str(out), in_place=True, workers=4, seeds=seeds, stats=stats)
    assert out.read_bytes() == new_data
    assert stats.fetched == 0


def test_in_place_staging_spills_to_a_temp_file_beyond_the_memory_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import desync.ops.extract as extract_mod

    monkeypatch.setattr(extract_mod, "STAGE_MEMORY", 6000)
    old_data, old_index = _blocks(*"ABCDE")
    new_data, new_index = _blocks(*"EDCBA")
    out = tmp_path / "blob"
    out.write_bytes(old_data)
    st_out = os.stat(out)
    seeds = SeedSet()
    seeds.add(SeedFile(str(out), old_index, (st_out.st_dev, st_out.st_ino)))
    extract_blob(new_index, None, str(out), in_place=True, workers=2, seeds=seeds)
    assert out.read_bytes() == new_data


def test_a_seed_whose_bytes_changed_never_puts_wrong_bytes_in_the_output(tmp_path: Path) -> None:
    v1 = random.Random(5).randbytes(150000)
    (tmp_path / "v1").write_bytes(v1)
    target = _index(tmp_path / "v1", tmp_path / "store")
    (tmp_path / "v1").write_bytes(bytes(len(v1)))  # every seed chunk is now wrong
    seeds = SeedSet()
    seeds.add(SeedFile(str(tmp_path / "v1"), target, (0, 0)))
    stats = ExtractStats()
    with _store(tmp_path / "store") as store:
        extract_blob(target, store, str(tmp_path / "out"), seeds=seeds, stats=stats)
    assert (tmp_path / "out").read_bytes() == v1
    assert stats.seed_invalid == len({c.id for c in target.chunks})
    assert stats.seed_chunks == 0


def test_a_stale_indexed_seed_is_refused_up_front_naming_the_seed(tmp_path: Path) -> None:
    data = random.Random(2).randbytes(100000)
    (tmp_path / "v1").write_bytes(data)
    target = _index(tmp_path / "v1")
    (tmp_path / "v1.caibx").write_bytes(target.to_bytes())
    (tmp_path / "v1").write_bytes(data[:50000] + b"x" + data[50001:])
    with pytest.raises(InvalidSeed, match=r"seed .*v1 does not match its index .*v1\.caibx"):
        load_seeds([str(tmp_path / "v1.caibx")], [], target, StoreOptions(), SeedOptions())


def _make(tmp_path: Path, name: str, data: bytes) -> Path:
    (tmp_path / name).write_bytes(data)
    run_desync("make", "-s", tmp_path / "store", "--chunk-size", "1:4:16",
               tmp_path / f"{name}.caibx", tmp_path / name)
    return tmp_path / f"{name}.caibx"


def test_extract_seed_flags_follow_go_desync(tmp_path: Path) -> None:
    rng = random.Random(3)
    v1 = rng.randbytes(120000)
    v2 = v1[:30000] + rng.randbytes(2000) + v1[30000:]
    _make(tmp_path, "v1", v1)
    v2_index = _make(tmp_path, "v2", v2)
    os.rename(tmp_path / "v1", tmp_path / "v1-data")
    # INDEX:FILE spelling, no store needed when the seed has everything it can and the store the rest.
    run_desync("extract", "-s", tmp_path / "store", "--seed", f"{tmp_path / 'v1.caibx'}:{tmp_path / 'v1-data'}",
               v2_index, tmp_path / "out1")
    assert (tmp_path / "out1").read_bytes() == v2
    # --seed-dir: every *.caibx with the file of the same name.
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    os.rename(tmp_path / "v1-data", seeds / "v1")
    os.rename(tmp_path / "v1.caibx", seeds / "v1.caibx")
    proc = run_desync("extract", "-s", tmp_path / "store", "--seed-dir", seeds, "--print-stats",
                      v2_index, tmp_path / "out2")
    assert (tmp_path / "out2").read_bytes() == v2
    err = proc.stderr.decode()
    copied = re.search(r"Bytes copied from seeds: (\d+)", err)
    cloned = re.search(r"Bytes cloned from seeds: (\d+)", err)
    assert copied is not None and cloned is not None, err
    assert int(copied.group(1)) + int(cloned.group(1)) > 100000
    # A stale seed: one-line error naming it, or skipped, or regenerated.
    (seeds / "v1").write_bytes(b"y" + v1[1:])
    proc = run_desync("extract", "-s", tmp_path / "store", "--seed", seeds / "v1.caibx", v2_index,
                      tmp_path / "out3", check=False)
    line = assert_one_line_error(proc)
    assert str(seeds / "v1") in line and "--skip-invalid-seeds" in line
    assert not (tmp_path / "out3").exists()
    proc = run_desync("extract", "-s", tmp_path / "store", "--seed", seeds / "v1.caibx", "--skip-invalid-seeds",
                      v2_index, tmp_path / "out3")
    assert (tmp_path / "out3").read_bytes() == v2
    assert b"skipping seed" in proc.stderr
    run_desync("extract", "-s", tmp_path / "store", "--seed", seeds / "v1.caibx", "--regenerate-invalid-seeds",
               v2_index, tmp_path / "out4")
    assert (tmp_path / "out4").read_bytes() == v2
    regenerated = run_desync("list-chunks", seeds / "v1.caibx").stdout
    run_desync("make", "--chunk-size", "1:4:16", tmp_path / "check.caibx", seeds / "v1")
    assert regenerated == run_desync("list-chunks", tmp_path / "check.caibx").stdout


def test_a_seed_without_an_index_or_a_directory_of_files_is_chunked_on_the_fly(tmp_path: Path) -> None:
    rng = random.Random(4)
    a, b = rng.randbytes(200000), rng.randbytes(200000)
    v2 = b + a + bytes(40000)
    v2_index = _make(tmp_path, "v2", v2)
    tree = tmp_path / "tree" / "sub"
    tree.mkdir(parents=True)
    (tree / "a").write_bytes(a)
    (tmp_path / "tree" / "b").write_bytes(b)
    (tmp_path / "ab").write_bytes(a + b)
    for seed in (tmp_path / "tree", tmp_path / "ab"):
        out = tmp_path / f"out-{seed.name}"
        proc = run_desync("extract", "--seed", seed, "-s", tmp_path / "store", "--print-stats", v2_index, out)
        assert out.read_bytes() == v2
        err = proc.stderr.decode()
        seeded = sum(int(n) for n in re.findall(r"Bytes (?:copied|cloned) from seeds: (\d+)", err))
        # Only the chunks straddling the joins (and the zeros' edge) are not in the seeds.
        assert seeded > 300000, err
        fetched = re.search(r"Bytes fetched \(cache and stores\): (\d+)", err)
        assert fetched is not None and int(fetched.group(1)) < 100000, err


def test_a_chunk_no_seed_has_without_a_store_is_a_one_line_error(tmp_path: Path) -> None:
    v2_index = _make(tmp_path, "v2", random.Random(6).randbytes(50000))
    (tmp_path / "other").write_bytes(b"z" * 50000)
    proc = run_desync("extract", "--seed", tmp_path / "other", v2_index, tmp_path / "out", check=False)
    assert "no store was given" in assert_one_line_error(proc)
    assert not (tmp_path / "out").exists()


def test_repeated_and_zero_chunks_are_fetched_once_and_zeros_stay_holes(tmp_path: Path) -> None:
    rng = random.Random(7)
    piece = rng.randbytes(70000)
    v2 = piece + bytes(1 << 20) + piece + piece
    v2_index = _make(tmp_path, "v2", v2)
    proc = run_desync("extract", "-s", tmp_path / "store", "--print-stats", v2_index, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == v2
    err = proc.stderr.decode()
    from_self = sum(int(n) for n in re.findall(r"Bytes (?:copied|cloned) from the output \(self seed\): (\d+)", err))
    assert from_self >= 2 * 60000, err
    assert os.stat(tmp_path / "out").st_blocks * 512 < len(v2) - (1 << 19)


def test_in_place_zero_chunks_become_holes(tmp_path: Path) -> None:
    rng = random.Random(8)
    v2 = rng.randbytes(30000) + bytes(1 << 20) + rng.randbytes(30000)
    v2_index = _make(tmp_path, "v2", v2)
    out = tmp_path / "out"
    out.write_bytes(rng.randbytes(len(v2)))
    run_desync("extract", "-k", "-s", tmp_path / "store", v2_index, out)
    assert out.read_bytes() == v2
    assert os.stat(out).st_blocks * 512 < len(v2) - (1 << 19)


def test_only_chunks_absent_from_the_seed_are_downloaded(tmp_path: Path) -> None:
    """8 MiB image with 10 scattered 64 KiB edits (the 256 MiB acceptance case, scaled for the suite)."""
    rng = random.Random(9)
    v1 = bytearray(rng.randbytes(8 << 20))
    (tmp_path / "v1").write_bytes(v1)
    v2 = bytearray(v1)
    for i in range(10):
        at = i * (len(v2) // 10) + rng.randrange(len(v2) // 10 - 65536)
        v2[at:at + 65536] = rng.randbytes(65536)
    (tmp_path / "v2").write_bytes(v2)
    run_desync("make", "-s", tmp_path / "store", tmp_path / "v2.caibx", tmp_path / "v2")
    run_desync("make", tmp_path / "v1.caibx", tmp_path / "v1")
    v1_ids = set(run_desync("list-chunks", tmp_path / "v1.caibx").stdout.split())
    v2_ids = set(run_desync("list-chunks", tmp_path / "v2.caibx").stdout.split())
    (tmp_path / "v1.caibx").unlink()  # the seed is chunked on the fly
    log = tmp_path / "requests.log"
    with ServerProcess("chunk-server", "-s", tmp_path / "store", "--log", log) as srv:
        run_desync("extract", "-s", srv.url, "--seed", tmp_path / "v1", v2 and tmp_path / "v2.caibx",
                   tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == v2
    fetched = set(re.findall(rb"[0-9a-f]{64}", log.read_bytes()))
    missing = v2_ids - v1_ids
    assert fetched == missing
    assert 0 < len(fetched) <= 10 * 3


def test_reflink_yes_fails_clearly_where_the_file_system_cannot_clone(tmp_path: Path) -> None:
    data = random.Random(10).randbytes(300000)
    v_index = _make(tmp_path, "v", data)
    probe = tmp_path / "probe"
    probe.write_bytes(b"\0" * 8192)
    import fcntl
    import struct

    from desync.reflink import FICLONERANGE

    with open(probe, "rb") as src, open(tmp_path / "probe2", "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONERANGE, struct.pack("=qQQQ", src.fileno(), 0, 4096, 0))
            pytest.skip("this file system clones: covered by the XFS test")
        except OSError:
            pass
    proc = run_desync("extract", "--reflink", "yes", "--seed", tmp_path / "v", v_index, tmp_path / "out",
                      check=False)
    assert "--reflink yes" in assert_one_line_error(proc)
    assert not (tmp_path / "out").exists()
    run_desync("extract", "--reflink", "no", "--seed", tmp_path / "v", v_index, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_SHARED = 0x2000
_FIEMAP_HEAD = "=QQIIII"
_FIEMAP_EXTENT = "=QQQQQIIII"


def _shared_bytes(path: Path) -> int:
    """Bytes of ``path`` in extents the file system reports as shared (FIEMAP)."""
    import fcntl
    import struct

    count = 512
    head = struct.calcsize(_FIEMAP_HEAD)
    each = struct.calcsize(_FIEMAP_EXTENT)
    shared = 0
    start = 0
    with open(path, "rb") as f:
        while True:
            request = bytearray(struct.pack(_FIEMAP_HEAD, start, (1 << 64) - 1 - start, FIEMAP_FLAG_SYNC, 0, count, 0))
            request += bytes(count * each)
            fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, request, True)
            mapped = struct.unpack_from(_FIEMAP_HEAD, request)[3]
            last = False
            for i in range(mapped):
                logical, _, length, _, _, flags, _, _, _ = struct.unpack_from(_FIEMAP_EXTENT, request, head + i * each)
                if flags & FIEMAP_EXTENT_SHARED:
                    shared += length
                start = logical + length
                last = bool(flags & 0x1)  # FIEMAP_EXTENT_LAST
            if mapped < count or last:
                return shared


@pytest.fixture
def xfs_reflink(tmp_path: Path) -> Iterator[Path]:
    """A loop-mounted XFS with reflink (needs root and mkfs.xfs from xfsprogs)."""
    import shutil
    import subprocess

    if shutil.which("mkfs.xfs") is None:
        pytest.skip("mkfs.xfs is not installed (apt-get install xfsprogs; scripts/setup-system)")
    if os.geteuid() != 0:
        pytest.skip("mounting a loop file system needs root")
    image = tmp_path / "xfs.img"
    with open(image, "wb") as f:
        f.truncate(400 << 20)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True, timeout=60)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"mount is not permitted here: {proc.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True, timeout=60)


def _used(path: Path) -> int:
    os.sync()
    s = os.statvfs(path)
    return (s.f_blocks - s.f_bfree) * s.f_frsize


def test_extract_from_a_seed_on_xfs_shares_extents_and_barely_grows_used_space(
        tmp_path: Path, xfs_reflink: Path) -> None:
    rng = random.Random(11)
    v1 = bytearray(rng.randbytes(8 << 20))
    (xfs_reflink / "v1").write_bytes(v1)
    run_desync("make", xfs_reflink / "v1.caibx", xfs_reflink / "v1")
    at = rng.randrange(len(v1) - 65536)
    v1[at:at + 65536] = rng.randbytes(65536)
    (tmp_path / "v2").write_bytes(v1)
    run_desync("make", "-s", tmp_path / "store", tmp_path / "v2.caibx", tmp_path / "v2")
    before = _used(xfs_reflink)
    out = xfs_reflink / "out"
    proc = run_desync("extract", "--reflink", "yes", "--print-stats", "-s", tmp_path / "store",
                      "--seed", xfs_reflink / "v1.caibx", tmp_path / "v2.caibx", out)
    assert out.read_bytes() == bytes(v1)
    grown = _used(xfs_reflink) - before
    assert grown < len(v1) // 10, (grown, proc.stderr.decode())
    assert _shared_bytes(out) > len(v1) // 2
    err = proc.stderr.decode()
    cloned = re.search(r"Bytes cloned from seeds: (\d+)", err)
    assert cloned is not None, err
    assert int(cloned.group(1)) > len(v1) // 2
    # Without reflinks the same extract copies: nothing shared, the full size used.
    run_desync("extract", "--reflink", "no", "-s", tmp_path / "store", "--seed", xfs_reflink / "v1.caibx",
               tmp_path / "v2.caibx", xfs_reflink / "copy")
    assert (xfs_reflink / "copy").read_bytes() == bytes(v1)
    assert _shared_bytes(xfs_reflink / "copy") == 0


def test_info_counts_the_chunks_the_seeds_hold(tmp_path: Path) -> None:
    import json

    rng = random.Random(12)
    v1 = rng.randbytes(150000)
    v2 = v1[:70000] + rng.randbytes(20000) + v1[70000:]
    _make(tmp_path, "v1", v1)
    v2_index = _make(tmp_path, "v2", v2)
    v1_ids = set(run_desync("list-chunks", tmp_path / "v1.caibx").stdout.split())
    v2_chunks = run_desync("chunk", "-m", "1:4:16", tmp_path / "v2").stdout.decode().splitlines()
    sizes = {line.split("\t")[2]: int(line.split("\t")[1]) for line in v2_chunks}
    in_seed = {i for i in sizes if i.encode() in v1_ids}
    assert 0 < len(in_seed) < len(sizes)
    for seed in (tmp_path / "v1.caibx", tmp_path / "v1"):
        if seed == tmp_path / "v1":
            (tmp_path / "v1.caibx").unlink()  # now chunked on the fly
        info = json.loads(run_desync("info", "--seed", seed, v2_index).stdout)
        assert info["in-seed"] == len(in_seed)
        assert info["not-in-seed-nor-cache"] == len(sizes) - len(in_seed)
        assert info["dedup-size-not-in-seed"] == sum(n for i, n in sizes.items() if i not in in_seed)


def test_print_stats_says_how_many_bytes_came_from_the_cache_and_each_store(tmp_path: Path) -> None:
    rng = random.Random(13)
    v1 = rng.randbytes(100000)
    v2 = v1 + rng.randbytes(50000)
    (tmp_path / "v1").write_bytes(v1)
    run_desync("make", "-s", tmp_path / "first", "-m", "1:4:16", tmp_path / "v1.caibx", tmp_path / "v1")
    v2_index = _make(tmp_path, "v2", v2)

    def sources(out: str, *extra: object) -> dict[str, int]:
        err = run_desync("extract", "-s", tmp_path / "first", "-s", tmp_path / "store", "-c", tmp_path / "cache",
                         "--print-stats", *extra, v2_index, tmp_path / out).stderr.decode()
        assert (tmp_path / out).read_bytes() == v2
        return {m[0]: int(m[1]) for m in re.findall(r"Bytes from ((?:cache|store) \S+): (\d+)", err)}

    first = sources("out1")
    assert first[f"store {tmp_path / 'first'}"] + first[f"store {tmp_path / 'store'}"] >= len(v2) - 16384
    assert first[f"store {tmp_path / 'store'}"] > 0 and first[f"cache {tmp_path / 'cache'}"] == 0
    again = sources("out2")
    assert again[f"cache {tmp_path / 'cache'}"] >= len(v2) - 16384
    assert again[f"store {tmp_path / 'first'}"] == again[f"store {tmp_path / 'store'}"] == 0
    # With the old version as seed, the stores (and the cache) serve only what the seed lacks.
    seeded = sources("out3", "--seed", tmp_path / "v1.caibx")
    assert sum(seeded.values()) < 70000


def test_cat_reads_chunks_from_seeds_and_never_fills_the_cache_from_them(tmp_path: Path) -> None:
    rng = random.Random(14)
    v1 = rng.randbytes(120000)
    v2 = v1[:60000] + rng.randbytes(3000) + v1[60000:]
    (tmp_path / "v1").write_bytes(v1)
    v2_index = _make(tmp_path, "v2", v2)
    proc = run_desync("cat", "-s", tmp_path / "store", "-c", tmp_path / "cache", "--seed", tmp_path / "v1", v2_index)
    assert proc.stdout == v2
    cached = [p for p in (tmp_path / "cache").rglob("*.cacnk")]
    assert 0 < len(cached) <= 4  # only the chunks around the insertion came from the store
    proc = run_desync("cat", "--seed", tmp_path / "v1", "-o", "1000", "-l", "5000", v2_index)
    assert proc.stdout == v2[1000:6000]


def test_a_missing_seed_is_a_one_line_error_or_skipped_on_request(tmp_path: Path) -> None:
    data = random.Random(15).randbytes(40000)
    v_index = _make(tmp_path, "v", data)
    for seed in (tmp_path / "gone", tmp_path / "gone.caibx"):
        proc = run_desync("extract", "-s", tmp_path / "store", "--seed", seed, v_index, tmp_path / "out", check=False)
        assert "gone" in assert_one_line_error(proc)
        assert not (tmp_path / "out").exists()
    (tmp_path / "gone.caibx").write_bytes(v_index.read_bytes())  # an index whose file is missing
    for seed in (tmp_path / "gone", tmp_path / "gone.caibx"):
        proc = run_desync("extract", "-s", tmp_path / "store", "--seed", seed, v_index, tmp_path / "out", check=False)
        assert "gone" in assert_one_line_error(proc)
        run_desync("extract", "-s", tmp_path / "store", "--seed", seed, "--skip-invalid-seeds", v_index,
                   tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == data


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    """A loop block device over a 1 MiB file (needs root and losetup)."""
    import shutil
    import subprocess

    if shutil.which("losetup") is None or os.geteuid() != 0:
        pytest.skip("a loop device needs root and losetup")
    backing = tmp_path / "device.img"
    backing.write_bytes(bytes(1 << 20))
    proc = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"loop devices are not permitted here: {proc.stderr.decode(errors='replace').strip()}")
    device = Path(proc.stdout.decode().strip())
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", str(device)], check=True, timeout=30)


def test_a_block_device_is_updated_in_place_from_its_own_old_content(tmp_path: Path, loop_device: Path) -> None:
    rng = random.Random(16)
    parts = [rng.randbytes(100000) for _ in range(10)]
    v1 = b"".join(parts) + bytes((1 << 20) - 1000000)
    v2 = b"".join(parts[::-1]) + bytes((1 << 20) - 1000000)  # every part moves: a reversal within the device
    with open(loop_device, "r+b") as dev:
        dev.write(v1)
    v2_index = _make(tmp_path, "v2", v2)
    proc = run_desync("extract", "-k", "--print-stats", "-s", tmp_path / "store", "--seed", loop_device, v2_index,
                      loop_device)
    with open(loop_device, "rb") as dev:
        assert dev.read() == v2
    err = proc.stderr.decode()
    fetched = re.search(r"Bytes fetched \(cache and stores\): (\d+)", err)
    assert fetched is not None and int(fetched.group(1)) < 200000, err  # only chunks across the joins
