"""``sim2real envelope``: the operating envelope of a policy on the command line.

Light on import: the axes are checked against the schema before torch, mujoco
or gymnasium load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim2real import cli_options

EXAMPLE = """example:
  sim2real envelope --policy policies/Hopper/sim/seed0 --task Hopper --base none \\
      --axis timing.obs_latency_s=0:0.05 --axis dynamics.friction_scale=0.4:1.4 \\
      --threshold 0.8 --engine local --out runs/envelope-hopper

An episode succeeds when its return is at least THRESHOLD of the policy's mean sim
return (measured first on --seeds). A region is inside when its success probability
is at least --success with --confidence (Clopper-Pearson), outside when its upper
bound is below it, uncertain otherwise. Axes: FIELD=LOW:HIGH or FIELD=LOW:HIGH:log, one
to three. Several policies are mapped on the same axes into OUT/<name>/ and compared
by the area inside (OUT/comparison.md). Writes OUT/episodes.jsonl as episodes end
(--resume continues), then envelope.json (schema sim2real.envelope/1), report.md and
one heatmap per pair of axes (a curve for one axis)."""


def _base(text: str) -> str | None:
    return None if text.lower() in ("none", "nominal") else text


def _run(args: argparse.Namespace) -> int:
    from sim2real.remedies.envelope_axes import check_axes, parse_axis
    from sim2real.spec import SkewSpec
    from sim2real.tasks import get_task

    axes = dict(parse_axis(text) for text in args.axis)
    if len(axes) != len(args.axis):
        raise ValueError("--axis: each field may appear once")
    base = _base(args.base)
    if base is None or Path(base).suffix:
        base_spec = SkewSpec.load(base)
    elif "/" not in args.task and "-v" not in args.task:
        base_spec = get_task(args.task).preset(base)
    else:
        base_spec = None  # a Gymnasium id has no presets: envelope() says so
    if base_spec is not None:
        check_axes(axes, base_spec, resolution=args.resolution)  # before anything heavy
    policies = cli_options_policies(args.policy)
    options = dict(
        threshold=args.threshold,
        success=args.success,
        confidence=args.confidence,
        base=base,
        budget=args.budget,
        seeds=args.seeds,
        engine=args.engine,
        resume=args.resume,
        resolution=args.resolution,
        coarse=args.coarse,
        max_episode_steps=args.max_episode_steps,
        progress=cli_options.progress_enabled(args),
    )
    try:
        if len(policies) == 1:
            from sim2real.remedies.envelope import envelope

            env_map = envelope(
                next(iter(policies.values())), args.task, axes, out=args.out, **options
            )
            print(env_map.to_markdown())
        else:
            from sim2real.remedies.envelope import compare_envelopes

            comparison = compare_envelopes(
                policies,
                args.task,
                axes,
                out=args.out,
                common_reference=args.common_reference,
                **options,
            )
            print(comparison.to_markdown())
    except KeyboardInterrupt:
        print(
            f"sim2real envelope: interrupted; finished episodes are kept in {args.out}: "
            "add --resume to continue",
            file=sys.stderr,
        )
        return 130
    print(f"results in {args.out}/")
    return 0


def cli_options_policies(items: list[str]) -> dict[str, str]:
    """``NAME=PATH`` or ``PATH`` items -> ``{name: path}`` (a path's name: its folders below
    the task, e.g. ``sim/seed0``)."""
    named: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or Path(item).exists():
            path = item
            parts = Path(item).parts
            name = "/".join(parts[-2:]) if len(parts) >= 2 else item
        if name in named:
            raise ValueError(f"--policy: the name {name!r} is given twice; use NAME=PATH")
        named[name] = path
    return named


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sim2real envelope``."""
    parser = subparsers.add_parser(
        "envelope",
        help="map where a policy keeps its sim return, certified region by region",
        description="Map the region of skew space where a policy keeps a stated share of its "
        "sim return, with a Clopper-Pearson guarantee per region, refining only near the "
        "boundary.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--policy",
        nargs="+",
        required=True,
        metavar="[NAME=]PATH",
        help="training output folders or .zip files; several are compared on the same axes",
    )
    parser.add_argument("--task", required=True, help="a built-in task (see `sim2real list`)")
    parser.add_argument(
        "--axis",
        action="append",
        required=True,
        metavar="FIELD=LOW:HIGH[:log]",
        help="a skew field and its range; repeat for 2 or 3 axes",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.8,
        help="share of the sim return an episode must keep (default: 0.8)",
    )
    parser.add_argument(
        "--success",
        type=cli_options.probability,
        default=0.9,
        help="success probability a region must keep (default: 0.9)",
    )
    parser.add_argument(
        "--confidence",
        type=cli_options.probability,
        default=0.95,
        help="confidence of each region's verdict (default: 0.95)",
    )
    parser.add_argument(
        "--base",
        default="default",
        help="the other skews: a preset name, a YAML spec, or none (default: default)",
    )
    parser.add_argument(
        "--budget",
        type=cli_options.positive_int,
        default=2000,
        help="most episodes the map may run (default: 2000)",
    )
    cli_options.add_seeds(
        parser, default="100-163", help="episode seeds the map draws from (default: 100-163)"
    )
    parser.add_argument(
        "--resolution",
        type=cli_options.positive_int,
        default=16,
        help="finest cells per axis (default: 16)",
    )
    parser.add_argument(
        "--coarse",
        type=cli_options.positive_int,
        default=4,
        help="cells per axis of the starting grid (default: 4)",
    )
    parser.add_argument(
        "--max-episode-steps",
        type=cli_options.positive_int,
        default=None,
        help="shorter episodes, for a quick look",
    )
    parser.add_argument(
        "--common-reference",
        action="store_true",
        help="with several policies: hold all to the first one's mean sim return",
    )
    cli_options.add_engine(parser)
    cli_options.add_out(
        parser, default="runs/envelope", help="output folder (default: runs/envelope)"
    )
    cli_options.add_resume(parser)
    cli_options.add_no_progress(parser)
    parser.set_defaults(func=_run)
