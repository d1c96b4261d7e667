"""Index files: byte-exact round trips and casync's validation rules."""

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desync import featureflags
from desync.errors import FormatError
from desync.index import Index, IndexChunk, parse

from conftest import FIXTURES

EMPTY_INDEX_HEX = (
    "3000000000000000f99f127b9c4d8296"
    "00000000000000b00040000000000000"
    "00000100000000000000040000000000"
    "ffffffffffffffff7d41172f119e5be7"
    "00000000000000000000000000000000"
    "30000000000000003800000000000000"
    "d1ec49550e054f4b"
)


def fixture_indexes() -> list[Path]:
    found = sorted((FIXTURES / "casync" / "blobs").glob("*.caibx"))
    found += sorted((FIXTURES / "desync").glob("*.caibx"))
    return found


def test_empty_index_matches_casync_bytes() -> None:
    idx = Index(featureflags.BLOB_INDEX_FLAGS, 16384, 65536, 262144, [])
    assert idx.to_bytes().hex() == EMPTY_INDEX_HEX
    assert parse(bytes.fromhex(EMPTY_INDEX_HEX)).chunks == []


@pytest.mark.parametrize("path", fixture_indexes(), ids=lambda p: p.name)
def test_fixture_index_round_trips_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    idx = parse(data, path.name)
    assert idx.to_bytes() == data
    assert all(c.size > 0 for c in idx.chunks)


sizes = st.tuples(st.integers(1, 1 << 20), st.integers(0, 2), st.integers(0, 4)).map(
    lambda t: (t[0], t[0] * (1 + t[1]), t[0] * (1 + t[1]) * (1 + t[2])))


@given(sizes=sizes, data=st.data(), sha256=st.booleans())
@settings(max_examples=100, deadline=None)
def test_index_round_trip(sizes: tuple[int, int, int], data: st.DataObject, sha256: bool) -> None:
    lo, avg, hi = sizes
    lengths = data.draw(st.lists(st.integers(1, hi), max_size=50))
    chunks, pos = [], 0
    for n in lengths:
        chunks.append(IndexChunk(pos, n, data.draw(st.binary(min_size=32, max_size=32))))
        pos += n
    flags = featureflags.BLOB_INDEX_FLAGS & ~(featureflags.SHA512_256 if sha256 else 0)
    idx = Index(flags, lo, avg, hi, chunks)
    blob = idx.to_bytes()
    assert len(blob) == 104 + 40 * len(chunks)
    back = parse(blob)
    assert back == idx
    assert back.digest.name == ("sha256" if sha256 else "sha512-256")


def _sample() -> bytes:
    return (FIXTURES / "casync" / "blobs" / "rand-1m.caibx").read_bytes()


def test_truncated_index_is_rejected_at_every_length() -> None:
    data = _sample()
    for cut in range(0, len(data), 7):
        with pytest.raises(FormatError):
            parse(data[:cut])


def test_trailing_data_is_rejected() -> None:
    with pytest.raises(FormatError, match="trailing"):
        parse(_sample() + b"\0")


@pytest.mark.parametrize("offset,field", [(0, "header size"), (8, "header type"), (48, "table size"),
                                          (56, "table type")])
def test_damaged_header_is_rejected(offset: int, field: str) -> None:
    data = bytearray(_sample())
    data[offset] ^= 0x01
    with pytest.raises(FormatError):
        parse(bytes(data))


def test_non_monotonic_offsets_are_rejected() -> None:
    data = bytearray(_sample())
    first = struct.unpack_from("<Q", data, 64)[0]
    struct.pack_into("<Q", data, 104, first)
    with pytest.raises(FormatError, match="ends at .* at offset 104$") as caught:
        parse(bytes(data))
    assert caught.value.offset == 104  # the byte offset of the bad record


def test_chunk_above_max_is_rejected() -> None:
    data = bytearray(_sample())
    struct.pack_into("<Q", data, 40, 1000)  # max
    struct.pack_into("<QQ", data, 24, 1000, 1000)  # min, avg
    with pytest.raises(FormatError, match="above the maximum"):
        parse(bytes(data))


def test_unnormalised_or_unknown_flags_are_rejected() -> None:
    data = bytearray(_sample())
    struct.pack_into("<Q", data, 16, featureflags.BLOB_INDEX_FLAGS | featureflags.WITH_SEC_TIME
                     | featureflags.WITH_NSEC_TIME)
    with pytest.raises(FormatError, match="normalised"):
        parse(bytes(data))
    struct.pack_into("<Q", data, 16, 1 << 40)
    with pytest.raises(FormatError, match="unsupported"):
        parse(bytes(data))


def test_bad_chunk_sizes_in_header_are_rejected() -> None:
    data = bytearray(_sample())
    struct.pack_into("<Q", data, 24, 0)
    with pytest.raises(FormatError, match="chunk sizes"):
        parse(bytes(data))
