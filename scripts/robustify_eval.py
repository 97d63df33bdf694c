#!/usr/bin/env python
"""Return of trained policies on sim, ``default`` and ``harsh`` (one row per policy folder).

Each policy runs one episode per seed on each variant with common seeds
(:func:`sim2real.evaluate_gap`, no attribution); prints a Markdown table of mean
returns at the end and writes each row as a JSON line to ``--out`` (appended) as soon
as it is measured, for the ablation table of docs/robustify.md. The policy folders and
the output file are checked before any episode runs.

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
        if not (policy / "metadata.json").is_file():
            print(f"error: policy {policy}: no metadata.json (a trained policy folder is needed)",
                  file=sys.stderr)  # fmt: skip
            return 2
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.open("a").close()
    except OSError as error:
        print(f"error: --out {args.out}: cannot append to it ({error.strerror})", file=sys.stderr)
        return 2
    rows = []
    for policy in args.policies:
        row = evaluate(args.task, policy, seeds)
        print(json.dumps(row), flush=True)
        with args.out.open("a") as file:
            file.write(json.dumps(row) + "\n")
        rows.append(row)
    print("| policy | sim | default | harsh |\n|---|---|---|---|")
    for row in rows:
        cells = " | ".join(f"{row.get(v, float('nan')):,.0f}" for v in ("sim", "default", "harsh"))
        print(f"| {row['policy']} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
