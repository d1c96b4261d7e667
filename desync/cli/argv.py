"""What ``main`` needs before it knows the command: global options, help layout, server argv order.

Kept apart from the command modules so that starting ``desync`` imports
nothing of the library until the command is known.  Every failure of a
server invocation (``pull``/``push``) exits with status 1, as casync's does.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from collections.abc import Sequence
    from typing import Any, Final, NoReturn

SERVER_VERBS: Final = ("pull", "push")
_SERVER_OPTIONS: Final = ("--log-level", "--rate-limit-bps", "--verify")
# Global options that take a separate value, so the verb search can skip the value.
_VALUED_GLOBALS: Final = ("--digest", "--config")


def help_width() -> int:
    """The width argparse would pick (``$COLUMNS``, else the terminal's, else 80; less 2), worked out here:
    argparse imports shutil for it, with bz2 and lzma, on every parser built (start-up time)."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


def _with_width(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    if len(args) < 3 and kwargs.get("width") is None:
        kwargs["width"] = help_width()
    return kwargs


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped descriptions as written."""

    def __init__(self, prog: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(prog, *args, **_with_width(args, kwargs))


class PlainHelpFormatter(argparse.HelpFormatter):
    """argparse's own layout (the commands' parsers), with the width from :func:`help_width`."""

    def __init__(self, prog: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(prog, *args, **_with_width(args, kwargs))


class ArgumentParser(argparse.ArgumentParser):
    """Usage errors as one line, exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _Unchosen(argparse.ArgumentParser):
    """Stands in for the parser of a command that is not running: takes its options and builds nothing."""

    def __init__(self) -> None:  # argparse's own set-up is the cost this saves
        pass

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def add_mutually_exclusive_group(self, **kwargs: Any) -> Any:
        return self

    def set_defaults(self, **kwargs: Any) -> None:
        pass


class OneCommand:
    """What a command module's ``register()`` gets when one of its commands runs: the subparsers action,
    building the parser of that command only (a module registers several, each with a dozen options)."""

    def __init__(self, sub: argparse._SubParsersAction[Any], chosen: str) -> None:
        self.sub = sub
        self.chosen = chosen

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name != self.chosen and self.chosen not in kwargs.get("aliases", ()):
            return _Unchosen()
        parser: argparse.ArgumentParser = self.sub.add_parser(name, **kwargs)
        return parser


class VersionAction(argparse.Action):
    """``--version`` after other options (``desync --version`` alone never gets here: see cli.main.main)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[object] | None, option_string: str | None = None) -> None:
        from ..backends import describe

        sys.stdout.write(describe() + "\n")
        parser.exit()


def add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options valid before or after the command name (like the Go tool's persistent flags)."""
    default: object = argparse.SUPPRESS if suppress else None
    parser.add_argument("--digest", default=argparse.SUPPRESS if suppress else "sha512-256",
                        help="digest for new chunk IDs: sha512-256 (default) or sha256")
    parser.add_argument("--config", default=default, metavar="FILE",
                        help="config file (default $HOME/.config/desync/config.json)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        default=argparse.SUPPRESS if suppress else False, help="more detail on errors")


_TRUE: Final = ("1", "t", "T", "TRUE", "true", "True")
_FALSE: Final = ("0", "f", "F", "FALSE", "false", "False")


def explicit_bools(parser: argparse.ArgumentParser, args: Sequence[str]) -> tuple[list[str], dict[str, bool]]:
    """Take out the Go-style ``--flag=false`` / ``-r=true`` spellings of ``parser``'s on/off options.

    argparse refuses a value on a flag; the Go tool accepts one on every
    boolean flag, and ``--cache-repair=false`` is the only way to turn off
    a flag that defaults to true.  Returns the other arguments and the
    value each such option's destination gets.
    """
    flags: dict[str, argparse.Action] = {}
    for each in parser._actions:
        if each.option_strings and each.nargs == 0 and isinstance(each.const, bool):
            for spelling in each.option_strings:
                flags[spelling] = each
    rest: list[str] = []
    values: dict[str, bool] = {}
    for i, arg in enumerate(args):
        if arg == "--":
            rest.extend(args[i:])
            break
        name, eq, value = arg.partition("=")
        action: argparse.Action | None = flags.get(name) if eq and name.startswith("-") else None
        if action is None:
            rest.append(arg)
            continue
        if value not in _TRUE and value not in _FALSE:
            raise argparse.ArgumentError(action, f"invalid boolean value {value!r} (use true or false)")
        values[action.dest] = action.const if value in _TRUE else not action.const
    return rest, values


def _verb_position(argv: Sequence[str]) -> int:
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return i + 1 if i + 1 < len(argv) else -1
        if not arg.startswith("-") or arg == "-":
            return i
        i += 2 if arg in _VALUED_GLOBALS or arg in ("--log-level", "--rate-limit-bps") else 1
    return -1


def prepare_argv(argv: Sequence[str]) -> tuple[list[str], bool]:
    """(argv with server options moved behind the verb, whether this is a server invocation)."""
    args = list(argv)
    pos = _verb_position(args)
    if pos < 0 or args[pos] not in SERVER_VERBS:
        return args, False
    before, moved = [], []
    i = 0
    while i < pos:
        arg = args[i]
        name = arg.partition("=")[0]
        if name in _SERVER_OPTIONS:
            moved.append(arg)
            if "=" not in arg and name != "--verify" and i + 1 < pos:
                moved.append(args[i + 1])
                i += 1
        else:
            before.append(arg)
        i += 1
    return [*before, args[pos], *moved, *args[pos + 1:]], True

