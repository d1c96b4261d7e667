"""The command table that lets a run import only its own command module."""

import argparse

from desync.cli.main import COMMAND_MODULES, COMMANDS, build_parser, command_name


def _registered() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_registered_command_is_in_the_table_with_its_module() -> None:
    registered = _registered()
    for name in registered:
        assert name in COMMANDS, f"{name} missing from desync.cli.main.COMMANDS"
        lone = build_parser([name])
        sub = next(a for a in lone._actions if isinstance(a, argparse._SubParsersAction))
        assert name in sub.choices, f"{name} is not registered by {COMMANDS[name]}"
    assert set(COMMANDS.values()) <= set(COMMAND_MODULES)


def test_command_name_skips_global_options() -> None:
    assert command_name(["--digest", "sha256", "make", "x"]) == "make"
    assert command_name(["--config", "c.json", "-v", "extract"]) == "extract"
    assert command_name(["--verbose"]) == ""
