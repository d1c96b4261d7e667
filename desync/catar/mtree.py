"""``casync mtree`` and ``casync list`` output for archives and directories.

The text is what casync 2 prints, byte for byte: names and link targets
with every byte outside ``!``..``~`` (and ``#``, ``\\``) as ``\\ooo``; the
fields that the archive's feature flags carry, in casync's order; the
``flags=`` keyword listing only the FAT attributes and the append, nodump
and immutable chattr flags (for nodes other than files and directories
casync prints them all as set); file digests with the archive's digest.

A directory is listed the way casync does it, by encoding it with the
given feature flags and decoding that stream in memory (streamed, nothing
is written).

Public API: ``mtree_lines(events)``, ``list_lines(events)``,
``directory_events(path, flags, options)``, ``escape(raw)``,
``mode_string(mode)``.
"""

from __future__ import annotations

import stat
from typing import Final, Iterable, Iterator

from .. import featureflags as ff
from .decoder import DirEnd, IterableReader, Node, decode
from .encoder import EncodeOptions, encode_tree

_FLAG_WORDS: Final = (
    (ff.WITH_FLAG_HIDDEN, "hidden"),
    (ff.WITH_FLAG_SYSTEM, "system"),
    (ff.WITH_FLAG_ARCHIVE, "archive"),
    (ff.WITH_FLAG_APPEND, "sappend"),
    (ff.WITH_FLAG_NODUMP, "nodump"),
    (ff.WITH_FLAG_IMMUTABLE, "simmutable"),
)
_MTREE_FLAG_BITS: Final = (
    ff.WITH_FLAG_HIDDEN
    | ff.WITH_FLAG_SYSTEM
    | ff.WITH_FLAG_ARCHIVE
    | ff.WITH_FLAG_APPEND
    | ff.WITH_FLAG_NODUMP
    | ff.WITH_FLAG_IMMUTABLE
)
_UIDS: Final = ff.WITH_16BIT_UIDS | ff.WITH_32BIT_UIDS
_TYPE_WORDS: Final = {
    stat.S_IFDIR: "dir",
    stat.S_IFREG: "file",
    stat.S_IFLNK: "link",
    stat.S_IFBLK: "block",
    stat.S_IFCHR: "char",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}
_TYPE_CHARS: Final = {
    stat.S_IFDIR: "d",
    stat.S_IFREG: "-",
    stat.S_IFLNK: "l",
    stat.S_IFBLK: "b",
    stat.S_IFCHR: "c",
    stat.S_IFIFO: "p",
    stat.S_IFSOCK: "s",
}
_ESCAPED: Final = frozenset(b"#\\")
_BLOCK: Final = 1 << 20


def escape(raw: bytes) -> str:
    """casync's mtree/list escaping of a path or link target."""
    out: list[str] = []
    for c in raw:
        if c < 0x21 or c >= 0x7F or c in _ESCAPED:
            out.append(f"\\{c:03o}")
        else:
            out.append(chr(c))
    return "".join(out)


def mode_string(mode: int) -> str:
    """``ls -l`` style mode, e.g. ``drwxr-sr-x``; casync shows the sticky bit on directories only."""
    chars = [_TYPE_CHARS.get(mode & 0o170000, "?")]
    sticky = stat.S_ISVTX if stat.S_ISDIR(mode) else 0
    for shift, special, set_char in ((6, stat.S_ISUID, "s"), (3, stat.S_ISGID, "s"), (0, sticky, "t")):
        bits = (mode >> shift) & 7
        chars.append("r" if bits & 4 else "-")
        chars.append("w" if bits & 2 else "-")
        if mode & special:
            chars.append(set_char if bits & 1 else set_char.upper())
        else:
            chars.append("x" if bits & 1 else "-")
    return "".join(chars)


def _owner_name(name: bytes | None, ident: int) -> str | None:
    if name:
        return escape(name)
    return "root" if ident == 0 else None


def mtree_line(node: Node) -> str:
    """One mtree line; reads the payload of a regular file to digest it."""
    meta = node.meta
    flags = node.feature_flags
    ftype = meta.mode & 0o170000
    parts = [escape(node.relpath), "type=" + _TYPE_WORDS.get(ftype, "unknown"), f"mode={meta.mode & 0o7777:04o}"]
    if ftype == stat.S_IFREG:
        parts.append(f"size={meta.size}")
    elif ftype in (stat.S_IFBLK, stat.S_IFCHR):
        parts.append(f"device=linux,{meta.rdev_major},{meta.rdev_minor}")
    elif ftype == stat.S_IFLNK:
        parts.append("link=" + escape(meta.target))
    if flags & _UIDS:
        parts.append(f"uid={meta.uid}")
        parts.append(f"gid={meta.gid}")
    if flags & ff.WITH_USER_NAMES:
        uname = _owner_name(meta.user_name, meta.uid)
        gname = _owner_name(meta.group_name, meta.gid)
        if uname is not None:
            parts.append("uname=" + uname)
        if gname is not None:
            parts.append("gname=" + gname)
    if flags & _MTREE_FLAG_BITS:
        all_set = ftype not in (stat.S_IFREG, stat.S_IFDIR)
        words = [
            word if (all_set or meta.fsflags & bit) else "no" + word for bit, word in _FLAG_WORDS if flags & bit
        ]
        parts.append("flags=" + ",".join(words))
    if ff.time_granularity(flags):
        parts.append(f"time={meta.mtime_ns // 1_000_000_000}.{meta.mtime_ns % 1_000_000_000:09d}")
    if ftype == stat.S_IFREG:
        import hashlib

        h = hashlib.new("sha512_256" if flags & ff.SHA512_256 else "sha256")
        if node.payload is not None:
            for block in node.payload.blocks(_BLOCK):
                h.update(block)
        parts.append(("sha512256digest=" if flags & ff.SHA512_256 else "sha256digest=") + h.hexdigest())
    return " ".join(parts)


def mtree_lines(events: Iterable[Node | DirEnd]) -> Iterator[str]:
    """casync's mtree lines (without newlines) for decoded archive events."""
    for ev in events:
        if isinstance(ev, Node):
            yield mtree_line(ev)


def list_lines(events: Iterable[Node | DirEnd]) -> Iterator[str]:
    """casync's ``list`` lines: mode string and escaped path."""
    for ev in events:
        if isinstance(ev, Node):
            yield mode_string(ev.meta.mode) + " " + escape(ev.relpath)


def directory_events(
    path: str | bytes, flags: int, options: EncodeOptions | None = None
) -> Iterator[Node | DirEnd]:
    """Decoded events of a directory as an archive with ``flags`` would hold it."""
    return decode(IterableReader(encode_tree(path, flags, options)), numeric_names=True)
