"""Fast mid-step readings: bit for bit the upstream ``_get_obs``, or not used at all."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

import sim2real
from sim2real.skewed_env import SkewedEnv
from sim2real.skews.readers import fast_reader

TASKS = ["Ant", "HalfCheetah", "Hopper", "Walker2d", "InvertedPendulum", "InvertedDoublePendulum"]


def _states(env: gym.Env, rng: np.random.Generator, count: int):
    """Random states, some far outside the clip bounds, then stepped so that contacts and
    constraint forces are not zero."""
    base = env.unwrapped
    for i in range(count):
        qpos = base.init_qpos + rng.normal(0, 0.3, base.model.nq)
        qvel = rng.normal(0, 15.0 if i % 2 else 1.0, base.model.nv)  # +-10 clips bite
        base.set_state(qpos, qvel)
        base.do_simulation(rng.uniform(-1, 1, base.model.nu), base.frame_skip)
        mujoco.mj_rnePostConstraint(base.model, base.data)  # what Ant's contact forces read
        yield


@pytest.mark.parametrize("task", TASKS)
def test_the_fast_reader_is_the_upstream_observation_bit_for_bit(task: str) -> None:
    env = gym.make(sim2real.get_task(task).base_id)
    env.reset(seed=0)
    reader = fast_reader(env.unwrapped)
    assert reader is not None
    rng = np.random.default_rng(3)
    for _ in _states(env, rng, 40):
        expected = env.unwrapped._get_obs()
        got = reader()
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes()


def test_the_env_options_are_followed() -> None:
    env = gym.make("Hopper-v5", exclude_current_positions_from_observation=False)
    env.reset(seed=1)
    reader = fast_reader(env.unwrapped)
    assert reader is not None and reader().shape == (12,)
    ant = gym.make("Ant-v5", include_cfrc_ext_in_observation=False)
    ant.reset(seed=1)
    assert fast_reader(ant.unwrapped)().tobytes() == ant.unwrapped._get_obs().tobytes()


class OwnObservation(HopperEnv):
    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel]) * 2.0


def test_an_env_with_its_own_observation_keeps_it() -> None:
    env = OwnObservation()
    env.reset(seed=0)
    assert fast_reader(env) is None
    skewed = SkewedEnv(OwnObservation(), {"timing": {"obs_latency_s": 0.002}})
    skewed.reset(seed=0)
    assert skewed._fast_reader() is None  # the mid-step reading is the env's own method


def test_a_mid_step_latency_reads_through_the_fast_reader_and_obs_fn_wins() -> None:
    _, real = sim2real.make_pair("Hopper", real={"timing": {"obs_latency_s": 0.002}})
    real.reset(seed=0)
    skewed = real
    while not isinstance(skewed, SkewedEnv):
        skewed = skewed.env
    assert skewed._fast_reader() is not None
    calls = []

    def obs_fn(env) -> np.ndarray:
        calls.append(1)
        return env._get_obs()

    _, own = sim2real.make_pair("Hopper", real={"timing": {"obs_latency_s": 0.002}}, obs_fn=obs_fn)
    own.reset(seed=0)
    own.step(own.action_space.sample())
    assert calls, "the obs_fn given by the user takes the mid-step reading"
