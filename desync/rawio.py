"""Raw byte sources for ``io.BufferedReader``, kept out of the mypyc build.

A compiled subclass of ``io.RawIOBase`` cannot be created on Python 3.12+
(the base's managed ``__dict__`` clashes with the dict slot mypyc adds:
"type ... has the Py_TPFLAGS_MANAGED_DICT flag but tp_dictoffset is set"),
so the two adapters the package needs live here, interpreted, in every
build; the work they call into stays compiled.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # untar and extract read through these; only network stores need sockets
    import socket


class SocketSource(io.RawIOBase):
    """Raw reads of a socket whose timeouts the kernel enforces; a timeout surfaces as TimeoutError."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self.sock.recv_into(buffer)
        except BlockingIOError:
            raise TimeoutError("timed out") from None


class BlockSource(io.RawIOBase):
    """The concatenation of the byte blocks an iterator yields, read as one stream."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        super().__init__()
        self.blocks = blocks
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            block = next(self.blocks, None)
            if block is None:
                return 0
            self.pending = memoryview(block)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n
