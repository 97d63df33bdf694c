"""The benchmark: shipped policies, sim-trained and randomization-trained, on sim and real.

``sim2real benchmark [--suite configs/benchmark/default.yaml] [--out results/benchmark]``
evaluates, for each task of the suite, every group of policies (the training
seeds of one configuration) on the sim variant and the real presets, with
:func:`sim2real.evaluate_gap` on common seeds. Each task's episodes are written
as they finish, so ``--resume`` picks up an interrupted run; the suite's table
is written as ``benchmark.json``, ``benchmark.md`` and ``benchmark.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

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
from sim2real.paths import data_dir
from sim2real.spec import SkewSpecError, format_validation_error, load_yaml
from sim2real.tasks import get_task

DEFAULT_SUITE = "benchmark/default.yaml"
RESULTS = ("benchmark.json", "benchmark.md", "benchmark.png")


class _Seeds(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    start: int = Field(ge=0)
    count: int = Field(gt=0)


class _TaskEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    task: str
    groups: dict[str, str] = Field(min_length=1)


class Suite(BaseModel):
    """A benchmark suite file (see ``configs/benchmark/default.yaml``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    seeds: _Seeds
    real: str = "default"
    extra: list[str] = []
    bootstrap_seed: int = 0
    reference: str = "sim"  # the group whose sim return is the competence to keep
    tasks: list[_TaskEntry] = Field(min_length=1)
    _seed_override: list[int] | None = PrivateAttr(default=None)  # benchmark --seeds

    @property
    def seed_list(self) -> list[int]:
        if self._seed_override is not None:
            return list(self._seed_override)
        return list(range(self.seeds.start, self.seeds.start + self.seeds.count))

    def with_seeds(self, seeds: list[int]) -> Suite:
        """The same suite on other episode seeds."""
        suite = self.model_copy(deep=True)
        suite._seed_override = list(seeds)
        return suite


def load_suite(path: str | Path | None, tasks: list[str] | None = None) -> Suite:
    """Read and check a suite (only ``tasks`` of it, if given): tasks, presets and policy
    folders, before any episode."""
    path = Path(path) if path else data_dir("configs") / DEFAULT_SUITE
    try:
        suite = Suite.model_validate(load_yaml(path, what="benchmark suite"))
    except ValidationError as error:
        raise SkewSpecError(f"benchmark suite {path}: {format_validation_error(error)}") from None
    if tasks:
        wanted = {t.lower() for t in tasks}
        unknown = wanted - {e.task.lower() for e in suite.tasks}
        if unknown:
            raise SkewSpecError(
                f"--tasks: {sorted(unknown)[0]!r} is not in the suite; allowed: "
                f"{', '.join(e.task for e in suite.tasks)}"
            )
        suite.tasks = [e for e in suite.tasks if e.task.lower() in wanted]
    for entry in suite.tasks:
        task = get_task(entry.task)
        for preset in (suite.real, *suite.extra):
            task.preset(preset)
        for group, folder in entry.groups.items():
            policy_folders(entry.task, group, folder)
    return suite


def policy_folders(task: str, group: str, folder: str) -> list[Path]:
    """The ``seed<N>`` folders of one group, under ``policies/`` unless ``folder`` is absolute."""
    root = Path(folder) if Path(folder).is_absolute() else data_dir("policies") / folder
    seeds = sorted(p for p in root.glob("seed*") if (p / "model.zip").is_file())
    if not seeds:
        raise FileNotFoundError(
            f"{task}: group {group!r} has no trained policy in {root} (expected seed<N>/model.zip)"
        )
    return seeds


def run(
    suite: Suite,
    out: Path,
    *,
    resume: bool = False,
    engine: str = "local",
    progress: bool | None = None,
) -> dict[str, Any]:
    """Evaluate every task of the suite into ``out/<task>/`` and write the suite's table."""
    from sim2real.evaluation import evaluate_gap

    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for entry in suite.tasks:
        task_out = out / entry.task
        policies = {g: policy_folders(entry.task, g, f) for g, f in entry.groups.items()}
        report = evaluate_gap(
            policies,
            entry.task,
            seeds=suite.seed_list,
            real=suite.real,
            extra=suite.extra,
            attribution=False,
            out=task_out,
            resume=resume or (task_out / "episodes.jsonl").exists(),
            engine=engine,
            progress=progress,
            bootstrap_seed=suite.bootstrap_seed,
        )
        rows.extend(kept_shares(_rows(report, list(entry.groups)), suite.reference))
        write_tables(rows, suite, out)  # after every task: a partial table is never lost
    return {"rows": rows}


def _rows(report: Any, group_names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for group_name in group_names:
        group = report.groups[group_name]
        row: dict[str, Any] = {
            "task": report.task,
            "group": group_name,
            "replication": group.replication,
        }
        for variant, returns in group.returns.items():
            row[variant] = returns.mean.to_dict()
            row[f"{variant}_diverged"] = returns.diverged
        for variant, gap in group.gaps.items():
            row[f"gap_{variant}"] = gap.gap.to_dict()
            row[f"relative_gap_{variant}"] = gap.relative_gap.to_dict()
        rows.append(row)
    return rows


def kept_shares(rows: list[dict[str, Any]], reference: str = "sim") -> list[dict[str, Any]]:
    """Each row with ``kept_<variant>``: its return on that variant as a share of the
    ``reference`` group's sim return on the same task (the competence to keep).

    The interval is the row's return interval divided by the reference's mean sim
    return (the reference treated as fixed); ``None`` without a reference row or when
    the reference's sim return is not positive.
    """
    reference_sim = {
        row["task"]: (row.get("sim") or {}).get("value")
        for row in rows
        if row["group"] == reference
    }
    out = []
    for row in rows:
        row = dict(row)
        base = reference_sim.get(row["task"])
        for variant in [k for k, v in row.items() if isinstance(v, dict) and "value" in v]:
            if variant.startswith(("gap_", "relative_gap_", "kept_")):
                continue
            estimate = row[variant]
            row[f"kept_{variant}"] = {
                key: (
                    None
                    if base is None or base <= 0 or estimate.get(key) is None
                    else estimate[key] / base
                )
                for key in ("value", "low", "high")
            }
        out.append(row)
    return out


def _fmt(estimate: dict[str, float | None], scale: float = 1.0, suffix: str = "") -> str:
    value, low, high = (estimate.get(k) for k in ("value", "low", "high"))
    if value is None:
        return "n/a"
    if low is None or high is None:
        return f"{scale * value:.0f}{suffix}"
    return f"{scale * value:.0f}{suffix} [{scale * low:.0f}, {scale * high:.0f}]"


def write_tables(rows: list[dict[str, Any]], suite: Suite, out: Path) -> None:
    """``benchmark.json``, ``benchmark.md`` and ``benchmark.png`` in ``out``."""
    variants = [suite.real, *suite.extra]
    (out / RESULTS[0]).write_text(
        json.dumps(
            {
                "schema": "sim2real.benchmark/1",
                "seeds": suite.seed_list,
                "real": suite.real,
                "extra": suite.extra,
                "reference": suite.reference,
                "rows": rows,
            },
            indent=2,
        )
    )
    columns = ["sim", *variants]
    header = (
        ["task", "policies"]
        + [f"kept on {v}" for v in columns]
        + [f"{v} return" for v in columns]
        + [f"gap to {v} (relative)" for v in variants]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["task"], f"{row['group']} ({row['replication']})"]
        cells += [_fmt(row.get(f"kept_{v}") or {}, 100, "%") for v in columns]
        cells += [_fmt(row[v]) for v in columns]
        cells += [
            f"{_fmt(row[f'gap_{v}'])} ({_fmt(row[f'relative_gap_{v}'], 100, '%')})"
            for v in variants
        ]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\nKept: the group's mean return on a variant as a share of the `{suite.reference}` "
        "group's mean sim return on the same task (the competence a robust policy should "
        "keep on the robot; its interval treats that reference as fixed). "
        f"Mean raw return over episode seeds {suite.seed_list[0]}..{suite.seed_list[-1]} "
        "per policy, then over training seeds; 95% bootstrap intervals in brackets. "
        "Gap = sim - real, paired by seed.\n"
    )
    (out / RESULTS[1]).write_text("\n".join(lines) + "\n" + note)
    _plot(rows, variants, out / RESULTS[2])


def _plot(rows: list[dict[str, Any]], variants: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.4), squeeze=False)
    columns = ["sim", *variants]
    for ax, task in zip(axes[0], tasks, strict=True):
        task_rows = [r for r in rows if r["task"] == task]
        width = 0.8 / len(task_rows)
        for i, row in enumerate(task_rows):
            values = np.array([row[c]["value"] or np.nan for c in columns])
            low = np.array(
                [row[c]["low"] if row[c]["low"] is not None else np.nan for c in columns]
            )
            high = np.array(
                [row[c]["high"] if row[c]["high"] is not None else np.nan for c in columns]
            )
            x = np.arange(len(columns)) + (i - (len(task_rows) - 1) / 2) * width
            ax.bar(
                x,
                values,
                width,
                label=row["group"],
                yerr=np.nan_to_num([values - low, high - values]),
                capsize=2,
            )
        ax.set_xticks(range(len(columns)), columns)
        ax.set_title(task)
        ax.set_ylabel("return")
    axes[0][0].legend(title="trained on", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cli(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite, args.tasks)
    if args.seeds is not None:
        suite = suite.with_seeds(args.seeds)
    out = Path(args.out)
    existing = [e.task for e in suite.tasks if count_episodes(out / e.task / "episodes.jsonl")]
    claim_out(
        out,
        existing,
        resume=args.resume,
        overwrite=args.overwrite,
        discard=[out / task / "episodes.jsonl" for task in existing],
        reused=[out / e.task / "episodes.jsonl" for e in suite.tasks],
    )
    run(suite, out, resume=args.resume, engine=args.engine, progress=progress_enabled(args))
    print((out / RESULTS[1]).read_text())
    print(f"wrote {', '.join(str(out / name) for name in RESULTS)}")
    return 0


def register_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="evaluate the shipped policies on sim and real presets",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--suite", default=None, help=f"suite YAML (default: configs/{DEFAULT_SUITE})"
    )
    add_out(parser, "results/benchmark", help="output folder: one folder per task, and tables")
    parser.add_argument("--tasks", nargs="+", help="only these tasks of the suite")
    add_seeds(parser, None, help="episode seeds, such as 100-129 (default: the suite's)")
    add_engine(parser)
    add_resume(parser, help="continue the episodes already in --out (says how many it reused)")
    add_overwrite(parser, help="discard the episodes already in --out")
    add_no_progress(parser)
    parser.set_defaults(func=_cli)
