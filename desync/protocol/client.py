"""One casync protocol session pulling chunks from a remote ``pull`` server.

Requests are pipelined: any number of threads ask for chunks, each REQUEST
goes out at once, and a reading thread hands every CHUNK or MISSING to the
thread waiting for it.  A casync server answers each ID at most once per
session, so a session never asks twice for the same ID; the caller picks
another session for a repeat (see :meth:`PullSession.can_ask`).

A remote that answers with an ID nobody asked for breaks the protocol and
fails the session at once.  One that makes no progress on what was asked
for ``timeout`` seconds fails it too.  A failed session's ssh is killed at
once and a closed one's given a moment to exit; both are reaped in the
background, and the owner is told when the process is gone (so it can
bound how many exist).
"""

import threading
import time
from collections.abc import Callable
from typing import Final

from ..errors import NetworkError
from . import messages as m
from .session import PipelinedSession, Waiter
from .stream import MessageReader

# How long a remote told GOODBYE gets to exit by itself before it is terminated.
_CLOSE_GRACE: Final = 2.0
# Upper bound on reaping a process (grace, SIGTERM, a moment, SIGKILL).
_REAP_LIMIT: Final = _CLOSE_GRACE + 2.0


class SessionFailed(NetworkError):
    """The session ended before the answer came (ssh died, protocol error, no answer in time)."""


class _Group:
    """Answers asked for together: their thread sleeps until the last one arrives, not once per chunk."""

    __slots__ = ("event", "left")

    def __init__(self, count: int) -> None:
        self.event = threading.Event()
        self.left = count


class Answer(Waiter):
    """What a waiting thread receives: chunk bytes, or ``missing``."""

    __slots__ = ("answered", "missing", "compressed", "data", "group")

    def __init__(self, group: _Group | None = None) -> None:
        super().__init__()
        self.answered = False
        self.missing = False
        self.compressed = False
        self.data = b""
        self.group = group

    def wake(self) -> None:
        self.event.set()
        if self.group is not None:
            self.group.event.set()


def poll_interval(timeout: float) -> float:
    """How often a waiting thread checks for a silent remote: often enough to notice within the timeout."""
    return min(1.0, timeout / 4) if timeout > 0 else 1.0


class PullSession(PipelinedSession[bytes, Answer, SessionFailed]):
    def __init__(self, argv: list[str], label: str, on_exit: Callable[[], None] | None = None) -> None:
        super().__init__(argv, label)
        self.on_exit = on_exit
        self.stopping = False
        self.exited = threading.Event()
        self.reader = MessageReader(self.process.in_fd)
        self.asked: set[bytes] = set()
        self.retiring = False
        try:
            self.writer.send(m.hello(m.PULL_CHUNKS))
        except m.ProtocolError:
            pass  # the reading thread reports why the process went away
        self._start_reading(self._read_loop, "desync-ssh-reader")

    def waiting_for(self, chunk_id: bytes) -> Answer | None:
        with self.lock:
            return self.pending.get(chunk_id)

    def can_ask(self, chunk_id: bytes) -> bool:
        return self.alive and not self.retiring and chunk_id not in self.asked

    def ask(self, chunk_id: bytes) -> Answer:
        """Send a REQUEST (or join the one in flight) and return what to wait on."""
        with self.lock:
            found = self.pending.get(chunk_id)
            if found is not None:
                return found
            if self.failure is not None:
                raise self.failure
            if not self.pending:
                self.last_heard = time.monotonic()
            answer = Answer()
            self.pending[chunk_id] = answer
            self.asked.add(chunk_id)
        try:
            self.writer.send(m.request([chunk_id], True))
        except m.ProtocolError:
            pass  # the reading thread sees the end and fails every pending answer
        return answer

    def ask_many(self, chunk_ids: list[bytes]) -> list[Answer]:
        """Ask for several chunks in one REQUEST; IDs already in flight here join their request."""
        group = _Group(0)
        answers: list[Answer] = []
        fresh: list[bytes] = []
        with self.lock:
            if self.failure is not None:
                raise self.failure
            if not self.pending:
                self.last_heard = time.monotonic()
            for chunk_id in chunk_ids:
                found = self.pending.get(chunk_id)
                if found is None:
                    found = Answer(group)
                    group.left += 1
                    self.pending[chunk_id] = found
                    self.asked.add(chunk_id)
                    fresh.append(chunk_id)
                answers.append(found)
        try:
            for i in range(0, len(fresh), m.MAX_REQUEST_IDS):
                self.writer.send(m.request(fresh[i:i + m.MAX_REQUEST_IDS], True))
        except m.ProtocolError:
            pass  # the reading thread sees the end and fails every pending answer
        return answers

    def wait_many(self, answers: list[Answer], timeout: float) -> list[Answer]:
        """Wait for every answer (one wake-up for those asked together); fails like :meth:`wait`."""
        groups = {id(a.group): a.group for a in answers if a.group is not None}
        for group in groups.values():
            while not group.event.wait(poll_interval(timeout)):
                if self.failure is not None or self.closed:
                    break
                self.check_progress(timeout)
        return [self.wait(a, timeout) for a in answers]

    def wait(self, answer: Answer, timeout: float) -> Answer:
        """Block until answered; fails when the session dies or answers nothing for ``timeout`` seconds."""
        while not answer.event.wait(poll_interval(timeout)):
            self.check_progress(timeout)
        if not answer.answered:
            raise self.failure or SessionFailed(f"{self.label}: the session was closed")
        return answer

    def check_progress(self, timeout: float) -> None:
        """Fail the session when requests are outstanding and none was answered for ``timeout`` seconds."""
        if timeout > 0 and self.pending and time.monotonic() - self.last_heard > timeout:
            self._fail(SessionFailed(f"{self.label}: no answer from the remote for {timeout:g} s"))

    def _read_loop(self) -> None:
        try:
            msg = self.reader.read()
            if msg is None:
                raise SessionFailed(f"{self.label}: the remote side ended: {self.process.explain()}")
            if msg.type != m.HELLO:
                raise m.ProtocolError(f"expected HELLO, got {m.type_name(msg.type)}")
            theirs = m.parse_hello(msg.body)
            m.check_exchange(m.PULL_CHUNKS, theirs)
            while True:
                msg = self.reader.read()
                if msg is None:
                    if self.closed:
                        return
                    raise SessionFailed(f"{self.label}: the remote side ended: {self.process.explain()}")
                if msg.type == m.CHUNK:
                    compressed, chunk_id = m.parse_chunk_flags(msg.body)
                    self._deliver(chunk_id, False, compressed, msg.data)
                elif msg.type == m.MISSING:
                    self._deliver(msg.body, True, False, b"")
                elif msg.type == m.ABORT:
                    error, reason = m.parse_abort(msg.body)
                    raise SessionFailed(f"{self.label}: the remote aborted: {reason or f'error {error}'}")
                elif msg.type == m.GOODBYE:
                    raise SessionFailed(f"{self.label}: the remote ended the session")
                else:
                    raise m.ProtocolError(f"unexpected {m.type_name(msg.type)} message")
        except SessionFailed as ended:
            self._fail(ended)
        except m.ProtocolError as bad:
            self._fail(SessionFailed(f"{self.label}: {bad}"))
        except BaseException as bug:
            self._fail(SessionFailed(f"{self.label}: {type(bug).__name__}: {bug}"))
        finally:
            self.process.close_output()

    def _deliver(self, chunk_id: bytes, missing: bool, compressed: bool, data: bytes) -> None:
        with self.lock:
            answer = self.pending.pop(chunk_id, None)
            idle = self.retiring and not self.pending
            if answer is not None:
                self.last_heard = time.monotonic()
            elif chunk_id not in self.asked:
                raise m.ProtocolError(f"the remote sent {'MISSING for' if missing else 'chunk'} {chunk_id.hex()}, "
                                      "which was not requested")
        if answer is not None:  # a duplicate answer (casync clients tolerate them) is dropped; it is no progress
            answer.missing, answer.compressed, answer.data = missing, compressed, data
            answer.answered = True
            answer.event.set()
            group = answer.group
            if group is not None:
                with self.lock:
                    group.left -= 1
                    last = group.left == 0
                if last:
                    group.event.set()
        if idle:
            self.close()

    def _fail(self, exc: SessionFailed) -> None:
        self._fail_waiters(exc)
        self._stop(0.0)

    def retire(self) -> None:
        """Take no new requests; close once the outstanding ones are answered."""
        with self.lock:
            self.retiring = True
            idle = not self.pending
        if idle:
            self.close()

    def close(self) -> None:
        """Say GOODBYE and close our end; never blocks (see :meth:`reap`)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            failed = self.failure is not None
        if not failed:
            try:
                self.writer.send(m.goodbye())
            except m.ProtocolError:
                pass
        self._stop(_CLOSE_GRACE)

    def _stop(self, grace: float) -> None:
        """Start reaping ssh in the background: after ``grace`` seconds, or at once (0) for a failed session."""
        with self.lock:
            if self.stopping:
                return
            self.stopping = True
        threading.Thread(target=self._reap_process, args=(grace,), name="desync-ssh-reaper", daemon=True).start()

    def _reap_process(self, grace: float) -> None:
        try:
            self.process.stop(grace)
        finally:
            self.exited.set()
            if self.on_exit is not None:
                self.on_exit()

    def reap(self) -> None:
        """Close, then wait (a bounded time) until ssh is gone."""
        self.close()
        self.exited.wait(_REAP_LIMIT)
        self.reading.join(timeout=1.0)
