"""Command line: ``sim2real list | train | evaluate | benchmark | demo | ...``.

Each subcommand lives beside the code it drives and registers itself through a
``register_cli(subparsers)`` function; a handler returns the exit status. Bad
input is reported in one line with exit status 2, before any work starts: the
modules that register subcommands import nothing heavy (torch, mujoco, SB3) at
module level, so the options are parsed and checked in well under a second.
A run that fails removes the output folder it created, if it left it empty.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from sim2real.cli_options import output_folder
from sim2real.spec import SkewSpecError

# Modules that contribute a subcommand, in the order `--help` lists them.
_SUBCOMMAND_MODULES = (
    "sim2real.training_cli",
    "sim2real.evaluation",
    "sim2real.benchmark",
    "sim2real.demo",
    "sim2real.remedies.envelope_cli",
    "sim2real.remedies.monitor_cli",
    "sim2real.remedies.calibration_cli",
)


class UsageError(ValueError):
    """Bad input on the command line; reported in one line, exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every default shown in ``--help``; descriptions and epilogs kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "%(default)" in text or "default:" in text or action.default in (None, False, [], ()):
            return text  # no default to show, or the help says it already
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` with one-line errors, exit status 2, and "did you mean" for typos."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Every subcommand shows its defaults, even one that asked for a plain formatter.
        if kwargs.get("formatter_class") in (
            None,
            argparse.HelpFormatter,
            argparse.RawDescriptionHelpFormatter,
            argparse.ArgumentDefaultsHelpFormatter,
        ):
            kwargs["formatter_class"] = HelpFormatter
        kwargs.setdefault("allow_abbrev", False)  # an abbreviation could change meaning later
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        arg_list = list(sys.argv[1:] if args is None else args)
        self._refuse_unknown_options(arg_list)
        return super().parse_known_args(arg_list, namespace)

    def _refuse_unknown_options(self, args: list[str]) -> None:
        """Name an unknown ``--option`` (and the option it resembles) before anything else:
        a typo must not hide behind "the following arguments are required"."""
        known = {s for action in self._actions for s in action.option_strings}
        has_subcommands = self._subparsers is not None
        for token in args:
            if token == "--":
                return
            if has_subcommands and not token.startswith("-"):
                self._refuse_unknown_command(token)
                return  # the subcommand's own parser checks the rest
            if not token.startswith("--"):
                continue
            option = token.split("=", 1)[0]
            if option in known:
                continue
            longs = sorted(s for s in known if s.startswith("--"))
            close = difflib.get_close_matches(option, longs, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f"; see {self.prog} --help"
            self.error(f"unknown option {option}{hint}")

    def _refuse_unknown_command(self, token: str) -> None:
        commands = list(self._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
        if token in commands:
            return
        close = difflib.get_close_matches(token, commands, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else f"; one of {', '.join(commands)}"
        self.error(f"unknown command {token!r}{hint}")

    def error(self, message: str) -> NoReturn:
        """One line on stderr, exit status 2 (argparse prints the whole usage)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _list(args: argparse.Namespace) -> int:
    from sim2real.tasks import tasks

    for task in tasks().values():
        print(f"{task.name:<24} {task.base_id:<28} {task.description}")
        for name, preset in task.presets.items():
            skews = ", ".join(preset.active())
            print(f"    {name:<10} {preset.description}\n               skews: {skews}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``sim2real`` parser with every registered subcommand."""
    parser = ArgumentParser(
        prog="sim2real", description="Paired sim/real MuJoCo tasks and the sim-to-real gap."
    )
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=ArgumentParser
    )
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


def _one_line(error: BaseException) -> str:
    text = str(error) if not isinstance(error, KeyError) else str(error.args[0])
    return " ".join(text.split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sim2real`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    try:
        with output_folder(getattr(args, "out", None)):
            status = int(args.func(args) or 0)
            if status:  # a handler that reports its own failure: still no empty folder
                raise _Failed(status)
            return 0
    except _Failed as failed:
        return failed.status
    except BrokenPipeError:  # `sim2real list | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (SkewSpecError, UsageError, ValueError, FileNotFoundError, TypeError) as error:
        print(f"sim2real {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2


class _Failed(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


if __name__ == "__main__":
    sys.exit(main())
