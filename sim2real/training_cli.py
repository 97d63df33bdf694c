"""``sim2real train``: its options, checked before torch and SB3 load.

The training itself is :func:`sim2real.training.train`; this module holds only the
command line, so that a bad option is reported at once.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from sim2real.cli_options import (
    add_no_progress,
    add_out,
    add_overwrite,
    add_resume,
    claim_out,
    existing_file,
    existing_folder,
    positive_int,
)
from sim2real.tasks import tasks

ALGO_NAMES = ("ppo", "sac", "td3", "rppo")  # sim2real.training.ALGOS (a test checks)
RUN_FILES = ("model.zip", "vecnormalize.pkl", "metadata.json")  # what makes a folder a run
RUN_FOLDERS = ("checkpoints", "tb")
DEFAULT_OUT = "runs/train"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` options, shared by the CLI and ``scripts/train_policy.py``."""
    parser.add_argument("--task", required=True, help=f"one of {', '.join(tasks())}")
    parser.add_argument("--algo", default="ppo", choices=ALGO_NAMES, help="the SB3 algorithm")
    parser.add_argument(
        "--randomization", type=existing_file, help="randomization spec YAML (DR training)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the model, the envs and torch")
    parser.add_argument(
        "--timesteps", type=positive_int, help="total env steps (default: from config)"
    )
    add_out(parser, DEFAULT_OUT, help="output folder of the run")
    add_resume(parser, help="continue the run in --out from its latest checkpoint")
    add_overwrite(parser, help="replace the run already in --out")
    parser.add_argument(
        "--config", type=existing_file, help="hyperparameter YAML (default: shipped)"
    )
    add_robustify_arguments(parser)
    add_no_progress(parser)


def add_robustify_arguments(parser: argparse.ArgumentParser) -> None:
    """History, asymmetric critic, ADR and warm start (sim2real.training.train)."""
    parser.add_argument(
        "--history", type=int, help="the actor also sees its last K commands (default: config)"
    )
    parser.add_argument(
        "--asymmetric",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the critic also sees the true state and the episode's skews (default: config)",
    )
    parser.add_argument(
        "--adr", type=existing_file, help="ADR config YAML, e.g. configs/adr/hopper.yaml"
    )
    parser.add_argument(
        "--init-from", type=existing_folder, help="a trained policy folder to warm start from"
    )


def latest_checkpoint(out: Path) -> Path | None:
    """The checkpoint of ``out/checkpoints`` with the most steps, or None."""
    found = []
    for path in (out / "checkpoints").glob("*_steps.zip"):
        match = re.fullmatch(r".*_(\d+)_steps\.zip", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def check_run_folder(out: Path, *, resume: bool, overwrite: bool) -> Path | None:
    """Refuse to train into an existing run unless told what to do with it.

    Returns:
        The checkpoint to resume from (``resume``), else None.

    Raises:
        ValueError: naming ``--out`` when it holds a run and neither flag is given, when
            both are given, or when ``--resume`` finds nothing to continue.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue or replace")
    holds = [name for name in (*RUN_FILES, *RUN_FOLDERS) if (out / name).exists()]
    if resume:
        checkpoint = latest_checkpoint(out)
        if checkpoint is None:
            raise ValueError(
                f"--resume: {str(out)!r} holds no checkpoint to continue from "
                "(expected checkpoints/*_steps.zip)"
            )
        return checkpoint
    if holds and not overwrite:
        raise ValueError(
            f"--out {str(out)!r} already holds a run ({', '.join(holds)}); add --resume to "
            "continue it or --overwrite to replace it"
        )
    return None


def train_from_args(args: argparse.Namespace) -> Path:
    """:func:`sim2real.training.train` with the options of :func:`add_train_arguments`."""
    out = Path(args.out)
    if args.task not in tasks():
        raise ValueError(f"--task must be one of {', '.join(tasks())}, got {args.task!r}")
    checkpoint = check_run_folder(
        out, resume=getattr(args, "resume", False), overwrite=getattr(args, "overwrite", False)
    )
    from sim2real.training import _validate, train

    # train() checks its input again; here it must pass before an old run is deleted.
    _validate(args.task, args.algo, args.timesteps, args.config, checkpoint, args.randomization)
    claim_out(  # check_run_folder has refused what it must; this discards on --overwrite
        out,
        [],
        resume=getattr(args, "resume", False),
        overwrite=getattr(args, "overwrite", False),
        discard=[out / name for name in (*RUN_FILES, *RUN_FOLDERS)],
    )
    if checkpoint is not None:
        steps = re.fullmatch(r".*_(\d+)_steps\.zip", checkpoint.name)
        print(f"resuming {out} from {checkpoint.name} ({steps.group(1) if steps else '?'} steps)")

    return train(
        args.task,
        args.algo,
        seed=args.seed,
        timesteps=args.timesteps,
        out=out,
        randomization=args.randomization,
        config=args.config,
        resume=checkpoint,
        progress=not args.no_progress,
        history=getattr(args, "history", None),
        asymmetric=getattr(args, "asymmetric", None),
        adr=getattr(args, "adr", None),
        init_from=getattr(args, "init_from", None),
    )


def _run_cli(args: argparse.Namespace) -> int:
    """Handler of ``sim2real train``."""
    out = train_from_args(args)
    print(f"trained {args.task} {args.algo} seed {args.seed} -> {out}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train a policy on the sim variant (optionally with domain randomization)",
        description="Train a Stable-Baselines3 policy; writes model.zip, vecnormalize.pkl, "
        "metadata.json, tb/ and checkpoints/ into --out.",
    )
    add_train_arguments(parser)
    parser.set_defaults(func=_run_cli)
