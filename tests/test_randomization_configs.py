"""The shipped randomization specs: one per task, each covering its task's default real preset
without aiming at it, each range with its reasoning."""

from __future__ import annotations

import numpy as np
import pytest

import sim2real
from sim2real.randomization import RandomizationSpec, config_path


def test_every_task_has_a_config_that_runs(task):
    env = sim2real.make(task, randomization=config_path(task))
    _, info = env.reset(seed=0)
    assert set(env.randomization.randomized) <= set(info["skews"])
    for _ in range(3):
        env.step(env.action_space.sample())
    env.close()


def test_every_config_covers_the_default_preset_without_centring_on_it(task):
    spec = RandomizationSpec.load(config_path(task))
    preset = sim2real.get_task(task).preset("default")
    assert preset.active()
    for name, value in preset.active().items():
        assert name in spec.randomized, f"{task}: {name} is set by the preset but not randomized"
        dist = spec.randomized[name].dist
        low, high = (np.broadcast_to(end, np.shape(value)) for end in dist.support)
        assert np.all((low <= value) & (value <= high)), f"{task}: {name}={value} outside {dist!r}"
        middle = (low + high) / 2
        assert not np.allclose(middle, value), f"{task}: {name} is centred on the preset"


def test_every_range_carries_its_reasoning(task):
    lines = config_path(task).read_text().splitlines()
    assert any("Tan" in line for line in lines) and any("Peng" in line for line in lines)
    assert any(line.startswith("# Observation layout") for line in lines)
    for i, line in enumerate(lines):
        if line.startswith("  ") and "{dist:" in line:
            assert lines[i - 1].lstrip().startswith("#"), f"{task}: no reasoning above {line!r}"


@pytest.mark.parametrize("field", ["sensing.noise_std", "sensing.bias_std"])
def test_sensing_ranges_are_per_dimension(task, field):
    dist = RandomizationSpec.load(config_path(task)).randomized[field].dist
    assert dist.shape == (sim2real.get_task(task).observation_dim,)
