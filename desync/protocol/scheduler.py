"""Which requested chunk a pull server answers next (docs/protocol.md 6.2).

casync clients ask for the whole index at low priority and then again, ID
by ID, at high priority; Go desync clients ask one ID at a time and may ask
again later.  The rules below answer each casync request once and never
leave a Go-style client waiting:

* low request for an ID seen before in this session: ignored;
* high request for an ID waiting at low priority: promoted;
* high request for an ID taken from the low queue (answer on its way): ignored;
* high request for an ID already answered at high priority: answered again;
* anything else: queued once.  High-priority IDs always go first.
"""

from __future__ import annotations

import threading
from collections import deque

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Final

_QUEUED_LOW: Final = 1
_QUEUED_HIGH: Final = 2
_TAKEN_LOW: Final = 3
_TAKEN_HIGH: Final = 4


class RequestScheduler:
    """Thread-safe: the reading thread adds requests, worker threads take IDs."""

    def __init__(self) -> None:
        self.state: dict[bytes, int] = {}
        self.high: deque[bytes] = deque()
        self.low: deque[bytes] = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.draining = False

    def add(self, ids: list[bytes], high_priority: bool) -> None:
        with self.cond:
            added = 0
            for chunk_id in ids:
                st = self.state.get(chunk_id)
                if not high_priority:
                    if st is None:
                        self.state[chunk_id] = _QUEUED_LOW
                        self.low.append(chunk_id)
                        added += 1
                elif st is None or st == _QUEUED_LOW or st == _TAKEN_HIGH:
                    # A promoted ID stays behind in the low deque; take() skips it there.
                    self.state[chunk_id] = _QUEUED_HIGH
                    self.high.append(chunk_id)
                    added += 1
            if added:
                self.cond.notify(added)

    def take(self) -> bytes | None:
        """The next ID to answer; blocks while none is queued, None once closed or drained."""
        with self.cond:
            while not self.closed:
                while self.high:
                    chunk_id = self.high.popleft()
                    if self.state.get(chunk_id) == _QUEUED_HIGH:
                        self.state[chunk_id] = _TAKEN_HIGH
                        return chunk_id
                while self.low:
                    chunk_id = self.low.popleft()
                    if self.state.get(chunk_id) == _QUEUED_LOW:
                        self.state[chunk_id] = _TAKEN_LOW
                        return chunk_id
                if self.draining:
                    break
                self.cond.wait()
            return None

    def drain(self) -> None:
        """No more requests will come: :meth:`take` hands out what is queued, then None."""
        with self.cond:
            self.draining = True
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
