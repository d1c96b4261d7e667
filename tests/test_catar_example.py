"""The complete 518-byte example archive of docs/formats.md 5.11, byte for byte."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from desync import featureflags as ff
from desync.catar import Node, decode, encode_tree, extract_stream, mtree_lines
from desync.catar.format import GoodbyeItem, goodbye_hash, goodbye_record

EXAMPLE = bytes.fromhex(
    "400000000000000051bb5beabcfa961326feefff010000b0ed41000000000000"
    "00000000000000000000000000000000000000000000000000ca3a1486573416"
    "12000000000000000b1f16b3bc6ebb6d6400400000000000000051bb5beabcfa"
    "961326feefff010000b0ed410000000000000000000000000000000000000000"
    "0000000000000000000015cdfbdf85573416280000000000000003c427835e5c"
    "d3df4000000000000000280000000000000043297033a56f44571a0000000000"
    "00000b1f16b3bc6ebb6d68656c6c6f2e74787400400000000000000051bb5bea"
    "bcfa961326feefff010000b0a481000000000000000000000000000000000000"
    "00000000000000000000000015cdfbdf855734161300000000000000c9ffdcd6"
    "931d9e8b68690a15000000000000000b1f16b3bc6ebb6d6c696e6b0040000000"
    "0000000051bb5beabcfa961326feefff010000b0ffa100000000000000000000"
    "000000000000000000000000000000000000000000656df6855734161a000000"
    "000000006c0d0e83b66f4a6668656c6c6f2e74787400700000000000000003c4"
    "27835e5cd3dfdc000000000000006d00000000000000fb59126fec6681765601"
    "0000000000007a0000000000000032bc36123fee386b6f000000000000006f00"
    "000000000000afdfb37b6dbf22f9960100000000000070000000000000004329"
    "7033a56f4457"
)

EXAMPLE_DIGEST = "866fb23a8136635ed2cfb94f9fb8918de3daf82c44c98dc44b948da883819cee"


def build_example(root: Path) -> None:
    root.mkdir()
    os.chmod(root, 0o755)
    d = root / "d"
    d.mkdir()
    os.chmod(d, 0o755)
    f = root / "hello.txt"
    f.write_bytes(b"hi\n")
    os.chmod(f, 0o644)
    os.symlink("hello.txt", root / "link")
    for p in (root, d, f, root / "link"):
        os.chown(p, 0, 0, follow_symlinks=False)
    t = 1_600_000_000_123_456_789
    os.utime(d, ns=(t, t))
    os.utime(f, ns=(t, t))
    os.utime(root / "link", ns=(1_600_000_000_500_000_000,) * 2, follow_symlinks=False)
    os.utime(root, ns=(1_600_000_001_000_000_000,) * 2)


def test_example_digest() -> None:
    assert len(EXAMPLE) == 518
    assert hashlib.new("sha512_256", EXAMPLE).hexdigest() == EXAMPLE_DIGEST


def test_example_goodbye_table() -> None:
    items = [
        GoodbyeItem(342, 122, goodbye_hash(b"d")),
        GoodbyeItem(220, 109, goodbye_hash(b"hello.txt")),
        GoodbyeItem(111, 111, goodbye_hash(b"link")),
    ]
    assert goodbye_record(items, 406) == EXAMPLE[406:]
    assert goodbye_record([], 64) == EXAMPLE[146:186]


@pytest.mark.skipif(os.geteuid() != 0, reason="the example tree is owned by root; run as root")
def test_example_encodes_byte_for_byte(tmp_path: Path) -> None:
    root = tmp_path / "example"
    build_example(root)
    assert b"".join(encode_tree(str(root), ff.CASYNC_DEFAULT)) == EXAMPLE


def test_example_decodes() -> None:
    events = list(decode(io.BytesIO(EXAMPLE)))
    nodes = [e for e in events if isinstance(e, Node)]
    assert [n.relpath for n in nodes] == [b".", b"d", b"hello.txt", b"link"]
    assert [n.offset for n in nodes] == [0, 82, 212, 316]
    assert nodes[2].meta.size == 3
    assert nodes[3].meta.target == b"hello.txt"
    assert nodes[1].meta.mtime_ns == 1_600_000_000_123_456_789
    assert all(n.feature_flags == ff.CASYNC_DEFAULT for n in nodes)


def test_example_mtree() -> None:
    lines = list(mtree_lines(decode(io.BytesIO(EXAMPLE))))
    assert lines[3] == (
        "link type=link mode=0777 link=hello.txt uid=0 gid=0 uname=root gname=root "
        "flags=hidden,system,archive,sappend,simmutable time=1600000000.500000000"
    )


def test_example_extracts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    extract_stream(io.BytesIO(EXAMPLE), str(out))
    assert (out / "hello.txt").read_bytes() == b"hi\n"
    assert os.readlink(out / "link") == "hello.txt"
    assert os.lstat(out / "link").st_mtime_ns == 1_600_000_000_500_000_000
    assert os.stat(out / "d").st_mtime_ns == 1_600_000_000_123_456_789
    assert os.stat(out).st_mtime_ns == 1_600_000_001_000_000_000
