"""``sim2real evaluate``: the gap evaluator on the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim2real.cli_options import (
    add_engine,
    add_no_progress,
    add_out,
    add_overwrite,
    add_resume,
    add_seeds,
    claim_out,
    count_episodes,
    parse_seeds,
    positive_int,
    probability,
    progress_enabled,
)

__all__ = ["parse_seeds", "register_cli"]

DEFAULT_OUT = "results/evaluate"

EXAMPLE = """example:
  sim2real evaluate --policy policies/Hopper/sim/seed0 policies/Hopper/sim/seed1 \\
      policies/Hopper/dr/seed0 policies/Hopper/dr/seed1 --task Hopper --seeds 100-129 \\
      --real default --extra harsh --out runs/gap-hopper

Policies stored as <config>/seed<N>/ are grouped by <config> (training seeds of one
configuration); name groups yourself with NAME=PATH. Episodes are written to
OUT/episodes.jsonl as they finish (--resume continues an interrupted run), then
OUT/report.json (schema sim2real.gap_report/1), report.md, returns.png and
attribution.png."""


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


def check_variant(task: str, variant: str, option: str) -> None:
    """A preset name of ``task`` or a YAML spec that loads; else a one-line ``ValueError``."""
    from sim2real.spec import SkewSpec
    from sim2real.tasks import get_task

    if variant.endswith((".yaml", ".yml")) or "/" in variant or Path(variant).is_file():
        if not Path(variant).is_file():
            raise ValueError(f"{option} {variant!r}: no such spec file")
        SkewSpec.load(variant)
        return
    try:
        get_task(task).preset(variant)
    except (KeyError, ValueError) as error:
        raise ValueError(f"{option} {variant!r}: {error}") from None


def check_args(args: argparse.Namespace) -> None:
    """The cheap checks, before the evaluator's heavy imports: task, policies, variants."""
    from sim2real.tasks import get_task

    get_task(args.task)
    for item in args.policy:
        path = item.partition("=")[2] if "=" in item and not Path(item).exists() else item
        if not Path(path).exists():
            raise ValueError(f"--policy {path!r}: no such file or folder")
    check_variant(args.task, args.real, "--real")
    for extra in args.extra:
        check_variant(args.task, extra, "--extra")


# What a run writes into --out; --overwrite discards them first.
RESULT_FILES = ("episodes.jsonl", "report.json", "report.md", "returns.png", "attribution.png")


def _run(args: argparse.Namespace) -> int:
    check_args(args)
    episodes = args.out / RESULT_FILES[0]
    held = [RESULT_FILES[0]] if count_episodes(episodes) else []
    claim_out(
        args.out,
        held,
        resume=args.resume,
        overwrite=args.overwrite,
        discard=[args.out / name for name in RESULT_FILES],
        reused=[episodes],
    )
    if not (held or args.resume or args.overwrite):
        episodes.unlink(missing_ok=True)  # a header without an episode: nothing to keep
    from sim2real.evaluation.gap import evaluate_gap

    try:
        report = evaluate_gap(
            _policies(args.policy),
            args.task,
            seeds=args.seeds,
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
            progress=progress_enabled(args),
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
        description="Run policies on the sim and real variants of a task with common seeds;\n"
        "report returns, the gap (sim - real) with bootstrap intervals, and its attribution\n"
        "to each skew of the real variant (Shapley values).",
        epilog=EXAMPLE,
    )
    parser.add_argument(
        "--policy",
        nargs="+",
        required=True,
        metavar="[NAME=]PATH",
        help="training output folders (model.zip, vecnormalize.pkl, metadata.json) or .zip files",
    )
    parser.add_argument("--task", required=True, help="a built-in task (see `sim2real list`)")
    add_seeds(parser, "100-129")
    parser.add_argument(
        "--real", default="default", help="real variant: a preset name or a YAML spec"
    )
    parser.add_argument(
        "--extra", nargs="*", default=[], metavar="SPEC", help="more variants (e.g. harsh)"
    )
    add_out(parser, DEFAULT_OUT, help="output folder: episodes.jsonl, report.json, report.md")
    add_resume(parser, help="continue the episodes already in --out (says how many it reused)")
    add_overwrite(parser, help="discard the results already in --out")
    add_engine(parser)
    parser.add_argument("--n-envs", type=positive_int, default=32, help="sub-envs side by side")
    parser.add_argument(
        "--no-attribution", action="store_true", help="skip the per-skew attribution"
    )
    parser.add_argument(
        "--attribute-by",
        choices=("skew", "section"),
        default="skew",
        help="attribute the gap to each skew, or to each section of skews",
    )
    parser.add_argument(
        "--permutations",
        type=positive_int,
        default=16,
        help="sampled Shapley permutations beyond 6 skews",
    )
    parser.add_argument(
        "--max-episode-steps",
        type=positive_int,
        default=None,
        help="shorter episodes, for a quick look",
    )
    parser.add_argument(
        "--confidence", type=probability, default=0.95, help="interval coverage, in (0, 1)"
    )
    parser.add_argument(
        "--bootstrap-resamples",
        type=positive_int,
        default=2000,
        help="resamples per bootstrap level",
    )
    add_no_progress(parser)
    parser.set_defaults(func=_run)
