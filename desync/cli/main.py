"""The ``desync`` command line: parse, dispatch, and turn failures into one line.

Each command lives in a module with ``register(subparsers)``; the module
adds its parser and sets ``func`` to a function taking the parsed
arguments and returning the exit status.
"""

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from .._version import __version__
from ..errors import DesyncError, UsageError
from .common import HelpFormatter, add_global_options

# Modules that contribute commands, in --help order.
COMMAND_MODULES = (
    "desync.cli.cmd_blob",
    "desync.cli.cmd_store",
    "desync.cli.cmd_archive",
    "desync.cli.cmd_server",
    "desync.cli.cmd_remote",
    "desync.cli.cmd_mount",
    "desync.cli.cmd_config",
)


class ArgumentParser(argparse.ArgumentParser):
    """Usage errors as one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="desync",
        description="casync-compatible content-addressed distribution: chunk files and trees into "
                    "deduplicated stores and rebuild them elsewhere.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"desync {__version__}")
    add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    for choice in sub.choices.values():
        add_global_options(choice, suppress=True)
    return parser


def _error(message: str) -> None:
    sys.stderr.write(f"desync: error: {message}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args_list or "-v" in args_list
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        status: int = args.func(args)
        return status
    except UsageError as exc:
        _error(str(exc))
        return 2
    except DesyncError as exc:
        _error(str(exc))
        if verbose:
            traceback.print_exc()
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("desync: interrupted\n")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        # Temp files are already removed; worker threads blocked on I/O must not delay the exit.
        os._exit(130)
    except BrokenPipeError:
        _quiet_stdout()
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where}")
        if verbose:
            traceback.print_exc()
        return 1
    except MemoryError:
        _error("out of memory")
        return 1
    except Exception as exc:  # a bug: still one line unless --verbose
        _error(f"internal error: {type(exc).__name__}: {exc}")
        if verbose:
            traceback.print_exc()
        return 1


def _quiet_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so interpreter shutdown does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass

