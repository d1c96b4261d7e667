"""A bytes-per-second bound shared by the threads of one transfer (casync's ``--rate-limit-bps``).

Whoever moves bytes over the network reports them with :meth:`Throttle.account`,
which sleeps until the bytes moved so far fit the rate since the first report.
One throttle serves every connection of a store, so parallel fetches share
the bound instead of each getting it.
"""

import threading
import time


class Throttle:
    """Average rate bound; a rate of 0 or less bounds nothing."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.moved = 0
        self.started = 0.0

    def account(self, count: int) -> None:
        """Record ``count`` bytes moved and wait until they are within the rate."""
        if self.rate <= 0 or count <= 0:
            return
        with self.lock:
            now = time.monotonic()
            if not self.moved:
                self.started = now
            self.moved += count
            ahead = self.moved / self.rate - (now - self.started)
        if ahead > 0:
            time.sleep(ahead)
