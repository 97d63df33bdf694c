"""Rendering a calibration report: Markdown and the traces plot (computing lives elsewhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.3g}" for v in value) + "]"
    return f"{value:.4g}"


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md`` from the data of :meth:`Calibration.to_dict`."""
    delay, diag = report["delay"], report["diagnostics"]
    lines = [
        f"# Calibration of {report['task']}",
        "",
        f"{diag['episodes']} logged episodes, {diag['steps']} steps, {diag['windows']} windows of "
        f"{diag['window_steps']} steps; fitted in {diag.get('time_s', '?')} s.",
        "",
        f"| field | estimate | {report['confidence']:.0%} interval |",
        "|---|---|---|",
    ]
    for name, value in report["estimates"].items():
        interval = report["intervals"].get(name)
        shown = (
            "not identified"
            if name in report["unidentified"]
            else (f"[{interval[0]:.4g}, {interval[1]:.4g}]" if interval else "")
        )
        lines.append(f"| {name} | {_value(value)} | {shown} |")
    lines += [
        "",
        f"Latency on the substep grid ({delay['substep_s']:g} s): observation "
        f"{delay['obs_substeps']}, action {delay['action_substeps']}, total "
        f"{delay['total_substeps']} substeps.",
        "",
        f"Intervals: {diag.get('interval_method', 'n/a')}.",
        "",
        "## Residual per observation dimension",
        "",
        "RMS prediction error over every window, from its logged start: the calibrated sim "
        "against the nominal sim (nominal scales, no latency).",
        "",
        "| dim | calibrated sim | nominal sim |",
        "|---|---|---|",
    ]
    for i, (cal, nom) in enumerate(
        zip(report["residuals"]["calibrated"], report["residuals"]["nominal"], strict=True)
    ):
        lines.append(f"| {i} | {cal:.4g} | {nom:.4g} |")
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    lines += ["", "Calibrated spec (`make_pair(task, real=...)`):", "", "```yaml"]
    import yaml

    lines += [yaml.safe_dump(report["spec"], sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


def plot_traces(traces: dict[str, np.ndarray], task: str, path: str | Path, dims: int = 4) -> Path:
    """Logged vs calibrated-sim vs nominal-sim observations over a few windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logged = traces["logged"]
    n, rows, dim = logged.shape
    gap = np.abs(traces["nominal"] - logged).mean(axis=(0, 1)) / (logged.std(axis=(0, 1)) + 1e-12)
    show = sorted(np.argsort(gap)[::-1][: min(dims, dim)].tolist())  # where the sims differ most
    fig, axes = plt.subplots(len(show), 1, figsize=(9, 2.2 * len(show)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, d in zip(axes, show, strict=True):
        for w in range(n):
            steps = traces["start"][w] + np.arange(rows)
            kw = {"label": None} if w else {}
            ax.plot(steps, logged[w, :, d], "k.", ms=3, **({"label": "logged"} if not w else kw))
            ax.plot(
                steps,
                traces["nominal"][w, :, d],
                "-",
                color="tab:red",
                lw=1,
                **({"label": "nominal sim"} if not w else kw),
            )
            ax.plot(
                steps,
                traces["calibrated"][w, :, d],
                "-",
                color="tab:blue",
                lw=1,
                **({"label": "calibrated sim"} if not w else kw),
            )
        ax.set_ylabel(f"obs[{d}]")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set_title(f"{task}: each window re-anchored to the logged observation")
    axes[-1].set_xlabel("control step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
