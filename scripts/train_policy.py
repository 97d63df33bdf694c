#!/usr/bin/env python
"""Train one policy with :func:`sim2real.training.train`; optionally ship it into ``policies/``.

With ``--ship DIR`` the final artefacts (model.zip, vecnormalize.pkl, metadata.json) are
copied from ``--out`` into DIR, the policy's sim return is measured (seeds 1000..1009,
deterministic actions, raw return, frozen statistics) and its entry in
``policies/manifest.yaml`` is written, together with the exact command that trained it.

    python scripts/train_policy.py --task Hopper --seed 0 --out runs/Hopper/sim/seed0 \\
        --ship policies/Hopper/sim/seed0
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

from sim2real.training import (
    METADATA_FILE,
    MODEL_FILE,
    VECNORMALIZE_FILE,
    add_train_arguments,
    evaluate_sim_return,
    train_from_args,
)

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"
MANIFEST = POLICIES / "manifest.yaml"
LOCK = REPO / "runs" / ".manifest.lock"  # runs/ is git-ignored
EVAL_SEEDS = range(1000, 1010)
MANIFEST_HEADER = (
    "# Shipped policies, written by scripts/train_policy.py --ship (see scripts/train_all.sh).\n"
    "# sim_return: raw return on the sim variant, 10 episodes with reset seeds 1000..1009,\n"
    "# deterministic actions, observation statistics frozen; mean and std over episodes.\n"
)


def ship(run_dir: Path, dest: Path, command: str) -> dict:
    """Copy a run's artefacts to ``dest``, measure its sim return and update the manifest."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, VECNORMALIZE_FILE, METADATA_FILE):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, dest / name)
    meta = json.loads((dest / METADATA_FILE).read_text())
    returns = evaluate_sim_return(dest, EVAL_SEEDS)
    entry = {
        "task": meta["task"],
        "variant": "dr" if meta["randomization"] or meta.get("adr") else "sim",
        "seed": meta["seed"],
        "algo": meta["algo"],
        "path": dest.resolve().relative_to(POLICIES.resolve()).as_posix(),
        "command": command,
        "git_commit": meta["git_commit"],
        "timesteps": meta["timesteps"],
        "method": _method(meta),
        "sim_return": {
            "mean": round(float(np.mean(returns)), 1),
            "std": round(float(np.std(returns)), 1),
            "episodes": len(returns),
            "seeds": f"{EVAL_SEEDS.start}..{EVAL_SEEDS.stop - 1}",
        },
    }
    _upsert_manifest(entry)
    return entry


def _method(meta: dict) -> str:
    """A one-line account of how the policy was trained."""
    parts = [meta["algo"]]
    history = meta.get("history") or {}
    if history.get("commands") or history.get("observations"):
        parts.append(
            f"history {history.get('commands', 0)} commands"
            + (f" + {history['observations']} observations" if history.get("observations") else "")
        )
    if meta.get("asymmetric"):
        parts.append("asymmetric critic")
    if meta.get("adr"):
        parts.append(f"ADR ({meta.get('adr_source')})")
    elif meta.get("randomization"):
        parts.append(f"randomization ({meta.get('randomization_source')})")
    if meta.get("init_from"):
        parts.append(f"warm start from {meta['init_from']}")
    return ", ".join(parts)


def _upsert_manifest(entry: dict) -> None:
    """Replace (or add) the entry with the same path; safe against concurrent writers."""
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = yaml.safe_load(MANIFEST.read_text()) if MANIFEST.is_file() else None
        policies = [p for p in (data or {}).get("policies", []) if p["path"] != entry["path"]]
        policies.append(entry)
        policies.sort(key=lambda p: (p["task"], p["variant"], p["seed"]))
        body = yaml.safe_dump({"policies": policies}, sort_keys=False, width=200)
        MANIFEST.write_text(MANIFEST_HEADER + body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_arguments(parser)
    parser.add_argument("--ship", type=Path, help="copy the result into this policies/ folder")
    args = parser.parse_args(argv)
    try:
        out = train_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.ship is not None:
        command = shlex.join(["python", "scripts/train_policy.py", *(argv or sys.argv[1:])])
        entry = ship(out, args.ship, command)
        print(f"shipped {entry['path']}: sim return {entry['sim_return']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
