"""Types of the C chunker (desync/_accel/chunker.c); desync/chunker.py is its Python twin."""

import mmap

def boundaries(
    buf: bytes | bytearray | memoryview | mmap.mmap,
    start: int,
    end: int,
    final: bool,
    min_size: int,
    max_size: int,
    discriminator: int,
    /,
) -> list[int]: ...
def window_hash(buf: bytes | bytearray | memoryview, /) -> int: ...
