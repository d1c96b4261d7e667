"""S3 stores and index stores against a real S3 server (moto's) on loopback, with authentication on."""

import argparse
import json
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("boto3", reason="boto3 is not installed (pip install desync[test])")
pytest.importorskip("moto.server", reason="moto's server is not installed (pip install desync[test])")

from conftest import NEUTRAL_DIR, assert_one_line_error, desync_env, run_desync, sha512_256  # noqa: E402
from s3_server import FaultyProxy, S3Server  # noqa: E402

from desync import config as config_mod  # noqa: E402
from desync.chunk import Chunk  # noqa: E402
from desync.cli.common import store_options  # noqa: E402
from desync.config import parse_config  # noqa: E402
from desync.digest import DEFAULT  # noqa: E402
from desync.errors import ChunkMissing, DesyncError, InvalidArgument  # noqa: E402
from desync.stores import PrunableStore, StoreOptions, open_store  # noqa: E402
from desync.stores.layout import chunk_id_from_name as chunk_id_from_key  # noqa: E402
from desync.stores.s3 import addressing_style, parse_location  # noqa: E402
from desync.stores.s3auth import credentials_for  # noqa: E402

CREDENTIAL_VARS = ("S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_SESSION_TOKEN", "S3_REGION", "AWS_ACCESS_KEY_ID",
                   "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE")


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server(auth=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(blob, index, local store): 1 MiB random data in about 60 chunks."""
    d = tmp_path_factory.mktemp("s3blob")
    (d / "blob").write_bytes(random.Random(6).randbytes(1 << 20))
    run_desync("make", "-m", "4:16:64", "-s", d / "store", d / "blob.caibx", d / "blob")
    return d / "blob", d / "blob.caibx", d / "store"


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment with no S3/AWS variables and a HOME of its own (no stray config)."""
    env = desync_env(HOME=str(tmp_path / "home"))
    for name in CREDENTIAL_VARS:
        env.pop(name, None)
    return env


@pytest.fixture
def env(s3: S3Server, bare_env: dict[str, str]) -> dict[str, str]:
    return {**bare_env, **s3.env()}


def chunk_ids(index: Path) -> set[str]:
    return set(run_desync("list-chunks", index).stdout.decode().split())


def test_make_extract_round_trip_with_an_index_store(s3: S3Server, blob: tuple[Path, Path, Path],
                                                    env: dict[str, str], tmp_path: Path) -> None:
    src, local_index, _ = blob
    bucket = s3.new_bucket()
    store, index = s3.url(bucket, "store"), s3.url(bucket, "indexes/blob.caibx")
    run_desync("make", "-m", "4:16:64", "-s", store, index, src, env=env)
    keys = s3.keys(bucket)
    assert "indexes/blob.caibx" in keys
    chunk_keys = [k for k in keys if k.startswith("store/")]
    # The Go tool's layout: PREFIX/<first 4 hex>/<id>.cacnk
    assert {k.split("/")[2].removesuffix(".cacnk") for k in chunk_keys} == chunk_ids(local_index)
    assert all(k.endswith(".cacnk") and k.split("/")[2].startswith(k.split("/")[1]) for k in chunk_keys)
    stored_index = s3.client().get_object(Bucket=bucket, Key="indexes/blob.caibx")["Body"].read()
    assert stored_index == local_index.read_bytes()
    run_desync("extract", "-s", store, index, tmp_path / "out", env=env)
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    run_desync("extract", "-s", store + "?lookup=path", local_index, tmp_path / "out2", env=env)
    assert (tmp_path / "out2").read_bytes() == src.read_bytes()
    info = run_desync("info", index, env=env).stdout.decode()
    assert str(src.stat().st_size) in info


def test_uncompressed_store_has_no_suffix(s3: S3Server, blob: tuple[Path, Path, Path], env: dict[str, str],
                                          tmp_path: Path) -> None:
    src, index, _ = blob
    bucket = s3.new_bucket()
    store = s3.url(bucket, "plain")
    run_desync("make", "-u", "-m", "4:16:64", "-s", store, tmp_path / "x.caibx", src, env=env)
    keys = s3.keys(bucket)
    assert keys and not [k for k in keys if k.endswith(".cacnk")]
    first = keys[0]
    body = s3.client().get_object(Bucket=bucket, Key=first)["Body"].read()
    assert sha512_256(body) == first.rsplit("/", 1)[1]  # plain chunk data under its ID
    run_desync("extract", "-u", "-s", store, index, tmp_path / "out", env=env)
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    proc = run_desync("extract", "-s", store, index, tmp_path / "out2", env=env, check=False)
    assert f"missing from store {store}" in assert_one_line_error(proc)


def test_chop_and_cache_into_s3(s3: S3Server, blob: tuple[Path, Path, Path], env: dict[str, str],
                                tmp_path: Path) -> None:
    src, index, local = blob
    bucket = s3.new_bucket()
    chopped, cached = s3.url(bucket, "chopped"), s3.url(bucket, "cached")
    run_desync("chop", "-s", chopped, index, src, env=env)
    run_desync("cache", "-s", local, "-c", cached, index, env=env)
    ids = chunk_ids(index)
    for prefix in ("chopped/", "cached/"):
        assert {k.rsplit("/", 1)[1].removesuffix(".cacnk") for k in s3.keys(bucket, prefix)} == ids
    run_desync("extract", "-s", chopped, index, tmp_path / "out", env=env)
    assert (tmp_path / "out").read_bytes() == src.read_bytes()


def test_s3_as_cache_and_behind_a_local_cache(s3: S3Server, blob: tuple[Path, Path, Path], env: dict[str, str],
                                              tmp_path: Path) -> None:
    src, index, local = blob
    bucket = s3.new_bucket()
    s3_cache = s3.url(bucket, "cache")
    run_desync("extract", "-s", local, "-c", s3_cache, index, tmp_path / "out1", env=env)
    assert len(s3.keys(bucket, "cache/")) == len(chunk_ids(index))
    local_cache = tmp_path / "local-cache"
    run_desync("extract", "-s", s3_cache, "-c", local_cache, index, tmp_path / "out2", env=env)
    assert len(list(local_cache.rglob("*.cacnk"))) == len(chunk_ids(index))
    for out in ("out1", "out2"):
        assert (tmp_path / out).read_bytes() == src.read_bytes()


def test_tar_and_untar_an_archive_index_in_s3(s3: S3Server, env: dict[str, str], tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    rng = random.Random(9)
    files = {"a.bin": rng.randbytes(300_000), "sub/b.txt": b"hello\n" * 1000, "sub/empty": b""}
    for name, data in files.items():
        (tree / name).write_bytes(data)
    bucket = s3.new_bucket()
    store, index = s3.url(bucket, "store"), s3.url(bucket, "trees/tree.caidx")
    run_desync("tar", "-i", "-s", store, index, tree, env=env)
    run_desync("untar", "-i", "--no-same-owner", "-s", store, index, tmp_path / "out", env=env)
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data


def test_prune_keeps_only_referenced_chunks(s3: S3Server, blob: tuple[Path, Path, Path], env: dict[str, str],
                                            tmp_path: Path) -> None:
    src, index, _ = blob
    other = tmp_path / "other"
    other.write_bytes(random.Random(7).randbytes(300_000))
    bucket = s3.new_bucket()
    store = s3.url(bucket, "store")
    run_desync("make", "-m", "4:16:64", "-s", store, tmp_path / "blob.caibx", src, env=env)
    run_desync("make", "-m", "4:16:64", "-s", store, tmp_path / "other.caibx", other, env=env)
    s3.client().put_object(Bucket=bucket, Key="store/README", Body=b"not a chunk")
    before = len(s3.keys(bucket, "store/"))
    proc = run_desync("prune", "-y", "-s", store, index, env=env)
    keys = s3.keys(bucket, "store/")
    assert {k.rsplit("/", 1)[1].removesuffix(".cacnk") for k in keys if k != "store/README"} == chunk_ids(index)
    assert "store/README" in keys
    assert f"removed {before - len(keys)} chunks" in proc.stderr.decode()
    run_desync("extract", "-s", store, index, tmp_path / "out", env=env)
    assert (tmp_path / "out").read_bytes() == src.read_bytes()


def test_verify_finds_and_repairs_a_damaged_chunk(s3: S3Server, blob: tuple[Path, Path, Path],
                                                  env: dict[str, str], tmp_path: Path) -> None:
    src, index, _ = blob
    bucket = s3.new_bucket()
    store = s3.url(bucket)  # no prefix: chunks at the top of the bucket
    run_desync("make", "-m", "4:16:64", "-s", store, tmp_path / "x.caibx", src, env=env)
    run_desync("verify", "-s", store, env=env)
    victim = s3.keys(bucket)[0]
    client = s3.client()
    client.put_object(Bucket=bucket, Key=victim, Body=client.get_object(Bucket=bucket, Key=s3.keys(bucket)[1])
                      ["Body"].read())
    proc = run_desync("verify", "-s", store, env=env, check=False)
    assert "1 of" in proc.stderr.decode() and "invalid" in proc.stderr.decode()
    assert proc.returncode == 1
    run_desync("verify", "-r", "-s", store, env=env)
    assert victim not in s3.keys(bucket)
    run_desync("verify", "-s", store, env=env)


def test_concurrent_writers_of_the_same_chunks(s3: S3Server, blob: tuple[Path, Path, Path],
                                               env: dict[str, str], tmp_path: Path) -> None:
    src, index, _ = blob
    bucket = s3.new_bucket()
    store = s3.url(bucket, "store")
    procs = [subprocess.Popen([sys.executable, "-m", "desync", "make", "-m", "4:16:64", "-s", store,
                               str(tmp_path / f"{n}.caibx"), str(src)], env=env, cwd=NEUTRAL_DIR,
                              stderr=subprocess.PIPE) for n in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    run_desync("extract", "-s", store, index, tmp_path / "out", env=env)
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    run_desync("verify", "-s", store, env=env)


def test_store_api_from_many_threads(s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One store object shared by threads that all write, read and list the same chunks."""
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("S3_ACCESS_KEY", s3.access_key)
    monkeypatch.setenv("S3_SECRET_KEY", s3.secret_key)
    monkeypatch.setenv("HOME", str(tmp_path))
    bucket = s3.new_bucket()
    rng = random.Random(3)
    chunks = [Chunk.from_data(rng.randbytes(rng.randrange(1000, 20000)), DEFAULT) for _ in range(24)]
    failures: list[BaseException] = []
    store = open_store(s3.url(bucket, "api"), StoreOptions(workers=8), writable=True)
    with store:
        assert isinstance(store, PrunableStore) and store.parallelism == 8

        def writer(order: int) -> None:
            try:
                for c in chunks[order:] + chunks[:order]:
                    store.put_chunk(c)
                    assert store.get_chunk(c.id, len(c.data())).data() == c.data()
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures
        assert sorted(store.iter_chunks()) == sorted(c.id for c in chunks)
        assert store.has_chunk(chunks[0].id)
        store.remove_chunk(chunks[0].id)
        assert not store.has_chunk(chunks[0].id)
        with pytest.raises(ChunkMissing):
            store.get_chunk(chunks[0].id)


def test_credentials_from_the_config_file(s3: S3Server, blob: tuple[Path, Path, Path], bare_env: dict[str, str],
                                          tmp_path: Path) -> None:
    src, index, local = blob
    bucket = s3.new_bucket()
    store = s3.url(bucket, "store")
    creds = tmp_path / "aws-credentials"
    creds.write_text(f"[default]\naws_access_key_id = AKIAWRONGWRONGWRONG0\naws_secret_access_key = nope\n\n"
                     f"[desync]\naws_access_key_id = {s3.access_key}\naws_secret_access_key = {s3.secret_key}\n")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"s3-credentials": {
        "http://127.0.0.1:*": {"aws-credentials-file": str(creds), "aws-profile": "desync", "aws-region": "us-east-1"},
        "http://localhost:9000": {"access-key": "other", "secret-key": "other"},
    }}))
    run_desync("--config", cfg, "cache", "-s", local, "-c", store, index, env=bare_env)
    run_desync("--config", cfg, "extract", "-s", store, index, tmp_path / "out", env=bare_env)
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    # The profile decides: the default one holds a key the server does not know.
    cfg.write_text(json.dumps({"s3-credentials": {"http://127.0.0.1:*": {"aws-credentials-file": str(creds)}}}))
    proc = run_desync("--config", cfg, "extract", "-s", store, index, tmp_path / "out2", env=bare_env, check=False)
    assert "InvalidAccessKeyId" in assert_one_line_error(proc)
    # Keys written into the entry itself; the default config file ($HOME/.config/desync/config.json).
    home_cfg = Path(bare_env["HOME"]) / ".config" / "desync" / "config.json"
    home_cfg.parent.mkdir(parents=True)
    home_cfg.write_text(json.dumps({"s3-credentials": {
        f"http://127.0.0.1:{s3.port}": {"access-key": s3.access_key, "secret-key": s3.secret_key}}}))
    run_desync("extract", "-s", store, index, tmp_path / "out3", env=bare_env)
    assert (tmp_path / "out3").read_bytes() == src.read_bytes()


def test_aws_variables_are_the_fallback(s3: S3Server, blob: tuple[Path, Path, Path], bare_env: dict[str, str],
                                        tmp_path: Path) -> None:
    src, index, local = blob
    bucket = s3.new_bucket()
    store = s3.url(bucket, "store")
    aws = {**bare_env, "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    run_desync("cache", "-s", local, "-c", store, index, env=aws)
    run_desync("extract", "-s", store, index, tmp_path / "out", env=aws)
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    # S3_* wins over AWS_*
    proc = run_desync("extract", "-s", store, index, tmp_path / "out2", check=False,
                      env={**aws, "S3_ACCESS_KEY": s3.access_key, "S3_SECRET_KEY": "wrong"})
    assert "SignatureDoesNotMatch" in assert_one_line_error(proc)


def test_wrong_or_missing_credentials_are_one_clear_line(s3: S3Server, blob: tuple[Path, Path, Path],
                                                         bare_env: dict[str, str], tmp_path: Path) -> None:
    src, index, local = blob
    bucket = s3.new_bucket()
    store = s3.url(bucket, "store")
    run_desync("cache", "-s", local, "-c", store, index, env={**bare_env, **s3.env()})
    cases = {
        "SignatureDoesNotMatch": s3.env(S3_SECRET_KEY="wrong"),
        "InvalidAccessKeyId": s3.env(S3_ACCESS_KEY="AKIANOTAKNOWNKEY0000"),
        "AccessDenied": {},  # anonymous requests
    }
    for expected, creds in cases.items():
        proc = run_desync("extract", "-s", store, index, tmp_path / "out", env={**bare_env, **creds}, check=False)
        line = assert_one_line_error(proc)
        assert store in line and "check the S3 credentials" in line, line
        if expected != "AccessDenied":
            assert expected in line, line
        proc = run_desync("make", "-s", store, tmp_path / "x.caibx", src, env={**bare_env, **creds}, check=False)
        line = assert_one_line_error(proc)
        assert store in line, line
        if expected != "AccessDenied":  # moto answers an unsigned HEAD with a 500
            assert "HTTP 403" in line and "check the S3 credentials" in line, line
        proc = run_desync("extract", "-s", local, s3.url(bucket, "x.caibx"), tmp_path / "out",
                          env={**bare_env, **creds}, check=False)
        assert "cannot read index" in assert_one_line_error(proc)
    assert not (tmp_path / "out").exists()


def test_missing_bucket_index_and_server(s3: S3Server, blob: tuple[Path, Path, Path], env: dict[str, str],
                                         tmp_path: Path) -> None:
    src, index, _ = blob
    store = s3.url("no-such-bucket", "store")
    for args in (("extract", "-s", store, index, tmp_path / "out"), ("make", "-s", store, tmp_path / "x.caibx", src),
                 ("prune", "-y", "-s", store, index)):
        line = assert_one_line_error(run_desync(*args, env=env, check=False))
        assert line.endswith(f"store {store}: bucket no-such-bucket does not exist"), line
    bucket = s3.new_bucket()
    proc = run_desync("extract", "-s", s3.url(bucket), s3.url(bucket, "nope.caibx"), tmp_path / "out", env=env,
                      check=False)
    assert assert_one_line_error(proc).endswith(f"index {s3.url(bucket, 'nope.caibx')} not found")
    down = "s3+http://127.0.0.1:9/bucket"
    proc = run_desync("extract", "--error-retry", "0", "-s", down, index, tmp_path / "out", env=env, check=False)
    line = assert_one_line_error(proc)
    assert f"store {down}" in line and "Could not connect" in line, line


def test_bad_locations_are_usage_errors(s3: S3Server, blob: tuple[Path, Path, Path], env: dict[str, str],
                                        tmp_path: Path) -> None:
    src, index, _ = blob
    base = f"s3+http://127.0.0.1:{s3.port}"
    proc = run_desync("extract", "-s", base + "/", index, tmp_path / "out", env=env, check=False)
    assert "no bucket" in assert_one_line_error(proc, status=2)
    proc = run_desync("extract", "-s", base + "/b?lookup=sideways", index, tmp_path / "out", env=env, check=False)
    assert "lookup type 'sideways'" in assert_one_line_error(proc, status=2)
    proc = run_desync("make", "-s", tmp_path / "store", base + "/bucket/dir/", src, env=env, check=False)
    assert "does not name an index file" in assert_one_line_error(proc)


def test_missing_boto3_is_a_clear_error(blob: tuple[Path, Path, Path], env: dict[str, str], tmp_path: Path) -> None:
    _, index, _ = blob
    code = ("import sys; sys.modules['boto3'] = None; "
            "from desync.cli.main import main; sys.exit(main())")
    proc = subprocess.run([sys.executable, "-c", code, "extract", "-s", "s3+http://127.0.0.1:9/b", str(index),
                           str(tmp_path / "out")], env=env, cwd=NEUTRAL_DIR, capture_output=True, timeout=60)
    line = assert_one_line_error(proc)
    assert "boto3" in line and "pip install boto3" in line and "desync[" not in line, line


def test_throttling_and_server_errors_are_retried(s3: S3Server, env: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "small"
    src.write_bytes(random.Random(8).randbytes(300_000))
    index = tmp_path / "small.caibx"
    bucket = s3.new_bucket()
    flaky = FaultyProxy(s3.port, every=4)
    try:
        store = flaky.url(bucket, "store")
        run_desync("make", "-m", "4:16:64", "-s", store, index, src, env=env)
        run_desync("extract", "-s", store, index, tmp_path / "out", env=env)
        assert flaky.spoiled >= 6
    finally:
        flaky.close()
    assert (tmp_path / "out").read_bytes() == src.read_bytes()
    always = FaultyProxy(s3.port, every=0)
    try:
        proc = run_desync("extract", "--error-retry", "1", "-s", always.url(bucket, "store"), index,
                          tmp_path / "out2", env=env, check=False)
        line = assert_one_line_error(proc)
        assert "SlowDown" in line and always.url(bucket, "store") in line, line
        assert always.count >= 2  # the first attempt and its retry
    finally:
        always.close()


def test_location_parsing_and_addressing() -> None:
    loc = parse_location("s3+https://s3.eu-west-1.amazonaws.com/bucket/a/b/?lookup=auto")
    assert (loc.endpoint, loc.bucket, loc.prefix) == ("https://s3.eu-west-1.amazonaws.com", "bucket", "a/b/")
    assert addressing_style(loc) == "virtual"
    assert addressing_style(parse_location("s3+http://minio:9000/bucket")) == "path"
    assert addressing_style(parse_location("s3+http://minio:9000/bucket?lookup=dns")) == "virtual"
    assert addressing_style(parse_location("s3+https://s3.amazonaws.com/bucket?lookup=path")) == "path"
    assert parse_location("s3+http://h/bucket").prefix == ""
    for bad in ("s3+ftp://h/b", "s3+http:///b", "s3+http://h/", "s3+http://h/b?lookup=x"):
        with pytest.raises(InvalidArgument):
            parse_location(bad)
    h = "ab" * 32
    assert chunk_id_from_key(f"abab/{h}.cacnk", ".cacnk") == bytes.fromhex(h)
    assert chunk_id_from_key(f"abab/{h}", "") == bytes.fromhex(h)
    for other in (f"abab/{h}", f"abac/{h}.cacnk", f"abab/{h.upper()}.cacnk", "README", f"x/abab/{h}.cacnk"):
        assert chunk_id_from_key(other, ".cacnk") is None
    assert chunk_id_from_key(f"abab/{h}.cacnk", "") is None


def test_credential_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    creds_file = tmp_path / "credentials"
    creds_file.write_text("[profile team]\naws_access_key_id = TEAMKEY\naws_secret_access_key = teamsecret\n"
                          "aws_session_token = tok\n[bad]\naws_access_key_id = X\n")
    cfg = parse_config(json.dumps({"s3-credentials": {
        "https://s3.example.com": {"access-key": "CFGKEY", "secret-key": "cfgsecret", "aws-region": "eu-central-1"},
        "http://10.1.*": {"aws-credentials-file": str(creds_file), "aws-profile": "team"},
        "s3+http://dup:1": {"access-key": "A"}, "http://dup:*": {"access-key": "B"},
        "http://typo": {"access-key": 5},
    }}), "test.json")
    anon = credentials_for("http://unknown:9000", cfg)
    assert anon.anonymous and anon.region == "us-east-1"
    from_cfg = credentials_for("https://s3.example.com", cfg)
    assert (from_cfg.access_key, from_cfg.secret_key, from_cfg.region) == ("CFGKEY", "cfgsecret", "eu-central-1")
    from_file = credentials_for("http://10.1.2.3:9000", cfg)
    assert (from_file.access_key, from_file.secret_key, from_file.session_token) == ("TEAMKEY", "teamsecret", "tok")
    with pytest.raises(DesyncError, match="several s3-credentials entries"):
        credentials_for("http://dup:1", cfg)
    with pytest.raises(DesyncError, match="must be a string"):
        credentials_for("http://typo", cfg)
    bad_profile = parse_config(json.dumps({"s3-credentials": {"http://h": {
        "aws-credentials-file": str(creds_file), "aws-profile": "bad"}}}), "t.json")
    with pytest.raises(DesyncError, match="lacks aws_access_key_id or aws_secret_access_key"):
        credentials_for("http://h", bad_profile)
    missing = parse_config(json.dumps({"s3-credentials": {"http://h": {
        "aws-credentials-file": str(tmp_path / "absent"), "aws-profile": "x"}}}), "t.json")
    with pytest.raises(DesyncError, match="cannot read AWS credentials file"):
        credentials_for("http://h", missing)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AWSKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "awssecret")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    assert credentials_for("https://s3.example.com", cfg).access_key == "AWSKEY"
    assert credentials_for("https://s3.example.com", cfg).region == "eu-central-1"
    assert credentials_for("http://unknown", cfg).region == "ap-south-1"
    monkeypatch.setenv("S3_ACCESS_KEY", "S3KEY")
    monkeypatch.setenv("S3_SECRET_KEY", "s3secret")
    monkeypatch.setenv("S3_SESSION_TOKEN", "s3token")
    monkeypatch.setenv("S3_REGION", "us-west-2")
    both = credentials_for("https://s3.example.com", cfg)
    assert (both.access_key, both.secret_key, both.session_token, both.region) == \
        ("S3KEY", "s3secret", "s3token", "us-west-2")


def test_the_cli_passes_the_config_files_credentials_to_the_store(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 credentials travel in StoreOptions, resolved from the --config file by the CLI, not from a global."""
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"s3-credentials": {"http://h:1": {"access-key": "K", "secret-key": "S"}}}))
    args = argparse.Namespace(digest="sha512-256", config=str(path))
    given = store_options(args, location="s3+http://h:1/bucket/dir")
    assert given.s3_credentials is not None and (given.s3_credentials.access_key, given.s3_credentials.secret_key) \
        == ("K", "S")
    other = store_options(args, location="s3+http://h:2/bucket").s3_credentials
    assert other is not None and other.anonymous
    assert store_options(args, location=str(tmp_path)).s3_credentials is None
    assert not hasattr(config_mod, "current_config")
