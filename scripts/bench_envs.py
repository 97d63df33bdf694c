"""Per-step cost of each real variant against its sim variant, measured interleaved.

    python scripts/bench_envs.py [--tasks Hopper HalfCheetah] [--presets default harsh]

Sim and real envs of a task step in alternating blocks of the same random
actions in one process, so machine noise hits both alike; the ratio is the
median over blocks of real time / sim time (episodes restart when they end, so
resets count too). Target (issue 8): <= 1.15x for `default` on every task.

``--clock cpu`` times each block by this thread's CPU time instead of the wall
clock: on a machine shared with other jobs the wall clock also counts the time
the benchmark waits for a core, which the CPU clock leaves out.

The ``fastest`` column compares each env's fastest block: on a machine shared
with other jobs, the fastest block is the one least disturbed by them.

``--split`` separates the two parts of the ratio with a third env: the plain sim
env (no SkewedEnv) whose model carries the preset's dynamics edits (masses,
friction, gears, ...). ``physics`` = edited / sim is what the preset's physics
itself costs (a heavier, less grippy robot can take the solver more or less work
per step than the nominal one); ``pipeline`` = real / edited is the cost of the
wrapper and its per-step pipeline (actuation, sensing, timing) on the same physics,
net of the end-of-step observation a real variant with a mid-step reading does not
compute (its policy receives the mid-step reading instead), which can put it below 1.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

import sim2real

CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def time_block(env: gym.Env, actions: np.ndarray, clock=time.perf_counter) -> float:
    start = clock()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return clock() - start


def edited_sim(task: str, preset: str) -> gym.Env:
    """The plain sim env of ``task`` with the preset's dynamics edits written into its model
    (the edits a real variant makes at reset), and nothing else: no SkewedEnv, no pipeline."""
    from sim2real.skews import ModelSkews

    env = gym.make(sim2real.get_task(task).sim_id)
    spec = sim2real.get_task(task).preset(preset)
    values = {
        name.split(".", 1)[1]: value
        for name, value in spec.active().items()
        if name.startswith("dynamics.")
    }
    ModelSkews(env.unwrapped.model).apply(values)  # in place: the model keeps them
    return env


def measure(
    task: str,
    preset: str,
    blocks: int,
    block_steps: int,
    split: bool = False,
    clock: str = "wall",
) -> dict[str, float]:
    """Median us/step of sim and real (and dynamics-only), and the median ratios."""
    sim, real = sim2real.make_pair(task, real=preset)
    envs = {"sim": sim, "real": real}
    if split:
        envs["edited"] = edited_sim(task, preset)
    rng = np.random.default_rng(0)
    space = sim.action_space
    actions = rng.uniform(space.low, space.high, (block_steps, *space.shape)).astype(space.dtype)
    for env in envs.values():
        env.reset(seed=0)
        time_block(env, actions)  # warm-up, including the passive env checker's first steps
    times: dict[str, list[float]] = {name: [] for name in envs}
    ratios: dict[str, list[float]] = {"ratio": [], "physics": [], "pipeline": []}
    for _ in range(blocks):
        block = {name: time_block(env, actions, CLOCKS[clock]) for name, env in envs.items()}
        for name, value in block.items():
            times[name].append(value)
        ratios["ratio"].append(block["real"] / block["sim"])
        if split:
            ratios["physics"].append(block["edited"] / block["sim"])
            ratios["pipeline"].append(block["real"] / block["edited"])
    per_step = block_steps / 1e6
    out = {name: statistics.median(values) / per_step for name, values in times.items()}
    out.update({name: statistics.median(v) for name, v in ratios.items() if v})
    # Fastest block of each: the cost when other jobs leave the CPU and caches alone.
    out["fastest"] = min(times["real"]) / min(times["sim"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(sim2real.tasks()))
    parser.add_argument("--presets", nargs="+", default=["default", "harsh"])
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--block-steps", type=int, default=500)
    parser.add_argument("--split", action="store_true", help="also the preset's physics alone")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="time blocks by the wall clock or by this thread's CPU time",
    )
    args = parser.parse_args()
    header = f"{'task':<24} {'preset':<8} {'sim us/step':>12} {'real us/step':>13} {'ratio':>7}"
    print(header + "  fastest" + ("  physics pipeline" if args.split else ""))
    for task in args.tasks:
        for preset in args.presets:
            m = measure(task, preset, args.blocks, args.block_steps, args.split, args.clock)
            line = (
                f"{task:<24} {preset:<8} {m['sim']:>12.1f} {m['real']:>13.1f} {m['ratio']:>6.3f}x"
            )
            line += f"  {m['fastest']:6.3f}x"
            if args.split:
                line += f"  {m['physics']:6.3f}x {m['pipeline']:7.3f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
