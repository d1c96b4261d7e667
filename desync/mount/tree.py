"""The directory tree of a catar stream, with where each file's contents start.

The stream is decoded once at mount time (file contents skipped, see
:mod:`desync.mount.source`); afterwards lookups are dictionary walks and a
file read is a read of the stream at the file's payload offset.
"""

from dataclasses import dataclass

from .. import featureflags as ff
from ..catar.decoder import DirEnd, decode
from ..catar.model import Meta
from ..errors import FormatError
from .source import RandomAccess, SkippingReader

ROOT_INO = 1


@dataclass(slots=True)
class Entry:
    """One archived object; directories map child names to inode numbers."""

    ino: int
    parent: int
    meta: Meta
    payload_offset: int = -1
    children: dict[bytes, int] | None = None
    subdirs: int = 0


class ArchiveTree:
    """Every entry of an archive, by inode number (the root is 1) and by path."""

    def __init__(self, source: RandomAccess, expected_flags: int | None = None) -> None:
        self.source = source
        self.entries: list[Entry] = []
        self.flags = 0
        reader = SkippingReader(source)
        stack: list[Entry] = []
        for event in decode(reader, expected_flags=expected_flags):
            if isinstance(event, DirEnd):
                stack.pop()
                continue
            entry = Entry(len(self.entries) + 1, stack[-1].ino if stack else ROOT_INO, event.meta)
            self.entries.append(entry)
            if event.payload is not None:
                entry.payload_offset = event.payload.offset
                reader.skip(event.payload.offset, event.payload.offset + event.payload.size)
            if event.path:
                parent = stack[-1]
                assert parent.children is not None
                parent.children[event.path[-1]] = entry.ino
                if event.meta.is_dir:
                    parent.subdirs += 1
            else:
                self.flags = event.feature_flags
            if event.meta.is_dir:
                entry.children = {}
                stack.append(entry)
        if not self.entries:
            raise FormatError("the archive is empty")

    @property
    def has_owners(self) -> bool:
        """Whether the archive stores uids and gids (else every entry says 0)."""
        return bool(self.flags & (ff.WITH_16BIT_UIDS | ff.WITH_32BIT_UIDS))

    def entry(self, ino: int) -> Entry:
        return self.entries[ino - 1]

    def lookup(self, path: bytes) -> Entry | None:
        """The entry at an absolute path such as ``b"/a/b"``, or None."""
        entry = self.entries[0]
        for name in path.split(b"/"):
            if not name:
                continue
            children = entry.children
            if children is None:
                return None
            ino = children.get(name)
            if ino is None:
                return None
            entry = self.entries[ino - 1]
        return entry

    def read(self, entry: Entry, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of a regular file's contents from ``offset``."""
        end = min(offset + size, entry.meta.size)
        if entry.payload_offset < 0 or offset < 0 or offset >= end:
            return b""
        return self.source.read(entry.payload_offset + offset, end - offset)
