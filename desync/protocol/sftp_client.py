"""An SFTP v3 client session over ``ssh -s HOST sftp``, safe to share between threads.

Requests carry IDs, so many threads keep requests in flight on one session
and a reading thread hands each reply to its waiter.  File reads and
writes are split into blocks that are all sent before the first reply is
awaited, so a chunk costs about two round trips, not one per block.
"""

import io
import threading
import time
from typing import Final

from ..readbudget import ReadBudget
from . import sftp as s
from .session import PipelinedSession, Waiter
from .stream import ConnectionClosed

BLOCK: Final = 64 * 1024
READ_WINDOW: Final = 4
MAX_EMPTY_REPLIES: Final = 16
_CLOSE_GRACE: Final = 5.0


class _Reply(Waiter):
    __slots__ = ("ptype", "parser")

    def __init__(self) -> None:
        super().__init__()
        self.ptype = 0
        self.parser = s.Parser(b"")


class SFTPSession(PipelinedSession[int, _Reply, s.SFTPError]):
    def __init__(self, argv: list[str], label: str, timeout: float) -> None:
        super().__init__(argv, label)
        self.timeout = timeout
        self.stream = io.open(self.process.in_fd, "rb", buffering=1 << 20, closefd=False)
        self.next_id = 1
        self.extensions: dict[str, bytes] = {}
        self.ready = threading.Event()
        try:
            self.writer.send(s.init_packet())
        except ConnectionClosed:
            pass  # the reading thread explains
        self._start_reading(self._read_loop, "desync-sftp-reader")
        if not self.ready.wait(timeout if timeout > 0 else None):
            self._fail(s.SFTPError(f"{label}: no answer to the SFTP handshake within {timeout:g} s"))
        failure = self.current_failure()
        if failure is not None:
            self.close()
            raise failure

    def current_failure(self) -> s.SFTPError | None:
        with self.lock:
            return self.failure

    def _packet(self) -> tuple[int, bytes] | None:
        head = self.stream.read(4)
        if not head:
            return None
        if len(head) != 4:
            raise s.SFTPError(f"{self.label}: connection closed inside a packet")
        length = s.Parser(head).u32()
        s.check_length(length)
        body = self.stream.read(length)
        if len(body) != length:
            raise s.SFTPError(f"{self.label}: connection closed inside a packet")
        return body[0], body

    def _read_loop(self) -> None:
        try:
            first = self._packet()
            if first is None:
                raise s.SFTPError(f"{self.label}: ssh ended: {self.process.explain()}")
            ptype, body = first
            if ptype != s.VERSION_REPLY:
                raise s.SFTPError(f"{self.label}: expected SSH_FXP_VERSION, got packet type {ptype}")
            version, self.extensions = s.parse_version(body[1:])
            if version < s.VERSION:
                raise s.SFTPError(f"{self.label}: server speaks SFTP version {version}, 3 is needed")
            self.ready.set()
            while True:
                got = self._packet()
                if got is None:
                    if self.closed:
                        return
                    raise s.SFTPError(f"{self.label}: ssh ended: {self.process.explain()}")
                self.last_heard = time.monotonic()
                ptype, body = got
                parser = s.Parser(body, 1)
                request_id = parser.u32()
                with self.lock:
                    reply = self.pending.pop(request_id, None)
                if reply is None:
                    raise s.SFTPError(f"{self.label}: reply to unknown request {request_id}")
                reply.ptype, reply.parser = ptype, parser
                reply.event.set()
        except s.SFTPError as ended:
            self._fail(ended)
        except BaseException as bug:
            self._fail(s.SFTPError(f"{self.label}: {type(bug).__name__}: {bug}"))
        finally:
            self.ready.set()
            self.process.close_output()

    def _fail(self, exc: s.SFTPError) -> None:
        self._fail_waiters(exc)
        self.process.close_input()

    def start(self, ptype: int, payload: bytes) -> _Reply:
        reply = _Reply()
        with self.lock:
            if self.failure is not None:
                raise self.failure
            request_id = self.next_id
            self.next_id = (self.next_id + 1) & 0xFFFFFFFF or 1
            self.pending[request_id] = reply
        try:
            self.writer.send(s.packet(ptype, request_id, payload))
        except ConnectionClosed:
            pass  # the reading thread fails every pending reply
        return reply

    def wait(self, reply: _Reply) -> tuple[int, s.Parser]:
        while not reply.event.wait(1.0):
            if self.timeout > 0 and time.monotonic() - self.last_heard > self.timeout:
                self._fail(s.SFTPError(f"{self.label}: no answer from the SFTP server for {self.timeout:g} s"))
        if not reply.ptype:
            raise self.failure or s.SFTPError(f"{self.label}: the session was closed")
        return reply.ptype, reply.parser

    def call(self, ptype: int, payload: bytes) -> tuple[int, s.Parser]:
        return self.wait(self.start(ptype, payload))

    @staticmethod
    def status(reply: tuple[int, s.Parser], path: str) -> tuple[int, str]:
        """(code, message) of a STATUS reply; any other reply is a protocol error."""
        ptype, p = reply
        if ptype != s.STATUS:
            raise s.SFTPError(f"{path}: unexpected SFTP reply type {ptype}")
        code = p.u32()
        return code, (p.text() if not p.at_end() else "")

    def check(self, reply: tuple[int, s.Parser], path: str) -> None:
        code, message = self.status(reply, path)
        if code != s.FX_OK:
            raise s.StatusError(code, message, path)

    def _expect(self, reply: tuple[int, s.Parser], ptype: int, path: str) -> s.Parser:
        got, p = reply
        if got == s.STATUS:
            code = p.u32()
            raise s.StatusError(code, p.text(), path)
        if got != ptype:
            raise s.SFTPError(f"{path}: unexpected SFTP reply type {got}")
        return p

    def open(self, path: str, pflags: int, permissions: int = -1) -> bytes:
        return self._expect(self.call(s.OPEN, s.string(path) + s.u32(pflags) + s.attrs(permissions)),
                            s.HANDLE, path).string()

    def close_handle(self, handle: bytes, path: str, wait: bool) -> None:
        reply = self.start(s.CLOSE, s.string(handle))
        if wait:
            self.check(self.wait(reply), path)

    def read_file(self, path: str, limit: int) -> bytes:
        """The whole file, at most ``limit`` bytes; StatusError with FX_NO_SUCH_FILE when it does not exist.

        A file with more raises :class:`~desync.protocol.sftp.TooLarge` once
        the excess arrives, so an endless or huge file costs at most
        ``limit`` plus one window of memory (past LARGE_READ, one such read
        at a time: see :mod:`desync.readbudget`).
        """
        content = bytearray()  # grown in place: large ones are remapped, not copied, and freed at once
        budget = ReadBudget()
        pieces = self.read_pieces(path, limit)
        try:
            for piece in pieces:
                content += piece
                budget.grow(len(content))
            return bytes(content)
        finally:
            pieces.close()
            content.clear()  # a failure's traceback must not keep what was read alive
            budget.release()

    def read_pieces(self, path: str, limit: int) -> "FileReader":
        """The file's content a window of reads at a time, like :meth:`read_file` without holding it whole.

        Close the reader when stopping early (it closes the handle).
        """
        return FileReader(self, path, limit)

    def write_file(self, path: str, data: bytes, permissions: int) -> None:
        """Create ``path`` (which must not exist) with ``data``; blocks are written in parallel."""
        handle = self.open(path, s.OPEN_WRITE | s.OPEN_CREAT | s.OPEN_EXCL, permissions)
        view = memoryview(data)
        try:
            replies = [self.start(s.WRITE, s.string(handle) + s.u64(off) + s.string(bytes(view[off:off + BLOCK])))
                       for off in range(0, len(data), BLOCK)]
            for reply in replies:
                self.check(self.wait(reply), path)
        except BaseException:
            self.close_handle(handle, path, wait=False)
            raise
        self.close_handle(handle, path, wait=True)

    def stat(self, path: str) -> s.Attrs | None:
        reply = self.call(s.STAT, s.string(path))
        if reply[0] == s.STATUS:
            code = reply[1].u32()
            if code == s.FX_NO_SUCH_FILE:
                return None
            raise s.StatusError(code, reply[1].text(), path)
        return self._expect(reply, s.ATTRS, path).attrs()

    def listdir(self, path: str) -> "DirListing":
        """The names in directory ``path``, fetched a reply at a time (see :class:`DirListing`)."""
        handle = self._expect(self.call(s.OPENDIR, s.string(path)), s.HANDLE, path).string()
        return DirListing(self, handle, path)

    def remove(self, path: str) -> bool:
        """False when there was no such file."""
        code, message = self.status(self.call(s.REMOVE, s.string(path)), path)
        if code == s.FX_NO_SUCH_FILE:
            return False
        if code != s.FX_OK:
            raise s.StatusError(code, message, path)
        return True

    def mkdir(self, path: str, permissions: int = 0o777) -> None:
        self.check(self.call(s.MKDIR, s.string(path) + s.attrs(permissions)), path)

    def rmdir(self, path: str) -> None:
        self.check(self.call(s.RMDIR, s.string(path)), path)

    def set_times(self, path: str, when: int) -> None:
        self.check(self.call(s.SETSTAT, s.string(path) + s.attrs(times=(when, when))), path)

    def rename_over(self, old: str, new: str) -> None:
        """Rename, replacing ``new``: posix-rename when offered, else remove + v3 RENAME."""
        if s.POSIX_RENAME in self.extensions:
            self.check(self.call(s.EXTENDED, s.string(s.POSIX_RENAME) + s.string(old) + s.string(new)), new)
            return
        if self.status(self.call(s.RENAME, s.string(old) + s.string(new)), new)[0] == s.FX_OK:
            return
        self.remove(new)  # SFTP v3 RENAME refuses to replace an existing file
        self.check(self.call(s.RENAME, s.string(old) + s.string(new)), new)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        self.process.close_input()
        self.process.wait(_CLOSE_GRACE)
        self.reading.join(timeout=_CLOSE_GRACE)


class DirListing:
    """The names of one directory, one READDIR reply in memory at a time.

    More than :data:`~desync.protocol.sftp.MAX_DIR_ENTRIES` names, or more
    than MAX_EMPTY_REPLIES replies in a row naming nothing (servers end a
    listing with an EOF status instead), is an SFTPError, so an endless
    listing ends.  The handle is closed at the
    end, on an error, or by :meth:`close`.
    """

    def __init__(self, session: SFTPSession, handle: bytes, path: str) -> None:
        self.session = session
        self.handle: bytes | None = handle
        self.path = path
        self.batch: list[str] = []
        self.pos = 0
        self.count = 0
        self.empty = 0

    def __iter__(self) -> "DirListing":
        return self

    def __next__(self) -> str:
        while self.pos >= len(self.batch):
            if self.handle is None:
                raise StopIteration
            try:
                self._fetch()
            except BaseException:
                self.close()
                raise
        self.pos += 1
        return self.batch[self.pos - 1]

    def _fetch(self) -> None:
        assert self.handle is not None
        reply = self.session.call(s.READDIR, s.string(self.handle))
        if reply[0] == s.STATUS and self.session.status(reply, self.path)[0] == s.FX_EOF:
            self.close()
            return
        self.batch = [name for name, _ in s.parse_names(self.session._expect(reply, s.NAME, self.path))]
        self.pos = 0
        self.count += len(self.batch)
        if self.count > s.MAX_DIR_ENTRIES:
            raise s.SFTPError(f"{self.path}: the server lists more than {s.MAX_DIR_ENTRIES} entries")
        self.empty = 0 if self.batch else self.empty + 1
        if self.empty > MAX_EMPTY_REPLIES:
            raise s.SFTPError(f"{self.path}: the server keeps answering directory reads with no names")

    def close(self) -> None:
        handle, self.handle = self.handle, None
        self.batch, self.pos = [], 0
        if handle is not None:
            try:
                self.session.close_handle(handle, self.path, wait=False)
            except s.SFTPError:
                pass


class FileReader:
    """A remote file's content, a window of READs at a time, at most ``limit`` bytes (TooLarge past it).

    A server trickling a few bytes per read is given up on after a bounded
    number of rounds.  An iterator class rather than a generator: compiled
    generators mishandle ``yield`` inside ``try``/``finally``.
    """

    def __init__(self, session: SFTPSession, path: str, limit: int) -> None:
        self.session = session
        self.path = path
        self.limit = limit
        self.handle = session.open(path, s.OPEN_READ)
        self.offset = 0
        # Servers answer reads of a regular file in full; one that keeps answering short is trickling.
        self.rounds_left = 16 + 2 * (limit // (READ_WINDOW * BLOCK))

    def __iter__(self) -> "FileReader":
        return self

    def __next__(self) -> bytes:
        while self.offset >= 0:
            try:
                got = self._window()
            except BaseException:
                self.close()
                raise
            if got:
                return got
        self.close()
        raise StopIteration

    def _window(self) -> bytes:
        session, path, handle, offset = self.session, self.path, self.handle, self.offset
        self.rounds_left -= 1
        if self.rounds_left < 0:
            raise s.SFTPError(f"{path}: the server answers reads with too little data")
        window = [(off, session.start(s.READ, s.string(handle) + s.u64(off) + s.u32(BLOCK)))
                  for off in range(offset, offset + READ_WINDOW * BLOCK, BLOCK)]
        stop = False
        next_offset = offset + READ_WINDOW * BLOCK
        got = bytearray()
        for off, pending in window:
            reply = session.wait(pending)
            if stop:
                continue
            if reply[0] == s.STATUS and session.status(reply, path)[0] == s.FX_EOF:
                stop, next_offset = True, -1
                continue
            data = session._expect(reply, s.DATA, path).string()
            if len(data) > BLOCK:
                raise s.SFTPError(f"{path}: the server sent {len(data)} bytes for a {BLOCK}-byte read")
            got += data
            if len(data) < BLOCK:  # short read: carry on right after it
                stop, next_offset = True, off + len(data)
        if next_offset > self.limit:
            raise s.TooLarge(path, self.limit)
        self.offset = next_offset
        return bytes(got)

    def close(self) -> None:
        if self.handle:
            handle, self.handle = self.handle, b""
            self.session.close_handle(handle, self.path, wait=False)
