"""Extract a catar stream into a directory, safely.

``extract_stream(source, target_dir, options)`` decodes and extracts in one
pass; ``extract_events(events, target_dir, options)`` takes already decoded
events (e.g. from a chunk-store reassembly).

Safety model: every operation is relative to an open descriptor of the
directory being filled (``*at`` calls through ``dir_fd``), and nothing is
ever opened or created through a symlink: directories are opened with
``O_NOFOLLOW|O_DIRECTORY``, files are created with ``O_CREAT|O_EXCL|
O_NOFOLLOW`` after removing whatever was there (a pre-existing symlink is
removed, not followed), metadata calls use ``follow_symlinks=False``.  The
decoder rejects names containing ``/`` or NUL, ``.``/``..`` and duplicate
names, so an archive cannot address anything outside the target or reach
a symlink it created earlier.  Only the current directory's descriptor is
held; a parent is reopened through ``..`` and must have the device/inode
recorded when it was entered, so deep archives cannot exhaust descriptors
and a directory swapped underneath is detected.

Metadata: owners (when running as root, unless ``no_same_owner``), modes,
mtimes of everything including symlinks, and directories after their
children; xattrs, ACLs, file capabilities, SELinux labels and chattr flags
where present and permitted (refusals become warnings).  Device nodes,
FIFOs and sockets are created when permitted, else skipped with a warning.

Modes follow casync 2, so that both tools leave the same tree
(docs/formats.md 5.13): with the permissions or ACL bit the archive's bits
are set; without them nodes are created with the modes casync asks for
(directories ``0700``, files ``0600`` plus the archive's bits, special
files the archive's bits, all under the umask and any inherited default
ACL) and left so, except that with the read-only bit :func:`read_only_mode`
adjusts them.  With the ACL bit a node's ACLs are exactly the archive's:
ACLs it inherited from a default ACL, or that an existing directory had,
are removed.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import stat
import struct
from typing import Callable, Iterable

from .. import featureflags as ff
from .. import fsutil, reflink, tempnames
from ..errors import DesyncError
from ..records import Record
from .acl import XATTR_ACCESS, XATTR_DEFAULT, posix_acls_for
from .decoder import ByteSource, DirEnd, Node, decode
from .format import valid_filename
from .fsread import CHATTR_MAP
from .model import AclEntry, Meta, UidShift
from .seedfiles import SeedFiles
from .writeback import FileJob, Writeback, copy_range

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x00000010
_UIDS = ff.WITH_16BIT_UIDS | ff.WITH_32BIT_UIDS
_REFUSED = frozenset({errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY, errno.EROFS})
# Files up to this size are buffered for the writeback thread; bigger ones are written in place.
_BUFFER_LIMIT = 8 << 20
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ExtractOptions(Record):
    """What to restore besides names, types and contents."""

    FIELDS = ("no_same_owner", "no_same_permissions", "xattrs", "acls", "fcaps", "selinux", "fsflags",
              "block_size", "on_warning", "delete", "seed_files", "uid_shift", "undo_immutable", "punch_holes",
              "stats")

    def __init__(
        self,
        no_same_owner: bool = False,
        no_same_permissions: bool = False,
        xattrs: bool = True,
        acls: bool = True,
        fcaps: bool = True,
        selinux: bool = True,
        fsflags: bool = True,
        block_size: int = 1 << 20,
        on_warning: Callable[[str], None] | None = None,
        delete: bool = False,
        seed_files: SeedFiles | None = None,
        uid_shift: UidShift | None = None,
        undo_immutable: bool = False,
        punch_holes: bool = False,
        stats: TreeExtractStats | None = None,
    ) -> None:
        self.no_same_owner = no_same_owner
        # New files 0666, directories 0777, less the umask (untar --no-same-permissions).
        self.no_same_permissions = no_same_permissions
        self.xattrs = xattrs
        self.acls = acls
        self.fcaps = fcaps
        self.selinux = selinux
        self.fsflags = fsflags
        self.block_size = block_size
        self.on_warning = on_warning
        self.delete = delete  # in an existing directory, remove what the archive does not have
        self.seed_files = seed_files  # files whose data a regular file may share (clone or hardlink)
        self.uid_shift = uid_shift  # casync's --uid-shift/--uid-range: owners restored shifted
        self.undo_immutable = undo_immutable  # clear chattr +i on entries that must be replaced or removed (casync)
        self.punch_holes = punch_holes  # runs of zeros in regular files become holes (casync's default)
        self.stats = stats  # counters for casync's -v report


class TreeExtractStats(Record):
    """What an extraction did that casync's ``-v`` reports."""

    FIELDS = ("hole_bytes",)

    def __init__(self, hole_bytes: int = 0) -> None:
        self.hole_bytes = hole_bytes  # zero bytes left as holes instead of written (punch_holes)


class _Frame:
    """A directory being extracted into."""

    def __init__(self, path: tuple[bytes, ...], meta: Meta, fd: int, dev: int, ino: int, fresh: bool,
                 inherits: bool = False, new_gid: int = -1, plain_create: bool = False) -> None:
        self.path = path
        self.meta = meta
        self.fd = fd
        self.dev = dev
        self.ino = ino
        self.fresh = fresh  # created by us: names in it are free (archives hold no duplicates)
        self.inherits = inherits  # has a default ACL that entries created in it inherit (tracked for ACL archives)
        self.seen: set[bytes] = set()  # names the archive put in an existing directory
        # What a file created in it gets without being told: its group (the directory's if set-group-ID, else
        # ours), and whether its mode is the requested one less the umask (no default ACL); -1/False: unknown.
        self.new_gid = new_gid
        self.plain_create = plain_create


class _Unseen:
    """Entries of an existing directory the archive does not have (removed at the end with ``delete``)."""

    def __init__(self, path: tuple[bytes, ...], meta: Meta, dev: int, ino: int, names: list[bytes]) -> None:
        self.path = path
        self.meta = meta
        self.dev = dev
        self.ino = ino
        self.names = names


def extract_stream(source: ByteSource, target_dir: str | bytes, options: ExtractOptions | None = None) -> None:
    """Decode the catar in ``source`` and extract it into ``target_dir``."""
    extract_events(decode(source), target_dir, options)


def extract_events(
    events: Iterable[Node | DirEnd], target_dir: str | bytes, options: ExtractOptions | None = None
) -> None:
    """Extract decoded events into ``target_dir``.

    A missing ``target_dir`` appears only complete: the tree is built in a
    temporary directory beside it and renamed into place at the end, and a
    failure removes it.  An existing directory is extracted into in place,
    as casync does (a failure leaves what was written so far): each file,
    symlink or node replaces what was there atomically (made under a temp
    name, then renamed over it), and with ``options.delete`` whatever the
    archive does not have is removed.
    """
    opts = options or ExtractOptions()
    path = os.fsdecode(target_dir)
    if os.path.lexists(path):
        _Extractor(opts).run(events, path)
        return
    tempnames.sweep_beside(path)
    tmp = tempnames.temp_beside(path)
    try:
        _Extractor(opts).run(events, tmp)
        # One flush of the file system instead of an fsync per file: the tree must be on disk
        # before the rename makes it visible, or a power loss could leave empty files under the name.
        fsutil.sync_filesystem(tmp)
        try:
            os.rename(tmp, path)
        except OSError as e:
            raise DesyncError(f"cannot move the extracted tree to {path}: {e.strerror}") from None
        fsutil.sync_directory(os.path.dirname(tmp))
    except BaseException:
        _remove_tree(tmp, opts)
        raise


def _remove_tree(path: str, opts: ExtractOptions) -> None:
    """Remove an unfinished tree (rmtree never follows its symlinks); a failure is a warning beside the error."""
    try:
        import shutil

        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        if opts.on_warning is not None:
            opts.on_warning(f"cannot remove the unfinished extraction {path}: {e.strerror}")


def _temp_name(name: bytes) -> bytes:
    """A temp name beside ``name`` in the same directory (renamed over it when complete)."""
    return b".%s.%s%s" % (name[:160], tempnames.owner_tag().encode(), tempnames.TMP_SUFFIX.encode())


def _digest_of(fd: int) -> bytes:
    """SHA-256 of a file's whole contents (read with pread: the offset is left alone)."""
    import hashlib

    h = hashlib.sha256()
    pos = 0
    while True:
        block = os.pread(fd, 1 << 20, pos)
        if not block:
            return h.digest()
        h.update(block)
        pos += len(block)


def read_only_mode(current: int, writable: bool, is_dir: bool) -> int:
    """The permission bits casync 2 gives a node of a read-only-bit archive that now has ``current``.

    A node its owner can read (and, for a directory, search) whose owner write
    bit already says ``writable`` keeps its bits.  Otherwise casync starts from
    the read bits plus owner read (and search), then grants write wherever read
    is granted, or, for a read-only node, clears the read bits too (so a
    read-only file ends up with no permissions at all).  We repeat that last
    step as it is: the point is the same tree from the same archive.
    """
    perms = current & 0o7777
    if perms & 0o400 and (not is_dir or perms & 0o100) and bool(perms & 0o200) == writable:
        return perms
    new = (perms & 0o444) | 0o400
    if is_dir:
        new |= 0o100
    if writable:
        return new | 0o200 | (new & 0o040) >> 1 | (new & 0o004) >> 1
    return new & ~0o444


def _has_default_acl(fd: int) -> bool:
    """Whether the directory ``fd`` has a default ACL (new entries in it inherit ACLs)."""
    try:
        os.getxattr(fd, XATTR_DEFAULT)
    except OSError:
        return False
    return True


def drop_immutable(pfd: int, name: bytes) -> bool:
    """Clear chattr's immutable flag of the regular file or directory ``name``; True when it had one.

    casync's ``--undo-immutable``: only that flag, and only where a rename or
    removal was refused; symlinks and special files have no such flag.
    """
    try:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return False
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=pfd)
    try:
        try:
            cur = struct.unpack_from("=I", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(8)), 0)[0]
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.ENOSYS, errno.EBADF, errno.EOPNOTSUPP):
                return False
            raise
        if not cur & FS_IMMUTABLE_FL:
            return False
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("=I", cur & ~FS_IMMUTABLE_FL) + bytes(4))
        return True
    finally:
        os.close(fd)


def _show(path: tuple[bytes, ...]) -> str:
    return os.fsdecode(b"/".join(path)) if path else "."


class _Extractor:
    def __init__(self, opts: ExtractOptions) -> None:
        self.opts = opts
        self.as_root = os.geteuid() == 0
        self.flags = 0
        self.exact_modes = False  # the archive holds real permission bits (permissions or ACL bit)
        self.track_acls = False  # ACL archive restored with ACLs: inherited ones must go
        self.parent_inherits = False  # the directory of the node at hand has a default ACL
        self.parent_gid = -1  # the group a file created in that directory gets (-1: unknown)
        self.parent_plain = False  # a file created there gets the requested mode less the umask
        self.euid = os.geteuid()
        self.egid = os.getegid()
        self.umask = os.umask(0)
        os.umask(self.umask)
        self._uids: dict[bytes, int | None] = {}
        self._gids: dict[bytes, int | None] = {}
        self.writeback: Writeback | None = None
        self.unseen: list[_Unseen] = []

    def warn(self, msg: str) -> None:
        if self.opts.on_warning is not None:
            self.opts.on_warning(msg)

    def refused_immutable(self, err: OSError, pfd: int, name: bytes) -> bool:
        """After ``err`` on ``name``: True when ``--undo-immutable`` cleared its flag, so the call may be retried."""
        return err.errno == errno.EPERM and self.opts.undo_immutable and drop_immutable(pfd, name)

    def rename_into(self, pfd: int, tmp: bytes, name: bytes) -> None:
        try:
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except PermissionError as e:
            if not self.refused_immutable(e, pfd, name):
                raise
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)

    def unlink_at(self, pfd: int, name: bytes, is_dir: bool = False) -> None:
        try:
            if is_dir:
                os.rmdir(name, dir_fd=pfd)
            else:
                os.unlink(name, dir_fd=pfd)
        except PermissionError as e:
            if not self.refused_immutable(e, pfd, name):
                raise
            if is_dir:
                os.rmdir(name, dir_fd=pfd)
            else:
                os.unlink(name, dir_fd=pfd)

    def remove_tree_at(self, pfd: int, name: bytes) -> None:
        """Remove ``name`` and all below it, clearing immutable flags that refuse it (casync's rm_rf)."""
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(name, _DIR_OPEN, dir_fd=pfd)
            try:
                for child in os.listdir(fd):
                    self.remove_tree_at(fd, os.fsencode(child))
            finally:
                os.close(fd)
        self.unlink_at(pfd, name, stat.S_ISDIR(st.st_mode))

    def run(self, events: Iterable[Node | DirEnd], target_dir: str | bytes) -> None:
        stack: list[_Frame] = []
        self.writeback = Writeback()
        finished = False
        try:
            for ev in events:
                if isinstance(ev, DirEnd):
                    self.end_dir(stack)
                elif not ev.path:
                    self.set_flags(ev.feature_flags)
                    stack.append(self.open_target(target_dir, ev))
                else:
                    if not stack or len(ev.path) != len(stack) or ev.path[:-1] != stack[-1].path:
                        raise DesyncError(f"archive entry {_show(ev.path)} outside the current directory")
                    self.node(stack, ev)
            if stack:
                raise DesyncError("archive ended inside a directory")
            self.delete_unseen(target_dir)
            finished = True
        finally:
            if finished:
                self.writeback.close()
            else:
                self.writeback.abort()
            for fr in stack:
                if fr.fd >= 0:
                    os.close(fr.fd)

    def set_flags(self, flags: int) -> None:
        self.flags = flags
        self.exact_modes = (bool(flags & (ff.WITH_PERMISSIONS | ff.WITH_ACL)) and not flags & ff.WITH_READ_ONLY
                            and not self.opts.no_same_permissions)
        self.track_acls = bool(flags & ff.WITH_ACL) and self.opts.acls

    def open_target(self, target_dir: str | bytes, node: Node) -> _Frame:
        fresh = True
        try:
            # casync creates the target as mkdir(1) would; its mode stays unless the archive sets one.
            os.mkdir(target_dir, 0o700 if self.exact_modes else 0o777)
        except FileExistsError:
            fresh = False
        except OSError as e:
            raise DesyncError(f"cannot create {os.fsdecode(target_dir)}: {e.strerror}") from None
        try:
            fd = os.open(target_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise DesyncError(f"cannot open {os.fsdecode(target_dir)}: {e.strerror}") from None
        st = os.fstat(fd)
        default_acl = _has_default_acl(fd)
        return _Frame((), node.meta, fd, st.st_dev, st.st_ino, fresh, self.track_acls and default_acl,
                      new_gid=self.created_gid(st), plain_create=not default_acl)

    def node(self, stack: list[_Frame], ev: Node) -> None:
        parent = stack[-1]
        pfd = parent.fd
        name = ev.path[-1]
        if not valid_filename(name):
            raise DesyncError(f"unsafe file name {name!r} in archive")
        meta = ev.meta
        replace = not parent.fresh
        self.parent_inherits = parent.inherits
        self.parent_gid = parent.new_gid
        self.parent_plain = parent.plain_create
        try:
            if replace:
                parent.seen.add(name)
                self.clear_slot(pfd, name, meta.is_dir, ev.path)
            if meta.is_dir:
                fresh = True
                try:
                    os.mkdir(name, 0o700, dir_fd=pfd)
                except FileExistsError:
                    fresh = False
                fd = os.open(name, _DIR_OPEN, dir_fd=pfd)
                st = os.fstat(fd)
                # A new directory gets its parent's default ACL as its own.
                # A new directory gets its parent's default ACL, if any, as its own.
                default_acl = not parent.plain_create if fresh else _has_default_acl(fd)
                inherits = self.track_acls and (parent.inherits if fresh else default_acl)
                stack.append(_Frame(ev.path, meta, fd, st.st_dev, st.st_ino, fresh, inherits,
                                    new_gid=self.created_gid(st), plain_create=not default_acl))
                os.close(pfd)
                parent.fd = -1
            elif replace:
                self.replace_entry(pfd, name, ev)
            else:
                self.entry(pfd, name, ev, False)
        except OSError as e:
            raise DesyncError(f"cannot extract {_show(ev.path)}: {e.strerror or e}") from None

    def entry(self, pfd: int, name: bytes, ev: Node, finish_here: bool) -> bool:
        """Create a non-directory at the free ``name``; False when a node could not be created (warned)."""
        meta = ev.meta
        if meta.is_reg:
            if not self.from_seed(pfd, name, ev):
                self.regular(pfd, name, ev, finish_here)
        elif meta.is_symlink:
            os.symlink(meta.target, name, dir_fd=pfd)
            self.owner_at(pfd, name, meta, ev.path)
            self.selinux_at(pfd, name, meta, ev.path)
            self.mtime_at(pfd, name, meta)
        else:
            return self.special(pfd, name, ev)
        return True

    def replace_entry(self, pfd: int, name: bytes, ev: Node) -> None:
        """Make the entry complete under a temp name, then rename it over whatever ``name`` holds."""
        tmp = _temp_name(name)
        try:
            if self.entry(pfd, tmp, ev, True):
                self.rename_into(pfd, tmp, name)
                return
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=pfd)
            except OSError:
                pass
            raise
        try:
            self.unlink_at(pfd, name)  # the archive's node could not be made: the old entry must not stay
        except FileNotFoundError:
            pass

    def from_seed(self, pfd: int, name: bytes, ev: Node) -> bool:
        """Extract a regular file sharing a seed file's data when one holds the same bytes; False: no seed to try.

        The archive's bytes are written first (hashed on the way); a seed
        file cloned or hardlinked under a temp name replaces them only when
        its own bytes hash the same, so a seed never puts wrong bytes in.
        """
        seeds = self.opts.seed_files
        payload = ev.payload
        if seeds is None or not seeds.active or payload is None or not payload.remaining:
            return False
        size = payload.remaining
        cands = seeds.candidates(ev.path, size)
        if not cands:
            return False
        meta = ev.meta
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, self.file_mode(meta),
                     dir_fd=pfd)
        try:
            import hashlib

            h = hashlib.sha256()
            for block in payload.blocks(self.opts.block_size):
                h.update(block)
                fsutil.write_all(fd, block)
            want = h.digest()
            for cand in cands:
                if self.share_seed(pfd, name, cand, size, want, ev):
                    return True
            self.fd_metadata(fd, meta, ev.path)
        finally:
            os.close(fd)
        return True

    def share_seed(self, pfd: int, name: bytes, cand: bytes, size: int, want: bytes, ev: Node) -> bool:
        """Put ``cand``'s data at ``name`` by hardlink or clone if its bytes hash to ``want``."""
        seeds = self.opts.seed_files
        assert seeds is not None
        tmp = _temp_name(name)
        if seeds.hardlink and self.plain_metadata(ev.meta) and self.same_metadata(cand, size, ev.meta):
            try:
                os.link(cand, tmp, dst_dir_fd=pfd, follow_symlinks=False)
            except OSError:
                pass
            else:
                if self.verified(pfd, tmp, want) and self.same_metadata(cand, size, ev.meta):
                    os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
                    seeds.stats.hardlinked_bytes += size
                    seeds.stats.hardlinked_files += 1
                    return True
                os.unlink(tmp, dir_fd=pfd)
        if not seeds.may_clone:
            return False
        try:
            src = os.open(cand, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        dst = -1
        try:
            if os.fstat(src).st_size != size:
                return False
            dst = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          self.file_mode(ev.meta), dir_fd=pfd)
            try:
                reflink.clone_range(src, 0, dst, 0, size)
            except OSError as e:
                if seeds.reflink == "yes":
                    raise DesyncError(f"cannot clone {os.fsdecode(cand)} (--reflink yes): {e.strerror}") from None
                seeds.may_clone = False  # this file system cannot clone: stop trying
                return False
            if _digest_of(dst) != want:
                return False
            self.fd_metadata(dst, ev.meta, ev.path)
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            dst_done = dst
            dst = -1
            os.close(dst_done)
            seeds.stats.cloned_bytes += size
            seeds.stats.cloned_files += 1
            return True
        finally:
            os.close(src)
            if dst >= 0:
                os.close(dst)
                os.unlink(tmp, dir_fd=pfd)

    def same_metadata(self, path: bytes, size: int, meta: Meta) -> bool:
        """Whether a hardlink to ``path`` has the owner, mode, times and (no) xattrs the archive wants."""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        try:
            if os.listxattr(path, follow_symlinks=False):
                return False
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):  # no xattrs on this file system: none to differ
                return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != size or stat.S_IMODE(st.st_mode) != meta.permissions:
            return False
        ids = self.ids(meta)
        if (st.st_uid, st.st_gid) != (ids if ids is not None else (os.geteuid(), os.getegid())):
            return False
        return not ff.time_granularity(self.flags) or st.st_mtime_ns == meta.mtime_ns

    def verified(self, pfd: int, name: bytes, want: bytes) -> bool:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        except OSError:
            return False
        try:
            return _digest_of(fd) == want
        finally:
            os.close(fd)

    def clear_slot(self, pfd: int, name: bytes, want_dir: bool, path: tuple[bytes, ...]) -> None:
        """Make room for the archive's entry at ``name`` in an existing directory.

        A directory stays for a directory; anything else stays for a non-directory
        (it is replaced by a rename); a directory where the archive has something
        else is removed (only when empty, unless deleting).
        """
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if want_dir:
                return
            if self.opts.delete:
                self.remove_at(pfd, name, True, path)
                return
            try:
                self.unlink_at(pfd, name, True)
            except OSError as e:
                raise DesyncError(f"cannot replace directory {_show(path)}: {e.strerror}") from None
            return
        if want_dir:
            self.unlink_at(pfd, name)

    def remove_at(self, pfd: int, name: bytes, is_dir: bool, path: tuple[bytes, ...]) -> None:
        """Remove an entry of an existing directory, a directory with all it holds (``delete``)."""
        try:
            if self.opts.undo_immutable:
                self.remove_tree_at(pfd, name)
            elif is_dir:
                import shutil

                shutil.rmtree(name, dir_fd=pfd)
            else:
                os.unlink(name, dir_fd=pfd)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise DesyncError(f"cannot remove {_show(path)}: {e.strerror}") from None

    def note_unseen(self, fr: _Frame) -> None:
        """Remember what an existing directory holds beyond the archive's entries, for ``--delete``.

        They are removed only after the whole archive is extracted: until then
        a seed tree that is also the target can still provide their bytes
        (a file moved to a directory that comes later in the archive).
        """
        extra = [os.fsencode(raw) for raw in os.listdir(fr.fd)]
        extra = [name for name in extra if name not in fr.seen]
        if extra:
            self.unseen.append(_Unseen(fr.path, fr.meta, fr.dev, fr.ino, extra))

    def delete_unseen(self, target_dir: str | bytes) -> None:
        """Remove the entries :meth:`note_unseen` found, reaching each directory again without symlinks."""
        for u in self.unseen:
            fd = -1
            try:
                fd = os.open(target_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                for name in u.path:
                    sub = os.open(name, _DIR_OPEN, dir_fd=fd)
                    os.close(fd)
                    fd = sub
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != (u.dev, u.ino):
                    raise DesyncError(f"directory {_show(u.path)} was replaced during extraction")
                for name in u.names:
                    try:
                        est = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    self.remove_at(fd, name, stat.S_ISDIR(est.st_mode), u.path + (name,))
                if ff.time_granularity(self.flags):
                    os.utime(fd, ns=(u.meta.mtime_ns, u.meta.mtime_ns))
            except OSError as e:
                raise DesyncError(f"cannot clean up directory {_show(u.path)}: {e.strerror or e}") from None
            finally:
                if fd >= 0:
                    os.close(fd)

    def regular(self, pfd: int, name: bytes, ev: Node, finish_here: bool = False) -> None:
        """Create the file; the writeback thread writes it and sets its owner, mode and times.

        Contents go over as a range of the archive file when it is one, else
        as buffered blocks; files too big to buffer, files with metadata
        beyond owner/mode/times, and with ``finish_here`` (a file to be renamed
        into place next) all files are finished here.
        """
        meta = ev.meta
        # Created with its final mode where the umask and the directory leave it alone: no chmod later.
        exact = self.exact_modes and self.parent_plain and not meta.permissions & (0o7000 | self.umask)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     meta.permissions if exact else self.file_mode(meta), dir_fd=pfd)
        job = FileJob(fd, ev.path)
        payload = ev.payload
        writeback = self.writeback
        assert writeback is not None
        handed_over = False
        try:
            here = finish_here or not self.plain_metadata(meta)
            if payload is not None and payload.remaining and self.opts.punch_holes:
                if payload.remaining <= _BUFFER_LIMIT and not here:
                    blocks = list(payload.blocks(self.opts.block_size))
                    if any(fsutil.has_zero_run(b) for b in blocks):
                        self.write_sparse(fd, blocks)
                    else:
                        job.blocks = blocks
                else:
                    self.write_sparse(fd, payload.blocks(self.opts.block_size))
            elif payload is not None and payload.remaining:
                found = payload.file_range()
                if found is not None:
                    job.src_fd, job.src_offset, job.src_size = found
                    job.src_owner = payload.source
                elif payload.remaining <= _BUFFER_LIMIT and not here:
                    job.blocks = list(payload.blocks(self.opts.block_size))
                else:
                    for block in payload.blocks(self.opts.block_size):
                        fsutil.write_all(fd, block)
            if here:
                if job.src_fd >= 0:
                    copy_range(job.src_fd, job.src_offset, job.src_size, fd, ev.path)
                self.fd_metadata(fd, meta, ev.path)
                return
            ids = self.ids(meta)
            if ids is not None and ids != (self.euid, self.parent_gid):  # a new file is ours already
                job.uid, job.gid = ids
            job.mode = -1 if exact else meta.permissions
            job.set_times = ff.time_granularity(self.flags) != 0
            job.mtime_ns = meta.mtime_ns
            handed_over = True
            writeback.submit(job)
        finally:
            if not handed_over:
                os.close(fd)

    def write_sparse(self, fd: int, blocks: Iterable[bytes]) -> None:
        """Write a new file's contents leaving runs of zeros as holes (casync's ``--punch-holes``)."""
        pos = 0
        skipped = 0
        for block in blocks:
            skipped += fsutil.pwrite_sparse(fd, block, pos)
            pos += len(block)
        os.ftruncate(fd, pos)
        if self.opts.stats is not None:
            self.opts.stats.hole_bytes += skipped

    def plain_metadata(self, meta: Meta) -> bool:
        """Whether owner, the archive's mode and times are all :meth:`fd_metadata` would set."""
        opts = self.opts
        return not (
            not self.exact_modes
            or (self.track_acls and self.parent_inherits)
            or (opts.xattrs and meta.xattrs)
            or (opts.acls and meta.acl is not None and self.flags & ff.WITH_ACL)
            or (opts.fcaps and meta.fcaps)
            or (opts.selinux and meta.selinux)
            or (opts.fsflags and meta.fsflags & ff.WITH_CHATTR)
        )

    def special(self, pfd: int, name: bytes, ev: Node) -> bool:
        meta = ev.meta
        ftype = meta.file_type
        mode = 0o600 if self.exact_modes else meta.permissions & 0o777
        try:
            if ftype == stat.S_IFIFO:
                os.mkfifo(name, mode, dir_fd=pfd)
            elif ftype == stat.S_IFSOCK:
                os.mknod(name, stat.S_IFSOCK | mode, dir_fd=pfd)
            else:
                os.mknod(name, ftype | mode, os.makedev(meta.rdev_major, meta.rdev_minor), dir_fd=pfd)
        except OSError as e:
            if e.errno in _REFUSED:
                self.warn(f"{_show(ev.path)}: cannot create {stat.filemode(meta.mode)[0]} node: {e.strerror}")
                return False
            raise
        self.owner_at(pfd, name, meta, ev.path)
        proc = f"/proc/self/fd/{pfd}/{os.fsdecode(name)}"
        if self.opts.no_same_permissions:
            os.chmod(name, self.umask_mode(meta), dir_fd=pfd, follow_symlinks=False)
        elif self.exact_modes:
            os.chmod(name, meta.permissions, dir_fd=pfd, follow_symlinks=False)
        elif self.flags & ff.WITH_READ_ONLY:
            cur = stat.S_IMODE(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode)
            new = read_only_mode(cur, bool(meta.mode & 0o222), False)
            if new != cur:
                os.chmod(name, new, dir_fd=pfd, follow_symlinks=False)
        if self.track_acls and self.parent_inherits:
            self.drop_acl(proc, XATTR_ACCESS, ev.path)
        if self.opts.xattrs:
            for xname, value in meta.xattrs:
                self.setxattr(proc, os.fsdecode(xname), value, ev.path)
        self.selinux_at(pfd, name, meta, ev.path)
        self.mtime_at(pfd, name, meta)
        return True

    def end_dir(self, stack: list[_Frame]) -> None:
        if not stack:
            raise DesyncError("unbalanced directory end in archive")
        fr = stack.pop()
        try:
            if self.opts.delete and not fr.fresh:
                self.note_unseen(fr)
            if stack:
                parent = stack[-1]
                pfd = os.open(b"..", _DIR_OPEN, dir_fd=fr.fd)
                st = os.fstat(pfd)
                if (st.st_dev, st.st_ino) != (parent.dev, parent.ino):
                    os.close(pfd)
                    raise DesyncError(f"directory {_show(parent.path)} was replaced during extraction")
                parent.fd = pfd
            self.fd_metadata(fr.fd, fr.meta, fr.path, fr.inherits or not fr.fresh)
        except OSError as e:
            raise DesyncError(f"cannot finish directory {_show(fr.path)}: {e.strerror or e}") from None
        finally:
            os.close(fr.fd)
            fr.fd = -1

    def file_mode(self, meta: Meta) -> int:
        """The mode a regular file is created with: casync's ``0600`` plus the archive's bits where they stay."""
        return 0o600 if self.exact_modes else 0o600 | (meta.permissions & 0o777)

    def restore_mode(self, fd: int, meta: Meta) -> None:
        """Set the mode casync 2 leaves (see the module docstring), or the umask's under --no-same-permissions."""
        if self.opts.no_same_permissions:
            os.fchmod(fd, self.umask_mode(meta))
        elif self.exact_modes:
            os.fchmod(fd, meta.permissions)
        elif self.flags & ff.WITH_READ_ONLY:
            cur = stat.S_IMODE(os.fstat(fd).st_mode)
            new = read_only_mode(cur, bool(meta.mode & 0o222), meta.is_dir)
            if new != cur:
                os.fchmod(fd, new)

    def umask_mode(self, meta: Meta) -> int:
        """``untar --no-same-permissions``: a new node's default mode less the umask, whatever the archive says."""
        return (0o777 if meta.is_dir else 0o666) & ~self.umask

    def created_gid(self, st: os.stat_result) -> int:
        """The group of a file created in the directory ``st`` describes."""
        return st.st_gid if st.st_mode & stat.S_ISGID else self.egid

    def ids(self, meta: Meta) -> tuple[int, int] | None:
        """The owner to give a node, as casync picks it: by name where the archive has one, else by ID.

        A name that is a number is an ID; IDs pass through ``--uid-shift``.
        """
        if not self.as_root or self.opts.no_same_owner or not self.flags & (_UIDS | ff.WITH_USER_NAMES):
            return None
        uid = self.owner_id(meta.user_name, meta.uid, self.lookup_uid)
        gid = self.owner_id(meta.group_name, meta.gid, self.lookup_gid)
        if uid is None or gid is None:
            return None
        return uid, gid

    def owner_id(self, name: bytes | None, ident: int, lookup: Callable[[bytes], int | None]) -> int | None:
        if name is not None:
            found = lookup(name)
            if found is not None or not self.flags & _UIDS:
                return found
        return self.shifted(ident)

    def shifted(self, ident: int) -> int:
        shift = self.opts.uid_shift
        if shift is None:
            return ident
        out = shift.from_archive(ident)
        if out is None:
            raise DesyncError(f"uid/gid {ident} of the archive cannot be shifted by {shift.shift} "
                              f"(range {shift.range or 1 << 32})")
        return out

    def lookup_uid(self, name: bytes) -> int | None:
        if name not in self._uids:
            if name.isdigit():
                self._uids[name] = self.shifted(int(name))
            else:
                try:
                    self._uids[name] = pwd.getpwnam(os.fsdecode(name)).pw_uid
                except KeyError:
                    self._uids[name] = None
        return self._uids[name]

    def lookup_gid(self, name: bytes) -> int | None:
        if name not in self._gids:
            if name.isdigit():
                self._gids[name] = self.shifted(int(name))
            else:
                try:
                    self._gids[name] = grp.getgrnam(os.fsdecode(name)).gr_gid
                except KeyError:
                    self._gids[name] = None
        return self._gids[name]

    def acl_uid(self, e: AclEntry) -> int:
        if e.name is not None:
            found = self.lookup_uid(e.name)
            if found is not None:
                return found
        return self.shifted(e.ident)

    def acl_gid(self, e: AclEntry) -> int:
        if e.name is not None:
            found = self.lookup_gid(e.name)
            if found is not None:
                return found
        return self.shifted(e.ident)

    def owner_at(self, pfd: int, name: bytes, meta: Meta, path: tuple[bytes, ...]) -> None:
        ids = self.ids(meta)
        if ids is not None:
            os.chown(name, ids[0], ids[1], dir_fd=pfd, follow_symlinks=False)

    def mtime_at(self, pfd: int, name: bytes, meta: Meta) -> None:
        if ff.time_granularity(self.flags):
            os.utime(name, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def selinux_at(self, pfd: int, name: bytes, meta: Meta, path: tuple[bytes, ...]) -> None:
        if self.opts.selinux and meta.selinux:
            target = f"/proc/self/fd/{pfd}/{os.fsdecode(name)}"
            self.setxattr(target, "security.selinux", meta.selinux + b"\0", path)

    def setxattr(self, target: int | str, name: str, value: bytes, path: tuple[bytes, ...]) -> None:
        try:
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError as e:
            if e.errno not in _REFUSED and e.errno not in (errno.ENOENT, errno.E2BIG, errno.ENOSPC):
                raise
            self.warn(f"{_show(path)}: cannot set {name}: {e.strerror}")

    def fd_metadata(self, fd: int, meta: Meta, path: tuple[bytes, ...], had_acls: bool | None = None) -> None:
        """Owner, mode, xattrs, ACLs, caps, label, mtime, chattr flags of an open node.

        ``had_acls``: the node may carry ACLs the archive does not have (inherited,
        or an existing directory's); None means "if its directory has a default ACL".
        """
        ids = self.ids(meta)
        if ids is not None:
            os.fchown(fd, ids[0], ids[1])
        self.restore_mode(fd, meta)
        if self.opts.xattrs:
            for xname, value in meta.xattrs:
                self.setxattr(fd, os.fsdecode(xname), value, path)
        if self.track_acls:
            access: bytes | None = None
            default: bytes | None = None
            if meta.acl is not None:
                access, default = posix_acls_for(meta.acl, meta.mode, self.acl_uid, self.acl_gid)
            stale = self.parent_inherits if had_acls is None else had_acls
            if access is not None:
                self.setxattr(fd, XATTR_ACCESS, access, path)
            elif stale:
                self.drop_acl(fd, XATTR_ACCESS, path)
            if meta.is_dir:
                if default is not None:
                    self.setxattr(fd, XATTR_DEFAULT, default, path)
                elif stale:
                    self.drop_acl(fd, XATTR_DEFAULT, path)
        if self.opts.fcaps and meta.fcaps and meta.is_reg:
            self.setxattr(fd, "security.capability", meta.fcaps, path)
        if self.opts.selinux and meta.selinux:
            self.setxattr(fd, "security.selinux", meta.selinux + b"\0", path)
        if ff.time_granularity(self.flags):
            os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
        if self.opts.fsflags and meta.fsflags & ff.WITH_CHATTR:
            self.set_chattr(fd, meta.fsflags, path)

    def drop_acl(self, target: int | str, name: str, path: tuple[bytes, ...]) -> None:
        """Remove an ACL the archive does not have (as casync's writing of the archive's ACL does)."""
        try:
            if isinstance(target, int):
                os.removexattr(target, name)
            else:
                os.removexattr(target, name, follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                return
            if e.errno not in _REFUSED:
                raise
            self.warn(f"{_show(path)}: cannot remove {name}: {e.strerror}")

    def set_chattr(self, fd: int, fsflags: int, path: tuple[bytes, ...]) -> None:
        want = 0
        for kbit, wbit in CHATTR_MAP:
            if fsflags & wbit:
                want |= kbit
        try:
            cur = struct.unpack_from("=I", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(8)), 0)[0]
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("=I", cur | want) + bytes(4))
        except OSError as e:
            if e.errno not in _REFUSED:
                raise
            self.warn(f"{_show(path)}: cannot set file attributes: {e.strerror}")
