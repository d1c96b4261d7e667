"""``ssh://[USER@]HOST[:PORT]/PATH`` stores: chunks from a remote ``casync pull`` or ``desync pull``.

A read store only, like the Go desync's: the protocol can neither store,
list nor remove.  Each session carries many requests at once; another
session is opened only when all have ``PIPELINE_DEPTH`` in flight, up to ``-n`` sessions (capped at ``MAX_SESSIONS``), because each one
costs an ssh connection, a login shell and a server process.  Decompression
and verification happen in the calling worker threads.  A failed session is replaced and the request
retried (``--error-retry`` times).

No more ssh processes than that limit ever exist: a failed session's ssh is
killed at once, and a new session waits until a process of a failed or
retired one is gone.
"""

import threading
from typing import Final

from ..chunk import Chunk
from ..errors import ChunkMissing, StoreError
from ..protocol.client import Answer, PullSession, SessionFailed, poll_interval
from ..protocol.transport import parse_remote_url, pull_command
from .base import Store, StoreOptions, stored_chunk

MAX_SESSIONS: Final = 8
# Requests in flight on one session before another session is worth its start-up cost
# (a login shell and a server process on the far end, a key exchange in between).
PIPELINE_DEPTH: Final = 16


class SSHStore(Store):
    def __init__(self, location: str, options: StoreOptions) -> None:
        self.location = location
        self.options = options
        self.target = parse_remote_url(location, "ssh")
        self.argv = pull_command(self.target)
        self.limit = max(1, min(options.workers, MAX_SESSIONS))
        self.sessions: list[PullSession] = []
        self.retired: list[PullSession] = []
        # Guards the lists and ``running``; notified whenever an ssh process is gone.
        self.cond = threading.Condition()
        self.running = 0

    def _new_session(self) -> PullSession:
        """Start a session; the caller holds ``cond`` and has checked :meth:`_can_start`."""
        session = PullSession(self.argv, f"store {self.location}", self._process_gone)
        self.running += 1
        self.sessions.append(session)
        return session

    def _process_gone(self) -> None:
        with self.cond:
            self.running -= 1
            self.cond.notify_all()

    def _can_start(self) -> bool:
        return self.running < self.limit

    def _await_process_exit(self) -> None:
        """Wait (the lock released) until an ssh process is gone, failing sessions that stopped answering."""
        for s in self.sessions + self.retired:
            s.check_progress(self.options.timeout)
        self.cond.wait(poll_interval(self.options.timeout))

    def _drop_dead(self) -> None:
        dead = [s for s in self.sessions if not s.alive]
        for s in dead:
            self.sessions.remove(s)
            self.retired.append(s)
        self.retired = [s for s in self.retired if not s.exited.is_set()]

    def _ask(self, chunk_id: bytes) -> tuple[PullSession, Answer]:
        """A session to ask (one that has not been asked for this ID) and the answer to wait for."""
        with self.cond:
            while True:
                self._drop_dead()
                for s in self.sessions:
                    found = s.waiting_for(chunk_id)
                    if found is not None:
                        return s, found
                candidates = [s for s in self.sessions if s.can_ask(chunk_id)]
                best = min(candidates, key=lambda s: s.load) if candidates else None
                if best is not None and (best.load < PIPELINE_DEPTH or not self._can_start()):
                    return best, best.ask(chunk_id)
                if best is None and len(self.sessions) >= self.limit:
                    # Every session was asked for this ID once; a casync server would not answer again.
                    oldest = self.sessions.pop(0)
                    oldest.retire()
                    self.retired.append(oldest)
                if self._can_start():
                    best = self._new_session()
                    return best, best.ask(chunk_id)
                self._await_process_exit()

    def _fetch(self, chunk_id: bytes, attempts_made: int = 0) -> Answer:
        attempts = max(0, self.options.error_retry) + 1
        for attempt in range(attempts_made, attempts):
            session, answer = self._ask(chunk_id)
            try:
                return session.wait(answer, self.options.timeout)
            except SessionFailed:
                if attempt + 1 >= attempts:
                    raise
        raise StoreError(f"store {self.location}: no attempt made")

    def _batch_session(self, chunk_ids: list[bytes]) -> PullSession | None:
        """The least busy session never asked for any of these IDs (a new one while the cap allows)."""
        with self.cond:
            self._drop_dead()
            candidates = [s for s in self.sessions
                          if s.alive and not s.retiring and not any(c in s.asked for c in chunk_ids)]
            best = min(candidates, key=lambda s: s.load) if candidates else None
            if (best is None or best.load >= PIPELINE_DEPTH) and self._can_start():
                best = self._new_session()
            return best

    def fetch_chunks(self, requests: list[tuple[bytes, int]]) -> list[Chunk | None]:
        """One REQUEST for the whole batch on one session, and one wake-up when it is all here."""
        ids = [chunk_id for chunk_id, _ in requests]
        answers: list[Answer] | None = None
        attempts_made = 0
        session = self._batch_session(ids) if len(ids) > 1 else None
        if session is not None:
            try:
                answers = session.wait_many(session.ask_many(ids), self.options.timeout)
            except SessionFailed:
                if self.options.error_retry <= 0:
                    raise
                attempts_made = 1  # asked again one by one, on other sessions, with the retries left
        if answers is None:
            answers = [self._fetch(chunk_id, attempts_made) for chunk_id in ids]
        return [None if a.missing else self._chunk(chunk_id, hint, a)
                for (chunk_id, hint), a in zip(requests, answers)]

    def get_chunk(self, chunk_id: bytes, size_hint: int = 0) -> Chunk:
        return self._chunk(chunk_id, size_hint, self._fetch(chunk_id))

    def _chunk(self, chunk_id: bytes, size_hint: int, answer: Answer) -> Chunk:
        if answer.missing:
            raise ChunkMissing(chunk_id, self.location)
        return stored_chunk(self.options, chunk_id, answer.data, answer.compressed, self.location, size_hint)

    def has_chunk(self, chunk_id: bytes) -> bool:
        """The protocol has no "do you have"; like the Go desync, fetch the chunk."""
        return not self._fetch(chunk_id).missing

    def close(self) -> None:
        """Say GOODBYE on every session, then wait for all their processes at once (each bounded)."""
        with self.cond:
            sessions = self.sessions + self.retired
            self.sessions, self.retired = [], []
        for s in sessions:
            s.close()
        for s in sessions:
            s.reap()


def open_ssh_store(location: str, options: StoreOptions, writable: bool) -> Store:
    """A read store whatever ``writable`` says; writers find no ``put_chunk`` and refuse."""
    return SSHStore(location, options)
