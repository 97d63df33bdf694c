"""Benchmark: the sim part of ``evaluate_gap`` against SB3's ``evaluate_policy``.

Both run the same PPO Hopper policy (the shipped one from policies/manifest.yaml
if there is one, else a quick ~20k-step PPO trained into a temporary folder) for
the same number of episodes, with deterministic actions and frozen observation
statistics, one after the other in this process. Prints episodes/s of each and
their ratio.

    python scripts/bench_evaluator.py [--episodes 30] [--workers 2] [--policy DIR]

``evaluate_gap`` is timed as a user calls it: loading the policy from disk,
checking it, running the episodes (batched inference, worker processes) and
computing the statistics. ``evaluate_policy`` is timed on an already loaded
model and env (its setup is left out, in its favour).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import sim2real
from sim2real.paths import data_dir

TASK = "Hopper"


def shipped_policy() -> Path | None:
    """A shipped sim-trained PPO Hopper policy folder, if the manifest lists one."""
    manifest = data_dir("policies") / "manifest.yaml"
    if not manifest.is_file():
        return None
    for entry in yaml.safe_load(manifest.read_text()).get("policies") or []:
        folder = data_dir("policies") / entry["path"]
        sim_trained = entry["task"] == TASK and entry.get("variant") == "sim"
        if sim_trained and entry["algo"] == "ppo" and (folder / "model.zip").is_file():
            return folder
    return None


def train_quick_policy(folder: Path, timesteps: int) -> Path:
    """A quick PPO on Hopper with observation normalization, saved like a training run."""
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(f"{TASK}-v5")]))
    model = PPO("MlpPolicy", venv, seed=0, device="cpu")
    model.learn(timesteps)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.zip")
    venv.save(str(folder / "vecnormalize.pkl"))
    metadata = {"task": TASK, "algo": "ppo", "obs_normalization": True}
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def bench_sb3(folder: Path, episodes: int, first_seed: int) -> tuple[float, list[float], int]:
    """``evaluate_policy`` with one env: (seconds, returns, steps)."""
    model = PPO.load(folder / "model.zip", device="cpu")
    venv = DummyVecEnv([lambda: gym.make(f"sim2real/{TASK}-sim-v0")])
    if (folder / "vecnormalize.pkl").is_file():
        venv = VecNormalize.load(str(folder / "vecnormalize.pkl"), venv)
        venv.training, venv.norm_reward = False, False
    venv.seed(first_seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no Monitor wrapper: the env is not wrapped at all
        start = time.perf_counter()
        returns, lengths = evaluate_policy(
            model, venv, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
        )
        seconds = time.perf_counter() - start
    return seconds, list(returns), int(sum(lengths))


def bench_evaluator(
    folder: Path, episodes: int, first_seed: int, workers: int
) -> tuple[float, list[float], int]:
    """The sim part of ``evaluate_gap``: (seconds, returns, steps)."""
    start = time.perf_counter()
    report = sim2real.evaluate_gap(
        folder,
        TASK,
        seeds=range(first_seed, first_seed + episodes),
        real={},  # a real variant without skews is the sim variant: sim episodes only
        attribution=False,
        workers=workers,
        progress=False,
    )
    seconds = time.perf_counter() - start
    returns = [e["return"] for e in report.episodes]
    return seconds, returns, sum(e["length"] for e in report.episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument(
        "--workers", default="1,2", help="evaluate_gap process counts to time (default: 1,2)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--policy", type=Path, help="a PPO Hopper training output folder")
    parser.add_argument("--timesteps", type=int, default=20_000, help="for a quick policy")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]

    torch.set_num_threads(1)  # both sides: small networks, and a machine shared with others
    names = {"sb3": "evaluate_policy (SB3)"} | {w: f"evaluate_gap, workers={w}" for w in workers}
    runs: dict[str | int, list[tuple[float, list[float], int]]] = {key: [] for key in names}
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.policy or shipped_policy()
        if folder is None:
            print(f"no shipped PPO {TASK} policy; training one for {args.timesteps} steps ...")
            folder = train_quick_policy(Path(scratch) / "quick", args.timesteps)
        print(f"policy: {folder}")
        for _ in range(args.repeat):  # alternating, so that all see the same machine load
            runs["sb3"].append(bench_sb3(folder, args.episodes, first_seed=100))
            for w in workers:
                runs[w].append(bench_evaluator(folder, args.episodes, first_seed=100, workers=w))

    print(
        f"{args.episodes} episodes of {TASK}, deterministic, frozen observation statistics; "
        f"best of {args.repeat} alternating runs (all runs, s, in brackets)"
    )
    print(f"{'':28} {'seconds':>8} {'episodes/s':>11} {'steps/s':>9} {'mean return':>12}")
    best = {}
    for key, name in names.items():
        seconds, returns, steps = best[key] = min(runs[key], key=lambda run: run[0])
        every = ", ".join(f"{run[0]:.2f}" for run in runs[key])
        print(
            f"{name:28} {seconds:8.2f} {len(returns) / seconds:11.2f} {steps / seconds:9.0f} "
            f"{np.mean(returns):12.1f}  [{every}]"
        )
    for w in workers:
        ratio = best["sb3"][0] / best[w][0]
        print(f"speed-up of evaluate_gap, workers={w} (episodes/s, best runs): {ratio:.2f}x")


if __name__ == "__main__":
    main()
