"""The real variant: nominal skews change nothing; each skew changes exactly what it claims."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim2real
from sim2real.skewed_env import SkewedEnv, find_skewed_env

STEPS = 60


def actions(env: gym.Env, n: int, seed: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    return [rng.uniform(low, high).astype(env.action_space.dtype) for _ in range(n)]


def rollout(env: gym.Env, acts: list[np.ndarray], seed: int = 3) -> list[tuple]:
    """(obs, reward, terminated, truncated) per step, restarting after an episode ends."""
    obs, _ = env.reset(seed=seed)
    out = [(obs, 0.0, False, False)]
    for action in acts:
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append((obs, 0.0, False, False))
    return out


def assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for (oa, ra, ta, ua), (ob, rb, tb, ub) in zip(a, b, strict=True):
        np.testing.assert_array_equal(oa, ob)
        assert (ra, ta, ua) == (rb, tb, ub)


# --------------------------------------------------------------------------- nominal = sim
def test_sim_variant_is_upstream_step_for_step(task):
    upstream = gym.make(sim2real.get_task(task).base_id)
    sim = gym.make(f"sim2real/{task}-sim-v0")
    acts = actions(upstream, STEPS)
    assert_same(rollout(upstream, acts), rollout(sim, acts))


def test_real_variant_with_nominal_skews_is_sim(task):
    sim, real = sim2real.make_pair(task, real={})
    acts = actions(sim, STEPS)
    assert_same(rollout(sim, acts), rollout(real, acts))


@pytest.mark.parametrize(
    "spec",
    [
        {
            "dynamics": {
                "friction_scale": 1.0,
                "mass_scale": 1.0,
                "damping_scale": 1.0,
                "actuator_strength": 1.0,
            }
        },
        {"actuation": {"noise_std": 0.0, "deadband": 0.0}},
        {"sensing": {"noise_std": 0.0, "bias_std": [0.0] * 11, "dropout_prob": 0.0}},
        {"timing": {"obs_latency_s": 0.0, "action_latency_s": 0.0, "control_jitter_s": 0.0}},
    ],
)
def test_each_section_at_nominal_is_sim(spec):
    sim, real = sim2real.make_pair("Hopper", real=spec)
    acts = actions(sim, STEPS)
    assert_same(rollout(sim, acts), rollout(real, acts))


# --------------------------------------------------------------------------- timing
def substep_reference(env_id: str, acts, seed: int, action_delay: int = 0):
    """Step the upstream env one physics substep at a time.

    Returns the observation after every substep (index 0: the reset observation),
    applying at global substep n the command issued at control step
    floor((n - action_delay) / frame_skip) (the first command before that).
    """
    env = gym.make(env_id)
    base = env.unwrapped
    obs, _ = env.reset(seed=seed)
    frame_skip = base.frame_skip
    readings = [obs]
    for n in range(len(acts) * frame_skip):
        issued = max(0, (n - action_delay) // frame_skip)
        base.data.ctrl[:] = acts[issued]
        mujoco.mj_step(base.model, base.data)
        mujoco.mj_rnePostConstraint(base.model, base.data)
        readings.append(base._get_obs())
    return readings, frame_skip


@pytest.mark.parametrize("substeps", [1, 3, 4, 5, 10, 13])
def test_observation_latency_returns_the_reading_from_that_earlier_time(substeps):
    timestep = 0.002  # Hopper: 4 substeps of 2 ms per control step
    sim, real = sim2real.make_pair(
        "Hopper", real={"timing": {"obs_latency_s": substeps * timestep}}
    )
    acts = actions(sim, 40)
    readings, frame_skip = substep_reference("Hopper-v5", acts, seed=5)
    obs, info = real.reset(seed=5)
    assert info["skews"]["timing.obs_latency_s"] == pytest.approx(substeps * timestep)
    np.testing.assert_array_equal(obs, readings[0])
    for t, action in enumerate(acts):
        obs, *_ = real.step(action)
        when = max(0, (t + 1) * frame_skip - substeps)  # backfilled with the first reading
        np.testing.assert_array_equal(obs, readings[when])


@pytest.mark.parametrize("substeps", [1, 2, 4, 5, 9])
def test_action_latency_delays_the_effect_by_exactly_its_substeps(substeps):
    sim, real = sim2real.make_pair(
        "Hopper", real={"timing": {"action_latency_s": substeps * 0.002}}
    )
    acts = actions(sim, 40)
    readings, frame_skip = substep_reference("Hopper-v5", acts, seed=5, action_delay=substeps)
    real.reset(seed=5)
    for t, action in enumerate(acts):
        obs, *_ = real.step(action)
        np.testing.assert_array_equal(obs, readings[(t + 1) * frame_skip])


def test_latency_shorter_than_a_control_step_still_acts():
    sim, real = sim2real.make_pair("HalfCheetah", real={"timing": {"action_latency_s": 0.01}})
    acts = actions(sim, 20)
    a, b = rollout(sim, acts), rollout(real, acts)
    assert not np.array_equal(a[-1][0], b[-1][0])


def test_latency_buffers_do_not_leak_between_episodes():
    spec = {"timing": {"obs_latency_s": 0.02, "action_latency_s": 0.014}}
    _, real = sim2real.make_pair("Hopper", real=spec)
    _, fresh = sim2real.make_pair("Hopper", real=spec)
    acts = actions(real, 30)
    rollout(real, acts, seed=1)  # a first episode fills the buffers
    assert_same(rollout(real, acts, seed=9), rollout(fresh, acts, seed=9))


@settings(max_examples=15, deadline=None)
@given(obs_substeps=st.integers(0, 12), act_substeps=st.integers(0, 12))
def test_latencies_compose_with_the_substep_reference(obs_substeps, act_substeps):
    spec = {
        "timing": {"obs_latency_s": obs_substeps * 0.002, "action_latency_s": act_substeps * 0.002}
    }
    sim, real = sim2real.make_pair("Hopper", real=spec)
    acts = actions(sim, 12)
    readings, frame_skip = substep_reference("Hopper-v5", acts, seed=2, action_delay=act_substeps)
    real.reset(seed=2)
    for t, action in enumerate(acts):
        obs, *_ = real.step(action)
        np.testing.assert_array_equal(obs, readings[max(0, (t + 1) * frame_skip - obs_substeps)])


# --------------------------------------------------------------------------- actuation
def applied_controls(spec: dict, command: float, n: int = 3000) -> np.ndarray:
    _, real = sim2real.make_pair("HalfCheetah", real=spec)
    real.reset(seed=0)
    out = []
    for _ in range(n):
        real.step(np.full(6, command, dtype=np.float32))
        out.append(real.unwrapped.data.ctrl.copy())
    return np.array(out)


def test_actuation_noise_has_the_stated_spread():
    ctrl = applied_controls({"actuation": {"noise_std": 0.05}}, 0.0)
    # 5 % of the [-1, 1] range is 0.1 action units
    np.testing.assert_allclose(ctrl.std(axis=0), 0.1, rtol=0.06)
    np.testing.assert_allclose(ctrl.mean(axis=0), 0.0, atol=0.01)


def test_deadband_silences_small_commands_only():
    assert np.all(applied_controls({"actuation": {"deadband": 0.05}}, 0.09, n=5) == 0.0)
    np.testing.assert_allclose(
        applied_controls({"actuation": {"deadband": 0.05}}, 0.11, n=5), 0.11, rtol=1e-6
    )


# --------------------------------------------------------------------------- sensing
def sensed_minus_true(spec: dict, steps: int = 400, seed: int = 0):
    sim, real = sim2real.make_pair("Hopper", real=spec)
    acts = actions(sim, steps)
    true = np.array([o for o, *_ in rollout(sim, acts, seed)])
    seen = np.array([o for o, *_ in rollout(real, acts, seed)])
    return seen - true


def test_sensor_noise_has_the_stated_spread_per_dimension():
    std = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.01, 0.02, 0.05, 0.1, 0.2]
    diff = sensed_minus_true({"sensing": {"noise_std": std}}, steps=3000)
    np.testing.assert_allclose(diff.std(axis=0), std, rtol=0.08)


def test_sensor_bias_is_constant_within_an_episode_and_spread_across_episodes():
    diff = sensed_minus_true({"sensing": {"bias_std": 0.1}}, steps=8)
    np.testing.assert_allclose(diff, np.broadcast_to(diff[0], diff.shape), atol=1e-12)
    _, real = sim2real.make_pair("Hopper", real={"sensing": {"bias_std": 0.1}})
    sim = gym.make("sim2real/Hopper-sim-v0")
    offsets = []
    for seed in range(300):
        offsets.append(real.reset(seed=seed)[0] - sim.reset(seed=seed)[0])
    assert np.std(offsets) == pytest.approx(0.1, rel=0.08)


def test_sensor_dropout_repeats_the_previous_reading_at_the_stated_rate():
    sim, real = sim2real.make_pair("Hopper", real={"sensing": {"dropout_prob": 0.2}})
    acts = actions(sim, 3000)
    seen = np.array([o for o, *_ in rollout(real, acts, 0)])
    true = np.array([o for o, *_ in rollout(sim, acts, 0)])
    repeated = (seen[1:] == seen[:-1]) & (true[1:] != true[:-1])
    assert repeated.mean() == pytest.approx(0.2, abs=0.02)


def test_wrong_length_noise_vector_is_refused_before_any_env_is_built(monkeypatch):
    def no_env(*args, **kwargs):
        raise AssertionError("an env was built")

    monkeypatch.setattr(gym, "make", no_env)
    with pytest.raises(sim2real.SkewSpecError, match=r"noise_std must be one number or 11"):
        sim2real.make_pair("Hopper", real={"sensing": {"noise_std": [0.1, 0.2]}})


# --------------------------------------------------------------------------- dynamics
def test_dynamics_scale_the_model_relative_to_nominal():
    sim, real = sim2real.make_pair(
        "Hopper",
        real={
            "dynamics": {
                "friction_scale": 0.7,
                "mass_scale": 1.2,
                "damping_scale": 1.5,
                "actuator_strength": 0.8,
                "gravity": [0.0, 0.0, -3.7],
            }
        },
    )
    sim.reset(seed=0)
    real.reset(seed=0)
    m0, m1 = sim.unwrapped.model, real.unwrapped.model
    np.testing.assert_allclose(m1.geom_friction[:, 0], 0.7 * m0.geom_friction[:, 0])
    np.testing.assert_array_equal(m1.geom_friction[:, 1:], m0.geom_friction[:, 1:])
    np.testing.assert_allclose(m1.body_mass, 1.2 * m0.body_mass)
    np.testing.assert_allclose(m1.body_inertia, 1.2 * m0.body_inertia)
    np.testing.assert_allclose(m1.body_subtreemass, 1.2 * m0.body_subtreemass)  # derived
    np.testing.assert_allclose(m1.dof_damping, 1.5 * m0.dof_damping)
    np.testing.assert_allclose(m1.actuator_gear, 0.8 * m0.actuator_gear)
    np.testing.assert_array_equal(m1.opt.gravity, [0.0, 0.0, -3.7])


def test_actuator_strength_scales_the_torque_for_the_same_command():
    sim, real = sim2real.make_pair("Hopper", real={"dynamics": {"actuator_strength": 0.8}})
    for env in (sim, real):
        env.reset(seed=0)
        env.step(np.array([0.5, -0.5, 0.25], dtype=np.float32))
    np.testing.assert_allclose(
        real.unwrapped.data.qfrc_actuator, 0.8 * sim.unwrapped.data.qfrc_actuator
    )


def test_lower_friction_lets_a_block_slide_further():
    from sliding_block import SlidingBlockEnv

    def slide(scale: float) -> float:
        env = SkewedEnv(
            SlidingBlockEnv(initial_velocity=2.0), {"dynamics": {"friction_scale": scale}}
        )
        env.reset(seed=0)
        for _ in range(150):
            obs, *_ = env.step(np.zeros(1))
        return float(obs[0])

    # Coulomb friction stops a block from 2 m/s after v^2 / (2 mu g): 0.41 m at mu = 0.5.
    assert slide(1.0) == pytest.approx(4 / (2 * 0.5 * 9.81), rel=0.05)
    assert slide(0.5) > 1.8 * slide(1.0)


def test_mass_change_keeps_the_simulation_state():
    _, real = sim2real.make_pair("Hopper", real={})
    real.reset(seed=0)
    for _ in range(5):
        real.step(real.action_space.sample())
    data = real.unwrapped.data
    before = (data.qpos.copy(), data.qvel.copy(), data.time)
    # The dynamics skews edit the model only, recomputing through a private MjData.
    skewed = sim2real.skewed_env.find_skewed_env(real)
    skewed._model_skews.apply({"mass_scale": 1.3})
    np.testing.assert_array_equal(data.qpos, before[0])
    np.testing.assert_array_equal(data.qvel, before[1])
    assert data.time == before[2]


def test_a_thousand_resets_do_not_drift():
    spec = {
        "dynamics": {
            "mass_scale": 1.15,
            "friction_scale": 0.7,
            "damping_scale": 1.3,
            "actuator_strength": 0.85,
        }
    }
    _, real = sim2real.make_pair("Walker2d", real=spec)
    real.reset(seed=0)
    model = real.unwrapped.model
    fields = (
        "body_mass",
        "body_inertia",
        "body_subtreemass",
        "geom_friction",
        "dof_damping",
        "actuator_gear",
        "dof_invweight0",
        "actuator_acc0",
    )
    after_one = {name: getattr(model, name).copy() for name in fields}
    for seed in range(1000):
        real.reset(seed=seed)
    for name in fields:
        np.testing.assert_array_equal(getattr(model, name), after_one[name], err_msg=name)


def test_close_restores_the_nominal_model_exactly():
    sim = gym.make("Walker2d-v5")
    nominal = mujoco.MjModel.from_xml_path(sim.unwrapped.fullpath)
    env = SkewedEnv(
        gym.make("Walker2d-v5").unwrapped, sim2real.get_task("Walker2d").preset("harsh")
    )
    env.reset(seed=0)
    assert not np.array_equal(env.unwrapped.model.body_mass, nominal.body_mass)
    env.close()
    model = env.unwrapped.model
    arrays = [
        name
        for name in dir(nominal)
        if not name.startswith("_") and isinstance(getattr(nominal, name), np.ndarray)
    ]
    assert len(arrays) > 100  # every model array, derived ones included
    for name in arrays:
        np.testing.assert_array_equal(getattr(model, name), getattr(nominal, name), err_msg=name)
    assert model.stat.meaninertia == nominal.stat.meaninertia


# --------------------------------------------------------------------------- seeding
def test_same_seed_same_episode_different_seed_different():
    _, real = sim2real.make_pair("Hopper", real="harsh")
    _, twin = sim2real.make_pair("Hopper", real="harsh")
    acts = actions(real, 80)
    assert_same(rollout(real, acts, seed=11), rollout(twin, acts, seed=11))
    a, b = rollout(real, acts, seed=11), rollout(real, acts, seed=12)
    assert not np.array_equal(a[5][0], b[5][0])


def test_no_global_numpy_randomness(monkeypatch):
    state = np.random.get_state()[1].copy()
    _, real = sim2real.make_pair("Hopper", real="harsh")
    rollout(real, actions(real, 50))
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_reset_info_carries_the_applied_values():
    _, real = sim2real.make_pair("InvertedPendulum", real="default")
    _, info = real.reset(seed=0)
    preset = sim2real.get_task("InvertedPendulum").preset("default")
    assert set(info["skews"]) == set(preset.active())
    assert info["skews"]["dynamics.mass_scale"] == preset.dynamics.mass_scale


positive_scale = st.floats(0.5, 1.5)
# 0, or at least one substep of Hopper's 2 ms once rounded (shorter ones are refused)
latency = st.one_of(st.just(0.0), st.floats(0.0011, 0.05))
spec_strategy = st.fixed_dictionaries(
    {},
    optional={
        "dynamics": st.fixed_dictionaries(
            {},
            optional={
                "friction_scale": positive_scale,
                "mass_scale": positive_scale,
                "damping_scale": positive_scale,
                "actuator_strength": positive_scale,
            },
        ),
        "actuation": st.fixed_dictionaries(
            {}, optional={"noise_std": st.floats(0, 0.1), "deadband": st.floats(0, 0.1)}
        ),
        "sensing": st.fixed_dictionaries(
            {},
            optional={
                "noise_std": st.floats(0, 0.1),
                "bias_std": st.lists(st.floats(0, 0.1), min_size=11, max_size=11),
                "dropout_prob": st.floats(0, 1),
            },
        ),
        "timing": st.fixed_dictionaries(
            {},
            optional={"obs_latency_s": latency, "action_latency_s": latency},
        ),
    },
)


@settings(max_examples=20, deadline=None)
@given(spec=spec_strategy, seed=st.integers(0, 2**31 - 1))
def test_any_valid_spec_is_reproducible_and_well_formed(spec, seed):
    _, real = sim2real.make_pair("Hopper", real=spec)
    _, twin = sim2real.make_pair("Hopper", real=spec)
    acts = actions(real, 15, seed=seed % 1000)
    first, second = rollout(real, acts, seed), rollout(twin, acts, seed)
    assert_same(first, second)
    for obs, *_ in first:
        assert obs.shape == (11,) and obs.dtype == np.float64 and np.isfinite(obs).all()


@pytest.mark.parametrize("task", ["Ant", "Reacher", "InvertedDoublePendulum"])
def test_observation_latency_is_exact_where_observations_read_derived_quantities(task):
    """Ant reads contact forces (computed by mj_rnePostConstraint), Reacher body positions."""
    base = sim2real.get_task(task)
    sim, real = sim2real.make_pair(task, real={"timing": {"obs_latency_s": 0.02}})
    acts = actions(sim, 15)
    readings, frame_skip = substep_reference(base.base_id, acts, seed=4)
    substeps = round(0.02 / sim.unwrapped.model.opt.timestep)
    real.reset(seed=4)
    for t, action in enumerate(acts):
        obs, _, terminated, *_ = real.step(action)
        np.testing.assert_array_equal(obs, readings[max(0, (t + 1) * frame_skip - substeps)])
        if terminated:
            break


# --------------------------------------------------------------------------- control jitter
def jitter_reference(acts, seed: int, base_delay: int, delays: list[int]):
    """The upstream Hopper stepped one substep at a time; at substep n the newest command
    that has arrived acts (command t arrives at t * frame_skip + base_delay + delays[t])."""
    env = gym.make("Hopper-v5")
    base = env.unwrapped
    obs, _ = env.reset(seed=seed)
    frame_skip = base.frame_skip
    arrival = [t * frame_skip + base_delay + d for t, d in enumerate(delays)]
    readings = [obs]
    for n in range(len(acts) * frame_skip):
        arrived = [t for t in range(len(acts)) if arrival[t] <= n]
        base.data.ctrl[:] = acts[max(arrived)] if arrived else acts[0]
        mujoco.mj_step(base.model, base.data)
        mujoco.mj_rnePostConstraint(base.model, base.data)
        readings.append(base._get_obs())
    return readings, frame_skip


@pytest.mark.parametrize(("jitter_substeps", "latency_substeps"), [(1, 0), (3, 1), (6, 2)])
def test_control_jitter_delays_each_command_by_its_own_draw(jitter_substeps, latency_substeps):
    from sim2real.skews.pipeline import reset_generators
    from sim2real.skews.streams import BlockStream
    from sim2real.skews.timing import draw_jitter

    spec = {
        "timing": {
            "control_jitter_s": jitter_substeps * 0.002,
            "action_latency_s": latency_substeps * 0.002,
        }
    }
    sim, real = sim2real.make_pair("Hopper", real=spec)
    acts = actions(sim, 40)
    rng = reset_generators(6)["timing.control_jitter_s"]  # its own stream
    stream = BlockStream(lambda n: draw_jitter(rng, jitter_substeps, n))
    delays = [int(stream.next()[0]) for _ in acts]
    assert set(delays) == set(range(jitter_substeps + 1))  # every delay in the bound occurs
    readings, frame_skip = jitter_reference(acts, 6, latency_substeps, delays)
    real.reset(seed=6)
    for t, action in enumerate(acts):
        obs, *_ = real.step(action)
        np.testing.assert_array_equal(obs, readings[(t + 1) * frame_skip])


def test_control_jitter_is_visible_and_leaves_the_other_streams_alone():
    spec = {"sensing": {"noise_std": 0.05}, "timing": {"obs_latency_s": 0.008}}
    _, plain = sim2real.make_pair("Hopper", real=spec)
    _, jittered = sim2real.make_pair(
        "Hopper", real={**spec, "timing": {"obs_latency_s": 0.008, "control_jitter_s": 0.004}}
    )
    first, _ = plain.reset(seed=3)
    again, info = jittered.reset(seed=3)
    np.testing.assert_array_equal(first, again)  # same sensor noise: jitter draws elsewhere
    assert info["skews"]["timing.control_jitter_s"] == pytest.approx(0.004)
    text = sim2real.describe(jittered, show=False)
    assert "timing.control_jitter_s" in text and "2 substeps of 0.002 s" in text


@pytest.mark.parametrize(
    "real",
    [
        {},
        {"sensing": {"noise_std": 0.05, "bias_std": 0.02, "dropout_prob": 0.2}},
        {"timing": {"obs_latency_s": 0.016}},  # whole control steps
        {"timing": {"obs_latency_s": 0.006}, "sensing": {"noise_std": 0.05}},  # mid-step reading
        {"timing": {"obs_latency_s": 0.014, "action_latency_s": 0.01}},
    ],
)
def test_true_observation_is_the_env_own_observation_without_sensing_or_latency(real):
    """What the asymmetric critic sees: the env's own observation at the current state, never
    the skewed reading the policy receives (reused from the step, or computed when a mid-step
    reading took its place)."""
    _, env = sim2real.make_pair("Hopper", real=real)
    base, skewed = env.unwrapped, find_skewed_env(env)
    own = type(base)._get_obs.__get__(base)
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(skewed.true_observation(), own())
    differs = False
    for action in actions(env, 30):
        obs, *_ = env.step(action)
        np.testing.assert_array_equal(skewed.true_observation(), own())
        differs |= not np.array_equal(obs, own())
    assert differs == bool(real)
