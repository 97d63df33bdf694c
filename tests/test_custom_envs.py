"""Any MuJoCo env pairs: three robots of the project's own beyond the sliding block, each paired,
its sim variant equal to the plain env, and its skews landing where they claim.

- ``ArmObsEnv``: a two-link arm whose observation method is not called ``_get_obs``.
- ``SensorPendulumEnv``: observations read from ``data.sensordata`` (an accelerometer included).
- ``FreeBoxEnv``: a box on a free joint, ``frame_skip`` 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.utils.env_checker import check_env

import sim2real
from sim2real.skewed_env import SkewedEnv, find_skewed_env
from sim2real.spec import SkewSpecError

ASSETS = Path(__file__).parent / "assets"
METADATA = {"render_modes": ["human", "rgb_array", "depth_array"]}


class ArmObsEnv(MujocoEnv):
    """Reach with a two-link arm. Observation (method ``arm_state``): 2 angles (rad), 2 rates."""

    metadata: ClassVar[dict] = {**METADATA, "render_fps": 50}

    def __init__(self, **kwargs) -> None:
        space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float64)
        MujocoEnv.__init__(self, str(ASSETS / "two_link_arm.xml"), 4, observation_space=space,
                           **kwargs)  # fmt: skip

    def arm_state(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel])

    def step(self, action):
        self.do_simulation(action, self.frame_skip)
        obs = self.arm_state()
        return obs, -float(np.sum(np.square(obs[:2] - 0.5))), False, False, {}

    def reset_model(self) -> np.ndarray:
        qpos = self.init_qpos + self.np_random.uniform(-0.1, 0.1, size=self.model.nq)
        self.set_state(qpos, self.init_qvel)
        return self.arm_state()


class SensorPendulumEnv(MujocoEnv):
    """Swing a pendulum. Observation: its sensors (angle rad, rate rad/s, tip accel m/s^2)."""

    metadata: ClassVar[dict] = {**METADATA, "render_fps": 100}

    def __init__(self, **kwargs) -> None:
        space = spaces.Box(-np.inf, np.inf, shape=(5,), dtype=np.float64)
        MujocoEnv.__init__(self, str(ASSETS / "sensor_pendulum.xml"), 5, observation_space=space,
                           **kwargs)  # fmt: skip

    def _get_obs(self) -> np.ndarray:
        return self.data.sensordata.copy()

    def step(self, action):
        self.do_simulation(action, self.frame_skip)
        obs = self._get_obs()
        return obs, float(-np.cos(obs[0])), False, False, {}

    def reset_model(self) -> np.ndarray:
        qpos = self.init_qpos + self.np_random.uniform(-0.3, 0.3, size=self.model.nq)
        self.set_state(qpos, self.init_qvel)
        mujoco.mj_rnePostConstraint(self.model, self.data)  # the accelerometer reads cacc
        return self._get_obs()


class FreeBoxEnv(MujocoEnv):
    """Push a free box along x. ``frame_skip`` 1; observation: qpos (7) and qvel (6)."""

    metadata: ClassVar[dict] = {**METADATA, "render_fps": 250}

    def __init__(self, **kwargs) -> None:
        space = spaces.Box(-np.inf, np.inf, shape=(13,), dtype=np.float64)
        MujocoEnv.__init__(self, str(ASSETS / "free_box.xml"), 1, observation_space=space,
                           **kwargs)  # fmt: skip

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel])

    def step(self, action):
        self.do_simulation(action, self.frame_skip)
        obs = self._get_obs()
        return obs, float(obs[0]), False, False, {}

    def reset_model(self) -> np.ndarray:
        self.set_state(self.init_qpos, self.init_qvel)
        return self._get_obs()


ENVS = {"arm": ArmObsEnv, "sensors": SensorPendulumEnv, "free": FreeBoxEnv}
OBS = {
    "arm": ArmObsEnv.arm_state,
    "sensors": SensorPendulumEnv._get_obs,
    "free": FreeBoxEnv._get_obs,
}


def actions(env: gym.Env, n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(env.action_space.low, env.action_space.high, (n, *env.action_space.shape))


def rollout(env: gym.Env, acts: np.ndarray, seed: int = 0) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    out = [(obs, 0.0)]
    for action in acts:
        obs, reward, *_ = env.step(action)
        out.append((obs, reward))
    return out


def assert_same(a: list, b: list) -> None:
    for (oa, ra), (ob, rb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb


def substep_reference(kind: str, acts: np.ndarray, seed: int, action_delay: int = 0) -> list:
    """The plain env stepped one substep at a time: the reading after every substep, the
    command issued at control step floor((n - delay) / frame_skip) acting at substep n."""
    env = ENVS[kind]()
    obs, _ = env.reset(seed=seed)
    readings = [obs]
    for n in range(len(acts) * env.frame_skip):
        env.data.ctrl[:] = acts[max(0, (n - action_delay) // env.frame_skip)]
        mujoco.mj_step(env.model, env.data)
        mujoco.mj_rnePostConstraint(env.model, env.data)
        readings.append(OBS[kind](env))
    return readings


# --------------------------------------------------------------------------- nominal = plain
@pytest.mark.parametrize("kind", list(ENVS))
def test_sim_is_the_plain_env_and_nominal_real_equals_it_through_the_physics_hook(kind):
    sim, real = sim2real.make_pair(ENVS[kind], real={})
    hook = vars(real.unwrapped)["_step_mujoco_simulation"]
    assert hook is find_skewed_env(real)._physics_step  # "real equals sim" runs the hook
    acts = actions(sim, 50)
    plain = rollout(ENVS[kind](), acts)
    assert_same(rollout(sim, acts), plain)
    assert_same(rollout(real, acts), plain)
    check_env(real.unwrapped, skip_render_check=True)


# --------------------------------------------------------------------------- the arm (no _get_obs)
def test_an_env_without_get_obs_takes_every_skew_that_needs_no_mid_step_reading():
    spec = {
        "dynamics": {"damping_scale": 3.0, "armature_scale": [2.0, 0.5]},
        "actuation": {"noise_std": 0.01},
        "sensing": {"noise_std": 0.001},
        "timing": {"obs_latency_s": 0.04, "action_latency_s": 0.005},  # 2 control steps; 1 substep
    }
    sim, real = sim2real.make_pair(ArmObsEnv, real=spec)
    real.reset(seed=0)
    model, nominal = real.unwrapped.model, sim.unwrapped.model
    np.testing.assert_allclose(model.dof_damping, 3.0 * nominal.dof_damping)
    np.testing.assert_allclose(model.dof_armature, [0.02, 0.005])
    assert not np.array_equal(model.dof_invweight0, nominal.dof_invweight0)  # derived, recomputed
    rollout(real, actions(real, 20))


def test_a_mid_step_reading_without_get_obs_is_refused_naming_obs_fn():
    with pytest.raises(SkewSpecError) as caught:
        sim2real.make_pair(ArmObsEnv, real={"timing": {"obs_latency_s": 0.01}})
    message = str(caught.value)
    assert "timing.obs_latency_s" in message and "obs_fn=" in message and "\n" not in message


@pytest.mark.parametrize("substeps", [1, 2, 5, 7])
def test_obs_fn_gives_the_reading_from_that_earlier_substep(substeps):
    spec = {"timing": {"obs_latency_s": substeps * 0.005}}
    _, real = sim2real.make_pair(ArmObsEnv, real=spec, obs_fn=ArmObsEnv.arm_state)
    acts = actions(real, 12)
    readings = substep_reference("arm", acts, seed=2)
    obs, _ = real.reset(seed=2)
    np.testing.assert_array_equal(obs, readings[0])
    for t, action in enumerate(acts):
        obs, *_ = real.step(action)
        np.testing.assert_array_equal(obs, readings[max(0, (t + 1) * 4 - substeps)])


def test_whole_step_obs_latency_needs_no_obs_fn():
    sim, real = sim2real.make_pair(ArmObsEnv, real={"timing": {"obs_latency_s": 0.04}})
    acts = actions(sim, 15)
    seen, true = rollout(real, acts), rollout(sim, acts)
    for t in range(len(acts) + 1):
        np.testing.assert_array_equal(seen[t][0], true[max(0, t - 2)][0])


# --------------------------------------------------------------------------- sensordata
def test_sensor_noise_lands_on_the_sensordata_dimensions_it_names():
    std = [0.0, 0.05, 0.0, 0.0, 0.0]
    sim, real = sim2real.make_pair(SensorPendulumEnv, real={"sensing": {"noise_std": std}})
    acts = actions(sim, 1500)
    diff = np.array([o for o, _ in rollout(real, acts)]) - np.array(
        [o for o, _ in rollout(sim, acts)]
    )
    np.testing.assert_array_equal(diff[:, [0, 2, 3, 4]], 0.0)
    assert diff[:, 1].std() == pytest.approx(0.05, rel=0.1)


@pytest.mark.parametrize("substeps", [1, 3, 7])
def test_mid_step_readings_of_sensordata_are_exact_accelerometer_included(substeps):
    sim, real = sim2real.make_pair(
        SensorPendulumEnv, real={"timing": {"obs_latency_s": substeps * 0.002}}
    )
    acts = actions(sim, 10)
    readings = substep_reference("sensors", acts, seed=1)
    real.reset(seed=1)
    for t, action in enumerate(acts):
        obs, *_ = real.step(action)
        np.testing.assert_array_equal(obs, readings[max(0, (t + 1) * 5 - substeps)])


# --------------------------------------------------------------------------- free joint
def test_free_joint_with_frame_skip_one_takes_dynamics_and_latency():
    spec = {
        "dynamics": {"mass_scale": 2.0, "friction_scale": 0.5, "gravity": [0.0, 0.0, -3.0]},
        "timing": {"action_latency_s": 0.012},  # 3 substeps = 3 control steps
    }
    sim, real = sim2real.make_pair(FreeBoxEnv, real=spec)
    real.reset(seed=0)
    model, nominal = real.unwrapped.model, sim.unwrapped.model
    np.testing.assert_allclose(model.body_mass, 2.0 * nominal.body_mass)
    np.testing.assert_allclose(model.geom_friction[:, 0], 0.5 * nominal.geom_friction[:, 0])
    np.testing.assert_array_equal(model.opt.gravity, [0.0, 0.0, -3.0])
    acts = actions(real, 30)
    readings = substep_reference("free", acts, seed=0, action_delay=3)
    _, light = sim2real.make_pair(FreeBoxEnv, real={"timing": {"action_latency_s": 0.012}})
    light_run = rollout(light, acts)
    for t in range(len(acts) + 1):
        np.testing.assert_array_equal(light_run[t][0], readings[t])


def test_free_box_slides_further_on_less_friction():
    push = np.ones((150, 1))
    sim, real = sim2real.make_pair(FreeBoxEnv, real={"dynamics": {"friction_scale": 0.5}})
    assert rollout(real, push)[-1][0][0] > rollout(sim, push)[-1][0][0] + 0.1


# --------------------------------------------------------------------------- wrapping twice
@pytest.mark.parametrize("kind", list(ENVS))
def test_wrapping_twice_is_refused_naming_the_remedy(kind):
    _, real = sim2real.make_pair(ENVS[kind], real={"dynamics": {"mass_scale": 2.0}})
    for again in (real, real.unwrapped, gym.wrappers.TimeLimit(real, 10)):
        with pytest.raises(ValueError, match=r"already carries a SkewedEnv.*set_source"):
            SkewedEnv(again, {"dynamics": {"mass_scale": 2.0}})
    assert find_skewed_env(real) is real


def test_wrapping_a_built_in_real_variant_again_is_refused():
    _, real = sim2real.make_pair("Hopper", real={"dynamics": {"mass_scale": 2.0}})
    with pytest.raises(ValueError, match="compound"):
        sim2real.DomainRandomization(real, config_path_hopper())
    after_close = gym.make("Hopper-v5")
    env = SkewedEnv(after_close, {})
    env.close()
    SkewedEnv(after_close, {})  # a closed wrapper no longer holds the env


def config_path_hopper() -> Path:
    from sim2real.randomization import config_path

    return config_path("Hopper")
