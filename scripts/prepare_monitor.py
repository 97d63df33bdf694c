"""Prepare a skew monitor on the sim variant and save it, for the demo and for deployment.

    python scripts/prepare_monitor.py --task HalfCheetah --policy policies/HalfCheetah/sim/seed0 \
        --out policies/HalfCheetah/sim/monitor.json

The monitor learns, on sim streams driven by the policy under the task's `default` sensor
noise, the residual scale and the thresholds that hold its false-alarm rate
(DESIGN.md section 7, "Monitor"); `SkewMonitor.load(path)` then runs it with no preparation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

import sim2real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="HalfCheetah")
    parser.add_argument("--policy", default="policies/HalfCheetah/sim/seed0")
    parser.add_argument("--prepare-steps", type=int, default=50_000)
    parser.add_argument("--false-alarm-rate", type=float, default=1e-4)
    parser.add_argument("--out", type=Path, default=Path("policies/HalfCheetah/sim/monitor.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    # The commit that prepares it, read before the output is written (it may be tracked).
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    monitor = sim2real.SkewMonitor(
        args.task,
        false_alarm_rate=args.false_alarm_rate,
        policy=args.policy,
        prepare_steps=args.prepare_steps,
    )
    monitor.save(args.out)
    payload = json.loads(args.out.read_text())
    payload["made_by"] = {"command": "python " + " ".join(sys.argv), "commit": commit}
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"prepared on {monitor.calibration.steps} sim steps: {args.out}")


if __name__ == "__main__":
    main()
