"""Remote stores that lie (an SFTP server, an S3 server): every command ends in time, under 256 MiB, with one line.

The lying SFTP server (``lying_sftp.py``) stands in for ssh; the lying S3
server (``hostile_peers.LyingS3``) answers on loopback.  Each lie is one a
real peer could tell: objects that never end or declare gigabytes,
listings that never end or loop, error text that is huge or full of
terminal escape sequences.
"""

import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import desync_env, run_desync
from hostile_peers import STREAMED_RSS, LyingS3, assert_bounded, assert_bounded_failure, sftp_ssh
from measure import run_measured


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(index, local store) of 512 KiB of random data in chunks of 16 to 256 KiB."""
    d = tmp_path_factory.mktemp("hostile")
    (d / "blob").write_bytes(random.Random(16).randbytes(512 << 10))
    run_desync("make", "-m", "16:64:256", "-s", d / "store", d / "blob.caibx", d / "blob")
    return d / "blob.caibx", d / "store"


def test_sftp_store_of_an_honest_server_reads_and_lists_within_the_bounds(blob: tuple[Path, Path],
                                                                           tmp_path: Path) -> None:
    index, store = blob
    env = sftp_ssh(tmp_path, "honest")
    run_desync("extract", "-s", f"sftp://127.0.0.1{store}", index, tmp_path / "out", env=env)
    assert (tmp_path / "out").read_bytes() == (index.parent / "blob").read_bytes()
    run_desync("verify", "-s", f"sftp://127.0.0.1{store}", env=env)
    listed = run_desync("list-chunks", f"sftp://127.0.0.1{index}", env=env).stdout
    assert listed == run_desync("list-chunks", index).stdout


def _sftp_extract(blob: tuple[Path, Path], tmp_path: Path, mode: str) -> str:
    index, store = blob
    result = run_measured("extract", "-s", f"sftp://127.0.0.1{store}", index, tmp_path / "out",
                          env=sftp_ssh(tmp_path, mode), tmp_path=tmp_path)
    return assert_bounded_failure(result)


def test_sftp_chunk_file_that_never_ends_is_an_invalid_chunk(blob: tuple[Path, Path], tmp_path: Path) -> None:
    line = _sftp_extract(blob, tmp_path, "endless-file")
    assert "is invalid: more than" in line


def test_sftp_chunk_file_longer_than_its_chunk_is_refused(blob: tuple[Path, Path], tmp_path: Path) -> None:
    line = _sftp_extract(blob, tmp_path, "padded")
    assert "is invalid: more than" in line
    assert not (tmp_path / "out").exists()


def test_sftp_status_message_is_shortened_and_escaped(blob: tuple[Path, Path], tmp_path: Path) -> None:
    line = _sftp_extract(blob, tmp_path, "escape-status")
    assert "\\x1b]2;owned\\x07" in line and "\\nsecond line" in line


@pytest.mark.parametrize("mode, expected", [
    ("endless-file", "is invalid: unknown compression format"),
    ("endless-frame", "is invalid: more than"),
])
def test_sftp_verify_of_chunk_files_that_never_end_streams_them(blob: tuple[Path, Path], tmp_path: Path,
                                                                mode: str, expected: str) -> None:
    index, store = blob
    chunks = len(set(run_desync("list-chunks", index).stdout.split()))
    result = run_measured("verify", "-n", "4", "-s", f"sftp://127.0.0.1{store}", env=sftp_ssh(tmp_path, mode),
                          tmp_path=tmp_path, timeout=120)
    lines = assert_bounded(result)
    assert result.peak_rss < STREAMED_RSS, f"peak RSS {result.peak_rss >> 20} MiB"
    assert all(expected in line for line in lines[:-1])
    assert f"{chunks} of {chunks} chunks" in lines[-1]


@pytest.mark.parametrize("mode, expected", [
    ("endless-dir", "lists more than 1048576 entries"),
    ("empty-replies", "keeps answering directory reads with no names"),
])
def test_sftp_directory_listing_that_never_ends_is_an_error(blob: tuple[Path, Path], tmp_path: Path,
                                                            mode: str, expected: str) -> None:
    _, store = blob
    result = run_measured("verify", "-s", f"sftp://127.0.0.1{store}", env=sftp_ssh(tmp_path, mode),
                          tmp_path=tmp_path)
    assert expected in assert_bounded_failure(result)


@pytest.fixture
def lying_s3(request: pytest.FixtureRequest) -> Iterator[LyingS3]:
    server = LyingS3(request.param)
    try:
        yield server
    finally:
        server.stop()


def _s3_env() -> dict[str, str]:
    return desync_env(S3_ACCESS_KEY="key", S3_SECRET_KEY="secret", HOME="/nonexistent")


@pytest.mark.parametrize("lying_s3, expected", [
    ("cycling-tokens", "listing loops (a continuation token came back)"),
    ("endless-pages", "truncated yet hold no key"),
    ("endless-page", "answer is larger than 16777216 bytes"),
], indirect=["lying_s3"])
def test_s3_listing_that_never_ends_is_an_error(lying_s3: LyingS3, expected: str, tmp_path: Path) -> None:
    result = run_measured("verify", "--error-retry", "0", "-s", f"s3+http://{lying_s3.endpoint[7:]}/bucket",
                          env=_s3_env(), tmp_path=tmp_path)
    assert expected in assert_bounded_failure(result)
    assert lying_s3.requests < 50


@pytest.mark.parametrize("lying_s3, expected", [
    ("endless-object", "is invalid: unknown compression format"),
    ("endless-frame", "is invalid: more than"),
], indirect=["lying_s3"])
def test_s3_verify_of_objects_that_never_end_streams_them(lying_s3: LyingS3, expected: str, tmp_path: Path) -> None:
    result = run_measured("verify", "-n", "4", "--error-retry", "0", "-s",
                          f"s3+http://{lying_s3.endpoint[7:]}/bucket", env=_s3_env(), tmp_path=tmp_path, timeout=120)
    lines = assert_bounded(result)
    assert result.peak_rss < STREAMED_RSS, f"peak RSS {result.peak_rss >> 20} MiB"
    assert all(expected in line for line in lines[:-1]) and "8 of 8 chunks" in lines[-1]


@pytest.mark.parametrize("lying_s3, expected", [
    ("huge-object", "is invalid: more than"),
    ("endless-object", "is invalid: more than"),
    ("giant-error", "answer is larger than 16777216 bytes"),
    ("escape-error", "Access\\x9b31mDenied: line one line two \\x9b2J\\x9b31mzzz"),
], indirect=["lying_s3"])
def test_s3_object_reads_are_bounded_and_error_text_escaped(lying_s3: LyingS3, expected: str,
                                                            blob: tuple[Path, Path], tmp_path: Path) -> None:
    index, _ = blob
    result = run_measured("extract", "--error-retry", "0", "-s", f"s3+http://{lying_s3.endpoint[7:]}/bucket",
                          index, tmp_path / "out", env=_s3_env(), tmp_path=tmp_path)
    assert expected in assert_bounded_failure(result)


# The casync protocol peer: HELLO as a readable store, then ABORT with a reason made to mess up a terminal.
_ABORTING_REMOTE = r"""
import sys
from desync.protocol import messages as m
reason = "line one \x7f\u009b2J\u009b31m" + "w" * 200000
sys.stdout.buffer.write(m.hello(m.READABLE_STORE) + m.frame(m.ABORT, m.U64.pack(1) + reason.encode() + b"\0"))
sys.stdout.buffer.flush()
sys.stdin.buffer.read()
"""


def test_ssh_remote_abort_reason_is_shortened_and_escaped(blob: tuple[Path, Path], tmp_path: Path) -> None:
    index, store = blob
    ssh = tmp_path / "ssh-aborting"
    ssh.write_text(f"#!/bin/sh\nexec {sys.executable} -c '{_ABORTING_REMOTE}'\n")
    ssh.chmod(0o755)
    result = run_measured("extract", "-s", f"ssh://127.0.0.1{store}", index, tmp_path / "out",
                          env=desync_env(CASYNC_SSH_PATH=str(ssh)), tmp_path=tmp_path)
    assert "the remote aborted: line one \\x7f\\x9b2J\\x9b31mwww" in assert_bounded_failure(result)
