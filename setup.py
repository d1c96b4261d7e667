"""Build hooks that pyproject.toml cannot express.

The normal install compiles the package with mypyc and builds the C
accelerator in ``desync/_accel``.  ``DESYNC_PURE=1`` installs the plain
Python sources instead (same behaviour, slower), which is also what runs
from a source checkout and inside the zipapp.
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent

# Modules mypyc must not compile: entry points that are run as scripts,
# and modules that patch or introspect themselves at run time.
NOT_COMPILED = {
    "desync/__main__.py",
    "desync/_version.py",
    "desync/_accel/__init__.py",
    "desync/rawio.py",
    # mypyc compiles a Protocol class as a plain class, which @runtime_checkable refuses.
    "desync/stores/capabilities.py",
    # A module-level __getattr__ (PEP 562: names loaded on first use) crashes a mypyc-compiled module on import.
    "desync/stores/__init__.py",
    "desync/catar/__init__.py",
}


def compiled_modules() -> list[str]:
    found = []
    for path in sorted((HERE / "desync").rglob("*.py")):
        rel = path.relative_to(HERE).as_posix()
        if rel not in NOT_COMPILED:
            found.append(rel)
    return found


def extensions() -> list[Extension]:
    if os.environ.get("DESYNC_PURE", "") not in ("", "0"):
        return []
    from mypyc.build import mypycify

    accel = Extension(
        "desync._accel._chunker",
        sources=["desync/_accel/chunker.c"],
        extra_compile_args=["-O3", "-std=c11"],
    )
    fileio = Extension(
        "desync._accel._fileio",
        sources=["desync/_accel/fileio.c"],
        extra_compile_args=["-O3", "-std=c11", "-D_GNU_SOURCE"],
    )
    siphash = Extension(
        "desync._accel._siphash",
        sources=["desync/_accel/siphash.c"],
        extra_compile_args=["-O3", "-std=c11"],
    )
    codec = Extension(
        "desync._accel._codec",
        sources=["desync/_accel/codec.c"],
        extra_compile_args=["-O3", "-std=c11", "-D_GNU_SOURCE"],
        libraries=["zstd", "crypto", "pthread"],
    )
    return [accel, fileio, siphash, codec, *mypycify(compiled_modules(), opt_level="3", debug_level="0")]


# Extensions that need more than the Python headers: without libzstd's and libcrypto's development files the
# install goes on, and desync hashes, decodes and stores chunks one per GIL release (same results, fewer cores).
OPTIONAL = {"desync._accel._codec"}


class BuildOptional(build_ext):
    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # the compiler's or linker's failure, whatever setuptools calls it
            if ext.name not in OPTIONAL:
                raise
            print(f"warning: {ext.name} not built ({exc}); install libzstd-dev and libssl-dev for the batched "
                  f"chunk codec", file=sys.stderr)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildOptional})
