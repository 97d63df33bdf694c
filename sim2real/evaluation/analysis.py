"""From finished episodes to the numbers of the report: returns, gaps and attribution.

Returns are held as one array per (policy, variant), aligned with the seed
list, with NaN where an episode diverged. Every statistic drops NaN: a paired
statistic keeps only the seeds where both episodes finished.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from sim2real.engines.base import Episode
from sim2real.evaluation import stats
from sim2real.evaluation.attribution import (
    Coalition,
    permutation_standard_error,
    shapley_exact,
    shapley_sampled,
)
from sim2real.evaluation.policy import PolicySource
from sim2real.evaluation.report import Attribution, Gap, GroupResult, Returns, VariantInfo

ReturnTable = Mapping[tuple[str, str], np.ndarray]
Bootstrap = Callable[..., stats.Estimate]  # stats.bootstrap with the interval settings bound


@dataclass(frozen=True)
class AttributionPlan:
    """Which variant key realizes each coalition of players; a player is a skew field
    (``by="skew"``) or a section of them (``by="section"``)."""

    variant: str
    players: tuple[str, ...]
    keys: Mapping[Coalition, str]
    permutations: tuple[tuple[str, ...], ...] | None  # None: exact over all coalitions
    by: str
    members: Mapping[str, tuple[str, ...]]  # the skew fields of each player


@dataclass(frozen=True)
class Settings:
    """How intervals are computed."""

    confidence: float
    resamples: int
    seed: int


def return_table(
    episodes: Mapping[tuple[str, str, int], Episode],
    pairs: Sequence[tuple[str, str]],
    seeds: Sequence[int],
) -> dict[tuple[str, str], np.ndarray]:
    """Returns of each ``(policy id, variant key)`` over ``seeds``; NaN where diverged."""
    table = {}
    for policy, variant in pairs:
        row = np.empty(len(seeds))
        for i, seed in enumerate(seeds):
            episode = episodes[(policy, variant, seed)]
            row[i] = np.nan if episode.diverged else episode.ret
        table[(policy, variant)] = row
    return table


def summarize_group(
    name: str,
    sources: Sequence[PolicySource],
    variants: Sequence[VariantInfo],
    table: ReturnTable,
    plan: AttributionPlan | None,
    settings: Settings,
) -> GroupResult:
    """Returns on every headline variant, gaps to sim, and the attribution of one group."""
    boot = partial(
        stats.bootstrap,
        confidence=settings.confidence,
        n_resamples=settings.resamples,
        seed=settings.seed,
    )
    sim = next(v for v in variants if v.role == "sim")
    returns = {v.name: _returns(sources, v.key, table, boot) for v in variants}
    gaps = {v.name: _gap(sources, sim.key, v.key, table, boot) for v in variants if v is not sim}
    n = len(sources)
    return GroupResult(
        name=name,
        policies=[s.label for s in sources],
        replication="episode seeds" if n == 1 else f"{n} training seeds",
        returns=returns,
        gaps=gaps,
        attribution=None if plan is None else _attribution(sources, plan, table, boot),
    )


def _returns(
    sources: Sequence[PolicySource], key: str, table: ReturnTable, boot: Bootstrap
) -> Returns:
    rows = [table[(s.identity, key)] for s in sources]
    finite = [row[np.isfinite(row)] for row in rows]
    per_policy = {
        s.label: {
            "mean": float(stats.mean(f)) if len(f) else None,
            "iqm": float(stats.iqm(f)) if len(f) else None,
            "episodes": len(row),
            "diverged": int(len(row) - len(f)),
        }
        for s, row, f in zip(sources, rows, finite, strict=True)
    }
    return Returns(
        mean=boot([(f,) for f in finite], stats.mean),
        iqm=boot([(f,) for f in finite], stats.iqm),
        episodes=sum(len(row) for row in rows),
        diverged=sum(len(row) - len(f) for row, f in zip(rows, finite, strict=True)),
        per_policy=per_policy,
    )


def _gap(
    sources: Sequence[PolicySource], sim_key: str, key: str, table: ReturnTable, boot: Bootstrap
) -> Gap:
    pairs = []
    for source in sources:
        sim, real = table[(source.identity, sim_key)], table[(source.identity, key)]
        both = np.isfinite(sim) & np.isfinite(real)
        pairs.append((sim[both], real[both]))
    return Gap(
        gap=boot(pairs, stats.gap),
        relative_gap=boot(pairs, stats.relative_gap),
        prob_sim_beats=boot(pairs, stats.prob_superior),
        pairs=sum(len(p[0]) for p in pairs),
    )


def _attribution(
    sources: Sequence[PolicySource], plan: AttributionPlan, table: ReturnTable, boot: Bootstrap
) -> Attribution:
    everyone = frozenset(plan.players)
    per_policy = []  # the coalition values v(S) of each policy, over its complete seeds
    excluded = 0
    for source in sources:
        rows = {c: table[(source.identity, key)] for c, key in plan.keys.items()}
        complete = np.logical_and.reduce([np.isfinite(row) for row in rows.values()])
        excluded += int(np.sum(~complete))
        sim = rows[frozenset()][complete]
        per_policy.append({c: sim - row[complete] for c, row in rows.items()})

    def estimate(part: Callable[[dict[Coalition, np.ndarray]], np.ndarray]) -> stats.Estimate:
        return boot([(part(values),) for values in per_policy], stats.mean)

    if plan.permutations is None:
        shapley = [shapley_exact(values, plan.players) for values in per_policy]
    else:
        shapley = [shapley_sampled(values, plan.permutations) for values in per_policy]
    permutation_se = None
    if plan.permutations is not None:
        pooled = {c: np.concatenate([v[c] for v in per_policy]) for c in plan.keys}
        if len(pooled[everyone]):
            permutation_se = permutation_standard_error(pooled, plan.permutations)
    return Attribution(
        variant=plan.variant,
        by=plan.by,
        members={p: list(fields) for p, fields in plan.members.items()},
        method="exact" if plan.permutations is None else "sampled",
        permutations=None if plan.permutations is None else len(plan.permutations),
        pairs_used=sum(len(v[everyone]) for v in per_policy),
        pairs_excluded=excluded,
        total=estimate(lambda v: v[everyone]),
        shapley={p: boot([(phi[p],) for phi in shapley], stats.mean) for p in plan.players},
        permutation_se=permutation_se,
        alone={p: estimate(lambda v, p=p: v[frozenset([p])]) for p in plan.players},
        without={p: estimate(lambda v, p=p: v[everyone - {p}]) for p in plan.players},
        fixing={p: estimate(lambda v, p=p: v[everyone] - v[everyone - {p}]) for p in plan.players},
    )
