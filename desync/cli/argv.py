"""What ``main`` needs before it knows the command: global options, help layout, server argv order.

Kept apart from the command modules so that starting ``desync`` imports
nothing of the library until the command is known.  Every failure of a
server invocation (``pull``/``push``) exits with status 1, as casync's does.
"""

import argparse
from collections.abc import Sequence
from typing import Final

SERVER_VERBS: Final = ("pull", "push")
_SERVER_OPTIONS: Final = ("--log-level", "--rate-limit-bps", "--verify")
# Global options that take a separate value, so the verb search can skip the value.
_VALUED_GLOBALS: Final = ("--digest", "--config")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped descriptions as written."""


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

