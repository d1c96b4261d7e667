"""The remote end of a casync SSH session: ``desync pull`` / ``desync push`` (docs/protocol.md 1.3).

stdin and stdout carry the protocol and nothing else; problems go to stderr
as one line.  A thread reads the client's messages while worker threads
answer chunk requests (looking up and verifying chunks in parallel, sending
the answers in the order the IDs were taken from the queues, as casync
does); the session ends on GOODBYE, on EOF from a pulling client, or
on the first error.  A pull session answers every request that arrived
before GOODBYE or EOF first, as casync does: a client may send its last
requests and GOODBYE in one write.  A push session checks every chunk
against the index's digest and chunk size before storing it, and fails
when the client ends the session before the index's chunks are all here.
"""

from __future__ import annotations

import os
import sys
import threading
from functools import partial

from .. import compression, fsutil
from .. import digest as digest_mod
from .. import index as index_mod
from ..chunk import Chunk
from ..constants import ZSTD_MAGIC
from ..digest import Digest
from ..errors import ChunkInvalid, ChunkMissing, DesyncError
from ..protocol import messages as m
from ..protocol.scheduler import RequestScheduler
from ..protocol.stream import ConnectionClosed, Message, MessageReader, MessageWriter, prepare_pipe
from ..stores.base import Store
from ..stores.local import LocalStore
from ..stores.options import StoreOptions

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from collections.abc import Callable
    from typing import Final

LOG_ERR: Final = 3
LOG_WARNING: Final = 4
LOG_INFO: Final = 6
LOG_DEBUG: Final = 7
SERVER_WORKERS: Final = 2


class ServerConfig:
    """What the argv asked for; empty strings are arguments given as ``-``.

    A plain class (a dataclass costs start-up time, and every SSH session starts a process).
    """

    __slots__ = ("verb", "archive", "index", "write_store", "read_stores", "digest", "log_level", "rate_limit",
                 "verify", "workers")

    def __init__(self, verb: str, archive: str = "", index: str = "", write_store: str = "",
                 read_stores: list[str] | None = None, digest: Digest = digest_mod.DEFAULT,
                 log_level: int = LOG_INFO, rate_limit: int = 0, verify: bool = False,
                 workers: int = SERVER_WORKERS) -> None:
        self.verb = verb
        self.archive = archive
        self.index = index
        self.write_store = write_store
        self.read_stores: list[str] = [] if read_stores is None else read_stores
        self.digest = digest
        self.log_level = log_level
        self.rate_limit = rate_limit
        self.verify = verify
        self.workers = workers

    def __repr__(self) -> str:
        return (f"ServerConfig(verb={self.verb!r}, archive={self.archive!r}, index={self.index!r}, "
                f"write_store={self.write_store!r}, read_stores={self.read_stores!r}, digest={self.digest!r}, "
                f"log_level={self.log_level!r}, rate_limit={self.rate_limit!r}, verify={self.verify!r}, "
                f"workers={self.workers!r})")

    def flags(self) -> int:
        """Our HELLO: what the argv makes available (docs/protocol.md 1.3)."""
        stores = bool(self.write_store or self.read_stores)
        if self.verb == "pull":
            return ((m.READABLE_STORE if stores else 0) | (m.READABLE_INDEX if self.index else 0)
                    | (m.READABLE_ARCHIVE if self.archive else 0))
        return ((m.WRITABLE_STORE if self.write_store else 0) | (m.WRITABLE_INDEX if self.index else 0)
                | (m.WRITABLE_ARCHIVE if self.archive else 0))


class ServerStats:
    """What a session moved, for the closing log line."""

    __slots__ = ("sent", "missing", "received")

    def __init__(self) -> None:
        self.sent = 0
        self.missing = 0
        self.received = 0


class _Log:
    def __init__(self, level: int) -> None:
        self.level = level

    def __call__(self, level: int, text: str) -> None:
        if level <= self.level:
            sys.stderr.write(f"desync: {'warning: ' if level == LOG_WARNING else ''}{text}\n")
            sys.stderr.flush()


def serve(config: ServerConfig, in_fd: int, out_fd: int) -> ServerStats:
    """Run one session on the given descriptors; raises DesyncError on failure."""
    prepare_pipe(in_fd)
    prepare_pipe(out_fd)
    session: _Session = _PullSession(config, in_fd, out_fd) if config.verb == "pull" else \
        _PushSession(config, in_fd, out_fd)
    return session.run()


def _existing_stores(config: ServerConfig, options: StoreOptions, log: _Log) -> list[LocalStore]:
    """The store directories that exist; casync answers MISSING for a store that does not."""
    stores: list[LocalStore] = []
    for path in ([config.write_store] if config.write_store else []) + config.read_stores:
        if os.path.isdir(path):
            stores.append(LocalStore(path, options))
        else:
            log(LOG_DEBUG, f"store {path} does not exist; its chunks are reported missing")
    return stores


def _verify_any(chunk: Chunk, preferred: Digest, store: str) -> None:
    """Check a chunk against its ID with either digest, as casync's server does."""
    try:
        chunk.verify(preferred, store)
    except ChunkInvalid:
        other = digest_mod.SHA256_DIGEST if preferred is digest_mod.SHA512_256_DIGEST \
            else digest_mod.SHA512_256_DIGEST
        chunk.verify(other, store)


class _InOrder:
    """Sends answers in the order their IDs were taken, whichever worker prepared them.

    A worker hands over its prepared answer; the worker whose answer is next
    sends it and every following one already handed over, so no worker
    waits for another's turn.  Workers stay at most ``AHEAD`` answers ahead
    of the sending (each prepared answer may hold an open file).
    """

    AHEAD: Final = 64

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.next = 0
        self.issued = 0
        self.ready: dict[int, Callable[[], None]] = {}
        self.sending = False

    def ticket(self) -> int:
        """The next place in the order; the caller holds the lock it takes IDs under."""
        with self.cond:
            while self.issued - self.next >= self.AHEAD:
                self.cond.wait()
            number = self.issued
            self.issued += 1
            return number

    def hand_over(self, number: int, send: Callable[[], None]) -> None:
        with self.cond:
            self.ready[number] = send
            if self.sending:
                return
            self.sending = True
        try:
            while True:
                with self.cond:
                    due = self.ready.pop(self.next, None)
                    if due is None:
                        self.sending = False
                        return
                due()
                with self.cond:
                    self.next += 1
                    self.cond.notify_all()
        except BaseException:
            with self.cond:
                self.sending = False
            raise


class _Session:
    """HELLO exchange, the reading thread, and orderly shutdown shared by pull and push."""

    def __init__(self, config: ServerConfig, in_fd: int, out_fd: int) -> None:
        self.config = config
        self.log = _Log(config.log_level)
        self.reader = MessageReader(in_fd)
        self.writer = MessageWriter(out_fd, config.rate_limit)
        self.ours = config.flags()
        self.theirs = 0
        self.stats = ServerStats()
        self.done = threading.Event()
        self.failure: BaseException | None = None
        self.lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.failure is None:
                self.failure = exc
        self.done.set()

    def finish(self) -> None:
        self.done.set()

    def run(self) -> ServerStats:
        self.prepare()
        try:
            self.writer.send(m.hello(self.ours))
        except ConnectionClosed:
            return self.stats
        reading = threading.Thread(target=self._read_loop, name="desync-protocol-reader", daemon=True)
        reading.start()
        self.done.wait()
        self.shutdown()
        failure = self.failure
        if failure is not None and not isinstance(failure, ConnectionClosed):
            raise failure
        return self.stats

    def _read_loop(self) -> None:
        try:
            while not self.done.is_set():
                msg = self.reader.read()
                if msg is None:
                    self.on_eof()
                    return
                if not self.theirs:
                    if msg.type != m.HELLO:
                        raise m.ProtocolError(f"invalid exchange: {m.type_name(msg.type)} before HELLO")
                    self.theirs = m.parse_hello(msg.body)
                    m.check_exchange(self.ours, self.theirs)
                    self.on_hello()
                elif msg.type == m.HELLO:
                    raise m.ProtocolError("invalid exchange: second HELLO")
                elif msg.type == m.GOODBYE:
                    self.on_goodbye()
                    return
                elif msg.type == m.ABORT:
                    error, reason = m.parse_abort(msg.body)
                    raise DesyncError(f"client aborted the session: {reason or os.strerror(error)}")
                else:
                    self.on_message(msg)
        except BaseException as exc:
            self.fail(exc)

    def prepare(self) -> None:
        """Open files and stores before HELLO, so bad arguments fail before the client waits."""

    def on_hello(self) -> None:
        """The client's HELLO arrived and is compatible."""

    def on_message(self, msg: Message) -> None:
        raise m.ProtocolError(f"invalid exchange: unexpected {m.type_name(msg.type)} message")

    def on_goodbye(self) -> None:
        self.finish()

    def on_eof(self) -> None:
        self.finish()

    def shutdown(self) -> None:
        """Stop workers and release resources once the session is over."""


class _PullSession(_Session):
    def __init__(self, config: ServerConfig, in_fd: int, out_fd: int) -> None:
        super().__init__(config, in_fd, out_fd)
        self.options = StoreOptions(digest=config.digest, skip_verify=True)
        self.stores: list[LocalStore] = []
        self.index_data = b""
        self.archive_fd = -1
        self.scheduler = RequestScheduler()
        self.workers: list[threading.Thread] = []
        self.order = _InOrder()
        self.take_lock = threading.Lock()

    def prepare(self) -> None:
        cfg = self.config
        if cfg.index:
            self.index_data = _read_file(cfg.index, "index")
        if cfg.archive:
            try:
                self.archive_fd = os.open(cfg.archive, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise DesyncError(f"cannot open archive {cfg.archive}: {exc.strerror}") from None
        self.stores = _existing_stores(cfg, self.options, self.log)

    def on_hello(self) -> None:
        if self.theirs & m.PULL_INDEX:
            for piece in m.file_pieces(m.INDEX, self.index_data):
                self.writer.send(piece)
        if self.theirs & m.PULL_ARCHIVE:
            self._send_archive()
        if self.ours & m.READABLE_STORE:
            for n in range(max(1, self.config.workers)):
                t = threading.Thread(target=self._answer_loop, name=f"desync-pull-{n}", daemon=True)
                t.start()
                self.workers.append(t)

    def _send_archive(self) -> None:
        while True:
            piece = os.read(self.archive_fd, m.FILE_PIECE_SIZE)
            if not piece:
                break
            self.writer.send(m.frame(m.ARCHIVE, piece))
        self.writer.send(m.frame(m.ARCHIVE_EOF))

    def on_message(self, msg: Message) -> None:
        if msg.type == m.REQUEST and self.ours & m.READABLE_STORE:
            high, ids = m.parse_request(msg.body)
            self.scheduler.add(ids, high)
        else:
            super().on_message(msg)

    def finish(self) -> None:
        """GOODBYE or EOF: answer the requests already queued, then end."""
        self.scheduler.drain()
        for worker in self.workers:
            worker.join()
        super().finish()

    def _answer_loop(self) -> None:
        """Take IDs and answer them; a failure ends the session (later answers then never go out)."""
        try:
            while True:
                with self.take_lock:
                    chunk_id = self.scheduler.take()
                    if chunk_id is None:
                        return
                    turn = self.order.ticket()
                self._answer(chunk_id, turn)
        except BaseException as exc:
            self.fail(exc)

    def _answer(self, chunk_id: bytes, turn: int) -> None:
        for store in self.stores:
            if (self._send_stored(store, chunk_id, turn) if self.config.verify
                    else self._send_file(store, chunk_id, turn)):
                with self.lock:
                    self.stats.sent += 1
                return
        self.order.hand_over(turn, partial(self.writer.send, m.missing(chunk_id)))
        with self.lock:
            self.stats.missing += 1

    def _send_file(self, store: LocalStore, chunk_id: bytes, turn: int) -> bool:
        """Send a zstd chunk file as it is stored, without reading it into memory."""
        try:
            opened = store.open_compressed(chunk_id)
        except ChunkInvalid as invalid:
            self.log(LOG_WARNING, f"{invalid}; reported as missing")
            return False
        if opened is None:
            return self._send_stored(store, chunk_id, turn)
        fd, size = opened
        try:
            if os.pread(fd, len(ZSTD_MAGIC), 0) != ZSTD_MAGIC:
                return self._send_stored(store, chunk_id, turn)
            self.order.hand_over(turn, self._file_sender(m.chunk_header(chunk_id, size, True), os.dup(fd), size))
        finally:
            os.close(fd)
        return True

    def _send_stored(self, store: LocalStore, chunk_id: bytes, turn: int) -> bool:
        """Send a chunk read through the store (verified if asked; plain files get compressed)."""
        try:
            chunk = store.get_chunk(chunk_id)
            if self.config.verify:
                _verify_any(chunk, self.config.digest, str(store))
        except ChunkMissing:
            return False
        except ChunkInvalid as exc:
            self.log(LOG_WARNING, f"{exc}; reported as missing")
            return False
        data = chunk.compressed()
        if not data.startswith(ZSTD_MAGIC):  # xz or gzip from casync: Go desync clients read only zstd
            data = compression.compress(chunk.data())
        self.order.hand_over(turn, partial(self.writer.send, m.chunk_header(chunk_id, len(data), True), data))
        return True

    def _file_sender(self, header: bytes, fd: int, size: int) -> Callable[[], None]:
        """Sends ``header`` and the file, then closes ``fd`` (a duplicate the answer owns)."""
        def send() -> None:
            try:
                self.writer.send_file(header, fd, size)
            finally:
                os.close(fd)
        return send

    def shutdown(self) -> None:
        self.scheduler.close()
        if self.archive_fd >= 0:
            os.close(self.archive_fd)
        self.log(LOG_DEBUG, f"pull session over: {self.stats.sent} chunks sent, {self.stats.missing} missing")


class _PushSession(_Session):
    """Receives an index and/or archive and the chunks the index needs."""

    def __init__(self, config: ServerConfig, in_fd: int, out_fd: int) -> None:
        super().__init__(config, in_fd, out_fd)
        self.options = StoreOptions(digest=config.digest)
        self.store: LocalStore | None = None
        self.read_stores: list[LocalStore] = []
        self.index_file: _Incoming | None = None
        self.archive_file: _Incoming | None = None
        self.index_done = False
        self.archive_done = False
        self.outstanding: set[bytes] = set()
        self.sizes: dict[bytes, int] = {}

    def prepare(self) -> None:
        cfg = self.config
        if cfg.write_store:
            try:
                os.mkdir(cfg.write_store)
            except FileExistsError:
                pass
            except OSError as exc:
                raise DesyncError(f"cannot create store {cfg.write_store}: {exc.strerror}") from None
            self.store = LocalStore(cfg.write_store, self.options)
        self.read_stores = _existing_stores(ServerConfig("push", read_stores=cfg.read_stores), self.options,
                                            self.log)
        if cfg.index:
            self.index_file = _Incoming(cfg.index)
        if cfg.archive:
            self.archive_file = _Incoming(cfg.archive)

    def on_hello(self) -> None:
        self._maybe_done()

    def _maybe_done(self) -> None:
        """Install the index once it and every chunk it needs are here, then say GOODBYE."""
        if self.theirs & m.PUSH_INDEX:
            if not self.index_done or self.outstanding:
                return
            if self.index_file is not None and not self.index_file.file.committed:
                self.index_file.install()
        if self.theirs & m.PUSH_ARCHIVE and not self.archive_done:
            return
        self.writer.send(m.goodbye())
        self.finish()

    def on_message(self, msg: Message) -> None:
        t = msg.type
        if t in (m.INDEX, m.INDEX_EOF) and self.index_file is not None and not self.index_done:
            if t == m.INDEX:
                self.index_file.write(msg.body)
            else:
                self._index_complete(self.index_file)
        elif t in (m.ARCHIVE, m.ARCHIVE_EOF) and self.archive_file is not None and not self.archive_done:
            if t == m.ARCHIVE:
                self.archive_file.write(msg.body)
            else:
                self.archive_file.install()
                self.archive_done = True
                self._maybe_done()
        elif t == m.CHUNK and self.store is not None:
            self._store_chunk(msg)
        elif t == m.MISSING and self.store is not None:
            raise DesyncError(f"the client does not have chunk {msg.body.hex()}, which the index needs")
        else:
            super().on_message(msg)

    def _index_complete(self, incoming: "_Incoming") -> None:
        data = incoming.contents()
        index = index_mod.parse(data, self.config.index)
        self.sizes = {c.id: c.size for c in index.chunks}
        if self.theirs & m.PUSH_INDEX_CHUNKS and self.store is not None:
            stores = [self.store, *self.read_stores]
            wanted = [cid for cid in dict.fromkeys(c.id for c in index.chunks)
                      if not any(s.has_chunk(cid) for s in stores)]
            self.outstanding.update(wanted)
            for i in range(0, len(wanted), m.MAX_REQUEST_IDS):
                self.writer.send(m.request(wanted[i:i + m.MAX_REQUEST_IDS], False))
        self.options.digest = index.digest
        self.index_done = True
        self._maybe_done()

    def _store_chunk(self, msg: Message) -> None:
        """Store a requested chunk once it hashes to its ID with the index's digest.

        Only requested chunks are taken, so the index gives each one's size:
        decompression (inside :meth:`Chunk.verify`) is bounded by it, whatever
        the frame header claims.
        """
        assert self.store is not None
        compressed, chunk_id = m.parse_chunk_flags(msg.body)
        if chunk_id not in self.outstanding:
            raise m.ProtocolError(f"invalid exchange: the client sent chunk {chunk_id.hex()}, which was not requested")
        chunk = Chunk(chunk_id, compressed=msg.data) if compressed else Chunk(chunk_id, data=msg.data)
        chunk.verify(self.options.digest, "sent by the client", self.sizes[chunk_id])
        self.store.put_chunk(chunk)
        self.outstanding.discard(chunk_id)
        self.stats.received += 1
        if self.index_done:
            self._maybe_done()

    def on_goodbye(self) -> None:
        raise DesyncError(f"the client ended the session before the transfer was complete: {self._unfinished()}")

    def on_eof(self) -> None:
        if self.done.is_set():
            return
        raise DesyncError(f"the client closed the connection before the transfer was complete: {self._unfinished()}")

    def _unfinished(self) -> str:
        """What is still missing, for the error that ends an incomplete push."""
        missing: list[str] = []
        if self.theirs & m.PUSH_INDEX:
            if not self.index_done:
                missing.append("the index was not complete")
            elif self.outstanding:
                missing.append(f"{len(self.outstanding)} chunks the index needs were not sent")
        if self.theirs & m.PUSH_ARCHIVE and not self.archive_done:
            missing.append("the archive was not complete")
        if not self.theirs:
            missing.append("no HELLO was received")
        if self.index_file is not None and not self.index_file.file.committed:
            missing.append(f"{self.index_file.target} was not installed")
        return "; ".join(missing) or "it ended early"

    def shutdown(self) -> None:
        for incoming in (self.index_file, self.archive_file):
            if incoming is not None:
                incoming.discard()
        self.log(LOG_DEBUG, f"push session over: {self.stats.received} chunks received")


class _Incoming:
    """A file being received: written beside the target (fsutil.AtomicFile), renamed into place when complete."""

    def __init__(self, target: str) -> None:
        self.target = target
        try:
            self.file = fsutil.AtomicFile(target)
        except OSError as exc:
            raise DesyncError(f"cannot write {target}: {exc.strerror}") from None

    def write(self, data: bytes) -> None:
        try:
            fsutil.write_all(self.file.fd, data)
        except OSError as exc:
            raise DesyncError(f"cannot write {self.target}: {exc.strerror}") from None

    def contents(self) -> bytes:
        return os.pread(self.file.fd, os.fstat(self.file.fd).st_size, 0)

    def install(self) -> None:
        try:
            self.file.commit()
        except OSError as exc:
            self.file.discard()
            raise DesyncError(f"cannot write {self.target}: {exc.strerror}") from None

    def discard(self) -> None:
        self.file.discard()


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise DesyncError(f"cannot read {what} {path}: {exc.strerror}") from None
