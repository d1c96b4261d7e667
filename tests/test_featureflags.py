"""Feature flag normalisation as casync does it (docs/formats.md 2.3)."""

from hypothesis import given
from hypothesis import strategies as st

from desync import featureflags as ff


def test_named_sets_have_the_documented_values() -> None:
    assert ff.WITH_BEST == 0x1FFFFFE26
    assert ff.normalize((ff.WITH_BEST & ~ff.WITH_FLAG_NODUMP) | ff.EXCLUDE_NODUMP | ff.EXCLUDE_FILE
                        | ff.SHA512_256) == ff.CASYNC_DEFAULT
    assert ff.normalize(ff.WITH_SEC_TIME | ff.WITH_PERMISSIONS | ff.WITH_16BIT_UIDS) == 0x109


@given(st.integers(0, ff.FEATURE_FLAGS_MAX).map(lambda v: v & ff.FEATURE_FLAGS_MAX))
def test_normalize_is_idempotent_and_yields_normalised_words(flags: int) -> None:
    once = ff.normalize(flags)
    assert ff.normalize(once) == once
    assert ff.is_normalized(once)
