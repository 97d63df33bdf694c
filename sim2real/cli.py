"""Command line: ``sim2real list | train | evaluate | benchmark | demo``.

Each subcommand lives beside the code it drives and registers itself through a
``register_cli(subparsers)`` function; a handler returns the exit status. Bad
input is reported in one line with exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sim2real.spec import SkewSpecError

# Modules that contribute a subcommand, in the order `--help` lists them.
_SUBCOMMAND_MODULES = (
    "sim2real.training",
    "sim2real.evaluation",
    "sim2real.benchmark",
    "sim2real.demo",
)


class UsageError(ValueError):
    """Bad input on the command line; reported in one line, exit status 2."""


def _list(args: argparse.Namespace) -> int:
    from sim2real.tasks import tasks

    for task in tasks().values():
        print(f"{task.name:<24} {task.base_id:<28} {task.description}")
        for name, preset in task.presets.items():
            skews = ", ".join(preset.active())
            print(f"    {name:<10} {preset.description}\n               skews: {skews}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sim2real", description="Paired sim/real MuJoCo tasks and the sim-to-real gap."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = subparsers.add_parser("list", help="list the tasks and their real presets")
    listing.set_defaults(func=_list)
    for module_name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue  # that part of the toolkit is not built yet
        if hasattr(module, "register_cli"):
            module.register_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SkewSpecError, UsageError, ValueError, FileNotFoundError, TypeError) as error:
        print(f"sim2real {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
