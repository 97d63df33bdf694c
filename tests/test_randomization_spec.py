"""The randomization schema and its distributions: sampling, reprs, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy import stats

from sim2real.randomization import (
    DISTRIBUTIONS,
    ELEMENTS,
    RANDOMIZABLE,
    STEP_FIELDS,
    RandomizationSpec,
    distribution,
)
from sim2real.spec import FIELDS, SkewSpecError

N = 4000

FAMILIES = [
    ({"dist": "uniform", "low": 0.5, "high": 1.5}, stats.uniform(0.5, 1.0)),
    ({"dist": "loguniform", "low": 0.5, "high": 2.0}, stats.loguniform(0.5, 2.0)),
    ({"dist": "normal", "mean": 0.1, "std": 0.02}, stats.norm(0.1, 0.02)),
    (
        {"dist": "truncnormal", "mean": 1.0, "std": 0.3, "low": 0.7, "high": 2.0},
        stats.truncnorm(-1.0, 10 / 3, loc=1.0, scale=0.3),
    ),
    (  # an interval far above the mean: sampled in the mirrored tail
        {"dist": "truncnormal", "mean": 0.0, "std": 1.0, "low": 4.0, "high": 6.0},
        stats.truncnorm(4.0, 6.0),
    ),
]


@pytest.mark.parametrize(
    ("config", "reference"), FAMILIES, ids=lambda v: getattr(v, "get", str)("dist")
)
def test_each_family_samples_its_distribution(config, reference):
    dist = distribution(config)
    draws = dist.sample(np.random.default_rng(0), (N,))
    assert stats.kstest(draws, reference.cdf).pvalue > 1e-3
    low, high = dist.support
    assert np.all((draws >= low) & (draws <= high))
    assert dist.mean == pytest.approx(reference.mean(), rel=1e-6)


def test_choice_and_constant():
    choice = distribution({"dist": "choice", "values": [0.8, 1.0, 1.3]})
    draws = choice.sample(np.random.default_rng(0), (N,))
    _, counts = np.unique(draws, return_counts=True)
    assert stats.chisquare(counts).pvalue > 1e-3 and set(draws) == {0.8, 1.0, 1.3}
    constant = distribution({"dist": "constant", "value": [0.1, 0.2]})
    np.testing.assert_array_equal(
        constant.sample(np.random.default_rng(0), (3, 1)), [[0.1, 0.2]] * 3
    )


def test_per_dimension_parameters_broadcast_shared_or_independent():
    dist = distribution({"dist": "uniform", "low": 0.0, "high": [1.0, 10.0, 100.0]})
    rng = np.random.default_rng(0)
    shared = dist.sample(rng, (500, 1))  # one variate per row, mapped into each range
    np.testing.assert_allclose(shared[:, 1], 10 * shared[:, 0])
    independent = dist.sample(rng, (500, 3))
    assert abs(np.corrcoef(independent[:, 0], independent[:, 1])[0, 1]) < 0.15
    assert independent.max(axis=0) == pytest.approx([1, 10, 100], rel=0.05)


@pytest.mark.parametrize(
    "config", [c for c, _ in FAMILIES] + [{"dist": "choice", "values": [1, 2]}]
)
def test_repr_reads_like_the_config_and_loads_back(config):
    dist = distribution(config)
    text = repr(dist)
    assert text.startswith(f"{{dist: {config['dist']}, ")
    assert distribution(yaml.safe_load(text)) == dist


def test_same_generator_state_same_draws():
    dist = distribution({"dist": "loguniform", "low": 0.1, "high": 10})
    a = dist.sample(np.random.default_rng(5), (10,))
    b = dist.sample(np.random.default_rng(5), (10,))
    np.testing.assert_array_equal(a, b)


def test_field_tables_come_from_the_point_schema():
    assert set(RANDOMIZABLE) == set(FIELDS) - {"dynamics.gravity"}
    assert set(STEP_FIELDS) <= set(RANDOMIZABLE) and set(ELEMENTS) <= set(RANDOMIZABLE)
    assert set(DISTRIBUTIONS) == {
        "uniform",
        "loguniform",
        "normal",
        "truncnormal",
        "choice",
        "constant",
    }


def test_every_field_of_every_section_can_be_randomized():
    raw: dict = {}
    for name in RANDOMIZABLE:
        section, field = name.split(".")
        raw.setdefault(section, {})[field] = {"dist": "uniform", "low": 0.0001, "high": 0.01}
    spec = RandomizationSpec.load(raw)
    assert list(spec.randomized) == list(RANDOMIZABLE)


def test_plain_values_are_fixed_and_override_the_base():
    spec = RandomizationSpec.load(
        {
            "dynamics": {
                "mass_scale": {"dist": "uniform", "low": 0.9, "high": 1.1},
                "gravity": [0, 0, -5],
            },
            "timing": {"obs_latency_s": 0.0},
        }
    )
    assert spec.fixed_fields == ("dynamics.gravity", "timing.obs_latency_s")
    base = RandomizationSpec.load({}).fixed.model_validate(
        {"timing": {"obs_latency_s": 0.02, "action_latency_s": 0.01}}
    )
    point = spec.over(base)
    assert point.timing.obs_latency_s == 0.0  # set in the randomization spec: it wins
    assert point.timing.action_latency_s == 0.01  # left alone: the base value
    assert point.dynamics.gravity == [0, 0, -5]


def test_a_yaml_file_loads(tmp_path):
    path = tmp_path / "dr.yaml"
    path.write_text("timing:\n  action_latency_s: {dist: uniform, low: 0.0, high: 0.03}\n")
    randomized = RandomizationSpec.load(path).randomized["timing.action_latency_s"]
    assert repr(randomized) == "{dist: uniform, low: 0.0, high: 0.03}"


U = {"dist": "uniform", "low": 0.5, "high": 1.5}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"dynamics": {"friction_scale": {"dist": "uniform", "low": 1.5, "high": 0.5}}},
            "dynamics.friction_scale: uniform needs low <= high, "
            "got {dist: uniform, low: 1.5, high: 0.5}",
        ),
        (
            {"dynamics": {"mass_scale": {"dist": "loguniform", "low": 0, "high": 2}}},
            "dynamics.mass_scale: loguniform needs low > 0",
        ),
        (
            {"sensing": {"dropout_prob": {"dist": "uniform", "low": 0.0, "high": 1.5}}},
            "sensing.dropout_prob must be <= 1.0, got 1.5 (the high end of "
            "{dist: uniform, low: 0.0, high: 1.5})",
        ),
        (
            {"dynamics": {"mass_scale": {"dist": "normal", "mean": 1.0, "std": 0.1}}},
            "dynamics.mass_scale must be > 0.0, got -inf (the low end of {dist: normal",
        ),
        (
            {"dynamics": {"frictoin_scale": U}},
            "unknown skew field 'dynamics.frictoin_scale'; allowed: friction_scale",
        ),
        ({"dynamic": {"friction_scale": U}}, "unknown skew field 'dynamic'; allowed: description"),
        (
            {"dynamics": {"friction_scale": {"dist": "gaussian", "mean": 1}}},
            "dynamics.friction_scale: unknown distribution 'gaussian' "
            "(allowed: uniform, loguniform",
        ),
        (
            {"dynamics": {"friction_scale": {"low": 0.5, "high": 1.5}}},
            "dynamics.friction_scale: a distribution needs 'dist: <family>'",
        ),
        (
            {"dynamics": {"friction_scale": {"dist": "uniform", "low": 0.5, "hi": 1.5}}},
            "dynamics.friction_scale: uniform has unknown parameter 'hi' (it takes low, high)",
        ),
        (
            {"dynamics": {"gravity": {"dist": "uniform", "low": -10, "high": -9}}},
            "dynamics.gravity cannot be randomized (it takes a fixed value)",
        ),
        ({"description": {"dist": "choice", "values": [1]}}, "description cannot be randomized"),
        (
            {"dynamics": {"mass_scale": {**U, "resample": "step"}}},
            "dynamics.mass_scale is drawn once per episode (resample: step is allowed only on "
            "actuation.noise_std, sensing.noise_std, sensing.dropout_prob)",
        ),
        (
            {
                "timing": {
                    "obs_latency_s": {"dist": "uniform", "low": 0, "high": 0.02, "per": "element"}
                }
            },
            "timing.obs_latency_s has one value per env (per: element is allowed only on",
        ),
        (
            {
                "actuation": {
                    "noise_std": {"dist": "uniform", "low": 0, "high": 0.1, "resample": "often"}
                }
            },
            "actuation.noise_std: resample must be one of episode, step",
        ),
        (
            {"timing": {"obs_latency_s": {"dist": "uniform", "low": [0.0, 0.01], "high": 0.02}}},
            "timing.obs_latency_s must be one number (it acts on the whole env), "
            "got [0.0, 0.01] (the low end of",
        ),
        ({"timing": {"obs_latency_s": -0.01}}, "timing.obs_latency_s must be >= 0.0, got -0.01"),
        (
            {"sensing": {"noise_std": {"dist": "choice", "values": []}}},
            "sensing.noise_std: choice parameter 'values' must not be empty",
        ),
    ],
)
def test_bad_input_is_one_line_naming_field_value_and_what_is_allowed(raw, message):
    with pytest.raises(SkewSpecError) as caught:
        RandomizationSpec.load(raw)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_per_dimension_parameters_must_match_the_observation():
    spec = RandomizationSpec.load(
        {"sensing": {"noise_std": {"dist": "uniform", "low": 0.0, "high": [0.1, 0.2, 0.3]}}}
    )
    spec.check_dimensions(3)
    with pytest.raises(SkewSpecError, match=r"sensing.noise_std must be one number or 4 numbers"):
        spec.check_dimensions(4)


def test_the_randomization_schema_is_read_from_the_skew_registry():
    from sim2real.skews.registry import SKEWS

    assert set(RANDOMIZABLE) == {name for name, skew in SKEWS.items() if skew.randomizable}
    assert set(STEP_FIELDS) == {name for name, skew in SKEWS.items() if skew.per_step}
    assert ELEMENTS["dynamics.armature_scale"] == "dof"  # a new skew: no table to edit here
    spec = RandomizationSpec.load(
        {
            "dynamics": {"armature_scale": {"dist": "uniform", "low": 0.5, "high": 2.0,
                                            "per": "element"}},
            "timing": {"control_jitter_s": {"dist": "uniform", "low": 0.002, "high": 0.01}},
        }
    )  # fmt: skip
    assert list(spec.randomized) == ["dynamics.armature_scale", "timing.control_jitter_s"]
