"""Exclude patterns with casync's ``.caexclude`` semantics.

Each non-empty line that does not start with ``#`` is a glob (``fnmatch``
with ``FNM_PERIOD``: wildcards never match a leading dot).  A leading ``!``
negates; a pattern containing ``/`` is anchored to the directory holding
the rules, otherwise it applies at every depth below it; a trailing ``/``
matches directories only; ``a/b`` descends one level per component.  An
entry is excluded when some positive rule matches and no negative one does.
The same rules serve ``--exclude`` options, which act like a ``.caexclude``
at the archive root.

Public API: ``parse_rules(lines, source) -> list[Rule]``, ``read_rules_file(dir_fd)``,
``match(rules, name, is_dir) -> (excluded, rules_for_children)``, ``fnmatch_period(pattern, name)``.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Final, Iterable

from ..errors import DesyncError

POSITIVE: Final = 0
NEGATIVE: Final = 1
INNER: Final = 2

EXCLUDE_FILE_NAME: Final = b".caexclude"
_WHITESPACE: Final = b" \t\n\r"
_MAX_FILE: Final = 16 * 1024 * 1024


@dataclass
class Rule:
    kind: int
    pattern: bytes
    anchored: bool
    directory_only: bool
    children: list["Rule"] = field(default_factory=list)


def parse_rules(lines: Iterable[bytes], source: str = "--exclude") -> list[Rule]:
    """Parse pattern lines (comments and blank lines are skipped)."""
    out: list[Rule] = []
    for raw in lines:
        line = raw.strip(_WHITESPACE)
        if not line or line.startswith(b"#"):
            continue
        out.append(_parse_line(line, source))
    return out


def _parse_line(line: bytes, source: str) -> Rule:
    kind = POSITIVE
    p = line
    if p.startswith(b"!"):
        kind = NEGATIVE
        p = p[1:]
    anchored = b"/" in p
    p = p.lstrip(b"/")
    first: Rule | None = None
    current: Rule | None = None
    while True:
        k = p.find(b"/")
        comp = p if k < 0 else p[:k]
        if comp in (b"", b".", b".."):
            raise DesyncError(f"{source}: invalid exclude pattern {line!r}")
        p = b"" if k < 0 else p[k:]
        directory_only = p.startswith(b"/")
        p = p.lstrip(b"/")
        item = Rule(kind if not p else INNER, comp, anchored, directory_only)
        if current is None:
            first = item
        else:
            current.children.append(item)
        if not p:
            break
        current = item
        anchored = True
    assert first is not None
    return first


def read_rules_file(dir_fd: int) -> list[Rule]:
    """Rules of ``.caexclude`` in the directory ``dir_fd`` (none if absent)."""
    try:
        fd = os.open(EXCLUDE_FILE_NAME, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return []
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        chunks: list[bytes] = []
        total = 0
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            total += len(b)
            if total > _MAX_FILE:
                raise DesyncError(".caexclude file too large")
            chunks.append(b)
    finally:
        os.close(fd)
    return parse_rules(b"".join(chunks).split(b"\n"), ".caexclude")


def match(rules: list[Rule], name: bytes, is_dir: bool) -> tuple[bool, list[Rule]]:
    """Whether ``name`` is excluded, and the rules that apply inside it."""
    subtree: list[Rule] = []
    positive = False
    negative = False
    for r in rules:
        if is_dir and not r.anchored:
            subtree.append(r)
        if r.directory_only and not is_dir:
            continue
        if not fnmatch_period(r.pattern, name):
            continue
        if r.kind == NEGATIVE:
            negative = True
        elif r.kind == POSITIVE:
            positive = True
        elif is_dir:
            subtree.extend(r.children)
    return positive and not negative, subtree


_CLASSES: Final[dict[bytes, bytes]] = {
    b"alpha": bytes(range(65, 91)) + bytes(range(97, 123)),
    b"digit": bytes(range(48, 58)),
    b"alnum": bytes(range(48, 58)) + bytes(range(65, 91)) + bytes(range(97, 123)),
    b"upper": bytes(range(65, 91)),
    b"lower": bytes(range(97, 123)),
    b"space": b" \t\n\r\x0b\x0c",
    b"blank": b" \t",
    b"punct": bytes(c for c in range(33, 127) if not chr(c).isalnum()),
    b"xdigit": b"0123456789abcdefABCDEF",
    b"print": bytes(range(32, 127)),
    b"graph": bytes(range(33, 127)),
    b"cntrl": bytes(range(0, 32)) + b"\x7f",
}


def _bracket(pattern: bytes, i: int, c: int) -> tuple[bool, int]:
    """Match byte ``c`` against the set starting after ``[`` at ``i``.

    Returns (matched, index after ``]``), or index -1 when the bracket is
    not closed (then ``[`` is an ordinary character, as in glibc).
    """
    n = len(pattern)
    negate = False
    if i < n and pattern[i] in (0x21, 0x5E):  # ! ^
        negate = True
        i += 1
    matched = False
    first = True
    while True:
        if i >= n:
            return False, -1
        ch = pattern[i]
        if ch == 0x5D and not first:  # ]
            return matched != negate, i + 1
        first = False
        if ch == 0x5B and i + 1 < n and pattern[i + 1] == 0x3A:  # [:
            end = pattern.find(b":]", i + 2)
            if end >= 0:
                cls = _CLASSES.get(pattern[i + 2 : end])
                if cls is None:
                    return False, -1
                if c in cls:
                    matched = True
                i = end + 2
                continue
        if ch == 0x5C and i + 1 < n:  # backslash escapes inside brackets too
            i += 1
            ch = pattern[i]
        lo = ch
        i += 1
        if i + 1 < n and pattern[i] == 0x2D and pattern[i + 1] != 0x5D:  # range a-z
            hi = pattern[i + 1]
            i += 2
            if hi == 0x5C and i < n:
                hi = pattern[i]
                i += 1
            if lo <= c <= hi:
                matched = True
        elif c == lo:
            matched = True


def fnmatch_period(pattern: bytes, name: bytes) -> bool:
    """glibc ``fnmatch(pattern, name, FNM_PERIOD)`` on raw bytes."""
    if name.startswith(b".") and not (
        pattern.startswith(b".") or pattern.startswith(b"\\.")
    ):
        return False
    p = 0
    s = 0
    star_p = -1
    star_s = 0
    np_ = len(pattern)
    ns = len(name)
    while s < ns:
        if p < np_:
            ch = pattern[p]
            if ch == 0x2A:  # *
                while p < np_ and pattern[p] == 0x2A:
                    p += 1
                star_p = p
                star_s = s
                continue
            if ch == 0x3F:  # ?
                p += 1
                s += 1
                continue
            if ch == 0x5B:  # [
                ok, nxt = _bracket(pattern, p + 1, name[s])
                if nxt >= 0:
                    if ok:
                        p = nxt
                        s += 1
                        continue
                elif name[s] == 0x5B:
                    p += 1
                    s += 1
                    continue
            else:
                lit = ch
                step = 1
                if ch == 0x5C and p + 1 < np_:
                    lit = pattern[p + 1]
                    step = 2
                if lit == name[s]:
                    p += step
                    s += 1
                    continue
        if star_p >= 0:
            star_s += 1
            s = star_s
            p = star_p
            continue
        return False
    while p < np_ and pattern[p] == 0x2A:
        p += 1
    return p == np_
