"""Progress reporting on stderr: a bar for terminals, lines for log parsers.

Like the Go desync, the bar shows when stderr is a terminal or
``DESYNC_PROGRESSBAR_ENABLED`` is set; ``DESYNC_ENABLE_PARSABLE_PROGRESS``
prints one parsable line per update instead.
"""

import os
import sys
import threading
import time
from typing import Final, TextIO

BYTES: Final = "bytes"


class Progress:
    """Thread-safe counter; subclasses decide how (and whether) to show it.

    ``unit`` is what is counted: ``"bytes"`` (shown as MiB and MiB/s) or a
    plural noun such as ``"chunks"``.  A ``total`` of 0 means unknown (a
    stream, a store being listed): then only the amount done and the rate
    are shown.
    """

    def __init__(self, label: str, total: int, unit: str = BYTES) -> None:
        self.label = label
        self.total = total
        self.unit = unit
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

    def __init__(self, label: str, total: int, unit: str, stream: TextIO, parsable: bool) -> None:
        super().__init__(label, total, unit)
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

    def _amount(self, n: float) -> str:
        return f"{n / 1048576:.1f} MiB" if self.unit == BYTES else f"{n:.0f} {self.unit}"

    def _draw(self, final: bool) -> None:
        done = self.done
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = done / elapsed
        speed = f"{self._amount(rate)}/s"
        if self.total <= 0:
            line = f"{self.label} {self._amount(done)} {speed}"
            self.stream.write(f"{line}\n" if self.parsable else f"\r{line}  {chr(10) if final else ''}")
            self.stream.flush()
            return
        total = self.total
        frac = min(done / total, 1.0)
        eta = (total - done) / rate if rate > 0 and done < total else 0.0
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


def progress(label: str, total: int, unit: str = BYTES) -> Progress:
    """A progress reporter suited to where stderr goes."""
    parsable = os.environ.get("DESYNC_ENABLE_PARSABLE_PROGRESS", "") != ""
    forced = os.environ.get("DESYNC_PROGRESSBAR_ENABLED", "") != ""
    stream = sys.stderr
    if parsable or forced or stream.isatty():
        return _Shown(label, total, unit, stream, parsable)
    return Progress(label, total, unit)
