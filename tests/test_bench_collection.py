"""The micro-benchmarks in tests/bench stay out of the normal suite and come in with --bench."""

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

import conftest

BENCH = Path(conftest.__file__).parent / "bench"


def _config(bench: bool) -> pytest.Config:
    """A stand-in for pytest's Config with the one method the hook calls."""
    return cast(pytest.Config, SimpleNamespace(getoption=lambda name: bench if name == "--bench" else None))


def test_bench_folder_is_left_out_of_a_normal_run() -> None:
    assert conftest.pytest_ignore_collect(BENCH, _config(False)) is True


def test_bench_folder_is_collected_with_the_option() -> None:
    assert conftest.pytest_ignore_collect(BENCH, _config(True)) is None
    assert conftest.pytest_ignore_collect(BENCH.parent / "fixtures", _config(False)) is None
    assert (BENCH / "test_micro.py").is_file()
