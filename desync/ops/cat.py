"""Write a blob, or a byte range of it, to a stream (``desync cat``)."""

from typing import BinaryIO

from ..errors import DesyncError
from ..index import Index, IndexChunk
from ..stores.base import Store
from ..parallel import ordered_map


def cat(index: Index, store: Store, out: BinaryIO, *, offset: int = 0, length: int = -1,
        workers: int = 4) -> int:
    """Stream ``[offset, offset+length)`` of the blob (to the end when ``length`` < 0); returns bytes written."""
    if offset < 0 or offset > index.length:
        raise DesyncError(f"offset {offset} is outside the blob (size {index.length})")
    stop = index.length if length < 0 else min(index.length, offset + length)
    wanted = [c for c in index.chunks if c.end > offset and c.start < stop]

    def fetch(c: IndexChunk) -> bytes:
        return store.get_chunk(c.id, c.size).data(c.size)

    written = 0
    for c, data in zip(wanted, ordered_map(fetch, wanted, workers)):
        lo = max(offset - c.start, 0)
        hi = min(stop - c.start, c.size)
        out.write(memoryview(data)[lo:hi])
        written += hi - lo
    return written
