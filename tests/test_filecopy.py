"""clone_or_copy: the bytes arrive at the offsets asked for, however the file system lets them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from desync.errors import DesyncError
from desync.reflink import CLONED, COPIED, WRITTEN, clone_or_copy, clone_range


def _files(tmp_path: Path) -> tuple[int, int, bytes]:
    data = os.urandom(3 * 4096 + 100)
    (tmp_path / "src").write_bytes(data)
    (tmp_path / "dst").write_bytes(b"\0" * 8192)
    return os.open(tmp_path / "src", os.O_RDONLY), os.open(tmp_path / "dst", os.O_RDWR), data


def _clones(tmp_path: Path) -> bool:
    src, dst, _ = _files(tmp_path)
    try:
        clone_range(src, 0, dst, 0, 4096)
        return True
    except OSError:
        return False
    finally:
        os.close(src)
        os.close(dst)


@pytest.mark.parametrize("mode", ["auto", "no"])
def test_range_lands_at_the_destination_offset(tmp_path: Path, mode: str) -> None:
    src, dst, data = _files(tmp_path)
    try:
        how = clone_or_copy(src, 4096, dst, 4096, len(data) - 4096, mode)  # type: ignore[arg-type]
    finally:
        os.close(src)
        os.close(dst)
    assert how in ((CLONED, COPIED, WRITTEN) if mode == "auto" else (COPIED, WRITTEN))
    out = (tmp_path / "dst").read_bytes()
    assert out[:4096] == b"\0" * 4096
    assert out[4096:] == data[4096:]


def test_reflink_yes_clones_or_says_it_cannot(tmp_path: Path) -> None:
    can = _clones(tmp_path)
    src, dst, data = _files(tmp_path)
    try:
        if can:
            assert clone_or_copy(src, 0, dst, 0, len(data), "yes") == CLONED
            assert (tmp_path / "dst").read_bytes() == data
        else:
            with pytest.raises(DesyncError, match="cannot clone"):
                clone_or_copy(src, 0, dst, 0, len(data), "yes")
    finally:
        os.close(src)
        os.close(dst)


def test_source_ending_early_is_an_error(tmp_path: Path) -> None:
    src, dst, data = _files(tmp_path)
    try:
        with pytest.raises(DesyncError, match="ended early"):
            clone_or_copy(src, 0, dst, 0, len(data) + 5000, "no")
    finally:
        os.close(src)
        os.close(dst)
