"""SFTP version 3 packets (draft-ietf-secsh-filexfer-02), the subset a chunk store needs.

Every packet is ``u32 length, u8 type, payload``, big-endian, strings are
``u32 length + bytes``.  :class:`Parser` reads a payload with bounds checks,
so a truncated or lying server reply is an :class:`SFTPError`, never an
IndexError or a huge allocation.
"""

import struct
from dataclasses import dataclass
from typing import Final

from ..errors import StoreError
from ..peertext import peer_text

VERSION: Final = 3
MAX_PACKET: Final = 4 * 1024 * 1024
# Entries one directory listing may have: a store's top level holds at most 65536 prefix directories, and a
# prefix directory this full means a store of 2^36 chunks; a server listing more is lying (or endless).
MAX_DIR_ENTRIES: Final = 1 << 20

INIT: Final = 1
VERSION_REPLY: Final = 2
OPEN: Final = 3
CLOSE: Final = 4
READ: Final = 5
WRITE: Final = 6
LSTAT: Final = 7
SETSTAT: Final = 9
OPENDIR: Final = 11
READDIR: Final = 12
REMOVE: Final = 13
MKDIR: Final = 14
RMDIR: Final = 15
STAT: Final = 17
RENAME: Final = 18
STATUS: Final = 101
HANDLE: Final = 102
DATA: Final = 103
NAME: Final = 104
ATTRS: Final = 105
EXTENDED: Final = 200
EXTENDED_REPLY: Final = 201

OPEN_READ: Final = 0x1
OPEN_WRITE: Final = 0x2
OPEN_CREAT: Final = 0x8
OPEN_TRUNC: Final = 0x10
OPEN_EXCL: Final = 0x20

ATTR_SIZE: Final = 0x1
ATTR_UIDGID: Final = 0x2
ATTR_PERMISSIONS: Final = 0x4
ATTR_ACMODTIME: Final = 0x8
ATTR_EXTENDED: Final = 0x80000000

FX_OK: Final = 0
FX_EOF: Final = 1
FX_NO_SUCH_FILE: Final = 2
FX_PERMISSION_DENIED: Final = 3
FX_FAILURE: Final = 4
FX_OP_UNSUPPORTED: Final = 8

POSIX_RENAME: Final = "posix-rename@openssh.com"

_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")
_HEAD: Final = struct.Struct(">IBI")


class SFTPError(StoreError):
    """The server sent something SFTP v3 does not allow, or the session broke."""


class StatusError(StoreError):
    """A request failed with an SSH_FXP_STATUS code."""

    def __init__(self, code: int, message: str, path: str) -> None:
        super().__init__(f"{path}: {peer_text(message) or f'SFTP error {code}'}")
        self.code = code


class TooLarge(SFTPError):
    """A file holds more bytes than the caller allows (a chunk or an index cannot be that large)."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(f"{path}: larger than the {limit} bytes allowed")
        self.limit = limit


@dataclass(slots=True)
class Attrs:
    size: int = -1
    permissions: int = -1
    mtime: int = -1


def string(data: bytes | str) -> bytes:
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return _U32.pack(len(raw)) + raw


def u32(value: int) -> bytes:
    return _U32.pack(value)


def u64(value: int) -> bytes:
    return _U64.pack(value)


def attrs(permissions: int = -1, times: tuple[int, int] | None = None) -> bytes:
    flags = (ATTR_PERMISSIONS if permissions >= 0 else 0) | (ATTR_ACMODTIME if times is not None else 0)
    out = u32(flags)
    if permissions >= 0:
        out += u32(permissions)
    if times is not None:
        out += u32(times[0]) + u32(times[1])
    return out


def packet(ptype: int, request_id: int, payload: bytes) -> bytes:
    return _HEAD.pack(len(payload) + 5, ptype, request_id) + payload


def init_packet() -> bytes:
    return _U32.pack(5) + bytes([INIT]) + u32(VERSION)


def check_length(length: int) -> None:
    if length < 1:
        raise SFTPError("malformed SFTP packet: zero length")
    if length > MAX_PACKET:
        raise SFTPError(f"malformed SFTP packet: {length} bytes exceeds the {MAX_PACKET}-byte limit")


class Parser:
    """A bounds-checked cursor over one packet payload."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise SFTPError("malformed SFTP packet: truncated field")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def u32(self) -> int:
        value: int = _U32.unpack(self._take(4))[0]
        return value

    def u64(self) -> int:
        value: int = _U64.unpack(self._take(8))[0]
        return value

    def string(self) -> bytes:
        return self._take(self.u32())

    def text(self) -> str:
        return self.string().decode("utf-8", "replace")

    def attrs(self) -> Attrs:
        flags = self.u32()
        out = Attrs()
        if flags & ATTR_SIZE:
            out.size = self.u64()
        if flags & ATTR_UIDGID:
            self.u32()
            self.u32()
        if flags & ATTR_PERMISSIONS:
            out.permissions = self.u32()
        if flags & ATTR_ACMODTIME:
            self.u32()
            out.mtime = self.u32()
        if flags & ATTR_EXTENDED:
            for _ in range(self.u32()):
                self.string()
                self.string()
        return out

    def at_end(self) -> bool:
        return self.pos == len(self.data)


def parse_version(payload: bytes) -> tuple[int, dict[str, bytes]]:
    """(version, extensions) of an SSH_FXP_VERSION payload (after the type byte)."""
    p = Parser(payload)
    version = p.u32()
    extensions: dict[str, bytes] = {}
    while not p.at_end():
        name = p.text()
        extensions[name] = p.string()
    return version, extensions


def parse_names(p: Parser) -> list[tuple[str, Attrs]]:
    names = []
    for _ in range(p.u32()):
        name = p.string().decode("utf-8", "surrogateescape")
        p.string()
        names.append((name, p.attrs()))
    return names
