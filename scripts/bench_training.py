#!/usr/bin/env python
"""PPO training throughput with randomization, history and the asymmetric critic on vs off.

Times :func:`sim2real.training.train` (environment steps per second of wall time,
``torch.set_num_threads(1)``) for the shipped PPO settings on the sim variant, then
with domain randomization + a 4-command history, the same + the asymmetric critic, with ADR
in place of the randomization, and with the shipped ``robust`` recipe (the robustify
randomization + the asymmetric critic); prints the ratios to the plain run. Each case runs
once untimed first (warm-up), then interleaved repeats, median reported. A benchmark, not a
test: numbers depend on the machine.

    python scripts/bench_training.py --task Hopper --steps 16384 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="Hopper")
    parser.add_argument("--steps", type=int, default=16384)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    import torch

    from sim2real.paths import data_dir
    from sim2real.training import train

    torch.set_num_threads(1)
    lower = args.task.lower()
    configs = data_dir("configs")
    cases = {
        "plain": {},
        "randomization+history": {  # issue 10's case: randomization and history on
            "randomization": configs / "randomization" / f"{lower}.yaml",
            "history": 4,
        },
        "randomization+history+asymmetric": {
            "randomization": configs / "randomization" / f"{lower}.yaml",
            "history": 4,
            "asymmetric": True,
        },
        "adr+history+asymmetric": {
            "adr": configs / "adr" / f"{lower}.yaml",
            "history": 4,
            "asymmetric": True,
        },
        "robust (robustify randomization+asymmetric)": {
            "randomization": configs / "robustify" / f"{lower}.yaml",
            "asymmetric": True,
        },
    }
    # One short untimed run of every case first: the first PPO update imports torch's
    # compiler stack (~2 s) and each case builds its configs once, a cost no case should carry.
    for kwargs in cases.values():
        with tempfile.TemporaryDirectory() as out:
            train(args.task, seed=0, timesteps=2048, out=Path(out), progress=False, **kwargs)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, kwargs in cases.items():
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                train(
                    args.task, seed=0, timesteps=args.steps, out=Path(out), progress=False, **kwargs
                )
                times[name].append(args.steps / (time.perf_counter() - start))
    plain = statistics.median(times["plain"])
    results = {
        name: {
            "steps_per_s": round(statistics.median(v), 1),
            "ratio_to_plain": round(statistics.median(v) / plain, 3),
            "runs": v,
        }
        for name, v in times.items()
    }
    for name, r in results.items():
        print(f"{name:<46} {r['steps_per_s']:>8.1f} steps/s  x{r['ratio_to_plain']:.2f}")
    if args.out:
        args.out.write_text(
            json.dumps({"task": args.task, "steps": args.steps, "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
