"""The casync 2 and Go desync catar fixtures: decode, list, extract, re-encode."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from conftest import catar_helpers

from desync import featureflags as ff
from desync.catar import Node, decode, directory_events, encode_tree, extract_stream, list_lines, mtree_lines
from desync.errors import FormatError

if TYPE_CHECKING:
    import helpers as H  # the module catar_helpers() loads, by the name mypy finds it under (tests/fixtures/catar)
else:
    H = catar_helpers()

VARIANTS = ("default", "desync", "unix")
COMMITTED = [(t, v) for t in ("basic", "special", "empty") for v in VARIANTS]
GO_ARCHIVES = ("complex", "flat", "flatdir", "nested", "tree")

requires_root = pytest.mark.skipif(not H.is_root(), reason="needs root (foreign owners, device nodes)")


def _text(lines: Iterator[str]) -> str:
    return "".join(line + "\n" for line in lines)


@pytest.fixture(scope="module")
def built_trees(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """All fixture trees rebuilt exactly (root and user xattrs required)."""
    if not H.is_root():
        pytest.skip("rebuilding the fixture trees needs root (owners, device nodes)")
    base = H.xattr_base(tmp_path_factory.mktemp("trees"))
    if base is None:
        pytest.skip("no writable file system with user xattrs (tmpfs or ext4) for the fixture trees")
    for name in H.TREE_NAMES:
        H.make_trees.build_tree(name, str(base / name))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("tree,variant", COMMITTED)
def test_fixture_decodes_and_lists(tree: str, variant: str) -> None:
    path = H.ARCHIVES / f"{tree}.{variant}.catar"
    with path.open("rb") as f:
        assert _text(mtree_lines(decode(f, strict_goodbye_order=True))) == (
            H.ARCHIVES / f"{tree}.{variant}.mtree"
        ).read_text()
    with path.open("rb") as f:
        assert _text(list_lines(decode(f))) == (H.ARCHIVES / f"{tree}.{variant}.list").read_text()
    with path.open("rb") as f:
        flags = {n.feature_flags for n in decode(f) if isinstance(n, Node)}
    assert flags == {H.variant_flags(variant)}


@requires_root
@pytest.mark.parametrize("tree,variant", COMMITTED)
def test_fixture_extracts_to_recorded_tree(tree: str, variant: str, tmp_path: Path) -> None:
    base = H.xattr_base(tmp_path)
    if base is None and tree == "special" and variant != "unix":
        pytest.skip("the special tree carries user xattrs; no file system with user xattrs")
    out = (base or tmp_path) / "out"
    with (H.ARCHIVES / f"{tree}.{variant}.catar").open("rb") as f:
        extract_stream(f, str(out))
    try:
        assert H.make_trees.scan_tree(str(out)) == H.expected_scan(tree, variant)
    finally:
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("tree,variant", COMMITTED)
def test_reencode_committed(built_trees: Path, tree: str, variant: str) -> None:
    data = b"".join(encode_tree(str(built_trees / tree), H.variant_flags(variant)))
    assert data == (H.ARCHIVES / f"{tree}.{variant}.catar").read_bytes()


@pytest.mark.parametrize("variant", VARIANTS)
def test_data_tree_reencodes_extracts_and_lists(built_trees: Path, variant: str, tmp_path: Path) -> None:
    """The 1.3 MB data archives are not committed: their digests are."""
    digests = json.loads((H.ARCHIVES / "data.sha512-256.json").read_text())
    data = b"".join(encode_tree(str(built_trees / "data"), H.variant_flags(variant), None))
    assert hashlib.new("sha512_256", data).hexdigest() == digests[f"data.{variant}.catar"]
    assert _text(mtree_lines(decode(io.BytesIO(data)))) == (H.ARCHIVES / f"data.{variant}.mtree").read_text()
    assert _text(list_lines(decode(io.BytesIO(data)))) == (H.ARCHIVES / f"data.{variant}.list").read_text()
    out = tmp_path / "out"
    extract_stream(io.BytesIO(data), str(out))
    assert H.make_trees.scan_tree(str(out)) == H.expected_scan("data", variant)


@pytest.mark.parametrize("tree", H.TREE_NAMES)
def test_directory_mtree_matches_archive_mtree(built_trees: Path, tree: str) -> None:
    for variant in VARIANTS:
        got = _text(mtree_lines(directory_events(str(built_trees / tree), H.variant_flags(variant))))
        assert got == (H.ARCHIVES / f"{tree}.{variant}.mtree").read_text()


@pytest.mark.parametrize("name", GO_ARCHIVES)
def test_go_desync_fixtures_decode(name: str) -> None:
    path = H.GO / f"{name}.catar"
    strict = name != "tree"
    with path.open("rb") as f:
        assert _text(mtree_lines(decode(f, strict_goodbye_order=strict))) == (H.GO / f"{name}.mtree").read_text()
    with path.open("rb") as f:
        assert _text(list_lines(decode(f))) == (H.GO / f"{name}.list").read_text()


def test_old_go_desync_goodbye_order_is_detected() -> None:
    """cmd-testdata/tree.catar comes from a desync whose GOODBYE order differs from casync's."""
    with pytest.raises(FormatError, match="GOODBYE .* at offset 1503$") as caught:
        with (H.GO / "tree.catar").open("rb") as f:
            for _ in decode(f, strict_goodbye_order=True):
                pass
    assert caught.value.offset == 1503


def test_go_desync_complex_extracts(tmp_path: Path) -> None:
    out = tmp_path / "complex"
    with (H.GO / "complex.catar").open("rb") as f:
        extract_stream(f, str(out))
    assert (out / "subdir1/subdir12/file.txt").stat().st_size == 695
    if H.is_root():
        assert _text(mtree_lines(directory_events(str(out), ff.DESYNC_TAR_FLAGS))) == (
            H.GO / "complex.mtree"
        ).read_text()
