"""A quick end-to-end pass (make, extract, tar, untar) that CI runs on every CPython present.

The full suite runs on the oldest and the newest interpreter; this subset
(``pytest -m smoke``) proves the compiled build imports and works on the
ones between.
"""

import os
import random
from pathlib import Path

import pytest

from conftest import run_desync

pytestmark = pytest.mark.smoke


def test_make_then_extract_rebuilds_the_blob(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(3 << 20)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(data * 2)
    store = tmp_path / "store"
    run_desync("make", "-s", store, tmp_path / "blob.caibx", blob)
    run_desync("extract", "-s", store, tmp_path / "blob.caibx", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data * 2


def test_tar_then_untar_rebuilds_the_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file").write_bytes(b"content\n" * 1000)
    (tree / "empty").write_bytes(b"")
    os.symlink("sub/file", tree / "link")
    run_desync("tar", tmp_path / "tree.catar", tree)
    run_desync("untar", tmp_path / "tree.catar", tmp_path / "plain")
    store = tmp_path / "store"
    run_desync("tar", "-i", "-s", store, tmp_path / "tree.caidx", tree)
    run_desync("untar", "-i", "-s", store, tmp_path / "tree.caidx", tmp_path / "chunked")
    for out in ("plain", "chunked"):
        assert (tmp_path / out / "sub" / "file").read_bytes() == b"content\n" * 1000
        assert (tmp_path / out / "empty").read_bytes() == b""
        assert os.readlink(tmp_path / out / "link") == "sub/file"
    assert run_desync("--version").stdout.startswith(b"desync ")
