"""Pure format pieces: SipHash, GOODBYE order, flag resolution, patterns."""

from __future__ import annotations

import math
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desync import featureflags as ff
from desync.catar.exclude import fnmatch_period, match, parse_rules
from desync.catar.format import (
    archive_mode,
    archive_mtime,
    bst_order,
    goodbye_hash,
    resolve_flags,
    siphash24,
    siphash24_py,
)
from desync.constants import GOODBYE_HASH_KEY
from desync.errors import DesyncError, InvalidArgument

SIPHASH_VECTORS = {
    b"": 0xB64ACAB6CA921906,
    b"a": 0x51BA5A19E058C7AD,
    b"d": 0x6B38EE3F1236BC32,
    b"foo": 0x4A2193AE181986CB,
    b"link": 0xF922BF6D7BB3DFAF,
    b"hello.txt": 0x768166EC6F1259FB,
    b"abcdefgh": 0xD8228FE398E5D074,
    "ü".encode(): 0x3AEE4955E1A1A6A9,
}


@pytest.mark.parametrize("name,value", sorted(SIPHASH_VECTORS.items()))
def test_goodbye_hash_vectors(name: bytes, value: int) -> None:
    assert goodbye_hash(name) == value


def test_siphash_reference_vector() -> None:
    # The SipHash paper's vector: key 00..0f, message 00..0e.
    key = bytes(range(16))
    assert siphash24(key, bytes(range(15))) == 0xA129CA6149BE45E5
    assert siphash24(GOODBYE_HASH_KEY, b"d") == SIPHASH_VECTORS[b"d"]


BST_TABLE = {
    1: [0],
    2: [1, 0],
    3: [1, 0, 2],
    4: [2, 1, 3, 0],
    5: [3, 1, 4, 0, 2],
    6: [3, 1, 5, 0, 2, 4],
    7: [3, 1, 5, 0, 2, 4, 6],
    8: [4, 2, 6, 1, 3, 5, 7, 0],
    9: [5, 3, 7, 1, 4, 6, 8, 0, 2],
    10: [6, 3, 8, 1, 5, 7, 9, 0, 2, 4],
    11: [7, 3, 9, 1, 5, 8, 10, 0, 2, 4, 6],
    12: [7, 3, 10, 1, 5, 9, 11, 0, 2, 4, 6, 8],
    16: [8, 4, 12, 2, 6, 10, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0],
}


@pytest.mark.parametrize("n", sorted(BST_TABLE))
def test_bst_permutation_table(n: int) -> None:
    assert bst_order(n) == BST_TABLE[n]


def _camakebst(n: int) -> list[int]:
    """casync's camakebst.c formulation (docs/formats.md 5.6), for cross-checking."""
    out = [-1] * n

    def place(lo: int, m: int, slot: int, e: int) -> None:
        if m <= 0:
            return
        p = 2 ** (e - 1)
        q = 2**e
        k = (q - 2) // 2 if m >= p - 1 + p // 2 else (q - 2) // 2 - (p - 1 + p // 2 - m)
        out[slot] = lo + k
        place(lo, k, 2 * slot + 1, e - 1)
        place(lo + k + 1, m - k - 1, 2 * slot + 2, e - 1)

    place(0, n, 0, int(math.floor(math.log2(n))) + 1)
    return out


def test_bst_matches_camakebst() -> None:
    for n in range(1, 600):
        assert bst_order(n) == _camakebst(n), n


def test_bst_order_large_is_iterative() -> None:
    order = bst_order(200_000)
    assert sorted(order) == list(range(200_000))
    assert order[0] == _camakebst(200_000)[0]


@pytest.mark.parametrize(
    "with_names,without_names,flags",
    [
        ([], [], ff.CASYNC_DEFAULT),
        ([], ["all"], 0xB000000000000000),
        (["sec-time", "permissions", "16bit-uids"], [], 0xB000000000000109),
        (["unix"], [], 0xB000000000001F09),
        (
            ["32bit-uids", "nsec-time", "permissions", "symlinks", "device-nodes", "fifos", "sockets", "xattrs"],
            [],
            ff.DESYNC_TAR_FLAGS,
        ),
        # The rows below were checked with casync 2.
        (["best"], ["acl"], 0xB0000001DFEFFE26),
        ([], ["acl"], 0xB0000001DFEFFF26),
        (["acl"], [], 0xB000000020000006),
        (["usec-time", "2sec-time", "read-only", "permissions"], [], 0xB000000000000110),
    ],
)
def test_resolve_flags(with_names: list[str], without_names: list[str], flags: int) -> None:
    assert resolve_flags(with_names, without_names) == flags


def test_resolve_flags_policy_bits_and_errors() -> None:
    f = resolve_flags(["unix"], exclude_nodump=False, exclude_file=False, exclude_submounts=True, sha512_256=False)
    assert f == ff.WITH_UNIX | ff.EXCLUDE_SUBMOUNTS
    assert resolve_flags(["flag-nodump"]) & ff.WITH_FLAG_NODUMP == 0
    assert resolve_flags(["flag-nodump"], exclude_nodump=False) & ff.WITH_FLAG_NODUMP
    with pytest.raises(InvalidArgument):
        resolve_flags(["no-such-feature"])


def test_archive_mode_rules() -> None:
    reg = stat.S_IFREG | 0o4755
    d = stat.S_IFDIR | 0o555
    assert archive_mode(stat.S_IFLNK | 0o700, 0) == stat.S_IFLNK | 0o777
    assert archive_mode(reg, ff.WITH_PERMISSIONS) == reg
    assert archive_mode(reg, ff.WITH_ACL) == reg
    assert archive_mode(reg, ff.WITH_READ_ONLY) == stat.S_IFREG | 0o666
    assert archive_mode(stat.S_IFREG | 0o444, ff.WITH_READ_ONLY) == stat.S_IFREG | 0o444
    assert archive_mode(d, ff.WITH_READ_ONLY) == stat.S_IFDIR | 0o555
    assert archive_mode(d, 0) == stat.S_IFDIR | 0o777


def test_archive_mtime_granularity() -> None:
    t = 1_600_000_000_123_456_789
    assert archive_mtime(t, ff.WITH_NSEC_TIME) == t
    assert archive_mtime(t, ff.WITH_USEC_TIME) == 1_600_000_000_123_456_000
    assert archive_mtime(t, ff.WITH_SEC_TIME) == 1_600_000_000_000_000_000
    assert archive_mtime(t + 10**9, ff.WITH_2SEC_TIME) == 1_600_000_000_000_000_000
    assert archive_mtime(t, 0) == 0
    # Pre-1970 times wrap like casync's unsigned arithmetic (checked with casync 2).
    assert archive_mtime(-315619199500000000, ff.WITH_NSEC_TIME) == 0xFB9EB202A1826500
    assert archive_mtime(-315619199500000000, ff.WITH_SEC_TIME) == 0xFB9EB2029504E400


@pytest.mark.parametrize(
    "pattern,name,ok",
    [
        (b"*", b"abc", True),
        (b"*", b".hidden", False),
        (b".*", b".hidden", True),
        (b"*.log", b".log", False),
        (b"*.log", b"x.log", True),
        (b"a?c", b"abc", True),
        (b"a?c", b"ac", False),
        (b"[a-c]x", b"bx", True),
        (b"[!a-c]x", b"bx", False),
        (b"[^a-c]x", b"dx", True),
        (b"[]]", b"]", True),
        (b"[[:digit:]]*", b"9lives", True),
        (b"\\*", b"*", True),
        (b"\\*", b"a", False),
        (b"[abc", b"[abc", True),
        (b"a*b*c", b"aXbYbZc", True),
        (b"a*b*c", b"aXbYbZ", False),
        (b"\xc3\xbc*", "über".encode(), True),
    ],
)
def test_fnmatch_period(pattern: bytes, name: bytes, ok: bool) -> None:
    assert fnmatch_period(pattern, name) is ok


def test_exclude_rules_semantics() -> None:
    rules = parse_rules([b"# c", b"", b"  foo  ", b"/x.log", b"*.log", b"!keep.log", b"a/b", b"d/"])
    assert match(rules, b"foo", False)[0]
    assert match(rules, b"x.log", False)[0]
    assert not match(rules, b"keep.log", False)[0]
    assert match(rules, b"d", True)[0]
    assert not match(rules, b"d", False)[0]
    excluded, sub = match(rules, b"a", True)
    assert not excluded
    assert match(sub, b"b", True)[0]
    assert match(sub, b"foo", False)[0]  # unanchored rules reach every depth
    assert match(sub, b"y.log", False)[0]
    _, other = match(rules, b"c", True)
    assert not match(other, b"b", True)[0]  # a/b is anchored under a only
    with pytest.raises(DesyncError):
        parse_rules([b"a/../b"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_siphash_is_a_64bit_function(data: bytes) -> None:
    h = goodbye_hash(data)
    assert 0 <= h < 2**64
    assert h == siphash24(GOODBYE_HASH_KEY, data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=80))
def test_siphash_accelerator_agrees_with_the_python_code(key: bytes, data: bytes) -> None:
    assert siphash24(key, data) == siphash24_py(key, data)


def test_siphash_rejects_a_key_of_the_wrong_size() -> None:
    with pytest.raises(ValueError):
        siphash24(bytes(15), b"x")
    with pytest.raises(ValueError):
        siphash24_py(bytes(17), b"x")
