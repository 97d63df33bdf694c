"""Shapley attribution on games whose answer is known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from sim2real.evaluation.attribution import (
    all_coalitions,
    coalitions_needed,
    permutation_standard_error,
    sample_permutations,
    shapley_exact,
    shapley_sampled,
)

PLAYERS = ("friction", "mass", "latency", "noise")
ADDITIVE = {"friction": 3.0, "mass": -1.0, "latency": 5.0, "noise": 0.5}
INTERACTION = 4.0  # paid only when friction and latency are both on


def game(coalition: frozenset) -> float:
    value = sum(ADDITIVE[p] for p in coalition)
    return value + (INTERACTION if {"friction", "latency"} <= coalition else 0.0)


def table(players=PLAYERS, value=game) -> dict:
    return {c: np.asarray(value(c)) for c in all_coalitions(players)}


def expected_shapley() -> dict:
    # The additive part goes to each player; the interaction is split evenly.
    phi = dict(ADDITIVE)
    phi["friction"] += INTERACTION / 2
    phi["latency"] += INTERACTION / 2
    return phi


def test_exact_shapley_of_an_additive_game_with_an_interaction():
    phi = shapley_exact(table(), PLAYERS)
    for player, value in expected_shapley().items():
        assert phi[player] == pytest.approx(value)
    # Efficiency: the parts add up to the whole.
    assert sum(phi.values()) == pytest.approx(game(frozenset(PLAYERS)) - game(frozenset()))


def test_sampled_shapley_is_efficient_for_any_number_of_permutations():
    values = table()
    for count in (1, 2, 5, 16):
        phi = shapley_sampled(values, sample_permutations(PLAYERS, count, seed=count))
        assert sum(phi.values()) == pytest.approx(game(frozenset(PLAYERS)))


def test_sampled_shapley_over_all_permutations_is_exact():
    everything = list(itertools.permutations(PLAYERS))
    phi = shapley_sampled(table(), everything)
    for player, value in expected_shapley().items():
        assert phi[player] == pytest.approx(value)


def test_antithetic_sampling_is_exact_on_a_pairwise_interaction():
    # With a permutation and its reverse, each pair of players is seen in both orders,
    # so a purely pairwise interaction is split evenly by any single antithetic pair.
    phi = shapley_sampled(table(), sample_permutations(PLAYERS, 2, seed=0))
    for player, value in expected_shapley().items():
        assert phi[player] == pytest.approx(value)


def test_values_per_seed_give_per_seed_shapley_values():
    # Seed s scales the game by (s + 1): Shapley values are linear in the game.
    scale = np.arange(1.0, 6.0)
    values = {c: game(c) * scale for c in all_coalitions(PLAYERS)}
    phi = shapley_exact(values, PLAYERS)
    for player, value in expected_shapley().items():
        np.testing.assert_allclose(phi[player], value * scale)


def test_permutations_are_seeded_and_come_in_antithetic_pairs():
    orders = sample_permutations(PLAYERS, 6, seed=3)
    assert orders == sample_permutations(PLAYERS, 6, seed=3)
    assert len(orders) == 6
    for first, second in zip(orders[::2], orders[1::2], strict=True):
        assert second == first[::-1]
        assert sorted(first) == sorted(PLAYERS)
    with pytest.raises(ValueError, match="permutations must be >= 1"):
        sample_permutations(PLAYERS, 0, seed=0)


def test_coalitions_needed():
    assert len(coalitions_needed(PLAYERS, None)) == 2 ** len(PLAYERS)
    orders = sample_permutations(PLAYERS, 2, seed=0)
    needed = set(coalitions_needed(PLAYERS, orders))
    everyone = frozenset(PLAYERS)
    assert {frozenset(), everyone} <= needed
    assert all(frozenset([p]) in needed and everyone - {p} in needed for p in PLAYERS)
    assert all(frozenset(order[:k]) in needed for order in orders for k in range(5))


def test_permutation_standard_error():
    # An additive game has the same marginal contributions in every order: no MC error.
    additive = table(value=lambda c: sum(ADDITIVE[p] for p in c))
    se = permutation_standard_error(additive, sample_permutations(PLAYERS, 8, seed=0))
    assert all(v == pytest.approx(0.0) for v in se.values())
    # A three-way interaction is not split evenly by every pair: some error remains.
    triple = table(value=lambda c: 6.0 * ({"friction", "mass", "latency"} <= c))
    se = permutation_standard_error(triple, sample_permutations(PLAYERS, 8, seed=0))
    assert se["friction"] > 0
    assert math.isnan(
        permutation_standard_error(triple, sample_permutations(PLAYERS, 2, seed=0))["mass"]
    )
