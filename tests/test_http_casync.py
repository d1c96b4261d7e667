"""casync's own HTTP client (casync-http) against our chunk-server and index-server."""

import random
import shutil
from pathlib import Path

from conftest import requires_casync, run_casync, run_desync
from http_util import ServerProcess


@requires_casync
def test_casync_extracts_from_our_servers(tmp_path: Path) -> None:
    data = random.Random(11).randbytes(700_000)
    (tmp_path / "blob").write_bytes(data)
    run_desync("make", "-m", "4:16:64", "-s", tmp_path / "store", tmp_path / "blob.caibx", tmp_path / "blob")
    indexes = tmp_path / "indexes"
    indexes.mkdir()
    shutil.copy(tmp_path / "blob.caibx", indexes / "blob.caibx")
    with ServerProcess("chunk-server", "-s", tmp_path / "store") as chunks, \
            ServerProcess("index-server", "-s", indexes) as idx:
        run_casync("extract", f"--store={chunks.url}", tmp_path / "blob.caibx", tmp_path / "out")
        run_casync("extract", f"--store={chunks.url}", f"{idx.url}blob.caibx", tmp_path / "out2")
    assert (tmp_path / "out").read_bytes() == data
    assert (tmp_path / "out2").read_bytes() == data


@requires_casync
def test_we_extract_what_casync_made_through_our_server(tmp_path: Path) -> None:
    data = random.Random(12).randbytes(400_000)
    (tmp_path / "blob").write_bytes(data)
    run_casync("make", f"--store={tmp_path / 'store'}", tmp_path / "blob.caibx", tmp_path / "blob")
    with ServerProcess("chunk-server", "-s", tmp_path / "store") as srv:
        run_desync("extract", "-s", srv.url, tmp_path / "blob.caibx", tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
