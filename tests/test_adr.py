"""ADR: the state machine widens, narrows and stays within its limits; boundary sampling;
serialization; it finds a known edge of competence; its env draws from the ranges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim2real.paths import data_dir
from sim2real.randomization.adr import AdrConfig, AdrEnv, AdrSource


def _config(**overrides) -> AdrConfig:
    mapping = {
        "task": "Hopper",
        "boundary_prob": 1.0,
        "buffer_size": 3,
        "thresholds": {"low": 100.0, "high": 500.0},
        "step": 0.25,
        "fields": {
            "dynamics.friction_scale": {"low": 0.5, "high": 1.5},
            "sensing.noise_std": {"high": [0.1, 0.2]},
        },
    }
    mapping.update(overrides)
    return AdrConfig.load(mapping)


def test_ranges_start_at_nominal() -> None:
    state = _config().new_state()
    assert state.sides == [
        "dynamics.friction_scale:low",
        "dynamics.friction_scale:high",
        "sensing.noise_std:high",
    ]
    assert state.ranges()["dynamics.friction_scale"] == {"low": 1.0, "high": 1.0}
    assert state.ranges()["sensing.noise_std"] == {"low": 0.0, "high": [0.0, 0.0]}


def test_widens_above_high_narrows_below_low_and_waits_for_a_full_buffer() -> None:
    state = _config().new_state()
    side = "dynamics.friction_scale:low"
    assert [state.report(side, 600.0) for _ in range(3)] == [0, 0, 1]
    assert state.bounds("dynamics.friction_scale")[0] == pytest.approx(1.0 - 0.25 * 0.5)
    assert [state.report(side, 300.0) for _ in range(3)] == [0, 0, 0]  # between: stays
    assert [state.report(side, 50.0) for _ in range(3)] == [0, 0, -1]
    assert state.bounds("dynamics.friction_scale")[0] == pytest.approx(1.0)
    assert state.report(None, 1e9) == 0  # episodes off the boundary never decide


def test_progress_stays_between_nominal_and_the_limit() -> None:
    state = _config().new_state()
    for _ in range(30):
        state.report("sensing.noise_std:high", 1000.0)
        state.report("dynamics.friction_scale:high", 0.0)
    assert state.ranges()["sensing.noise_std"]["high"] == pytest.approx([0.1, 0.2])
    assert state.ranges()["dynamics.friction_scale"]["high"] == pytest.approx(1.0)


def test_boundary_sampling_pins_one_side_and_draws_the_rest_inside() -> None:
    state = _config(boundary_prob=0.3).new_state()
    state.progress.update({k: 1.0 for k in state.progress})
    rng = np.random.default_rng(0)
    boundaries = []
    for _ in range(2000):
        values, boundary = state.sample(rng)
        boundaries.append(boundary)
        assert 0.5 <= values["dynamics.friction_scale"] <= 1.5
        assert all(
            0.0 <= v <= h for v, h in zip(values["sensing.noise_std"], [0.1, 0.2], strict=True)
        )
        if boundary == "dynamics.friction_scale:low":
            assert values["dynamics.friction_scale"] == 0.5
        if boundary == "sensing.noise_std:high":
            assert values["sensing.noise_std"] == [0.1, 0.2]
    share = np.mean([b is not None for b in boundaries])
    assert share == pytest.approx(0.3, abs=0.04)


def test_state_round_trips_through_a_file(tmp_path: Path) -> None:
    state = _config().new_state()
    for _ in range(4):
        state.report("dynamics.friction_scale:high", 900.0)
    state.save(tmp_path / "adr.json")
    again = _config().new_state()
    again.load_file(tmp_path / "adr.json")
    assert again.to_dict() == state.to_dict()


def test_finds_a_known_edge_of_competence() -> None:
    """The policy copes while friction >= 0.7 (return 1000) and fails below (0): the low
    boundary of friction settles within one step of 0.7 and never goes much below."""
    config = _config(
        boundary_prob=0.5,
        buffer_size=5,
        step=0.05,
        fields={"dynamics.friction_scale": {"low": 0.2, "high": 1.0}},
    )
    state = config.new_state()
    source = AdrSource(state)
    rng = np.random.default_rng(3)
    lows = []
    for _ in range(4000):
        point = source.draw(rng)
        source.episode_return(1000.0 if point.dynamics.friction_scale >= 0.7 else 0.0)
        lows.append(state.bounds("dynamics.friction_scale")[0])
    settled = np.array(lows[-1000:])
    assert settled.min() >= 0.7 - 0.04 - 1e-9
    assert settled.max() <= 0.7 + 0.04 + 1e-9


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"thresholds": {"low": 5, "high": 1}}, "thresholds"),
        ({"boundary_prob": 0.0}, "boundary_prob"),
        ({"fields": {"dynamics.nope": {"high": 1}}}, "unknown field"),
        ({"fields": {"dynamics.mass_scale": {"step": 0.1}}}, "low and/or high"),
        ({"buffer": 3}, "unknown keys"),
    ],
)
def test_bad_config_names_the_problem(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _config(**change)


def test_shipped_configs_load() -> None:
    for path in sorted((data_dir("configs") / "adr").glob("*.yaml")):
        assert AdrConfig.load(path).fields, path


def test_adr_env_applies_the_drawn_point_and_reports_returns() -> None:
    config = AdrConfig.load(
        {
            "task": "Hopper",
            "boundary_prob": 1.0,
            "buffer_size": 1,
            "thresholds": {"low": -1.0, "high": -1.0},  # every boundary episode widens
            "step": 0.5,
            "fields": {"timing.obs_latency_s": {"high": 0.016}},
        }
    )
    state = config.new_state()
    env = AdrEnv("Hopper", state, seed=0)
    latencies = []
    for episode in range(4):
        _, info = env.reset(seed=episode)
        latencies.append(info["skews"].get("timing.obs_latency_s", 0.0))
        done = False
        while not done:
            *_, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    assert latencies[0] == 0.0  # the range starts at nominal
    assert state.ranges()["timing.obs_latency_s"]["high"] == pytest.approx(0.016)
    assert latencies[-1] == pytest.approx(0.016)
    env.close()


def test_latencies_are_drawn_on_the_substep_grid() -> None:
    """A draw that would round to less than a substep is 0, never an invalid spec."""
    config = AdrConfig.load(
        {
            "task": "Hopper",
            "boundary_prob": 0.1,
            "buffer_size": 1,
            "thresholds": {"low": 0, "high": 1},
            "fields": {"timing.action_latency_s": {"high": 0.004}},
        }
    )
    state = config.new_state()
    state.progress["timing.action_latency_s:high"] = 1.0
    source = AdrSource(state, latency_grid_s=0.002)
    rng = np.random.default_rng(0)
    drawn = {source.draw(rng).timing.action_latency_s for _ in range(200)}
    assert drawn <= {0.0, 0.002, 0.004} and len(drawn) == 3
