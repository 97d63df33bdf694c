#!/usr/bin/env python
"""Return of trained policies on sim, ``default`` and ``harsh`` (one row per policy folder).

Each policy runs one episode per seed on each variant with common seeds
(:func:`sim2real.evaluate_gap`, no attribution); prints a Markdown table of mean
returns and writes the rows as JSON lines to ``--out`` (appended), for the ablation
table of docs/robustify.md.

    python scripts/robustify_eval.py --task Hopper --seeds 100-129 runs/exp/hopper_warm_dr
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def evaluate(task: str, policy: Path, seeds: list[int]) -> dict:
    import torch

    import sim2real

    torch.set_num_threads(1)
    report = sim2real.evaluate_gap(
        str(policy),
        task,
        seeds=seeds,
        real="default",
        extra=["harsh"],
        attribution=False,
        n_envs=16,
        progress=False,
    )
    data = report.to_json() if hasattr(report, "to_json") else report
    data = json.loads(data) if isinstance(data, str) else data
    returns = _returns(data)
    meta = json.loads((policy / "metadata.json").read_text())
    return {
        "policy": str(policy),
        "task": task,
        "timesteps": meta.get("timesteps_done"),
        "history": meta.get("history"),
        "asymmetric": meta.get("asymmetric"),
        "init_from": meta.get("init_from"),
        "randomization": meta.get("randomization_source"),
        "adr": meta.get("adr_source"),
        "train_return": (meta.get("train_episodes") or {}).get("return_mean"),
        **returns,
    }


def _returns(data: dict) -> dict:
    """Mean return per variant from a gap report's JSON (episodes listed per variant)."""
    by_variant: dict[str, list[float]] = {}
    for episode in data.get("episodes", []):
        by_variant.setdefault(episode["variant"], []).append(episode["return"])
    if by_variant:
        return {f"{k}": round(float(np.mean(v)), 1) for k, v in by_variant.items()}
    raise KeyError(f"no episodes in the report; keys: {sorted(data)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--seeds", default="100-129")
    parser.add_argument("--out", type=Path, default=Path("runs/exp/evals.jsonl"))
    parser.add_argument("policies", nargs="+", type=Path)
    args = parser.parse_args(argv)
    from sim2real.evaluation.cli import parse_seeds

    seeds = list(parse_seeds(args.seeds))
    for policy in args.policies:
        row = evaluate(args.task, policy, seeds)
        with args.out.open("a") as file:
            file.write(json.dumps(row) + "\n")
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
