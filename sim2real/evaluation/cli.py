"""``sim2real evaluate``: the gap evaluator on the command line."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from sim2real.cli_options import add_engine

EXAMPLE = """example:
  sim2real evaluate --policy policies/Hopper/sim/seed0 policies/Hopper/sim/seed1 \\
      policies/Hopper/dr/seed0 policies/Hopper/dr/seed1 --task Hopper --seeds 100-129 \\
      --real default --extra harsh --out runs/gap-hopper

Policies stored as <config>/seed<N>/ are grouped by <config> (training seeds of one
configuration); name groups yourself with NAME=PATH. Episodes are written to
OUT/episodes.jsonl as they finish (--resume continues an interrupted run), then
OUT/report.json (schema sim2real.gap_report/1), report.md, returns.png and
attribution.png."""


def parse_seeds(text: str) -> list[int]:
    """``"100-129"`` or ``"1,2,5-7"`` -> the seeds, in order."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ValueError(
                f"--seeds {text!r}: expected integers and ranges such as 100-129 or 1,2,5-7"
            )
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise ValueError(f"--seeds {text!r}: range {part.strip()} runs backwards")
        seeds.extend(range(first, last + 1))
    return seeds


def _policies(items: list[str]) -> list[str] | dict[str, list[str]]:
    """Paths, or ``{group: [paths]}`` when given as ``NAME=PATH``."""
    named = [item.partition("=") for item in items]
    if not any(
        sep and not Path(item).exists() for item, (_, sep, _) in zip(items, named, strict=True)
    ):
        return items
    if not all(sep and name for name, sep, _ in named):
        raise ValueError("--policy: name every policy (NAME=PATH) or none")
    groups: dict[str, list[str]] = {}
    for name, _, path in named:
        groups.setdefault(name, []).append(path)
    return groups


def _run(args: argparse.Namespace) -> int:
    from sim2real.evaluation.gap import evaluate_gap

    try:
        report = evaluate_gap(
            _policies(args.policy),
            args.task,
            seeds=parse_seeds(args.seeds),
            real=args.real,
            extra=tuple(args.extra),
            attribution=not args.no_attribution,
            attribute_by=args.attribute_by,
            permutations=args.permutations,
            max_episode_steps=args.max_episode_steps,
            engine=args.engine,
            n_envs=args.n_envs,
            out=args.out,
            resume=args.resume,
            progress=False if args.no_progress else None,
            confidence=args.confidence,
            bootstrap_resamples=args.bootstrap_resamples,
        )
    except KeyboardInterrupt:
        print(
            f"sim2real evaluate: interrupted; finished episodes are kept in "
            f"{args.out}/episodes.jsonl: add --resume to continue",
            file=sys.stderr,
        )
        return 130
    print(report.to_markdown())
    print(f"results in {args.out}/ (report.json, report.md, plots, episodes.jsonl)")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sim2real evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure a policy's sim-to-real gap, with intervals and per-skew attribution",
        description="Run policies on the sim and real variants of a task with common seeds; "
        "report returns, the gap (sim - real) with bootstrap intervals, and its attribution "
        "to each skew of the real variant (Shapley values).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--policy",
        nargs="+",
        required=True,
        metavar="[NAME=]PATH",
        help="training output folders (model.zip, vecnormalize.pkl, metadata.json) or .zip files",
    )
    parser.add_argument("--task", required=True, help="a built-in task (see `sim2real list`)")
    parser.add_argument("--seeds", default="100-129", help="episode seeds (default: 100-129)")
    parser.add_argument(
        "--real", default="default", help="real variant: a preset name or a YAML spec"
    )
    parser.add_argument(
        "--extra", nargs="*", default=[], metavar="SPEC", help="more variants (e.g. harsh)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--resume", action="store_true", help="continue the episodes already in --out"
    )
    add_engine(parser)
    parser.add_argument(
        "--n-envs", type=int, default=32, help="sub-envs side by side (default: 32)"
    )
    parser.add_argument(
        "--no-attribution", action="store_true", help="skip the per-skew attribution"
    )
    parser.add_argument(
        "--attribute-by",
        choices=("skew", "section"),
        default="skew",
        help="attribute the gap to each skew, or to each section of skews (default: skew)",
    )
    parser.add_argument(
        "--permutations",
        type=int,
        default=16,
        help="sampled Shapley permutations beyond 6 skews (default: 16)",
    )
    parser.add_argument(
        "--max-episode-steps", type=int, default=None, help="shorter episodes, for a quick look"
    )
    parser.add_argument("--confidence", type=float, default=0.95, help="interval coverage")
    parser.add_argument(
        "--bootstrap-resamples", type=int, default=2000, help="resamples per bootstrap level"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
