"""Temp names that say who owns them, so leftovers of killed runs can be found and removed.

Everything desync writes under a final name is first written under a temp
name beside it (see fsutil): ``.<name>.<tag>.tmp`` for indexes, extracted
images and untar trees, ``.tmp-cacnk.<tag>`` for chunks in a local store.
A run killed with SIGKILL (or by a power loss) leaves that temp behind.
The tag is ``dsy<host><boot>-<pid>-<random>``: ``host`` is a hash of the
host name and PID namespace, ``boot`` of the kernel's boot ID.

The rule for removing a leftover (:func:`owner_gone`):

- same host and PID namespace, same boot: removed once the owning PID no
  longer exists (``kill(pid, 0)`` fails with ESRCH);
- same host and PID namespace, an earlier boot: removed (its owner died
  with that boot);
- anything else (another host sharing the directory over a network file
  system, another container, a name without a tag written by an older
  desync, casync or the Go desync): removed only when it has not been
  modified for :data:`STALE_AFTER` seconds.

The next write of the same target sweeps its own leftovers
(:func:`sweep_beside`); ``prune`` and ``verify -r`` sweep a store's (an
SFTP store's by age alone: its writers run on other hosts).
"""

from __future__ import annotations

import os
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    import re
    from typing import Final

STALE_AFTER: Final = 24 * 3600.0
TMP_SUFFIX: Final = ".tmp"
# The tag of a temp name, and the untagged token of older versions; compiled on first use (see _patterns).
_TAG_PATTERN: Final = r"dsy([0-9a-f]{8})([0-9a-f]{8})-([0-9]{1,10})-[0-9a-f]{8}"
_OLD_TOKEN_PATTERN: Final = r"[0-9a-f]{12}"
_compiled: list[re.Pattern[str]] = []


def _patterns() -> list[re.Pattern[str]]:
    """[tag, old token]: compiled when a sweep first needs them, so that start-up compiles no regex."""
    if not _compiled:
        import re

        _compiled.extend((re.compile(_TAG_PATTERN), re.compile(_OLD_TOKEN_PATTERN)))
    return _compiled


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def _sha256_hex(data: bytes) -> str:
    """SHA-256 from the interpreter's own module: hashlib would load OpenSSL for two short hashes."""
    import importlib

    for name in ("_sha2", "_sha256"):  # 3.12 and later; 3.11
        try:
            return str(importlib.import_module(name).sha256(data).hexdigest())
        except ImportError:
            continue
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _ident() -> tuple[str, str]:
    """(host, boot) parts of this process's tags."""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    host = _sha256_hex(f"{os.uname().nodename}\0{pid_ns}".encode())[:8]
    boot_id = _read_text("/proc/sys/kernel/random/boot_id")
    boot = _sha256_hex(boot_id.encode())[:8] if boot_id else "00000000"
    return host, boot


# [(host, boot)] and [owner prefix], worked out on first use: a command that writes nothing pays nothing.
_IDENT: list[tuple[str, str]] = []
_OWNER: list[str] = []


def _host_boot() -> tuple[str, str]:
    if not _IDENT:
        _IDENT.append(_ident())
    return _IDENT[0]


def _owner() -> str:
    if not _OWNER:
        host, boot = _host_boot()
        _OWNER.append(f"dsy{host}{boot}-{os.getpid()}-")
    return _OWNER[0]


os.register_at_fork(after_in_child=_OWNER.clear)


def owner_tag() -> str:
    """A fresh tag naming this process as the owner (a forked child names itself, not its parent)."""
    return owner_tags(1)[0]


def owner_tags(count: int) -> list[str]:
    """``count`` fresh tags at the cost of one: a batch of chunk files needs a temp name each."""
    owner = _owner()
    noise = os.urandom(4 * count).hex()
    return [owner + noise[8 * i:8 * i + 8] for i in range(count)]


def temp_beside(path: str) -> str:
    """The temp path for writing ``path``: hidden, in the same directory, tagged with its owner."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{owner_tag()}{TMP_SUFFIX}")


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def owner_gone(token: str, mtime: float, now: float) -> bool:
    """Whether a temp whose name carries ``token`` (and was last modified at ``mtime``) is a leftover."""
    m = _patterns()[0].fullmatch(token)
    host, boot = _host_boot()
    if m is not None and m.group(1) == host and boot != "00000000":
        if m.group(2) != boot:
            return True
        pid = int(m.group(3))
        return pid != os.getpid() and not _pid_exists(pid)
    return now - mtime > STALE_AFTER


def remove_leftover(path: str) -> bool:
    """Remove a leftover file or tree (never following symlinks); False if it is already gone."""
    try:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            import shutil

            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def sweep_beside(path: str) -> int:
    """Remove the leftover temps of earlier writes of ``path``; returns how many.

    Only names this module makes for ``path`` (and the untagged
    ``.<name>.<12 hex>.tmp`` of older desync versions) are considered; a
    failure to list or remove is ignored (the write itself reports real
    problems).
    """
    directory, name = os.path.split(os.path.abspath(path))
    head = f".{name}."
    now = time.time()
    removed = 0
    try:
        with os.scandir(directory) as entries:
            candidates = [e for e in entries if e.name.startswith(head) and e.name.endswith(TMP_SUFFIX)]
    except OSError:
        return 0
    tag, old_token = _patterns()
    for entry in candidates:
        token = entry.name[len(head):-len(TMP_SUFFIX)]
        if tag.fullmatch(token) is None and old_token.fullmatch(token) is None:
            continue
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
            if owner_gone(token, mtime, now) and remove_leftover(entry.path):
                removed += 1
        except OSError:
            continue
    return removed
