"""Attribution over skew sections: four players, exact Shapley values that add up to the gap."""

import numpy as np
import pytest

import sim2real


def damped_policy(obs: np.ndarray) -> np.ndarray:
    """A hand-written balance controller for InvertedPendulum (obs: x, angle, vx, rate)."""
    return np.clip(1.0 * obs[:, :1] + 10.0 * obs[:, 1:2] + 1.0 * obs[:, 3:4], -3, 3)


def test_section_attribution_is_exact_and_efficient():
    report = sim2real.evaluate_gap(
        damped_policy,
        "InvertedPendulum",
        seeds=range(5),
        real="harsh",
        attribution=True,
        attribute_by="section",
        progress=False,
    )
    group = next(iter(report.groups.values()))
    attribution = group.attribution
    assert attribution.method == "exact"
    assert set(attribution.shapley) == {"dynamics", "actuation", "sensing", "timing"}
    total = sum(estimate.value for estimate in attribution.shapley.values())
    assert total == pytest.approx(attribution.total.value, abs=1e-6)
    names = [name for name, v in report.variants.items() if v.role == "attribution"]
    assert "harsh[dynamics+timing]" in names and len(names) == 2**4 - 2


def test_unknown_attribution_players_are_refused():
    with pytest.raises(ValueError, match="attribute_by must be one of skew, section"):
        sim2real.evaluate_gap(damped_policy, "InvertedPendulum", seeds=[0], attribute_by="body")
