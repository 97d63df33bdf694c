#!/usr/bin/env python
"""Close the loop: log a hidden robot, calibrate, compensate its latency, fine-tune, measure.

The robot is a hidden real variant (``--robot``, default the task's ``default`` preset).
Stages (each written under ``--out`` and skipped on a rerun with ``--resume``):

1. ``logs/``: the sim-trained policy on the robot plus a sine excitation (``record``).
2. ``calib/``: :func:`sim2real.calibrate` on those logs alone.
3. ``compensated/``: the sim policy behind a Smith predictor fed the *calibrated*
   latencies (metadata key ``latency_compensation``).
4. ``finetuned/``: that policy fine-tuned (PPO, warm start) on the calibrated sim: the
   narrowed randomization ``cal.randomization(width)``, timing left nominal (the
   predictor handles it), then compensated with the same calibrated latencies.
   ``--control`` also fine-tunes on the nominal sim for the same steps (is it the
   calibration that helps, or more training?).
5. ``evaluation.json``: :func:`sim2real.evaluate_gap` of every policy on the robot, common
   seeds, mean return with its 95 % interval, and each policy's paired gain over the sim
   policy (bootstrap over seeds).

    python scripts/close_loop.py --task Hopper --policy policies/Hopper/sim/seed2 \\
        --robot default --timesteps 150000 --out runs/close_loop/hopper-default
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from scipy import stats

CONFIGS = {"Hopper": "ppo_compensated.yaml", "Walker2d": "ppo_compensated.yaml"}  # configs/train


def paired_gain(base: dict[int, float], other: dict[int, float], seed: int = 0) -> dict:
    """Mean of ``other - base`` over common seeds, with a 95 % percentile bootstrap interval."""
    common = sorted(set(base) & set(other))
    diff = np.array([other[s] - base[s] for s in common])
    if len(diff) < 2:
        return {
            "value": float(diff.mean()) if len(diff) else float("nan"),
            "low": None,
            "high": None,
        }
    ci = stats.bootstrap(
        (diff,),
        np.mean,
        confidence_level=0.95,
        n_resamples=4000,
        method="percentile",
        random_state=np.random.default_rng(seed),
    ).confidence_interval
    return {
        "value": float(diff.mean()),
        "low": float(ci.low),
        "high": float(ci.high),
        "pairs": len(diff),
    }


def compensate(source: Path, dest: Path, obs_s: float, action_s: float, note: str) -> Path:
    """A copy of the policy folder ``source`` behind a Smith predictor with these latencies."""
    from sim2real.training.compensation import LatencyCompensation

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("model.zip", "vecnormalize.pkl"):
        if (source / name).is_file():
            shutil.copy2(source / name, dest / name)
    meta = json.loads((source / "metadata.json").read_text())
    meta["latency_compensation"] = {
        **LatencyCompensation(obs_s, action_s).to_dict(),
        "source": note,
    }
    meta["compensated_from"] = str(source)
    (dest / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return dest


def fine_tune_spec(cal, width: float) -> dict:
    """The narrowed randomization without its timing section (the predictor handles latency)."""
    spec = cal.randomization_mapping(width)
    spec.pop("timing", None)
    return spec


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="Hopper", choices=sorted(CONFIGS))
    parser.add_argument("--policy", type=Path, default=Path("policies/Hopper/sim/seed2"))
    parser.add_argument("--robot", default="default", help="a preset name or skew YAML")
    parser.add_argument("--episodes", type=int, default=8, help="logged episodes")
    parser.add_argument("--steps", type=int, default=300, help="control steps per episode")
    parser.add_argument("--timesteps", type=int, default=150_000, help="fine-tuning steps")
    parser.add_argument("--width", type=float, default=2.0, help="x the calibration intervals")
    parser.add_argument("--seeds", default="100-129", help="evaluation seeds on the robot")
    parser.add_argument("--control", action="store_true", help="also fine-tune on nominal sim")
    parser.add_argument("--out", type=Path, default=Path("runs/close_loop/hopper-default"))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--only", default="", help="evaluate this policy label alone (parallel evaluation)"
    )
    args = parser.parse_args()

    import sim2real
    from sim2real.cli_options import parse_seeds
    from sim2real.evaluation.gap import evaluate_gap
    from sim2real.pairing import resolve_spec
    from sim2real.paths import data_dir
    from sim2real.remedies.calibration import calibrate
    from sim2real.remedies.record import load_logs, record
    from sim2real.tasks import get_task
    from sim2real.training import train

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    seeds = parse_seeds(args.seeds)
    robot = resolve_spec(get_task(args.task), args.robot)
    say = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True)  # noqa: E731
    summary: dict = {"args": {k: str(v) for k, v in vars(args).items()}}

    # 1. logs of the robot: what the policy saw and sent, nothing else
    if not (args.resume and (out / "logs" / "metadata.json").is_file()):
        env = sim2real.make(args.task, skews=robot.to_dict(), terminate_when_unhealthy=False)
        logs = record(
            args.policy,
            env,
            seeds=range(args.episodes),
            max_steps=args.steps,
            excitation="sine",
            amplitude=0.3,
        )
        env.close()
        logs.save(out / "logs")
    logs = load_logs(out / "logs", args.task)
    say(f"logs: {len(logs)} episodes, {logs.steps} steps")

    # 2. calibrate from the logs alone
    report_path = out / "calib" / "report.json"
    if args.resume and report_path.is_file():
        from sim2real.remedies.calibration import Calibration

        cal = Calibration.from_dict(json.loads(report_path.read_text()))
    else:
        started, cpu = time.perf_counter(), time.process_time()
        cal = calibrate(args.task, logs, threads=2, log=say)
        cal.save(out / "calib")
        say(
            f"calibrated in {time.perf_counter() - started:.0f} s wall, "
            f"{time.process_time() - cpu:.0f} s CPU"
        )
    summary["calibration"] = {
        "estimates": cal.estimates,
        "intervals": cal.intervals,
        "unidentified": cal.unidentified,
        "truth": robot.to_dict(),
    }
    obs_s = cal.delay["obs_substeps"] * cal.delay["substep_s"]
    act_s = cal.delay["action_substeps"] * cal.delay["substep_s"]
    note = f"calibrated from {out / 'logs'}"

    # 3. the sim policy behind a Smith predictor fed the calibrated latency
    compensated = compensate(args.policy, out / "compensated", obs_s, act_s, note)

    # 4. fine-tune on the calibrated sim (timing nominal), then compensate likewise
    config = data_dir("configs") / "train" / CONFIGS[args.task]
    runs = {"finetuned": fine_tune_spec(cal, args.width)}
    if args.control:
        runs["finetuned_nominal"] = None
    tuned: dict[str, Path] = {}
    for name, randomization in runs.items():
        raw = out / f"{name}_raw"
        if not (args.resume and (raw / "model.zip").is_file()):
            started = time.perf_counter()
            train(
                args.task,
                out=raw,
                randomization=randomization,
                init_from=args.policy,
                timesteps=args.timesteps,
                config=config,
                progress=False,
                seed=0,
            )
            say(f"{name}: {args.timesteps} steps in {time.perf_counter() - started:.0f} s")
        tuned[name] = compensate(raw, out / name, obs_s, act_s, note)
    (out / "finetune_randomization.json").write_text(json.dumps(runs["finetuned"], indent=2))

    # 5. every policy on the robot, common seeds
    policies = {"sim": args.policy, "sim+compensation": compensated}
    policies.update({f"{k}+compensation": v for k, v in tuned.items()})
    returns: dict[str, dict[int, float]] = {}
    table: dict[str, dict] = {}
    for label, path in policies.items():
        if args.only and label != args.only:
            continue
        report = evaluate_gap(
            str(path),
            args.task,
            seeds=seeds,
            real=robot,
            attribution=False,
            progress=False,
            out=out / "eval" / label.replace("+", "_"),
            resume=args.resume,
        )
        group = next(iter(report.groups.values()))
        real_name = report.real
        sim_name = next(n for n, v in report.variants.items() if v.role == "sim")
        returns[label] = {
            e["seed"]: e["return"]
            for e in report.episodes
            if e["variant"] == real_name and e["return"] is not None
        }
        table[label] = {
            "robot": group.returns[real_name].mean.to_dict(),
            "nominal_sim": group.returns[sim_name].mean.to_dict(),
        }
        say(
            f"{label}: robot {group.returns[real_name].mean.format(0)}, "
            f"nominal sim {group.returns[sim_name].mean.format(0)}"
        )
    if args.only:
        return
    for label in policies:
        table[label]["gain_over_sim_policy"] = paired_gain(returns["sim"], returns[label])
    summary["evaluation"] = {
        "seeds": args.seeds,
        "policies": {k: str(v) for k, v in policies.items()},
        "returns": table,
    }
    (out / "evaluation.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(render(summary))


def render(summary: dict) -> str:
    lines = [
        "| policy | return on robot (95 % CI) | gain over sim policy (paired, 95 % CI) | "
        "return in nominal sim |",
        "|---|---|---|---|",
    ]

    def fmt(e):
        return (
            f"{e['value']:.0f} [{e['low']:.0f}, {e['high']:.0f}]"
            if e.get("low") is not None
            else f"{e['value']:.0f}"
        )

    for label, row in summary["evaluation"]["returns"].items():
        lines.append(
            f"| {label} | {fmt(row['robot'])} | {fmt(row['gain_over_sim_policy'])} | "
            f"{fmt(row['nominal_sim'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
