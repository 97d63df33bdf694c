"""Registration, make/make_pair for built-in tasks and user envs, describe, and bad input."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from sliding_block import SlidingBlockEnv
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sim2real
from sim2real.skewed_env import SkewedEnv


@pytest.mark.parametrize("variant", ["sim", "real"])
def test_every_registered_id_passes_the_env_checkers(task, variant):
    env_id = f"sim2real/{task}-{variant}-v0"
    assert env_id in gym.registry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite Box bounds and the wrapped-env notice
        env = gym.make(env_id)
        # The sim variant is checked raw; the real one wrapped, since unwrapped skips the skews.
        gym_check_env(env.unwrapped if variant == "sim" else env, skip_render_check=True)
        sb3_check_env(env, warn=False)


def test_every_task_has_default_and_harsh_presets_covering_all_sections(task):
    spec = sim2real.get_task(task)
    assert {"default", "harsh"} <= set(spec.presets)
    sections = {name.split(".")[0] for name in spec.preset("default").active()}
    assert sections == {"dynamics", "actuation", "sensing", "timing"}
    env = gym.make(spec.sim_id)
    assert env.observation_space.shape == (spec.observation_dim,)
    assert env.action_space.shape == (spec.action_dim,)


def test_make_pair_accepts_preset_mapping_and_yaml(tmp_path):
    path = tmp_path / "robot.yaml"
    path.write_text("timing:\n  obs_latency_s: 0.03\n")
    for real in ("harsh", {"timing": {"obs_latency_s": 0.03}}, str(path), path):
        sim, env = sim2real.make_pair("Hopper", real=real)
        assert sim.spec.id == "sim2real/Hopper-sim-v0"
        assert env.spec.id == "sim2real/Hopper-real-v0"
        _, info = env.reset(seed=0)
        assert info["skews"]


def test_make_builds_sim_and_skewed_variants():
    assert sim2real.make("Hopper").spec.id == "sim2real/Hopper-sim-v0"
    env = sim2real.make("hopper", skews={"dynamics": {"mass_scale": 1.2}})
    _, info = env.reset(seed=0)
    assert info["skews"] == {"dynamics.mass_scale": 1.2}


def test_gym_make_takes_a_preset_or_spec():
    env = gym.make("sim2real/Reacher-real-v0", skews="harsh")
    _, info = env.reset(seed=0)
    assert info["skews"]["actuation.deadband"] == 0.02


def test_pairing_a_users_own_mjcf_robot():
    sim, real = sim2real.make_pair(
        lambda **kw: SlidingBlockEnv(initial_velocity=2.0, **kw),
        real={"dynamics": {"friction_scale": 0.5}, "sensing": {"noise_std": [0.0, 0.0, 0.01, 0.0]}},
    )
    assert isinstance(real, SkewedEnv) and not isinstance(sim, SkewedEnv)
    gym_check_env(real, skip_render_check=True)
    for env in (sim, real):
        env.reset(seed=0)
        for _ in range(100):
            obs, *_ = env.step(np.zeros(1))
        env.x = obs[0]
    assert real.x > 1.5 * sim.x


def test_pairing_a_gymnasium_id():
    sim, real = sim2real.make_pair("Hopper-v5", real={"dynamics": {"friction_scale": 0.9}})
    assert sim.spec.id == "Hopper-v5"
    assert real.reset(seed=0)[1]["skews"] == {"dynamics.friction_scale": 0.9}


def test_describe_shows_units_and_realized_latency():
    _, real = sim2real.make_pair("Hopper", real="default")
    text = sim2real.describe(real, show=False)
    assert "timing.obs_latency_s" in text and "10 substeps of 0.002 s" in text
    assert "[x nominal]" in text and "[obs units]" in text
    sim = gym.make("sim2real/Hopper-sim-v0")
    assert "no skews" in sim2real.describe(sim, show=False)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sim2real.make_pair("Hoppr"), "unknown task 'Hoppr'; allowed: Ant"),
        (
            lambda: sim2real.make_pair("Hopper", real="gentle"),
            "real preset 'gentle' is not defined for Hopper; allowed: default, harsh",
        ),
        (
            lambda: sim2real.make_pair("Hopper", real={"dynamics": {"friction": 1}}),
            "unknown skew field 'dynamics.friction'",
        ),
        (
            lambda: sim2real.make_pair("Hopper", real={"dynamics": {"mass_scale": "big"}}),
            "dynamics.mass_scale must be a number, got 'big'",
        ),
        (
            lambda: sim2real.make_pair("Hopper", real={"dynamics": {"mass_scale": -1.0}}),
            "dynamics.mass_scale must be > 0.0, got -1.0",
        ),
        (
            lambda: sim2real.make_pair("Hopper", real={"timing": {"action_latency_s": -0.01}}),
            "timing.action_latency_s must be >= 0.0, got -0.01",
        ),
        (
            lambda: sim2real.make_pair("Hopper", real={"sensing": {"noise_std": [0.1] * 3}}),
            "sensing.noise_std must be one number or 11 numbers",
        ),
        (lambda: sim2real.make_pair(SlidingBlockEnv, real="harsh"), "has no presets"),
    ],
)
def test_bad_input_is_one_line_before_any_env_is_built(monkeypatch, call, message):
    built = []
    real_make = gym.make
    monkeypatch.setattr(gym, "make", lambda *a, **k: built.append(a) or real_make(*a, **k))
    with pytest.raises(ValueError) as caught:
        call()
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not built


def test_a_non_mujoco_env_is_refused():
    with pytest.raises(TypeError, match="must be built on gymnasium's MujocoEnv"):
        sim2real.make_pair("CartPole-v1", real={})


@pytest.mark.parametrize(
    ("randomization", "message"),
    [
        ({"dynamics": {"mass_scale": {"dist": "uniform", "low": 1.2, "high": 0.8}}}, "low"),
        (
            {"sensing": {"noise_std": {"dist": "uniform", "low": [0.0] * 3, "high": [0.1] * 3}}},
            "11",
        ),
    ],
)
def test_make_checks_a_randomization_before_building_an_env(monkeypatch, randomization, message):
    built = []
    real_make = gym.make
    monkeypatch.setattr(gym, "make", lambda *a, **k: built.append(a) or real_make(*a, **k))
    with pytest.raises(ValueError, match=message):
        sim2real.make("Hopper", randomization=randomization)
    assert not built


# --------------------------------------------------------------------------- bad input at the env
@pytest.mark.parametrize("task", [42, None, 3.5, ["Hopper"]])
def test_a_task_that_is_not_an_env_names_the_env_argument(task):
    with pytest.raises(ValueError, match=r"the env argument \(task\) must be a built-in task"):
        sim2real.make_pair(task)
    with pytest.raises(ValueError, match=r"the env argument \(task\)"):
        sim2real.make(task)


def test_make_names_its_skews_argument_when_given_make_pairs_real():
    with pytest.raises(TypeError, match=r"skews=\.\.\., not real="):
        sim2real.make("Hopper", real="harsh")


@pytest.mark.parametrize(
    ("real", "message"),
    [
        ({"timing": {"obs_latency_s": 0.0009}}, "timing.obs_latency_s of 0.0009 s rounds to zero"),
        ({"timing": {"action_latency_s": 0.001}}, "rounds to zero physics substeps of 0.002 s"),
        ({"timing": {"control_jitter_s": 0.0005}}, "timing.control_jitter_s of 0.0005 s rounds"),
        ({"timing": {"obs_latency_s": 9.0}}, "longer than an episode (8 s); allowed: at most 8 s"),
        ({"timing": {"action_latency_s": 20.0}}, "timing.action_latency_s of 20 s is longer"),
        ({"dynamics": {"mass_scale": [1.1, 1.2]}}, "mass_scale must be one number or 5 numbers"),
        ({"dynamics": {"damping_scale": [1.1] * 7}}, "6 numbers (one per dof), got 7"),
        ({"actuation": {"deadband": [0.01] * 2}}, "3 numbers (one per action dimension)"),
    ],
)
def test_latencies_and_per_element_values_are_checked_against_the_env(real, message):
    with pytest.raises(ValueError) as caught:
        sim2real.make_pair("Hopper", real=real)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_randomized_latency_longer_than_an_episode_is_refused():
    long = {"timing": {"obs_latency_s": {"dist": "uniform", "low": 0.0, "high": 10.0}}}
    with pytest.raises(ValueError, match=r"obs_latency_s can draw 10 s, longer than an episode"):
        sim2real.make("Hopper", randomization=long)


def test_an_off_grid_latency_is_rounded_said_in_describe_and_warned_once():
    with pytest.warns(UserWarning, match=r"timing.obs_latency_s of 0.0031 s is off the substep"):
        _, real = sim2real.make_pair("Hopper", real={"timing": {"obs_latency_s": 0.0031}})
    assert real.reset(seed=0)[1]["skews"]["timing.obs_latency_s"] == pytest.approx(0.004)
    assert "rounded to the substep grid by 29 %" in sim2real.describe(real, show=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: a second env of the same value is quiet
        sim2real.make_pair("Hopper", real={"timing": {"obs_latency_s": 0.0031}})
        sim2real.make_pair("Hopper", real={"timing": {"obs_latency_s": 0.0021}})  # 5 %: quiet


def test_numpy_values_pass_through_make_pair_and_randomization():
    _, real = sim2real.make_pair("Hopper", real={"sensing": {"noise_std": np.full(11, 0.01)}})
    assert real.reset(seed=0)[1]["skews"]["sensing.noise_std"] == [0.01] * 11
    env = sim2real.make(
        "Hopper",
        randomization={"dynamics": {"mass_scale": {"dist": "uniform", "low": np.float64(0.8),
                                                   "high": np.array(1.2)}}},
    )  # fmt: skip
    assert 0.8 <= env.reset(seed=0)[1]["skews"]["dynamics.mass_scale"] <= 1.2


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_non_finite_randomization_bounds_are_refused(bad):
    spec = {"dynamics": {"mass_scale": {"dist": "uniform", "low": 0.8, "high": bad}}}
    with pytest.raises(ValueError, match=r"dynamics\.mass_scale.*(finite|low <= high)"):
        sim2real.make("Hopper", randomization=spec)
    noise = {"sensing": {"noise_std": {"dist": "uniform", "low": 0.0, "high": [0.1] * 10 + [bad]}}}
    with pytest.raises(ValueError, match=r"sensing\.noise_std.*finite"):
        sim2real.make("Hopper", randomization=noise)
