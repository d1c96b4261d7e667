"""Writes to user-named paths: a slip on the command line must not destroy or expose a user's file."""

import os
import stat
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_desync


def _blob(tmp_path: Path, size: int = 200_000) -> tuple[Path, Path, Path]:
    """(source file, its .caibx, store)."""
    src, idx, store = tmp_path / "src.bin", tmp_path / "src.caibx", tmp_path / "store"
    src.write_bytes(os.urandom(size))
    run_desync("make", "-m", "4:16:64", "-s", store, idx, src)
    return src, idx, store


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"hello\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(50_000))
    return tree


def test_make_with_swapped_arguments_keeps_the_file(tmp_path: Path) -> None:
    _, idx, _ = _blob(tmp_path)
    keep = tmp_path / "keep.bin"
    content = os.urandom(300_000)
    keep.write_bytes(content)
    line = assert_one_line_error(run_desync("make", keep, idx, check=False), status=2)
    assert "swap the arguments" in line and "--force" in line and str(keep) in line, line
    assert keep.read_bytes() == content


def test_make_refuses_a_new_name_without_the_suffix(tmp_path: Path) -> None:
    src, _, _ = _blob(tmp_path)
    line = assert_one_line_error(run_desync("make", tmp_path / "out.img", src, check=False), status=2)
    assert ".caibx" in line and "--force" in line, line
    assert not (tmp_path / "out.img").exists()
    line = assert_one_line_error(run_desync("make", tmp_path / "out.caidx", src, check=False), status=2)
    assert ".caibx" in line, line
    assert not (tmp_path / "out.caidx").exists()


def test_make_replaces_an_existing_index_under_any_name_and_force_writes_anywhere(tmp_path: Path) -> None:
    src, idx, _ = _blob(tmp_path)
    odd = tmp_path / "index.bin"
    run_desync("make", "--force", "-m", "4:16:64", odd, src)
    assert odd.read_bytes() == idx.read_bytes()
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(100_000))
    run_desync("make", "-m", "4:16:64", odd, other)  # odd already is an index: replacing it is fine
    assert odd.read_bytes() != idx.read_bytes()
    assert odd.read_bytes()[:8] == idx.read_bytes()[:8]


def test_make_over_an_existing_index_keeps_its_mode(tmp_path: Path) -> None:
    src, idx, _ = _blob(tmp_path)
    idx.chmod(0o600)
    run_desync("make", "-m", "4:16:64", idx, src)
    assert stat.S_IMODE(idx.stat().st_mode) == 0o600


def test_tar_without_i_refuses_an_index_name(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    line = assert_one_line_error(run_desync("tar", tmp_path / "t.caidx", tree, check=False), status=2)
    assert "-i" in line and ".catar" in line, line
    assert not (tmp_path / "t.caidx").exists()


def test_tar_writes_catar_names_and_indexes_only_with_their_suffix(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    keep = tmp_path / "keep.bin"
    keep.write_bytes(b"precious")
    line = assert_one_line_error(run_desync("tar", keep, tree, check=False), status=2)
    assert "swap the arguments" in line and "--force" in line, line
    assert keep.read_bytes() == b"precious"
    line = assert_one_line_error(run_desync("tar", "-i", "-s", tmp_path / "s", tmp_path / "t.catar", tree,
                                            check=False), status=2)
    assert ".caidx" in line, line
    assert not (tmp_path / "t.catar").exists()
    # A catar under another name may be replaced by a catar; --force writes anywhere.
    run_desync("tar", "--force", tmp_path / "archive", tree)
    run_desync("tar", tmp_path / "archive", tree)
    run_desync("tar", tmp_path / "t.catar", tree)
    assert (tmp_path / "archive").read_bytes() == (tmp_path / "t.catar").read_bytes()


def test_extract_over_a_private_image_keeps_mode_and_owner(tmp_path: Path) -> None:
    src, idx, store = _blob(tmp_path)
    target = tmp_path / "image"
    target.write_bytes(b"old")
    target.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(target, 4321, 4322)
    run_desync("extract", "-s", store, idx, target)
    st = target.stat()
    assert target.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (4321, 4322)


def test_extract_to_a_new_file_gets_the_default_mode(tmp_path: Path) -> None:
    _, idx, store = _blob(tmp_path)
    umask = os.umask(0o022)
    os.umask(umask)
    run_desync("extract", "-s", store, idx, tmp_path / "new")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o666 & ~umask


def test_extract_through_a_symlink_keeps_the_link_and_writes_its_target(tmp_path: Path) -> None:
    src, idx, store = _blob(tmp_path)
    slot = tmp_path / "slot-b.img"
    slot.write_bytes(b"old slot")
    slot.chmod(0o640)
    link = tmp_path / "current"
    link.symlink_to("slot-b.img")
    run_desync("extract", "-s", store, idx, link)
    assert link.is_symlink() and os.readlink(link) == "slot-b.img"
    assert slot.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(slot.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "slot-b.img", "src.bin", "src.caibx", "store"]


def test_extract_to_dash_writes_stdout(tmp_path: Path) -> None:
    src, idx, store = _blob(tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    proc = run_desync("extract", "-s", store, idx, "-", cwd=work)
    assert proc.stdout == src.read_bytes()
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("name", ["t.caidx", "t.idx"])
def test_extract_of_an_archive_index_says_to_use_untar(tmp_path: Path, name: str) -> None:
    tree = _tree(tmp_path)
    index = tmp_path / name
    run_desync("tar", "-i", "--force", "-s", tmp_path / "store", index, tree)
    proc = run_desync("extract", "-s", tmp_path / "store", index, tmp_path / "out", check=False)
    assert "untar -i" in assert_one_line_error(proc, status=2)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("with_i", [True, False])
def test_untar_of_a_blob_index_says_to_use_extract(tmp_path: Path, with_i: bool) -> None:
    _, idx, store = _blob(tmp_path)
    args = ["-i"] if with_i else []
    proc = run_desync("untar", *args, "-s", store, idx, tmp_path / "out", check=False)
    assert "desync extract" in assert_one_line_error(proc, status=2)
    assert not (tmp_path / "out").exists()


def test_index_writes_refuse_to_replace_a_device_node_behind_a_symlink(tmp_path: Path) -> None:
    src, _, _ = _blob(tmp_path)
    link = tmp_path / "disk.caibx"
    link.symlink_to("/dev/null")
    line = assert_one_line_error(run_desync("make", link, src, check=False))
    assert "not a regular file" in line, line
    assert Path("/dev/null").is_char_device() and link.is_symlink()
