"""``sim2real monitor``: run the skew monitor over recorded logs, write a report and a plot.

Light on import: options are checked before torch, mujoco or gymnasium load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sim2real import cli_options

EXAMPLE = """example:
  sim2real monitor --task Hopper --logs logs/hopper-real --out runs/monitor-hopper \\
      --noise 0.01 --policy policies/Hopper/sim/seed0 --save-monitor runs/hopper-monitor.json

The monitor is prepared on the sim variant (PREPARE_STEPS control steps driven by
--policy, or uniform random commands without one) for the stated sensor noise, or
loaded with --monitor. Logs: a folder in format sim2real.logs/1 (metadata.json and
episode_XXXX.npz with observations, actions, times). Writes OUT/report.json,
OUT/report.md and OUT/monitor.png (the statistic over time, the alarm level, alarms
and the suspect)."""


def _noise(text: str) -> float | list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--noise must be a number or comma-separated numbers (one per dimension), got {text!r}"
        ) from None
    if any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"--noise must be >= 0, got {text!r}")
    return values[0] if len(values) == 1 else values


def _episodes(logs_path: Path, task: str) -> list[tuple]:
    try:
        from sim2real.remedies.record import load_logs
    except ImportError:  # pragma: no cover - the calibration helper's loader not present
        return _read_logs(logs_path)
    logs = load_logs(logs_path, task)
    return [(e.observations, e.actions) for e in logs]


def _read_logs(path: Path) -> list[tuple]:
    """The ``sim2real.logs/1`` folder format, read directly (fallback)."""
    import json

    import numpy as np

    meta = path / "metadata.json"
    if not meta.is_file():
        raise ValueError(f"--logs: {str(path)!r} has no metadata.json (format sim2real.logs/1)")
    if json.loads(meta.read_text()).get("format") != "sim2real.logs/1":
        raise ValueError(f"--logs: {meta} is not format sim2real.logs/1")
    out = []
    for file in sorted(path.glob("episode_*.npz")):
        with np.load(file) as raw:
            out.append((np.asarray(raw["observations"]), np.asarray(raw["actions"])))
    return out


def _run(args: argparse.Namespace) -> int:
    from sim2real.tasks import get_task

    task = get_task(args.task).name  # a bad task is refused before anything loads
    if not args.logs.is_dir():
        raise ValueError(f"--logs: no such folder {str(args.logs)!r}")
    if args.monitor is not None and not args.monitor.is_file():
        raise ValueError(f"--monitor: no such file {str(args.monitor)!r}")
    episodes = _episodes(args.logs, task)
    if not episodes:
        raise ValueError(f"--logs: {str(args.logs)!r} holds no episode_*.npz")
    from sim2real.remedies import monitor_report
    from sim2real.remedies.monitor import SkewMonitor

    if args.monitor is not None:
        monitor = SkewMonitor.load(args.monitor)
        if monitor.task != task:
            raise ValueError(f"--monitor was prepared for {monitor.task}, not {task}")
    else:
        print(f"preparing the monitor on {args.prepare_steps} sim steps of {task} ...", flush=True)
        monitor = SkewMonitor(
            task,
            args.false_alarm_rate,
            args.noise,
            policy=args.policy,
            prepare_steps=args.prepare_steps,
            progress=cli_options.progress_enabled(args) is not False,
        )
    if args.save_monitor is not None:
        monitor.save(args.save_monitor)
    report = monitor_report.run_on_logs(monitor, episodes)
    paths = monitor_report.write(report, args.out)
    print(monitor_report.to_markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sim2real monitor``."""
    parser = subparsers.add_parser(
        "monitor",
        help="detect in recorded logs that the world is not the simulator, and name the skew",
        description="Run the skew monitor over recorded logs: a sequential test on the "
        "residuals of the simulator re-anchored to each observation, with the suspect skew "
        "and its size.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", required=True, help="a built-in task (see `sim2real list`)")
    parser.add_argument("--logs", type=Path, required=True, help="a log folder (sim2real.logs/1)")
    cli_options.add_out(parser, "runs/monitor", help="output folder (default: runs/monitor)")
    parser.add_argument(
        "--monitor", type=Path, default=None, help="a monitor saved with --save-monitor"
    )
    parser.add_argument(
        "--save-monitor", type=Path, default=None, help="write the prepared monitor here (JSON)"
    )
    parser.add_argument(
        "--noise",
        type=_noise,
        default=None,
        help="sensor noise of the stream, one number or one per dimension "
        "(default: the task's default preset's)",
    )
    parser.add_argument(
        "--false-alarm-rate",
        type=cli_options.probability,
        default=1e-4,
        help="alarms per control step allowed on sim (default: 1e-4)",
    )
    parser.add_argument(
        "--policy", default=None, help="drives the sim episodes of preparation (default: random)"
    )
    parser.add_argument(
        "--prepare-steps",
        type=cli_options.positive_int,
        default=50_000,
        help="sim control steps for the thresholds (default: 50000)",
    )
    cli_options.add_no_progress(parser)
    parser.set_defaults(func=_run)
