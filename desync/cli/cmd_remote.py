"""``desync pull`` / ``desync push``: the remote end of an SSH session (docs/protocol.md 1.3).

casync runs ``$CASYNC_REMOTE_PATH [--log-level=N] [--rate-limit-bps=N] pull
BASE ARCHIVE INDEX WSTORE [RSTORE...]`` on the remote host, the Go desync
``... pull - - - STORE``.  casync puts its options before the verb;
:func:`desync.cli.argv.prepare_argv` moves them behind it.  The session
itself is :mod:`desync.server.remote`.
"""

from __future__ import annotations

import argparse
import os

from .. import digest as digest_mod
from ..errors import DesyncError, UsageError
from ..server.remote import LOG_INFO, ServerConfig, serve
from .casyncsyntax import log_level_value, size_value

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Any, Final



def log_level(text: str) -> int:
    level = log_level_value(text, lenient=True)
    if level is not None:
        return level
    raise argparse.ArgumentTypeError(f"invalid log level {text!r} (0-7 or emerg..debug)")


def byte_rate(text: str) -> int:
    """casync's size syntax: a number with an optional B/K/M/G/T/P/E suffix (powers of 1024)."""
    rate = size_value(text)
    if rate is None:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r} (bytes per second, e.g. 1048576 or 1M)")
    return rate


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    for verb, what in (("pull", "serve chunks, an index or an archive"),
                       ("push", "receive an index or archive and its chunks")):
        p = sub.add_parser(
            verb, help=f"SSH remote end: {what} on stdin/stdout",
            description=f"The remote end of an SSH session (what casync's '{verb}' does): {what} over the "
                        "casync protocol on stdin/stdout. casync and desync clients start it through ssh; "
                        "set CASYNC_REMOTE_PATH=desync on the client. Arguments given as '-' are absent; "
                        "WSTORE and RSTOREs are local store directories.")
        p.add_argument("--log-level", type=log_level, default=LOG_INFO, metavar="LEVEL",
                       help="stderr verbosity, 0-7 or emerg..debug (default info)")
        p.add_argument("--rate-limit-bps", type=byte_rate, default=0, metavar="N",
                       help="limit what is sent to N bytes per second")
        p.add_argument("--verify", action="store_true",
                       help="check chunks against their IDs before sending, as casync does (clients verify "
                            "anyway; a corrupt chunk is then reported missing)")
        p.add_argument("base", metavar="BASE", help="must be '-'")
        p.add_argument("archive", metavar="ARCHIVE", help="archive file (.catar) or '-'")
        p.add_argument("index", metavar="INDEX", help="index file (.caibx/.caidx) or '-'")
        p.add_argument("write_store", metavar="WSTORE", help="store directory or '-'")
        p.add_argument("read_stores", metavar="RSTORE", nargs="*", help="further store directories")
        p.set_defaults(func=run_server, verb=verb)


def _given(value: str) -> str:
    return "" if value in ("-", "") else value


def config_from(args: argparse.Namespace) -> ServerConfig:
    verb: str = args.verb
    if _given(args.base):
        raise DesyncError(f"{verb} {'from' if verb == 'pull' else 'to'} a base is not supported")
    config = ServerConfig(
        verb=verb, archive=_given(args.archive), index=_given(args.index), write_store=_given(args.write_store),
        read_stores=[s for s in args.read_stores if _given(s)], digest=digest_mod.by_name(args.digest),
        log_level=args.log_level, rate_limit=args.rate_limit_bps, verify=args.verify)
    if not config.flags():
        raise DesyncError("nothing to do: no archive, index or store given")
    return config


def run_server(args: argparse.Namespace) -> int:
    config = config_from(args)
    in_fd, out_fd = _protocol_descriptors()
    try:
        serve(config, in_fd, out_fd)
    finally:
        os.close(in_fd)
        os.close(out_fd)
    return 0


def _protocol_descriptors() -> tuple[int, int]:
    """Take over stdin/stdout for the protocol; stray prints then go to stderr, not into the stream."""
    try:
        in_fd = os.dup(0)
        out_fd = os.dup(1)
        os.dup2(2, 1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    except OSError as exc:
        raise UsageError(f"stdin and stdout must be open for the protocol: {exc.strerror}") from None
    return in_fd, out_fd
