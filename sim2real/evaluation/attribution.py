"""Attribution of a gap to the skews that cause it: pure functions over a value table.

The players are the skews of the real spec. The value of a coalition ``S`` (a
set of skews) is the gap it causes on its own: the sim return minus the return
with only the skews in ``S`` switched on, so ``v({}) = 0`` and ``v(all)`` is the
whole gap. Values may be arrays (one entry per episode seed); every function
here works elementwise, so per-seed attributions come out of one call.

- :func:`shapley_exact` sums over all ``2^n`` coalitions (used up to
  :data:`EXACT_MAX_SKEWS` skews);
- :func:`shapley_sampled` averages marginal contributions along sampled
  permutations (antithetic pairs: each permutation and its reverse).

Both are *efficient*: the parts add up to ``v(all) - v({})``, exactly, for any
number of permutations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

Coalition = frozenset[str]
EXACT_MAX_SKEWS = 6


def all_coalitions(players: Sequence[str]) -> list[Coalition]:
    """Every subset of ``players``, from the empty set to the full set."""
    return [
        frozenset(subset)
        for size in range(len(players) + 1)
        for subset in itertools.combinations(players, size)
    ]


def sample_permutations(players: Sequence[str], count: int, seed: int) -> list[tuple[str, ...]]:
    """``count`` orderings of ``players``: random ones, each followed by its reverse."""
    if count < 1:
        raise ValueError(f"the number of Shapley permutations must be >= 1, got {count}")
    rng = np.random.default_rng(seed)
    orders: list[tuple[str, ...]] = []
    while len(orders) < count:
        order = tuple(players[i] for i in rng.permutation(len(players)))
        orders.extend([order, order[::-1]])
    return orders[:count]


def coalitions_needed(
    players: Sequence[str], permutations: Sequence[Sequence[str]] | None
) -> list[Coalition]:
    """The coalitions to evaluate: all of them (``permutations is None``: exact Shapley) or
    the prefixes of each permutation plus each skew alone and all but each skew."""
    if permutations is None:
        return all_coalitions(players)
    everyone = frozenset(players)
    needed = {frozenset(), everyone}
    needed.update(frozenset([p]) for p in players)
    needed.update(everyone - {p} for p in players)
    for order in permutations:
        needed.update(frozenset(order[:k]) for k in range(1, len(order)))
    return sorted(needed, key=lambda c: (len(c), sorted(c)))


def shapley_exact(
    values: Mapping[Coalition, np.ndarray], players: Sequence[str]
) -> dict[str, np.ndarray]:
    """Shapley value of each player from the values of all ``2^n`` coalitions.

    ``phi_i = sum over S not containing i of |S|! (n-|S|-1)! / n! * (v(S + i) - v(S))``.
    """
    n = len(players)
    phi = {}
    for player in players:
        others = [p for p in players if p != player]
        total: np.ndarray | float = 0.0
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                coalition = frozenset(subset)
                total = total + weight * (values[coalition | {player}] - values[coalition])
        phi[player] = np.asarray(total, dtype=np.float64)
    return phi


def marginal_contributions(
    values: Mapping[Coalition, np.ndarray], permutations: Sequence[Sequence[str]]
) -> dict[str, np.ndarray]:
    """Each player's marginal contribution along each permutation: shape ``(permutations, ...)``."""
    contributions: dict[str, list[np.ndarray]] = {p: [] for p in permutations[0]}
    for order in permutations:
        before: Coalition = frozenset()
        for player in order:
            after = before | {player}
            contributions[player].append(np.asarray(values[after] - values[before]))
            before = after
    return {p: np.stack(c).astype(np.float64) for p, c in contributions.items()}


def shapley_sampled(
    values: Mapping[Coalition, np.ndarray], permutations: Sequence[Sequence[str]]
) -> dict[str, np.ndarray]:
    """Shapley values estimated as the mean marginal contribution over ``permutations``."""
    return {p: c.mean(axis=0) for p, c in marginal_contributions(values, permutations).items()}


def permutation_standard_error(
    values: Mapping[Coalition, np.ndarray], permutations: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Monte Carlo standard error of each sampled Shapley value (of its mean over seeds).

    Antithetic pairs are averaged first, since a permutation and its reverse are
    not independent; NaN with fewer than two pairs.
    """
    result = {}
    for player, contribution in marginal_contributions(values, permutations).items():
        per_permutation = contribution.reshape(len(permutations), -1).mean(axis=1)
        pairs = len(per_permutation) // 2
        if pairs < 2:
            result[player] = math.nan
            continue
        paired = per_permutation[: 2 * pairs].reshape(pairs, 2).mean(axis=1)
        result[player] = float(np.std(paired, ddof=1) / math.sqrt(pairs))
    return result
