"""The demo's remedy steps beyond robustify: close, monitor, restrict (DESIGN.md section 7).

Each step takes the hidden robot (the task's ``default`` preset), uses only what a
robot gives (its logs, its observation stream) or what a map of the simulator gives,
prints what it found against the truth that the demo happens to know, and writes
its report files under the demo's ``--out``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

ROBOT = "default"
LOG_EPISODES, LOG_STEPS = 5, 200  # what the robot is asked to log: 1,000 control steps
MONITOR_STEPS = 300  # control steps of the monitored episode
MONITOR_PREPARE_STEPS = 20_000  # sim steps to prepare a monitor when none is shipped
# The envelope: the two skews a lab can change most easily, mapped at a demo's budget.
ENVELOPE_AXES = {"timing.obs_latency_s": (0.0, 0.06), "dynamics.friction_scale": (0.4, 1.4)}
ENVELOPE_BUDGET, ENVELOPE_STEPS = 400, 200
OUTPUTS = ("logs", "calibration", "calibrated", "envelope")  # what these steps write in --out


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)


def robot(task: str) -> Any:
    """The hidden robot, logging even after a fall (termination off where the task has it)."""
    from sim2real.pairing import make
    from sim2real.remedies.record import terminates_when_unhealthy

    kwargs = {"terminate_when_unhealthy": False} if terminates_when_unhealthy(task) else {}
    return make(task, skews=ROBOT, **kwargs)


def close(
    task: str,
    policy: Path,
    sim_policies: list[Path],
    seeds: list[int],
    robot_return: float,
    sim_return: float,
    out: Path,
    *,
    engine: str,
    progress: bool | None,
) -> Any:
    """4. Close: log the robot, calibrate the simulator, and compare the calibrated sim's gap."""
    from sim2real.evaluation import evaluate_gap
    from sim2real.remedies.calibration import calibrate
    from sim2real.remedies.record import record
    from sim2real.tasks import get_task

    print("\n4. Close: calibrate the simulator to the robot's logs (sim2real.calibrate)")
    env = robot(task)
    try:
        logs = record(
            policy, env, seeds=range(LOG_EPISODES), max_steps=LOG_STEPS, excitation="sine",
            out=out / "logs",
        )  # fmt: skip
    finally:
        env.close()
    cal = calibrate(task, logs, seed=0)
    cal.save(out / "calibration")
    truth = get_task(task).preset(ROBOT).values()
    print(
        f"   {len(logs)} logged episodes of {LOG_STEPS} steps (policy + sine excitation), "
        f"fitted in {cal.diagnostics['time_s']:.0f} s; the truth is hidden from the fit:"
    )
    for name, value in cal.estimates.items():
        if isinstance(value, list):
            continue  # the per-dimension noise level: in the report
        interval = cal.intervals.get(name)
        shown = "unidentified" if interval is None else f"[{interval[0]:.4g}, {interval[1]:.4g}]"
        true = truth[name]
        covered = interval is not None and interval[0] - 1e-12 <= true <= interval[1] + 1e-12
        print(
            f"     {name:<28} {value:>7.4g} {shown:<22} truth {true:g}"
            f"{'' if covered else '  (outside the interval)'}"
        )
    for warning in cal.warnings:
        print(f"     warning: {warning}")
    report = evaluate_gap(
        {"sim-trained": sim_policies}, task, seeds=seeds, real=cal.spec, attribution=False,
        out=out / "calibrated", resume=(out / "calibrated" / "episodes.jsonl").exists(),
        engine=engine, progress=progress,
    )  # fmt: skip
    calibrated = report.groups["sim-trained"].returns[report.real].mean.value
    nominal_gap, calibrated_gap = abs(sim_return - robot_return), abs(calibrated - robot_return)
    share = calibrated_gap / nominal_gap if nominal_gap > 0 else float("nan")
    print(
        f"   the sim-trained policies return {robot_return:.0f} on the robot, {sim_return:.0f} in "
        f"the nominal sim and {calibrated:.0f} in the calibrated sim: the calibrated sim "
        f"predicts the robot within {calibrated_gap:.0f} ({share:.0%} of the nominal sim's "
        f"{nominal_gap:.0f})"
    )
    print(f"   report: {out / 'calibration'}/report.md, calibration.yaml (usable as --real)")
    return cal


def monitor(task: str, policy: Path, out: Path) -> None:
    """5. Monitor: the sim-trained policy's stream on the robot, then the same on sim."""
    from sim2real.evaluation.policy import resolve_policies
    from sim2real.pairing import make
    from sim2real.remedies.monitor import Monitored, SkewMonitor

    print("\n5. Monitor: detect at deployment that the world is not the simulator")
    shipped = policy.parent / "monitor.json"
    if shipped.is_file():
        skew_monitor = SkewMonitor.load(shipped)
        where = f"prepared on sim and shipped ({_shown(shipped)})"
    else:
        skew_monitor = SkewMonitor(task, policy=str(policy), prepare_steps=MONITOR_PREPARE_STEPS)
        where = f"prepared now on {MONITOR_PREPARE_STEPS:,} sim steps"
    rate = skew_monitor.false_alarm_rate
    print(f"   monitor {where}; false-alarm rate {rate:g} per step on sim")
    act = resolve_policies(str(policy))[0].build(1)
    for variant, label in ((ROBOT, "the robot"), (None, "the sim")):
        env = Monitored(make(task, skews=variant), skew_monitor)
        try:
            obs, info = env.reset(seed=100)
            start = np.ones(1, dtype=bool)
            for _ in range(MONITOR_STEPS):
                action = act(obs[None], episode_start=start)[0]
                start[:] = False
                obs, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
        finally:
            env.close()
        state = info["monitor"]
        if not state.alarm:
            print(f"   on {label}: no alarm in {state.step} steps")
            continue
        suspects = ", ".join(f"{s.field} ({s.score:.2f})" for s in state.suspects[:2])
        print(
            f"   on {label}: alarm at step {state.alarm_step}; suspects {suspects}; "
            f"estimate {state.estimate}"
        )


def restrict(
    task: str,
    groups: dict[str, list[Path]],
    cal: Any,
    out: Path,
    *,
    engine: str,
    progress: bool | None,
) -> None:
    """6. Restrict: the certified envelope of one policy per group on two axes."""
    from sim2real.remedies.envelope import compare_envelopes

    print("\n6. Restrict: where may each policy run? (sim2real.envelope, Clopper-Pearson)")
    policies = {name: folders[0] for name, folders in groups.items()}
    comparison = compare_envelopes(
        policies, task, ENVELOPE_AXES, out=out / "envelope", common_reference=True, base=None,
        budget=ENVELOPE_BUDGET, max_episode_steps=ENVELOPE_STEPS, engine=engine,
        progress=progress, resume=(out / "envelope").exists(),
    )  # fmt: skip
    axes = " x ".join(f"{k} {lo:g}..{hi:g}" for k, (lo, hi) in ENVELOPE_AXES.items())
    print(
        f"   {axes}, other skews nominal; success: a {ENVELOPE_STEPS}-step episode keeps 80% of "
        "the sim-trained policy's sim return; inside: P(success) >= 0.9 at 95% confidence"
    )
    box = {name: cal.intervals.get(name) for name in ENVELOPE_AXES}
    box = {name: tuple(v) for name, v in box.items() if v is not None}
    for name, env_map in comparison.maps.items():
        print(
            f"   {name:<22} area inside {env_map.area_inside:5.1%}, uncertain "
            f"{env_map.area('uncertain'):5.1%}; {env_map.summary['episodes']} episodes; "
            f"the calibrated robot's {' x '.join(box) or 'box'} is {env_map.contains(box).value}"
        )
    print(f"   report: {out / 'envelope'}/comparison.md and one heatmap per policy")
