"""casync's size and log-level syntax, shared by casync mode and the pull/push ends."""

from hypothesis import given
from hypothesis import strategies as st

from desync.cli.casyncsyntax import LOG_LEVELS, SIZE_SUFFIXES, log_level_value, size_value


@given(st.integers(0, 1 << 40), st.sampled_from(sorted(SIZE_SUFFIXES)), st.booleans())
def test_sizes_are_digits_times_a_power_of_1024(n: int, suffix: str, lower: bool) -> None:
    text = f" {n}{suffix.lower() if lower else suffix} "
    assert size_value(text) == n * SIZE_SUFFIXES[suffix]


def test_what_is_not_a_size() -> None:
    for text in ("", "K", "-1", "1.5M", "1KB", "M1", "0x10", "1 K"):
        assert size_value(text) is None, text


def test_casync_takes_its_own_level_names_the_remote_end_more() -> None:
    assert [log_level_value(name) for name in LOG_LEVELS] == list(range(8))
    assert [log_level_value(str(n)) for n in range(9)] == [*range(8), None]
    for text in ("warn", "error", "Info", " debug", "critical", "emergency"):
        assert log_level_value(text) is None
    assert [log_level_value(t, lenient=True) for t in ("warn", "error", "Info", " debug", "critical", "emergency")] \
        == [4, 3, 6, 7, 2, 0]
    assert log_level_value("verbose", lenient=True) is None
