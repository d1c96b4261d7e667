"""catar record layouts, the GOODBYE hash and table order, feature-flag resolution.

Everything here is pure computation on bytes and integers (docs/formats.md 1, 5),
shared by the encoder, the decoder and the tar converter so that the three
agree on every byte.

Public API:

* ``siphash24(key, data) -> int`` and ``goodbye_hash(name) -> int``
  (SipHash-2-4 with casync's key, docs/formats.md 5.6).
* ``bst_order(n) -> list[int]``: slot -> index into the hash-sorted items.
* ``goodbye_record(items, entry_distance) -> bytes`` where ``items`` are
  ``GoodbyeItem(offset, size, hash)`` in directory order.
* Record builders: ``header``, ``entry_record``, ``string_record``,
  ``xattr_record``, ``device_record``, ``u64_record``, ``acl_*_record``,
  ``payload_header``.
* ``resolve_flags(with_names, without_names, ...)``: casync's ``--with`` /
  ``--without`` rules (docs/formats.md 5.10) followed by normalisation.
* ``archive_mode``/``archive_mtime``: what casync stores for a mode and
  an mtime under given flags; ``type_feature(mode)``: the WITH bit a node
  type needs; name validity rules of casync's decoder.
"""

from __future__ import annotations

import stat
import struct
from typing import Final, Iterable, Sequence

from .. import featureflags as ff
from .._accel import siphash_module
from ..constants import (
    CA_FORMAT_ACL_DEFAULT,
    CA_FORMAT_DEVICE,
    CA_FORMAT_ENTRY,
    CA_FORMAT_GOODBYE,
    CA_FORMAT_GOODBYE_TAIL_MARKER,
    CA_FORMAT_PAYLOAD,
    CA_FORMAT_XATTR,
    GOODBYE_HASH_KEY,
)

MASK64: Final = 0xFFFFFFFFFFFFFFFF
# The largest file offset (off_t): no record of an archive can end past it.
OFFSET_MAX: Final = (1 << 63) - 1

HEADER: Final = struct.Struct("<QQ")
U64: Final = struct.Struct("<Q")
TWO_U64: Final = struct.Struct("<QQ")
ENTRY_BODY: Final = struct.Struct("<QQQQQQ")
GOODBYE_ITEM: Final = struct.Struct("<QQQ")
ACL_DEFAULT_BODY: Final = struct.Struct("<QQQQ")

HEADER_SIZE: Final = 16
ENTRY_SIZE: Final = 64
GOODBYE_ITEM_SIZE: Final = 24
GOODBYE_TAIL_SIZE: Final = 24
GOODBYE_MIN_SIZE: Final = HEADER_SIZE + GOODBYE_TAIL_SIZE

NAME_MAX: Final = 255
USER_NAME_MAX: Final = 255
XATTR_NAME_MAX: Final = 255
XATTR_VALUE_MAX: Final = 65536
SYMLINK_TARGET_MAX: Final = 4095
SELINUX_LABEL_MAX: Final = 4095
FCAPS_MAX: Final = 65536
ACL_PERMISSIONS_MASK: Final = 7
ACL_MISSING: Final = MASK64
DEVICE_MAJOR_LIMIT: Final = 1 << 12
DEVICE_MINOR_LIMIT: Final = 1 << 20

S_IFMT: Final = 0o170000
PERMS_MASK: Final = 0o7777

# Entry `flags` bits that may appear at all (chattr, FAT attributes, subvolume).
ENTRY_FLAG_BITS: Final = ff.WITH_FAT_ATTRS | ff.WITH_CHATTR | ff.WITH_SUBVOLUME | ff.WITH_SUBVOLUME_RO

_SIP_C0: Final = 0x736F6D6570736575
_SIP_C1: Final = 0x646F72616E646F6D
_SIP_C2: Final = 0x6C7967656E657261
_SIP_C3: Final = 0x7465646279746573


_SIPHASH: Final = siphash_module
ACCELERATED: Final = siphash_module is not None


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & MASK64


def siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 with 64-bit output, as casync hashes GOODBYE names (C when available)."""
    if _SIPHASH is not None:
        value: int = _SIPHASH.siphash24(key, data)
        return value
    return siphash24_py(key, data)


def _sip_rounds(v0: int, v1: int, v2: int, v3: int, rounds: int) -> tuple[int, int, int, int]:
    """``rounds`` SipRounds over the state (2 per message word, 4 to finish)."""
    for _ in range(rounds):
        v0 = (v0 + v1) & MASK64
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & MASK64
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & MASK64
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & MASK64
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash24_py(key: bytes, data: bytes) -> int:
    """The pure-Python SipHash-2-4; the C accelerator must agree with it."""
    if len(key) != 16:
        raise ValueError("SipHash key must be 16 bytes")
    k0, k1 = TWO_U64.unpack(key)
    v0 = _SIP_C0 ^ k0
    v1 = _SIP_C1 ^ k1
    v2 = _SIP_C2 ^ k0
    v3 = _SIP_C3 ^ k1
    n = len(data)
    full = n - (n % 8)
    words: list[int] = list(struct.unpack_from(f"<{full // 8}Q", data, 0)) if full else []
    tail = data[full:] + bytes(8 - (n - full))
    words.append(U64.unpack(tail)[0] | ((n & 0xFF) << 56))
    for m in words:
        v3 ^= m
        v0, v1, v2, v3 = _sip_rounds(v0, v1, v2, v3, 2)
        v0 ^= m
    v2 ^= 0xFF
    v0, v1, v2, v3 = _sip_rounds(v0, v1, v2, v3, 4)
    result: int = v0 ^ v1 ^ v2 ^ v3
    return result


def goodbye_hash(name: bytes) -> int:
    """The hash casync stores for a directory item (name without its NUL)."""
    return siphash24(GOODBYE_HASH_KEY, name)


def bst_order(n: int) -> list[int]:
    """Slot -> sorted-index permutation of a complete BST with ``n`` nodes.

    An in-order walk of the complete binary tree (children of slot i at
    2i+1, 2i+2) visits the slots in ascending key order; done with an
    explicit stack so huge directories cannot overflow the recursion limit.
    """
    out = [0] * n
    stack: list[int] = []
    slot = 0
    nxt = 0
    while stack or slot < n:
        while slot < n:
            stack.append(slot)
            slot = 2 * slot + 1
        slot = stack.pop()
        out[slot] = nxt
        nxt += 1
        slot = 2 * slot + 2
    return out


class GoodbyeItem:
    """One directory item as the GOODBYE table records it; compared by value.

    A plain class: three are made per archived entry, and a dataclass's
    generated methods run as interpreted code.
    """

    __slots__ = ("offset", "size", "hash")

    def __init__(self, offset: int, size: int, hash: int) -> None:
        self.offset = offset  # distance from the GOODBYE record back to the FILENAME
        self.size = size  # FILENAME record + the child's serialisation
        self.hash = hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GoodbyeItem):
            return NotImplemented
        return self.offset == other.offset and self.size == other.size and self.hash == other.hash

    def __hash__(self) -> int:
        return hash((self.offset, self.size, self.hash))

    def __repr__(self) -> str:
        return f"GoodbyeItem(offset={self.offset!r}, size={self.size!r}, hash={self.hash!r})"


def goodbye_table(items: Sequence[GoodbyeItem]) -> list[GoodbyeItem]:
    """Items in casync's on-disk order: hash-sorted (stable), then BST-permuted."""
    by_hash = sorted(range(len(items)), key=lambda i: items[i].hash)
    perm = bst_order(len(items))
    return [items[by_hash[k]] for k in perm]


def goodbye_size(n_items: int) -> int:
    return HEADER_SIZE + GOODBYE_ITEM_SIZE * n_items + GOODBYE_TAIL_SIZE


def goodbye_record(items: Sequence[GoodbyeItem], entry_distance: int) -> bytes:
    """The complete GOODBYE record; ``entry_distance`` is G - E (5.5)."""
    size = goodbye_size(len(items))
    parts = [HEADER.pack(size, CA_FORMAT_GOODBYE)]
    for it in goodbye_table(items):
        parts.append(GOODBYE_ITEM.pack(it.offset, it.size, it.hash))
    parts.append(GOODBYE_ITEM.pack(entry_distance, size, CA_FORMAT_GOODBYE_TAIL_MARKER))
    return b"".join(parts)


def header(size: int, rtype: int) -> bytes:
    return HEADER.pack(size, rtype)


def entry_record(feature_flags: int, mode: int, flags: int, uid: int, gid: int, mtime: int) -> bytes:
    return HEADER.pack(ENTRY_SIZE, CA_FORMAT_ENTRY) + ENTRY_BODY.pack(feature_flags, mode, flags, uid, gid, mtime)


def string_record(rtype: int, value: bytes) -> bytes:
    """A record whose body is a NUL-terminated string (names, targets, labels)."""
    return HEADER.pack(HEADER_SIZE + len(value) + 1, rtype) + value + b"\0"


def raw_record(rtype: int, body: bytes) -> bytes:
    return HEADER.pack(HEADER_SIZE + len(body), rtype) + body


def xattr_record(name: bytes, value: bytes) -> bytes:
    """casync's form: ``name NUL value`` with the value not terminated (5.7)."""
    return HEADER.pack(HEADER_SIZE + len(name) + 1 + len(value), CA_FORMAT_XATTR) + name + b"\0" + value


def device_record(major: int, minor: int) -> bytes:
    return HEADER.pack(HEADER_SIZE + 16, CA_FORMAT_DEVICE) + TWO_U64.pack(major, minor)


def u64_record(rtype: int, value: int) -> bytes:
    return HEADER.pack(HEADER_SIZE + 8, rtype) + U64.pack(value)


def acl_named_record(rtype: int, ident: int, permissions: int, name: bytes | None) -> bytes:
    body = TWO_U64.pack(ident, permissions)
    if name:
        body += name + b"\0"
    return raw_record(rtype, body)


def acl_default_record(user_obj: int, group_obj: int, other: int, mask: int) -> bytes:
    return raw_record(CA_FORMAT_ACL_DEFAULT, ACL_DEFAULT_BODY.pack(user_obj, group_obj, other, mask))


def payload_header(length: int) -> bytes:
    return HEADER.pack(HEADER_SIZE + length, CA_FORMAT_PAYLOAD)


def resolve_flags(
    with_names: Iterable[str] = (),
    without_names: Iterable[str] = (),
    *,
    exclude_nodump: bool = True,
    exclude_file: bool = True,
    exclude_submounts: bool = False,
    sha512_256: bool = True,
) -> int:
    """casync's effective archive flags for ``--with``/``--without`` options.

    ``(any --with ? union of --with : every WITH bit) & ~union of --without``,
    then the policy bits, then normalisation (docs/formats.md 5.10, 2.3).
    """
    with_bits = 0
    any_with = False
    for name in with_names:
        any_with = True
        with_bits |= ff.parse_name(name)
    without_bits = 0
    for name in without_names:
        without_bits |= ff.parse_name(name)
    flags = (with_bits if any_with else ff.WITH_MASK) & ~without_bits
    if exclude_nodump:
        flags |= ff.EXCLUDE_NODUMP
    if exclude_file:
        flags |= ff.EXCLUDE_FILE
    if exclude_submounts:
        flags |= ff.EXCLUDE_SUBMOUNTS
    if sha512_256:
        flags |= ff.SHA512_256
    return ff.normalize(flags)


VALID_TYPES: Final = frozenset(
    {stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK, stat.S_IFBLK, stat.S_IFCHR, stat.S_IFIFO, stat.S_IFSOCK}
)


def type_feature(mode: int) -> int:
    """The WITH bit a node of this type needs to be stored (0: always stored)."""
    t = mode & S_IFMT
    if t == stat.S_IFLNK:
        return ff.WITH_SYMLINKS
    if t in (stat.S_IFBLK, stat.S_IFCHR):
        return ff.WITH_DEVICE_NODES
    if t == stat.S_IFIFO:
        return ff.WITH_FIFOS
    if t == stat.S_IFSOCK:
        return ff.WITH_SOCKETS
    return 0


def archive_mode(st_mode: int, flags: int) -> int:
    """The ENTRY mode casync stores for ``st_mode`` under ``flags`` (5.2)."""
    t = st_mode & S_IFMT
    if t == stat.S_IFLNK:
        return stat.S_IFLNK | 0o777
    if flags & (ff.WITH_PERMISSIONS | ff.WITH_ACL):
        return st_mode & (S_IFMT | PERMS_MASK)
    directory = t == stat.S_IFDIR
    if flags & ff.WITH_READ_ONLY:
        if st_mode & 0o222:
            return t | (0o777 if directory else 0o666)
        return t | (0o555 if directory else 0o444)
    return t | (0o777 if directory else 0o666)


def archive_mtime(mtime_ns: int, flags: int) -> int:
    """mtime rounded down to the archive's granularity (0 without a time flag)."""
    g = ff.time_granularity(flags)
    if g == 0:
        return 0
    value = mtime_ns & MASK64  # casync stores pre-1970 times two's-complement wrapped
    return value - (value % g)


def ids_in_range(flags: int, uid: int, gid: int) -> bool:
    """Whether an ENTRY may carry this uid/gid under ``flags`` (casync's reader rule, docs/formats.md 5.2).

    0xFFFF and 0xFFFFFFFF are the kernel's "no id" values; without a uid
    feature both must be 0.
    """
    if flags & ff.WITH_16BIT_UIDS:
        return 0 <= uid < 0xFFFF and 0 <= gid < 0xFFFF
    if flags & ff.WITH_32BIT_UIDS:
        return 0 <= uid < 0xFFFFFFFF and 0 <= gid < 0xFFFFFFFF and 0xFFFF not in (uid, gid)
    return uid == 0 and gid == 0


def device_in_range(major: int, minor: int) -> bool:
    """Whether a DEVICE record may carry this device number (Linux's 12-bit major, 20-bit minor)."""
    return 0 <= major < DEVICE_MAJOR_LIMIT and 0 <= minor < DEVICE_MINOR_LIMIT


def valid_user_name(name: bytes) -> bool:
    """casync's decoder rule for USER/GROUP/ACL names (docs/formats.md 5.3)."""
    if not 1 <= len(name) <= USER_NAME_MAX or name in (b"root", b"0"):
        return False
    first = name[0]
    if not (0x41 <= first <= 0x5A or 0x61 <= first <= 0x7A or first == 0x5F):
        return False
    for c in name[1:]:
        if not (0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A or 0x30 <= c <= 0x39 or c in (0x5F, 0x2D)):
            return False
    return True


def valid_xattr_name(name: bytes) -> bool:
    """A name casync accepts: 1-255 bytes, no NUL, a '.' neither first nor last."""
    if not 1 <= len(name) <= XATTR_NAME_MAX or b"\0" in name:
        return False
    dot = name.find(b".")
    return 0 < dot < len(name) - 1


def stored_xattr_name(name: bytes) -> bool:
    """Whether casync's encoder archives this xattr as an XATTR record (5.7)."""
    return (name.startswith(b"user.") or name.startswith(b"trusted.")) and valid_xattr_name(name)


def valid_filename(name: bytes) -> bool:
    return 1 <= len(name) <= NAME_MAX and b"/" not in name and b"\0" not in name and name not in (b".", b"..")
