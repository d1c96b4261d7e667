"""Convert between tar streams (GNU, pax, ustar) and catar archives.

``tar_to_catar(fileobj, flags) -> Iterator[bytes]`` reads a tar stream
(also from a pipe: stdlib ``tarfile`` in ``r|*`` mode, any compression it
detects) and yields the catar a ``casync make`` of the same tree would
produce, as far as tar carries the metadata.  A tar lists members in any
order while a catar needs casync's sorted depth-first order, so the
conversion buffers: the metadata of every member is kept in memory (a few
hundred bytes each) and file contents are spooled to one anonymous
temporary file (``spool_dir``, default the system temp dir), then the
archive is written in order reading contents back in blocks.  Memory is
therefore proportional to the number of members, not to their sizes.

Members map as follows: directories, regular files (also contiguous),
symlinks, character/block devices and FIFOs become the matching entries
(subject to the feature flags, like the file-system encoder); pax
``SCHILY.xattr.user.*``/``trusted.*`` become XATTR records and pax
``mtime`` keeps nanoseconds; ``uname``/``gname`` become USER/GROUP records
when the flags carry user names.  Parent directories missing from the tar
(and the root, unless the tar has a ``.`` member) get mode 0755, owner 0
and mtime 0.  A later member replaces an earlier one with the same path.
Hard links and other member types raise :class:`DesyncError`, as do
absolute-path tricks such as ``..`` components.

``catar_to_tar(events, out, fmt)`` writes decoded catar events as a tar
stream (``"gnu"`` by default, or ``"pax"`` which also keeps xattrs and
nanosecond mtimes).  Sockets cannot be represented in tar and are skipped
with a warning.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import IO, Callable, Iterable, Iterator

from .. import featureflags as ff
from ..errors import DesyncError
from .decoder import DirEnd, Node
from .encoder import DEFAULT_BLOCK_SIZE
from .format import device_in_range, ids_in_range, stored_xattr_name, type_feature, valid_user_name
from .model import Meta
from .writer import ArchiveWriter

TYPE_CHECKING = False
if TYPE_CHECKING:  # tarfile and tempfile are imported where tar streams are handled: untar of a catar needs neither
    import tarfile

_ENC = "utf-8"
_ERR = "surrogateescape"
_XATTR_PREFIX = "SCHILY.xattr."


@dataclass
class _TNode:
    meta: Meta
    children: dict[bytes, "_TNode"] | None = None
    data_offset: int = 0


def _default_dir() -> _TNode:
    return _TNode(Meta(mode=stat.S_IFDIR | 0o755), {})


def _split(name: str) -> list[bytes]:
    parts: list[bytes] = []
    for comp in name.encode(_ENC, _ERR).split(b"/"):
        if comp in (b"", b"."):
            continue
        if comp == b"..":
            raise DesyncError(f"tar member {name!r} leaves the archive root")
        if b"\0" in comp or len(comp) > 255:
            raise DesyncError(f"tar member {name!r} has an invalid name")
        parts.append(comp)
    return parts


def _mtime_ns(info: tarfile.TarInfo) -> int:
    raw = info.pax_headers.get("mtime")
    if raw:
        neg = raw.startswith("-")
        digits = raw[1:] if neg else raw
        sec, _, frac = digits.partition(".")
        try:
            ns = int(sec or "0") * 1_000_000_000 + int((frac + "000000000")[:9])
        except ValueError:
            ns = int(info.mtime) * 1_000_000_000
        return -ns if neg else ns
    return int(info.mtime) * 1_000_000_000


def _meta_from(info: tarfile.TarInfo, flags: int) -> Meta:
    if info.isdir():
        ftype = stat.S_IFDIR
    elif info.isreg():
        ftype = stat.S_IFREG
    elif info.issym():
        ftype = stat.S_IFLNK
    elif info.ischr():
        ftype = stat.S_IFCHR
    elif info.isblk():
        ftype = stat.S_IFBLK
    elif info.isfifo():
        ftype = stat.S_IFIFO
    elif info.islnk():
        raise DesyncError(f"tar member {info.name!r} is a hard link; catar cannot represent hard links")
    else:
        raise DesyncError(f"tar member {info.name!r} has unsupported type {info.type!r}")
    meta = Meta(mode=ftype | (info.mode & 0o7777), uid=info.uid, gid=info.gid, mtime_ns=_mtime_ns(info))
    if flags & (ff.WITH_16BIT_UIDS | ff.WITH_32BIT_UIDS) and not ids_in_range(flags, info.uid, info.gid):
        bits = "16-bit" if flags & ff.WITH_16BIT_UIDS else "32-bit"
        raise DesyncError(f"tar member {info.name!r}: uid/gid {info.uid}/{info.gid} does not fit "
                          f"the {bits} uids feature")
    if flags & ff.WITH_USER_NAMES:
        uname = info.uname.encode(_ENC, _ERR)
        gname = info.gname.encode(_ENC, _ERR)
        if info.uid != 0 and valid_user_name(uname):
            meta.user_name = uname
        if info.gid != 0 and valid_user_name(gname):
            meta.group_name = gname
    if ftype == stat.S_IFREG:
        meta.size = info.size
    elif ftype == stat.S_IFLNK:
        meta.target = info.linkname.encode(_ENC, _ERR)
        if not meta.target:
            raise DesyncError(f"tar member {info.name!r}: empty symlink target")
    elif ftype in (stat.S_IFCHR, stat.S_IFBLK):
        if not device_in_range(info.devmajor, info.devminor):
            raise DesyncError(f"tar member {info.name!r}: device number {info.devmajor}:{info.devminor} out of range")
        meta.rdev_major = info.devmajor
        meta.rdev_minor = info.devminor
    if flags & ff.WITH_XATTRS and ftype in (stat.S_IFREG, stat.S_IFDIR):
        xattrs: list[tuple[bytes, bytes]] = []
        for key, value in info.pax_headers.items():
            if key.startswith(_XATTR_PREFIX):
                xname = key[len(_XATTR_PREFIX) :].encode(_ENC, _ERR)
                if stored_xattr_name(xname):
                    xattrs.append((xname, value.encode(_ENC, _ERR)))
        xattrs.sort()
        meta.xattrs = xattrs
    return meta


def tar_to_catar(
    fileobj: IO[bytes],
    flags: int = ff.DESYNC_TAR_FLAGS,
    *,
    spool_dir: str | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    zero_times: bool = False,
    add_root: bool = False,
) -> Iterator[bytes]:
    """Yield the catar of the tree in the tar stream ``fileobj``.

    ``zero_times`` stores every mtime as 0; ``add_root`` gives the tree a root
    directory of its own (mode 0755, owner 0, time 0) whatever the stream says
    of ``.`` (the Go desync's ``--tar-add-root``).
    """
    import tempfile

    flags = ff.normalize(flags)
    with tempfile.TemporaryFile(dir=spool_dir) as spool:
        root = _read_tar(fileobj, flags, spool, block_size, zero_times, add_root)
        yield from _write_tree(root, flags, spool.fileno(), block_size)


def _read_tar(fileobj: IO[bytes], flags: int, spool: IO[bytes], block_size: int, zero_times: bool = False,
              add_root: bool = False) -> _TNode:
    import tarfile

    root = _default_dir()
    spooled = 0
    try:
        tf = tarfile.open(fileobj=fileobj, mode="r|*", encoding=_ENC, errors=_ERR)
    except tarfile.TarError as e:
        raise DesyncError(f"cannot read tar stream: {e}") from None
    with tf:
        try:
            for info in tf:
                parts = _split(info.name)
                meta = _meta_from(info, flags)
                if zero_times:
                    meta.mtime_ns = 0
                if not parts:
                    if not meta.is_dir:
                        raise DesyncError(f"tar member {info.name!r} (the root) is not a directory")
                    if not add_root:
                        root.meta = meta
                    continue
                parent = root
                for comp in parts[:-1]:
                    assert parent.children is not None
                    nxt = parent.children.get(comp)
                    if nxt is None or nxt.children is None:
                        nxt = _default_dir()
                        parent.children[comp] = nxt
                    parent = nxt
                assert parent.children is not None
                leaf = parts[-1]
                old = parent.children.get(leaf)
                if meta.is_dir:
                    if old is not None and old.children is not None:
                        old.meta = meta
                    else:
                        parent.children[leaf] = _TNode(meta, {})
                    continue
                node = _TNode(meta)
                if meta.is_reg:
                    node.data_offset = spooled
                    src = tf.extractfile(info)
                    left = meta.size
                    while left > 0:
                        block = src.read(min(left, block_size)) if src is not None else b""
                        if not block:
                            raise DesyncError(f"tar stream truncated in {info.name!r}")
                        spool.write(block)
                        left -= len(block)
                    spooled += meta.size
                parent.children[leaf] = node
        except tarfile.TarError as e:
            raise DesyncError(f"invalid tar stream: {e}") from None
    spool.flush()
    return root


@dataclass
class _WFrame:
    node: _TNode
    names: list[bytes]
    idx: int = 0


def _write_tree(root: _TNode, flags: int, spool_fd: int, block_size: int) -> Iterator[bytes]:
    w = ArchiveWriter(flags)
    yield w.root(root.meta)
    stack = [_WFrame(root, sorted(root.children or {}))]
    while stack:
        fr = stack[-1]
        if fr.idx >= len(fr.names):
            yield w.end_dir()
            stack.pop()
            continue
        name = fr.names[fr.idx]
        fr.idx += 1
        assert fr.node.children is not None
        child = fr.node.children[name]
        meta = child.meta
        need = type_feature(meta.mode)
        if need and not flags & need:
            continue
        yield w.child(name, meta)
        if meta.is_dir:
            stack.append(_WFrame(child, sorted(child.children or {})))
            continue
        if meta.is_reg:
            pos = child.data_offset
            left = meta.size
            while left > 0:
                block = os.pread(spool_fd, min(left, block_size), pos)
                if not block:
                    raise DesyncError("tar spool file truncated")
                w.payload_bytes(len(block))
                pos += len(block)
                left -= len(block)
                yield block
        w.end_leaf()


def catar_to_tar(
    events: Iterable[Node | DirEnd],
    out: IO[bytes],
    fmt: str = "gnu",
    *,
    on_warning: Callable[[str], None] | None = None,
) -> None:
    """Write decoded catar events to ``out`` as a ``gnu`` or ``pax`` tar stream."""
    import tarfile

    if fmt not in ("gnu", "pax"):
        raise DesyncError(f"unsupported tar format {fmt!r} (gnu or pax)")
    tar_format = tarfile.GNU_FORMAT if fmt == "gnu" else tarfile.PAX_FORMAT
    with tarfile.open(fileobj=out, mode="w|", format=tar_format, encoding=_ENC, errors=_ERR) as tf:
        for ev in events:
            if not isinstance(ev, Node):
                continue
            meta = ev.meta
            info = tarfile.TarInfo(ev.relpath.decode(_ENC, _ERR))
            info.mode = meta.mode & 0o7777
            info.uid = meta.uid
            info.gid = meta.gid
            info.uname = meta.user_name.decode(_ENC, _ERR) if meta.user_name else ""
            info.gname = meta.group_name.decode(_ENC, _ERR) if meta.group_name else ""
            secs, nsec = divmod(meta.mtime_ns, 1_000_000_000)
            info.mtime = secs
            if tar_format == tarfile.PAX_FORMAT:
                pax: dict[str, str] = {}
                if nsec:
                    pax["mtime"] = f"{secs}.{nsec:09d}"
                for xname, value in meta.xattrs:
                    pax[_XATTR_PREFIX + xname.decode(_ENC, _ERR)] = value.decode(_ENC, _ERR)
                info.pax_headers = pax
            ftype = meta.file_type
            if ftype == stat.S_IFDIR:
                info.type = tarfile.DIRTYPE
            elif ftype == stat.S_IFREG:
                info.type = tarfile.REGTYPE
                info.size = meta.size
                tf.addfile(info, ev.payload)
                continue
            elif ftype == stat.S_IFLNK:
                info.type = tarfile.SYMTYPE
                info.linkname = meta.target.decode(_ENC, _ERR)
            elif ftype in (stat.S_IFCHR, stat.S_IFBLK):
                info.type = tarfile.CHRTYPE if ftype == stat.S_IFCHR else tarfile.BLKTYPE
                info.devmajor = meta.rdev_major
                info.devminor = meta.rdev_minor
            elif ftype == stat.S_IFIFO:
                info.type = tarfile.FIFOTYPE
            else:
                if on_warning is not None:
                    on_warning(f"{ev.relpath.decode(_ENC, _ERR)}: sockets cannot be stored in tar, skipped")
                continue
            tf.addfile(info)
