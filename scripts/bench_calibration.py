"""Benchmark calibration against hidden robots, and close the loop on ``harsh``.

For each task, ``--settings`` hidden real variants are drawn from ``--seed``
(dynamics scales, latencies on the substep grid, sensor noise ``--noise``); each
is logged (``--episodes`` x ``--steps``, the shipped sim-trained policy plus a
sine excitation) and calibrated from its logs alone. The table gives median
relative errors, how often the total latency is exact and the split within one
substep, the coverage of the 95 % intervals, and the time per calibration (wall
and CPU seconds: this machine is shared, so wall time is contended).

``--close-loop`` then logs the ``harsh`` preset, calibrates it and runs
:func:`sim2real.evaluate_gap` with the hidden robot as ``real`` and the
calibrated spec as an extra variant: the calibrated sim's gap to the robot
against the nominal sim's.

    python scripts/bench_calibration.py --tasks Hopper Walker2d HalfCheetah --settings 10
    python scripts/bench_calibration.py --tasks Hopper --settings 3 --close-loop Hopper Walker2d
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import sim2real
from sim2real.paths import data_dir
from sim2real.remedies.calibration import Calibration, calibrate
from sim2real.remedies.record import record
from sim2real.tasks import get_task

SCALES = {  # the hidden robot's range per dynamics scale (Tan 2018, Peng 2018)
    "mass_scale": (0.8, 1.25),
    "friction_scale": (0.6, 1.3),
    "damping_scale": (0.7, 1.5),
    "actuator_strength": (0.8, 1.2),
}
LATENCY_S = {"obs_latency_s": (0.0, 0.03), "action_latency_s": (0.0, 0.02)}
TARGETS = {  # median relative error targets of the issue
    "mass_scale": 0.02,
    "actuator_strength": 0.02,
    "damping_scale": 0.05,
    "friction_scale": 0.08,
}


def hidden_settings(task: str, count: int, seed: int, noise: float) -> list[dict]:
    """``count`` hidden robots of ``task``, reproducible from ``seed``."""
    env = sim2real.make(task).unwrapped
    substep = float(env.model.opt.timestep)
    env.close()
    rng = np.random.default_rng([seed, sum(map(ord, task))])
    settings = []
    for _ in range(count):
        dynamics = {k: round(float(rng.uniform(*r)), 4) for k, r in SCALES.items()}
        timing = {
            k: int(rng.integers(round(a / substep), round(b / substep) + 1)) * substep
            for k, (a, b) in LATENCY_S.items()
        }
        settings.append({"dynamics": dynamics, "timing": timing, "sensing": {"noise_std": noise}})
    return settings


def log_robot(task: str, spec: dict, episodes: int, steps: int, seed: int):
    kwargs = {} if task == "HalfCheetah" else {"terminate_when_unhealthy": False}
    env = sim2real.make(task, skews=spec, **kwargs)
    policy = data_dir("policies") / task / "sim" / "seed0"
    try:
        return record(
            policy,
            env,
            seeds=range(seed, seed + episodes),
            max_steps=steps,
            excitation="sine",
            amplitude=0.3,
        )
    finally:
        env.close()


def score(cal: Calibration, spec: dict, substep: float) -> dict:
    """Relative errors, latency exactness and interval coverage of one calibration."""
    row: dict = {"errors": {}, "covered": {}}
    for name, truth in spec["dynamics"].items():
        dotted = f"dynamics.{name}"
        row["errors"][name] = abs(cal.estimates[dotted] - truth) / truth
        interval = cal.intervals.get(dotted)
        row["covered"][name] = bool(interval and interval[0] <= truth <= interval[1])
    obs = round(spec["timing"]["obs_latency_s"] / substep)
    act = round(spec["timing"]["action_latency_s"] / substep)
    row["total_exact"] = cal.delay["total_substeps"] == obs + act
    row["split_within_one"] = abs(cal.delay["obs_substeps"] - obs) <= 1
    for name, truth_substeps in (("timing.obs_latency_s", obs), ("timing.action_latency_s", act)):
        interval = cal.intervals.get(name)
        row["covered"][name] = bool(
            interval and interval[0] - 1e-9 <= truth_substeps * substep <= interval[1] + 1e-9
        )
    row["latency"] = f"{obs}+{act} -> {cal.delay['obs_substeps']}+{cal.delay['action_substeps']}"
    row["time_s"] = cal.diagnostics["time_s"]
    row["unidentified"] = cal.unidentified
    return row


def bench_task(task: str, args: argparse.Namespace) -> dict:
    """Every hidden setting of ``task``; each row is appended to ``rows-<task>.jsonl`` as it
    finishes, and a rerun with ``--resume`` skips the settings already there."""
    substep = float(sim2real.make(task).unwrapped.model.opt.timestep)
    path = args.out / f"rows-{task}.jsonl"
    done: dict[int, dict] = {}
    if args.resume and path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            done[row["index"]] = row
    elif path.is_file():
        path.unlink()
    rows = []
    for index, spec in enumerate(hidden_settings(task, args.settings, args.seed, args.noise)):
        if args.indices and index not in args.indices:
            continue
        if index in done:
            rows.append(done[index])
            continue
        logs = log_robot(task, spec, args.episodes, args.steps, seed=1000 * index)
        cpu = time.process_time()
        cal = calibrate(task, logs, threads=args.threads)
        row = score(cal, spec, substep)
        row["cpu_s"] = round(time.process_time() - cpu, 1)
        row["load"] = round(os.getloadavg()[0], 1)
        row["index"], row["truth"], row["estimates"] = index, spec, cal.estimates
        row["intervals"] = cal.intervals
        row["diagnostics"] = {
            k: cal.diagnostics.get(k)
            for k in ("bootstrap_sd", "selection_shift", "gauss_newton_se", "interval_t",
                      "windows", "windows_dropped", "cost", "rollout_batches")
        }  # fmt: skip
        rows.append(row)
        with path.open("a") as stream:
            stream.write(json.dumps(row, default=float) + "\n")
        errs = " ".join(f"{k[:4]} {v:6.2%}" for k, v in row["errors"].items())
        print(
            f"  {task} setting {index}: {errs}  total exact {row['total_exact']}  "
            f"covered {sum(row['covered'].values())}/{len(row['covered'])}  "
            f"wall {row['time_s']:.0f} s  cpu {row['cpu_s']:.0f} s  load {row['load']}",
            flush=True,
        )
    return {"task": task, "rows": rows}


COVERED = (*SCALES, "timing.obs_latency_s", "timing.action_latency_s")


def summary_table(results: list[dict]) -> str:
    """Median relative errors, latency exactness, coverage and time per task (Markdown)."""
    head = (
        "| task | settings | mass | friction | damping | motor | total latency exact | "
        "split within 1 | coverage | wall s (median) | CPU s (median) | load (median) |"
    )
    lines = [head, "|" + "---|" * 12]
    for result in results:
        rows = result["rows"]
        if not rows:
            continue
        med = {k: np.median([r["errors"][k] for r in rows]) for k in SCALES}
        covered = [c for r in rows for c in r["covered"].values()]
        lines.append(
            f"| {result['task']} | {len(rows)} | "
            + " | ".join(f"{med[k]:.2%}" for k in SCALES)
            + f" | {sum(r['total_exact'] for r in rows)}/{len(rows)}"
            + f" | {sum(r['split_within_one'] for r in rows)}/{len(rows)}"
            + f" | {sum(covered)}/{len(covered)} ({np.mean(covered):.0%})"
            + f" | {np.median([r['time_s'] for r in rows]):.0f}"
            + f" | {np.median([r['cpu_s'] for r in rows]):.0f}"
            + f" | {np.median([r.get('load', float('nan')) for r in rows]):.1f} |"
        )
    lines.append(
        "targets: mass, motor <= 2 %; damping <= 5 %; friction <= 8 %; total latency "
        "exact >= 90 %; coverage >= 85 %; < 60 s per Hopper calibration"
    )
    lines += ["", "Coverage of the 95 % intervals per field (settings covering the truth):",
              "", "| task | " + " | ".join(k.split(".")[-1] for k in COVERED) + " |",
              "|" + "---|" * (len(COVERED) + 1)]  # fmt: skip
    for result in results:
        rows = result["rows"]
        if rows:
            cells = [f"{sum(r['covered'][k] for r in rows)}/{len(rows)}" for k in COVERED]
            lines.append(f"| {result['task']} | " + " | ".join(cells) + " |")
    lines += ["", "Per setting (relative error of each scale; latency in substeps, truth -> fit):",
              "", "| task | setting | mass | friction | damping | motor | obs+act | "
              "unidentified | covered | wall s | CPU s |", "|" + "---|" * 11]  # fmt: skip
    for result in results:
        for r in result["rows"]:
            errors = " | ".join(f"{r['errors'][k]:.2%}" for k in SCALES)
            lines.append(
                f"| {result['task']} | {r.get('index', '')} | {errors} | {r.get('latency', '')} | "
                f"{', '.join(u.split('.')[-1] for u in r['unidentified']) or '-'} | "
                f"{sum(r['covered'].values())}/{len(r['covered'])} | {r['time_s']:.0f} | "
                f"{r['cpu_s']:.0f} |"
            )
    return "\n".join(lines)


def close_loop(task: str, args: argparse.Namespace) -> dict:
    """Log ``harsh``, calibrate, and compare the calibrated and the nominal sim's gaps."""
    from sim2real.evaluation.gap import evaluate_gap

    hidden = get_task(task).preset("harsh")
    logs = log_robot(task, hidden.to_dict(), args.episodes, args.steps, seed=0)
    cal = calibrate(task, logs, threads=args.threads)
    cal.save(args.out / f"calibration-{task}-harsh")
    policy = data_dir("policies") / task / "sim" / "seed0"
    report = evaluate_gap(
        str(policy),
        task,
        seeds=range(100, 100 + args.loop_seeds),
        real=hidden,
        extra=[cal.spec],
        attribution=False,
        progress=False,
    )
    group = next(iter(report.groups.values()))
    names = {v.role: name for name, v in report.variants.items()}
    sim_name, real_name = names["sim"], names["real"]
    extra_name = next(n for n, v in report.variants.items() if v.role not in ("sim", "real"))
    mean = {n: group.returns[n].mean.value for n in (sim_name, real_name, extra_name)}
    nominal_gap = abs(mean[sim_name] - mean[real_name])
    calibrated_gap = abs(mean[extra_name] - mean[real_name])
    return {
        "task": task,
        "returns": {
            "nominal sim": mean[sim_name],
            "robot (harsh)": mean[real_name],
            "calibrated sim": mean[extra_name],
        },
        "nominal_gap": nominal_gap,
        "calibrated_gap": calibrated_gap,
        "ratio": calibrated_gap / nominal_gap if nominal_gap else float("nan"),
        "calibration": cal.estimates,
        "unidentified": cal.unidentified,
    }


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="*", default=["Hopper", "Walker2d", "HalfCheetah"])
    parser.add_argument("--settings", type=int, default=10)
    parser.add_argument("--indices", type=int, nargs="*", default=[], help="run only these")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2, help="MuJoCo rollout threads")
    parser.add_argument("--resume", action="store_true", help="keep the settings already run")
    parser.add_argument("--close-loop", nargs="*", default=[], metavar="TASK")
    parser.add_argument("--loop-seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_calibration"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"bench_calibration: {vars(args)}", flush=True)
    results = [bench_task(task, args) for task in args.tasks]
    if results:
        table = summary_table(results)
        print(table, flush=True)
        (args.out / f"table-{'-'.join(args.tasks)}.md").write_text(table + "\n")
    loops = []
    for task in args.close_loop:
        loop = close_loop(task, args)
        loops.append(loop)
        r = loop["returns"]
        print(
            f"close the loop on {task} harsh: nominal sim {r['nominal sim']:.0f}, robot "
            f"{r['robot (harsh)']:.0f}, calibrated sim {r['calibrated sim']:.0f}: gap "
            f"{loop['nominal_gap']:.0f} -> {loop['calibrated_gap']:.0f} "
            f"(ratio {loop['ratio']:.0%}; target <= 25 %)",
            flush=True,
        )
    (args.out / f"results-{'-'.join(args.tasks) or 'loop'}.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "tasks": results,
                "close_loop": loops,
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
