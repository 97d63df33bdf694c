"""Benchmark: the batch engine against SB3's ``evaluate_policy``, the local engine and raw
``mujoco.batch`` stepping, side by side in one run; and PPO training on ``make_vec``
against SB3's ``DummyVecEnv`` of Gymnasium envs.

Per task, every side runs the same episodes (one per seed, ``reset(seed=s)``) of one
policy with deterministic actions and frozen observation statistics:

- ``batch``: ``run_workload(engine="batch")``, every episode in its own simulation
  (``n_envs`` = episodes), on MuJoCo's thread pool over all CPUs;
- ``local``: the same workload on the local engine (same returns, bit for bit);
- ``evaluate_policy``: SB3's, one env seeded before each episode (its usual set-up),
  timed on an already loaded model and env;
- ``raw mujoco.batch``: the task's model in a ``Batch`` of as many simulations, random
  controls, no policy, no observation, reward or skews: the machine's limit.

Ratios are in control steps per second (episodes end at different times, so episodes/s
would favour short episodes). Ant has no shipped policy: a randomly initialized PPO
policy stands in. Runs alternate between the sides, so that all see the same machine
load; the best run of each is compared.

    python scripts/bench_engines.py [--episodes 100] [--repeat 2] [--tasks Hopper,HalfCheetah,Ant]
        [--ppo-steps 6144] [--ppo-envs 8,32] [--out bench_engines.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym
import numpy as np
import torch
from mujoco import batch as mjbatch
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sim2real.engines import Episode, Workload, plan_lanes, run_workload
from sim2real.engines.batch import kernel_for
from sim2real.engines.vec import SB3VecEnv, make_vec
from sim2real.evaluation.policy import resolve_policies
from sim2real.paths import data_dir
from sim2real.tasks import get_task

FIRST_SEED = 100
POLICIES = {"Hopper": "Hopper/sim/seed0", "HalfCheetah": "HalfCheetah/sim/seed0"}


@dataclass
class Run:
    """One timed run: wall seconds, returns by seed, control steps."""

    seconds: float
    returns: list[float]
    steps: int

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    @property
    def episodes_per_s(self) -> float:
        return len(self.returns) / self.seconds


# ---------------------------------------------------------------------- the sides
def policy_folder(task: str, scratch: Path) -> Path:
    """The shipped sim policy of ``task``, or a randomly initialized PPO saved in ``scratch``."""
    if task in POLICIES:
        return data_dir("policies") / POLICIES[task]
    folder = scratch / task
    folder.mkdir(parents=True, exist_ok=True)
    PPO("MlpPolicy", gym.make(get_task(task).base_id), seed=0, device="cpu").save(
        folder / "model.zip"
    )
    return folder


def bench_engine(engine: str, folder: Path, task: str, seeds: list[int]) -> Run:
    """``run_workload`` on ``engine``: every episode in its own sub-env or simulation."""
    sources = tuple(resolve_policies(str(folder)))
    workload = Workload(
        task=task,
        specs={"sim": {}},
        policies=sources,
        lanes=plan_lanes([(0, "sim", s) for s in seeds], 1),
        max_episode_steps=None,
        n_envs=len(seeds),
    )
    episodes: list[Episode] = []
    start = time.perf_counter()
    run_workload(workload, engine=engine, on_episode=episodes.append)
    seconds = time.perf_counter() - start
    by_seed = {e.seed: e for e in episodes}
    return Run(
        seconds, [float(by_seed[s].ret) for s in seeds], int(sum(e.length for e in episodes))
    )


def bench_sb3(folder: Path, task: str, seeds: list[int]) -> Run:
    """``evaluate_policy`` with one env, seeded before each episode."""
    model = PPO.load(folder / "model.zip", device="cpu")
    venv = DummyVecEnv([lambda: gym.make(get_task(task).base_id)])
    stats = folder / "vecnormalize.pkl"
    if stats.exists():
        venv = VecNormalize.load(str(stats), venv)
        venv.training, venv.norm_reward = False, False
    returns, steps = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no Monitor wrapper: the env is not wrapped at all
        start = time.perf_counter()
        for seed in seeds:
            venv.seed(seed)
            episode_returns, lengths = evaluate_policy(
                model, venv, n_eval_episodes=1, deterministic=True, return_episode_rewards=True
            )
            returns += [float(r) for r in episode_returns]
            steps += int(sum(lengths))
        seconds = time.perf_counter() - start
    return Run(seconds, returns, steps)


def bench_raw(task: str, nsim: int, steps: int) -> Run:
    """Raw ``mujoco.batch``: ``nsim`` simulations of the task's model, random controls,
    ``steps`` control steps in all (``frame_skip`` substeps each), all CPUs."""
    kernel = kernel_for(task)
    batch = mjbatch.Batch(kernel.model, nsim, 0)
    ctrl = batch.bind("ctrl")
    rng = np.random.default_rng(0)
    batch.reset()
    rounds = max(1, steps // nsim)
    start = time.perf_counter()
    for _ in range(rounds):
        ctrl[:] = rng.uniform(-1.0, 1.0, ctrl.shape)
        batch.step(nstep=kernel.frame_skip)
    return Run(time.perf_counter() - start, [], rounds * nsim)


def bench_ppo(make_env: Callable[[], object], n_envs: int, steps: int) -> float:
    """Seconds PPO takes to learn ``steps`` steps on ``make_env()``: the settings of
    configs/train/hopper_ppo.yaml (a 2048-step rollout, minibatch 128, 10 epochs,
    VecNormalize), the rollout split over ``n_envs`` envs (8 there)."""
    venv = VecNormalize(make_env(), clip_obs=10.0)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=2048 // n_envs,
        batch_size=128,
        n_epochs=10,
        seed=0,
        device="cpu",
    )
    start = time.perf_counter()
    model.learn(steps)
    return time.perf_counter() - start


# ---------------------------------------------------------------------- the run
def best(runs: list[Run]) -> Run:
    return min(runs, key=lambda run: run.seconds)


def bench_task(task: str, folder: Path, seeds: list[int], repeat: int) -> dict:
    runs: dict[str, list[Run]] = {"batch": [], "local": [], "sb3": [], "raw": []}
    for _ in range(repeat):  # alternating, so that all see the same machine load
        runs["batch"].append(bench_engine("batch", folder, task, seeds))
        runs["sb3"].append(bench_sb3(folder, task, seeds))
        runs["raw"].append(bench_raw(task, len(seeds), runs["batch"][-1].steps))
        runs["local"].append(bench_engine("local", folder, task, seeds))
    top = {side: best(r) for side, r in runs.items()}
    batch = top["batch"]
    return {
        "task": task,
        "policy": str(folder),
        "episodes": len(seeds),
        "runs": {
            side: [asdict(r) | {"steps_per_s": r.steps_per_s} for r in rs]
            for side, rs in runs.items()
        },
        "batch_vs_sb3_episodes": batch.episodes_per_s / top["sb3"].episodes_per_s,
        "batch_vs_sb3_steps": batch.steps_per_s / top["sb3"].steps_per_s,
        "batch_vs_raw_steps": batch.steps_per_s / top["raw"].steps_per_s,
        "local_vs_sb3_steps": top["local"].steps_per_s / top["sb3"].steps_per_s,
        "batch_equals_local": bool(batch.returns == top["local"].returns),
    }


def print_task(result: dict) -> None:
    print(f"\n{result['task']}: {result['episodes']} episodes, policy {result['policy']}")
    print(f"  {'side':<24} {'seconds':>8} {'episodes/s':>11} {'steps/s':>9} {'mean return':>12}")
    names = {"batch": "engine=batch", "local": "engine=local", "sb3": "evaluate_policy (SB3)",
             "raw": "raw mujoco.batch"}  # fmt: skip
    for side, name in names.items():
        runs = [Run(r["seconds"], r["returns"], r["steps"]) for r in result["runs"][side]]
        top = best(runs)
        every = ", ".join(f"{r.seconds:.1f}" for r in runs)
        episodes = f"{top.episodes_per_s:11.2f}" if top.returns else f"{'-':>11}"
        ret = f"{np.mean(top.returns):12.1f}" if top.returns else f"{'-':>12}"
        print(f"  {name:<24} {top.seconds:8.2f} {episodes} {top.steps_per_s:9.0f} {ret}  [{every}]")
    print(
        f"  batch: {result['batch_vs_sb3_episodes']:.2f}x the episodes/s of evaluate_policy "
        f"({result['batch_vs_sb3_steps']:.2f}x its steps/s), "
        f"{100 * result['batch_vs_raw_steps']:.0f} % of raw mujoco.batch steps/s; "
        f"local: {result['local_vs_sb3_steps']:.2f}x evaluate_policy's steps/s; "
        f"batch returns equal local's: {result['batch_equals_local']}"
    )


def bench_ppo_side_by_side(n_envs: int, steps: int, repeat: int) -> dict:
    sides = {
        "make_vec (batch)": lambda: SB3VecEnv(make_vec("Hopper", n_envs)),
        "DummyVecEnv of Hopper-v5": lambda: DummyVecEnv([lambda: gym.make("Hopper-v5")] * n_envs),
    }
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeat):  # alternating
        for name, make_env in sides.items():
            seconds[name].append(bench_ppo(make_env, n_envs, steps))
    print(
        f"\nPPO on Hopper, {n_envs} envs x {2048 // n_envs} steps per rollout, {steps} steps "
        "(hopper_ppo.yaml's other settings):"
    )
    rates = {}
    for name, runs in seconds.items():
        rates[name] = steps / min(runs)
        every = ", ".join(f"{s:.1f}" for s in runs)
        print(f"  {name:<26} {rates[name]:8.0f} steps/s  [{every}]")
    ratio = rates["make_vec (batch)"] / rates["DummyVecEnv of Hopper-v5"]
    print(f"  make_vec: {ratio:.2f}x DummyVecEnv's training steps/s")
    return {"n_envs": n_envs, "steps": steps, "seconds": seconds, "ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each side, alternating")
    parser.add_argument("--tasks", default="Hopper,HalfCheetah,Ant", help="'': none")
    parser.add_argument("--ppo-steps", type=int, default=6144, help="0 skips the PPO comparison")
    parser.add_argument(
        "--ppo-envs", default="8,32", help="envs per PPO rollout (8: hopper_ppo.yaml)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench_engines.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(FIRST_SEED, FIRST_SEED + args.episodes))
    print(
        f"{os.cpu_count()} CPUs; seeds {seeds[0]}-{seeds[-1]}, deterministic actions; best of "
        f"{args.repeat} alternating runs (every run's seconds in brackets)"
    )
    results: dict = {"cpus": os.cpu_count(), "tasks": []}
    with tempfile.TemporaryDirectory() as scratch:
        for task in filter(None, args.tasks.split(",")):
            result = bench_task(task, policy_folder(task, Path(scratch)), seeds, args.repeat)
            results["tasks"].append(result)
            print_task(result)
    if args.ppo_steps:
        results["ppo"] = [bench_ppo_side_by_side(int(n), args.ppo_steps, args.repeat)
                          for n in args.ppo_envs.split(",")]  # fmt: skip
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
