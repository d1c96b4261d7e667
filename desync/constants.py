"""Every on-disk constant of the casync formats, in one place.

Values are casync's (docs/formats.md says what each means); all
integers are stored little-endian on disk.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Final


# Record types (docs/formats.md 1.1).
CA_FORMAT_ENTRY: Final = 0x1396FABCEA5BBB51
CA_FORMAT_USER: Final = 0xF453131AAEEACCB3
CA_FORMAT_GROUP: Final = 0x25EB6AC969396A52
CA_FORMAT_XATTR: Final = 0xB8157091F80BC486
CA_FORMAT_ACL_USER: Final = 0x297DC88B2EF12FAF
CA_FORMAT_ACL_GROUP: Final = 0x36F2ACB56CB3DD0B
CA_FORMAT_ACL_GROUP_OBJ: Final = 0x23047110441F38F3
CA_FORMAT_ACL_DEFAULT: Final = 0xFE3EEDA6823C8CD0
CA_FORMAT_ACL_DEFAULT_USER: Final = 0xBDF03DF9BD010A91
CA_FORMAT_ACL_DEFAULT_GROUP: Final = 0xA0CB1168782D1F51
CA_FORMAT_FCAPS: Final = 0xF7267DB0AFED0629
CA_FORMAT_QUOTA_PROJID: Final = 0x161BAF2D8772A72B
CA_FORMAT_SELINUX: Final = 0x46FAF0602FD26C59
CA_FORMAT_SYMLINK: Final = 0x664A6FB6830E0D6C
CA_FORMAT_DEVICE: Final = 0xAC3DACE369DFE643
CA_FORMAT_PAYLOAD: Final = 0x8B9E1D93D6DCFFC9
CA_FORMAT_FILENAME: Final = 0x6DBB6EBCB3161F0B
CA_FORMAT_GOODBYE: Final = 0xDFD35C5E8327C403
CA_FORMAT_GOODBYE_TAIL_MARKER: Final = 0x57446FA533702943
CA_FORMAT_INDEX: Final = 0x96824D9C7B129FF9
CA_FORMAT_TABLE: Final = 0xE75B9E112F17417D
CA_FORMAT_TABLE_TAIL_MARKER: Final = 0x4B4F050E5549ECD1

# Index file geometry (docs/formats.md 3.1).
INDEX_HEADER_SIZE: Final = 48
TABLE_HEADER_SIZE: Final = 16
TABLE_ITEM_SIZE: Final = 40
TABLE_SIZE_UNKNOWN: Final = 0xFFFFFFFFFFFFFFFF
# The largest index file read from a peer (about 27 million chunks: a 1.6 TiB blob at 64 KiB a chunk).
INDEX_SIZE_LIMIT: Final = 1 << 30

# Chunk sizes (docs/formats.md 6.1, 6.7).
CHUNK_SIZE_MIN_DEFAULT: Final = 16 * 1024
CHUNK_SIZE_AVG_DEFAULT: Final = 64 * 1024
CHUNK_SIZE_MAX_DEFAULT: Final = 256 * 1024
CHUNK_SIZE_LIMIT: Final = 128 * 1024 * 1024
CHUNKER_WINDOW_SIZE: Final = 48

# Chunk IDs and store layout (docs/formats.md 4, docs/layout.md 1.1).
CHUNK_ID_SIZE: Final = 32
COMPRESSED_CHUNK_SUFFIX: Final = ".cacnk"
CHUNK_PREFIX_LEN: Final = 4

# Magic numbers of the compression formats a .cacnk file may hold.
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
XZ_MAGIC: Final = b"\xfd7zXZ\x00"
GZIP_MAGIC: Final = b"\x1f\x8b"
ZSTD_LEVEL: Final = 3

# SipHash key of GOODBYE item hashes (docs/formats.md 5.6).
GOODBYE_HASH_KEY: Final = bytes.fromhex("b3841d0f2b447485c12ec2d130ed3627")
