"""Starting ssh for ``ssh://`` and ``sftp://`` stores, safely.

A store URL ends up on an ssh command line and, for ``ssh://``, inside the
command the remote shell runs, so every part is checked before use: the
host and user can never become ssh options (nothing starting with ``-``,
no spaces, quotes or control characters) and the path is single-quoted for
the remote shell.  ``CASYNC_SSH_PATH`` and ``CASYNC_REMOTE_PATH`` work as
for casync and the Go desync (docs/protocol.md 1.1, 1.2).
"""

import os
import re
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Final

from ..errors import InvalidArgument, StoreError
from ..peertext import peer_text
from .stream import prepare_pipe

_NAME: Final = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")
_HOST: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_IPV6: Final = re.compile(r"[0-9A-Fa-f:.]+")
_STDERR_TAIL: Final = 4096
# How long a terminated ssh gets to exit before it is killed.
_TERM_GRACE: Final = 0.5


@dataclass(frozen=True, slots=True)
class RemoteTarget:
    """Where an ``ssh://`` or ``sftp://`` location points."""

    user: str
    host: str
    port: int
    path: str

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def parse_remote_url(location: str, scheme: str) -> RemoteTarget:
    """Split and validate ``scheme://[USER@]HOST[:PORT]/PATH``; InvalidArgument names what is wrong."""
    for c in location:
        if ord(c) < 0x20 or ord(c) == 0x7F:
            raise InvalidArgument(f"store location {location!r} contains a control character")
    try:
        url = urllib.parse.urlsplit(location)
        port = url.port or 0
    except ValueError as exc:
        raise InvalidArgument(f"invalid {scheme} location {location!r}: {exc}") from None
    if url.scheme.lower() != scheme:
        raise InvalidArgument(f"not an {scheme}:// location: {location!r}")
    if url.query or url.fragment or location.endswith(("?", "#")):
        raise InvalidArgument(f"{scheme} location {location!r} must not have a query or fragment")
    if url.password is not None:
        raise InvalidArgument(f"{scheme} location {location!r} must not contain a password (use ssh keys)")
    user = urllib.parse.unquote(url.username or "")
    if user and not _NAME.fullmatch(user):
        raise InvalidArgument(f"invalid user name {user!r} in {location!r}")
    host = url.hostname or ""
    netloc_host = url.netloc.rpartition("@")[2]
    if netloc_host.startswith("["):
        if not _IPV6.fullmatch(host):
            raise InvalidArgument(f"invalid host {host!r} in {location!r}")
    elif not _HOST.fullmatch(host):
        raise InvalidArgument(f"invalid host {host!r} in {location!r}" if host else f"no host in {location!r}")
    path = urllib.parse.unquote(url.path)
    if not path.startswith("/") or path == "/":
        raise InvalidArgument(f"{scheme} location {location!r} needs an absolute path after the host")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise InvalidArgument(f"the path of {location!r} contains a control character")
    return RemoteTarget(user, host, port, path)


def shell_quote(text: str) -> str:
    """POSIX single quotes; each embedded quote becomes '\\'' (what the Go desync does)."""
    return "'" + text.replace("'", "'\\''") + "'"


def ssh_program() -> str:
    return os.environ.get("CASYNC_SSH_PATH") or "ssh"


def remote_program() -> str:
    """The remote command; it may carry arguments (``python3 -m desync``), so it is not quoted."""
    return os.environ.get("CASYNC_REMOTE_PATH") or "casync"


def pull_command(target: RemoteTarget) -> list[str]:
    """ssh argv running ``casync pull - - - 'PATH'`` remotely, in the Go desync's form."""
    port = ["-p", str(target.port)] if target.port else []
    return [ssh_program(), *port, "--", target.destination,
            f"{remote_program()} pull - - - {shell_quote(target.path)}"]


def sftp_command(target: RemoteTarget) -> list[str]:
    port = ["-p", str(target.port)] if target.port else []
    return [ssh_program(), *port, "-s", "--", target.destination, "sftp"]


class SSHProcess:
    """An ssh child with binary pipes; its stderr is kept (the tail) to explain failures."""

    def __init__(self, argv: list[str], label: str) -> None:
        self.label = label
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0)
        except OSError as exc:
            raise StoreError(f"{label}: cannot run {argv[0]}: {exc.strerror}") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        self.in_fd = self.proc.stdout.fileno()
        self.out_fd = self.proc.stdin.fileno()
        prepare_pipe(self.in_fd)
        prepare_pipe(self.out_fd)
        self.err_tail = b""
        self.err_lock = threading.Lock()
        self.err_thread = threading.Thread(target=self._drain_stderr, name="desync-ssh-stderr", daemon=True)
        self.err_thread.start()

    def _drain_stderr(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        while True:
            try:
                block = stream.read(4096)
            except (OSError, ValueError):
                return
            if not block:
                return
            with self.err_lock:
                self.err_tail = (self.err_tail + block)[-_STDERR_TAIL:]

    def explain(self) -> str:
        """The ssh/remote error output, last line first: usually the reason it failed."""
        self.err_thread.join(timeout=1.0)
        with self.err_lock:
            lines = [ln.strip() for ln in self.err_tail.decode("utf-8", "replace").splitlines() if ln.strip()]
        code = self.proc.poll()
        status = f" (exit status {code})" if code not in (None, 0) else ""
        return (peer_text(lines[-1]) if lines else "no error output") + status

    def close_input(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None:
            try:
                stdin.close()
            except OSError:
                pass

    def close_output(self) -> None:
        """Close the pipe we read from; only the thread reading it may call this."""
        stdout = self.proc.stdout
        if stdout is not None:
            try:
                stdout.close()
            except OSError:
                pass

    def stop(self, grace: float) -> None:
        """End and reap the child: up to ``grace`` seconds to exit by itself (0: none), then SIGTERM, then SIGKILL.

        A stalled ssh never reads its closed input, so it is terminated
        rather than waited for; SIGKILL follows after a short moment for one
        that ignores SIGTERM.
        """
        self.close_input()
        if grace > 0:
            try:
                self.proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=_TERM_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def wait(self, grace: float) -> None:
        """Reap the child after our end is closed, killing it when it lingers past ``grace`` seconds."""
        self.close_input()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
