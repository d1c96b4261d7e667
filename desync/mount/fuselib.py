"""Loading the FUSE binding (mfusepy, else fusepy) and serving a mount until it is unmounted.

The binding is optional (``pip install mfusepy``) and imported only
here, when a mount is made.  :func:`serve` runs libfuse's loop in the
foreground; libfuse handles SIGINT, SIGTERM and SIGHUP by leaving the loop
and unmounting, after which :func:`serve` returns normally.

After an unmount or a stop signal libfuse waits for every request being
served, so one read stuck in a store (a peer that never answers) would
keep the command alive (and, after a signal, mounted) for ever:
:class:`UnmountWatch` notices either and, when libfuse has not returned
shortly after, unmounts if needed, cleans up and ends the process.
"""

import ctypes
import errno
import importlib
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from ctypes.util import find_library
from types import ModuleType
from typing import Any, Final

from ..errors import DesyncError
from .fs import MountOperations

# Attribute/entry caching: the content never changes while mounted.
CACHE_SECONDS = 3600.0
FSTYPE: Final = b"fuse.desync"
# How often the mount table is looked at, and how long libfuse may take to return after an unmount.
WATCH_INTERVAL: Final = 0.25
UNMOUNT_GRACE: Final = 3.0


def load_library() -> ModuleType:
    """The FUSE binding: mfusepy, or fusepy (module ``fuse``) when mfusepy is absent.

    mfusepy takes libfuse 2 when both are installed (casync pulls it in), but
    unprivileged libfuse 2 mounts need the v2 ``fusermount``, which the
    ``fuse3`` package replaces: so libfuse 3 is chosen unless
    ``FUSE_LIBRARY_NAME`` says otherwise.
    """
    if find_library("fuse3"):
        os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    missing_lib = ""
    for name in ("mfusepy", "fuse"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        except OSError as lib_error:
            # The binding is there but libfuse is not (the bindings raise this at import).
            missing_lib = str(lib_error)
            continue
        if hasattr(module, "FUSE"):
            return module
    if missing_lib:
        raise DesyncError(f"libfuse not found ({missing_lib}); install it (apt-get install fuse3)")
    raise DesyncError("mounting needs the mfusepy package: pip install mfusepy")


def check_environment(mountpoint: str) -> None:
    """Fail with one clear line where libfuse would fail with several."""
    if not os.path.exists("/dev/fuse"):
        raise DesyncError("/dev/fuse is missing: this system cannot mount FUSE file systems")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise DesyncError("no permission to use /dev/fuse")
    if os.geteuid() != 0 and not (shutil.which("fusermount3") or shutil.which("fusermount")):
        raise DesyncError("fusermount3 is missing (apt-get install fuse3)")
    if not os.path.isdir(mountpoint):
        what = "is not a directory" if os.path.exists(mountpoint) else "does not exist"
        raise DesyncError(f"mount point {mountpoint} {what}")


def _fusepy_operations(ops: object) -> object:
    """fusepy calls ``operations(name, *args)``; mfusepy looks methods up by name, which this keeps working."""

    def call(self: object, op: str, *args: Any) -> Any:
        method = getattr(ops, op, None)
        if method is None:
            raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
        return method(*args)

    names = [n for n in dir(ops) if not n.startswith("_")]
    members: dict[str, Any] = {n: getattr(ops, n) for n in names}
    members["__call__"] = call
    members["use_ns"] = True
    return type("Operations", (), members)()


def is_mounted(path: str) -> bool:
    """Whether a desync FUSE file system is mounted at ``path`` (an absolute, resolved path).

    Read from /proc/self/mountinfo, not by a stat of the mount point: that
    would be a request to this very process, and could wait behind the
    stuck reads this check exists for.
    """
    wanted = os.fsencode(path)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields, _, rest = line.partition(b" - ")
            parts = fields.split(b" ")
            if len(parts) > 4 and _unescape(parts[4]) == wanted and rest.split(b" ", 1)[0] == FSTYPE:
                return True
    return False


def _unescape(field: bytes) -> bytes:
    """mountinfo writes space, tab, newline and backslash in paths as three octal digits after a backslash."""
    if b"\\" not in field:
        return field
    out = bytearray()
    i = 0
    while i < len(field):
        if field[i] == 0x5C and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8) & 0xFF)
            i += 4
        else:
            out.append(field[i])
            i += 1
    return bytes(out)


class _Session:
    """libfuse 3's session as mfusepy loads it: whether libfuse took a stop signal, and its unmount.

    Inert with another binding or libfuse 2 (then only an unmount is noticed).
    """

    def __init__(self, library: ModuleType) -> None:
        lib: Any = getattr(library, "_libfuse", None)
        self.lib: Any = lib if getattr(library, "fuse_version_major", 0) == 3 else None
        self.fuse: Any = None
        self.session: Any = None

    def capture(self) -> None:
        """Called while serving a request (init), when the request's context names the fuse instance."""
        if self.lib is None:
            return
        try:
            fuse = ctypes.c_void_p(self.lib.fuse_get_context().contents.fuse)
            get_session = self.lib["fuse_get_session"]  # an object of our own: its types are set here only
            get_session.restype = ctypes.c_void_p
            get_session.argtypes = [ctypes.c_void_p]
            self.session = ctypes.c_void_p(get_session(fuse))
            self.fuse = fuse
        except (AttributeError, ValueError, OSError):
            self.session = None

    def exited(self) -> bool:
        return self.session is not None and bool(self.lib["fuse_session_exited"](self.session))

    def unmount(self) -> None:
        if self.fuse is not None:
            self.lib["fuse_unmount"](self.fuse)


class UnmountWatch:
    """Ends the process when the mount is gone or libfuse was stopped, but libfuse does not return.

    That happens when a request libfuse waits for is stuck.  The mount is
    then unmounted (after a signal) and ``cleanup`` runs (what the command
    would do after a normal return); the process exits with status 0, as
    after any unmount.
    """

    def __init__(self, library: ModuleType, mountpoint: str, cleanup: Callable[[], None]) -> None:
        self.path = os.path.realpath(mountpoint)
        self.cleanup = cleanup
        self.session = _Session(library)
        self.returned = threading.Event()

    def start(self) -> None:
        """Called from init, in a thread serving a request."""
        self.session.capture()
        threading.Thread(target=self._watch, name="desync-unmount-watch", daemon=True).start()

    def _watch(self) -> None:
        seen = False
        while True:
            if self.returned.wait(WATCH_INTERVAL):
                return
            if self.session.exited():
                stopped = True
                break
            try:
                mounted = is_mounted(self.path)
            except OSError:
                mounted = True  # no mount table to look at: only a stop is noticed
            if seen and not mounted:
                stopped = False
                break
            seen = seen or mounted
        if self.returned.wait(UNMOUNT_GRACE):
            return
        try:
            if stopped:
                self.session.unmount()
            self.cleanup()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


def serve(library: ModuleType, ops: MountOperations, mountpoint: str, fsname: str,
          cleanup: Callable[[], None] | None = None) -> None:
    """Mount ``ops`` read-only at ``mountpoint`` and serve requests until unmounted.

    Until the mount is up, libfuse's stderr goes to a temp file: a failure
    then becomes one error line with libfuse's reason, and the noise libfuse
    3.14 prints on every start is dropped.  Stopped by a signal, libfuse
    reports a failure although it unmounted cleanly; a mount that had
    started counts as a success.  ``cleanup`` is what the caller does after
    this returns; it is run here instead when libfuse does not return
    after an unmount (see :class:`UnmountWatch`), and must be safe to run twice.
    """
    options: dict[str, Any] = {
        "foreground": True,
        "ro": True,
        "fsname": fsname,
        "subtype": "desync",
        "kernel_cache": True,
        "use_ino": True,
        "attr_timeout": CACHE_SECONDS,
        "entry_timeout": CACHE_SECONDS,
        "negative_timeout": CACHE_SECONDS,
    }
    target = ops if library.__name__ == "mfusepy" else _fusepy_operations(ops)
    capture = tempfile.TemporaryFile()
    saved = os.dup(2)
    os.dup2(capture.fileno(), 2)
    watch = UnmountWatch(library, mountpoint, cleanup or _nothing)

    def started() -> None:
        os.dup2(saved, 2)
        watch.start()

    ops.on_start = started
    try:
        library.FUSE(target, mountpoint, **options)
    except RuntimeError:
        if not ops.started:
            os.dup2(saved, 2)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines()
            reason = "; ".join(line.strip() for line in lines if line.strip() and "max threads" not in line)
            raise DesyncError(f"cannot mount {mountpoint}: {reason or 'libfuse failed'}") from None
    finally:
        watch.returned.set()
        os.dup2(saved, 2)
        os.close(saved)
        capture.close()


def _nothing() -> None:
    pass
