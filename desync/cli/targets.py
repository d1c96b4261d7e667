"""Guards for the files commands write under a name the user typed.

Swapping two arguments (``desync make keep.bin small.caibx``) must not
replace a disk image with a 144-byte index.  Like casync, an index or
archive is written only to a name with the right suffix, to ``-``
(stdout), or over a file that already is one of that kind; anything else
is refused with a one-line error that says the fix, unless ``--force``.
Remote index locations (http, sftp, s3) are named by their store and are
not checked here.
"""

from __future__ import annotations

import argparse
import os
import struct

from ..constants import CA_FORMAT_ENTRY, CA_FORMAT_INDEX, INDEX_HEADER_SIZE
from ..errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Final

INDEX_SUFFIXES: Final = (".caibx", ".caidx")
_KINDS: Final = {".caibx": "a blob index", ".caidx": "an archive index", ".catar": "a catar archive"}
_RECORD_HEADER: Final = struct.Struct("<QQ")
# Size of the ENTRY record a catar starts with.
_ENTRY_SIZE: Final = 64


def add_force_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--force", action="store_true",
                        help=f"write the {what} even to a name without its usual suffix, "
                             "replacing whatever file is there")


def _local_path(location: str) -> str | None:
    """The local path ``location`` names, or None for stdout and remote index stores."""
    if location == "-":
        return None
    if location.lower().startswith("file://"):
        return location[len("file://"):]
    head, sep, _ = location.partition("://")
    if sep and head and "/" not in head:
        return None
    return location


def _first_record(path: str) -> tuple[int, int] | None:
    """``(size, type)`` of the first record header of the regular file at ``path``; None if it has none."""
    try:
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            head = f.read(_RECORD_HEADER.size)
    except OSError:
        return None
    if len(head) < _RECORD_HEADER.size:
        return None
    size, rtype = _RECORD_HEADER.unpack(head)
    return size, rtype


def is_index_file(location: str) -> bool:
    """True when ``location`` is a local file that starts with a casync index header."""
    path = _local_path(location)
    return path is not None and _first_record(path) == (INDEX_HEADER_SIZE, CA_FORMAT_INDEX)


def _refusal(location: str, kind: str, suffix: str, path: str) -> UsageError:
    if os.path.lexists(path):
        return UsageError(f"{location} is not {kind}; refusing to replace it (did you swap the arguments? "
                          f"the {kind.split()[-1]} comes first and must end in {suffix}; "
                          f"use --force to write it anyway)")
    return UsageError(f"{location} does not end in {suffix}; refusing to write {kind} there "
                      f"(name it *{suffix}, or use --force)")


def check_index_target(location: str, suffix: str, force: bool) -> None:
    """Refuse to write an index over a file that is not one, or to a name without ``suffix``."""
    path = _local_path(location)
    if force or path is None or path.endswith(suffix):
        return
    other = next((s for s in (*INDEX_SUFFIXES, ".catar") if s != suffix and path.endswith(s)), "")
    if other:
        raise UsageError(f"{location} is named like {_KINDS[other]} ({other}) but this command writes "
                         f"{_KINDS[suffix]} (name it *{suffix}, or use --force)")
    if is_index_file(path):
        return
    raise _refusal(location, "an index", suffix, path)


def check_archive_target(location: str, force: bool) -> None:
    """Refuse to write a catar over a file that is not one, or under an index name (use ``-i`` for those)."""
    path = _local_path(location)
    if force or path is None or path.endswith(".catar"):
        return
    if path.endswith(INDEX_SUFFIXES):
        raise UsageError(f"{location} is an index name: use -i to write an archive index, or name the "
                         f"archive *.catar")
    if _first_record(path) == (_ENTRY_SIZE, CA_FORMAT_ENTRY):
        return
    raise _refusal(location, "a catar archive", ".catar", path)
