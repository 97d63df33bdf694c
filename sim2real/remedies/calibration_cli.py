"""``sim2real record`` and ``sim2real calibrate``: log a robot, fit the simulator to the logs.

This module imports nothing heavy: options are checked before mujoco or torch load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sim2real.cli_options import add_no_progress, add_out, add_seeds, progress_enabled

RECORD_EXAMPLE = """example:
  sim2real record --task Hopper --real harsh --policy policies/Hopper/sim/seed0 \\
      --excitation sine --seeds 0-9 --max-steps 300 --out logs/hopper-harsh

Writes OUT/metadata.json (format sim2real.logs/1) and OUT/episode_XXXX.npz holding the
observations the policy received, the commands it sent and the control timestamps; never
the true skews. The task's termination is off unless --terminate: a robot that falls keeps
being logged."""

CALIBRATE_EXAMPLE = """example:
  sim2real calibrate --task Hopper --logs logs/hopper-harsh --out calib/hopper-harsh
  sim2real evaluate --task Hopper --policy policies/Hopper/sim/seed0 \\
      --real calib/hopper-harsh/calibration.yaml

Writes OUT/calibration.yaml (the calibrated spec, usable as --real or real=),
OUT/report.json (schema sim2real.calibration/1), OUT/report.md and OUT/traces.png."""


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    rec = subparsers.add_parser(
        "record",
        help="log a robot (a real variant): observations, commands, timestamps",
        description="Run a policy and/or an excitation on a real variant and log it.",
        epilog=RECORD_EXAMPLE,
    )
    rec.add_argument("--task", required=True, help="a built-in task, e.g. Hopper")
    rec.add_argument(
        "--real", default="default", help="the robot: a preset name or a spec YAML path"
    )
    rec.add_argument("--policy", default=None, help="a saved SB3 policy folder (optional)")
    add_seeds(rec, "0-9")
    rec.add_argument(
        "--excitation",
        choices=("none", "sine", "random"),
        default="none",
        help="commands added to the policy's (sent alone without --policy)",
    )
    rec.add_argument(
        "--amplitude",
        type=float,
        default=0.3,
        help="excitation size beside a policy, as a share of half the action range",
    )
    rec.add_argument("--max-steps", type=int, default=300, help="control steps per episode")
    rec.add_argument(
        "--terminate", action="store_true", help="keep the task's termination when it falls"
    )
    add_out(rec, "runs/logs", help="log folder")
    rec.set_defaults(func=_record)

    cal = subparsers.add_parser(
        "calibrate",
        help="fit dynamics scales, latencies and noise to logs (close the gap)",
        description="Calibrate the simulator to a robot's logs by multiple shooting.",
        epilog=CALIBRATE_EXAMPLE,
    )
    cal.add_argument("--task", required=True, help="a built-in task, e.g. Hopper")
    cal.add_argument("--logs", required=True, help="a log folder (format sim2real.logs/1)")
    cal.add_argument(
        "--fields",
        default=None,
        help="comma-separated fields to fit (default: all of sim2real.remedies.calibration.FIELDS)",
    )
    cal.add_argument("--window-steps", type=int, default=None, help="steps per window (config)")
    cal.add_argument(
        "--max-latency", type=float, default=None, help="largest total latency searched, s"
    )
    cal.add_argument("--threads", type=int, default=1, help="MuJoCo rollout threads")
    add_out(cal, "runs/calibration", help="report folder")
    add_no_progress(cal)
    cal.set_defaults(func=_calibrate)


def _check_task(name: str) -> str:
    from sim2real.tasks import get_task

    return get_task(name).name


def _record(args: argparse.Namespace) -> int:
    task = _check_task(args.task)
    if args.max_steps < 1:
        raise ValueError(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.policy is None and args.excitation == "none":
        raise ValueError("--policy or --excitation sine|random is needed")
    if args.policy is not None and not Path(args.policy).exists():
        raise ValueError(f"--policy {args.policy!r}: no such file or folder")
    from sim2real.pairing import make, resolve_spec
    from sim2real.remedies.record import record, terminates_when_unhealthy
    from sim2real.tasks import get_task

    spec = resolve_spec(get_task(task), args.real)
    logs_falls = not args.terminate and terminates_when_unhealthy(task)
    kwargs = {"terminate_when_unhealthy": False} if logs_falls else {}
    env = make(task, skews=spec, **kwargs)
    try:
        logs = record(
            args.policy,
            env,
            seeds=args.seeds,
            max_steps=args.max_steps,
            excitation=None if args.excitation == "none" else args.excitation,
            amplitude=args.amplitude,
            out=args.out,
        )
    finally:
        env.close()
    print(f"logged {len(logs)} episodes, {logs.steps} steps of {task} to {args.out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    task = _check_task(args.task)
    from sim2real.remedies.calibration import _check_fields

    fields = _check_fields(args.fields) if args.fields is not None else None
    from sim2real.remedies.record import load_logs

    logs = load_logs(args.logs, task)
    from sim2real.remedies.calibration import calibrate

    show = progress_enabled(args) is not False
    cal = calibrate(
        task,
        logs,
        fields,
        window_steps=args.window_steps,
        max_latency_s=args.max_latency,
        threads=args.threads,
        log=(lambda line: print(line, flush=True)) if show else None,
    )
    cal.save(args.out)
    print(cal.to_markdown() if show else f"calibrated {task}: {args.out}")
    return 0
