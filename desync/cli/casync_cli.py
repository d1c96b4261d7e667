"""casync's command line: ``desync casync VERB ...``, or desync started under the name ``casync``.

Options and verbs are those of casync's man page; options may come before
or after the verb, as getopt_long allows.  This module parses them into
:class:`CasyncOptions` and picks the verb; the verbs themselves are in
:mod:`desync.cli.casync_verbs` and call the library.  ``pull`` and ``push``
(the SSH remote end casync starts) go to the regular ``desync pull/push``.
"""

import getopt
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from .. import digest as digest_mod
from ..errors import DesyncError, UsageError
from .casyncsyntax import log_level_value, size_value

PROGRAM: Final = "casync"

_LONG: Final = [
    "help", "version", "log-level=", "verbose", "dry-run", "store=", "extra-store=", "chunk-size=", "seed=",
    "cache=", "cache-auto", "rate-limit-bps=", "with=", "without=", "what=", "exclude-nodump=",
    "exclude-submounts=", "exclude-file=", "undo-immutable=", "delete=", "punch-holes=", "reflink=", "hardlink=",
    "seed-output=", "uid-shift=", "uid-range=", "recursive=", "mkdir=", "digest=", "compression=",
]
_WHAT: Final = ("archive", "archive-index", "blob", "blob-index", "directory")
_COMPRESSIONS: Final = ("zstd", "xz", "gzip")
# casync's chunk size bounds (CA_CHUNK_SIZE_LIMIT_MIN/MAX) and default average.
CHUNK_SIZE_MIN: Final = 1
CHUNK_SIZE_MAX: Final = 128 << 20
DEFAULT_AVG: Final = 64 << 10


@dataclass
class CasyncOptions:
    """Everything casync's getopt loop sets; defaults as casync's."""

    what: str = ""
    log_level: int = 6  # LOG_INFO, casync's default: -v's report shows, debug messages do not
    log_level_given: bool = False
    verbose: bool = False
    dry_run: bool = False
    exclude_nodump: bool = True
    exclude_submounts: bool = False
    exclude_file: bool = True
    reflink: bool = True
    hardlink: bool = False
    punch_holes: bool = True
    delete: bool = True
    undo_immutable: bool = False
    recursive: bool = True
    seed_output: bool = True
    store: str = ""
    extra_stores: list[str] = field(default_factory=list)
    seeds: list[str] = field(default_factory=list)
    cache: str = ""
    cache_auto: bool = False
    chunk_min: int = 0
    chunk_avg: int = 0
    chunk_max: int = 0
    rate_limit: int = 0
    with_features: list[str] = field(default_factory=list)
    without_features: list[str] = field(default_factory=list)
    uid_shift: int = 0
    uid_range: int = 0x10000
    uid_shift_apply: bool = False
    mkdir: bool = True
    digest: digest_mod.Digest = digest_mod.DEFAULT
    compression: str = "zstd"

    def chunk_sizes(self) -> tuple[int, int, int]:
        """(min, avg, max) in bytes: casync derives min and max from the average (avg/4, avg*4)."""
        avg = self.chunk_avg or DEFAULT_AVG
        return (self.chunk_min or max(CHUNK_SIZE_MIN, avg // 4), avg, self.chunk_max or min(CHUNK_SIZE_MAX, avg * 4))


def parse_boolean(text: str, option: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "yes", "y", "true", "t", "on"):
        return True
    if low in ("0", "no", "n", "false", "f", "off"):
        return False
    raise UsageError(f"failed to parse --{option}= parameter: {text}")


def parse_size(text: str, what: str) -> int:
    """casync's size syntax: a number with an optional B/K/M/G/T/P/E suffix (powers of 1024)."""
    size = size_value(text)
    if size is None:
        raise UsageError(f"cannot parse {what}: {text}")
    return size


def parse_chunk_size(text: str, opts: CasyncOptions) -> None:
    """``--chunk-size=AVG`` or ``MIN:AVG:MAX`` in bytes (casync accepts one value or all three)."""
    parts = text.split(":")
    if len(parts) == 1:
        avg = parse_size(parts[0], "average chunk size")
        if not CHUNK_SIZE_MIN <= avg <= CHUNK_SIZE_MAX:
            raise UsageError(f"average chunk size must be between {CHUNK_SIZE_MIN} and {CHUNK_SIZE_MAX}")
        opts.chunk_min, opts.chunk_avg, opts.chunk_max = 0, avg, 0
        return
    if len(parts) != 3:
        raise UsageError("--chunk-size= requires either a single average chunk size or a triplet of minimum, "
                         "average and maximum chunk size")
    lo, avg, hi = (parse_size(p, "chunk size") for p in parts)
    if lo < CHUNK_SIZE_MIN or not lo <= avg <= hi or hi > CHUNK_SIZE_MAX:
        raise UsageError(f"invalid chunk sizes {text}: need {CHUNK_SIZE_MIN} <= min <= avg <= max <= "
                         f"{CHUNK_SIZE_MAX}")
    opts.chunk_min, opts.chunk_avg, opts.chunk_max = lo, avg, hi


LOG_ERR: Final = 3
LOG_WARNING: Final = 4
LOG_INFO: Final = 6
LOG_DEBUG: Final = 7
# casync reads its level from here at start and sets it for the programs it starts (ssh, protocol helpers).
LOG_LEVEL_ENV: Final = "CASYNC_LOG_LEVEL"


def _log_level(text: str) -> int:
    level = log_level_value(text)
    if level is None:
        raise UsageError(f"failed to parse log level \"{text}\"")
    return level


def _digest(text: str) -> digest_mod.Digest:
    if text == "default":
        return digest_mod.DEFAULT
    if text in (digest_mod.SHA512_256_NAME, digest_mod.SHA256_NAME):
        return digest_mod.by_name(text)
    raise UsageError(f"failed to parse --digest= parameter: {text}")


def _uid(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) < 0xFFFFFFFF else None


def parse_args(argv: Sequence[str]) -> tuple[CasyncOptions, list[str]] | None:
    """(options, verb and its arguments); None when --help/--version already answered."""
    opts = CasyncOptions()
    if os.environ.get("CASYNC_VERBOSE", "").lower() in ("1", "yes", "true", "on"):
        opts.verbose = True
    inherited = log_level_value(os.environ.get(LOG_LEVEL_ENV, ""))
    if inherited is not None:
        opts.log_level = inherited
    try:
        pairs, rest = getopt.gnu_getopt(list(argv), "hl:vnc", _LONG)
    except getopt.GetoptError as exc:
        raise UsageError(f"{exc.msg} (see '{PROGRAM} --help')") from None
    for name, value in pairs:
        key = name.lstrip("-")
        if key in ("h", "help"):
            sys.stdout.write(usage())
            return None
        if key == "version":
            from .._version import __version__

            sys.stdout.write(f"{PROGRAM} (desync {__version__})\n")
            return None
        _apply(opts, key, value)
    return opts, rest


def _apply(opts: CasyncOptions, key: str, value: str) -> None:
    booleans = {"exclude-nodump": "exclude_nodump", "exclude-submounts": "exclude_submounts",
                "exclude-file": "exclude_file", "undo-immutable": "undo_immutable", "delete": "delete",
                "punch-holes": "punch_holes", "reflink": "reflink", "hardlink": "hardlink",
                "seed-output": "seed_output", "recursive": "recursive", "mkdir": "mkdir"}
    if key in booleans:
        setattr(opts, booleans[key], parse_boolean(value, key))
    elif key in ("l", "log-level"):
        opts.log_level = _log_level(value)
        opts.log_level_given = True
    elif key in ("v", "verbose"):
        opts.verbose = True
    elif key in ("n", "dry-run"):
        opts.dry_run = True
    elif key in ("c", "cache-auto"):
        opts.cache_auto = True
    elif key == "store":
        opts.store = value
    elif key == "extra-store":
        opts.extra_stores.append(value)
    elif key == "chunk-size":
        parse_chunk_size(value, opts)
    elif key == "seed":
        opts.seeds.append(value)
    elif key == "cache":
        opts.cache = value
    elif key == "rate-limit-bps":
        opts.rate_limit = parse_size(value, "rate limit")
        if opts.rate_limit == 0:
            raise UsageError("rate limit size cannot be zero")
    elif key in ("with", "without"):
        _feature(opts, key, value)
    elif key == "what":
        if value == "help":
            sys.stdout.write("Allowed --what= selectors:\n" + "".join(f"{w}\n" for w in _WHAT))
            raise SystemExit(0)
        if value not in _WHAT:
            raise UsageError(f"failed to parse --what= selector: {value}")
        opts.what = value
    elif key == "uid-shift":
        uid = _uid(value)
        if uid is None:
            opts.uid_shift_apply = parse_boolean(value, key)
        else:
            opts.uid_shift, opts.uid_shift_apply = uid, True
    elif key == "uid-range":
        n = int(value) if value.isdigit() else 0
        if not 1 <= n <= 0x100000000:
            opts.uid_shift_apply = parse_boolean(value, key)
        else:
            opts.uid_range = n & 0xFFFFFFFF
            opts.uid_shift_apply = True
    elif key == "digest":
        opts.digest = _digest(value)
    elif key == "compression":
        name = "zstd" if value == "default" else value
        if name not in _COMPRESSIONS:
            raise UsageError(f"failed to parse --compression= parameter: {value}")
        opts.compression = name


def _feature(opts: CasyncOptions, key: str, value: str) -> None:
    from .. import featureflags as ff

    if value == "help":
        sys.stdout.write("Supported --with= and --without= flags:\n"
                         + "".join(f"{n}\n" for n, bits in ff.NAMES.items() if bits & (bits - 1) == 0))
        raise SystemExit(0)
    if value not in ff.NAMES:
        raise UsageError(f"failed to parse --{key}= feature flag: {value}")
    (opts.with_features if key == "with" else opts.without_features).append(value)


def usage() -> str:
    return (f"{PROGRAM} [OPTIONS...] make [ARCHIVE|ARCHIVE_INDEX|BLOB_INDEX] [PATH]\n"
            f"{PROGRAM} [OPTIONS...] extract [ARCHIVE|ARCHIVE_INDEX|BLOB_INDEX] [PATH] [SUBTREE]\n"
            f"{PROGRAM} [OPTIONS...] list [ARCHIVE|ARCHIVE_INDEX|DIR] [PATH]\n"
            f"{PROGRAM} [OPTIONS...] mtree [ARCHIVE|ARCHIVE_INDEX|DIR] [PATH]\n"
            f"{PROGRAM} [OPTIONS...] stat [ARCHIVE|ARCHIVE_INDEX|DIR] [PATH]\n"
            f"{PROGRAM} [OPTIONS...] digest [ARCHIVE|BLOB|ARCHIVE_INDEX|BLOB_INDEX|DIR] [PATH]\n"
            f"{PROGRAM} [OPTIONS...] mount [ARCHIVE|ARCHIVE_INDEX] PATH\n"
            f"{PROGRAM} [OPTIONS...] gc BLOB_INDEX|ARCHIVE_INDEX...\n"
            "\n"
            "casync-compatible mode of desync: the verbs and options of casync(1).\n"
            "Options: -h --help, --version, -l --log-level=LEVEL, -v --verbose, -n --dry-run,\n"
            "  --store=PATH, --extra-store=PATH, --chunk-size=[MIN:]AVG[:MAX], --digest=DIGEST,\n"
            "  --compression=zstd|xz|gzip, --seed=PATH, --cache=PATH, -c --cache-auto,\n"
            "  --rate-limit-bps=LIMIT, --exclude-nodump=no, --exclude-submounts=yes, --exclude-file=no,\n"
            "  --reflink=no, --hardlink=yes, --punch-holes=no, --delete=no, --undo-immutable=yes,\n"
            "  --seed-output=no, --recursive=no, --mkdir=no, --uid-shift=yes|SHIFT, --uid-range=RANGE,\n"
            "  --what=archive|archive-index|blob|blob-index|directory|help, --with=FEATURE, --without=FEATURE\n"
            "mkdev and udev (NBD block devices) are not offered.\n")


VERBS: Final = ("make", "extract", "list", "mtree", "stat", "digest", "mount", "gc")


def run(argv: Sequence[str]) -> int:
    """casync's command line; ``argv`` without the program name."""
    parsed = parse_args(argv)
    if parsed is None:
        return 0
    opts, rest = parsed
    if not rest:
        raise UsageError(f"no verb given (see '{PROGRAM} --help')")
    verb, args = rest[0], rest[1:]
    if opts.log_level_given:
        # As casync, the programs we start (ssh and the remote end behind it) get the level too.
        os.environ[LOG_LEVEL_ENV] = str(opts.log_level)
    if verb in ("mkdev", "udev"):
        raise UsageError(f"'{verb}' (NBD block devices) is out of scope for desync's casync mode; "
                         "use 'mount' or 'extract' instead")
    if verb not in VERBS:
        raise UsageError(f"unknown verb '{verb}' (see '{PROGRAM} --help')")
    from . import casync_verbs

    handler: Callable[[CasyncOptions, list[str]], int] = getattr(casync_verbs, f"verb_{verb}")
    try:
        return handler(opts, args)
    except DesyncError as failure:
        # Reported here rather than by main: -v is casync's report switch, not a request for tracebacks,
        # and below "err" casync prints no error message at all (the exit status still tells).
        from . import main

        casync_verbs.failed(opts, failure)
        if opts.log_level >= LOG_ERR:
            main.error_line(str(failure))
        return main.exit_status(failure)
    finally:
        casync_verbs.SPINNER.stop()
