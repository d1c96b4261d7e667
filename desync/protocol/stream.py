"""Reading and writing casync protocol frames on pipes.

Reads go through one large buffer (a pipe delivers chunk data in 64 KiB
pieces; per-frame Python work stays constant), and CHUNK data is read
straight into its own bytes object so it is never copied again.  Writes
are gathered with ``writev`` under a lock, so threads can answer requests
concurrently without interleaving frames.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import threading

from ..fsutil import write_all
from ..ratelimit import Throttle
from . import messages as m

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Final

READ_BUFFER: Final = 1 << 20
PIPE_SIZE: Final = 1 << 20
_IOV_MAX: Final = 512


class ConnectionClosed(m.ProtocolError):
    """The peer closed the pipe."""


def prepare_pipe(fd: int) -> None:
    """Make ``fd`` blocking and ask for a 1 MiB pipe buffer (fewer wake-ups per chunk).

    casync hands its child non-blocking pipe ends; the threads here want
    plain blocking reads and writes.  Descriptors that are not pipes keep
    their buffer size.
    """
    try:
        os.set_blocking(fd, True)
    except OSError:
        pass
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass


class Message:
    """One decoded frame; for CHUNK, ``body`` is flags + ID and ``data`` the chunk bytes."""

    __slots__ = ("type", "body", "data")

    def __init__(self, msg_type: int, body: bytes, data: bytes = b"") -> None:
        self.type = msg_type
        self.body = body
        self.data = data


class MessageReader:
    def __init__(self, fd: int) -> None:
        self.stream = io.open(fd, "rb", buffering=READ_BUFFER, closefd=False)

    def _exact(self, n: int, what: str) -> bytes:
        data = self.stream.read(n)
        if data is None or len(data) != n:
            raise m.ProtocolError(f"connection closed in the middle of a {what} message")
        return data

    def read(self) -> Message | None:
        """The next message, or None when the peer closed the pipe between messages."""
        try:
            head = self.stream.read(m.HEADER_SIZE)
        except OSError as exc:
            raise ConnectionClosed(f"cannot read from the peer: {exc.strerror}") from None
        if not head:
            return None
        if len(head) != m.HEADER_SIZE:
            raise m.ProtocolError("connection closed in the middle of a message header")
        size, msg_type = m.HEADER.unpack(head)
        m.check_header(size, msg_type)
        name = m.type_name(msg_type)
        try:
            if msg_type == m.CHUNK:
                flags_and_id = self._exact(8 + 32, name)
                return Message(msg_type, flags_and_id, self._exact(size - m.HEADER_SIZE - 40, name))
            return Message(msg_type, self._exact(size - m.HEADER_SIZE, name) if size > m.HEADER_SIZE else b"")
        except OSError as exc:
            raise ConnectionClosed(f"cannot read from the peer: {exc.strerror}") from None


class MessageWriter:
    """Thread-safe frame writer with an optional bytes-per-second limit."""

    def __init__(self, fd: int, rate_limit: int = 0) -> None:
        self.fd = fd
        self.rate_limit = rate_limit
        self.lock = threading.Lock()
        self.throttle = Throttle(rate_limit)

    def send(self, *parts: bytes) -> None:
        """Write the parts back to back as one uninterrupted unit."""
        views = [memoryview(p) for p in parts if p]
        total = sum(len(v) for v in views)
        with self.lock:
            try:
                while views:
                    n = os.writev(self.fd, views[:_IOV_MAX])
                    while views and n >= len(views[0]):
                        n -= len(views[0])
                        views.pop(0)
                    if n:
                        views[0] = views[0][n:]
            except BrokenPipeError:
                raise ConnectionClosed("the peer closed the connection") from None
            except OSError as exc:
                raise ConnectionClosed(f"cannot write to the peer: {exc.strerror}") from None
            self._account(total)

    def send_file(self, header: bytes, fd: int, size: int) -> None:
        """``header`` then ``size`` bytes of file ``fd``, copied by the kernel (sendfile) where it can."""
        with self.lock:
            try:
                write_all(self.fd, header)
                offset = 0
                while offset < size:
                    try:
                        n = os.sendfile(self.fd, fd, offset, size - offset)
                    except OSError as exc:
                        if exc.errno not in (errno.EINVAL, errno.ENOSYS) or offset:
                            raise
                        n = self._copy(fd, offset, size - offset)
                    if n == 0:
                        raise m.ProtocolError("a chunk file shrank while it was being sent")
                    offset += n
            except BrokenPipeError:
                raise ConnectionClosed("the peer closed the connection") from None
            except OSError as exc:
                raise ConnectionClosed(f"cannot send to the peer: {exc.strerror}") from None
            self._account(len(header) + size)

    def _copy(self, fd: int, offset: int, count: int) -> int:
        data = os.pread(fd, count, offset)
        write_all(self.fd, data)
        return len(data)

    def _account(self, sent: int) -> None:
        self.throttle.account(sent)
