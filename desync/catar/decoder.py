"""A strict, streaming decoder for catar archives of any feature set.

``decode(source) -> Iterator[Node | DirEnd]`` reads records from anything
with ``read(n)`` and yields one :class:`Node` per archived object, in
archive order, and a :class:`DirEnd` after the last child of each
directory (so consumers can apply directory metadata after the contents).
A regular file's contents are not loaded: ``node.payload`` reads or copies
them in blocks and is only valid until the next item is requested
(anything left unread is skipped).

The decoder applies casync's reader checks (docs/formats.md 5.12): record
sizes, types and order, ENTRY values against the archive's feature flags,
names, symlink targets, devices, ACL consistency and the GOODBYE tail.  It
additionally rejects duplicate names in a directory, data after the end of
the archive, and GOODBYE tables whose items do not describe the directory's
children (``strict_goodbye_order`` also demands casync's exact item
order).  Every error is a :class:`FormatError` naming the byte offset.

Nothing recurses: nested directories live on an explicit stack holding,
per open directory, its child names and GOODBYE items.

Public API: ``decode``, ``Node``, ``DirEnd``, ``Payload``,
``IterableReader`` (turns an iterator of byte pieces into a source).
"""

from __future__ import annotations

import io
import os
import stat
from typing import Any, Callable, Iterable, Iterator, Protocol

from .. import featureflags as ff
from ..constants import (
    CA_FORMAT_ACL_DEFAULT,
    CA_FORMAT_ACL_DEFAULT_GROUP,
    CA_FORMAT_ACL_DEFAULT_USER,
    CA_FORMAT_ACL_GROUP,
    CA_FORMAT_ACL_GROUP_OBJ,
    CA_FORMAT_ACL_USER,
    CA_FORMAT_DEVICE,
    CA_FORMAT_ENTRY,
    CA_FORMAT_FCAPS,
    CA_FORMAT_FILENAME,
    CA_FORMAT_GOODBYE,
    CA_FORMAT_GOODBYE_TAIL_MARKER,
    CA_FORMAT_GROUP,
    CA_FORMAT_PAYLOAD,
    CA_FORMAT_QUOTA_PROJID,
    CA_FORMAT_SELINUX,
    CA_FORMAT_SYMLINK,
    CA_FORMAT_USER,
    CA_FORMAT_XATTR,
)
from ..errors import FormatError
from ..records import Record
from .format import (
    ACL_DEFAULT_BODY,
    ACL_MISSING,
    ACL_PERMISSIONS_MASK,
    ENTRY_BODY,
    ENTRY_FLAG_BITS,
    ENTRY_SIZE,
    FCAPS_MAX,
    GOODBYE_ITEM,
    GOODBYE_MIN_SIZE,
    HEADER,
    HEADER_SIZE,
    NAME_MAX,
    OFFSET_MAX,
    PERMS_MASK,
    S_IFMT,
    SELINUX_LABEL_MAX,
    SYMLINK_TARGET_MAX,
    TWO_U64,
    U64,
    USER_NAME_MAX,
    VALID_TYPES,
    XATTR_NAME_MAX,
    XATTR_VALUE_MAX,
    GoodbyeItem,
    goodbye_hash,
    goodbye_size,
    device_in_range,
    goodbye_table,
    ids_in_range,
    type_feature,
    valid_filename,
    valid_user_name,
    valid_xattr_name,
)
from .model import Acl, AclDefault, AclEntry, Meta

DEFAULT_BLOCK_SIZE = 1 << 20
READ_AHEAD = 4096


class ByteSource(Protocol):
    def read(self, n: int, /) -> bytes: ...


def _regular_file_fd(source: io.BufferedIOBase | io.RawIOBase) -> int:
    """The descriptor behind a seekable regular-file source, else -1."""
    try:
        if not source.seekable():
            return -1
        fd = source.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else -1
    except (OSError, ValueError):
        return -1


class _FileReader:
    """Reads an archive file with pread and a small read-ahead, and passes over file contents unread.

    Records are read a few KiB at a time; file contents beyond the
    read-ahead are skipped by moving the offset (no system call), so they
    can be copied file to file later.
    """

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.offset = offset  # file offset just past self.buf
        self.buf = b""
        self.bpos = 0

    def buffered(self) -> int:
        return len(self.buf) - self.bpos

    def read(self, n: int, /) -> bytes:
        avail = len(self.buf) - self.bpos
        if not avail:
            if n >= READ_AHEAD:
                data = os.pread(self.fd, n, self.offset)
                self.offset += len(data)
                return data
            self.buf = os.pread(self.fd, READ_AHEAD, self.offset)
            self.offset += len(self.buf)
            self.bpos = 0
            avail = len(self.buf)
        take = n if n < avail else avail
        start = self.bpos
        self.bpos = start + take
        return self.buf[start:start + take]

    def skip(self, n: int) -> int:
        """Pass over ``n`` bytes; returns the file offset where they start."""
        avail = len(self.buf) - self.bpos
        at = self.offset - avail
        if n <= avail:
            self.bpos += n
        else:
            self.offset += n - avail
            self.buf = b""
            self.bpos = 0
        return at


class IterableReader:
    """A ``read(n)`` source over an iterable of byte pieces (e.g. ``encode_tree``)."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._it = iter(pieces)
        self._buf = b""
        self._pos = 0

    def read(self, n: int = -1, /) -> bytes:
        out: list[bytes] = []
        want = n
        while want != 0:
            if self._pos >= len(self._buf):
                try:
                    self._buf = next(self._it)
                except StopIteration:
                    break
                self._pos = 0
                continue
            avail = len(self._buf) - self._pos
            take = avail if want < 0 or want >= avail else want
            out.append(self._buf[self._pos : self._pos + take])
            self._pos += take
            if want > 0:
                want -= take
        return b"".join(out)


# Metadata records: type -> (stage, repeatable, feature bit).
_META: dict[int, tuple[int, bool, int]] = {
    CA_FORMAT_USER: (1, False, ff.WITH_USER_NAMES),
    CA_FORMAT_GROUP: (2, False, ff.WITH_USER_NAMES),
    CA_FORMAT_XATTR: (3, True, ff.WITH_XATTRS),
    CA_FORMAT_ACL_USER: (4, True, ff.WITH_ACL),
    CA_FORMAT_ACL_GROUP: (5, True, ff.WITH_ACL),
    CA_FORMAT_ACL_GROUP_OBJ: (6, False, ff.WITH_ACL),
    CA_FORMAT_ACL_DEFAULT: (7, False, ff.WITH_ACL),
    CA_FORMAT_ACL_DEFAULT_USER: (8, True, ff.WITH_ACL),
    CA_FORMAT_ACL_DEFAULT_GROUP: (9, True, ff.WITH_ACL),
    CA_FORMAT_SELINUX: (10, False, ff.WITH_SELINUX),
    CA_FORMAT_FCAPS: (11, False, ff.WITH_FCAPS),
    CA_FORMAT_QUOTA_PROJID: (12, False, ff.WITH_QUOTA_PROJID),
}
_KNOWN_TYPES = frozenset(
    set(_META)
    | {CA_FORMAT_ENTRY, CA_FORMAT_PAYLOAD, CA_FORMAT_SYMLINK, CA_FORMAT_DEVICE, CA_FORMAT_FILENAME, CA_FORMAT_GOODBYE}
)
_RECORD_NAMES = {
    CA_FORMAT_ENTRY: "ENTRY",
    CA_FORMAT_USER: "USER",
    CA_FORMAT_GROUP: "GROUP",
    CA_FORMAT_XATTR: "XATTR",
    CA_FORMAT_ACL_USER: "ACL_USER",
    CA_FORMAT_ACL_GROUP: "ACL_GROUP",
    CA_FORMAT_ACL_GROUP_OBJ: "ACL_GROUP_OBJ",
    CA_FORMAT_ACL_DEFAULT: "ACL_DEFAULT",
    CA_FORMAT_ACL_DEFAULT_USER: "ACL_DEFAULT_USER",
    CA_FORMAT_ACL_DEFAULT_GROUP: "ACL_DEFAULT_GROUP",
    CA_FORMAT_SELINUX: "SELINUX",
    CA_FORMAT_FCAPS: "FCAPS",
    CA_FORMAT_QUOTA_PROJID: "QUOTA_PROJID",
    CA_FORMAT_SYMLINK: "SYMLINK",
    CA_FORMAT_DEVICE: "DEVICE",
    CA_FORMAT_PAYLOAD: "PAYLOAD",
    CA_FORMAT_FILENAME: "FILENAME",
    CA_FORMAT_GOODBYE: "GOODBYE",
}
# Largest body each bounded record may have (PAYLOAD is streamed instead).
_MAX_BODY = {
    CA_FORMAT_USER: USER_NAME_MAX + 1,
    CA_FORMAT_GROUP: USER_NAME_MAX + 1,
    CA_FORMAT_XATTR: XATTR_NAME_MAX + 1 + XATTR_VALUE_MAX,
    CA_FORMAT_ACL_USER: 16 + USER_NAME_MAX + 1,
    CA_FORMAT_ACL_GROUP: 16 + USER_NAME_MAX + 1,
    CA_FORMAT_ACL_DEFAULT_USER: 16 + USER_NAME_MAX + 1,
    CA_FORMAT_ACL_DEFAULT_GROUP: 16 + USER_NAME_MAX + 1,
    CA_FORMAT_ACL_GROUP_OBJ: 8,
    CA_FORMAT_ACL_DEFAULT: 32,
    CA_FORMAT_SELINUX: SELINUX_LABEL_MAX + 1,
    CA_FORMAT_FCAPS: FCAPS_MAX,
    CA_FORMAT_QUOTA_PROJID: 8,
    CA_FORMAT_SYMLINK: SYMLINK_TARGET_MAX + 1,
    CA_FORMAT_DEVICE: 16,
    CA_FORMAT_FILENAME: NAME_MAX + 1,
    CA_FORMAT_ENTRY: ENTRY_SIZE - HEADER_SIZE,
}


def record_name(rtype: int) -> str:
    return _RECORD_NAMES.get(rtype, f"unknown record type {rtype:#018x}")


class Node:
    """One archived object; ``path`` is ``()`` for the root directory.

    A plain class (one per entry; a dataclass's ``__init__`` runs as
    interpreted code), compared by value.
    """

    __slots__ = ("path", "meta", "offset", "feature_flags", "payload")

    def __init__(self, path: tuple[bytes, ...], meta: Meta, offset: int, feature_flags: int,
                 payload: "Payload | None" = None) -> None:
        self.path = path
        self.meta = meta
        self.offset = offset
        self.feature_flags = feature_flags
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return (self.path == other.path and self.meta == other.meta and self.offset == other.offset
                and self.feature_flags == other.feature_flags and self.payload == other.payload)

    def __repr__(self) -> str:
        return (f"Node(path={self.path!r}, meta={self.meta!r}, offset={self.offset!r}, "
                f"feature_flags={self.feature_flags!r}, payload={self.payload!r})")

    @property
    def name(self) -> bytes:
        return self.path[-1] if self.path else b"."

    @property
    def relpath(self) -> bytes:
        return b"/".join(self.path) if self.path else b"."


class DirEnd(Record):
    """The end of a directory's children (its GOODBYE record)."""

    FIELDS = ("path", "meta", "offset")

    def __init__(self, path: tuple[bytes, ...], meta: Meta, offset: int) -> None:
        self.path = path
        self.meta = meta
        self.offset = offset

    @property
    def relpath(self) -> bytes:
        return b"/".join(self.path) if self.path else b"."


class Payload:
    """Streams one file's contents out of the archive."""

    def __init__(self, decoder: "_Decoder", size: int, offset: int) -> None:
        self._decoder = decoder
        self.size = size
        self.offset = offset
        self.remaining = size

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all remaining bytes for ``n < 0``; keep that for small files)."""
        if self.remaining <= 0 or n == 0:
            return b""
        take = self.remaining if n < 0 or n > self.remaining else n
        data = self._decoder.read_exact(take, "file contents")
        self.remaining -= take
        return data

    def blocks(self, block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[bytes]:
        while self.remaining > 0:
            yield self.read(block_size)

    def copy_to(self, write: Callable[[bytes], object], block_size: int = DEFAULT_BLOCK_SIZE) -> int:
        """Write the remaining contents with ``write``; returns the byte count."""
        total = 0
        for block in self.blocks(block_size):
            write(block)
            total += len(block)
        return total

    def skip(self) -> None:
        while self.remaining > 0:
            self.read(min(self.remaining, DEFAULT_BLOCK_SIZE))

    def file_range(self) -> tuple[int, int, int] | None:
        """``(fd, offset, size)`` of the unread contents inside the archive file, passed over.

        Lets a consumer copy the bytes file-to-file in the kernel (and on
        another thread) instead of reading them through Python; ``None`` when
        the archive is not a seekable regular file, or the contents were
        already read ahead with the records.  A copy that comes up short
        means the archive was truncated.
        """
        return self._decoder.detach(self)

    @property
    def source(self) -> object:
        """The archive source; whoever copies a file_range later keeps it (and so its descriptor) alive."""
        return self._decoder.owner


class _Dir:
    """A directory being decoded: its children so far, checked against its GOODBYE table."""

    def __init__(self, path: tuple[bytes, ...], meta: Meta, entry_offset: int) -> None:
        self.path = path
        self.meta = meta
        self.entry_offset = entry_offset
        self.names: set[bytes] = set()
        self.items: list[GoodbyeItem] = []  # offset = absolute FILENAME offset
        self.child_start = -1
        self.child_hash = 0


def decode(
    source: ByteSource,
    *,
    expected_flags: int | None = None,
    strict_goodbye_order: bool = False,
    numeric_names: bool = False,
) -> Iterator[Node | DirEnd]:
    """Decode a whole archive; see the module docstring.

    ``numeric_names`` accepts the decimal USER/GROUP names casync's encoder
    writes with ``user-names`` but no uid feature (its decoder refuses them);
    only for streams we produced ourselves, such as directory listings.
    """
    return _Decoder(source, expected_flags, strict_goodbye_order, numeric_names).run()


class _Decoder:
    def __init__(self, source: ByteSource, expected_flags: int | None, strict_order: bool, numeric_names: bool) -> None:
        self.owner: Any = source
        self.src = source
        self.file: _FileReader | None = None
        if isinstance(source, (io.BufferedIOBase, io.RawIOBase)):
            fd = _regular_file_fd(source)
            if fd >= 0:
                self.file = _FileReader(fd, source.tell())
                self.src = self.file
        self.numeric_names = numeric_names
        self.pos = 0
        self.flags = -1 if expected_flags is None else expected_flags
        self.strict_order = strict_order
        self._pending: tuple[int, int, int] | None = None  # (offset, size, type)

    def detach(self, payload: Payload) -> tuple[int, int, int] | None:
        n = payload.remaining
        f = self.file
        if f is None or n <= f.buffered():
            return None
        at = f.skip(n)
        self.pos += n
        payload.remaining = 0
        return f.fd, at, n

    def fail(self, offset: int, msg: str) -> FormatError:
        return FormatError(f"catar: {msg}", offset=offset)

    def read_exact(self, n: int, what: str) -> bytes:
        parts: list[bytes] = []
        left = n
        while left > 0:
            b = self.src.read(left)
            if not b:
                raise self.fail(self.pos, f"archive truncated in {what} ({left} more bytes expected)")
            parts.append(b)
            left -= len(b)
            self.pos += len(b)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def header(self) -> tuple[int, int, int] | None:
        """Next record header as (offset, size, type), or None at a clean EOF."""
        if self._pending is not None:
            h = self._pending
            self._pending = None
            return h
        at = self.pos
        first = self.src.read(HEADER_SIZE)
        if not first:
            return None
        self.pos += len(first)
        if len(first) < HEADER_SIZE:
            first += self.read_exact(HEADER_SIZE - len(first), "record header")
        size, rtype = HEADER.unpack(first)
        if size < HEADER_SIZE or size > OFFSET_MAX - at:
            # Past OFFSET_MAX no file could hold the record, and no file offset could address its end.
            raise self.fail(at, f"invalid record size {size}")
        if rtype not in _KNOWN_TYPES:
            raise self.fail(at, record_name(rtype))
        limit = _MAX_BODY.get(rtype)
        if limit is not None and size - HEADER_SIZE > limit:
            raise self.fail(at, f"{record_name(rtype)} record too large ({size} bytes)")
        return at, size, rtype

    def need_header(self, what: str) -> tuple[int, int, int]:
        h = self.header()
        if h is None:
            raise self.fail(self.pos, f"archive truncated: {what} expected")
        return h

    def run(self) -> Iterator[Node | DirEnd]:
        stack: list[_Dir] = []
        root_seen = False
        while True:
            if not stack:
                if root_seen:
                    h = self.header()
                    if h is not None:
                        raise self.fail(h[0], "data after the end of the archive")
                    return
                root_seen = True
                h = self.need_header("root ENTRY")
                node = self.read_object(h, ())
                if not node.meta.is_dir:
                    raise self.fail(0, "the archive root is not a directory")
                yield node
                stack.append(_Dir((), node.meta, node.offset))
                continue
            d = stack[-1]
            at, size, rtype = self.need_header("FILENAME or GOODBYE")
            if rtype == CA_FORMAT_FILENAME:
                name = self.cstring(at, size, "FILENAME")
                if not valid_filename(name):
                    raise self.fail(at, f"invalid file name {name!r}")
                if name in d.names:
                    raise self.fail(at, f"duplicate entry {name!r} in directory {_show(d.path)}")
                d.names.add(name)
                d.child_start = at
                d.child_hash = goodbye_hash(name)
                path = d.path + (name,)
                node = self.read_object(self.need_header("ENTRY"), path)
                yield node
                if node.payload is not None:
                    node.payload.skip()
                if node.meta.is_dir:
                    stack.append(_Dir(path, node.meta, node.offset))
                else:
                    d.items.append(GoodbyeItem(at, self.pos - at - self._pending_len(), d.child_hash))
            elif rtype == CA_FORMAT_GOODBYE:
                self.goodbye(at, size, d)
                stack.pop()
                yield DirEnd(d.path, d.meta, at)
                if stack:
                    p = stack[-1]
                    p.items.append(GoodbyeItem(p.child_start, self.pos - p.child_start, p.child_hash))
            else:
                raise self.fail(at, f"{record_name(rtype)} where FILENAME or GOODBYE was expected")

    def _pending_len(self) -> int:
        return HEADER_SIZE if self._pending is not None else 0

    def cstring(self, at: int, size: int, what: str) -> bytes:
        body = self.read_exact(size - HEADER_SIZE, what)
        if len(body) < 2 or body[-1] != 0 or b"\0" in body[:-1]:
            raise self.fail(at, f"{what} is not a non-empty NUL-terminated string")
        return body[:-1]

    def goodbye(self, at: int, size: int, d: _Dir) -> None:
        n = len(d.items)
        if size < GOODBYE_MIN_SIZE or (size - GOODBYE_MIN_SIZE) % 24:
            raise self.fail(at, f"invalid GOODBYE size {size}")
        if size != goodbye_size(n):
            raise self.fail(at, f"GOODBYE has {(size - GOODBYE_MIN_SIZE) // 24} items, directory has {n} entries")
        body = self.read_exact(size - HEADER_SIZE, "GOODBYE")
        entry_distance, tail_size, marker = GOODBYE_ITEM.unpack_from(body, size - HEADER_SIZE - 24)
        if marker != CA_FORMAT_GOODBYE_TAIL_MARKER:
            raise self.fail(at, "GOODBYE tail marker missing")
        if tail_size != size:
            raise self.fail(at, "GOODBYE tail size does not match the record size")
        if entry_distance < size or entry_distance != at - d.entry_offset:
            raise self.fail(at, "GOODBYE tail does not point back to the directory's ENTRY")
        got = [GoodbyeItem(*GOODBYE_ITEM.unpack_from(body, 24 * i)) for i in range(n)]
        want = [GoodbyeItem(at - it.offset, it.size, it.hash) for it in d.items]
        if self.strict_order:
            if got != goodbye_table(want):
                raise self.fail(at, "GOODBYE table differs from the directory contents")
        elif sorted(got, key=_item_key) != sorted(want, key=_item_key):
            raise self.fail(at, "GOODBYE table differs from the directory contents")

    def read_object(self, h: tuple[int, int, int], path: tuple[bytes, ...]) -> Node:
        at, size, rtype = h
        if rtype != CA_FORMAT_ENTRY:
            raise self.fail(at, f"{record_name(rtype)} where ENTRY was expected")
        if size != ENTRY_SIZE:
            raise self.fail(at, f"ENTRY size {size} is not {ENTRY_SIZE}")
        fflags, mode, eflags, uid, gid, mtime = ENTRY_BODY.unpack(self.read_exact(ENTRY_SIZE - HEADER_SIZE, "ENTRY"))
        self.check_entry(at, fflags, mode, eflags, uid, gid, mtime)
        flags = self.flags
        meta = Meta(mode=mode, uid=uid, gid=gid, mtime_ns=mtime, fsflags=eflags)
        stage = 0
        acl: Acl | None = None
        last_xattr = b""
        ftype = mode & S_IFMT
        while True:
            h2 = self.need_header("entry body")
            at2, size2, rtype2 = h2
            spec = _META.get(rtype2)
            if spec is None:
                break
            rstage, repeatable, bit = spec
            name = record_name(rtype2)
            if not flags & bit:
                raise self.fail(at2, f"{name} record but the archive flags lack its feature")
            if rstage < stage or (rstage == stage and not repeatable):
                raise self.fail(at2, f"{name} record out of order or duplicated")
            stage = rstage
            if ftype == stat.S_IFLNK and rstage in range(3, 10):
                raise self.fail(at2, f"{name} record on a symlink")
            if rtype2 == CA_FORMAT_USER:
                meta.user_name = self.user_name(at2, size2, name)
            elif rtype2 == CA_FORMAT_GROUP:
                meta.group_name = self.user_name(at2, size2, name)
            elif rtype2 == CA_FORMAT_XATTR:
                body = self.read_exact(size2 - HEADER_SIZE, name)
                nul = body.find(b"\0")
                xname = body[:nul] if nul >= 0 else b""
                if nul < 0 or not valid_xattr_name(xname):
                    raise self.fail(at2, "invalid XATTR name")
                if meta.xattrs and xname <= last_xattr:
                    raise self.fail(at2, f"XATTR {xname!r} not in strictly increasing order")
                last_xattr = xname
                meta.xattrs.append((xname, body[nul + 1 :]))
            elif rtype2 in (CA_FORMAT_ACL_USER, CA_FORMAT_ACL_GROUP, CA_FORMAT_ACL_DEFAULT_USER, CA_FORMAT_ACL_DEFAULT_GROUP):
                if acl is None:
                    acl = Acl()
                entry = self.acl_entry(at2, size2, name)
                if rtype2 == CA_FORMAT_ACL_USER:
                    acl.users.append(entry)
                elif rtype2 == CA_FORMAT_ACL_GROUP:
                    acl.groups.append(entry)
                else:
                    if ftype != stat.S_IFDIR:
                        raise self.fail(at2, "default ACL on a non-directory")
                    if rtype2 == CA_FORMAT_ACL_DEFAULT_USER:
                        acl.default_users.append(entry)
                    else:
                        acl.default_groups.append(entry)
            elif rtype2 == CA_FORMAT_ACL_GROUP_OBJ:
                if size2 != HEADER_SIZE + 8:
                    raise self.fail(at2, "ACL_GROUP_OBJ size is not 24")
                perm = U64.unpack(self.read_exact(8, name))[0]
                if perm & ~ACL_PERMISSIONS_MASK:
                    raise self.fail(at2, "invalid ACL permissions")
                if acl is None:
                    acl = Acl()
                acl.group_obj = perm
            elif rtype2 == CA_FORMAT_ACL_DEFAULT:
                if size2 != HEADER_SIZE + 32:
                    raise self.fail(at2, "ACL_DEFAULT size is not 48")
                if ftype != stat.S_IFDIR:
                    raise self.fail(at2, "default ACL on a non-directory")
                vals = ACL_DEFAULT_BODY.unpack(self.read_exact(32, name))
                for v in vals:
                    if v != ACL_MISSING and v & ~ACL_PERMISSIONS_MASK:
                        raise self.fail(at2, "invalid ACL permissions")
                if acl is None:
                    acl = Acl()
                acl.default = AclDefault(vals[0], vals[1], vals[2], vals[3])
            elif rtype2 == CA_FORMAT_SELINUX:
                meta.selinux = self.cstring(at2, size2, name)
            elif rtype2 == CA_FORMAT_FCAPS:
                if ftype != stat.S_IFREG:
                    raise self.fail(at2, "FCAPS on a non-regular file")
                if size2 == HEADER_SIZE:
                    raise self.fail(at2, "empty FCAPS record")
                meta.fcaps = self.read_exact(size2 - HEADER_SIZE, name)
            else:
                if size2 != HEADER_SIZE + 8:
                    raise self.fail(at2, "QUOTA_PROJID size is not 24")
                if ftype not in (stat.S_IFREG, stat.S_IFDIR):
                    raise self.fail(at2, "QUOTA_PROJID on something other than a file or directory")
                projid = U64.unpack(self.read_exact(8, name))[0]
                if not 1 <= projid <= 0xFFFFFFFF:
                    raise self.fail(at2, f"invalid quota project id {projid}")
                meta.projid = projid
        if acl is not None:
            if (acl.users or acl.groups) and acl.group_obj is None:
                raise self.fail(at, "named ACL entries without ACL_GROUP_OBJ")
            if (acl.default_users or acl.default_groups) and (acl.default is None or acl.default.mask == ACL_MISSING):
                raise self.fail(at, "default named ACL entries without a default mask")
            meta.acl = acl
        return self.body(at, h2, meta, path, fflags)

    def body(self, at: int, h: tuple[int, int, int], meta: Meta, path: tuple[bytes, ...], fflags: int) -> Node:
        bat, bsize, btype = h
        ftype = meta.mode & S_IFMT
        node = Node(path, meta, at, fflags)
        if ftype == stat.S_IFREG:
            if btype != CA_FORMAT_PAYLOAD:
                raise self.fail(bat, f"{record_name(btype)} where the PAYLOAD of a regular file was expected")
            meta.size = bsize - HEADER_SIZE
            node.payload = Payload(self, meta.size, bat + HEADER_SIZE)
        elif ftype == stat.S_IFLNK:
            if btype != CA_FORMAT_SYMLINK:
                raise self.fail(bat, f"{record_name(btype)} where the SYMLINK target was expected")
            target = self.cstring(bat, bsize, "SYMLINK")
            if len(target) > SYMLINK_TARGET_MAX:
                raise self.fail(bat, "symlink target too long")
            meta.target = target
        elif ftype in (stat.S_IFBLK, stat.S_IFCHR):
            if btype != CA_FORMAT_DEVICE:
                raise self.fail(bat, f"{record_name(btype)} where the DEVICE record was expected")
            if bsize != HEADER_SIZE + 16:
                raise self.fail(bat, "DEVICE size is not 32")
            major, minor = TWO_U64.unpack(self.read_exact(16, "DEVICE"))
            if not device_in_range(major, minor):
                raise self.fail(bat, f"device number {major}:{minor} out of range")
            meta.rdev_major = major
            meta.rdev_minor = minor
        elif ftype == stat.S_IFDIR:
            if btype not in (CA_FORMAT_FILENAME, CA_FORMAT_GOODBYE):
                raise self.fail(bat, f"{record_name(btype)} in a directory (FILENAME or GOODBYE expected)")
            self._pending = h
        else:
            if btype in (CA_FORMAT_PAYLOAD, CA_FORMAT_SYMLINK, CA_FORMAT_DEVICE, CA_FORMAT_ENTRY):
                raise self.fail(bat, f"{record_name(btype)} after a FIFO or socket entry")
            self._pending = h
        return node

    def user_name(self, at: int, size: int, what: str) -> bytes:
        name = self.cstring(at, size, what)
        if not valid_user_name(name) and not (self.numeric_names and name.isdigit()):
            raise self.fail(at, f"invalid {what} name {name!r}")
        return name

    def acl_entry(self, at: int, size: int, what: str) -> AclEntry:
        if size < HEADER_SIZE + 16:
            raise self.fail(at, f"{what} record too short")
        body = self.read_exact(size - HEADER_SIZE, what)
        ident, perm = TWO_U64.unpack_from(body, 0)
        if perm & ~ACL_PERMISSIONS_MASK:
            raise self.fail(at, "invalid ACL permissions")
        if ident >= 0xFFFFFFFF:
            raise self.fail(at, f"{what} id {ident} out of range")
        name: bytes | None = None
        if len(body) > 16:
            rest = body[16:]
            if len(rest) < 2 or rest[-1] != 0 or b"\0" in rest[:-1] or not valid_user_name(rest[:-1]):
                raise self.fail(at, f"invalid name in {what}")
            name = rest[:-1]
        return AclEntry(ident, perm, name)

    def check_entry(self, at: int, fflags: int, mode: int, eflags: int, uid: int, gid: int, mtime: int) -> None:
        if self.flags < 0:
            if fflags & ~ff.FEATURE_FLAGS_MAX:
                raise self.fail(at, f"archive feature flags {fflags:#018x} are not supported (too new)")
            if not ff.is_normalized(fflags):
                raise self.fail(at, f"archive feature flags {fflags:#018x} are not normalised")
            self.flags = fflags
        elif fflags != self.flags:
            raise self.fail(at, f"ENTRY feature flags {fflags:#018x} differ from the archive's {self.flags:#018x}")
        flags = fflags
        ftype = mode & S_IFMT
        if ftype not in VALID_TYPES or mode & ~(S_IFMT | PERMS_MASK):
            raise self.fail(at, f"invalid mode {mode:#o}")
        need = type_feature(mode)
        if need and not flags & need:
            raise self.fail(at, f"mode {mode:#o} but the archive flags do not allow this file type")
        perms = mode & PERMS_MASK
        is_dir = ftype == stat.S_IFDIR
        if ftype != stat.S_IFLNK and not flags & (ff.WITH_PERMISSIONS | ff.WITH_ACL):
            full = 0o777 if is_dir else 0o666
            allowed = {full, full & ~0o222} if flags & ff.WITH_READ_ONLY else {full}
            if perms not in allowed:
                raise self.fail(at, f"permissions {perms:04o} not representable with the archive flags")
        if eflags:
            if eflags & ~(flags & ENTRY_FLAG_BITS):
                raise self.fail(at, f"ENTRY flags {eflags:#x} not enabled in the archive flags")
            if ftype not in (stat.S_IFREG, stat.S_IFDIR):
                raise self.fail(at, "ENTRY flags on something other than a file or directory")
            if not is_dir and eflags & (ff.WITH_SUBVOLUME | ff.WITH_SUBVOLUME_RO):
                raise self.fail(at, "subvolume flags on a non-directory")
        if not ids_in_range(flags, uid, gid):
            if not flags & (ff.WITH_16BIT_UIDS | ff.WITH_32BIT_UIDS):
                raise self.fail(at, "uid/gid stored although the archive has no uid feature")
            bits = "16-bit" if flags & ff.WITH_16BIT_UIDS else "32-bit"
            raise self.fail(at, f"uid/gid {uid}/{gid} out of the {bits} range")
        g = ff.time_granularity(flags)
        if g == 0:
            if mtime:
                raise self.fail(at, "mtime stored although the archive has no time feature")
        elif mtime % g:
            raise self.fail(at, f"mtime {mtime} is not a multiple of the archive's {g} ns granularity")


def _item_key(it: GoodbyeItem) -> tuple[int, int, int]:
    return (it.offset, it.size, it.hash)


def _show(path: tuple[bytes, ...]) -> str:
    return repr(b"/".join(path) if path else b".")
