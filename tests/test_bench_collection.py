"""The micro-benchmarks in tests/bench stay out of the normal suite and come in with --bench."""

from pathlib import Path
from types import SimpleNamespace

import conftest

BENCH = Path(conftest.__file__).parent / "bench"


def _config(bench: bool) -> SimpleNamespace:
    return SimpleNamespace(getoption=lambda name: bench if name == "--bench" else None)


def test_bench_folder_is_left_out_of_a_normal_run() -> None:
    assert conftest.pytest_ignore_collect(BENCH, _config(False)) is True  # type: ignore[arg-type]


def test_bench_folder_is_collected_with_the_option() -> None:
    assert conftest.pytest_ignore_collect(BENCH, _config(True)) is None  # type: ignore[arg-type]
    assert conftest.pytest_ignore_collect(BENCH.parent / "fixtures", _config(False)) is None  # type: ignore[arg-type]
    assert (BENCH / "test_micro.py").is_file()
