"""POSIX ACLs: the kernel's xattr encoding <-> casync's ACL records.

casync reads ACLs through libacl; we read the same information from the
``system.posix_acl_access`` / ``system.posix_acl_default`` xattrs, whose
layout is fixed by the kernel ABI (version 2 header, then ``u16 tag, u16
perm, u32 id`` entries), and write them back the same way on extraction.

Public API: ``parse_xattr(data) -> PosixAcl``, ``build_xattr(PosixAcl) ->
bytes``, ``acl_from_xattrs(access, default, flags, names) -> Acl | None``,
``posix_acls_for(acl, mode, resolve) -> (access | None, default | None)``.
"""

from __future__ import annotations

import struct
from typing import Callable, Final

from .. import featureflags as ff
from ..errors import FormatError
from ..records import Record
from .format import ACL_MISSING
from .model import Acl, AclDefault, AclEntry

XATTR_ACCESS: Final = "system.posix_acl_access"
XATTR_DEFAULT: Final = "system.posix_acl_default"

ACL_USER_OBJ: Final = 0x01
ACL_USER: Final = 0x02
ACL_GROUP_OBJ: Final = 0x04
ACL_GROUP: Final = 0x08
ACL_MASK: Final = 0x10
ACL_OTHER: Final = 0x20
ACL_UNDEFINED_ID: Final = 0xFFFFFFFF

_HEAD: Final = struct.Struct("<I")
_ENTRY: Final = struct.Struct("<HHI")
_VERSION: Final = 2


class PosixAcl(Record):
    """A kernel ACL split by entry kind (``None`` = entry absent)."""

    FIELDS = ("user_obj", "group_obj", "mask", "other", "users", "groups")

    def __init__(
        self,
        user_obj: int | None = None,
        group_obj: int | None = None,
        mask: int | None = None,
        other: int | None = None,
        users: list[tuple[int, int]] | None = None,
        groups: list[tuple[int, int]] | None = None,
    ) -> None:
        self.user_obj = user_obj
        self.group_obj = group_obj
        self.mask = mask
        self.other = other
        self.users: list[tuple[int, int]] = [] if users is None else users  # (uid, perm)
        self.groups: list[tuple[int, int]] = [] if groups is None else groups  # (gid, perm)


def parse_xattr(data: bytes) -> PosixAcl:
    """Decode a ``system.posix_acl_*`` value."""
    if len(data) < 4 or (len(data) - 4) % 8 or _HEAD.unpack_from(data, 0)[0] != _VERSION:
        raise FormatError("malformed POSIX ACL xattr")
    out = PosixAcl()
    for off in range(4, len(data), 8):
        tag, perm, ident = _ENTRY.unpack_from(data, off)
        perm &= 7
        if tag == ACL_USER_OBJ:
            out.user_obj = perm
        elif tag == ACL_GROUP_OBJ:
            out.group_obj = perm
        elif tag == ACL_MASK:
            out.mask = perm
        elif tag == ACL_OTHER:
            out.other = perm
        elif tag == ACL_USER:
            out.users.append((ident, perm))
        elif tag == ACL_GROUP:
            out.groups.append((ident, perm))
    return out


def build_xattr(acl: PosixAcl) -> bytes:
    """Encode in the order the kernel requires (tags ascending, ids ascending)."""
    parts = [_HEAD.pack(_VERSION)]
    if acl.user_obj is not None:
        parts.append(_ENTRY.pack(ACL_USER_OBJ, acl.user_obj, ACL_UNDEFINED_ID))
    for uid, perm in sorted(set(acl.users)):
        parts.append(_ENTRY.pack(ACL_USER, perm, uid))
    if acl.group_obj is not None:
        parts.append(_ENTRY.pack(ACL_GROUP_OBJ, acl.group_obj, ACL_UNDEFINED_ID))
    for gid, perm in sorted(set(acl.groups)):
        parts.append(_ENTRY.pack(ACL_GROUP, perm, gid))
    if acl.mask is not None:
        parts.append(_ENTRY.pack(ACL_MASK, acl.mask, ACL_UNDEFINED_ID))
    if acl.other is not None:
        parts.append(_ENTRY.pack(ACL_OTHER, acl.other, ACL_UNDEFINED_ID))
    return b"".join(parts)


def _sort_key(e: AclEntry) -> tuple[int, int, bytes, int]:
    return (e.ident, 0 if e.name is None else 1, e.name or b"", e.permissions)


def _named(
    entries: list[tuple[int, int]], flags: int, lookup: Callable[[int], bytes | None],
    shift: Callable[[int], int] | None = None,
) -> list[AclEntry]:
    out: list[AclEntry] = []
    with_ids = bool(flags & (ff.WITH_16BIT_UIDS | ff.WITH_32BIT_UIDS))
    for ident, perm in entries:
        name = lookup(ident) if flags & ff.WITH_USER_NAMES else None
        stored = ident if shift is None else shift(ident)
        out.append(AclEntry(stored if with_ids else 0, perm, name))
    out.sort(key=_sort_key)
    return out


def _or_missing(v: int | None) -> int:
    return ACL_MISSING if v is None else v


def _opt(v: int) -> int | None:
    return None if v == ACL_MISSING else v


def acl_from_xattrs(
    access: bytes | None,
    default: bytes | None,
    flags: int,
    user_name: Callable[[int], bytes | None],
    group_name: Callable[[int], bytes | None],
    shift: Callable[[int], int] | None = None,
) -> Acl | None:
    """casync's ACL records for a node with these ACL xattrs (docs/formats.md 5.8).

    ``shift`` maps a qualifier's UID/GID to the one stored (``--uid-shift``); names are looked up unshifted.
    """
    acl = Acl()
    if access is not None:
        a = parse_xattr(access)
        acl.users = _named(a.users, flags, user_name, shift)
        acl.groups = _named(a.groups, flags, group_name, shift)
        if a.mask is not None and a.group_obj is not None:
            acl.group_obj = a.group_obj
    if default is not None:
        d = parse_xattr(default)
        if d.user_obj is not None or d.group_obj is not None or d.other is not None or d.mask is not None:
            acl.default = AclDefault(_or_missing(d.user_obj), _or_missing(d.group_obj), _or_missing(d.other), _or_missing(d.mask))
        acl.default_users = _named(d.users, flags, user_name, shift)
        acl.default_groups = _named(d.groups, flags, group_name, shift)
    return None if acl.empty() else acl


def _ids(entries: list[AclEntry], resolve: Callable[[AclEntry], int]) -> list[tuple[int, int]]:
    return [(resolve(e), e.permissions) for e in entries]


def posix_acls_for(
    acl: Acl,
    mode: int,
    resolve_user: Callable[[AclEntry], int],
    resolve_group: Callable[[AclEntry], int],
) -> tuple[bytes | None, bytes | None]:
    """Kernel xattr values restoring ``acl`` on a node whose mode is ``mode``.

    The owner, other and mask permissions live in the mode bits (the group
    bits are the mask when the ACL has one), as casync stores them.
    """
    access: bytes | None = None
    if acl.users or acl.groups or acl.group_obj is not None:
        group_bits = (mode >> 3) & 7
        access = build_xattr(
            PosixAcl(
                user_obj=(mode >> 6) & 7,
                group_obj=group_bits if acl.group_obj is None else acl.group_obj,
                mask=group_bits,
                other=mode & 7,
                users=_ids(acl.users, resolve_user),
                groups=_ids(acl.groups, resolve_group),
            )
        )
    default: bytes | None = None
    if acl.default is not None:
        d = acl.default
        default = build_xattr(
            PosixAcl(
                user_obj=_opt(d.user_obj),
                group_obj=_opt(d.group_obj),
                mask=_opt(d.mask),
                other=_opt(d.other),
                users=_ids(acl.default_users, resolve_user),
                groups=_ids(acl.default_groups, resolve_group),
            )
        )
    return access, default
