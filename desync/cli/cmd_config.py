"""``desync config``: show the effective config, or write it to the config file."""

from __future__ import annotations

import argparse
import sys

from ..config import default_path, load_config, save_config

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Any


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    p = sub.add_parser("config", help="show or write the config file",
                       description="Print the effective configuration (store-options per location, "
                                   "s3-credentials) as JSON. With -w, write it to the config file "
                                   "($HOME/.config/desync/config.json or --config FILE), creating it.")
    p.add_argument("-w", "--write", action="store_true", help="write the config file")
    p.set_defaults(func=run_config)


def run_config(args: argparse.Namespace) -> int:
    explicit: str | None = getattr(args, "config", None)
    path = explicit or default_path()
    cfg = load_config(path, required=bool(explicit) and not args.write)
    if args.write:
        save_config(cfg, path)
        sys.stderr.write(f"desync: wrote {path}\n")
        return 0
    sys.stdout.write(cfg.to_json())
    return 0
