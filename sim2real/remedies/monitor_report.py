"""Running a monitor over logs, and its report: data first, then Markdown, JSON and a plot.

The report's JSON schema (``sim2real.monitor-report/1``) is the dict that
:meth:`MonitorReport.to_dict` returns::

    {"schema", "task", "monitor": {...settings and calibration summary...},
     "episodes": [{"index", "steps", "used_share", "alarm_step", "alarm_s", "channel",
                   "suspects": [{"field", "score"}], "estimate": {...} | null,
                   "statistic": [float per step]}],
     "summary": {"episodes", "alarmed", "suspect", "estimate"}}
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "sim2real.monitor-report/1"


@dataclass(frozen=True)
class EpisodeResult:
    """The monitor over one logged episode (statistic: one value per control step)."""

    index: int
    statistic: list[float]
    used_share: float
    alarm_step: int | None
    channel: str | None
    suspects: list[dict[str, Any]]
    estimate: dict[str, Any] | None
    estimate_text: str | None


@dataclass(frozen=True)
class MonitorReport:
    """The monitor run over logs: per episode and a summary."""

    task: str
    control_dt: float
    monitor: dict[str, Any]
    episodes: list[EpisodeResult]

    @property
    def alarmed(self) -> list[EpisodeResult]:
        return [e for e in self.episodes if e.alarm_step is not None]

    def summary(self) -> dict[str, Any]:
        """The field most often leading at the end of alarmed episodes, and its estimates."""
        leaders = Counter(e.suspects[0]["field"] for e in self.alarmed if e.suspects)
        suspect = leaders.most_common(1)[0][0] if leaders else None
        estimates = [
            e.estimate_text for e in self.alarmed
            if e.estimate is not None and e.estimate["field"] == suspect
        ]  # fmt: skip
        return {
            "episodes": len(self.episodes),
            "alarmed": len(self.alarmed),
            "suspect": suspect,
            "suspect_episodes": leaders.get(suspect, 0) if suspect else 0,
            "estimates": estimates,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "task": self.task,
            "control_dt": self.control_dt,
            "monitor": self.monitor,
            "episodes": [
                {
                    "index": e.index,
                    "steps": len(e.statistic),
                    "used_share": e.used_share,
                    "alarm_step": e.alarm_step,
                    "alarm_s": None if e.alarm_step is None else e.alarm_step * self.control_dt,
                    "channel": e.channel,
                    "suspects": e.suspects,
                    "estimate": e.estimate,
                    "statistic": e.statistic,
                }
                for e in self.episodes
            ],
            "summary": self.summary(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def run_on_logs(monitor: Any, episodes: Iterable[tuple[np.ndarray, np.ndarray]]) -> MonitorReport:
    """Every episode ``(observations (T+1, d), actions (T, a))`` through ``monitor``.

    Each episode starts with ``monitor.reset()``; after its last step the monitor
    identifies once more on what it saw (suspects and estimate at the end).
    """
    results = []
    for index, (obs, actions) in enumerate(episodes):
        monitor.reset()
        series, used, alarm, channel = [], 0, None, None
        for t in range(len(actions)):
            state = monitor.update(obs[t], actions[t])
            series.append(float(state.statistic))
            used += state.used
            if state.alarm and alarm is None:
                alarm, channel = state.alarm_step, state.channel
        suspects, estimate = monitor.identify() if alarm is not None else ((), None)
        results.append(
            EpisodeResult(
                index=index,
                statistic=series,
                used_share=used / max(len(actions) - 1, 1),
                alarm_step=alarm,
                channel=channel,
                suspects=[{"field": s.field, "score": s.score} for s in suspects],
                estimate=None if estimate is None else estimate.__dict__.copy(),
                estimate_text=None if estimate is None else str(estimate),
            )
        )
    settings = {
        "false_alarm_rate": monitor.false_alarm_rate,
        "sensor_noise_std": monitor.noise_std.tolist(),
        "matched": monitor.matched,
        "calibration_steps": monitor.calibration.steps,
    }
    return MonitorReport(monitor.task, monitor.reference.control_dt, settings, results)


def to_markdown(report: MonitorReport) -> str:
    s = report.summary()
    m = report.monitor
    lines = [
        f"# Monitor: {report.task}",
        "",
        f"False-alarm rate {m['false_alarm_rate']:g} per control step (calibrated on "
        f"{m['calibration_steps']} sim steps); matched filters {'on' if m['matched'] else 'off'}.",
        "",
        f"**{s['alarmed']} of {s['episodes']} episodes raised an alarm.**",
    ]
    if s["suspect"]:
        lines.append(
            f"Leading suspect: `{s['suspect']}` (in {s['suspect_episodes']} alarmed episodes)."
        )
    if s["suspect"] == "timing.total_latency_s":
        lines.append(
            "From commands and observations alone, observation and action latency show as "
            "one total delay; how it splits between the two is not identifiable."
        )
    lines += [
        "",
        "| episode | steps | state exact | alarm at step | test | suspect (score) | estimate |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in report.episodes:
        top = f"`{e.suspects[0]['field']}` ({e.suspects[0]['score']:.2f})" if e.suspects else "-"
        lines.append(
            f"| {e.index} | {len(e.statistic)} | {e.used_share:.0%} | "
            f"{'-' if e.alarm_step is None else e.alarm_step} | {e.channel or '-'} | {top} | "
            f"{e.estimate_text or '-'} |"
        )
    return "\n".join(lines) + "\n"


def plot(report: MonitorReport, path: str | Path) -> Path:
    """The statistic over time (episodes end to end), the alarm level, alarms and suspects."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    start = 0
    for e in report.episodes:
        steps = np.arange(start, start + len(e.statistic))
        ax.plot(steps, np.maximum(e.statistic, 1e-3), lw=0.8, color="tab:blue")
        if e.alarm_step is not None:
            at = start + e.alarm_step - 1
            ax.axvline(at, color="tab:red", lw=0.8)
            label = e.suspects[0]["field"].split(".")[-1] if e.suspects else "alarm"
            ax.annotate(label, (at, 1.0), xytext=(3, 8), textcoords="offset points",
                        fontsize=7, color="tab:red", rotation=90)  # fmt: skip
        start += len(e.statistic)
        ax.axvline(start, color="0.85", lw=0.5)
    ax.axhline(1.0, color="k", ls="--", lw=0.8, label="alarm level")
    ax.set_yscale("log")
    ax.set_xlabel("control step (episodes end to end)")
    ax.set_ylabel("statistic / threshold")
    s = report.summary()
    ax.set_title(
        f"{report.task}: {s['alarmed']}/{s['episodes']} episodes alarmed"
        + (f"; suspect {s['suspect']}" if s["suspect"] else "")
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(report: MonitorReport, out: str | Path) -> dict[str, Path]:
    """``report.json``, ``report.md`` and ``monitor.png`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    paths["json"].write_text(report.to_json())
    paths["markdown"].write_text(to_markdown(report))
    paths["plot"] = plot(report, out / "monitor.png")
    return paths
