"""The demo: the whole loop on shipped policies, in a few minutes on two cores.

``sim2real demo [--task HalfCheetah] [--seeds 100-107] [--out results/demo]``

1. *Verify*: the sim-trained policies are competent on fresh sim episodes.
2. *Characterise*: the same policies on the real variant (the task's ``default``
   preset, the hidden robot), the gap with its 95% interval, and its attribution to
   the skew sections (dynamics, actuation, sensing, timing) by Shapley values.
3. *Robustify*: the randomization-trained policies on the same seeds.
4. *Close*: log the robot, calibrate the simulator to the logs, and show how
   closely the calibrated sim predicts the robot.
5. *Monitor*: the robot's observation stream raises an alarm and names the skew;
   the sim's does not.
6. *Restrict*: the certified envelope of each group on latency x friction, and
   whether the calibrated robot lies inside it.

Steps 1-3 come from :func:`sim2real.evaluate_gap` on common seeds, steps 4-6 from
:mod:`sim2real.demo_remedies`; the report files land in ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any

from sim2real.benchmark import policy_folders
from sim2real.cli_options import (
    add_engine,
    add_no_progress,
    add_out,
    add_overwrite,
    add_resume,
    add_seeds,
    claim_out,
    count_episodes,
    progress_enabled,
)
from sim2real.tasks import get_task

SIM_GROUP, DR_GROUP = "sim-trained", "robustified"


def shipped_groups(task: str) -> dict[str, list[Path]]:
    """The shipped policies of ``task``: sim-trained and, where shipped, the robustified
    ones (``robust``: randomization + latency compensation; else the first ``dr``)."""
    groups = {SIM_GROUP: policy_folders(task, SIM_GROUP, f"{task}/sim")}
    # Without them the demo shows the gap but not the remedy, and says so.
    for folder in ("robust", "dr"):
        with contextlib.suppress(FileNotFoundError):
            groups[DR_GROUP] = policy_folders(task, DR_GROUP, f"{task}/{folder}")
            break
    return groups


def run(
    task: str,
    seeds: list[int],
    out: Path,
    *,
    engine: str = "local",
    progress: bool | None = None,
    remedies: bool = True,
) -> Any:
    """Evaluate the shipped policies of ``task``, run the remedies (``remedies=True``) and
    print the story; returns the GapReport."""
    from sim2real.evaluation import evaluate_gap

    spec = get_task(task)
    groups = shipped_groups(task)
    real = spec.preset("default")
    print(
        f"sim2real demo: {task} ({spec.base_id}), episode seeds {seeds[0]}..{seeds[-1]} "
        "for every policy and variant (common random numbers)"
    )
    print(f"  real variant 'default': {real.description}")
    for name, value in real.active().items():
        shown = value if not isinstance(value, list) else f"[{value[0]}, ...] per dimension"
        print(f"    {name} = {shown}")
    print(f"  policies: {', '.join(f'{g} ({len(p)} training seeds)' for g, p in groups.items())}")
    started = time.perf_counter()
    report = evaluate_gap(
        groups,
        task,
        seeds=seeds,
        real="default",
        attribution=True,
        attribute_by="section",
        out=out,
        resume=(out / "episodes.jsonl").exists(),
        engine=engine,
        progress=progress,
    )
    _tell(report, groups)
    print(
        f"   report: {out / 'report.md'} (tables), {out / 'report.json'} (schema "
        f"sim2real.gap_report/1), {out / 'returns.png'}, {out / 'attribution.png'}"
    )
    if remedies:
        _remedies(task, groups, seeds, report, out, engine=engine, progress=progress)
    elapsed = time.perf_counter() - started
    print(f"\n{report.divergences} physics divergences in the gap's episodes. {elapsed:.0f} s.")
    return report


def _remedies(
    task: str,
    groups: dict[str, list[Path]],
    seeds: list[int],
    report: Any,
    out: Path,
    *,
    engine: str,
    progress: bool | None,
) -> None:
    """Steps 4-6: close, monitor and restrict, on the sim-trained policies and the robot."""
    from sim2real import demo_remedies

    sim = report.groups[SIM_GROUP]
    robot_return = sim.returns[report.real].mean.value
    sim_return = sim.returns["sim"].mean.value
    policy = groups[SIM_GROUP][0]
    cal = demo_remedies.close(
        task, policy, groups[SIM_GROUP], seeds, robot_return, sim_return, out,
        engine=engine, progress=progress,
    )  # fmt: skip
    demo_remedies.monitor(task, policy, out)
    demo_remedies.restrict(task, groups, cal, out, engine=engine, progress=progress)


def _tell(report: Any, groups: dict[str, list[Path]]) -> None:
    real = report.real
    sim = report.groups[SIM_GROUP]
    print("\n1. Verify: competence where the policy was prepared (fresh sim episodes)")
    print(f"   {SIM_GROUP}: sim return {sim.returns['sim'].mean.format(0)}")
    print("\n2. Characterise: the same policies on the real variant")
    print(
        f"   real return {sim.returns[real].mean.format(0)}; gap "
        f"{sim.gaps[real].gap.format(0)} ({_percent(sim.gaps[real].relative_gap)} of sim); "
        f"P(sim episode beats real) {sim.gaps[real].prob_sim_beats.format(2)}"
    )
    if sim.attribution is not None:
        print("   what causes it (Shapley values over skew sections; they add up to the gap):")
        total = sim.attribution.total.value
        for player, estimate in sorted(
            sim.attribution.shapley.items(), key=lambda item: -item[1].value
        ):
            if abs(total) < 1e-9:  # no gap: nothing to share out
                print(f"     {player:<10} {estimate.format(0):>24}")
                continue
            share = estimate.value / total
            bar = "#" * max(0, round(30 * share))
            print(f"     {player:<10} {estimate.format(0):>24}  {share:>5.0%} {bar}")
    print("\n3. Robustify: randomization-trained policies, latency compensated where shipped")
    if DR_GROUP not in report.groups:
        print("   no robustified policies are shipped for this task")
        return
    dr = report.groups[DR_GROUP]
    print(
        f"   {DR_GROUP}: sim return {dr.returns['sim'].mean.format(0)}, real return "
        f"{dr.returns[real].mean.format(0)}; gap {dr.gaps[real].gap.format(0)} "
        f"({_percent(dr.gaps[real].relative_gap)} of sim)"
    )
    change = dr.returns[real].mean.value - sim.returns[real].mean.value
    print(f"   on the real variant it returns {change:+.0f} against the sim-trained policies")


def _percent(estimate: Any) -> str:
    return f"{100 * estimate.value:.0f}% [{100 * estimate.low:.0f}, {100 * estimate.high:.0f}]"


def _cli(args: argparse.Namespace) -> int:
    get_task(args.task)
    shipped_groups(args.task)  # no shipped policy: refused before any work
    out = Path(args.out)
    episodes = out / "episodes.jsonl"
    remedies: list[Path] = []  # the remedy steps' results, which --overwrite discards too
    if args.overwrite:
        from sim2real.demo_remedies import OUTPUTS  # imports numpy: only when needed

        remedies = [out / name for name in OUTPUTS]
    claim_out(
        out,
        ["episodes.jsonl"] if count_episodes(episodes) else [],
        resume=args.resume,
        overwrite=args.overwrite,
        discard=[episodes, *remedies],
        reused=[episodes],
    )
    run(
        args.task,
        args.seeds,
        out,
        engine=args.engine,
        progress=progress_enabled(args),
        remedies=not args.no_remedies,
    )
    return 0


def register_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the whole loop on shipped policies: gap, its causes, and what closes it",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--task", default="HalfCheetah", help="a task with shipped policies")
    add_seeds(parser, "100-107")
    add_out(parser, "results/demo", help="folder for the report files")
    add_engine(parser)
    add_resume(parser, help="continue the episodes already in --out (says how many it reused)")
    add_overwrite(parser, help="discard the episodes already in --out")
    parser.add_argument(
        "--no-remedies",
        action="store_true",
        help="stop after the gap and the randomization-trained policies (steps 1-3)",
    )
    add_no_progress(parser)
    parser.set_defaults(func=_cli)
