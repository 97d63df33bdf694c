"""The gap report: JSON (versioned schema), Markdown and PNG plots.

JSON schema ``sim2real.gap_report/1``
=====================================

Numbers are floats; an undefined number (an interval over a single episode, a
relative gap at zero sim return, a mean over only diverged episodes) is
``null``. An *estimate* is ``{"value": float, "low": float, "high": float}``:
the point estimate and its bootstrap confidence interval (level in
``settings.confidence``). Returns are raw task returns. Gaps are
``sim - variant``: positive when the variant does worse than sim.

.. code-block:: text

    {
      "schema": "sim2real.gap_report/1",
      "created": ISO 8601 time, "sim2real_version": str,
      "task": str,
      "seeds": [int, ...],                  # one episode per seed, variant and policy
      "settings": {
        "confidence": float, "bootstrap_resamples": int, "bootstrap_seed": int,
        "max_episode_steps": int | null,    # null: the task's own time limit
        "engine": str,                      # what ran this run's episodes: local, batch, ray
        "intervals": str                    # how intervals are computed, in words
      },
      "variants": {name: {
        "role": "sim" | "real" | "extra" | "attribution",
        "key": str,                         # content hash of the skews; keys episodes
        "skews": {"section.field": value}   # the non-nominal skews; {} for sim
      }},
      "policies": [{"label": str, "group": str, "id": str, "algo": str | null,
                    "source": str, "obs_normalization": bool}],
      "groups": {name: {                    # a group: the training seeds of one config
        "policies": [label, ...],
        "replication": "episode seeds" | "<n> training seeds",
        "returns": {variant name: {         # sim, real and extra variants
          "mean": estimate, "iqm": estimate,
          "episodes": int, "diverged": int, # diverged episodes are excluded from statistics
          "per_policy": {label: {"mean": float, "iqm": float,
                                 "episodes": int, "diverged": int}}
        }},
        "gaps": {variant name: {            # real and extra variants
          "gap": estimate, "relative_gap": estimate,   # relative: gap / |sim mean|
          "prob_sim_beats": estimate,      # P(sim episode > variant episode) + 0.5 P(=)
          "pairs": int                      # (policy, seed) pairs in which neither diverged
        }},
        "attribution": null | {            # a player is one skew, or one section of skews
          "variant": str,                   # the real variant
          "by": "skew" | "section",
          "players": {player: ["section.field", ...]},  # the skews each player switches on
          "method": "exact" | "sampled",    # exact: all 2^n subsets; sampled: permutations
          "permutations": int | null,       # sampled: how many (antithetic pairs)
          "pairs_used": int, "pairs_excluded": int,  # excluded: a subset episode diverged
          "total": estimate,                # the gap over the pairs used; sum of "shapley"
          "shapley": {player: estimate},    # adds up to "total" (efficiency)
          "permutation_se": {player: float | null} | null,  # sampled: Monte Carlo error
          "alone": {player: estimate},      # gap with only this player's skews on
          "without": {player: estimate},    # gap with every skew but this player's
          "fixing": {player: estimate}      # total - without: gap closed by fixing it
        }
      }},
      "divergences": {"total": int, "by_variant": {variant name: int}},
      "episodes": [{"policy": label, "variant": name, "seed": int, "return": float | null,
                    "length": int, "diverged": bool, "reason": str | null}]
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.evaluation.stats import Estimate

SCHEMA = "sim2real.gap_report/1"
REPORT_JSON, REPORT_MD = "report.json", "report.md"
RETURNS_PNG, ATTRIBUTION_PNG = "returns.png", "attribution.png"


@dataclass(frozen=True)
class VariantInfo:
    """One evaluated variant: its role and skews (``{}`` for sim)."""

    name: str
    role: str
    key: str
    skews: dict[str, Any]


@dataclass(frozen=True)
class Returns:
    """The returns of one group of policies on one variant."""

    mean: Estimate
    iqm: Estimate
    episodes: int
    diverged: int
    per_policy: dict[str, dict[str, float | int | None]]


@dataclass(frozen=True)
class Gap:
    """Sim minus one variant, paired by seed."""

    gap: Estimate
    relative_gap: Estimate
    prob_sim_beats: Estimate
    pairs: int


@dataclass(frozen=True)
class Attribution:
    """The gap of the real variant split over its skews (or sections of skews)."""

    variant: str
    by: str
    members: dict[str, list[str]]
    method: str
    permutations: int | None
    pairs_used: int
    pairs_excluded: int
    total: Estimate
    shapley: dict[str, Estimate]
    permutation_se: dict[str, float] | None
    alone: dict[str, Estimate]
    without: dict[str, Estimate]
    fixing: dict[str, Estimate]


@dataclass(frozen=True)
class GroupResult:
    """Everything measured for one group of policies (the training seeds of one config)."""

    name: str
    policies: list[str]
    replication: str
    returns: dict[str, Returns]
    gaps: dict[str, Gap]
    attribution: Attribution | None


@dataclass(frozen=True)
class GapReport:
    """The result of :func:`sim2real.evaluate_gap`; see the module docstring for the JSON."""

    task: str
    seeds: list[int]
    settings: dict[str, Any]
    variants: dict[str, VariantInfo]
    policies: list[dict[str, Any]]
    groups: dict[str, GroupResult]
    episodes: list[dict[str, Any]] = field(repr=False)
    created: str = ""
    version: str = ""

    # ------------------------------------------------------------------ shortcuts
    @property
    def real(self) -> str:
        """The name of the real variant."""
        return next(name for name, v in self.variants.items() if v.role == "real")

    @property
    def gap(self) -> Estimate:
        """Sim minus real, of the first group."""
        return next(iter(self.groups.values())).gaps[self.real].gap

    @property
    def divergences(self) -> int:
        return sum(1 for e in self.episodes if e["diverged"])

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        by_variant: dict[str, int] = {}
        for episode in self.episodes:
            if episode["diverged"]:
                by_variant[episode["variant"]] = by_variant.get(episode["variant"], 0) + 1
        return {
            "schema": SCHEMA,
            "created": self.created,
            "sim2real_version": self.version,
            "task": self.task,
            "seeds": list(self.seeds),
            "settings": dict(self.settings),
            "variants": {
                name: {"role": v.role, "key": v.key, "skews": _jsonable(v.skews)}
                for name, v in self.variants.items()
            },
            "policies": list(self.policies),
            "groups": {name: _group_dict(group) for name, group in self.groups.items()},
            "divergences": {"total": self.divergences, "by_variant": by_variant},
            "episodes": list(self.episodes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text (schema ``sim2real.gap_report/1``)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    # ------------------------------------------------------------------ Markdown
    def to_markdown(self) -> str:
        """Tables of returns, gaps and attribution, for reading."""
        confidence = f"{100 * self.settings['confidence']:g}%"
        seeds = _seed_ranges(self.seeds)
        lines = [
            f"# Sim-to-real gap: {self.task}",
            "",
            f"Seeds {seeds} ({len(self.seeds)} episodes per policy and variant); "
            f"{confidence} bootstrap intervals ({self.settings['intervals']}). "
            "Raw task returns; gap = sim - variant.",
            "",
            "## Returns",
            "",
            "| group | variant | skews | mean | IQM | episodes | diverged |",
            "|---|---|---|---|---|---|---|",
        ]
        for group in self.groups.values():
            for name, returns in group.returns.items():
                skews = len(self.variants[name].skews)
                lines.append(
                    f"| {group.name} | {name} | {skews} | {returns.mean.format()} | "
                    f"{returns.iqm.format()} | {returns.episodes} | {returns.diverged} |"
                )
        lines += [
            "",
            "## Gap",
            "",
            "| group | variant | gap | relative gap | P(sim beats variant) | pairs |",
            "|---|---|---|---|---|---|",
        ]
        for group in self.groups.values():
            for name, gap in group.gaps.items():
                lines.append(
                    f"| {group.name} | {name} | {gap.gap.format()} | "
                    f"{_percent(gap.relative_gap)} | {gap.prob_sim_beats.format(2)} | "
                    f"{gap.pairs} |"
                )
        for group in self.groups.values():
            lines += _attribution_markdown(group, self.variants)
        lines += ["", "## Divergences", ""]
        diverged = [e for e in self.episodes if e["diverged"]]
        if not diverged:
            lines.append("None: every episode ran to its end.")
        else:
            lines.append(
                f"{len(diverged)} episodes ended in a physics divergence and are excluded "
                "from every statistic:"
            )
            lines.append("")
            for episode in diverged:
                lines.append(
                    f"- {episode['policy']} on {episode['variant']}, seed {episode['seed']}, "
                    f"step {episode['length']}: {episode['reason']}"
                )
        policies = ", ".join(
            f"{p['label']} ({p['algo'] or 'callable'}, {p['source']})" for p in self.policies
        )
        lines += ["", f"Policies: {policies}.", ""]
        return "\n".join(lines)

    # ------------------------------------------------------------------ plots
    def plot_returns(self, path: str | Path) -> Path:
        """Return distributions per variant (one panel per group; a colour per policy), with
        the mean and its interval, as a PNG."""
        from matplotlib.figure import Figure

        groups = list(self.groups.values())
        figure = Figure(figsize=(1.6 + 1.9 * len(groups[0].returns), 3.6 * len(groups)))
        axes = figure.subplots(len(groups), 1, squeeze=False)[:, 0]
        jitter = np.random.default_rng(0)
        for ax, group in zip(axes, groups, strict=True):
            names = list(group.returns)
            by_policy = [self._returns_of(group, name) for name in names]
            ax.boxplot(
                [[r for rs in b.values() for r in rs] for b in by_policy],
                showfliers=False,
                widths=0.5,
            )
            for position, (name, returns) in enumerate(zip(names, by_policy, strict=True), 1):
                for colour, (label, sample) in enumerate(returns.items()):
                    xs = position + jitter.uniform(-0.15, 0.15, len(sample))
                    ax.scatter(
                        xs,
                        sample,
                        s=9,
                        alpha=0.6,
                        color=f"C{colour % 10}",
                        zorder=3,
                        label=label if position == 1 and len(returns) > 1 else None,
                    )
                mean = group.returns[name].mean
                ax.errorbar(
                    position + 0.32,
                    mean.value,
                    yerr=_yerr(mean),
                    fmt="D",
                    color="black",
                    capsize=3,
                    markersize=4,
                )
            labels = []
            for name in names:
                diverged = group.returns[name].diverged
                extra = f", {diverged} diverged" if diverged else ""
                labels.append(f"{name}\n({self.variants[name].role}{extra})")
            ax.set_xticks(range(1, len(names) + 1), labels)
            ax.set_ylabel("episode return")
            ax.set_title(
                f"{self.task}: {group.name} ({group.replication})\n"
                "dots: episodes; diamond: mean with its interval",
                fontsize="medium",
            )
            ax.grid(axis="y", alpha=0.3)
            if len(group.policies) > 1:
                ax.legend(fontsize="small", loc="best")
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        return Path(path)

    def plot_attribution(self, path: str | Path) -> Path | None:
        """Shapley values of the skews with their intervals (one panel per group), as a PNG;
        ``None`` when no group has an attribution."""
        from matplotlib.figure import Figure

        groups = [g for g in self.groups.values() if g.attribution is not None]
        if not groups:
            return None
        rows = max(len(g.attribution.shapley) for g in groups)  # type: ignore[union-attr]
        figure = Figure(figsize=(8, (1.2 + 0.42 * (rows + 1)) * len(groups)))
        axes = figure.subplots(len(groups), 1, squeeze=False)[:, 0]
        for ax, group in zip(axes, groups, strict=True):
            attribution = group.attribution
            assert attribution is not None
            names = [*attribution.shapley, "total gap"]
            estimates = [*attribution.shapley.values(), attribution.total]
            values = [e.value for e in estimates]
            colors = ["tab:red" if v > 0 else "tab:green" for v in values[:-1]] + ["tab:gray"]
            ys = np.arange(len(names))[::-1]
            ax.barh(ys, values, color=colors, alpha=0.75)
            ax.errorbar(
                values,
                ys,
                xerr=np.array([_yerr(e)[:, 0] for e in estimates]).T,
                fmt="none",
                color="black",
                capsize=3,
            )
            ax.set_yticks(ys, names)
            ax.axvline(0, color="black", linewidth=0.8)
            how = (
                "exact"
                if attribution.method == "exact"
                else f"{attribution.permutations} sampled permutations"
            )
            level = f"{100 * self.settings['confidence']:g}%"
            ax.set_title(
                f"{self.task}, {group.name}: Shapley attribution of the gap to "
                f"{attribution.variant}\n({how}; bars: {level} intervals)",
                fontsize="medium",
            )
            ax.set_xlabel("share of the gap (return lost; positive: the skew hurts)")
            ax.grid(axis="x", alpha=0.3)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        return Path(path)

    def save(self, out: str | Path) -> list[Path]:
        """Write ``report.json``, ``report.md``, ``returns.png`` and ``attribution.png``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / REPORT_JSON).write_text(self.to_json() + "\n")
        (out / REPORT_MD).write_text(self.to_markdown())
        written = [out / REPORT_JSON, out / REPORT_MD, self.plot_returns(out / RETURNS_PNG)]
        attribution = self.plot_attribution(out / ATTRIBUTION_PNG)
        return written + ([attribution] if attribution is not None else [])

    def _returns_of(self, group: GroupResult, variant: str) -> dict[str, list[float]]:
        """The finite returns of each policy of ``group`` on ``variant``. Episodes are listed
        under the first variant name with the same skews (an alias shares its episodes)."""
        key = self.variants[variant].key
        listed = next(name for name, v in self.variants.items() if v.key == key)
        returns: dict[str, list[float]] = {label: [] for label in group.policies}
        for e in self.episodes:
            if e["variant"] == listed and e["policy"] in returns and not e["diverged"]:
                returns[e["policy"]].append(e["return"])
        return returns


# ---------------------------------------------------------------------- helpers
def _group_dict(group: GroupResult) -> dict[str, Any]:
    attribution = group.attribution
    return {
        "policies": list(group.policies),
        "replication": group.replication,
        "returns": {
            name: {
                "mean": r.mean.to_dict(),
                "iqm": r.iqm.to_dict(),
                "episodes": r.episodes,
                "diverged": r.diverged,
                "per_policy": {k: _jsonable(v) for k, v in r.per_policy.items()},
            }
            for name, r in group.returns.items()
        },
        "gaps": {
            name: {
                "gap": g.gap.to_dict(),
                "relative_gap": g.relative_gap.to_dict(),
                "prob_sim_beats": g.prob_sim_beats.to_dict(),
                "pairs": g.pairs,
            }
            for name, g in group.gaps.items()
        },
        "attribution": None
        if attribution is None
        else {
            "variant": attribution.variant,
            "by": attribution.by,
            "players": attribution.members,
            "method": attribution.method,
            "permutations": attribution.permutations,
            "pairs_used": attribution.pairs_used,
            "pairs_excluded": attribution.pairs_excluded,
            "total": attribution.total.to_dict(),
            "shapley": {k: e.to_dict() for k, e in attribution.shapley.items()},
            "permutation_se": None
            if attribution.permutation_se is None
            else _jsonable(attribution.permutation_se),
            "alone": {k: e.to_dict() for k, e in attribution.alone.items()},
            "without": {k: e.to_dict() for k, e in attribution.without.items()},
            "fixing": {k: e.to_dict() for k, e in attribution.fixing.items()},
        },
    }


def _jsonable(value: Any) -> Any:
    """Plain JSON values; NaN and infinities become ``None``."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _attribution_markdown(group: GroupResult, variants: dict[str, VariantInfo]) -> list[str]:
    attribution = group.attribution
    if attribution is None:
        return []
    player = attribution.by  # "skew" or "section"
    how = (
        f"exact Shapley values over all {2 ** len(attribution.shapley)} subsets of {player}s"
        if attribution.method == "exact"
        else f"Shapley values sampled over {attribution.permutations} permutations "
        "(antithetic pairs)"
    )
    excluded = (
        f", {attribution.pairs_excluded} excluded because a subset episode diverged"
        if attribution.pairs_excluded
        else ""
    )
    se = bool(attribution.permutation_se)
    lines = [
        "",
        f"## Attribution: {group.name} on {attribution.variant}",
        "",
        f"{how}; {attribution.pairs_used} (policy, seed) pairs{excluded}. *alone*: the gap "
        f"with only this {player}; *fixing*: the gap closed by removing only this {player}; "
        "the Shapley values add up to the total.",
        "",
        f"| {player} | {'value' if player == 'skew' else 'skews'} | Shapley | alone | fixing |"
        + (" MC s.e. |" if se else ""),
        "|---|---|---|---|---|" + ("---|" if se else ""),
    ]
    skews = variants[attribution.variant].skews
    for name, shapley in attribution.shapley.items():
        fields = attribution.members[name]
        value = _short(skews[name]) if fields == [name] else ", ".join(fields)
        row = (
            f"| {name} | {value} | {shapley.format()} | "
            f"{attribution.alone[name].format()} | {attribution.fixing[name].format()} |"
        )
        if se:
            row += f" {attribution.permutation_se[name]:.1f} |"  # type: ignore[index]
        lines.append(row)
    lines.append(f"| **total** | | {attribution.total.format()} | | |" + (" |" if se else ""))
    return lines


def _short(value: Any) -> str:
    if isinstance(value, list):
        return f"[{value[0]:g}, …] ({len(value)})" if len(value) > 3 else str(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _percent(estimate: Estimate) -> str:
    if not np.isfinite(estimate.value):
        return "n/a"
    text = f"{100 * estimate.value:.1f}%"
    if np.isfinite(estimate.low) and np.isfinite(estimate.high):
        text += f" [{100 * estimate.low:.1f}%, {100 * estimate.high:.1f}%]"
    return text


def _yerr(estimate: Estimate) -> np.ndarray:
    """Asymmetric error bar lengths ``[[below], [above]]``; zero where undefined."""
    below = estimate.value - estimate.low if np.isfinite(estimate.low) else 0.0
    above = estimate.high - estimate.value if np.isfinite(estimate.high) else 0.0
    return np.array([[max(below, 0.0)], [max(above, 0.0)]])


def _seed_ranges(seeds: list[int]) -> str:
    """``[100, 101, 102, 110]`` -> ``"100-102, 110"``."""
    parts: list[str] = []
    start = previous = seeds[0]
    for seed in [*seeds[1:], None]:
        if seed is not None and seed == previous + 1:
            previous = seed
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if seed is not None:
            start = previous = seed
    return ", ".join(parts)
