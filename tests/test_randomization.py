"""DomainRandomization: draws follow the spec, land in the model relative to nominal, and are
seeded, visible and undone."""

from __future__ import annotations

import warnings

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy import stats
from scipy.special import ndtr

import sim2real
from sim2real.randomization import DomainRandomization, config_path
from sim2real.spec import SkewSpecError

TASK = "InvertedPendulum"  # 4 observation dimensions: cart x (m), pole angle (rad), rates
HIGH_NOISE = [0.002, 0.01, 0.05, 0.1]

EVERY_FIELD = {
    "dynamics": {
        "friction_scale": {"dist": "uniform", "low": 0.5, "high": 1.25},
        "mass_scale": {"dist": "loguniform", "low": 0.8, "high": 1.25, "per": "element"},
        "damping_scale": {
            "dist": "truncnormal", "mean": 1.0, "std": 0.3, "low": 0.5, "high": 2.0,
            "per": "element",
        },
        "actuator_strength": {"dist": "choice", "values": [0.8, 0.9, 1.1]},
    },
    "actuation": {
        "noise_std": {"dist": "truncnormal", "mean": 0.01, "std": 0.01, "low": 0.0, "high": 0.05},
        "deadband": {"dist": "uniform", "low": 0.0, "high": 0.03, "per": "element"},
    },
    "sensing": {
        "noise_std": {"dist": "uniform", "low": 0.0, "high": HIGH_NOISE, "per": "element"},
        "bias_std": {"dist": "uniform", "low": 0.0, "high": HIGH_NOISE},
        "dropout_prob": {"dist": "loguniform", "low": 0.001, "high": 0.05},
    },
    "timing": {
        "obs_latency_s": {"dist": "uniform", "low": 0.0, "high": 0.04},
        "action_latency_s": {
            "dist": "truncnormal", "mean": 0.01, "std": 0.01, "low": 0.0, "high": 0.03
        },
    },
}  # fmt: skip


def reference(config: dict) -> stats.rv_continuous:
    """The scipy distribution that a config entry describes."""
    d = config["dist"]
    if d == "uniform":
        return stats.uniform(config["low"], config["high"] - config["low"])
    if d == "loguniform":
        return stats.loguniform(config["low"], config["high"])
    assert d == "truncnormal"
    mean, std = config["mean"], config["std"]
    a, b = (config["low"] - mean) / std, (config["high"] - mean) / std
    return stats.truncnorm(a, b, loc=mean, scale=std)


def model_arrays(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """Every array of the model, derived ones included."""
    return {
        name: getattr(model, name).copy()
        for name in dir(model)
        if not name.startswith("_") and isinstance(getattr(model, name), np.ndarray)
    }


def assert_nominal(model: mujoco.MjModel, nominal: mujoco.MjModel) -> None:
    arrays = model_arrays(nominal)
    assert len(arrays) > 100
    for name, array in arrays.items():
        np.testing.assert_array_equal(getattr(model, name), array, err_msg=name)
    assert model.stat.meaninertia == nominal.stat.meaninertia
    np.testing.assert_array_equal(model.opt.gravity, nominal.opt.gravity)


def compiled(env: gym.Env) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(env.unwrapped.fullpath)


# --------------------------------------------------------------------------- the draws
def test_a_thousand_resets_draw_every_field_from_its_distribution():
    env = sim2real.make(TASK, randomization=EVERY_FIELD)
    model = env.unwrapped.model
    draws: dict[str, list] = {}
    realized: list[tuple[float, float]] = []
    env.reset(seed=2024)
    for _ in range(1000):
        _, info = env.reset()
        for name, value in env.source.drawn.items():
            draws.setdefault(name, []).append(value)
        requested = env.source.drawn["timing.obs_latency_s"]
        realized.append((requested, info["skews"]["timing.obs_latency_s"]))
        assert (
            info["skews"]["dynamics.friction_scale"] == env.source.drawn["dynamics.friction_scale"]
        )
    for section, fields in EVERY_FIELD.items():
        for field, config in fields.items():
            name = f"{section}.{field}"
            values = np.asarray(draws[name], dtype=float)
            if config["dist"] == "choice":
                observed, counts = np.unique(values, return_counts=True)
                np.testing.assert_array_equal(observed, config["values"])
                assert stats.chisquare(counts).pvalue > 1e-3, name
                continue
            if isinstance(config["high"], list):  # per-dimension ranges: back to [0, 1]
                values = values / np.asarray(config["high"])
                config = {**config, "low": 0.0, "high": 1.0}
            if config.get("per") == "element":  # one draw per element, each its own
                assert values.ndim == 2, name
                assert values.shape[1] == 1 or not np.allclose(values, values[:, :1]), name
            assert stats.kstest(values.ravel(), reference(config).cdf).pvalue > 1e-3, name
    # shared per-dimension ranges move together: one variate, scaled into each range
    bias = np.asarray(draws["sensing.bias_std"]) / HIGH_NOISE
    np.testing.assert_allclose(bias, bias[:, :1] * np.ones(4))
    # latencies are realized on the substep grid
    step = model.opt.timestep
    for requested, effective in realized:
        assert effective == pytest.approx(round(requested / step) * step)


def test_draws_land_in_the_model_relative_to_the_nominal_values():
    env = sim2real.make("Hopper", randomization=config_path("Hopper"))
    model, nominal = env.unwrapped.model, compiled(env)
    for seed in range(3):
        env.reset(seed=seed)
        d = env.source.drawn
        assert len(d["dynamics.mass_scale"]) == model.nbody
        assert len(d["dynamics.damping_scale"]) == model.nv
        assert len(d["dynamics.actuator_strength"]) == model.nu
        np.testing.assert_array_equal(
            model.geom_friction[:, 0], nominal.geom_friction[:, 0] * d["dynamics.friction_scale"]
        )
        np.testing.assert_array_equal(model.body_mass, nominal.body_mass * d["dynamics.mass_scale"])
        np.testing.assert_array_equal(
            model.body_inertia, nominal.body_inertia * np.c_[d["dynamics.mass_scale"]]
        )
        np.testing.assert_array_equal(
            model.dof_damping, nominal.dof_damping * d["dynamics.damping_scale"]
        )
        np.testing.assert_array_equal(
            model.actuator_gear, nominal.actuator_gear * np.c_[d["dynamics.actuator_strength"]]
        )
        # derived quantities follow the masses (mj_setConst)
        assert model.body_subtreemass[0] == pytest.approx(model.body_mass.sum())


def test_the_model_is_exactly_nominal_when_the_draw_is_nominal_and_after_close():
    flip = {"dist": "choice", "values": [1.0, 1.25]}
    spec = {
        "dynamics": {
            "friction_scale": flip,
            "mass_scale": flip,
            "damping_scale": flip,
            "actuator_strength": flip,
        }
    }
    env = sim2real.make("Walker2d", randomization=spec)
    model, nominal = env.unwrapped.model, compiled(env)
    env.reset(seed=0)
    seen_skewed = False
    for _ in range(200):
        env.reset()
        draws = env.source.drawn.values()
        if any(v != 1.0 for v in draws):
            seen_skewed = True
        elif seen_skewed:  # every field back at nominal after a skewed episode
            break
    else:
        pytest.fail("no nominal draw after a skewed one")
    assert_nominal(model, nominal)

    env = sim2real.make("Walker2d", randomization=config_path("Walker2d"))
    model = env.unwrapped.model
    for seed in range(5):
        env.reset(seed=seed)
        env.step(env.action_space.sample())
    assert not np.array_equal(model.body_mass, nominal.body_mass)
    env.close()
    assert_nominal(model, nominal)
    assert "_step_mujoco_simulation" not in vars(env.unwrapped)


def test_a_nominal_spec_changes_nothing_step_for_step():
    one = {"dist": "constant", "value": 1.0, "per": "element"}
    zero = {"dist": "constant", "value": 0.0}
    spec = {
        "dynamics": {"friction_scale": one, "mass_scale": one, "actuator_strength": one},
        "actuation": {"noise_std": {**zero, "resample": "step"}, "deadband": zero},
        "sensing": {"noise_std": zero, "dropout_prob": zero},
        "timing": {"obs_latency_s": zero},
    }
    dr = DomainRandomization(gym.make("Hopper-v5"), spec)
    sim = gym.make("Hopper-v5")
    nominal = compiled(sim)
    acts = np.random.default_rng(1).uniform(-1, 1, (60, 3))
    a, _ = dr.reset(seed=5)
    b, _ = sim.reset(seed=5)
    for action in acts:
        np.testing.assert_array_equal(a, b)
        a, ra, *_ = dr.step(action)
        b, rb, *_ = sim.step(action)
        assert ra == rb
    assert_nominal(dr.unwrapped.model, nominal)


# --------------------------------------------------------------------------- per-step draws
def mixture_cdf(scale: float):
    """CDF of ``s * z`` with ``s ~ uniform(0, scale)`` and ``z`` standard normal."""
    u = (np.arange(4000) + 0.5) / 4000
    return lambda x: ndtr(np.asarray(x)[..., None] / (scale * u)).mean(axis=-1)


def test_per_step_sensor_noise_draws_a_new_level_every_step():
    spec = {
        "sensing": {"noise_std": {"dist": "uniform", "low": 0, "high": 0.1, "resample": "step"}}
    }
    env = sim2real.make(TASK, randomization=spec)
    env.reset(seed=0)
    components = env.pipeline.sensors.noise
    noise = []
    for _ in range(3000):
        obs, _, terminated, truncated, _ = env.step(np.zeros(1))
        noise.append(obs - env.unwrapped._get_obs())
        assert env.pipeline.sensors.noise is components  # nothing is rebuilt within an episode
        if terminated or truncated:
            env.reset()
            components = env.pipeline.sensors.noise
    noise = np.asarray(noise)
    assert stats.kstest(noise[:, 1], mixture_cdf(0.1)).pvalue > 1e-3
    # a level drawn per episode instead would be gaussian within the episode: the mixture
    # is heavy-tailed (kurtosis of s*z with s ~ U(0, 1): 3 * E[s^4] / E[s^2]^2 = 5.4)
    assert stats.kurtosis(noise[:, 1], fisher=False) == pytest.approx(5.4, rel=0.15)
    assert env.reset()[1]["skews"]["sensing.noise_std"] == {
        "dist": "uniform",
        "low": 0.0,
        "high": 0.1,
        "resample": "step",
    }


def test_per_step_actuation_noise_and_dropout():
    spec = {
        "actuation": {
            "noise_std": {"dist": "uniform", "low": 0, "high": 0.03, "resample": "step"}
        },
        "sensing": {
            "dropout_prob": {
                "dist": "uniform", "low": 0, "high": 0.2, "resample": "step", "per": "element"
            }
        },
    }  # fmt: skip
    env = sim2real.make(TASK, randomization=spec)
    obs, _ = env.reset(seed=0)
    data = env.unwrapped.data
    span = env.action_space.high - env.action_space.low
    ctrl, repeats = [], []
    for _ in range(3000):
        new, _, terminated, truncated, _ = env.step(np.zeros(1))
        ctrl.append(data.ctrl[0] / span[0])
        repeats.append(new == obs)
        obs = new
        if terminated or truncated:
            obs, _ = env.reset()
    assert stats.kstest(ctrl, mixture_cdf(0.03)).pvalue > 1e-3
    assert np.mean(repeats) == pytest.approx(0.1, abs=0.015)  # E[p] of uniform(0, 0.2)


# --------------------------------------------------------------------------- seeding
def test_same_seed_same_draws_and_episode_different_seed_different():
    path = config_path("Hopper")
    a, b = (sim2real.make("Hopper", randomization=path) for _ in range(2))
    acts = np.random.default_rng(3).uniform(-1, 1, (40, 3))
    for env in (a, b):
        env.reset(seed=11)
    assert a.source.drawn == b.source.drawn
    for action in acts:
        np.testing.assert_array_equal(a.step(action)[0], b.step(action)[0])
    a.reset(), b.reset()
    assert a.source.drawn == b.source.drawn  # the streams go on alike
    b.reset(seed=12)
    assert a.source.drawn["dynamics.friction_scale"] != b.source.drawn["dynamics.friction_scale"]


def test_randomizing_one_more_field_leaves_the_other_draws_alone():
    friction = {"friction_scale": {"dist": "uniform", "low": 0.5, "high": 1.5}}
    mass = {"mass_scale": {"dist": "uniform", "low": 0.5, "high": 1.5, "per": "element"}}
    one = sim2real.make(TASK, randomization={"dynamics": friction})
    two = sim2real.make(TASK, randomization={"dynamics": {**mass, **friction}})
    for env in (one, two):
        env.reset(seed=4)
    for _ in range(5):
        name = "dynamics.friction_scale"
        assert one.source.drawn[name] == two.source.drawn[name]
        one.reset(), two.reset()


def test_nothing_draws_from_global_numpy_randomness(monkeypatch):
    state = np.random.get_state()[1].copy()

    def refuse(*args, **kwargs):
        raise AssertionError("global np.random was used")

    for name in ("random", "rand", "randn", "uniform", "normal", "standard_normal", "choice"):
        monkeypatch.setattr(np.random, name, refuse)
    spec = {**EVERY_FIELD, "sensing": {"noise_std": {"dist": "uniform", "low": 0, "high": 0.1,
                                                     "resample": "step"}}}  # fmt: skip
    env = sim2real.make(TASK, randomization=spec)
    env.reset(seed=0)
    env.reset()  # no seed: the generators go on
    for _ in range(300):
        _, _, terminated, truncated, _ = env.step(np.zeros(1))
        if terminated or truncated:
            env.reset()
    np.testing.assert_array_equal(np.random.get_state()[1], state)


# --------------------------------------------------------------------------- visible
def test_info_holds_the_draws_and_the_base_values():
    env = sim2real.make(
        "Hopper",
        skews="default",
        randomization={
            "dynamics": {
                "mass_scale": {"dist": "uniform", "low": 0.8, "high": 1.2, "per": "element"}
            },
            "timing": {"obs_latency_s": {"dist": "uniform", "low": 0.0, "high": 0.04}},
        },
    )
    _, info = env.reset(seed=0)
    skews = info["skews"]
    assert isinstance(skews["dynamics.mass_scale"], list)
    assert len(skews["dynamics.mass_scale"]) == env.unwrapped.model.nbody
    assert skews["dynamics.friction_scale"] == 0.8  # the base (the default preset) fills the rest
    assert skews["timing.action_latency_s"] == pytest.approx(0.01)
    assert (skews["timing.obs_latency_s"] / 0.002) == pytest.approx(
        round(skews["timing.obs_latency_s"] / 0.002)
    )


def test_describe_shows_the_ranges_and_the_base_values():
    env = sim2real.make(
        "Hopper",
        skews={"dynamics": {"friction_scale": 0.8}},
        randomization={
            "actuation": {
                "noise_std": {"dist": "uniform", "low": 0, "high": 0.03, "resample": "step"}
            },
            "dynamics": {
                "mass_scale": {"dist": "loguniform", "low": 0.8, "high": 1.25, "per": "element"}
            },
        },
    )
    text = sim2real.describe(env, show=False)
    assert (
        "dynamics.mass_scale" in text
        and "{dist: loguniform, low: 0.8, high: 1.25, per: element}" in text
    )
    assert "{dist: uniform, low: 0.0, high: 0.03, resample: step}" in text
    assert "fixed (base):" in text and "dynamics.friction_scale" in text and "0.8" in text
    assert "[x nominal]" in text and "[x action range]" in text


# --------------------------------------------------------------------------- as a wrapper
def test_wraps_a_gym_make_env_and_passes_the_env_checker():
    env = DomainRandomization(gym.make("Hopper-v5"), config_path("Hopper"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite Box bounds and the wrapped-env notice
        check_env(env, skip_render_check=True)
    assert sim2real.DomainRandomization is DomainRandomization


def test_a_bad_spec_is_refused_before_any_work():
    env = gym.make("Hopper-v5")
    before = model_arrays(env.unwrapped.model)
    with pytest.raises(SkewSpecError, match=r"sensing\.noise_std must be one number or 11 numbers"):
        DomainRandomization(
            env, {"sensing": {"noise_std": {"dist": "uniform", "low": 0, "high": [0.1, 0.2]}}}
        )
    with pytest.raises(SkewSpecError, match=r"dynamics\.mass_scale: loguniform needs low > 0"):
        sim2real.make(
            "Hopper",
            randomization={"dynamics": {"mass_scale": {"dist": "loguniform", "low": 0, "high": 1}}},
        )
    for name, array in before.items():
        np.testing.assert_array_equal(getattr(env.unwrapped.model, name), array, err_msg=name)
    assert "_step_mujoco_simulation" not in vars(env.unwrapped)


def test_the_new_skews_randomize_like_the_others():
    spec = {
        "dynamics": {
            "armature_scale": {"dist": "uniform", "low": 0.5, "high": 2.0, "per": "element"}
        },
        "timing": {"control_jitter_s": {"dist": "uniform", "low": 0.002, "high": 0.01}},
    }
    env = sim2real.make("Hopper", randomization=spec)
    model, nominal = env.unwrapped.model, compiled(env)
    for seed in range(3):
        _, info = env.reset(seed=seed)
        scales = info["skews"]["dynamics.armature_scale"]
        assert len(scales) == model.nv and len(set(scales)) == model.nv
        np.testing.assert_array_equal(model.dof_armature, nominal.dof_armature * scales)
        jitter = info["skews"]["timing.control_jitter_s"]
        assert 0.002 <= jitter <= 0.01 and jitter / 0.002 == pytest.approx(round(jitter / 0.002))
        env.step(env.action_space.sample())
