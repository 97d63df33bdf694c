"""The command line: one vocabulary in every subcommand, defaults in --help, one-line errors,
no empty output folder after a failure, and progress that shows in a log."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim2real import cli_options
from sim2real.cli import build_parser, main
from sim2real.cli_options import (
    ENGINES,
    Progress,
    check_out,
    output_folder,
    parse_seeds,
    progress_bar,
)

# Subcommands that do long work, and must take the shared options (`record` logs a few
# short episodes and shows no progress).
LONG_WORK = ("train", "evaluate", "benchmark", "demo", "calibrate", "monitor", "envelope")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return dict(parser._subparsers._group_actions[0].choices)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


COMMANDS = _subparsers()
LONG = [name for name in LONG_WORK if name in COMMANDS]


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


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name: str, capsys):
    assert main([name, "--help"]) == 0
    assert "usage: sim2real" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_default_is_shown_in_help(name: str):
    parser = COMMANDS[name]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.default in (None, False, [], (), argparse.SUPPRESS):
            continue
        if action.help in (None, argparse.SUPPRESS):
            continue
        text = formatter._get_help_string(action) or ""
        option = action.option_strings[0] if action.option_strings else action.dest
        assert "default" in text.lower(), f"sim2real {name} {option}: default not in --help"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_shared_options_mean_the_same_everywhere(name: str, tmp_path: Path):
    options = _options(COMMANDS[name])
    if "--out" in options:
        assert options["--out"].default is not None, f"sim2real {name} --out has no default"
        with pytest.raises(argparse.ArgumentTypeError):
            options["--out"].type(str(Path(__file__)))  # a file is refused up front
    for flag in ("--resume", "--overwrite", "--no-progress"):
        if flag in options:
            assert options[flag].nargs == 0, f"sim2real {name} {flag} must be a flag"
    if "--seeds" in options:
        assert options["--seeds"].type("0-2,7") == [0, 1, 2, 7]


@pytest.mark.parametrize("name", LONG)
def test_long_commands_share_one_vocabulary(name: str, tmp_path: Path):
    options = _options(COMMANDS[name])
    for option in ("--out", "--no-progress"):
        assert option in options, f"sim2real {name} has no {option}"
    out = options["--out"]
    assert out.default is not None, f"sim2real {name} --out has no default"
    assert isinstance(out.type(str(tmp_path / "new")), Path)
    assert options["--no-progress"].nargs == 0
    if "--resume" in options:
        assert options["--resume"].nargs == 0, f"sim2real {name} --resume must be a flag"
    if "--engine" in options:
        assert tuple(options["--engine"].choices) == ENGINES
        assert options["--engine"].default == "local"
    if "--seeds" in options:
        assert options["--seeds"].type("0-2,7") == [0, 1, 2, 7]
        with pytest.raises(argparse.ArgumentTypeError):
            options["--seeds"].type("5")  # never a count


def test_the_big_four_take_seeds_out_resume_and_engine():
    for name in ("evaluate", "benchmark", "demo"):
        options = _options(COMMANDS[name])
        for option in ("--seeds", "--out", "--resume", "--overwrite", "--engine", "--no-progress"):
            assert option in options, f"sim2real {name} has no {option}"
    train = _options(COMMANDS["train"])
    assert {"--out", "--resume", "--overwrite", "--no-progress"} <= set(train)


def test_train_knows_every_algorithm():
    from sim2real.training import ALGOS
    from sim2real.training_cli import ALGO_NAMES

    assert set(ALGO_NAMES) == set(ALGOS)


# ---- the shared options ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seeds"),
    [
        ("100-104", [100, 101, 102, 103, 104]),
        ("0,3,5", [0, 3, 5]),
        ("0-2,20", [0, 1, 2, 20]),
        ("7-7", [7]),
        (" 1 - 2 , 4 ", [1, 2, 4]),
    ],
)
def test_seeds_are_ranges_and_lists(text: str, seeds: list[int]):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("0", "bare number"),
        ("30", "30-37"),
        ("-1", ">= 0"),
        ("9-3", "backwards"),
        ("1,x", "'x'"),
        ("1.5", "'1.5'"),
        ("1-3,2", "more than once"),
    ],
)
def test_bad_seeds_say_what_is_wrong(text: str, says: str):
    with pytest.raises(ValueError, match="--seeds") as info:
        parse_seeds(text)
    assert says in str(info.value)


def test_out_is_refused_when_a_file_or_unwritable(tmp_path: Path):
    file = tmp_path / "f"
    file.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        check_out(file)
    with pytest.raises(ValueError, match="is a file"):
        check_out(file / "below")
    with pytest.raises(ValueError, match="not writable"):
        check_out("/proc/sim2real-test")
    assert check_out(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists(), "checking must not create the folder"


def test_a_failed_run_leaves_no_empty_folder(tmp_path: Path):
    out = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), output_folder(out):
        (out / "sub").mkdir(parents=True)
        raise RuntimeError("failed")
    assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError), output_folder(out):
        out.mkdir(parents=True)
        (out / "partial.jsonl").write_text("{}\n")  # results are kept for --resume
        raise RuntimeError("failed")
    assert (out / "partial.jsonl").is_file()
    header_only = tmp_path / "h"
    with pytest.raises(RuntimeError), output_folder(header_only):
        header_only.mkdir()
        (header_only / "episodes.jsonl").write_text('{"schema": "sim2real.episodes/1"}\n')
        raise RuntimeError("failed before the first episode")
    assert not header_only.exists(), "a results file without an episode is no result"
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(RuntimeError), output_folder(existing):
        raise RuntimeError("failed")
    assert existing.is_dir(), "a folder the run did not create is never removed"


def test_the_command_line_removes_the_folder_of_a_run_that_fails(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    import sim2real.training_cli

    def fails_after_mkdir(args: argparse.Namespace) -> Path:
        (args.out / "tb").mkdir(parents=True)
        raise ValueError("timesteps must be a positive integer, got 0")

    monkeypatch.setattr(sim2real.training_cli, "train_from_args", fails_after_mkdir)
    out = tmp_path / "deep" / "out"
    assert main(["train", "--task", "InvertedPendulum", "--out", str(out)]) == 2
    assert "timesteps" in capsys.readouterr().err
    assert not (tmp_path / "deep").exists()


def test_train_refuses_an_existing_run_unless_told(tmp_path: Path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metadata.json").write_text("{}")
    assert main(["train", "--task", "InvertedPendulum", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "metadata.json" in err and "--resume" in err and "--overwrite" in err
    assert (run / "metadata.json").is_file(), "a refused run deletes nothing"


def test_train_resume_takes_the_latest_checkpoint(tmp_path: Path):
    from sim2real.training_cli import check_run_folder

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for steps in (2048, 10240, 4096):
        (checkpoints / f"rl_model_{steps}_steps.zip").write_bytes(b"")
    found = check_run_folder(tmp_path, resume=True, overwrite=False)
    assert found == checkpoints / "rl_model_10240_steps.zip"


def test_a_typo_names_the_option_it_resembles(capsys):
    assert main(["evaluate", "--polcy", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert "--polcy" in err and "did you mean --policy?" in err


def test_an_option_that_resembles_nothing_points_to_help(capsys):
    assert main(["demo", "--zzzzzz"]) == 2
    err = capsys.readouterr().err
    assert "--zzzzzz" in err and "sim2real demo --help" in err


def test_abbreviations_are_refused(capsys):
    assert main(["demo", "--tas", "Hopper"]) == 2
    assert "did you mean --task?" in capsys.readouterr().err


# ---- progress ------------------------------------------------------------------------------
def _wait_for_lines(log: io.StringIO, count: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while log.getvalue().count("\n") < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_progress_prints_a_line_in_a_log_even_while_a_unit_runs():
    log = io.StringIO()
    with Progress(4, "evaluate Hopper", interval_s=0.05, stream=log) as progress:
        progress.update()
        _wait_for_lines(log, 2)  # a slow episode: the log still hears from the run
        progress.update(3)
    lines = log.getvalue().splitlines()
    assert len(lines) >= 3
    assert lines[0].startswith("evaluate Hopper: 1/4 episodes (25%)")
    assert lines[1].startswith("evaluate Hopper: 1/4 episodes (25%)")
    assert lines[-1].startswith("evaluate Hopper: 4/4 episodes (100%)")


def test_progress_counts_what_resume_reused():
    progress = Progress(120, "evaluate Hopper", initial=40, enabled=False)
    assert progress.line().startswith("evaluate Hopper: 40/120 episodes (33%)")
    assert "left" not in progress.line(), "no estimate before any fresh episode"
    progress.update(40)
    assert progress.line().startswith("evaluate Hopper: 80/120 episodes (67%)")
    assert "left" in progress.line()


def test_progress_bar_is_called_like_tqdm():
    bar = progress_bar(total=3, desc="x", unit="episode", disable=True)
    bar.update(3)
    bar.close()
    assert bar.done == 3


def test_no_progress_means_silence():
    log = io.StringIO()
    with Progress(3, "x", enabled=False, interval_s=0.01, stream=log) as progress:
        progress.update(3)
        time.sleep(0.05)
    assert log.getvalue() == ""


def test_progress_interval_is_at_most_thirty_seconds():
    assert cli_options.PROGRESS_INTERVAL_S <= 30


# ---- as a process ----------------------------------------------------------------------------
def test_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "sim2real", "list"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "Hopper" in result.stdout


def test_resume_says_how_many_episodes_it_reuses(tmp_path: Path, capsys):
    results = tmp_path / "episodes.jsonl"
    results.write_text(
        '{"schema": "sim2real.episodes/1"}\n{"seed": 1}\n{"seed": 2}\n{"seed": 3, "cut'
    )
    assert cli_options.say_reused([results]) == 2
    assert f"--resume: reusing 2 finished episodes from {results}" in capsys.readouterr().out


def test_benchmark_takes_a_seed_range():
    from sim2real.benchmark import load_suite

    args = build_parser().parse_args(["benchmark", "--seeds", "100-102,110"])
    suite = load_suite(None)
    assert suite.with_seeds(args.seeds).seed_list == [100, 101, 102, 110]
    assert suite.seed_list == list(range(100, 130)), "the suite itself is unchanged"


def test_training_progress_shows_in_a_log(capsys):
    import gymnasium as gym
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", gym.make("Pendulum-v1"), n_steps=64, batch_size=64, n_epochs=1)
    callback = cli_options.sb3_progress_callback(128, "train Pendulum")
    model.learn(128, callback=callback, progress_bar=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("train Pendulum: 128/128 steps (100%)")
