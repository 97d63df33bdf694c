"""Statistics of episode returns: pure functions over arrays.

Every statistic takes arrays whose *last* axis (or ``axis``) runs over episodes
and reduces it, so that it works unchanged on one sample and, vectorized, on a
stack of bootstrap resamples. Paired statistics (``gap``, ``relative_gap``,
``prob_superior``) take two arrays aligned by episode seed.

:func:`bootstrap` turns a statistic into an :class:`Estimate` with a confidence
interval. Its unit of replication is the *training seed*: it takes one sample
per trained policy and reports the mean of the per-policy statistics.

- One policy: a paired bootstrap over episode seeds (``scipy.stats.bootstrap``,
  BCa, seeded; percentile when BCa is undefined, e.g. for constant data).
- Several policies: a two-level percentile bootstrap, stratified by level:
  resample policies with replacement, then, for each drawn policy, one
  bootstrap resample of its episode seeds (drawn from ``scipy.stats.bootstrap``'s
  bootstrap distribution of that policy). Training-seed variation and episode
  noise both widen the interval; pooled episodes never stand in for policies.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

Statistic = Callable[..., Any]
"""``statistic(*paired_arrays, axis=-1) -> array`` reducing the episode axis."""

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval; NaN where undefined."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float | None]:
        """``{"value", "low", "high"}``, with ``None`` (JSON null) for undefined numbers."""
        return {key: _finite_or_none(getattr(self, key)) for key in ("value", "low", "high")}

    def format(self, digits: int = 1) -> str:
        """``"12.3 [10.1, 14.2]"``; ``"n/a"`` where undefined."""
        if not math.isfinite(self.value):
            return "n/a"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


UNDEFINED = Estimate(math.nan, math.nan, math.nan)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# ---------------------------------------------------------------------- statistics
def mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Arithmetic mean over ``axis``."""
    return np.mean(x, axis=axis)


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50 % (25 % trimmed from each end)."""
    return scipy.stats.trim_mean(x, 0.25, axis=axis)


def gap(sim: np.ndarray, real: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of ``sim - real`` over ``axis``, the two aligned by seed (positive: real is worse)."""
    return np.mean(np.asarray(sim) - np.asarray(real), axis=axis)


def relative_gap(sim: np.ndarray, real: np.ndarray, axis: int = -1) -> np.ndarray:
    """``gap(sim, real) / |mean(sim)|``: the share of sim performance lost; inf/NaN at 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return gap(sim, real, axis) / np.abs(np.mean(sim, axis=axis))


def prob_superior(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """``P(X > Y) + 0.5 P(X = Y)`` over all pairs of an ``x`` episode and a ``y`` episode."""
    x = np.moveaxis(np.asarray(x), axis, -1)[..., :, None]
    y = np.moveaxis(np.asarray(y), axis, -1)[..., None, :]
    return np.mean(x > y, axis=(-2, -1)) + 0.5 * np.mean(x == y, axis=(-2, -1))


# ---------------------------------------------------------------------- intervals
def bootstrap(
    replicates: Sequence[Sequence[np.ndarray]],
    statistic: Statistic,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """The mean over training seeds of ``statistic``, with a bootstrap confidence interval.

    Args:
        replicates: one entry per trained policy (training seed); each a tuple
            of paired 1-D arrays aligned by episode seed, e.g. ``(sim, real)``.
            Policies whose arrays are empty (every episode diverged) are left out.
        statistic: reduces the episode axis, e.g. :func:`mean` or :func:`gap`.
        confidence: the interval's coverage.
        n_resamples: bootstrap resamples at each level.
        seed: seeds the resampling; the same seed gives the same interval.

    The interval is undefined (NaN) for a single policy with fewer than two
    episodes; the point estimate is then still given.
    """
    samples = [tuple(np.asarray(a, dtype=np.float64) for a in r) for r in replicates]
    samples = [s for s in samples if len(s[0])]
    if not samples:
        return UNDEFINED
    per_policy = np.array([float(statistic(*s)) for s in samples])
    value = float(np.mean(per_policy))
    if len(samples) == 1:
        low, high = _one_level(samples[0], statistic, confidence, n_resamples, seed)
        return Estimate(value, low, high)
    rng = np.random.default_rng(seed)
    inner = np.stack(
        [_distribution(s, statistic, n_resamples, rng) for s in samples]
    )  # (policies, n_resamples)
    n = len(samples)
    drawn_policy = rng.integers(n, size=(n_resamples, n))
    drawn_resample = rng.integers(n_resamples, size=(n_resamples, n))
    outer = np.mean(inner[drawn_policy, drawn_resample], axis=1)
    low, high = _percentile_interval(outer, confidence)
    return Estimate(value, low, high)


def _one_level(
    sample: tuple[np.ndarray, ...],
    statistic: Statistic,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> tuple[float, float]:
    if len(sample[0]) < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (constant) data: handled below
        result = scipy.stats.bootstrap(
            sample,
            statistic,
            n_resamples=n_resamples,
            vectorized=True,
            paired=True,
            confidence_level=confidence,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    if math.isfinite(low) and math.isfinite(high):
        return float(low), float(high)
    return _percentile_interval(result.bootstrap_distribution, confidence)


def _distribution(
    sample: tuple[np.ndarray, ...],
    statistic: Statistic,
    n_resamples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The bootstrap distribution of ``statistic`` over one policy's episode seeds."""
    if len(sample[0]) < 2:
        return np.full(n_resamples, float(statistic(*sample)))
    result = scipy.stats.bootstrap(
        sample,
        statistic,
        n_resamples=n_resamples,
        vectorized=True,
        paired=True,
        method="percentile",
        rng=rng,
    )
    return np.asarray(result.bootstrap_distribution, dtype=np.float64)


def _percentile_interval(distribution: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = distribution[np.isfinite(distribution)]
    if not len(finite):
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
