"""Per-step cost of each real variant against its sim variant, measured interleaved.

    python scripts/bench_envs.py [--tasks Hopper HalfCheetah] [--presets default harsh]

Sim and real envs of a task step in alternating blocks of the same random
actions in one process, so machine noise hits both alike; the ratio is the
median over blocks of real time / sim time. Target (issue 2): <= 1.15x for
`default` on Hopper and HalfCheetah.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

import sim2real


def time_block(env: gym.Env, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - start


def measure(task: str, preset: str, blocks: int, block_steps: int) -> tuple[float, float, float]:
    sim, real = sim2real.make_pair(task, real=preset)
    rng = np.random.default_rng(0)
    space = sim.action_space
    actions = rng.uniform(space.low, space.high, (block_steps, *space.shape)).astype(space.dtype)
    sim.reset(seed=0)
    real.reset(seed=0)
    time_block(sim, actions)  # warm-up, including the passive env checker's first steps
    time_block(real, actions)
    sim_times, real_times, ratios = [], [], []
    for _ in range(blocks):
        t_sim, t_real = time_block(sim, actions), time_block(real, actions)
        sim_times.append(t_sim)
        real_times.append(t_real)
        ratios.append(t_real / t_sim)
    per_step = block_steps / 1e6
    return (
        statistics.median(sim_times) / per_step,
        statistics.median(real_times) / per_step,
        statistics.median(ratios),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(sim2real.tasks()))
    parser.add_argument("--presets", nargs="+", default=["default", "harsh"])
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--block-steps", type=int, default=500)
    args = parser.parse_args()
    print(f"{'task':<24} {'preset':<8} {'sim us/step':>12} {'real us/step':>13} {'ratio':>7}")
    for task in args.tasks:
        for preset in args.presets:
            sim_us, real_us, ratio = measure(task, preset, args.blocks, args.block_steps)
            print(f"{task:<24} {preset:<8} {sim_us:>12.1f} {real_us:>13.1f} {ratio:>6.3f}x")


if __name__ == "__main__":
    main()
