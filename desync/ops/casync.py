"""What ``casync`` verbs need beyond the other operations: locations, subtrees, digests.

casync names files as local paths, ``-`` (stdin/stdout), ``http(s)://``
URLs and ``host:/path`` (SSH, :mod:`desync.protocol.files`).  Its
``list``, ``mtree``, ``digest`` and ``extract`` take an optional path inside
the archive ("seek path"); :func:`subtree` selects that part of a decoded
archive.  ``digest`` prints the digest of the archive stream (for a
directory, of its encoding; for a subtree, of the bytes from its ENTRY to
the end of its GOODBYE, which are the bytes encoding that directory on its
own gives), or of a blob or a single file's contents.
"""

import http.client
import io
import os
import ssl
import stat
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Final

from .. import digest as digest_mod
from .. import featureflags as ff
from .. import fsutil
from ..catar.decoder import DirEnd, Node
from ..catar.model import UidShift
from ..constants import CA_FORMAT_SYMLINK
from ..catar.format import GOODBYE_ITEM_SIZE, GOODBYE_TAIL_SIZE, HEADER_SIZE, device_record, \
    payload_header, string_record
from ..catar.fsread import CHATTR_MAP, FAT_MAP
from ..catar.mtree import escape, mode_string
from ..catar.writer import meta_records
from ..digest import Digest
from ..errors import DesyncError, InvalidArgument
from ..index import INDEX_SIZE_LIMIT, Index
from ..index import parse as parse_index
from ..ratelimit import Throttle
from ..rawio import BlockSource
from ..protocol.files import SSHPath, casync_command, parse_ssh_path, pull_file, pull_index_bytes
from ..stores import compose
from ..stores.base import Store
from ..stores.router import StoreRouter
from ..stores.ssh import SSHStore
from ..stores.base import StoreOptions
from ..stores.capabilities import PrunableStore, ReadStore
from ..stores.local import LocalStore
from ..stores.indexes import read_index

Events = Iterator[Node | DirEnd]
_BLOCK = 1 << 20
_PIECE = 64 << 10


def is_url(location: str) -> bool:
    return location.lower().startswith(("http://", "https://", "ftp://", "sftp://"))


def is_local(location: str) -> bool:
    """A local path or ``-``: not a URL and not ``host:/path``."""
    return not is_url(location) and parse_ssh_path(location) is None


def store_location(location: str) -> str:
    """A casync store location as the store layer names it (``host:/path`` is ``ssh://host/path``)."""
    ssh = parse_ssh_path(location)
    if ssh is None:
        return location
    path = ssh.path if ssh.path.startswith("/") else "/" + ssh.path
    return f"ssh://{ssh.host}{path}"


def open_store(location: str, options: StoreOptions, writable: bool = False) -> Store:
    """A casync store location; ``host:/path`` is read over SSH with the argv casync uses."""
    ssh = parse_ssh_path(location)
    if ssh is None:
        return compose.open_location(location, lambda _loc: options, writable)
    store = SSHStore(store_location(location), options)
    store.argv = casync_command(ssh, "pull", "-", "-", ssh.path, options.rate_limit)
    return store


def chain_stores(locations: list[str], options: StoreOptions) -> Store:
    """The stores in order, asked one after the other for each chunk."""
    stores: list[Store] = []
    try:
        for location in locations:
            stores.append(open_store(location, options))
    except BaseException:
        for store in stores:
            store.close()
        raise
    return stores[0] if len(stores) == 1 else StoreRouter(stores)


def load_index(location: str, options: StoreOptions) -> Index:
    """An index from a file, stdin (``-``), an HTTP(S) URL or ``host:/path``."""
    ssh = parse_ssh_path(location)
    if ssh is not None:
        return parse_index(pull_index_bytes(ssh, INDEX_SIZE_LIMIT, options.rate_limit), str(ssh))
    return read_index(location, options)


def open_archive(location: str, options: StoreOptions) -> IO[bytes]:
    """A catar stream from a file, stdin (``-``), an HTTP(S) URL or ``host:/path``."""
    ssh = parse_ssh_path(location)
    if ssh is not None:
        return io.BufferedReader(BlockSource(pull_file(ssh, archive=True, rate_limit=options.rate_limit)), _BLOCK)
    if location.lower().startswith(("http://", "https://")):
        return _http_get(location, options)
    if is_url(location):
        raise InvalidArgument(f"{location}: only http(s):// and host:/path locations are supported")
    if location == "-":
        return fsutil.stdin_binary()
    try:
        return open(location, "rb")
    except OSError as exc:
        raise DesyncError(f"cannot open {location}: {exc.strerror}") from None


def _http_get(url: str, options: StoreOptions) -> IO[bytes]:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    timeout = options.timeout if options.timeout > 0 else None
    conn: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        context = ssl.create_default_context(cafile=options.ca_cert or None)
        if options.trust_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, parts.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "identity"})
        resp = conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        raise DesyncError(f"GET {url}: {exc}") from None
    if resp.status != 200:
        conn.close()
        raise DesyncError(f"GET {url}: {resp.status} {resp.reason}")
    if options.rate_limit > 0:
        return io.BufferedReader(BlockSource(_throttled(resp, Throttle(options.rate_limit))), _BLOCK)
    return resp


def _throttled(source: IO[bytes], throttle: Throttle) -> Iterator[bytes]:
    """``source`` in pieces, no faster than ``throttle`` allows (casync's --rate-limit-bps over HTTP)."""
    try:
        while True:
            piece = source.read(_PIECE)
            if not piece:
                return
            throttle.account(len(piece))
            yield piece
    finally:
        source.close()


def split_seek(seek: str) -> tuple[bytes, ...]:
    """casync's subtree path: leading slashes and empty parts ignored; "" or "/" is the whole archive."""
    return tuple(p for p in os.fsencode(seek).split(b"/") if p and p != b".")


def subtree(events: Iterable[Node | DirEnd], seek: tuple[bytes, ...]) -> Events:
    """The events of the entry at ``seek`` and below it (paths unchanged); an error if there is none."""
    found = False
    depth = len(seek)
    for ev in events:
        if ev.path[:depth] == seek:
            found = True
            yield ev
            if isinstance(ev, DirEnd) and ev.path == seek:
                return
            if isinstance(ev, Node) and ev.path == seek and not ev.meta.is_dir:
                return
        elif found:
            return
    if not found:
        raise DesyncError(f"{b'/'.join(seek).decode(errors='replace')}: no such entry in the archive")


def rerooted(events: Iterable[Node | DirEnd], seek: tuple[bytes, ...]) -> Events:
    """The subtree at ``seek`` as an archive of its own: the directory at ``seek`` becomes the root."""
    n = len(seek)
    for ev in subtree(events, seek):
        if isinstance(ev, Node):
            if ev.path == seek and not ev.meta.is_dir:
                raise DesyncError(f"{b'/'.join(seek).decode(errors='replace')} is not a directory")
            ev.path = ev.path[n:]
        else:
            ev.path = ev.path[n:]
        yield ev


def subtree_range(events: Iterable[Node | DirEnd], seek: tuple[bytes, ...]) -> tuple[Node, int, int]:
    """The entry at ``seek`` and, for a directory, where its encoding starts and ends in the archive stream."""
    node: Node | None = None
    children = 0
    for ev in subtree(events, seek):
        if isinstance(ev, Node):
            if ev.path == seek:
                node = ev
                if not ev.meta.is_dir:
                    return ev, 0, 0
            elif len(ev.path) == len(seek) + 1:
                children += 1
        elif ev.path == seek:
            assert node is not None
            end = ev.offset + HEADER_SIZE + GOODBYE_ITEM_SIZE * children + GOODBYE_TAIL_SIZE
            return node, node.offset, end
    raise DesyncError(f"{b'/'.join(seek).decode(errors='replace')}: no such entry in the archive")


def digest_stream(pieces: Iterable[bytes | bytearray | memoryview], digest: Digest, start: int = 0,
                  end: int = -1) -> bytes:
    """The digest of the bytes ``start..end`` (``end`` -1: to the end) of a stream given in pieces."""
    h = digest.hasher()
    pos = 0
    for piece in pieces:
        n = len(piece)
        lo = max(start - pos, 0)
        hi = n if end < 0 else min(n, end - pos)
        if hi > lo:
            h.update(memoryview(piece)[lo:hi])
        pos += n
        if 0 <= end <= pos:
            break
    return h.digest()


def file_pieces(f: IO[bytes]) -> Iterator[bytes]:
    while True:
        block = f.read(_BLOCK)
        if not block:
            return
        yield block


def payload_digest(node: Node, digest: Digest) -> bytes:
    """The digest of a regular file's contents as the archive holds them."""
    if node.payload is None:
        raise DesyncError(f"{node.relpath.decode(errors='replace')} is not a regular file")
    return digest_stream(node.payload.blocks(), digest)


class HashingPieces:
    """Passes byte pieces through while hashing them (for the digest ``casync make`` prints)."""

    def __init__(self, pieces: Iterable[bytes], digest: Digest) -> None:
        self.pieces = pieces
        self.hash = digest.hasher()
        self.length = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.pieces:
            self.hash.update(piece)
            self.length += len(piece)
            yield piece

    def digest(self) -> bytes:
        return self.hash.digest()


class HashingReader:
    """Reads through ``readinto`` while hashing what passes (``make`` of a blob prints its digest)."""

    def __init__(self, f: IO[bytes], digest: Digest) -> None:
        self.f = f
        self.hash = digest.hasher()

    def readinto(self, buf: "memoryview | bytearray") -> int:
        n: int = self.f.readinto(buf) or 0  # type: ignore[attr-defined]
        if n:
            self.hash.update(memoryview(buf)[:n])
        return n

    def close(self) -> None:
        self.f.close()

    def digest(self) -> bytes:
        return self.hash.digest()


def ssh_target(location: str) -> SSHPath | None:
    return parse_ssh_path(location)


def mapped(events: Iterable[Node | DirEnd], fn: Callable[[Node | DirEnd], None]) -> Events:
    for ev in events:
        fn(ev)
        yield ev


class TreeCache:
    """casync's encoder cache (``make --cache``): a tree that did not change is not read again.

    The cache directory keeps the last archive index made of the tree with
    a key over what could change its archive: the feature flags, chunk
    sizes, digest and ``--uid-shift``, and every entry's path, type, mode, owner, size,
    device, inode and modification and change times (the change time
    moves with xattrs, ACLs and chattr flags too).  A later ``make`` of the
    same tree walks it with lstat only; when the key matches and the store
    still holds every chunk, the cached index is the result.
    """

    KEY = "tree.key"
    INDEX = "tree.caidx"

    def __init__(self, path: str, root: str, flags: int, sizes: tuple[int, int, int], digest: Digest,
                 uid_shift: UidShift | None = None) -> None:
        self.path = path
        self.uid_shift = uid_shift
        self.root = root
        self.flags = flags
        self.sizes = sizes
        self.digest = digest
        self._key = b""

    def key(self) -> bytes:
        """The digest of the tree's metadata walk (computed once per run)."""
        if self._key:
            return self._key
        h = digest_mod.SHA512_256_DIGEST.hasher()
        h.update(f"{self.flags:x} {self.sizes} {self.digest.name} {self.uid_shift}\n".encode())
        cache = os.path.abspath(self.path)
        for dirpath, dirs, files in os.walk(self.root):
            dirs.sort()
            if os.path.abspath(dirpath) == cache:
                dirs.clear()
                continue
            for name in [".", *sorted(files), *dirs]:
                full = dirpath if name == "." else os.path.join(dirpath, name)
                if os.path.abspath(full) == cache:
                    continue
                st = os.lstat(full)
                h.update(os.fsencode(os.path.relpath(full, self.root)) + b"\0")
                h.update(f"{st.st_mode} {st.st_uid} {st.st_gid} {st.st_size} {st.st_rdev} {st.st_dev} "
                         f"{st.st_ino} {st.st_mtime_ns} {st.st_ctime_ns}\n".encode())
        self._key = h.digest()
        return self._key

    def lookup(self, store: ReadStore) -> Index | None:
        """The cached index when the tree is unchanged and its chunks are all in ``store``."""
        try:
            with open(os.path.join(self.path, self.KEY), "rb") as f:
                saved = f.read()
            with open(os.path.join(self.path, self.INDEX), "rb") as f:
                data = f.read()
        except OSError:
            return None
        if saved != self.key():
            return None
        try:
            index = parse_index(data, self.INDEX)
        except DesyncError:
            return None
        if not all(store.has_chunk(cid) for cid in {c.id for c in index.chunks}):
            return None
        return index

    def save(self, index: Index) -> None:
        """Remember ``index`` for this state of the tree."""
        os.makedirs(self.path, exist_ok=True)
        fsutil.write_file_atomic(os.path.join(self.path, self.INDEX), index.to_bytes(), 0o644)
        fsutil.write_file_atomic(os.path.join(self.path, self.KEY), self.key(), 0o644)


# ls_format_chattr's letters in casync's order (kernel FS_*_FL bits), and ls_format_fat_attrs'.
_CHATTR_LETTERS: Final = ((0x8, "S"), (0x10000, "D"), (0x10, "i"), (0x20, "a"), (0x40, "d"), (0x80, "A"), (0x4, "c"),
                          (0x400, "N"), (0x800000, "C"), (0x20000000, "P"))
_FAT_LETTERS: Final = ((0x2, "h"), (0x4, "s"), (0x20, "a"))


def _letters(bits: int, table: tuple[tuple[int, str], ...]) -> str:
    return "".join(letter if bits & flag else "-" for flag, letter in table)


def _owner_line(label: str, uids: bool, names: bool, ident: int, name: bytes | None) -> str | None:
    """casync's User/Group line: the name (``root`` for ID 0 in an archive with names) and the ID where stored."""
    shown = name if name else (b"root" if names and ident == 0 else None)
    if uids and shown:
        return f"{label}: {escape(shown)} ({ident})"
    if uids:
        return f"{label}: {ident}"
    if shown:
        return f"{label}: {escape(shown)}"
    return None


def stat_report(node: Node, digest: Digest, projid: int | None = None) -> list[str]:
    """casync's ``stat`` of one entry, line for line.

    The attribute lines come from the entry's flags (regular files and
    directories only), ``Offset`` is where its ENTRY record starts in the
    archive stream, ``Digest`` the digest of a file's contents and
    ``HLDigest`` (everything but directories) that of its records from
    ENTRY on plus its contents: what casync compares to find hardlink
    candidates.  ``projid`` adds casync's ``ProjID`` line (directory input).
    """
    meta = node.meta
    flags = node.feature_flags
    lines = [f"    File: {escape(node.relpath)}", f"    Mode: {mode_string(meta.mode)}"]
    if meta.is_reg or meta.is_dir:
        chattr = 0
        fat = 0
        for kbit, wbit in CHATTR_MAP:
            if meta.fsflags & wbit:
                chattr |= kbit
        for kbit, wbit in FAT_MAP:
            if meta.fsflags & wbit:
                fat |= kbit
        lines.append(f"FileAttr: {_letters(chattr, _CHATTR_LETTERS)}")
        lines.append(f" FATAttr: {_letters(fat, _FAT_LETTERS)}")
    lines.append(f"  Offset: {node.offset}")
    if ff.time_granularity(flags):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(meta.mtime_ns // 1_000_000_000))
        lines.append(f"    Time: {when}.{meta.mtime_ns % 1_000_000_000:09d}")
    if meta.is_reg:
        lines.append(f"    Size: {meta.size}")
    uids = bool(flags & (ff.WITH_16BIT_UIDS | ff.WITH_32BIT_UIDS))
    names = bool(flags & ff.WITH_USER_NAMES)
    for label, ident, name in (("    User", meta.uid, meta.user_name), ("   Group", meta.gid, meta.group_name)):
        line = _owner_line(label, uids, names, ident, name if names else None)
        if line is not None:
            lines.append(line)
    if projid is not None:
        lines.append(f"  ProjID: {projid}")
    if meta.is_symlink:
        lines.append(f"  Target: {escape(meta.target)}")
    if meta.is_device:
        lines.append(f"  Device: {meta.rdev_major}:{meta.rdev_minor}")
    for xname, xvalue in meta.xattrs:
        lines.append(f"   XAttr: {escape(xname)} → {escape(xvalue)}")
    if meta.is_dir:
        return lines
    records = meta_records(meta, flags)
    if meta.is_reg:
        records += payload_header(meta.size)
    elif meta.is_symlink:
        records += string_record(CA_FORMAT_SYMLINK, meta.target)
    elif meta.is_device:
        records += device_record(meta.rdev_major, meta.rdev_minor)
    hardlink = digest.hasher()
    hardlink.update(records)
    if node.payload is not None:
        contents = digest.hasher()
        for block in node.payload.blocks():
            contents.update(block)
            hardlink.update(block)
        lines.append(f"  Digest: {contents.hexdigest()}")
    elif stat.S_ISBLK(meta.mode):
        lines.append(f"  Digest: {digest.hasher().hexdigest()}")  # casync's payload digest of a block device: empty
    lines.append(f"HLDigest: {hardlink.hexdigest()}")
    return lines


@dataclass
class GcResult:
    """What ``casync gc`` reports: references in the indexes, distinct chunks kept, chunks and directories removed."""

    references: int = 0
    referenced: int = 0
    removed: int = 0
    directories: int = 0
    remaining: int = 0


def collect_garbage(store: PrunableStore, indexes: list[Index], dry_run: bool,
                    on_chunk: Callable[[bytes], None] | None = None) -> GcResult:
    """Remove (or with ``dry_run`` only count) the chunks of ``store`` that no index refers to, as casync's gc.

    ``on_chunk`` hears of each chunk before it goes; a local store's
    prefix directories that end up empty are removed with their last chunk
    (and counted, as casync counts them).
    """
    keep: set[bytes] = set()
    result = GcResult()
    for index in indexes:
        result.references += len(index.chunks)
        keep.update(c.id for c in index.chunks)
    result.referenced = len(keep)
    prefixes: set[str] = set()
    total = 0
    for chunk_id in list(store.iter_chunks()):
        total += 1
        if chunk_id in keep:
            continue
        if on_chunk is not None:
            on_chunk(chunk_id)
        result.removed += 1
        if not dry_run:
            store.remove_chunk(chunk_id)
            prefixes.add(chunk_id.hex()[:4])
    result.remaining = total - result.removed
    root = getattr(store, "path", None) if isinstance(store, LocalStore) else None
    if root is not None:
        result.directories = sum(1 for p in prefixes if not os.path.isdir(os.path.join(root, p)))
    return result
