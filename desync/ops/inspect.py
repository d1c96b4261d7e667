"""Chunk lists and chunk details: ``--ignore-chunks`` files, ``inspect-chunks`` and ``info --chunks-info``.

A chunk ID file holds one chunk ID in hex per line (blank lines skipped),
as ``list-chunks`` prints them.  A chunks-info file is the JSON array that
``inspect-chunks`` writes: per chunk of an index its ``id``, its
``uncompressed_size`` and, when a compressed local store has it, its
``compressed_size`` there (the Go desync's format).  Both are parsed with
bounds: they come from users' files (docs/design.md 3.2).
"""

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..constants import CHUNK_SIZE_LIMIT
from ..errors import DesyncError, FormatError
from ..index import Index
from ..stores.local import LocalStore

_ID_HEX: Final = 64
# A chunk ID file or chunks-info file larger than this is refused before it is read.
LIST_SIZE_LIMIT: Final = 1 << 30


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > LIST_SIZE_LIMIT:
                raise DesyncError(f"{what} {path} is larger than the {LIST_SIZE_LIMIT} bytes allowed")
            data = f.read(LIST_SIZE_LIMIT + 1)
    except OSError as exc:
        raise DesyncError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > LIST_SIZE_LIMIT:
        raise DesyncError(f"{what} {path} is larger than the {LIST_SIZE_LIMIT} bytes allowed")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as bad:
        raise FormatError(f"{what} {path} is not UTF-8 text", offset=bad.start) from None


def read_chunk_ids(path: str) -> list[bytes]:
    """The chunk IDs listed in the text file ``path`` (``--ignore-chunks``)."""
    ids: list[bytes] = []
    for number, line in enumerate(_read_text(path, "chunk ID file").splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        if len(text) != _ID_HEX:
            raise FormatError(f"{path} line {number}: not a chunk ID: {text[:80]!r}")
        try:
            ids.append(bytes.fromhex(text))
        except ValueError:
            raise FormatError(f"{path} line {number}: not a chunk ID: {text[:80]!r}") from None
    return ids


def read_chunk_id_files(paths: Iterable[str]) -> set[bytes]:
    found: set[bytes] = set()
    for path in paths:
        found.update(read_chunk_ids(path))
    return found


def chunk_infos(index: Index, store: LocalStore | None = None) -> list[dict[str, Any]]:
    """One entry per chunk of ``index`` (repeats included, in order), with the size in ``store`` when it has one.

    As the Go tool does, a store that keeps chunks uncompressed reports no
    compressed sizes: they would only repeat the plain size.
    """
    infos: list[dict[str, Any]] = []
    for c in index.chunks:
        entry: dict[str, Any] = {"id": c.id.hex(), "uncompressed_size": c.size}
        size = store.stored_size(c.id) if store is not None else 0
        if size:
            entry["compressed_size"] = size
        infos.append(entry)
    return infos


def chunk_infos_json(infos: list[dict[str, Any]]) -> str:
    return json.dumps(infos, indent=2) + "\n"


def read_chunk_infos(path: str) -> dict[bytes, tuple[int, int]]:
    """A chunks-info file as {chunk ID: (uncompressed size, compressed size or 0)}."""
    text = _read_text(path, "chunks info file")
    try:
        doc = json.loads(text)
    except ValueError as bad:
        raise FormatError(f"chunks info file {path}: invalid JSON: {bad}") from None
    if doc is None:
        return {}
    if not isinstance(doc, list):
        raise FormatError(f"chunks info file {path}: expected a JSON array of chunks")
    found: dict[bytes, tuple[int, int]] = {}
    for item in doc:
        if not isinstance(item, dict):
            raise FormatError(f"chunks info file {path}: expected objects with id and uncompressed_size")
        text_id = item.get("id")
        plain = item.get("uncompressed_size", 0)
        packed = item.get("compressed_size", 0)
        if not isinstance(text_id, str) or len(text_id) != _ID_HEX or not _sizes_ok(plain, packed):
            raise FormatError(f"chunks info file {path}: invalid entry {json.dumps(item)[:120]}")
        try:
            chunk_id = bytes.fromhex(text_id)
        except ValueError:
            raise FormatError(f"chunks info file {path}: invalid chunk ID {text_id!r}") from None
        found[chunk_id] = (plain, packed)
    return found


def _sizes_ok(plain: object, packed: object) -> bool:
    return (isinstance(plain, int) and not isinstance(plain, bool) and 0 <= plain <= CHUNK_SIZE_LIMIT
            and isinstance(packed, int) and not isinstance(packed, bool) and 0 <= packed <= 2 * CHUNK_SIZE_LIMIT)


def compressed_size_of(ids: Iterable[bytes], sizes: Mapping[bytes, int], infos: Mapping[bytes, tuple[int, int]]) -> int:
    """The compressed bytes of ``ids`` per ``infos``; 0 when any of them has no compressed size there.

    A partial sum would understate a download, so the Go tool reports
    nothing rather than a wrong number.  A chunk whose size in ``infos``
    differs from the index's means the file belongs to another index.
    """
    total = 0
    known = True
    for chunk_id in ids:
        info = infos.get(chunk_id)
        if info is None:
            known = False
            continue
        plain, packed = info
        if plain != sizes[chunk_id]:
            raise DesyncError(f"the chunks info file has an unexpected size for the chunk {chunk_id.hex()}: "
                              f"{plain} instead of {sizes[chunk_id]}")
        if packed == 0:
            known = False
        total += packed
    return total if known else 0
