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
one heatmap per pair of axes (a curve for one axis). --config FILE holds the map's
settings (task, axes, threshold, success, confidence, base, budget, seeds, resolution,
coarse, max_episode_steps; e.g. configs/envelope/hopper_latency_friction.yaml); options
given on the command line override it."""


def _base(text: str) -> str | None:
    return None if text.lower() in ("none", "nominal") else text


# The settings a config file may hold, with the defaults used when neither it nor the
# command line gives them.
DEFAULTS = {
    "task": None,
    "axes": None,
    "threshold": 0.8,
    "success": 0.9,
    "confidence": 0.95,
    "base": "default",
    "budget": 2000,
    "seeds": "100-163",
    "resolution": 16,
    "coarse": 4,
    "max_episode_steps": None,
}


def settings(args: argparse.Namespace) -> dict:
    """The map's settings: the command line over the ``--config`` file over
    :data:`DEFAULTS`; a missing task or axis, or an unknown config key, in one line."""
    from sim2real.remedies.envelope_axes import parse_axis
    from sim2real.spec import load_yaml

    merged = dict(DEFAULTS)
    if args.config is not None:
        config = load_yaml(args.config, what="envelope config") or {}
        if not isinstance(config, dict):
            raise ValueError(f"envelope config {args.config}: expected a mapping")
        unknown = sorted(set(config) - set(DEFAULTS))
        if unknown:
            raise ValueError(
                f"envelope config {args.config}: unknown key {unknown[0]!r}; "
                f"allowed: {', '.join(DEFAULTS)}"
            )
        merged.update(config)
    for key in DEFAULTS:
        value = getattr(args, "axis" if key == "axes" else key, None)
        if value is not None:
            merged[key] = value
    if isinstance(merged["axes"], list):  # --axis texts
        texts = merged["axes"]
        merged["axes"] = dict(parse_axis(text) for text in texts)
        if len(merged["axes"]) != len(texts):
            raise ValueError("--axis: each field may appear once")
    if merged["task"] is None or not merged["axes"]:
        missing = "--task" if merged["task"] is None else "--axis"
        raise ValueError(f"{missing} is required (on the command line or in --config)")
    if isinstance(merged["seeds"], str):
        merged["seeds"] = cli_options.parse_seeds(merged["seeds"])
    if merged["base"] is not None:
        merged["base"] = _base(str(merged["base"]))
    return merged


def _run(args: argparse.Namespace) -> int:
    from sim2real.remedies.envelope_axes import check_axes
    from sim2real.spec import SkewSpec
    from sim2real.tasks import get_task

    given = settings(args)
    task, axes, base = given["task"], given["axes"], given["base"]
    if base is None or Path(base).suffix:
        base_spec = SkewSpec.load(base)
    elif "/" not in task and "-v" not in task:
        base_spec = get_task(task).preset(base)
    else:
        base_spec = None  # a Gymnasium id has no presets: envelope() says so
    if base_spec is not None:
        check_axes(axes, base_spec, resolution=given["resolution"])  # before anything heavy
    policies = cli_options_policies(args.policy)
    claim_envelope_out(Path(args.out), list(policies), resume=args.resume, overwrite=args.overwrite)
    options = {key: given[key] for key in DEFAULTS if key not in ("task", "axes")}
    options.update(
        engine=args.engine, resume=args.resume, progress=cli_options.progress_enabled(args)
    )
    try:
        if len(policies) == 1:
            from sim2real.remedies.envelope import envelope

            policy = next(iter(policies.values()))
            print(envelope(policy, task, axes, out=args.out, **options).to_markdown())
        else:
            from sim2real.remedies.envelope import compare_envelopes

            comparison = compare_envelopes(
                policies,
                task,
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


# What a map writes into its folder besides episodes.jsonl; a comparison adds these two.
MAP_FILES = ("envelope.json", "report.md")
COMPARISON_FILES = ("comparison.json", "comparison.md")


def claim_envelope_out(out: Path, names: list[str], *, resume: bool, overwrite: bool) -> None:
    """Refuse a run into maps already in ``out`` unless ``--resume`` or ``--overwrite``
    (one map: ``out/``; several: ``out/<name>/`` each), before any work."""
    folders = [out] if len(names) == 1 else [out / name.replace("/", "_") for name in names]
    episodes = [folder / cli_options.EPISODES_FILE for folder in folders]
    discard = [*episodes, *(f / name for f in folders for name in MAP_FILES)]
    discard += [p for f in folders if f.is_dir() for p in f.glob("envelope*.png")]
    cli_options.claim_out(
        out,
        [str(path.relative_to(out)) for path in episodes if cli_options.count_episodes(path)],
        resume=resume,
        overwrite=overwrite,
        discard=[*discard, *(out / name for name in COMPARISON_FILES)],
        reused=episodes,
    )
    if not (resume or overwrite):  # a header without an episode: nothing to keep
        for path in episodes:
            if path.is_file() and not cli_options.count_episodes(path):
                path.unlink()


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
    add = parser.add_argument
    add(
        "--policy",
        nargs="+",
        required=True,
        metavar="[NAME=]PATH",
        help="training output folders or .zip files; several are compared on the same axes",
    )
    add(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a YAML file of the settings below (the command line overrides it)",
    )
    add("--task", default=None, help="a built-in task (see `sim2real list`)")
    add(
        "--axis",
        action="append",
        default=None,
        metavar="FIELD=LOW:HIGH[:log]",
        help="a skew field and its range; repeat for 2 or 3 axes",
    )
    add(
        "--threshold",
        type=float,
        default=None,
        help="share of the sim return an episode must keep (default: 0.8)",
    )
    add(
        "--success",
        type=cli_options.probability,
        default=None,
        help="success probability a region must keep (default: 0.9)",
    )
    add(
        "--confidence",
        type=cli_options.probability,
        default=None,
        help="confidence of each region's verdict (default: 0.95)",
    )
    add(
        "--base",
        default=None,
        help="the other skews: a preset name, a YAML spec, or none (default: default)",
    )
    add(
        "--budget",
        type=cli_options.positive_int,
        default=None,
        help="most episodes the map may run (default: 2000)",
    )
    cli_options.add_seeds(
        parser, default=None, help="episode seeds the map draws from (default: 100-163)"
    )
    add(
        "--resolution",
        type=cli_options.positive_int,
        default=None,
        help="finest cells per axis (default: 16)",
    )
    add(
        "--coarse",
        type=cli_options.positive_int,
        default=None,
        help="cells per axis of the starting grid (default: 4)",
    )
    add(
        "--max-episode-steps",
        type=cli_options.positive_int,
        default=None,
        help="shorter episodes, for a quick look (default: the task's)",
    )
    add(
        "--common-reference",
        action="store_true",
        help="with several policies: hold all to the first one's mean sim return",
    )
    cli_options.add_engine(parser)
    cli_options.add_out(
        parser, default="runs/envelope", help="output folder (default: runs/envelope)"
    )
    cli_options.add_resume(parser)
    cli_options.add_overwrite(parser, help="discard the maps already in --out")
    cli_options.add_no_progress(parser)
    parser.set_defaults(func=_run)
