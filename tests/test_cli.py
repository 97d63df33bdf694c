"""The command line: `sim2real list`, help for every subcommand, one-line errors with status 2."""

import subprocess
import sys

import pytest

from sim2real.cli import build_parser, main


def test_list_shows_every_task_and_preset(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for task in (
        "InvertedPendulum",
        "InvertedDoublePendulum",
        "Reacher",
        "Hopper",
        "HalfCheetah",
        "Walker2d",
        "Ant",
    ):
        assert task in out
    assert out.count("default") >= 7 and out.count("harsh") >= 7


def test_every_subcommand_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert "list" in commands
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0


def test_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "sim2real", "list"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "Hopper" in result.stdout
