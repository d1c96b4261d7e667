"""Numeric fields of catar records at the edges of their 64-bit range: a clean error or a faithful extract.

The decoder range-checks every count and size before anything is read or
allocated; an mtime is casync's unsigned 64-bit nanosecond count, set the
same way by the C finisher and its Python twin.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_desync
from test_catar_malicious import FLAGS, ent, rdir

from desync import featureflags as ff
from desync._accel import fileio_module
from desync.catar import decode, writeback
from desync.catar.format import acl_named_record, entry_record, payload_header, resolve_flags, u64_record
from desync.constants import CA_FORMAT_ACL_GROUP_OBJ, CA_FORMAT_ACL_USER
from desync.errors import FormatError

BIG_MTIME = (1 << 63) + 5 * 10**9  # 2262-04-11, past the signed 64-bit range


@pytest.mark.parametrize("size", [(1 << 63) - 100, (1 << 64) - 17, (1 << 63) - 1 - 146 - 16 + 1])
def test_payload_size_past_any_file_offset_is_a_one_line_error(tmp_path: Path, size: int) -> None:
    archive = tmp_path / "big.catar"
    archive.write_bytes(rdir([(b"f", ent(0o100644) + payload_header(size) + b"abc")]))
    line = assert_one_line_error(run_desync("untar", archive, tmp_path / "out", check=False))
    assert "invalid record size" in line and "internal error" not in line
    with pytest.raises(FormatError):
        list(decode(io.BytesIO(archive.read_bytes())))


def test_payload_longer_than_the_archive_is_truncation(tmp_path: Path) -> None:
    archive = tmp_path / "long.catar"
    archive.write_bytes(rdir([(b"f", ent(0o100644) + payload_header(1 << 62) + b"abc")]))
    line = assert_one_line_error(run_desync("untar", archive, tmp_path / "out", check=False))
    assert "truncated" in line


def _fs_keeps(path: Path, mtime_ns: int) -> bool:
    path.write_bytes(b"")
    try:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    except OSError:
        return False
    return os.stat(path).st_mtime_ns == mtime_ns


def test_mtime_past_the_signed_range_is_extracted(tmp_path: Path) -> None:
    """casync reads the field unsigned: 2^63 ns and more is a date in 2262, set as such (not an overflow)."""
    if not _fs_keeps(tmp_path / "probe", BIG_MTIME):
        pytest.skip("this file system cannot store a 2262 timestamp")
    assert ff.time_granularity(FLAGS) == 1
    entry = entry_record(FLAGS, 0o100644, 0, 0, 0, BIG_MTIME) + payload_header(1) + b"x"
    archive = tmp_path / "t.catar"
    archive.write_bytes(rdir([(b"f", entry)]))
    run_desync("untar", archive, tmp_path / "out")
    assert os.stat(tmp_path / "out" / "f").st_mtime_ns == BIG_MTIME


@pytest.mark.parametrize("accel", [True, False])
@pytest.mark.parametrize("mtime", [BIG_MTIME, (1 << 64) - 1, -1_500_000_000, 0])
def test_finishers_set_any_64_bit_mtime_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accel: bool,
                                              mtime: int) -> None:
    if accel and fileio_module is None:
        pytest.skip("C accelerator not built (pure-Python run)")
    if not accel:
        monkeypatch.setattr(writeback, "_FILEIO", None)
    if not _fs_keeps(tmp_path / "probe", mtime):
        pytest.skip("this file system cannot store that timestamp")
    target = tmp_path / "f"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
    writeback.finish_batch([writeback.FileJob(fd, (b"f",), [b"data"], mode=0o640, set_times=True, mtime_ns=mtime)])
    st = os.stat(target)
    assert st.st_mtime_ns == mtime and st.st_mode & 0o777 == 0o640 and target.read_bytes() == b"data"


def test_acl_id_outside_the_kernel_range_is_a_format_error() -> None:
    flags = resolve_flags()
    node = (entry_record(flags, 0o100644, 0, 0, 0, 0)
            + acl_named_record(CA_FORMAT_ACL_USER, 1 << 40, 7, None)
            + u64_record(CA_FORMAT_ACL_GROUP_OBJ, 5) + payload_header(1) + b"x")
    data = rdir([(b"f", node)], flags=flags)
    with pytest.raises(FormatError, match="ACL_USER id 1099511627776 out of range"):
        list(decode(io.BytesIO(data)))
    fine = data.replace((1 << 40).to_bytes(8, "little"), (1000).to_bytes(8, "little"))
    assert [n.path for n in decode(io.BytesIO(fine)) if hasattr(n, "feature_flags")] == [(), (b"f",)]


def _tar_with(pax: dict[str, str], kind: bytes = tarfile.REGTYPE, dev: tuple[int, int] = (0, 0)) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("f")
        info.type = kind
        info.size = 1 if kind == tarfile.REGTYPE else 0
        info.devmajor, info.devminor = dev
        info.pax_headers = pax
        tf.addfile(info, io.BytesIO(b"x") if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


@pytest.mark.parametrize("tar, message", [
    (_tar_with({"uid": str(1 << 70)}), "does not fit the 32-bit uids feature"),
    (_tar_with({"gid": str((1 << 32) - 1)}), "does not fit the 32-bit uids feature"),
    (_tar_with({}, tarfile.CHRTYPE, (1 << 20, 1)), "device number 1048576:1 out of range"),
], ids=["uid-2^70", "gid-no-id", "device-major"])
def test_tar_numbers_outside_the_catar_range_are_one_line_errors(tar: bytes, message: str) -> None:
    line = assert_one_line_error(run_desync("tar", "--input-format", "tar", "-", "-", input=tar, check=False))
    assert message in line
