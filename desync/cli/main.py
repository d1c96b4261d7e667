"""The ``desync`` command line: parse, dispatch, and turn failures into one line.

Each command lives in a module with ``register(subparsers)``; the module
adds its parser and sets ``func`` to a function taking the parsed
arguments and returning the exit status.

Start-up time counts for short commands (``--version``, ``list-chunks``,
``info``, the ``pull`` end of an SSH session), so this module imports only
what every run needs: argparse and the argv helpers come with the first
parse, a command's module only when that command runs (``COMMANDS``), and
``desync --version`` as the first argument needs neither.
tests/test_startup.py checks the import graph of those commands.
"""

import importlib
import os
import sys

from ..errors import DesyncError, InvalidArgument, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    import argparse
    from collections.abc import Sequence

# Modules that contribute commands, in --help order.
COMMAND_MODULES = (
    "desync.cli.cmd_blob",
    "desync.cli.cmd_store",
    "desync.cli.cmd_archive",
    "desync.cli.cmd_server",
    "desync.cli.cmd_remote",
    "desync.cli.cmd_mount",
    "desync.cli.cmd_config",
    "desync.cli.cmd_docs",
)


# Command -> the module that registers it, so a run imports only what it needs
# (start-up time counts for short commands).  tests/test_cli_commands.py keeps it in sync.
COMMANDS = {
    "make": "desync.cli.cmd_blob",
    "extract": "desync.cli.cmd_blob",
    "cat": "desync.cli.cmd_blob",
    "chunk": "desync.cli.cmd_blob",
    "list-chunks": "desync.cli.cmd_blob",
    "inspect-chunks": "desync.cli.cmd_blob",
    "info": "desync.cli.cmd_blob",
    "verify-index": "desync.cli.cmd_blob",
    "verify": "desync.cli.cmd_store",
    "chop": "desync.cli.cmd_store",
    "cache": "desync.cli.cmd_store",
    "prune": "desync.cli.cmd_store",
    "tar": "desync.cli.cmd_archive",
    "untar": "desync.cli.cmd_archive",
    "mtree": "desync.cli.cmd_archive",
    "list": "desync.cli.cmd_archive",
    "chunk-server": "desync.cli.cmd_server",
    "index-server": "desync.cli.cmd_server",
    "pull": "desync.cli.cmd_remote",
    "push": "desync.cli.cmd_remote",
    "mount-index": "desync.cli.cmd_mount",
    "config": "desync.cli.cmd_config",
    "completion": "desync.cli.cmd_docs",
    "manpage": "desync.cli.cmd_docs",
}
_GLOBAL_WITH_VALUE = ("--digest", "--config")


def command_name(argv: "Sequence[str]") -> str:
    """The command word of ``argv`` (skipping global options), or "" if there is none."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _GLOBAL_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return ""


def build_parser(argv: "Sequence[str]" = ()) -> "argparse.ArgumentParser":
    """The parser; given ``argv`` of a known command, only that command's module is loaded.

    Without a known command every module registers its commands, for the
    ``--help`` listing and the choices an unknown command is told about.
    """
    from .argv import ArgumentParser, HelpFormatter, OneCommand, VersionAction, add_global_options

    parser = ArgumentParser(
        prog="desync",
        description="casync-compatible content-addressed distribution: chunk files and trees into "
                    "deduplicated stores and rebuild them elsewhere.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction, help="show the version and the active backends, then exit")
    add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    command = command_name(argv)
    wanted = COMMANDS.get(command)
    for name in (wanted,) if wanted else COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        # A known command: its module's other commands get no parser built (start-up time).
        module.register(OneCommand(sub, command) if wanted else sub)
    for choice in sub.choices.values():
        add_global_options(choice, suppress=True)
    return parser


def parse_args(parser: "argparse.ArgumentParser", argv: "Sequence[str]") -> "argparse.Namespace":
    """Parse ``argv``; arguments the command does not know are blamed on the command, not on ``desync``.

    Boolean flags also take the Go tool's ``--flag=true|false`` spelling (see explicit_bools).
    """
    import argparse

    from .argv import explicit_bools

    command = command_name(argv)
    values: dict[str, bool] = {}
    argv = list(argv)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            try:
                argv, values = explicit_bools(action.choices[command], argv)
            except argparse.ArgumentError as bad:
                raise UsageError(f"{bad} (see '{parser.prog} {command} --help')") from None
    args, extra = parser.parse_known_args(argv)
    for dest, value in values.items():
        setattr(args, dest, value)
    if extra:
        named = getattr(args, "command", None)
        prog = f"{parser.prog} {named}" if named else parser.prog
        raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see '{prog} --help')")
    return args


def print_version() -> int:
    """``desync --version``: the version and the backends in use, worked out only when asked for."""
    from ..backends import describe

    sys.stdout.write(describe() + "\n")
    sys.stdout.flush()
    return 0


def _print_traceback() -> None:
    import traceback  # only for --verbose: keeps start-up lean

    traceback.print_exc()


def exit_status(failure: DesyncError, server: bool = False) -> int:
    """The exit status for a library or usage error: 2 for the command line's mistakes, else 1.

    A server invocation (``pull``/``push``) exits 1 for everything, as casync's does.
    """
    if isinstance(failure, (UsageError, InvalidArgument)) and not server:
        return 2
    return 1


def error_line(message: str) -> None:
    sys.stderr.write(f"desync: error: {message}\n")
    sys.stderr.flush()


def main(argv: "Sequence[str] | None" = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    # casync mode: "desync casync VERB ...", or started under the name casync (a symlink).
    casync_mode = (argv is None and invoked_as_casync(sys.argv[0])) or given[:1] == ["casync"]
    if given[:1] == ["casync"]:
        given = given[1:]
    # casync puts server options before the verb and expects status 1 for any server failure.
    server = False
    args_list = given
    verbose = "--verbose" in args_list or "-v" in args_list
    try:
        if given[:1] == ["--version"] and not casync_mode:
            # What argparse does (the option acts before anything after it is looked at), without importing it.
            return print_version()
        from .argv import prepare_argv

        args_list, server = prepare_argv(given)
        from . import stopsignals

        stopsignals.install(command_name(args_list))
        from .._accel import fileio_module

        if fileio_module is not None:
            fileio_module.tune_allocator()
        if casync_mode and not server:
            from . import casync_cli

            return casync_cli.run(args_list)
        parser = build_parser(args_list)
        args = parse_args(parser, args_list)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        status: int = args.func(args)
        return status
    except DesyncError as failure:
        error_line(str(failure))
        if verbose and not isinstance(failure, (UsageError, InvalidArgument)):
            _print_traceback()
        return exit_status(failure, server)
    except KeyboardInterrupt:
        from .stopsignals import received, terminated

        signum = received()
        sys.stderr.write(f"desync: {'terminated' if terminated() else 'interrupted'}\n")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        # Temp files are already removed; worker threads blocked on I/O must not delay the exit.
        os._exit(128 + signum)
    except BrokenPipeError:
        _quiet_stdout()
        return 1
    except OSError as os_error:
        where = f": {os_error.filename}" if os_error.filename else ""
        error_line(f"{os_error.strerror or os_error}{where}")
        if verbose:
            _print_traceback()
        return 1
    except MemoryError:
        error_line("out of memory")
        return 1
    except Exception as bug:  # still one line unless --verbose
        error_line(f"internal error: {type(bug).__name__}: {bug}")
        if verbose:
            _print_traceback()
        return 1


def invoked_as_casync(program: str) -> bool:
    """True when the program was started under the name ``casync`` (a link to desync or its zipapp)."""
    return os.path.basename(program) == "casync"


def _quiet_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so interpreter shutdown does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass

