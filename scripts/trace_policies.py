#!/usr/bin/env python
"""Trace what policies do: x position, torso height and pitch per step, one episode per policy.

For each ``--task`` and each policy group under ``policies/<Task>/`` (sim, dr, ...),
runs seed 0 of every group on one variant and records the true x position (``qpos[0]``),
torso height (``qpos[1]``) and torso pitch (``qpos[2]``, rad; beyond +-pi/2 the robot is on
its back) of the simulator at every step. Writes
``<out>.json`` (the traces) and ``<out>.png`` (one panel per task and quantity).

    python scripts/trace_policies.py --tasks Hopper Walker2d HalfCheetah --variant default \\
        --out docs/traces
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def trace(task: str, policy: Path, variant: str, seed: int) -> dict:
    """One episode: x position, torso height and pitch of the true state at every step."""
    import sim2real
    from sim2real.evaluation.policy import resolve_policies

    act = resolve_policies(policy)[0].build()
    env = sim2real.make(task, skews=None if variant == "sim" else variant)
    data = env.unwrapped.data
    obs, _ = env.reset(seed=seed)
    xs, heights, pitches = [float(data.qpos[0])], [float(data.qpos[1])], [float(data.qpos[2])]
    total, start = 0.0, True
    while True:
        action = act(obs[None], episode_start=np.array([start]))
        start = False
        obs, reward, terminated, truncated, _ = env.step(action[0])
        total += float(reward)
        xs.append(float(data.qpos[0]))
        heights.append(float(data.qpos[1]))
        pitches.append(float(data.qpos[2]))
        if terminated or truncated:
            break
    env.close()
    return {
        "x": xs,
        "height": heights,
        "pitch": pitches,
        "return": total,
        "steps": len(xs) - 1,
        "terminated": bool(terminated),
    }


def plot(traces: dict, variant: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(traces)
    fig, axes = plt.subplots(3, len(tasks), figsize=(3.6 * len(tasks), 6.6), squeeze=False)
    for column, task in enumerate(tasks):
        for group, run in traces[task].items():
            label = f"{group} ({run['return']:.0f}, {run['steps']} steps)"
            axes[0][column].plot(run["x"], label=label, lw=1)
            axes[1][column].plot(run["height"], lw=1)
            axes[2][column].plot(run["pitch"], lw=1)
        axes[0][column].set_title(f"{task} on {variant}", fontsize=9)
        axes[0][column].set_ylabel("x position (m)")
        axes[1][column].set_ylabel("torso height (m)")
        axes[2][column].set_ylabel("torso pitch (rad)")
        axes[2][column].set_xlabel("control step")
        axes[0][column].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["Hopper", "Walker2d", "HalfCheetah"])
    parser.add_argument("--groups", nargs="+", default=["sim", "dr_plain", "dr"])
    parser.add_argument("--variant", default="default")
    parser.add_argument("--seed", type=int, default=100, help="episode seed")
    parser.add_argument("--policy-seed", default="seed0", help="which training seed")
    parser.add_argument("--policies", type=Path, default=Path("policies"))
    parser.add_argument("--out", type=Path, default=Path("docs/traces"))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    traces: dict = {}
    for task in args.tasks:
        traces[task] = {}
        for group in args.groups:
            folder = args.policies / task / group / args.policy_seed
            if (folder / "model.zip").is_file():
                traces[task][group] = trace(task, folder, args.variant, args.seed)
                run = traces[task][group]
                print(
                    f"{task} {group}: return {run['return']:.0f}, {run['steps']} steps, "
                    f"x {run['x'][-1]:.2f} m, final height {run['height'][-1]:.2f} m, "
                    f"on its back {np.mean(np.abs(run['pitch']) > np.pi / 2):.0%} of steps"
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "variant": args.variant,
                "seed": args.seed,
                "policy_seed": args.policy_seed,
                "traces": traces,
            }
        )
    )
    plot(traces, args.variant, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
