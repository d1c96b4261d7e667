"""Index and archive files over casync's SSH protocol, client side (docs/protocol.md 1.3).

casync names a remote file ``host:/path``; it starts ``ssh host casync pull
- ARCHIVE INDEX -`` (or ``push - ARCHIVE INDEX STORE``) and moves the file
in INDEX/ARCHIVE messages, the chunks an index needs in REQUEST/CHUNK
messages.  The remote end may be casync or ``desync pull``/``push``
(:mod:`desync.server.remote`).  Each function here runs one short session
synchronously on the calling thread.
"""

import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import DesyncError, InvalidArgument, StoreError
from . import messages as m
from .stream import Message, MessageReader, MessageWriter
from .transport import SSHProcess, remote_program, shell_quote, ssh_program

# Seconds a finished remote end gets to exit before it is killed.
_EXIT_GRACE = 5.0
_SAFE = re.compile(r"[A-Za-z0-9_./,:+@%=-]+")


@dataclass(frozen=True, slots=True)
class SSHPath:
    """A ``[user@]host:/path`` location."""

    host: str
    path: str

    def __str__(self) -> str:
        return f"{self.host}:{self.path}"


def parse_ssh_path(location: str) -> SSHPath | None:
    """``host:path`` as casync reads it (a colon before any slash, no ``://``); None for anything else."""
    if "://" in location or location.startswith("/"):
        return None
    head, colon, path = location.partition(":")
    if not colon or not head or "/" in head:
        return None
    if head.startswith("-") or any(c.isspace() or ord(c) < 0x20 for c in head):
        raise InvalidArgument(f"invalid host in {location!r}")
    if not path:
        raise InvalidArgument(f"no path after the host in {location!r}")
    return SSHPath(head, path)


def with_last_component(location: str, name: str) -> str:
    """``location`` with its last path component replaced by ``name`` (casync's default store rule)."""
    head, slash, _ = location.rpartition("/")
    if slash:
        return f"{head}/{name}"
    ssh = parse_ssh_path(location)
    if ssh is not None:
        return f"{ssh.host}:{name}"
    return name


def casync_command(target: SSHPath, verb: str, archive: str, index: str, store: str,
                   rate_limit: int = 0) -> list[str]:
    """ssh argv as casync builds it: ``ssh HOST REMOTE [--rate-limit-bps=N] VERB - ARCHIVE INDEX STORE``.

    A rate limit goes to the remote end, as casync passes it: there it
    bounds what the remote end sends.

    ssh joins the words for the remote shell, so a path with characters the
    shell would interpret is single-quoted; plain paths stay bare, which is
    also what a local stand-in for ssh (casync's pseudo-ssh) can run.
    """
    words = [w if w == "-" or _SAFE.fullmatch(w) else shell_quote(w) for w in (archive, index, store)]
    limit = [f"--rate-limit-bps={rate_limit}"] if rate_limit > 0 else []
    return [ssh_program(), target.host, *shlex.split(remote_program()), *limit, verb, "-", *words]


class _Session:
    """One ssh child speaking the protocol; HELLO exchanged on start.

    ``rate_limit`` (bytes per second) bounds both directions: the remote
    end is asked to keep to it, and what this side sends keeps to it.
    """

    def __init__(self, target: SSHPath, verb: str, archive: str, index: str, store: str, wants: int,
                 rate_limit: int = 0) -> None:
        self.label = str(target)
        self.proc = SSHProcess(casync_command(target, verb, archive, index, store, rate_limit), self.label)
        self.reader = MessageReader(self.proc.in_fd)
        self.writer = MessageWriter(self.proc.out_fd, rate_limit)
        try:
            self.writer.send(m.hello(wants))
            first = self.reader.read()
        except m.ProtocolError:
            raise self.failed() from None
        if first is None or first.type != m.HELLO:
            raise self.failed()
        theirs = m.parse_hello(first.body)
        m.check_exchange(wants, theirs)

    def failed(self) -> StoreError:
        self.proc.stop(0.5)
        return StoreError(f"{self.label}: {self.proc.explain()}")

    def next(self) -> Message | None:
        try:
            msg = self.reader.read()
        except m.ProtocolError:
            raise self.failed() from None
        if msg is not None and msg.type == m.ABORT:
            _, reason = m.parse_abort(msg.body)
            self.proc.stop(0.5)
            raise StoreError(f"{self.label}: the remote end aborted: {reason}")
        return msg

    def close(self, goodbye: bool) -> None:
        if goodbye:
            try:
                self.writer.send(m.goodbye())
            except m.ProtocolError:
                pass
        self.proc.wait(_EXIT_GRACE)
        self.proc.close_output()


def pull_file(target: SSHPath, archive: bool, rate_limit: int = 0) -> Iterator[bytes]:
    """The remote index (or archive) file, in pieces as they arrive."""
    session = _Session(target, "pull", target.path if archive else "-", "-" if archive else target.path, "-",
                       m.PULL_ARCHIVE if archive else m.PULL_INDEX, rate_limit)
    piece, eof = (m.ARCHIVE, m.ARCHIVE_EOF) if archive else (m.INDEX, m.INDEX_EOF)
    ok = False
    try:
        while True:
            msg = session.next()
            if msg is None:
                raise session.failed()
            if msg.type == piece:
                yield msg.body
            elif msg.type == eof:
                ok = True
                return
            else:
                raise DesyncError(f"{target}: unexpected {m.type_name(msg.type)} message")
    finally:
        if ok:
            session.close(goodbye=True)
        else:
            session.proc.stop(0.5)


def pull_index_bytes(target: SSHPath, limit: int, rate_limit: int = 0) -> bytes:
    data = bytearray()
    for piece in pull_file(target, archive=False, rate_limit=rate_limit):
        data += piece
        if len(data) > limit:
            raise DesyncError(f"{target}: index larger than {limit} bytes")
    return bytes(data)


def push_archive(target: SSHPath, pieces: Iterator[bytes], rate_limit: int = 0) -> None:
    """Send an archive to be written at ``target`` (installed by the remote end when complete)."""
    session = _Session(target, "push", target.path, "-", "-", m.PUSH_ARCHIVE, rate_limit)
    ok = False
    try:
        buf = bytearray()
        for piece in pieces:
            buf += piece
            while len(buf) >= m.FILE_PIECE_SIZE:
                session.writer.send(m.frame(m.ARCHIVE, bytes(buf[:m.FILE_PIECE_SIZE])))
                del buf[:m.FILE_PIECE_SIZE]
        if buf:
            session.writer.send(m.frame(m.ARCHIVE, bytes(buf)))
        session.writer.send(m.frame(m.ARCHIVE_EOF))
        _await_goodbye(session)
        ok = True
    except m.ProtocolError:
        raise session.failed() from None
    finally:
        if ok:
            session.close(goodbye=False)
        else:
            session.proc.stop(0.5)


def push_index(target: SSHPath, store: str, index_data: bytes,
               chunk: Callable[[bytes], tuple[bytes, bool]], rate_limit: int = 0) -> int:
    """Send an index to ``target`` and the chunks the remote store asks for; the number of chunks sent.

    ``store`` is the remote store directory; ``chunk(id)`` gives a chunk's
    stored bytes and whether they are compressed.
    """
    session = _Session(target, "push", "-", target.path, store, m.PUSH_INDEX | m.PUSH_CHUNKS | m.PUSH_INDEX_CHUNKS,
                       rate_limit)
    ok = False
    sent = 0
    try:
        session.writer.send(*m.file_pieces(m.INDEX, index_data))
        while True:
            msg = session.next()
            if msg is None:
                raise session.failed()
            if msg.type == m.GOODBYE:
                break
            if msg.type != m.REQUEST:
                raise DesyncError(f"{target}: unexpected {m.type_name(msg.type)} message")
            _, ids = m.parse_request(msg.body)
            for cid in ids:
                data, compressed = chunk(cid)
                session.writer.send(m.chunk_header(cid, len(data), compressed), data)
                sent += 1
        ok = True
    except m.ProtocolError:
        raise session.failed() from None
    finally:
        if ok:
            session.close(goodbye=False)
        else:
            session.proc.stop(0.5)
    return sent


def _await_goodbye(session: _Session) -> None:
    while True:
        msg = session.next()
        if msg is None:
            raise session.failed()
        if msg.type == m.GOODBYE:
            return
        raise DesyncError(f"{session.label}: unexpected {m.type_name(msg.type)} message")
