"""The statistics of an operating envelope: exact binomial bounds on per-episode success.

A region of skew space holds ``n`` episodes of which ``k`` succeeded. Its
success probability ``p`` is bounded with Clopper-Pearson (exact binomial)
bounds, each one-sided at the stated confidence:

- **inside** when the lower bound is at least ``success``: ``P(p >= success)`` is
  certified at ``confidence``;
- **outside** when the upper bound is below ``success``;
- **uncertain** otherwise.

With no failure at all, the lower bound is ``(1 - confidence) ** (1 / n)``, so
a region needs :func:`zero_failure_episodes` episodes (29 for 0.9 at 95 %)
before it can be called inside.

>>> zero_failure_episodes(0.9, 0.95)
29
>>> classify(29, 29, 0.9, 0.95), classify(28, 28, 0.9, 0.95)
(<Status.INSIDE: 'inside'>, <Status.UNCERTAIN: 'uncertain'>)
"""

from __future__ import annotations

import math
from enum import Enum

from scipy.stats import beta


class Status(str, Enum):
    """The verdict on a region."""

    INSIDE = "inside"
    OUTSIDE = "outside"
    UNCERTAIN = "uncertain"

    def __str__(self) -> str:
        return self.value


def _check(k: int, n: int, confidence: float) -> None:
    if not 0 <= k <= n:
        raise ValueError(f"successes must be between 0 and the episodes ({n}), got {k}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")


def lower_bound(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound on ``p`` from ``k`` successes in ``n`` episodes:
    ``P(p >= bound) >= confidence``. 0 when ``k == 0`` (or ``n == 0``)."""
    _check(k, n, confidence)
    if k == 0:
        return 0.0
    return float(beta.ppf(1 - confidence, k, n - k + 1))


def upper_bound(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound on ``p``: ``P(p <= bound) >= confidence``.
    1 when ``k == n`` (or ``n == 0``)."""
    _check(k, n, confidence)
    if k == n:
        return 1.0
    return float(beta.ppf(confidence, k + 1, n - k))


def classify(k: int, n: int, success: float, confidence: float) -> Status:
    """Inside, outside or uncertain, for ``k`` successes in ``n`` episodes (see the module)."""
    if lower_bound(k, n, confidence) >= success:
        return Status.INSIDE
    if upper_bound(k, n, confidence) < success:
        return Status.OUTSIDE
    return Status.UNCERTAIN


def zero_failure_episodes(success: float, confidence: float) -> int:
    """The fewest episodes, all successful, that make a region inside:
    the smallest ``n`` with ``(1 - confidence) ** (1 / n) >= success``."""
    if not 0 < success < 1:
        raise ValueError(f"success must be strictly between 0 and 1, got {success}")
    n = max(1, math.ceil(math.log(1 - confidence) / math.log(success)))
    while lower_bound(n, n, confidence) < success:  # guard against rounding at the edge
        n += 1
    while n > 1 and lower_bound(n - 1, n - 1, confidence) >= success:
        n -= 1
    return n


def episodes_to_decide(k: int, n: int, success: float, confidence: float, limit: int) -> int:
    """The fewest further episodes that could decide an undecided region, towards the side
    its success rate points to: all successes towards inside when ``k / n >= success``,
    else all failures towards outside (with no episode yet, whichever needs fewer).
    ``limit`` when that takes more than ``limit`` further episodes."""
    towards_inside = n > 0 and k >= success * n
    towards_outside = n > 0 and not towards_inside
    for m in range(1, limit + 1):
        if not towards_outside and lower_bound(k + m, n + m, confidence) >= success:
            return m
        if not towards_inside and upper_bound(k, n + m, confidence) < success:
            return m
    return limit
