#!/usr/bin/env python
"""Copy a trained policy folder and give it latency compensation (a Smith predictor).

The copy's ``metadata.json`` gains ``latency_compensation`` (see
:mod:`sim2real.training.compensation`); the evaluator, the benchmark and every engine
then run the policy on predicted observations. The latencies are the robot's, as the
calibration remedy measures them (``default`` preset: 20 ms observation, 10 ms action).

    python scripts/compensate_policy.py policies/Hopper/dr/seed0 policies/Hopper/dr_comp/seed0 \\
        --obs-latency 0.02 --action-latency 0.01
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a trained policy folder")
    parser.add_argument("dest", type=Path, help="the compensated copy (created)")
    parser.add_argument("--obs-latency", type=float, required=True, help="seconds")
    parser.add_argument("--action-latency", type=float, required=True, help="seconds")
    parser.add_argument("--note", default="the default robot's latency, as calibration measures it")
    args = parser.parse_args(argv)
    if not (args.source / "model.zip").is_file():
        print(f"error: source {args.source} holds no model.zip", file=sys.stderr)
        return 2
    args.dest.mkdir(parents=True, exist_ok=True)
    for name in ("model.zip", "vecnormalize.pkl"):
        if (args.source / name).is_file():
            shutil.copy2(args.source / name, args.dest / name)
    meta = json.loads((args.source / "metadata.json").read_text())
    meta["latency_compensation"] = {
        "obs_latency_s": args.obs_latency,
        "action_latency_s": args.action_latency,
        "source": args.note,
    }
    meta["compensated_from"] = str(args.source)
    (args.dest / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{args.dest}: {args.source} with latency compensation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
