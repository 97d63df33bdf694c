"""Benchmark: ``evaluate_gap`` on each engine against SB3's ``evaluate_policy``, on the same
episodes, side by side in one run; and the fixed overhead of Ray.

Every side runs the shipped sim-trained PPO Hopper policy (policies/Hopper/sim/seed0)
with deterministic actions and frozen observation statistics on the same episodes:
one per seed, each started with ``reset(seed=s)``. ``evaluate_policy`` gets one env
(SB3's usual set-up), seeded before each episode; it is timed on an already loaded
model and env (its setup left out, in its favour). ``evaluate_gap`` is timed as a user
calls it: loading and checking the policy, running the episodes, computing the
statistics. Runs alternate between the sides, so that all see the same machine load;
the best run of each is compared. Ray is started once, before the runs (its start-up
is reported on its own, with a cold task and a warm round trip).

    python scripts/bench_evaluator.py [--episodes 100] [--repeat 3] [--engines local,ray]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import sim2real
from sim2real.engines import check_engine
from sim2real.paths import data_dir

TASK = "Hopper"
POLICY = "Hopper/sim/seed0"
FIRST_SEED = 100

Run = tuple[float, list[float], int]  # seconds, returns by seed, steps


def bench_sb3(folder: Path, seeds: list[int]) -> Run:
    """``evaluate_policy`` with one env, seeded before each episode."""
    model = PPO.load(folder / "model.zip", device="cpu")
    venv = VecNormalize.load(
        str(folder / "vecnormalize.pkl"), DummyVecEnv([lambda: gym.make(f"{TASK}-v5")])
    )
    venv.training, venv.norm_reward = False, False
    returns, steps = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no Monitor wrapper: the env is not wrapped at all
        start = time.perf_counter()
        for seed in seeds:
            venv.seed(seed)  # the next reset is reset(seed=seed)
            episode_returns, lengths = evaluate_policy(
                model, venv, n_eval_episodes=1, deterministic=True, return_episode_rewards=True
            )
            returns += episode_returns
            steps += sum(lengths)
        seconds = time.perf_counter() - start
    return seconds, returns, steps


def bench_evaluator(folder: Path, seeds: list[int], engine: str) -> Run:
    """The sim part of ``evaluate_gap`` on ``engine``."""
    start = time.perf_counter()
    report = sim2real.evaluate_gap(
        folder,
        TASK,
        seeds=seeds,
        real={},  # a real variant without skews is the sim variant: sim episodes only
        attribution=False,
        engine=engine,
        progress=False,
    )
    seconds = time.perf_counter() - start
    by_seed = {e["seed"]: e for e in report.episodes}
    return (
        seconds,
        [by_seed[s]["return"] for s in seeds],
        sum(e["length"] for e in by_seed.values()),
    )


def ray_overhead(round_trips: int = 20) -> dict[str, float]:
    """Seconds: ``ray.init`` of a local Ray, a first (cold) task, a warm task's round trip."""
    import ray

    def timed(call: Callable[[], object]) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    init = timed(
        lambda: ray.init(
            address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR"
        )
    )
    nothing = ray.remote(lambda: None)
    first = timed(lambda: ray.get(nothing.remote()))
    trips = [timed(lambda: ray.get(nothing.remote())) for _ in range(round_trips)]
    return {"init": init, "first task": first, "round trip": statistics.median(trips)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument(
        "--engines",
        default="local,ray,batch",
        help="evaluate_gap engines to time; those not installed are left out "
        "(default: local,ray,batch)",
    )
    parser.add_argument("--policy", type=Path, default=data_dir("policies") / POLICY)
    args = parser.parse_args()
    engines = []
    for engine in args.engines.split(","):
        try:
            engines.append(check_engine(engine))
        except ValueError as error:
            print(f"left out: {error}")
    torch.set_num_threads(1)  # every side: small networks, and a machine shared with others
    seeds = list(range(FIRST_SEED, FIRST_SEED + args.episodes))

    overhead = ray_overhead() if "ray" in engines else {}
    names = {"sb3": "evaluate_policy (SB3)"} | {e: f"evaluate_gap, engine={e}" for e in engines}
    runs: dict[str, list[Run]] = {key: [] for key in names}
    for _ in range(args.repeat):  # alternating, so that all see the same machine load
        runs["sb3"].append(bench_sb3(args.policy, seeds))
        for engine in engines:
            runs[engine].append(bench_evaluator(args.policy, seeds, engine))

    print(f"policy: {args.policy}; {os.cpu_count()} CPUs")
    print(
        f"{args.episodes} episodes of {TASK} (seeds {seeds[0]}-{seeds[-1]}), deterministic, "
        f"frozen observation statistics; best of {args.repeat} alternating runs "
        "(every run, s, in brackets)"
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
    sb3 = np.array(best["sb3"][1])
    for engine in engines:
        ratio = best["sb3"][0] / best[engine][0]
        returns = np.array(best[engine][1])
        gap = np.max(np.abs(returns - sb3) / np.maximum(np.abs(sb3), 1e-12))
        print(
            f"engine={engine}: {ratio:.2f}x the episodes/s of evaluate_policy; returns equal to "
            f"local: {list(returns) == best[engines[0]][1]}; largest relative difference to "
            f"evaluate_policy's: {gap:.1e}"
        )
    if overhead:
        print(
            "Ray fixed overhead: "
            + ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in overhead.items())
            + f"; first evaluation on ray (cold workers import torch) {runs['ray'][0][0]:.2f} s"
        )


if __name__ == "__main__":
    main()
