"""Encode a directory tree into a catar stream, byte-identical to ``casync make``.

``encode_tree(path, flags, options) -> Iterator[bytes]`` yields the archive
in pieces of roughly ``options.block_size`` bytes.  ``encode_items`` yields
the same archive with the contents of larger files left in the files, as
:class:`FileSlice` items, so a writer can copy them in the kernel (and on
another thread) instead of passing them through Python.  It walks the tree
iteratively in casync order (children sorted by raw name bytes), reads file
contents in blocks and never follows symlinks below the root.  Memory is
bounded by the name lists of the directories on the current path; only the
current directory's descriptor is open (parents are reopened through
``..`` and checked by device/inode), so neither depth nor width of the tree
can exhaust the recursion limit or the descriptor table.

Which nodes and metadata are stored follows casync (docs/formats.md 5): type
feature bits, ``nodump`` (EXCLUDE_NODUMP), ``.caexclude`` files, other
mounts (EXCLUDE_SUBMOUNTS), API file systems such as /proc (kept as empty
directories), plus ``options.excludes`` patterns with ``.caexclude`` syntax
applied at the root.  casync 2 honours ``.caexclude`` files whether or not
the EXCLUDE_FILE bit is set (``--exclude-file=no`` only clears the bit in
the archive), and so do we: the same tree gives the same bytes.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from .. import featureflags as ff
from ..errors import DesyncError
from .exclude import Rule, match, parse_rules, read_rules_file
from .format import type_feature
from .fsread import FS_NODUMP_FL, VIRTUAL_FS_MAGICS, FsReader, fs_magic, raw_chattr
from .model import UidShift
from .writer import ArchiveWriter

DEFAULT_BLOCK_SIZE = 1 << 20
# Files up to this size are read inline by encode_items: one read is cheaper than a separate copy item.
INLINE_LIMIT = 16 << 10
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NOFOLLOW


@dataclass
class EncodeOptions:
    """Knobs beyond the feature flags."""

    excludes: Sequence[str | bytes] = ()
    block_size: int = DEFAULT_BLOCK_SIZE
    zero_times: bool = False  # store every mtime as 0 (the Go desync's tar --no-time)
    uid_shift: UidShift | None = None  # casync's --uid-shift/--uid-range: owners stored shifted
    # Told (path relative to the root, b"" for the root; True on starting an entry, False once it is
    # written) as the walk goes: casync -v's "Packing"/"Packed" lines.
    on_entry: Callable[[bytes, bool], None] | None = None


@dataclass
class _Frame:
    fd: int
    dev: int
    ino: int
    magic: int
    path: bytes
    names: list[bytes]
    rules: list[Rule]
    idx: int = 0


@dataclass
class FileSlice:
    """The next ``size`` bytes of the open file ``fd``: a file's contents not yet read.

    Whoever receives a slice owns ``fd`` and must close it; fewer than
    ``size`` bytes means the file shrank while it was archived.
    """

    fd: int
    size: int
    path: bytes

    def read_all(self) -> bytes:
        """The contents (closing the descriptor), or DesyncError if the file shrank."""
        try:
            parts: list[bytes] = []
            left = self.size
            while left > 0:
                block = os.read(self.fd, min(left, DEFAULT_BLOCK_SIZE))
                if not block:
                    raise shrank(self.path)
                parts.append(block)
                left -= len(block)
            return b"".join(parts)
        except OSError as e:
            raise DesyncError(f"cannot read {os.fsdecode(self.path)}: {e.strerror}") from None
        finally:
            os.close(self.fd)


def shrank(path: bytes) -> DesyncError:
    return DesyncError(f"{os.fsdecode(path)}: file shrank while it was archived")


@dataclass
class _Out:
    """Coalesces small records into pieces of about ``limit`` bytes (one copy each)."""

    limit: int
    parts: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, data: bytes) -> bytes | None:
        if not self.parts and len(data) >= self.limit:
            return data
        self.parts.append(data)
        self.size += len(data)
        if self.size >= self.limit:
            return self.take()
        return None

    def flush(self) -> bytes | None:
        return self.take() if self.parts else None

    def take(self) -> bytes:
        out = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = []
        self.size = 0
        return out


def _list_names(fd: int) -> list[bytes]:
    names = [os.fsencode(n) for n in os.listdir(fd)]
    names.sort()
    return names


def _join(parent: bytes, name: bytes) -> bytes:
    return name if not parent else parent + b"/" + name


def encode_tree(
    path: str | bytes, flags: int = ff.DESYNC_TAR_FLAGS, options: EncodeOptions | None = None
) -> Iterator[bytes]:
    """Yield the catar of the directory ``path`` with feature ``flags``."""
    return _Materialized(encode_items(path, flags, options, inline_limit=-1))


class _Materialized:
    """Items with every FileSlice read into bytes (an iterator class: see tests/test_mypyc_hazards.py)."""

    def __init__(self, items: Iterator[bytes | FileSlice]) -> None:
        self._items = items

    def __iter__(self) -> "_Materialized":
        return self

    def __next__(self) -> bytes:
        item = next(self._items)
        return item if isinstance(item, bytes) else item.read_all()


def encode_items(
    path: str | bytes,
    flags: int = ff.DESYNC_TAR_FLAGS,
    options: EncodeOptions | None = None,
    inline_limit: int = INLINE_LIMIT,
) -> Iterator[bytes | FileSlice]:
    """The catar of ``path`` as bytes and FileSlice items (files bigger than ``inline_limit``).

    A negative ``inline_limit`` reads every file inline.
    """
    opts = options or EncodeOptions()
    flags = ff.normalize(flags)
    reader = FsReader(flags)
    reader.zero_times = opts.zero_times
    reader.uid_shift = opts.uid_shift
    writer = ArchiveWriter(flags)
    out = _Out(max(opts.block_size, 4096))
    root_rules = parse_rules([os.fsencode(p) for p in opts.excludes])
    try:
        rootfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise DesyncError(f"cannot open directory {os.fsdecode(path)}: {e.strerror}") from None
    stack: list[_Frame] = []
    try:
        st = os.fstat(rootfd)
        magic = fs_magic(rootfd)
        chattr = raw_chattr(rootfd) if flags & (ff.WITH_CHATTR | ff.EXCLUDE_NODUMP) else 0
        meta = reader.read(st, rootfd, -1, b"", magic, chattr)
        if opts.on_entry is not None:
            opts.on_entry(b"", True)
        piece = out.add(writer.root(meta))
        if piece is not None:
            yield piece
        root_rules = root_rules + read_rules_file(rootfd)
        names = [] if magic in VIRTUAL_FS_MAGICS else _list_names(rootfd)
        stack.append(_Frame(rootfd, st.st_dev, st.st_ino, magic, b"", names, root_rules))
        while stack:
            fr = stack[-1]
            if fr.idx >= len(fr.names):
                piece = out.add(writer.end_dir())
                if piece is not None:
                    yield piece
                if opts.on_entry is not None:
                    opts.on_entry(fr.path, False)
                stack.pop()
                if stack:
                    stack[-1].fd = _reopen_parent(fr, stack[-1])
                os.close(fr.fd)
                fr.fd = -1
                continue
            name = fr.names[fr.idx]
            fr.idx += 1
            yield from _encode_child(fr, name, flags, reader, writer, out, stack, opts, inline_limit)
        piece = out.flush()
        if piece is not None:
            yield piece
    finally:
        for fr in stack:
            if fr.fd >= 0:
                os.close(fr.fd)


def _reopen_parent(child: _Frame, parent: _Frame) -> int:
    fd = os.open(b"..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=child.fd)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (parent.dev, parent.ino):
        os.close(fd)
        raise DesyncError(f"directory {os.fsdecode(parent.path) or '.'} was moved while it was archived")
    return fd


def _encode_child(
    fr: _Frame,
    name: bytes,
    flags: int,
    reader: FsReader,
    writer: ArchiveWriter,
    out: _Out,
    stack: list[_Frame],
    opts: EncodeOptions,
    inline_limit: int,
) -> Iterator[bytes | FileSlice]:
    rel = _join(fr.path, name)
    try:
        st = os.stat(name, dir_fd=fr.fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    mode = st.st_mode
    need = type_feature(mode)
    if need and not flags & need:
        return
    is_dir = stat.S_ISDIR(mode)
    is_reg = stat.S_ISREG(mode)
    if not (is_dir or is_reg or need):
        return
    if flags & ff.EXCLUDE_SUBMOUNTS and st.st_dev != fr.dev:
        return
    excluded, subrules = match(fr.rules, name, is_dir)
    if excluded:
        return
    fd = -1
    if is_dir or is_reg:
        try:
            fd = os.open(name, _OPEN_FLAGS | (os.O_DIRECTORY if is_dir else 0), dir_fd=fr.fd)
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                return  # replaced by something else since the stat
            raise DesyncError(f"cannot open {os.fsdecode(rel)}: {e.strerror}") from None
    try:
        if fd >= 0:
            st = os.fstat(fd)
            if stat.S_IFMT(st.st_mode) != stat.S_IFMT(mode):
                return
        magic = fr.magic if st.st_dev == fr.dev or fd < 0 else fs_magic(fd)
        chattr = 0
        if fd >= 0 and flags & (ff.WITH_CHATTR | ff.EXCLUDE_NODUMP):
            chattr = raw_chattr(fd)
            if flags & ff.EXCLUDE_NODUMP and chattr & FS_NODUMP_FL:
                return
        meta = reader.read(st, fd, fr.fd, name, magic, chattr)
        if opts.on_entry is not None:
            opts.on_entry(rel, True)
        piece = out.add(writer.child(name, meta))
        if piece is not None:
            yield piece
        if is_dir:
            rules = subrules + read_rules_file(fd)
            names = [] if magic in VIRTUAL_FS_MAGICS else _list_names(fd)
            stack.append(_Frame(fd, st.st_dev, st.st_ino, magic, rel, names, rules))
            os.close(fr.fd)
            fr.fd = -1
            fd = -1
            return
        if is_reg and 0 <= inline_limit < meta.size:
            writer.payload_bytes(meta.size)
            piece = out.flush()
            if piece is not None:
                yield piece
            item = FileSlice(fd, meta.size, rel)
            fd = -1
            yield item
        elif is_reg:
            left = meta.size
            while left > 0:
                block = os.read(fd, min(left, opts.block_size))
                if not block:
                    raise shrank(rel)
                writer.payload_bytes(len(block))
                left -= len(block)
                piece = out.add(block)
                if piece is not None:
                    yield piece
        writer.end_leaf()
        if opts.on_entry is not None:
            opts.on_entry(rel, False)
    finally:
        if fd >= 0:
            os.close(fd)
