"""Regular files of seed trees, for sharing a file's data instead of storing it again.

When ``untar --seed DIR`` extracts a regular file, :class:`SeedFiles` names
the seed files that may hold the same contents: the file at the same path
first, then other files of the same size (content match).  The extractor
(:mod:`desync.catar.extract`) writes the archive's bytes, then clones a
candidate with FICLONERANGE (``--reflink``) or hardlinks it (``--hardlink
yes``, only when the seed file's owner, mode, times and extended attributes
are what the archive wants: a hardlink shares them) under a temp name, and
keeps the shared copy only when its bytes hash to what the archive holds.
"""

from __future__ import annotations

import os

from .. import fsutil
from ..errors import DesyncError
from ..records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..reflink import Reflink

# Seed files of the right size tried per extracted file (each try reads the candidate once).
MAX_CANDIDATES = 3


class ReuseStats(Record):
    """Bytes of extracted files that share a seed file's data."""

    FIELDS = ("cloned_bytes", "cloned_files", "hardlinked_bytes", "hardlinked_files")

    def __init__(self) -> None:
        self.cloned_bytes = 0
        self.cloned_files = 0
        self.hardlinked_bytes = 0
        self.hardlinked_files = 0


class SeedFiles:
    """The regular files under the seed directories, by path and by size."""

    def __init__(self, roots: list[str], reflink: Reflink = "auto", hardlink: bool = False) -> None:
        self.roots = [os.fsencode(r) for r in roots]
        self.reflink: Reflink = reflink
        self.may_clone = reflink != "no"  # cleared when the file system refuses a clone ("auto")
        self.hardlink = hardlink
        self.stats = ReuseStats()
        self._by_size: dict[int, list[bytes]] = {}
        self._known: set[bytes] = set()
        for root in self.roots:
            if not os.path.isdir(root):
                raise DesyncError(f"seed {os.fsdecode(root)} is not a directory")
            self._scan(root)

    def _scan(self, root: bytes) -> None:
        for p, size in fsutil.regular_files(root):
            self._by_size.setdefault(size, []).append(p)
            self._known.add(p)

    @property
    def active(self) -> bool:
        """Whether a file can still be shared at all (cloning not refused, or hardlinks allowed)."""
        return self.may_clone or self.hardlink

    def candidates(self, path: tuple[bytes, ...], size: int) -> list[bytes]:
        """Seed files that may hold a ``size``-byte file archived at ``path``: same path first."""
        same = [p for p in (os.path.join(root, *path) for root in self.roots) if p in self._known]
        found = [p for p in same if _size(p) == size]
        for p in self._by_size.get(size, ()):
            if len(found) >= MAX_CANDIDATES:
                break
            if p not in found:
                found.append(p)
        return found[:MAX_CANDIDATES]


def _size(path: bytes) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return -1
