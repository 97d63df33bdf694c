#!/usr/bin/env python
"""Copy a trained policy folder and give it latency compensation (a Smith predictor).

The copy's ``metadata.json`` gains ``latency_compensation`` (see
:mod:`sim2real.training.compensation`); the evaluator, the benchmark and every engine
then run the policy on predicted observations. The latencies are the robot's, as the
calibration remedy measures them (``default`` preset: 20 ms observation, 10 ms action).

    python scripts/compensate_policy.py policies/Hopper/dr/seed0 policies/Hopper/dr_comp/seed0 \\
        --obs-latency 0.02 --action-latency 0.01

With ``--estimate`` the policy estimates the total delay of each episode online instead
(the given latencies are its prior), so one policy serves sim and robots of unknown latency.
With ``--filter NOISE`` the predictor is also a state observer (a steady-state Kalman filter
per dimension around the nominal model, dropped readings replaced by the prediction): NOISE is
the sensors' noise, a preset of the task (its sensing noise) or one number per dimension; the
model's one-step error on the robots the policy was trained for is measured here, on the
policy's own randomization (dynamics and actuation only).

    python scripts/compensate_policy.py runs/Hopper/robust/seed0 policies/Hopper/robust/seed0 \
        --estimate --filter default

With ``--strengths LOW:HIGH:STEP`` (or a comma-separated list) the estimate also scores
each candidate motor strength (x the nominal gear) with the delay, and the prediction runs
on the best: a robot weaker or heavier than the model otherwise turns every command in
flight into a wrong prediction.

With ``--checkpoint STEPS`` the copy is made of the source's checkpoint at STEPS training
steps (``checkpoints/rl_model_<STEPS>_steps.zip`` and its VecNormalize file) rather than
its final model: an earlier stop of the same command, recorded in the copy's metadata.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a trained policy folder")
    parser.add_argument("dest", type=Path, help="the compensated copy (created)")
    parser.add_argument("--obs-latency", type=float, default=0.0, help="seconds")
    parser.add_argument("--action-latency", type=float, default=0.0, help="seconds")
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="estimate the total delay online per episode (the latencies are then the prior)",
    )
    parser.add_argument("--max-latency", type=float, default=0.08, help="seconds (--estimate)")
    parser.add_argument(
        "--strengths",
        metavar="LOW:HIGH:STEP",
        help="candidate motor strengths to estimate with the delay (--estimate), x nominal gear",
    )
    parser.add_argument(
        "--filter",
        metavar="NOISE",
        help="filter the readings: the sensors' noise, a preset name or comma-separated numbers",
    )
    parser.add_argument(
        "--checkpoint",
        type=int,
        metavar="STEPS",
        help="copy the source's checkpoint at STEPS training steps instead of its final model",
    )
    parser.add_argument(
        "--filter-episodes", type=int, default=20, help="episodes to measure the model's error"
    )
    parser.add_argument("--note", default="the default robot's latency, as calibration measures it")
    parser.add_argument(
        "--manifest", action="store_true", help="measure its sim return and list it in the manifest"
    )
    parser.add_argument(
        "--train-command",
        help="the command that trained the source (the manifest lists it before this one)",
    )
    args = parser.parse_args(argv)
    files = _policy_files(args.source, args.checkpoint)
    if isinstance(files, str):
        print(f"error: {files}", file=sys.stderr)
        return 2
    meta = json.loads((args.source / "metadata.json").read_text())
    if args.checkpoint is not None:  # an earlier stop of the training command
        meta["checkpoint_steps"] = meta["timesteps_done"] = args.checkpoint
        meta.pop("train_episodes", None)  # the run's last episodes, not the checkpoint's
    try:
        strengths = _strengths(args.strengths) if args.strengths else ()
        if strengths and not args.estimate:
            raise ValueError("needs --estimate (the strength is estimated with the delay)")
    except ValueError as error:
        print(f"error: --strengths {args.strengths}: {error}", file=sys.stderr)
        return 2
    try:
        noise = _filter_noise(args.filter, meta) if args.filter else None
    except ValueError as error:
        print(f"error: --filter {args.filter}: {error}", file=sys.stderr)
        return 2
    args.dest.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        shutil.copy2(path, args.dest / name)
    # The uncompensated copy first: the model's error below is measured on what is copied.
    (args.dest / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    from sim2real.training.compensation import LatencyCompensation, StateFilter, measure_process_std

    state_filter = None
    if noise is not None:
        process = measure_process_std(
            meta["task"], str(args.dest), meta["randomization"], episodes=args.filter_episodes
        )
        state_filter = StateFilter(tuple(noise), tuple(round(float(v), 6) for v in process))
    compensation = LatencyCompensation(
        args.obs_latency,
        args.action_latency,
        args.estimate,
        args.max_latency,
        filter=state_filter,
        strengths=strengths,
    )
    meta["latency_compensation"] = {**compensation.to_dict(), "source": args.note}
    meta["compensated_from"] = str(args.source)
    from sim2real.training import _git_commit

    meta["compensated_at_commit"] = _git_commit()  # the compensation code (the filter's, too)
    (args.dest / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{args.dest}: {args.source} with latency compensation")
    if args.manifest:
        _list(args, meta, argv)
    return 0


def _list(args: argparse.Namespace, meta: dict, argv: list[str] | None) -> None:
    """The copy's manifest entry, its sim return measured as train_policy.py measures it."""
    import shlex

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_policy import EVAL_SEEDS, POLICIES, _method, _upsert_manifest

    from sim2real.training import evaluate_sim_return

    returns = evaluate_sim_return(args.dest, EVAL_SEEDS)
    compensation = meta["latency_compensation"]
    _upsert_manifest(
        {
            "task": meta["task"],
            "variant": args.dest.parent.name,
            "seed": meta["seed"],
            "algo": meta["algo"],
            "path": args.dest.resolve().relative_to(POLICIES.resolve()).as_posix(),
            "command": " && ".join(
                [
                    *([args.train_command] if args.train_command else []),
                    shlex.join(["python", "scripts/compensate_policy.py", *(argv or sys.argv[1:])]),
                ]
            ),
            "git_commit": meta["git_commit"],
            "compensated_at_commit": meta["compensated_at_commit"],
            "timesteps": meta["timesteps"],
            **(
                {"checkpoint_steps": meta["checkpoint_steps"]} if "checkpoint_steps" in meta else {}
            ),
            "method": f"{_method(meta)}; {_describe(compensation)}",
            "sim_return": {
                "mean": round(float(np.mean(returns)), 1),
                "std": round(float(np.std(returns)), 1),
                "episodes": len(returns),
                "seeds": f"{EVAL_SEEDS.start}..{EVAL_SEEDS.stop - 1}",
            },
        }
    )


def _policy_files(source: Path, checkpoint: int | None) -> dict[str, Path] | str:
    """The files to copy, by their name in the copy, or why the source has none."""
    if checkpoint is None:
        if not (source / "model.zip").is_file():
            return f"source {source} holds no model.zip"
        files = {"model.zip": source / "model.zip"}
        if (source / "vecnormalize.pkl").is_file():
            files["vecnormalize.pkl"] = source / "vecnormalize.pkl"
        return files
    model = source / "checkpoints" / f"rl_model_{checkpoint}_steps.zip"
    if not model.is_file():
        saved = sorted(
            int(p.name.split("_")[-2])
            for p in (source / "checkpoints").glob("rl_model_*_steps.zip")
        )
        listed = ", ".join(map(str, saved)) or "none"
        return (
            f"--checkpoint {checkpoint}: {source} has no checkpoint at that step (it has {listed})"
        )
    files = {"model.zip": model}
    normalize = model.with_name(f"rl_model_vecnormalize_{checkpoint}_steps.pkl")
    if normalize.is_file():
        files["vecnormalize.pkl"] = normalize
    return files


def _filter_noise(value: str, meta: dict) -> list[float]:
    """The sensors' noise per observation dimension: a preset's sensing noise or numbers."""
    from sim2real.skews.sensing import per_dimension
    from sim2real.tasks import get_task

    if not meta.get("randomization"):
        raise ValueError("the source was not trained with randomization (metadata.json), "
                         "so the model's error on its robots is unknown")  # fmt: skip
    task = get_task(meta["task"])
    dim = task.observation_dim
    if value in task.presets:
        noise = task.presets[value].sensing.noise_std
        return [float(v) for v in per_dimension(noise, dim, "noise")]
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, dim) or not all(np.isfinite(numbers)) or min(numbers) < 0:
        raise ValueError(
            f"not a preset of {meta['task']} ({', '.join(task.presets)}) nor 1 or {dim} finite "
            "numbers >= 0"
        )
    return numbers * dim if len(numbers) == 1 else numbers


def _strengths(value: str) -> tuple[float, ...]:
    """Candidate strengths from ``LOW:HIGH:STEP`` (both ends included) or ``a,b,c``."""
    try:
        if ":" in value:
            low, high, step = (float(v) for v in value.split(":"))
            if not (np.isfinite([low, high, step]).all() and 0 < low <= high and step > 0):
                raise ValueError
            numbers = np.arange(low, high + step / 2, step).round(6).tolist()
        else:
            numbers = [float(v) for v in value.split(",")]
    except ValueError:
        numbers = []
    if not numbers or not all(np.isfinite(numbers)) or min(numbers) <= 0:
        raise ValueError("not LOW:HIGH:STEP with 0 < LOW <= HIGH, STEP > 0, nor numbers > 0")
    return tuple(numbers)


def _describe(compensation: dict) -> str:
    if compensation.get("estimate"):
        bound = compensation["max_latency_s"]
        text = f"latency compensation, total delay estimated online (up to {bound} s)"
        if compensation.get("strengths"):
            text += " with the motor strength"
    else:
        text = (
            f"latency compensation {compensation['obs_latency_s']} s + "
            f"{compensation['action_latency_s']} s"
        )
    return text + (", readings filtered around the model" if compensation.get("filter") else "")


if __name__ == "__main__":
    sys.exit(main())
