"""casync protocol messages: constants, encoding, strict decoding (docs/protocol.md 2-4).

Every frame is ``u64 size, u64 type, body`` (little-endian, size includes the
16-byte header).  Decoding checks each message exactly as casync does (sizes,
flag ranges, NUL-terminated ABORT text), so a peer speaking garbage is
stopped at the first bad frame with a message that says what was wrong.
"""

from __future__ import annotations

import struct

from ..constants import CHUNK_ID_SIZE
from ..errors import DesyncError
from ..peertext import peer_text

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Final

HEADER: Final = struct.Struct("<QQ")
U64: Final = struct.Struct("<Q")
HEADER_SIZE: Final = 16
MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
# Pieces of an index or archive file sent in INDEX/ARCHIVE messages, as casync does.
FILE_PIECE_SIZE: Final = 65536
# IDs per REQUEST frame, keeping it under 64 KiB like casync's client.
MAX_REQUEST_IDS: Final = 2047

HELLO: Final = 0x3C71D0948CA5FBEE
INDEX: Final = 0xB32A91DD2B3E27F8
INDEX_EOF: Final = 0x4F0932F1043718F5
ARCHIVE: Final = 0x95D6428A69EDDCC5
ARCHIVE_EOF: Final = 0x450BEF663F24CBAD
REQUEST: Final = 0x8AB427E0F89D9210
CHUNK: Final = 0x5213DD180A84BC8C
MISSING: Final = 0xD010F9FAC82B7B6C
GOODBYE: Final = 0xAD205DBF1A3686C3
ABORT: Final = 0xE7D9136B7EFEA352

NAMES: Final = {
    HELLO: "HELLO", INDEX: "INDEX", INDEX_EOF: "INDEX_EOF", ARCHIVE: "ARCHIVE", ARCHIVE_EOF: "ARCHIVE_EOF",
    REQUEST: "REQUEST", CHUNK: "CHUNK", MISSING: "MISSING", GOODBYE: "GOODBYE", ABORT: "ABORT",
}

# HELLO feature flags (docs/protocol.md 4).
READABLE_STORE: Final = 0x1
WRITABLE_STORE: Final = 0x2
READABLE_INDEX: Final = 0x4
WRITABLE_INDEX: Final = 0x8
READABLE_ARCHIVE: Final = 0x10
WRITABLE_ARCHIVE: Final = 0x20
PULL_CHUNKS: Final = 0x40
PULL_INDEX: Final = 0x80
PULL_ARCHIVE: Final = 0x100
PUSH_CHUNKS: Final = 0x200
PUSH_INDEX: Final = 0x400
PUSH_INDEX_CHUNKS: Final = 0x800
PUSH_ARCHIVE: Final = 0x1000
ALL_FEATURES: Final = 0x1FFF

REQUEST_HIGH_PRIORITY: Final = 0x1
CHUNK_COMPRESSED: Final = 0x1

# (wanted by one side, required of the other) pairs checked on HELLO.
_NEEDS: Final = (
    (PULL_CHUNKS, READABLE_STORE, "chunks"),
    (PULL_INDEX, READABLE_INDEX, "an index"),
    (PULL_ARCHIVE, READABLE_ARCHIVE, "an archive"),
    (PUSH_CHUNKS, WRITABLE_STORE, "a writable store"),
    (PUSH_INDEX, WRITABLE_INDEX, "a writable index"),
    (PUSH_ARCHIVE, WRITABLE_ARCHIVE, "a writable archive"),
)
_WANTS: Final = PULL_CHUNKS | PULL_INDEX | PULL_ARCHIVE | PUSH_CHUNKS | PUSH_INDEX | PUSH_ARCHIVE


class ProtocolError(DesyncError):
    """The peer sent something the casync protocol does not allow."""


def type_name(msg_type: int) -> str:
    return NAMES.get(msg_type, f"unknown type {msg_type:#018x}")


def frame(msg_type: int, body: bytes = b"") -> bytes:
    """One complete message (header plus body)."""
    return HEADER.pack(HEADER_SIZE + len(body), msg_type) + body


def hello(flags: int) -> bytes:
    return frame(HELLO, U64.pack(flags))


def request(ids: list[bytes], high_priority: bool) -> bytes:
    if not ids or len(ids) > MAX_REQUEST_IDS:
        raise ValueError(f"a REQUEST carries 1 to {MAX_REQUEST_IDS} IDs, not {len(ids)}")
    return frame(REQUEST, U64.pack(REQUEST_HIGH_PRIORITY if high_priority else 0) + b"".join(ids))


def chunk_header(chunk_id: bytes, data_size: int, compressed: bool) -> bytes:
    """Header, flags and ID of a CHUNK message; the data follows (sent without copying it in)."""
    size = HEADER_SIZE + 8 + CHUNK_ID_SIZE + data_size
    if data_size < 1 or size > MAX_MESSAGE_SIZE:
        raise ProtocolError(f"chunk {chunk_id.hex()} of {data_size} bytes cannot be sent in one message")
    return HEADER.pack(size, CHUNK) + U64.pack(CHUNK_COMPRESSED if compressed else 0) + chunk_id


def missing(chunk_id: bytes) -> bytes:
    return frame(MISSING, chunk_id)


def goodbye() -> bytes:
    return frame(GOODBYE)


def abort(error: int, reason: str) -> bytes:
    text = "".join(c if " " <= c else " " for c in reason).encode("utf-8", "replace")
    return frame(ABORT, U64.pack(error) + text + b"\0")


def file_pieces(msg_type: int, data: bytes) -> list[bytes]:
    """INDEX or ARCHIVE messages carrying ``data``, then the matching EOF message."""
    eof = INDEX_EOF if msg_type == INDEX else ARCHIVE_EOF
    pieces = [frame(msg_type, data[i:i + FILE_PIECE_SIZE]) for i in range(0, len(data), FILE_PIECE_SIZE)]
    pieces.append(frame(eof))
    return pieces


def check_header(size: int, msg_type: int) -> None:
    """Validate a frame header before its body is read, so an absurd size never allocates."""
    if size < HEADER_SIZE:
        raise ProtocolError(f"bad message: size {size} is smaller than the 16-byte header")
    if size > MAX_MESSAGE_SIZE:
        raise ProtocolError(f"bad message: size {size} exceeds the {MAX_MESSAGE_SIZE}-byte limit")
    body = size - HEADER_SIZE
    name = NAMES.get(msg_type)
    if name is None:
        raise ProtocolError(f"bad message: unknown type {msg_type:#018x}")
    if msg_type == HELLO:
        ok = body == 8
    elif msg_type in (INDEX_EOF, ARCHIVE_EOF, GOODBYE):
        ok = body == 0
    elif msg_type in (INDEX, ARCHIVE):
        ok = body >= 1
    elif msg_type == REQUEST:
        ok = body >= 8 + CHUNK_ID_SIZE and (body - 8) % CHUNK_ID_SIZE == 0
    elif msg_type == CHUNK:
        ok = body >= 8 + CHUNK_ID_SIZE + 1
    elif msg_type == MISSING:
        ok = body == CHUNK_ID_SIZE
    else:
        ok = body >= 9
    if not ok:
        raise ProtocolError(f"bad message: {name} with a {body}-byte body")


def parse_hello(body: bytes) -> int:
    flags: int = U64.unpack(body)[0]
    if flags == 0 or flags == 0xFFFFFFFFFFFFFFFF:
        raise ProtocolError(f"bad message: HELLO with feature flags {flags:#x}")
    if flags & ~ALL_FEATURES:
        raise ProtocolError(f"protocol not supported: peer announced feature flags {flags:#x}")
    if flags & PUSH_INDEX_CHUNKS and (flags & (PUSH_INDEX | PUSH_CHUNKS)) != PUSH_INDEX | PUSH_CHUNKS:
        raise ProtocolError("invalid exchange: PUSH_INDEX_CHUNKS without PUSH_INDEX and PUSH_CHUNKS")
    return flags


def check_exchange(ours: int, theirs: int) -> None:
    """casync's compatibility rules for two HELLOs: every wish must be servable by the other side."""
    for want, need, what in _NEEDS:
        if theirs & want and not ours & need:
            raise ProtocolError(f"invalid exchange: the peer wants {what}, which this side does not offer")
        if ours & want and not theirs & need:
            raise ProtocolError(f"invalid exchange: the peer does not offer {what}")
    if not (ours | theirs) & _WANTS:
        raise ProtocolError("invalid exchange: neither side wants anything")


def parse_request(body: bytes) -> tuple[bool, list[bytes]]:
    """(high priority, chunk IDs) of a REQUEST body."""
    flags: int = U64.unpack_from(body)[0]
    if flags & ~REQUEST_HIGH_PRIORITY:
        raise ProtocolError(f"bad message: REQUEST with flags {flags:#x}")
    ids = [body[i:i + CHUNK_ID_SIZE] for i in range(8, len(body), CHUNK_ID_SIZE)]
    return bool(flags & REQUEST_HIGH_PRIORITY), ids


def parse_chunk_flags(flags_and_id: bytes) -> tuple[bool, bytes]:
    """(compressed, chunk ID) from the first 40 body bytes of a CHUNK."""
    flags: int = U64.unpack_from(flags_and_id)[0]
    if flags & ~CHUNK_COMPRESSED:
        raise ProtocolError(f"bad message: CHUNK with flags {flags:#x}")
    return bool(flags & CHUNK_COMPRESSED), flags_and_id[8:8 + CHUNK_ID_SIZE]


def parse_abort(body: bytes) -> tuple[int, str]:
    """(error code, reason); the reason comes from the peer, so it is shortened and escaped for an error line."""
    error: int = U64.unpack_from(body)[0]
    text = body[8:]
    if error >= 0x7FFFFFFF:
        raise ProtocolError(f"bad message: ABORT with error code {error}")
    if not text.endswith(b"\0") or any(b < 0x20 for b in text[:-1]):
        raise ProtocolError("bad message: ABORT reason is not a NUL-terminated line of text")
    return error, peer_text(text[:-1])
