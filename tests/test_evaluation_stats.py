"""Statistics of the gap evaluator against known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from sim2real.evaluation import stats
from sim2real.evaluation.stats import Estimate, bootstrap


def test_mean_and_iqm_known_values():
    assert stats.mean(np.array([1.0, 2.0, 3.0, 4.0])) == 2.5
    # IQM of 1..8 drops 1, 2 and 7, 8: mean of 3..6.
    assert stats.iqm(np.arange(1.0, 9.0)) == 4.5
    # One outlier moves the mean, not the IQM.
    assert stats.iqm(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 1e6])) == 4.5


def test_statistics_reduce_the_last_axis_of_a_stack():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(stats.mean(x), [2.5, 2.0])
    np.testing.assert_array_equal(stats.gap(x, x - 1), [1.0, 1.0])


def test_gap_and_relative_gap_known_values():
    sim, real = np.array([3.0, 4.0]), np.array([1.0, 1.0])
    assert stats.gap(sim, real) == 2.5
    assert stats.relative_gap(sim, real) == pytest.approx(2.5 / 3.5)
    # Relative to |sim|: a negative sim mean keeps the sign of the gap.
    assert stats.relative_gap(np.array([-2.0]), np.array([-3.0])) == pytest.approx(0.5)
    assert math.isinf(stats.relative_gap(np.array([0.0]), np.array([-1.0])))


def test_prob_superior_counts_ties_as_half():
    assert stats.prob_superior(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])) == 0.5
    assert stats.prob_superior(np.array([3.0, 3.0]), np.array([1.0, 2.0])) == 1.0
    assert stats.prob_superior(np.array([1.0]), np.array([1.0])) == 0.5
    # All pairs, not only same-seed pairs: 3 of 4 pairs have x > y.
    assert stats.prob_superior(np.array([1.0, 3.0]), np.array([0.0, 2.0])) == 0.75


def test_one_policy_interval_is_scipys_paired_bca_bootstrap():
    rng = np.random.default_rng(1)
    sim = rng.normal(100, 10, 30)
    real = sim - rng.normal(20, 5, 30)
    estimate = bootstrap([(sim, real)], stats.gap, n_resamples=999, seed=7)
    expected = scipy.stats.bootstrap(
        (sim, real),
        stats.gap,
        paired=True,
        vectorized=True,
        n_resamples=999,
        method="BCa",
        rng=np.random.default_rng(7),
    ).confidence_interval
    assert estimate.value == pytest.approx(np.mean(sim - real))
    assert (estimate.low, estimate.high) == pytest.approx((expected.low, expected.high))
    assert estimate.low < estimate.value < estimate.high


def test_bootstrap_is_reproducible_and_narrows_with_more_episodes():
    rng = np.random.default_rng(2)
    few, many = rng.normal(0, 1, 10), rng.normal(0, 1, 400)
    a = bootstrap([(few,)], stats.mean, seed=3)
    assert a == bootstrap([(few,)], stats.mean, seed=3)
    b = bootstrap([(many,)], stats.mean, seed=3)
    assert b.high - b.low < (a.high - a.low) / 3


def test_constant_data_gives_a_zero_width_interval():
    estimate = bootstrap([(np.full(10, 5.0),)], stats.mean)
    assert estimate == Estimate(5.0, 5.0, 5.0)


def test_training_seeds_are_the_replication_unit():
    # Two policies, each perfectly consistent over its episodes: all uncertainty is
    # between policies. Resampling 2 policies gives means 0, 5 or 10.
    estimate = bootstrap([(np.zeros(30),), (np.full(30, 10.0),)], stats.mean, seed=0)
    assert estimate == Estimate(5.0, 0.0, 10.0)
    # Pooling the 60 episodes would have claimed a far narrower interval.
    pooled = bootstrap([(np.r_[np.zeros(30), np.full(30, 10.0)],)], stats.mean, seed=0)
    assert pooled.high - pooled.low < 6


def test_several_policies_average_per_policy_statistics():
    # The point is the mean of per-policy means even when episode counts differ.
    estimate = bootstrap([(np.array([1.0, 1.0, 1.0, 1.0]),), (np.array([3.0, 3.0]),)], stats.mean)
    assert estimate.value == 2.0
    # Episode noise within policies widens the interval beyond the policy means alone.
    rng = np.random.default_rng(4)
    noisy = [(m + rng.normal(0, 5, 20),) for m in (0.0, 1.0, 2.0)]
    quiet = [(m + np.zeros(20),) for m in (0.0, 1.0, 2.0)]
    assert np.ptp(_interval(bootstrap(noisy, stats.mean))) > np.ptp(
        _interval(bootstrap(quiet, stats.mean))
    )


def test_undefined_cases():
    assert math.isnan(bootstrap([], stats.mean).value)
    assert math.isnan(bootstrap([(np.array([]),)], stats.mean).value)
    single = bootstrap([(np.array([4.0]),)], stats.mean)
    assert single.value == 4.0 and math.isnan(single.low)
    assert single.to_dict() == {"value": 4.0, "low": None, "high": None}
    assert single.format() == "4.0"
    assert Estimate(1.0, 0.5, 1.5).format() == "1.0 [0.5, 1.5]"


def _interval(estimate: Estimate) -> np.ndarray:
    return np.array([estimate.low, estimate.high])
