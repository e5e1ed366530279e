"""`joinedup linkage ...`: the linkage team's commands, one module per command family.

Each module listed in `COMMAND_MODULES` exposes `register(sub)`, which adds its subparsers to
the `linkage` group and sets `handler=<callable(args, settings) -> dict>` on each.  Modules are
imported when the parser is built, so they must keep heavy imports (Splink, pandas) inside
their handlers.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

#: modules providing `register(sub)`; a missing module is a programming error, not skipped
COMMAND_MODULES: tuple[str, ...] = ("linkage.review_cmd", "linkage.evaluate_cmd")


def register(sub: Any) -> None:
    """Add `linkage` and its subcommands to the top-level subparsers `sub`."""
    p = sub.add_parser("linkage", help="linkage tools: evaluation, review queue, incremental")
    lsub = p.add_subparsers(dest="linkage_command", required=True, metavar="LINKAGE_COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(lsub)


def dispatch(args: argparse.Namespace, settings: Any) -> dict:
    """Run the handler the chosen `linkage` subcommand registered."""
    handler = getattr(args, "handler", None)
    if handler is None:
        raise ValueError(f"unknown linkage command {args.linkage_command!r}")
    # every linkage tool works in the linkage unit's own store (review belongs there)
    return handler(args, settings.for_unit("linkage"))
