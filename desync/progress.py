"""Progress reporting on stderr: a bar for terminals, lines for log parsers.

Like the Go desync, the bar shows when stderr is a terminal or
``DESYNC_PROGRESSBAR_ENABLED`` is set; ``DESYNC_ENABLE_PARSABLE_PROGRESS``
prints one parsable line per update instead.
"""

import os
import sys
import threading
import time
from typing import TextIO


class Progress:
    """Thread-safe counter; subclasses decide how (and whether) to show it."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n

    def finish(self) -> None:
        """Stop showing progress."""

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


class _Shown(Progress):
    interval = 0.2

    def __init__(self, label: str, total: int, stream: TextIO, parsable: bool) -> None:
        super().__init__(label, total)
        self.stream = stream
        self.parsable = parsable
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._run, daemon=True)
        self._ticker.start()

    def _run(self) -> None:
        interval = 0.5 if self.parsable else self.interval
        while not self._stop.wait(interval):
            self._draw(final=False)

    def _draw(self, final: bool) -> None:
        done, total = self.done, max(self.total, 1)
        frac = min(done / total, 1.0)
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 and done < total else 0.0
        speed = f"{rate / 1048576:.1f} MiB/s"
        clock = f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
        pct = f"{int(frac * 100)}%"
        if self.parsable:
            self.stream.write(f"{self.label} {pct} ({done}/{self.total}) {speed} {clock}\n")
        else:
            width = 30
            filled = int(frac * width)
            bar = "=" * filled + (">" if filled < width else "") + " " * max(width - filled - 1, 0)
            end = "\n" if final else ""
            self.stream.write(f"\r{self.label} [{bar}] {pct:>4} {speed} {clock}{end}")
        self.stream.flush()

    def finish(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._ticker.join()
            self._draw(final=True)


def progress(label: str, total: int) -> Progress:
    """A progress reporter suited to where stderr goes."""
    parsable = os.environ.get("DESYNC_ENABLE_PARSABLE_PROGRESS", "") != ""
    forced = os.environ.get("DESYNC_PROGRESSBAR_ENABLED", "") != ""
    stream = sys.stderr
    if parsable or forced or stream.isatty():
        return _Shown(label, total, stream, parsable)
    return Progress(label, total)
