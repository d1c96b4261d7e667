"""The suite really runs against what scripts/test says: the compiled install or the pure sources."""

import os

import pytest

import desync._accel
import desync.catar.format
import desync.chunker
import desync.index

MODE = os.environ.get("DESYNC_TEST_MODE", "")


@pytest.mark.smoke
@pytest.mark.skipif(MODE != "compiled", reason="only meaningful in the compiled run of scripts/test")
def test_compiled_run_uses_mypyc_modules_and_the_c_chunker() -> None:
    assert not desync.index.__file__.endswith(".py"), desync.index.__file__
    assert desync.chunker.ACCELERATED
    assert desync.catar.format.ACCELERATED
    # The batched codec is optional in a build without libzstd's and libcrypto's headers; scripts/test installs them.
    assert desync._accel.codec_module() is not None


@pytest.mark.skipif(MODE != "pure", reason="only meaningful in the pure-Python run of scripts/test")
def test_pure_run_uses_python_sources_and_the_fallback_chunker() -> None:
    assert desync.index.__file__.endswith(".py")
    assert not desync.chunker.ACCELERATED
    assert not desync.catar.format.ACCELERATED
