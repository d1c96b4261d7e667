"""Mutation fuzzing of every decoder of untrusted bytes: only clean errors, in bounded time and memory.

Each decoder starts from a small valid input built here (an index, a catar
archive, chunk files in the three formats, a protocol conversation) and
gets it back with byte flips, truncations, insertions and large integers
planted in its length and size fields.  Whatever comes in, a decoder may
only accept it or raise a :class:`DesyncError`; any other exception is a
bug (the CLI would print ``internal error:``).

Bounds, measured per example: hypothesis' ``deadline`` for time, and
``tracemalloc``'s peak of Python allocations (every buffer a decoder makes
for content is one) for memory, against a budget per decoder.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import struct
import tempfile
import tracemalloc
from collections.abc import Callable
from datetime import timedelta

import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_catar_malicious import rdir, rfile

from desync import compression
from desync import digest as digest_mod
from desync.catar import decode, extract_stream
from desync.catar.format import entry_record, string_record, xattr_record
from desync.chunk import Chunk
from desync.constants import CA_FORMAT_ENTRY, CA_FORMAT_SYMLINK, CA_FORMAT_USER
from desync.errors import DesyncError
from desync.featureflags import DESYNC_TAR_FLAGS, WITH_USER_NAMES, WITH_XATTRS, normalize
from desync.index import Index, IndexChunk, parse
from desync.protocol import messages as m
from desync.protocol.stream import MessageReader

MiB = 1 << 20
SHA = digest_mod.SHA512_256_DIGEST
BIG = [0, 1, 15, 16, 17, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 62), (1 << 63) - 1, 1 << 63,
       (1 << 63) + 1, (1 << 64) - 17, (1 << 64) - 1]
FUZZ = settings(max_examples=300, deadline=timedelta(seconds=5), derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def record_starts(data: bytes) -> list[int]:
    """Offsets of the u64 size fields of a sequence of ``size, type, body`` records (catar, protocol)."""
    out = []
    pos = 0
    while pos + 16 <= len(data):
        out.append(pos)
        out.append(pos + 8)
        pos += max(16, struct.unpack_from("<Q", data, pos)[0])
    return out


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, fields: list[int]) -> bytes:
    """``seed`` after one to four mutations; large integers land on ``fields`` (u64 offsets) or anywhere."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "plant", "plant"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=24))
        else:
            if len(fields) > 0 and draw(st.booleans()):
                at = fields[draw(st.integers(0, len(fields) - 1))]
            value = draw(st.sampled_from(BIG) | st.integers(0, (1 << 64) - 1))
            data[at:at + 8] = value.to_bytes(8, "little")
    return bytes(data)


def bounded(budget: int, *steps: Callable[[], object]) -> None:
    """Run each step: it may fail only with a DesyncError, and none may allocate more than ``budget`` at a time."""
    tracemalloc.start()
    try:
        for step in steps:
            try:
                step()
            except DesyncError:
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= budget, f"peak {peak} bytes, budget {budget}"


def planted(seed: bytes, fields: list[int]) -> list[bytes]:
    """Every large integer of BIG written over every field: the systematic part of the fuzzing."""
    out = []
    for at in fields:
        for value in BIG:
            out.append(seed[:at] + value.to_bytes(8, "little") + seed[at + 8:])
    return out


# --- index files -----------------------------------------------------------------------------------------------

def _index_seed() -> bytes:
    ids = [SHA.sum(bytes([i])) for i in range(4)]
    chunks = [IndexChunk(i * 3000, 3000 + i, cid) for i, cid in enumerate(ids)]
    fixed = [IndexChunk(c.start + sum(range(i)), c.size, c.id) for i, c in enumerate(chunks)]
    return Index(DESYNC_TAR_FLAGS, 1024, 4096, 16384, fixed).to_bytes()


INDEX_SEED = _index_seed()
INDEX_FIELDS = list(range(0, 64, 8)) + [64 + 40 * i for i in range(6)]


def test_index_seed_is_valid() -> None:
    assert len(parse(INDEX_SEED).chunks) == 4


@FUZZ
@given(mutated(INDEX_SEED, INDEX_FIELDS))
def test_index_parser_fuzz(data: bytes) -> None:
    bounded(1 * MiB, lambda: parse(data, "fuzz.caibx").length)


def test_index_parser_planted_integers() -> None:
    for data in planted(INDEX_SEED, INDEX_FIELDS):
        bounded(1 * MiB, lambda: parse(data, "fuzz.caibx").length)


# --- catar archives --------------------------------------------------------------------------------------------

def _catar_seed() -> bytes:
    flags = normalize(DESYNC_TAR_FLAGS | WITH_XATTRS | WITH_USER_NAMES)
    rich = (entry_record(flags, 0o100644, 0, 1000, 1000, 1_700_000_000 * 10**9)
            + string_record(CA_FORMAT_USER, b"alice")
            + xattr_record(b"user.k", b"v") + rfile(b"payload", flags=flags)[64:])
    sub = rdir([(b"x", rfile(b"1", flags=flags))], flags=flags)
    link = entry_record(flags, 0o120777, 0, 0, 0, 0) + string_record(CA_FORMAT_SYMLINK, b"a")
    return rdir([(b"a", rfile(b"hello", flags=flags)), (b"d", sub), (b"l", link), (b"r", rich)], flags=flags)


CATAR_SEED = _catar_seed()
CATAR_FIELDS = record_starts(CATAR_SEED)
# The numbers inside ENTRY records: feature flags, mode, flags, uid, gid, mtime.
ENTRY_FIELDS = [at + 16 + 8 * i for at in CATAR_FIELDS[::2]
                if struct.unpack_from("<Q", CATAR_SEED, at + 8)[0] == CA_FORMAT_ENTRY for i in range(6)]


def _decode_all(data: bytes) -> None:
    for node in decode(io.BytesIO(data)):
        payload = getattr(node, "payload", None)
        if payload is not None:
            payload.skip()


def test_catar_seed_is_valid() -> None:
    assert sum(1 for _ in decode(io.BytesIO(CATAR_SEED))) > 6


@FUZZ
@given(mutated(CATAR_SEED, CATAR_FIELDS))
def test_catar_decoder_fuzz(data: bytes) -> None:
    bounded(4 * MiB, lambda: _decode_all(data))


def test_catar_decoder_planted_integers() -> None:
    for data in planted(CATAR_SEED, CATAR_FIELDS + ENTRY_FIELDS):
        bounded(4 * MiB, lambda: _decode_all(data))


@settings(FUZZ, max_examples=60)
@given(mutated(CATAR_SEED, CATAR_FIELDS))
def test_catar_extract_fuzz(data: bytes) -> None:
    """Extraction too: what the decoder lets through must not fail in the file system calls unguarded."""
    _extract(data)


def _extract(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, "a.catar")
        with open(archive, "wb") as f:
            f.write(data)

        def run() -> None:
            with open(archive, "rb") as src:  # a regular file: payloads are copied file to file
                extract_stream(src, os.path.join(tmp, "out"))

        bounded(8 * MiB, run)


def test_catar_extract_planted_sizes_and_entry_fields() -> None:
    for data in planted(CATAR_SEED, CATAR_FIELDS[::2] + ENTRY_FIELDS):
        _extract(data)


# --- chunk files -----------------------------------------------------------------------------------------------

CHUNK_DATA = b"casync chunk " * 300 + bytes(range(256)) * 4
CHUNK_ID = SHA.sum(CHUNK_DATA)
CHUNK_SEEDS = [
    zstandard.ZstdCompressor(level=3).compress(CHUNK_DATA),
    zstandard.ZstdCompressor(level=3, write_content_size=False, write_checksum=True).compress(CHUNK_DATA),
    lzma.compress(CHUNK_DATA),
    gzip.compress(CHUNK_DATA),
]
# Frame header fields of zstd (window, content size) and the first block header; anything else is reached by flips.
CHUNK_FIELDS = [4, 5, 6, 9]


# Size unknown (streamed into the hash), size from an index, and the plain decompression.
CHUNK_STEPS: list[Callable[[bytes], object]] = [
    lambda raw: Chunk(CHUNK_ID, compressed=raw).verify(SHA, "fuzz"),
    lambda raw: Chunk(CHUNK_ID, compressed=raw).verify(SHA, "fuzz", len(CHUNK_DATA)),
    lambda raw: Chunk(CHUNK_ID, compressed=raw, origin="fuzz").data(len(CHUNK_DATA)),
    lambda raw: compression.decompress(raw, 64 * 1024),
    lambda raw: b"".join(compression.decompressed_pieces(raw)),
]


def _decode_chunk(raw: bytes) -> None:
    # xz's dictionary (8 MiB at the default preset) is allocated whole; pieces and windows are smaller.
    bounded(16 * MiB, *[lambda step=step: step(raw) for step in CHUNK_STEPS])


def test_chunk_seeds_are_valid() -> None:
    for raw in CHUNK_SEEDS:
        for step in CHUNK_STEPS:
            step(raw)
        assert Chunk(CHUNK_ID, compressed=raw).data(len(CHUNK_DATA)) == CHUNK_DATA


@FUZZ
@given(st.sampled_from(range(len(CHUNK_SEEDS))).flatmap(lambda i: mutated(CHUNK_SEEDS[i], CHUNK_FIELDS)))
def test_chunk_decoder_fuzz(raw: bytes) -> None:
    _decode_chunk(raw)


def test_chunk_decoder_planted_integers() -> None:
    for seed in CHUNK_SEEDS:
        for raw in planted(seed, CHUNK_FIELDS):
            _decode_chunk(raw)


# --- protocol conversations ------------------------------------------------------------------------------------

def _protocol_seed() -> bytes:
    frame = zstandard.ZstdCompressor().compress(CHUNK_DATA)
    parts = [m.hello(m.READABLE_STORE | m.PULL_CHUNKS), m.request([CHUNK_ID, SHA.sum(b"x")], True),
             m.chunk_header(CHUNK_ID, len(frame), True) + frame, m.missing(SHA.sum(b"x")),
             *m.file_pieces(m.INDEX, INDEX_SEED), m.abort(5, "no such thing"), m.goodbye()]
    return b"".join(parts)


PROTOCOL_SEED = _protocol_seed()
PROTOCOL_FIELDS = record_starts(PROTOCOL_SEED)


def _read_conversation(data: bytes) -> None:
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        reader = MessageReader(f.fileno())
        while True:
            msg = reader.read()
            if msg is None:
                return
            if msg.type == m.HELLO:
                m.check_exchange(m.READABLE_STORE | m.PULL_CHUNKS, m.parse_hello(msg.body))
            elif msg.type == m.REQUEST:
                m.parse_request(msg.body)
            elif msg.type == m.CHUNK:
                compressed, chunk_id = m.parse_chunk_flags(msg.body)
                chunk = Chunk(chunk_id, compressed=msg.data) if compressed else Chunk(chunk_id, data=msg.data)
                chunk.verify(SHA, "peer")
            elif msg.type == m.ABORT:
                m.parse_abort(msg.body)


def test_protocol_seed_is_valid() -> None:
    _read_conversation(PROTOCOL_SEED)


@FUZZ
@given(mutated(PROTOCOL_SEED, PROTOCOL_FIELDS))
def test_protocol_decoder_fuzz(data: bytes) -> None:
    _read_bounded(data)


def _read_bounded(data: bytes) -> None:
    # A frame may be up to MAX_MESSAGE_SIZE long; its body is read into one buffer of that size.
    bounded(2 * m.MAX_MESSAGE_SIZE + 4 * MiB, lambda: _read_conversation(data))


def test_protocol_decoder_planted_integers() -> None:
    for data in planted(PROTOCOL_SEED, PROTOCOL_FIELDS):
        _read_bounded(data)


# --- tar input (tar --input-format tar) -------------------------------------------------------------------------

def _tar_seed() -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in ((b"a", b"hello"), (b"d/x", b"1")):
            info = tarfile.TarInfo(name.decode())
            info.size = len(data)
            info.uid, info.gid, info.mtime = 1000, 1000, 1_700_000_000
            info.pax_headers = {"mtime": "1700000000.5"}
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("l")
        link.type, link.linkname = tarfile.SYMTYPE, "a"
        tf.addfile(link)
    return buf.getvalue()


TAR_SEED = _tar_seed()


def _convert_tar(data: bytes) -> None:
    from desync.catar import tar_to_catar

    for _ in tar_to_catar(io.BytesIO(data)):
        pass


def test_tar_seed_is_valid() -> None:
    _convert_tar(TAR_SEED)


@settings(FUZZ, max_examples=150)
@given(mutated(TAR_SEED, []))
def test_tar_input_fuzz(data: bytes) -> None:
    bounded(8 * MiB, lambda: _convert_tar(data))
