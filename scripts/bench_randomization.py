"""Benchmark domain randomization on Hopper: the cost of a randomized reset and of training.

(a) A reset that draws a full sample of the shipped spec
    (configs/randomization/hopper.yaml: every dynamics, actuation, sensing and
    timing field) and applies it in place, against rebuilding the model from
    XML with the same values (``MjModel.from_xml_path``, the dynamics values
    written into it, ``mj_setConst`` on a preallocated ``MjData``). Two
    in-place figures: the whole ``env.reset()`` (draw, dynamics, sensing and
    timing pipeline, and the upstream env's own reset, which a rebuild would
    need as well), and the in-place dynamics edit alone, which is what a
    rebuild replaces. Target: >= 20x. The upstream env's own reset is timed
    too (``mj_resetData``, the task's initial-state noise, ``mj_forward``, its
    observation): what every reset costs before any skew.
(b) PPO training throughput (env steps per CPU second of ``learn()``) on Hopper
    with randomization on against off, short runs interleaved; medians are
    compared. Target: >= 0.95x.

All times are CPU time of this process (``time.process_time``), which other
jobs on a shared machine disturb less than wall time; torch runs on one
thread. Run from the repository root (about two minutes)::

    python scripts/bench_randomization.py
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
from sim2real.skewed_env import find_skewed_env
from sim2real.skews import ModelSkews

TASK = "Hopper"
# PPO as in configs/train/hopper_ppo.yaml, with shorter rollouts so that each is timed alone.
PPO_KWARGS = {"n_steps": 1024, "batch_size": 64, "n_epochs": 10, "learning_rate": 3e-4}


def rebuild_from_xml(xml: str, draws: dict, scratch: mujoco.MjData) -> mujoco.MjModel:
    """Compile the model afresh and write one sample's dynamics values into it."""
    model = mujoco.MjModel.from_xml_path(xml)
    rebuild_from_xml_values(model, draws, scratch)
    return model


def rebuild_env(env: gym.Env, xml: str, draws: dict) -> None:
    """A randomized reset by rebuilding: the model compiled afresh with one sample's dynamics
    values, its own ``MjData``, then ``env``'s (a plain env of the task) reset on the pair."""
    base = env.unwrapped
    model = mujoco.MjModel.from_xml_path(xml)
    data = mujoco.MjData(model)
    rebuild_from_xml_values(model, draws, data)
    base.model, base.data = model, data
    env.reset()


def rebuild_from_xml_values(model: mujoco.MjModel, draws: dict, scratch: mujoco.MjData) -> None:
    """Write one sample's dynamics values into a freshly compiled ``model``, then
    ``mj_setConst``."""
    model.geom_friction[:, 0] *= draws["dynamics.friction_scale"]
    mass = np.asarray(draws["dynamics.mass_scale"])
    model.body_mass[:] *= mass
    model.body_inertia[:] *= mass[:, None]
    model.dof_damping[:] *= draws["dynamics.damping_scale"]
    model.actuator_gear[:] *= np.asarray(draws["dynamics.actuator_strength"])[:, None]
    mujoco.mj_setConst(model, scratch)


def bench_reset(n: int, block: int = 25) -> dict[str, float]:
    """Median CPU seconds of a reset, its dynamics edit, and a rebuild from XML.

    The three are timed in alternating blocks of ``block`` repetitions, so that
    they share the machine's load without evicting each other from the caches.
    """
    env = sim2real.make(TASK, randomization=config_path(TASK))
    upstream = find_skewed_env(env).env  # the env under the skews: its own reset alone
    xml = env.unwrapped.fullpath
    scratch = mujoco.MjData(mujoco.MjModel.from_xml_path(xml))
    edits = ModelSkews(mujoco.MjModel.from_xml_path(xml))  # the same edit, on a model of its own
    plain = gym.make(f"{TASK}-v5", xml_file=xml)  # the plain env, for a rebuild-based reset
    plain.reset(seed=0)
    env.reset(seed=0)
    times: dict[str, list[float]] = {
        "reset": [], "dynamics": [], "rebuild": [], "upstream": [], "rebuild_env": [],
    }  # fmt: skip
    for _ in range(-(-n // block) + 1):  # the first block warms up
        samples = []
        for _ in range(block):
            start = time.process_time()
            env.reset()
            times["reset"].append(time.process_time() - start)
            samples.append(env.source.drawn)
        for _ in range(block):
            start = time.process_time()
            upstream.reset()
            times["upstream"].append(time.process_time() - start)
        for draws in samples:
            values = {
                name.split(".")[1]: np.asarray(value)
                for name, value in draws.items()
                if name.startswith("dynamics.")
            }
            edits.restore()  # so that the edit below writes every value afresh
            start = time.process_time()
            edits.apply(values)  # the in-place edit that reset made
            times["dynamics"].append(time.process_time() - start)
            start = time.process_time()
            rebuild_from_xml(xml, draws, scratch)
            times["rebuild"].append(time.process_time() - start)
            start = time.process_time()
            rebuild_env(plain, xml, draws)
            times["rebuild_env"].append(time.process_time() - start)
    drawn = env.source.drawn
    print(f"  a sample draws {len(drawn)} fields: {', '.join(drawn)}")
    env.close()
    plain.close()
    out = {key: statistics.median(values[block:]) for key, values in times.items()}
    # The fastest tenth: what the code costs when other jobs leave the CPU and caches alone.
    out.update({f"{key}_p10": float(np.percentile(v[block:], 10)) for key, v in times.items()})
    # The mean: every reset counted, the one in 64 that draws the next block of points included.
    out.update({f"{key}_mean": statistics.fmean(v[block:]) for key, v in times.items()})
    # Paired: the ratio of each round's medians (a round's resets and rebuilds run within a few
    # tens of milliseconds of each other), then the median over rounds.
    rounds = range(1, len(times["reset"]) // block)
    out["paired"] = statistics.median(
        statistics.median(times["rebuild"][r * block : (r + 1) * block])
        / statistics.median(times["reset"][r * block : (r + 1) * block])
        for r in rounds
    )
    return out


def bench_ppo(rollouts: int) -> dict[str, list[float]]:
    """Env steps per CPU second of PPO ``learn()``, randomization off and on.

    Two PPO learners train side by side, one rollout-and-update at a time in
    alternating order, so that both see the same machine load; the first
    rollout of each is a warm-up.
    """
    makers: dict[str, Callable[[], gym.Env]] = {
        "off": lambda: gym.make(f"sim2real/{TASK}-sim-v0"),
        "on": lambda: sim2real.make(TASK, randomization=config_path(TASK)),
    }
    learners = {
        side: PPO("MlpPolicy", DummyVecEnv([lambda make=make: Monitor(make())]), seed=0,
                  device="cpu", **PPO_KWARGS)
        for side, make in makers.items()
    }  # fmt: skip
    steps = PPO_KWARGS["n_steps"]
    rates: dict[str, list[float]] = {side: [] for side in learners}
    for rollout in range(rollouts + 1):
        for side in ("off", "on") if rollout % 2 == 0 else ("on", "off"):
            start = time.process_time()
            learners[side].learn(total_timesteps=steps, reset_num_timesteps=False)
            if rollout:
                rates[side].append(steps / (time.process_time() - start))
    for learner in learners.values():
        learner.get_env().close()
    return rates


def bench_resets(resets: int) -> None:
    print(f"(a) reset with a full randomized sample, {TASK}, {resets} resets per side")
    t = bench_reset(resets)
    rebuild = t["rebuild"]
    print(f"  rebuild from XML + apply values        : {rebuild * 1e6:8.1f} us")
    print(
        f"  in place, whole env.reset()            : {t['reset'] * 1e6:8.1f} us"
        f"  -> rebuild is {rebuild / t['reset']:5.1f}x slower  (target >= 20x)"
    )
    print(
        f"  in place, the dynamics edit of a reset : {t['dynamics'] * 1e6:8.1f} us"
        f"  -> rebuild is {rebuild / t['dynamics']:5.1f}x slower"
    )
    print(
        f"  the upstream env's own reset alone     : {t['upstream'] * 1e6:8.1f} us"
        f"  (part of the whole reset above; the skews' share: "
        f"{(t['reset'] - t['upstream']) * 1e6:.1f} us)"
    )
    whole = t["rebuild_env"]
    print(
        f"  like for like, a rebuild-based reset   : {whole * 1e6:8.1f} us"
        f"  -> {whole / t['reset']:5.1f}x the whole reset (both pay the env's reset; "
        "this one a new MjData too)"
    )
    fast = t["rebuild_p10"] / t["reset_p10"]
    print(
        f"  fastest tenth of each (a shared machine's contention removed): rebuild "
        f"{t['rebuild_p10'] * 1e6:.1f} us, reset {t['reset_p10'] * 1e6:.1f} us -> {fast:.1f}x"
    )
    print(f"  paired by round (median of each round's rebuild / reset medians): {t['paired']:.1f}x")
    print(
        f"  mean of every reset (the 1 in 64 that draws a block of points included): rebuild "
        f"{t['rebuild_mean'] * 1e6:.1f} us, reset {t['reset_mean'] * 1e6:.1f} us -> "
        f"{t['rebuild_mean'] / t['reset_mean']:.1f}x"
    )


def bench_training(rollouts: int) -> None:
    print(f"(b) PPO on {TASK}, {rollouts} rollouts of {PPO_KWARGS['n_steps']} steps per side")
    rates = bench_ppo(rollouts)
    for side, values in rates.items():
        print(
            f"  randomization {side:<3}: " + " ".join(f"{v:6.0f}" for v in values) + " steps/CPU-s"
        )
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(f"  median off: {off:7.1f}, on: {on:7.1f} steps/CPU-s")
    print(f"  ratio on / off: {on / off:.3f}x  (target >= 0.95x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resets", type=int, default=300, help="resets timed per side (a)")
    parser.add_argument("--rollouts", type=int, default=10, help="PPO rollouts timed per side (b)")
    parser.add_argument("--parts", nargs="+", choices=["a", "b"], default=["a", "b"],
                        help="which measurements to run")  # fmt: skip
    args = parser.parse_args()
    if args.resets < 1 or args.rollouts < 1:
        parser.error("--resets and --rollouts must be at least 1")
    torch.set_num_threads(1)

    if "a" in args.parts:
        bench_resets(args.resets)
    if "b" in args.parts:
        bench_training(args.rollouts)


if __name__ == "__main__":
    main()
