"""Benchmark of the operating envelope (issue 13): adaptive map against a dense grid.

Stages (each resumable: episodes are kept in OUT):

- ``dense``: every lattice point of a 16x16 grid, 30 episodes each, for a shipped
  InvertedPendulum policy and a Hopper policy; statuses by the same Clopper-Pearson rule.
- ``adaptive``: :func:`sim2real.remedies.envelope.envelope` on the same axes, with a budget of
  20 % of the dense grid's episodes; agreement with the dense grid on the cells the dense grid
  decides, cells called inside that the dense grid calls outside, episodes used.
- ``timing``: the 2-D Hopper map at the adaptive budget on each engine (local, batch, ray).
- ``compare``: area inside of the sim-trained and the randomization-trained Hopper policies
  on latency x friction.

    python scripts/bench_envelope.py --stage all --out runs/bench_envelope
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np
import torch

from sim2real.engines import Workload, get_engine, plan_lanes, run_workload
from sim2real.evaluation.policy import resolve_policies
from sim2real.evaluation.store import EpisodeStore
from sim2real.remedies.envelope import compare_envelopes, envelope
from sim2real.remedies.envelope_axes import check_axes, with_value
from sim2real.remedies.envelope_stats import Status, classify
from sim2real.spec import SkewSpec

CASES = {
    "InvertedPendulum": {
        "policy": "policies/InvertedPendulum/sim/seed0",
        "axes": {"sensing.noise_std": (0.0, 0.2), "actuation.noise_std": (0.0, 0.4)},
    },
    "Hopper": {
        "policy": "policies/Hopper/sim/seed0",
        "axes": {"timing.obs_latency_s": (0.0, 0.05), "dynamics.friction_scale": (0.4, 1.4)},
    },
}
# The robustified policy (ADR, a history of 4 commands, asymmetric critic) and the first
# randomization-trained one.
DR_HOPPER = {"dr": "policies/Hopper/dr/seed0", "dr_plain": "policies/Hopper/dr_plain/seed0"}
THRESHOLD, SUCCESS, CONFIDENCE = 0.8, 0.9, 0.95
DENSE_SEEDS = list(range(100, 130))
ADAPTIVE_SEEDS = list(range(100, 164))
RESOLUTION = 16
BUDGET_SHARE = 0.2


def dense_grid(task: str, case: dict, out: Path, engine: str = "local") -> dict:
    """Every lattice point x 30 seeds (plus the sim baseline on the same seeds)."""
    source = resolve_policies(case["policy"])[0]
    probe = __import__("sim2real").make(task)
    substep = float(probe.unwrapped.model.opt.timestep)
    probe.close()
    axes = check_axes(case["axes"], SkewSpec(), resolution=RESOLUTION, substep_s=substep)
    points = [tuple(p) for p in np.ndindex(*(a.size for a in axes))]
    keys = {p: ",".join(map(str, p)) for p in points}
    specs = {"sim": {}}
    for p in points:
        values = {a.field: a.values[i] for a, i in zip(axes, p, strict=True)}
        specs[keys[p]] = with_value(SkewSpec(), values).to_dict()
    header = {"task": task, "max_episode_steps": None, "dense": [a.to_dict() for a in axes]}
    store = EpisodeStore(out, json.loads(json.dumps(header)), resume=True)
    jobs = [(0, v, s) for v in specs for s in DENSE_SEEDS if (source.identity, v, s) not in store]
    started = time.perf_counter()
    if jobs:
        lanes = plan_lanes(jobs, 8)
        workload = Workload(task, specs, (source,), lanes, None, 32)
        done = [0]

        def on_episode(episode):
            store.add(episode)
            done[0] += 1
            if done[0] % 500 == 0:
                print(f"  dense {task}: {done[0]}/{len(jobs)}", flush=True)

        built = {0: source.build(32)} if engine == "local" else None
        run_workload(workload, engine=get_engine(engine, policies=built), on_episode=on_episode)
    store.close()
    seconds = time.perf_counter() - started

    def ret(v, s):
        e = store.episodes[(source.identity, v, s)]
        return np.nan if e.diverged else e.ret

    sim = np.array([ret("sim", s) for s in DENSE_SEEDS])
    mean = float(np.nanmean(sim))
    bar = mean - (1 - THRESHOLD) * abs(mean)
    grid = {}
    for p in points:
        ok = [bool(np.isfinite(r) and r >= bar) for r in (ret(keys[p], s) for s in DENSE_SEEDS)]
        grid[p] = classify(sum(ok), len(ok), SUCCESS, CONFIDENCE)
    return {
        "axes": axes,
        "status": grid,
        "episodes": len(specs) * len(DENSE_SEEDS) - len(DENSE_SEEDS),
        "run_seconds": seconds,
        "mean_sim": mean,
    }


def compare_to_dense(env_map, dense: dict) -> dict:
    grid = env_map.status_grid()
    decided = [p for p, s in dense["status"].items() if s is not Status.UNCERTAIN]
    agree = sum(grid[p] is dense["status"][p] for p in decided)
    wrong_inside = sum(
        grid[p] is Status.INSIDE and dense["status"][p] is Status.OUTSIDE for p in decided
    )
    wrong_outside = sum(
        grid[p] is Status.OUTSIDE and dense["status"][p] is Status.INSIDE for p in decided
    )
    counts = {s.value: sum(v is s for v in dense["status"].values()) for s in Status}
    dense_inside = [p for p in decided if dense["status"][p] is Status.INSIDE]
    inside_found = sum(grid[p] is Status.INSIDE for p in dense_inside)
    return {
        "dense_cells": len(dense["status"]),
        "dense_decided": len(decided),
        "dense_counts": counts,
        "agreement": agree / len(decided) if decided else float("nan"),
        "inside_where_dense_outside": wrong_inside,
        "dense_inside_called_inside": f"{inside_found}/{len(dense_inside)}",
        "outside_where_dense_inside": wrong_outside,
        "adaptive_episodes": env_map.summary["map_episodes"],
        "dense_episodes": dense["episodes"],
        "episode_share": env_map.summary["map_episodes"] / dense["episodes"],
        "adaptive_area_inside": env_map.area_inside,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stage", choices=("dense", "adaptive", "timing", "compare", "all"), default="all"
    )
    parser.add_argument("--case", choices=(*CASES, "all"), default="all")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_envelope"))
    parser.add_argument("--engines", default="local,batch,ray")
    parser.add_argument("--dense-engine", default="local")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "bench.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    cases = list(CASES) if args.case == "all" else [args.case]

    def save():
        results_path.write_text(json.dumps(results, indent=2) + "\n")

    for task in cases:
        case = CASES[task]
        if args.stage not in ("dense", "adaptive", "all"):
            break
        print(
            f"[{task}] dense grid {RESOLUTION}x{RESOLUTION} x {len(DENSE_SEEDS)} episodes "
            f"({case['policy']}, axes {case['axes']})",
            flush=True,
        )
        dense = dense_grid(task, case, args.out / f"dense_{task}", args.dense_engine)
        results.setdefault(task, {})["dense_seconds_this_run"] = dense["run_seconds"]
        save()
        if args.stage == "dense":
            continue
        budget = int(BUDGET_SHARE * dense["episodes"])
        started = time.perf_counter()
        env_map = envelope(
            case["policy"],
            task,
            case["axes"],
            THRESHOLD,
            SUCCESS,
            CONFIDENCE,
            base=None,
            budget=budget,
            seeds=ADAPTIVE_SEEDS,
            out=args.out / f"adaptive_{task}",
            resume=True,
            progress=False,
        )
        figures = compare_to_dense(env_map, dense)
        figures["adaptive_seconds_this_run"] = time.perf_counter() - started
        results[task]["adaptive"] = figures
        save()
        print(
            f"[{task}] "
            + ", ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
            ),
            flush=True,
        )

    if args.stage in ("timing", "all"):
        case = CASES["Hopper"]
        budget = int(BUDGET_SHARE * RESOLUTION * RESOLUTION * len(DENSE_SEEDS))
        timing = {}
        for engine in args.engines.split(","):
            try:
                get_engine(engine)
            except (ImportError, ModuleNotFoundError) as error:
                timing[engine] = f"not available ({error})"
                print(f"[timing] {engine}: not available ({error})", flush=True)
                continue
            started = time.perf_counter()
            env_map = envelope(
                case["policy"],
                "Hopper",
                case["axes"],
                THRESHOLD,
                SUCCESS,
                CONFIDENCE,
                base=None,
                budget=budget,
                seeds=ADAPTIVE_SEEDS,
                engine=engine,
                progress=False,
            )
            seconds = time.perf_counter() - started
            timing[engine] = {
                "seconds": seconds,
                "episodes": env_map.summary["episodes"],
                "rounds": env_map.summary["rounds"],
                "area_inside": env_map.area_inside,
            }
            print(
                f"[timing] Hopper 2-D map on {engine}: {seconds:.1f} s for "
                f"{env_map.summary['episodes']} episodes in {env_map.summary['rounds']} "
                f"rounds (area inside {env_map.area_inside:.3f})",
                flush=True,
            )
            results["timing"] = timing
            save()

    if args.stage in ("compare", "all"):
        case = CASES["Hopper"]
        budget = int(BUDGET_SHARE * RESOLUTION * RESOLUTION * len(DENSE_SEEDS))
        settings = dict(
            threshold=THRESHOLD,
            success=SUCCESS,
            confidence=CONFIDENCE,
            base=None,
            budget=budget,
            seeds=ADAPTIVE_SEEDS,
            resume=True,
            progress=False,
        )
        policies = {"sim": case["policy"], **DR_HOPPER}
        comparison = compare_envelopes(
            policies, "Hopper", case["axes"], out=args.out / "compare_Hopper", **settings
        )
        results["compare"] = comparison.to_dict()["policies"]
        save()
        print(comparison.to_markdown(), flush=True)
        common = compare_envelopes(
            policies,
            "Hopper",
            case["axes"],
            out=args.out / "compare_Hopper_common",
            common_reference=True,
            **settings,
        )
        results["compare_common_reference"] = common.to_dict()["policies"]
        save()
        print("held to the sim-trained policy's sim return:", flush=True)
        print(common.to_markdown(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
