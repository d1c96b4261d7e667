"""HTTPS stores: server certificates, custom CAs, insecure mode, mutual TLS (fixture certificates)."""

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import assert_one_line_error, desync_env, run_desync
from http_util import CERTS, ServerProcess


def _expired(cert: Path) -> bool:
    openssl = shutil.which("openssl")
    if openssl is None:
        return False
    return subprocess.run([openssl, "x509", "-checkend", "0", "-noout", "-in", str(cert)],
                          capture_output=True).returncode != 0


pytestmark = pytest.mark.skipif(any(_expired(CERTS / f) for f in ("ca.crt", "server.crt", "client.crt")),
                                reason="the fixture certificates in tests/fixtures/certs have expired")
SERVER_TLS = ["--cert", CERTS / "server.crt", "--key", CERTS / "server.key"]
CLIENT_CERT = ["--client-cert", CERTS / "client.crt", "--client-key", CERTS / "client.key"]


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    (d / "blob").write_bytes(random.Random(7).randbytes(300_000))
    run_desync("make", "-m", "4:16:64", "-s", d / "store", d / "blob.caibx", d / "blob")
    return d / "blob", d / "blob.caibx", d / "store"


def test_https_with_ca_and_insecure(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, idx, store = blob
    with ServerProcess("chunk-server", "-s", store, *SERVER_TLS) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        run_desync("extract", "--ca-cert", CERTS / "ca.crt", "-s", srv.url, idx, tmp_path / "a")
        run_desync("extract", "--ca-cert", CERTS / "ca.crt", "-s", f"https://localhost:{srv.port}/", idx,
                   tmp_path / "b")
        run_desync("extract", "-t", "-s", srv.url, idx, tmp_path / "c")
        proc = run_desync("extract", "-s", srv.url, idx, tmp_path / "d", check=False)
        assert "certificate" in assert_one_line_error(proc)
        proc = run_desync("extract", "--ca-cert", tmp_path / "nope.crt", "-s", srv.url, idx, tmp_path / "d",
                          check=False)
        assert "nope.crt" in assert_one_line_error(proc)
    for name in "abc":
        assert (tmp_path / name).read_bytes() == src.read_bytes()


def test_mutual_tls(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, idx, store = blob
    with ServerProcess("chunk-server", "-s", store, *SERVER_TLS, "--mutual-tls", "--client-ca", CERTS / "ca.crt") as srv:
        proc = run_desync("extract", "--error-retry", "0", "--ca-cert", CERTS / "ca.crt", "-s", srv.url, idx,
                          tmp_path / "a", check=False)
        assert_one_line_error(proc)
        run_desync("extract", "--ca-cert", CERTS / "ca.crt", *CLIENT_CERT, "-s", srv.url, idx, tmp_path / "b")
        # The same, with the client certificate from the config file's store-options.
        home = tmp_path / "home"
        (home / ".config" / "desync").mkdir(parents=True)
        (home / ".config" / "desync" / "config.json").write_text(
            '{"store-options": {"https://127.0.0.1:%d": {"client-cert": "%s", "client-key": "%s", "ca-cert": "%s"}}}'
            % (srv.port, CERTS / "client.crt", CERTS / "client.key", CERTS / "ca.crt"))
        run_desync("extract", "-s", srv.url, idx, tmp_path / "c", env=desync_env(HOME=str(home)))
    assert (tmp_path / "b").read_bytes() == src.read_bytes()
    assert (tmp_path / "c").read_bytes() == src.read_bytes()


def test_index_server_over_https(blob: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, idx, store = blob
    indexes = tmp_path / "indexes"
    indexes.mkdir()
    shutil.copy(idx, indexes / "blob.caibx")
    with ServerProcess("index-server", "-s", indexes, *SERVER_TLS, "--authorization", "Bearer t") as srv:
        home = tmp_path / "home"
        (home / ".config" / "desync").mkdir(parents=True)
        (home / ".config" / "desync" / "config.json").write_text(
            '{"store-options": {"https://127.0.0.1:*/*": {"http-auth": "Bearer t", "ca-cert": "%s"}}}'
            % (CERTS / "ca.crt"))
        run_desync("extract", "-s", store, f"{srv.url}blob.caibx", tmp_path / "out", env=desync_env(HOME=str(home)))
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
