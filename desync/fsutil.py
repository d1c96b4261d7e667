"""File writing primitives shared by stores, index files and extraction.

Files others may read concurrently are written to a temp name in the same
directory and renamed into place, so readers see the old or the new file,
never a partial one.
"""

import os
import secrets
import sys
from collections.abc import Iterable
from typing import BinaryIO

from .errors import DesyncError


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write until everything is written (the kernel may take less per call)."""
    view = memoryview(data)
    while view:
        # Bind the result first: mypyc evaluates a call inside a slice bound twice.
        written = os.write(fd, view)
        view = view[written:]


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def write_file_atomic(path: str, data: bytes | bytearray | memoryview, mode: int = 0o666,
                      tmp_name: str = "") -> None:
    """Replace ``path`` with ``data`` via a temp file beside it; raises OSError, leaves no temp file."""
    write_pieces_atomic(path, (data,), mode, tmp_name)


def write_pieces_atomic(path: str, pieces: Iterable[bytes | bytearray | memoryview], mode: int = 0o666,
                        tmp_name: str = "") -> None:
    """Like :func:`write_file_atomic` for content produced piece by piece (a stream)."""
    directory = os.path.dirname(os.path.abspath(path))
    name = tmp_name or f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp"
    tmp = os.path.join(directory, name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            for piece in pieces:
                write_all(fd, piece)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def stdin_binary() -> "BinaryIO":
    """Standard input as bytes; a clear error when the process has none (closed or detached)."""
    if sys.stdin is None:
        raise DesyncError("standard input is not available")
    return sys.stdin.buffer
