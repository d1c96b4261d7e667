"""Read one node's metadata from the file system the way casync does.

casync gathers chattr flags (``FS_IOC_GETFLAGS``), FAT attributes, btrfs
subvolume state, the quota project id, xattrs, ACLs, the SELinux label and
file capabilities; which of these it reads, and for which node types,
decides the archive bytes, so this module mirrors those rules (docs/formats.md
5.2-5.9):

* xattrs, ACLs, chattr/FAT flags only for regular files and directories
  (casync opens only those); FCAPS only for regular files;
* the SELinux label for every node type;
* the project id only on ext4, XFS and FUSE.

Public API: ``FsReader(flags).read(st, fd, dir_fd, name, magic) -> Meta``,
``FsReader.raw_chattr(fd)``, ``fs_magic(fd)``, ``VIRTUAL_FS_MAGICS``.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import stat
import struct
from typing import Any, Final

from .. import featureflags as ff
from ..errors import DesyncError
from .acl import XATTR_ACCESS, XATTR_DEFAULT, acl_from_xattrs
from .format import stored_xattr_name
from .model import Meta, UidShift

FS_IOC_GETFLAGS: Final = 0x80086601
FS_IOC_FSGETXATTR: Final = 0x801C581F
FAT_IOCTL_GET_ATTRIBUTES: Final = 0x80047210
BTRFS_IOC_SUBVOL_GETFLAGS: Final = 0x80089419
BTRFS_SUBVOL_RDONLY: Final = 0x2

FS_NODUMP_FL: Final = 0x40

MSDOS_SUPER_MAGIC: Final = 0x4D44
BTRFS_SUPER_MAGIC: Final = 0x9123683E
EXT4_SUPER_MAGIC: Final = 0xEF53
XFS_SUPER_MAGIC: Final = 0x58465342
FUSE_SUPER_MAGIC: Final = 0x65735546
PROJID_MAGICS: Final = frozenset({EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, FUSE_SUPER_MAGIC})

# API file systems whose contents casync never archives (directory kept, empty).
VIRTUAL_FS_MAGICS: Final = frozenset(
    {
        0x42494E4D,  # binfmt_misc
        0x0027E0EB,  # cgroup
        0x63677270,  # cgroup2
        0x62656570,  # configfs
        0x64626720,  # debugfs
        0x00001CD1,  # devpts
        0xDE5E81E4,  # efivarfs
        0x65735543,  # fusectl
        0x958458F6,  # hugetlbfs
        0x19800202,  # mqueue
        0x6E667364,  # nfsd
        0x00009FA0,  # proc
        0x6165676C,  # pstore
        0x67596969,  # rpc_pipefs
        0x73636673,  # securityfs
        0xF97CFF8C,  # selinuxfs
        0x43415D53,  # smackfs
        0x62656572,  # sysfs
    }
)

# Kernel chattr bit -> archive feature bit (docs/formats.md 2.1).
CHATTR_MAP: Final = (
    (0x20, ff.WITH_FLAG_APPEND),
    (0x80, ff.WITH_FLAG_NOATIME),
    (0x4, ff.WITH_FLAG_COMPR),
    (0x800000, ff.WITH_FLAG_NOCOW),
    (0x40, ff.WITH_FLAG_NODUMP),
    (0x10000, ff.WITH_FLAG_DIRSYNC),
    (0x10, ff.WITH_FLAG_IMMUTABLE),
    (0x8, ff.WITH_FLAG_SYNC),
    (0x400, ff.WITH_FLAG_NOCOMP),
    (0x20000000, ff.WITH_FLAG_PROJINHERIT),
)
FAT_MAP: Final = ((0x2, ff.WITH_FLAG_HIDDEN), (0x4, ff.WITH_FLAG_SYSTEM), (0x20, ff.WITH_FLAG_ARCHIVE))

_NO_XATTR: Final = frozenset({errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT, errno.EPERM, errno.EACCES})
_NO_IOCTL: Final = frozenset({errno.ENOTTY, errno.EBADF, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS})

_libc: list[Any] = []  # libc through ctypes, loaded on first use (ctypes costs start-up time)


def fs_magic(fd: int) -> int:
    """``statfs.f_type`` of the file system holding ``fd`` (0 if unknown)."""
    import ctypes

    if not _libc:
        _libc.append(ctypes.CDLL(None, use_errno=True))
    buf = ctypes.create_string_buffer(256)
    if _libc[0].fstatfs(fd, buf) != 0:
        return 0
    return int(struct.unpack_from("=L", buf.raw, 0)[0])


def _ioctl_u32(fd: int, request: int, size: int = 8) -> int | None:
    try:
        out = fcntl.ioctl(fd, request, bytes(size))
    except OSError as e:
        if e.errno in _NO_IOCTL:
            return None
        raise
    return int(struct.unpack_from("=I", out, 0)[0])


def raw_chattr(fd: int) -> int:
    """Kernel chattr flags of an open regular file or directory (0 if unsupported)."""
    v = _ioctl_u32(fd, FS_IOC_GETFLAGS)
    return 0 if v is None else v


def _getxattr(target: int | str, name: str) -> bytes | None:
    try:
        if isinstance(target, int):
            return os.getxattr(target, name)
        return os.getxattr(target, name, follow_symlinks=False)
    except OSError as e:
        if e.errno in _NO_XATTR:
            return None
        raise


class FsReader:
    """Turns ``stat`` results and open descriptors into :class:`Meta`.

    Keeps small caches of user/group names, as casync does, because
    neighbouring files almost always share their owner.
    """

    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.zero_times = False  # every mtime read as 0
        self.uid_shift: UidShift | None = None  # casync's --uid-shift/--uid-range
        self._users: dict[int, bytes | None] = {}
        self._groups: dict[int, bytes | None] = {}

    def user_name(self, uid: int) -> bytes | None:
        if uid == 0:
            return None
        if uid not in self._users:
            try:
                self._users[uid] = os.fsencode(pwd.getpwuid(uid).pw_name)
            except KeyError:
                self._users[uid] = None if self.flags & (ff.WITH_16BIT_UIDS | ff.WITH_32BIT_UIDS) else str(self.stored_id(uid)).encode()
        return self._users[uid]

    def group_name(self, gid: int) -> bytes | None:
        if gid == 0:
            return None
        if gid not in self._groups:
            try:
                self._groups[gid] = os.fsencode(grp.getgrgid(gid).gr_name)
            except KeyError:
                self._groups[gid] = None if self.flags & (ff.WITH_16BIT_UIDS | ff.WITH_32BIT_UIDS) else str(self.stored_id(gid)).encode()
        return self._groups[gid]

    def stored_id(self, ident: int, name: bytes = b"") -> int:
        """The UID/GID as the archive holds it: shifted into the range under ``--uid-shift``, as casync does."""
        if self.uid_shift is None:
            return ident
        out = self.uid_shift.to_archive(ident)
        if out is None:
            raise DesyncError(f"{os.fsdecode(name) or '.'}: uid/gid {ident} cannot be shifted by "
                              f"{self.uid_shift.shift} into a range of {self.uid_shift.range or 1 << 32}")
        return out

    def read(self, st: os.stat_result, fd: int, dir_fd: int, name: bytes, magic: int, chattr: int) -> Meta:
        """Metadata of one node.

        ``fd`` is an open descriptor for regular files and directories (-1
        otherwise); ``dir_fd``/``name`` locate the node for the others
        (``dir_fd`` -1 for the root).  ``chattr`` are its kernel flags.
        """
        flags = self.flags
        mode = st.st_mode
        uid = self.stored_id(st.st_uid, name)
        gid = self.stored_id(st.st_gid, name)
        meta = Meta(mode=mode, uid=uid, gid=gid, mtime_ns=0 if self.zero_times else st.st_mtime_ns)
        if flags & ff.WITH_16BIT_UIDS and (uid > 0xFFFF or gid > 0xFFFF):
            raise DesyncError(
                f"{os.fsdecode(name) or '.'}: uid/gid {uid}/{gid} does not fit the 16-bit uids feature"
            )
        if flags & ff.WITH_USER_NAMES:
            meta.user_name = self.user_name(st.st_uid)
            meta.group_name = self.group_name(st.st_gid)
        is_reg = stat.S_ISREG(mode)
        is_dir = stat.S_ISDIR(mode)
        if is_reg:
            meta.size = st.st_size
        elif stat.S_ISLNK(mode):
            meta.target = os.readlink(name, dir_fd=dir_fd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            meta.rdev_major = os.major(st.st_rdev)
            meta.rdev_minor = os.minor(st.st_rdev)
        if (is_reg or is_dir) and fd >= 0:
            self._read_open(meta, fd, is_dir, magic, chattr, st)
        if flags & ff.WITH_SELINUX:
            target: int | str = fd if fd >= 0 else f"/proc/self/fd/{dir_fd}/{os.fsdecode(name)}"
            label = _getxattr(target, "security.selinux")
            if label is not None:
                label = label.split(b"\0", 1)[0]
                if label:
                    meta.selinux = label
        return meta

    def _read_open(self, meta: Meta, fd: int, is_dir: bool, magic: int, chattr: int, st: os.stat_result) -> None:
        flags = self.flags
        fsflags = 0
        if flags & ff.WITH_CHATTR:
            for kbit, wbit in CHATTR_MAP:
                if chattr & kbit:
                    fsflags |= wbit
        if flags & ff.WITH_FAT_ATTRS and magic == MSDOS_SUPER_MAGIC:
            fat = _ioctl_u32(fd, FAT_IOCTL_GET_ATTRIBUTES, 4) or 0
            for kbit, wbit in FAT_MAP:
                if fat & kbit:
                    fsflags |= wbit
        if is_dir and flags & (ff.WITH_SUBVOLUME | ff.WITH_SUBVOLUME_RO) and magic == BTRFS_SUPER_MAGIC and st.st_ino == 256:
            fsflags |= ff.WITH_SUBVOLUME
            if flags & ff.WITH_SUBVOLUME_RO:
                sub = _ioctl_u32(fd, BTRFS_IOC_SUBVOL_GETFLAGS) or 0
                if sub & BTRFS_SUBVOL_RDONLY:
                    fsflags |= ff.WITH_SUBVOLUME_RO
        meta.fsflags = fsflags & flags
        if flags & ff.WITH_XATTRS:
            meta.xattrs = self._xattrs(fd)
        if flags & ff.WITH_ACL:
            access = _getxattr(fd, XATTR_ACCESS)
            default = _getxattr(fd, XATTR_DEFAULT) if is_dir else None
            if access is not None or default is not None:
                meta.acl = acl_from_xattrs(access, default, flags, self.user_name, self.group_name,
                                           None if self.uid_shift is None else self.stored_id)
        if flags & ff.WITH_FCAPS and not is_dir:
            caps = _getxattr(fd, "security.capability")
            if caps:
                meta.fcaps = caps
        if flags & ff.WITH_QUOTA_PROJID and magic in PROJID_MAGICS:
            try:
                out = fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(28))
                meta.projid = int(struct.unpack_from("=I", out, 12)[0])
            except OSError as e:
                if e.errno not in _NO_IOCTL:
                    raise

    def _xattrs(self, fd: int) -> list[tuple[bytes, bytes]]:
        try:
            names = os.listxattr(fd)
        except OSError as e:
            if e.errno in _NO_XATTR:
                return []
            raise
        out: list[tuple[bytes, bytes]] = []
        for n in names:
            raw = os.fsencode(n)
            if not stored_xattr_name(raw):
                continue
            value = _getxattr(fd, n)
            if value is not None:
                out.append((raw, value))
        out.sort()
        return out


def read_projid(path: str) -> int | None:
    """The quota project ID of ``path`` (not following a symlink); None where the file system cannot say.

    Unlike archiving, which stores project IDs only from file systems with quotas, casync's ``stat`` of a
    directory shows whatever the ioctl answers.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    try:
        out = fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(28))
        return int(struct.unpack_from("=I", out, 12)[0])
    except OSError:
        return None
    finally:
        os.close(fd)
