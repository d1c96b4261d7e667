"""The metadata of one archived file-system object, independent of its source.

The file-system encoder, the tar converter and the decoder all speak
:class:`Meta`, so the record writer, the extractor and the tar writer need
to know only one shape.  Values are in archive terms: ``mode`` is the full
``S_IFMT | permissions`` word, ``fsflags`` holds WITH_FLAG_*/SUBVOLUME bits
(not kernel chattr bits), names and targets are raw bytes.

The records are plain classes with value semantics (:mod:`desync.records`):
every command that reads or writes an archive loads them.
"""

from __future__ import annotations

import stat
from typing import Final

from ..records import Record


class AclEntry(Record):
    """A named ACL entry (ACL_USER, ACL_GROUP and their default variants)."""

    FIELDS = ("ident", "permissions", "name")

    def __init__(self, ident: int, permissions: int, name: bytes | None = None) -> None:
        self.ident = ident
        self.permissions = permissions
        self.name = name


class AclDefault(Record):
    """The ACL_DEFAULT record; a missing value is ``format.ACL_MISSING``."""

    FIELDS = ("user_obj", "group_obj", "other", "mask")

    def __init__(self, user_obj: int, group_obj: int, other: int, mask: int) -> None:
        self.user_obj = user_obj
        self.group_obj = group_obj
        self.other = other
        self.mask = mask


class Acl(Record):
    """Everything casync stores about POSIX ACLs beyond the mode bits (5.8)."""

    FIELDS = ("users", "groups", "group_obj", "default", "default_users", "default_groups")

    def __init__(
        self,
        users: list[AclEntry] | None = None,
        groups: list[AclEntry] | None = None,
        group_obj: int | None = None,
        default: AclDefault | None = None,
        default_users: list[AclEntry] | None = None,
        default_groups: list[AclEntry] | None = None,
    ) -> None:
        self.users: list[AclEntry] = [] if users is None else users
        self.groups: list[AclEntry] = [] if groups is None else groups
        self.group_obj = group_obj
        self.default = default
        self.default_users: list[AclEntry] = [] if default_users is None else default_users
        self.default_groups: list[AclEntry] = [] if default_groups is None else default_groups

    def empty(self) -> bool:
        return (
            not self.users
            and not self.groups
            and self.group_obj is None
            and self.default is None
            and not self.default_users
            and not self.default_groups
        )


class Meta(Record):
    """One node's metadata as it is (or will be) stored in a catar."""

    FIELDS = ("mode", "uid", "gid", "mtime_ns", "fsflags", "size", "rdev_major", "rdev_minor", "target",
              "user_name", "group_name", "xattrs", "acl", "selinux", "fcaps", "projid")

    def __init__(
        self,
        mode: int,
        uid: int = 0,
        gid: int = 0,
        mtime_ns: int = 0,
        fsflags: int = 0,
        size: int = 0,
        rdev_major: int = 0,
        rdev_minor: int = 0,
        target: bytes = b"",
        user_name: bytes | None = None,
        group_name: bytes | None = None,
        xattrs: list[tuple[bytes, bytes]] | None = None,
        acl: Acl | None = None,
        selinux: bytes | None = None,
        fcaps: bytes | None = None,
        projid: int = 0,
    ) -> None:
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime_ns = mtime_ns
        self.fsflags = fsflags
        self.size = size
        self.rdev_major = rdev_major
        self.rdev_minor = rdev_minor
        self.target = target
        self.user_name = user_name
        self.group_name = group_name
        self.xattrs: list[tuple[bytes, bytes]] = [] if xattrs is None else xattrs
        self.acl = acl
        self.selinux = selinux
        self.fcaps = fcaps
        self.projid = projid

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_device(self) -> bool:
        return stat.S_ISCHR(self.mode) or stat.S_ISBLK(self.mode)

    @property
    def permissions(self) -> int:
        return self.mode & 0o7777

    @property
    def file_type(self) -> int:
        return self.mode & 0o170000


# Owner IDs casync never stores or restores: the 32-bit and the old 16-bit "-1".
_INVALID_IDS = (0xFFFF, 0xFFFFFFFF)


class UidShift(Record):
    """casync's ``--uid-shift``/``--uid-range``: owners seen through a user-namespace mapping.

    Archiving subtracts ``shift`` from every UID/GID (an ID below it is an
    error) and folds the result into ``0..range-1``; extracting folds the
    archive's ID into the range and adds ``shift``.  ``range`` 0 means the
    whole 32-bit space.  Either way the result must be a valid ID.
    """

    FIELDS = ("shift", "range")

    def __init__(self, shift: int = 0, range: int = 0x10000) -> None:
        self.shift: Final = shift
        self.range: Final = range

    def __hash__(self) -> int:
        return hash((self.shift, self.range))

    def to_archive(self, ident: int) -> int | None:
        """The ID stored for the file system's ``ident``; None when it cannot be mapped."""
        if ident in _INVALID_IDS or ident < self.shift:
            return None
        out = ident - self.shift
        if self.range:
            out %= self.range
        return None if out in _INVALID_IDS else out

    def from_archive(self, ident: int) -> int | None:
        """The file-system ID for the archive's ``ident``; None when it cannot be mapped."""
        if ident in _INVALID_IDS:
            return None
        out = (ident % self.range if self.range else ident) + self.shift
        return None if out > 0xFFFFFFFF or out in _INVALID_IDS else out
