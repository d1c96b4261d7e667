"""SIGTERM and SIGHUP end a command like Ctrl-C: the same unwinding, so temp files are removed.

The handler raises a plain KeyboardInterrupt in the main thread (every
cleanup path already handles it) and records which signal it was, for the
exit status 128 + signal.  A repeat during the cleanup is ignored; a
SIGHUP that was ignored when we started (nohup) stays ignored.
"""

from __future__ import annotations

import signal

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from collections.abc import Callable
    from types import FrameType
    from typing import Final

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGHUP)
# Commands whose library handles these signals itself (libfuse unmounts on them).
OWN_HANDLING: Final = frozenset({"mount-index"})
_received: list[int] = []


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    _received.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def install(command: str) -> None:
    """Handle SIGTERM and SIGHUP for ``command`` (not from a thread other than the main one)."""
    if command in OWN_HANDLING:
        return
    for sig in STOP_SIGNALS:
        try:
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _on_stop_signal)
        except ValueError:
            return  # not the main thread (an embedding program): leave signals to it


def received() -> int:
    """The signal that interrupted the command: SIGTERM or SIGHUP if one did, else SIGINT (Ctrl-C)."""
    return _received[0] if _received else int(signal.SIGINT)


def terminated() -> bool:
    """Whether SIGTERM or SIGHUP (not Ctrl-C) interrupted the command."""
    return bool(_received)


def on_hangup(callback: Callable[[], None]) -> None:
    """Run ``callback`` on a thread of its own for every SIGHUP, even while the main thread is in C code.

    A long-running mount sits inside libfuse, where a Python signal handler
    never gets to run; the interpreter still writes each signal to its
    wakeup descriptor at once, so a thread reading that pipe hears it.
    Installing a handler also keeps libfuse from making SIGHUP unmount
    (it only takes signals that have none).  Main thread only.
    """
    import os
    import threading  # only here: the commands that start fast never watch for SIGHUP

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.signal(signal.SIGHUP, _ignore)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            got = os.read(read_end, 64)
            if not got:
                return
            for _ in range(got.count(bytes([signal.SIGHUP]))):
                callback()

    threading.Thread(target=watch, name="desync-sighup", daemon=True).start()


def _ignore(signum: int, frame: FrameType | None) -> None:
    """SIGHUP's Python-level handler: the work happens on the on_hangup thread."""
