"""casync feature flags: names, named sets and normalisation (docs/formats.md 2).

casync refuses index headers and ENTRY records whose flag word is not
normalised, so everything we write goes through :func:`normalize`.
"""

from __future__ import annotations

from .errors import FormatError, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Final

WITH_16BIT_UIDS: Final = 0x1
WITH_32BIT_UIDS: Final = 0x2
WITH_USER_NAMES: Final = 0x4
WITH_SEC_TIME: Final = 0x8
WITH_USEC_TIME: Final = 0x10
WITH_NSEC_TIME: Final = 0x20
WITH_2SEC_TIME: Final = 0x40
WITH_READ_ONLY: Final = 0x80
WITH_PERMISSIONS: Final = 0x100
WITH_SYMLINKS: Final = 0x200
WITH_DEVICE_NODES: Final = 0x400
WITH_FIFOS: Final = 0x800
WITH_SOCKETS: Final = 0x1000
WITH_FLAG_HIDDEN: Final = 0x2000
WITH_FLAG_SYSTEM: Final = 0x4000
WITH_FLAG_ARCHIVE: Final = 0x8000
WITH_FLAG_APPEND: Final = 0x10000
WITH_FLAG_NOATIME: Final = 0x20000
WITH_FLAG_COMPR: Final = 0x40000
WITH_FLAG_NOCOW: Final = 0x80000
WITH_FLAG_NODUMP: Final = 0x100000
WITH_FLAG_DIRSYNC: Final = 0x200000
WITH_FLAG_IMMUTABLE: Final = 0x400000
WITH_FLAG_SYNC: Final = 0x800000
WITH_FLAG_NOCOMP: Final = 0x1000000
WITH_FLAG_PROJINHERIT: Final = 0x2000000
WITH_SUBVOLUME: Final = 0x4000000
WITH_SUBVOLUME_RO: Final = 0x8000000
WITH_XATTRS: Final = 0x10000000
WITH_ACL: Final = 0x20000000
WITH_SELINUX: Final = 0x40000000
WITH_FCAPS: Final = 0x80000000
WITH_QUOTA_PROJID: Final = 0x100000000

EXCLUDE_FILE: Final = 0x1000000000000000
SHA512_256: Final = 0x2000000000000000
EXCLUDE_SUBMOUNTS: Final = 0x4000000000000000
EXCLUDE_NODUMP: Final = 0x8000000000000000

WITH_MASK: Final = 0x1FFFFFFFF
FEATURE_FLAGS_MAX: Final = 0xF0000001FFFFFFFF
POLICY_MASK: Final = EXCLUDE_FILE | SHA512_256 | EXCLUDE_SUBMOUNTS | EXCLUDE_NODUMP

WITH_FAT_ATTRS: Final = WITH_FLAG_HIDDEN | WITH_FLAG_SYSTEM | WITH_FLAG_ARCHIVE
WITH_CHATTR: Final = 0x3FF0000
WITH_UNIX: Final = (
    WITH_16BIT_UIDS
    | WITH_PERMISSIONS
    | WITH_SEC_TIME
    | WITH_SYMLINKS
    | WITH_DEVICE_NODES
    | WITH_FIFOS
    | WITH_SOCKETS
)
WITH_FAT: Final = WITH_2SEC_TIME | WITH_READ_ONLY | WITH_FAT_ATTRS
WITH_BEST: Final = 0x1FFFFFE26
WITH_PRIVILEGED: Final = 0x1EC414407
WITH_FUSE: Final = 0x13FFFFFB

# casync's default archive flags and the Go desync's TarFeatureFlags.
CASYNC_DEFAULT: Final = 0xB0000001FFEFFE26
DESYNC_TAR_FLAGS: Final = 0xB000000010001F22
# Blob index headers: what `casync make` writes (docs/formats.md 3.2).
BLOB_INDEX_FLAGS: Final = EXCLUDE_NODUMP | EXCLUDE_FILE | SHA512_256

# `--with=`/`--without=` names, single bits first, then the named sets.
NAMES: Final[dict[str, int]] = {
    "16bit-uids": WITH_16BIT_UIDS,
    "32bit-uids": WITH_32BIT_UIDS,
    "user-names": WITH_USER_NAMES,
    "sec-time": WITH_SEC_TIME,
    "usec-time": WITH_USEC_TIME,
    "nsec-time": WITH_NSEC_TIME,
    "2sec-time": WITH_2SEC_TIME,
    "read-only": WITH_READ_ONLY,
    "permissions": WITH_PERMISSIONS,
    "symlinks": WITH_SYMLINKS,
    "device-nodes": WITH_DEVICE_NODES,
    "fifos": WITH_FIFOS,
    "sockets": WITH_SOCKETS,
    "flag-hidden": WITH_FLAG_HIDDEN,
    "flag-system": WITH_FLAG_SYSTEM,
    "flag-archive": WITH_FLAG_ARCHIVE,
    "flag-append": WITH_FLAG_APPEND,
    "flag-noatime": WITH_FLAG_NOATIME,
    "flag-compr": WITH_FLAG_COMPR,
    "flag-nocow": WITH_FLAG_NOCOW,
    "flag-nodump": WITH_FLAG_NODUMP,
    "flag-dirsync": WITH_FLAG_DIRSYNC,
    "flag-immutable": WITH_FLAG_IMMUTABLE,
    "flag-sync": WITH_FLAG_SYNC,
    "flag-nocomp": WITH_FLAG_NOCOMP,
    "flag-projinherit": WITH_FLAG_PROJINHERIT,
    "subvolume": WITH_SUBVOLUME,
    "subvolume-ro": WITH_SUBVOLUME_RO,
    "xattrs": WITH_XATTRS,
    "acl": WITH_ACL,
    "selinux": WITH_SELINUX,
    "fcaps": WITH_FCAPS,
    "quota-projid": WITH_QUOTA_PROJID,
    "best": WITH_BEST,
    "unix": WITH_UNIX,
    "fat": WITH_FAT,
    "chattr": WITH_CHATTR,
    "fat-attrs": WITH_FAT_ATTRS,
    "privileged": WITH_PRIVILEGED,
    "fuse": WITH_FUSE,
    "all": WITH_MASK,
}


def parse_name(name: str) -> int:
    """Map a casync `--with=` name to its bits, with a clear error."""
    try:
        return NAMES[name]
    except KeyError:
        raise InvalidArgument(f"unknown archive feature {name!r} (known: {', '.join(NAMES)})") from None


def normalize(flags: int) -> int:
    """Apply casync's normalisation rules so the word is one casync accepts."""
    if flags == 0xFFFFFFFFFFFFFFFF or flags & ~FEATURE_FLAGS_MAX:
        raise FormatError(f"unsupported feature flags {flags:#018x}")
    if flags & WITH_ACL and not flags & (WITH_16BIT_UIDS | WITH_32BIT_UIDS | WITH_USER_NAMES):
        flags |= WITH_32BIT_UIDS | WITH_USER_NAMES
    if flags & WITH_32BIT_UIDS:
        flags &= ~WITH_16BIT_UIDS
    if flags & WITH_NSEC_TIME:
        flags &= ~(WITH_USEC_TIME | WITH_SEC_TIME | WITH_2SEC_TIME)
    elif flags & WITH_USEC_TIME:
        flags &= ~(WITH_SEC_TIME | WITH_2SEC_TIME)
    elif flags & WITH_SEC_TIME:
        flags &= ~WITH_2SEC_TIME
    if flags & WITH_ACL:
        flags &= ~(WITH_PERMISSIONS | WITH_READ_ONLY)
    elif flags & WITH_PERMISSIONS:
        flags &= ~WITH_READ_ONLY
    if flags & EXCLUDE_NODUMP:
        flags &= ~WITH_FLAG_NODUMP
    if flags & WITH_SUBVOLUME_RO:
        flags |= WITH_SUBVOLUME
    return flags


def is_normalized(flags: int) -> bool:
    """True when casync would accept this flag word as stored."""
    if flags & ~FEATURE_FLAGS_MAX:
        return False
    return normalize(flags) == flags


def time_granularity(flags: int) -> int:
    """Nanoseconds an mtime is rounded down to; 0 means no time is stored."""
    if flags & WITH_NSEC_TIME:
        return 1
    if flags & WITH_USEC_TIME:
        return 1000
    if flags & WITH_SEC_TIME:
        return 1_000_000_000
    if flags & WITH_2SEC_TIME:
        return 2_000_000_000
    return 0


def describes_archive(flags: int) -> bool:
    """True for an archive index (.caidx) header: casync writes only policy bits into a blob index's."""
    return bool(flags & WITH_MASK)
