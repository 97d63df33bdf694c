"""Benchmark domain randomization on Hopper: the cost of a randomized reset and of training.

(a) One reset that draws and applies a full sample of the shipped spec
    (configs/randomization/hopper.yaml: every dynamics, actuation, sensing and
    timing field) in place, against rebuilding the model from XML with the same
    dynamics values (``MjModel.from_xml_path`` + writing the values +
    ``mj_setConst`` on a preallocated ``MjData``). The rebuild side leaves out
    everything else a reset does (drawing, the sensing and timing pipeline,
    the env's own reset), so the ratio is a lower bound. Target: >= 20x.
(b) PPO training throughput (env steps per second, ``learn()`` only) on Hopper
    with randomization on against off, short runs interleaved so that both
    see the same machine load; medians are compared. Target: >= 0.95x.

Run from the repository root::

    python scripts/bench_randomization.py

Torch runs on one thread to keep the benchmark modest on a shared machine;
the whole run takes about two minutes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import mujoco
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import sim2real
from sim2real.randomization import config_path

TASK = "Hopper"
# PPO as in configs/train/hopper_ppo.yaml, with shorter rollouts so that a run is short.
PPO_KWARGS = {"n_steps": 1024, "batch_size": 64, "n_epochs": 10, "learning_rate": 3e-4}


def rebuild_from_xml(xml: str, draws: dict, scratch: mujoco.MjData) -> mujoco.MjModel:
    """Compile the model afresh and write one sample's dynamics values into it."""
    model = mujoco.MjModel.from_xml_path(xml)
    model.geom_friction[:, 0] *= draws["dynamics.friction_scale"]
    mass = np.asarray(draws["dynamics.mass_scale"])
    model.body_mass[:] *= mass
    model.body_inertia[:] *= mass[:, None]
    model.dof_damping[:] *= draws["dynamics.damping_scale"]
    model.actuator_gear[:] *= np.asarray(draws["dynamics.actuator_strength"])[:, None]
    mujoco.mj_setConst(model, scratch)
    return model


def bench_reset(n: int) -> tuple[float, float]:
    """Median seconds of (in-place randomized reset, rebuild from XML), interleaved."""
    env = sim2real.make(TASK, randomization=config_path(TASK))
    xml = env.unwrapped.fullpath
    scratch = mujoco.MjData(mujoco.MjModel.from_xml_path(xml))
    env.reset(seed=0)
    for _ in range(20):  # warm-up
        env.reset()
        rebuild_from_xml(xml, env.episode_draws, scratch)
    in_place, rebuild = [], []
    for _ in range(n):
        start = time.perf_counter()
        env.reset()
        in_place.append(time.perf_counter() - start)
        start = time.perf_counter()
        rebuild_from_xml(xml, env.episode_draws, scratch)
        rebuild.append(time.perf_counter() - start)
    fields = ", ".join(name.split(".")[1] for name in env.episode_draws)
    print(f"  one sample draws: {fields}")
    env.close()
    return statistics.median(in_place), statistics.median(rebuild)


def ppo_steps_per_second(make_env: Callable[[], gym.Env], steps: int, seed: int) -> float:
    venv = DummyVecEnv([lambda: Monitor(make_env())])
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", **PPO_KWARGS)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    elapsed = time.perf_counter() - start
    venv.close()
    return model.num_timesteps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resets", type=int, default=300, help="resets timed per side (a)")
    parser.add_argument("--ppo-steps", type=int, default=4096, help="env steps per PPO run (b)")
    parser.add_argument("--repeats", type=int, default=3, help="PPO runs per side, interleaved")
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"(a) reset with a full randomized sample, {TASK}, {args.resets} resets per side")
    in_place, rebuild = bench_reset(args.resets)
    print(f"  in place (DomainRandomization.reset): {in_place * 1e6:8.1f} us  (median)")
    print(f"  rebuild from XML + apply values     : {rebuild * 1e6:8.1f} us  (median)")
    print(f"  ratio rebuild / in place            : {rebuild / in_place:8.1f}x  (target >= 20x)")

    print(f"(b) PPO on {TASK}, {args.ppo_steps} steps per run, {args.repeats} runs per side")
    runs: dict[str, list[float]] = {"off": [], "on": []}
    makers = {
        "off": lambda: gym.make(f"sim2real/{TASK}-sim-v0"),
        "on": lambda: sim2real.make(TASK, randomization=config_path(TASK)),
    }
    for repeat in range(args.repeats):
        for side in ("off", "on") if repeat % 2 == 0 else ("on", "off"):
            rate = ppo_steps_per_second(makers[side], args.ppo_steps, seed=repeat)
            runs[side].append(rate)
            print(f"  run {repeat + 1} randomization {side:<3}: {rate:7.1f} steps/s")
    off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
    print(f"  median off: {off:7.1f} steps/s, on: {on:7.1f} steps/s")
    print(f"  ratio on / off: {on / off:.3f}x  (target >= 0.95x)")


if __name__ == "__main__":
    main()
