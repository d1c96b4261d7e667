"""The config file: store-options per location (globs), precedence, `desync config`."""

import argparse
import json
from pathlib import Path

import pytest

from conftest import assert_one_line_error, desync_env, run_desync
from desync.cli.common import store_options
from desync.config import location_matches, parse_config, parse_duration
from desync.errors import DesyncError


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"digest": "sha512-256", "config": None, "skip_verify": False, "uncompressed": False,
                               "trust_insecure": False, "ca_cert": "", "client_cert": "", "client_key": "",
                               "error_retry": None, "error_retry_base_interval": None, "timeout": None,
                               "workers": 10}
    base.update(kw)
    return argparse.Namespace(**base)


def test_glob_matching() -> None:
    assert location_matches("http://host/store", "http://host/store/")
    assert location_matches("http://host:*/", "http://host:8080")
    assert location_matches("/srv/stores/*", "/srv/stores/a")
    assert not location_matches("/srv/stores/*", "/srv/stores/a/b")
    assert not location_matches("/srv/*", "/srv2/a")


def test_durations() -> None:
    assert parse_duration(5, "x") == 5.0
    assert parse_duration("1m30s", "x") == 90.0
    assert parse_duration("250ms", "x") == 0.25
    with pytest.raises(DesyncError):
        parse_duration("soon", "x")


def test_config_sets_options_and_flags_override(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"store-options": {
        "https://a.example/*": {"timeout": "10s", "error-retry": 1, "http-auth": "Bearer x", "skip-verify": True,
                                "client-cert": "/c.crt", "uncompressed": True},
        "/local/cache": {"uncompressed": True},
    }}))
    opts = store_options(_args(config=str(cfg)), location="https://a.example/store")
    assert (opts.timeout, opts.error_retry, opts.http_auth, opts.skip_verify, opts.client_cert, opts.uncompressed) == \
        (10.0, 1, "Bearer x", True, "/c.crt", True)
    opts = store_options(_args(config=str(cfg), timeout=3.0, error_retry=7, client_cert="/d.crt"),
                         location="https://a.example/store")
    assert (opts.timeout, opts.error_retry, opts.client_cert) == (3.0, 7, "/d.crt")
    assert store_options(_args(config=str(cfg)), location="/local/cache/").uncompressed
    assert not store_options(_args(config=str(cfg)), location="/other").uncompressed


def test_two_matching_entries_are_an_error(tmp_path: Path) -> None:
    cfg = parse_config(json.dumps({"store-options": {"/s/*": {}, "/s/a": {}}}), "c.json")
    with pytest.raises(DesyncError, match="several store-options entries match"):
        cfg.options_for("/s/a")
    (tmp_path / "c.json").write_text(json.dumps({"store-options": {"/s/*": {}, "/*/a": {}}}))
    proc = run_desync("--config", tmp_path / "c.json", "verify", "-s", "/s/a", check=False)
    assert "several store-options entries" in assert_one_line_error(proc)


def test_bad_config_files(tmp_path: Path) -> None:
    for text, message in (("{nope", "invalid JSON"), ('{"store-options": {"/s": {"timeout": []}}}', "duration"),
                          ('{"store-options": {"/s": {"error-retry": "x"}}}', "integer")):
        (tmp_path / "c.json").write_text(text)
        proc = run_desync("--config", tmp_path / "c.json", "config", check=False)
        assert message in assert_one_line_error(proc)
    proc = run_desync("--config", tmp_path / "missing.json", "config", check=False)
    assert "does not exist" in assert_one_line_error(proc)


def test_config_command_prints_and_writes(tmp_path: Path) -> None:
    env = desync_env(HOME=str(tmp_path))
    shown = json.loads(run_desync("config", env=env).stdout)
    assert shown == {"s3-credentials": {}, "store-options": {}}
    run_desync("config", "-w", env=env)
    path = tmp_path / ".config" / "desync" / "config.json"
    assert json.loads(path.read_text()) == shown
    path.write_text(json.dumps({"store-options": {"http://x/": {"error-retry": 2}},
                                "s3-credentials": {"http://s3": {"access-key": "k"}}}))
    shown = json.loads(run_desync("config", env=env).stdout)
    assert shown["store-options"] == {"http://x/": {"error-retry": 2}}
    assert shown["s3-credentials"] == {"http://s3": {"access-key": "k"}}
    other = tmp_path / "other.json"
    run_desync("--config", other, "config", "-w", env=env)
    assert json.loads(other.read_text()) == {"s3-credentials": {}, "store-options": {}}


def test_go_desync_top_level_http_settings_are_defaults_for_every_store(tmp_path: Path) -> None:
    """Older Go desync configs set http-timeout (a time.Duration: nanoseconds) and http-error-retry at the top."""
    cfg = parse_config('{"http-timeout": 30000000000, "http-error-retry": 7, '
                       '"store-options": {"http://a/*": {"error-retry": 2}}}', "c.json")
    assert cfg.options_for("http://b/store") == {"timeout": 30.0, "error-retry": 7}
    assert cfg.options_for("http://a/store") == {"timeout": 30.0, "error-retry": 2}
    assert parse_config('{"http-timeout": "1m"}', "c.json").options_for("x") == {"timeout": 60.0}
