"""The chunk name layout every store and the chunk server share: ``<id[:4]>/<id><suffix>`` (docs/layout.md 1).

One place, so that the local, SFTP, S3 and HTTP stores, store listings and
the chunk server's target parsing cannot drift apart.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Final


_HEX: Final = frozenset("0123456789abcdef")


def is_hex(name: str, length: int) -> bool:
    """Whether ``name`` is ``length`` lower-case hex digits (a prefix directory or a chunk ID)."""
    return len(name) == length and all(c in _HEX for c in name)


def chunk_prefix(chunk_id: bytes) -> str:
    """The prefix directory a chunk lies in: the first four hex digits of its ID."""
    return chunk_id[:2].hex()


def chunk_name(chunk_id: bytes, suffix: str) -> str:
    """``<id[:4]>/<id><suffix>``, relative to the store's root."""
    h = chunk_id.hex()
    return f"{h[:4]}/{h}{suffix}"


def is_prefix_name(name: str) -> bool:
    """Whether a directory entry at the store's root is a prefix directory."""
    return is_hex(name, 4)


def listed_chunk(prefix: str, name: str, suffix: str) -> str | None:
    """The hex ID a file ``name`` in directory ``prefix`` holds (with or without ``suffix``); None for others."""
    if suffix and name.endswith(suffix):
        name = name[: -len(suffix)]
    if name.startswith(prefix) and is_hex(name, 64):
        return name
    return None


def chunk_id_from_name(name: str, suffix: str) -> bytes | None:
    """``<id[:4]>/<id><suffix>`` to the ID; None for a name of any other shape or a prefix that does not match."""
    if len(name) != 69 + len(suffix) or name[4] != "/" or not name.endswith(suffix):
        return None
    hex_id = name[5:69]
    if not name.startswith(hex_id[:4]) or not is_hex(hex_id, 64):
        return None
    return bytes.fromhex(hex_id)
