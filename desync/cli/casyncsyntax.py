"""casync's value syntax for sizes and log levels, shared by casync mode and the ``pull``/``push`` ends.

Both parse what a casync command line (or a casync client starting the
remote end) passes: sizes as digits with an optional B/K/M/G/T/P/E suffix
(powers of 1024), log levels as syslog names or numbers 0..7.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up (pull sessions)
    from typing import Final

SIZE_SUFFIXES: Final = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
                        "E": 1 << 60}
LOG_LEVELS: Final = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}
# Spellings casync does not take but a person typing desync's own pull/push options might.
LOG_LEVEL_SYNONYMS: Final = {"emergency": 0, "critical": 2, "error": 3, "warn": 4}


def size_value(text: str) -> int | None:
    """The byte count ``text`` gives (surrounding spaces and the suffix's case ignored); None if it is not one."""
    raw = text.strip().upper()
    suffix = raw[-1:] if raw[-1:] in SIZE_SUFFIXES and not raw[-1:].isdigit() else ""
    digits = raw[: len(raw) - len(suffix)]
    if not digits.isdigit():
        return None
    return int(digits) * SIZE_SUFFIXES[suffix]


def log_level_value(text: str, lenient: bool = False) -> int | None:
    """A syslog level: a name (emerg..debug) or a number 0..7; None if neither.

    casync takes exactly its lowercase names; ``lenient`` also takes the
    synonyms, any case and surrounding spaces.
    """
    key = text.strip().lower() if lenient else text
    level = LOG_LEVELS.get(key)
    if level is None and lenient:
        level = LOG_LEVEL_SYNONYMS.get(key)
    if level is not None:
        return level
    if key.isdigit() and int(key) <= 7:
        return int(key)
    return None
