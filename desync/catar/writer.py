"""Serialise a depth-first walk into catar records, tracking offsets.

Sources (the file-system encoder, the tar converter) drive an
:class:`ArchiveWriter` with ``root``/``child``/``end_dir`` calls in casync
order; the writer produces the exact record bytes, remembers where each
directory item starts and ends, and emits the GOODBYE tables.  Memory is
one small list of GOODBYE items per open directory level.

Public API: ``meta_records(meta, flags) -> bytes``, ``ArchiveWriter``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import featureflags as ff
from ..constants import (
    CA_FORMAT_ACL_DEFAULT_GROUP,
    CA_FORMAT_ACL_DEFAULT_USER,
    CA_FORMAT_ACL_GROUP,
    CA_FORMAT_ACL_GROUP_OBJ,
    CA_FORMAT_ACL_USER,
    CA_FORMAT_FCAPS,
    CA_FORMAT_FILENAME,
    CA_FORMAT_GROUP,
    CA_FORMAT_QUOTA_PROJID,
    CA_FORMAT_SELINUX,
    CA_FORMAT_SYMLINK,
    CA_FORMAT_USER,
)
from ..errors import DesyncError
from .format import (
    GoodbyeItem,
    acl_default_record,
    acl_named_record,
    archive_mode,
    archive_mtime,
    device_record,
    entry_record,
    goodbye_hash,
    goodbye_record,
    goodbye_size,
    payload_header,
    raw_record,
    string_record,
    u64_record,
    valid_filename,
    xattr_record,
)
from .model import AclEntry, Meta

_UIDS = ff.WITH_16BIT_UIDS | ff.WITH_32BIT_UIDS


def meta_records(meta: Meta, flags: int) -> bytes:
    """ENTRY plus the metadata records casync writes before the body (5.3)."""
    uid = meta.uid if flags & _UIDS else 0
    gid = meta.gid if flags & _UIDS else 0
    fsflags = meta.fsflags & flags if (meta.is_reg or meta.is_dir) else 0
    parts = [
        entry_record(flags, archive_mode(meta.mode, flags), fsflags, uid, gid, archive_mtime(meta.mtime_ns, flags))
    ]
    if flags & ff.WITH_USER_NAMES:
        if meta.user_name:
            parts.append(string_record(CA_FORMAT_USER, meta.user_name))
        if meta.group_name:
            parts.append(string_record(CA_FORMAT_GROUP, meta.group_name))
    if flags & ff.WITH_XATTRS and not meta.is_symlink:
        for name, value in meta.xattrs:
            parts.append(xattr_record(name, value))
    if flags & ff.WITH_ACL and meta.acl is not None and not meta.is_symlink:
        acl = meta.acl
        parts.extend(_acl_list(CA_FORMAT_ACL_USER, acl.users))
        parts.extend(_acl_list(CA_FORMAT_ACL_GROUP, acl.groups))
        if acl.group_obj is not None:
            parts.append(u64_record(CA_FORMAT_ACL_GROUP_OBJ, acl.group_obj))
        if meta.is_dir:
            if acl.default is not None:
                d = acl.default
                parts.append(acl_default_record(d.user_obj, d.group_obj, d.other, d.mask))
            parts.extend(_acl_list(CA_FORMAT_ACL_DEFAULT_USER, acl.default_users))
            parts.extend(_acl_list(CA_FORMAT_ACL_DEFAULT_GROUP, acl.default_groups))
    if flags & ff.WITH_SELINUX and meta.selinux:
        parts.append(string_record(CA_FORMAT_SELINUX, meta.selinux))
    if flags & ff.WITH_FCAPS and meta.fcaps and meta.is_reg:
        parts.append(raw_record(CA_FORMAT_FCAPS, meta.fcaps))
    if flags & ff.WITH_QUOTA_PROJID and meta.projid and (meta.is_reg or meta.is_dir):
        parts.append(u64_record(CA_FORMAT_QUOTA_PROJID, meta.projid))
    return b"".join(parts)


def _acl_list(rtype: int, entries: list[AclEntry]) -> list[bytes]:
    return [acl_named_record(rtype, e.ident, e.permissions, e.name) for e in entries]


@dataclass
class _Dir:
    entry_offset: int
    item_start: int  # offset of this directory's FILENAME in its parent (-1 for the root)
    name_hash: int = 0
    items: list[GoodbyeItem] = field(default_factory=list)  # offset field = absolute start


class ArchiveWriter:
    """Produces catar bytes for a walk given in casync order.

    Call ``root(meta)`` once, then for every child ``child(name, meta)``
    followed by its body: directories continue with nested ``child`` calls
    and ``end_dir()``; regular files with ``payload_bytes`` accounting for
    exactly ``meta.size`` bytes and then ``end_leaf()``; others need only
    ``end_leaf()`` (their body is written by ``child``).  Every method
    returns the bytes to append; ``offset`` is the archive size so far.
    """

    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.offset = 0
        self._stack: list[_Dir] = []
        self._leaf_start = -1
        self._leaf_hash = 0
        self._payload_left = 0

    @property
    def depth(self) -> int:
        return len(self._stack)

    def root(self, meta: Meta) -> bytes:
        if self.offset or self._stack:
            raise DesyncError("archive root written twice")
        if not meta.is_dir:
            raise DesyncError("the root of an archive must be a directory")
        data = meta_records(meta, self.flags)
        self._stack.append(_Dir(entry_offset=0, item_start=-1))
        self.offset += len(data)
        return data

    def child(self, name: bytes, meta: Meta) -> bytes:
        """FILENAME, ENTRY, metadata and (except for files/dirs) the body."""
        if not self._stack or self._leaf_start >= 0:
            raise DesyncError("archive child outside an open directory")
        if not valid_filename(name):
            raise DesyncError(f"invalid file name {name!r}")
        start = self.offset
        parts = [string_record(CA_FORMAT_FILENAME, name)]
        entry_at = start + len(parts[0])
        parts.append(meta_records(meta, self.flags))
        if meta.is_dir:
            self._stack.append(_Dir(entry_offset=entry_at, item_start=start, name_hash=goodbye_hash(name)))
        else:
            self._leaf_start = start
            self._leaf_hash = goodbye_hash(name)
            if meta.is_reg:
                parts.append(payload_header(meta.size))
                self._payload_left = meta.size
            elif meta.is_symlink:
                if not meta.target or b"\0" in meta.target:
                    raise DesyncError(f"{name!r}: invalid symlink target")
                parts.append(string_record(CA_FORMAT_SYMLINK, meta.target))
            elif meta.is_device:
                parts.append(device_record(meta.rdev_major, meta.rdev_minor))
        data = b"".join(parts)
        self.offset += len(data)
        return data

    def payload_bytes(self, n: int) -> None:
        """Account for ``n`` bytes of the current file's contents."""
        if n > self._payload_left:
            raise DesyncError("file grew while it was archived")
        self._payload_left -= n
        self.offset += n

    def end_leaf(self) -> None:
        if self._leaf_start < 0:
            raise DesyncError("no open archive entry")
        if self._payload_left:
            raise DesyncError("file shrank while it was archived")
        parent = self._stack[-1]
        parent.items.append(GoodbyeItem(self._leaf_start, self.offset - self._leaf_start, self._leaf_hash))
        self._leaf_start = -1

    def end_dir(self) -> bytes:
        """The GOODBYE of the innermost open directory."""
        if not self._stack or self._leaf_start >= 0:
            raise DesyncError("no open archive directory")
        d = self._stack.pop()
        g = self.offset
        items = [GoodbyeItem(g - it.offset, it.size, it.hash) for it in d.items]
        data = goodbye_record(items, g - d.entry_offset)
        assert len(data) == goodbye_size(len(items))
        self.offset += len(data)
        if self._stack:
            self._stack[-1].items.append(GoodbyeItem(d.item_start, self.offset - d.item_start, d.name_hash))
        return data
