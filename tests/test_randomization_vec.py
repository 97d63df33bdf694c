"""Domain randomization under vector envs and inside Stable-Baselines3 training."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import sim2real
from sim2real.randomization import config_path

TASK = "InvertedPendulum"
CONFIG = config_path(TASK)
N_ENVS = 3


def make_env() -> gym.Env:
    return sim2real.make(TASK, randomization=CONFIG)


def friction_draws(infos: list[dict]) -> list[float]:
    return [info["skews"]["dynamics.friction_scale"] for info in infos]


def test_sync_vector_env_gives_each_sub_env_its_own_stream():
    envs = gym.vector.SyncVectorEnv([make_env] * N_ENVS)
    twin = gym.vector.SyncVectorEnv([make_env] * N_ENVS)
    _, infos = envs.reset(seed=7)
    _, twin_infos = twin.reset(seed=7)
    draws = infos["skews"]["dynamics.friction_scale"]
    assert len(set(draws)) == N_ENVS
    np.testing.assert_array_equal(draws, twin_infos["skews"]["dynamics.friction_scale"])
    # over many episodes the sub-envs' draws are uncorrelated
    series = np.array(
        [
            [env.reset()[1]["skews"]["dynamics.friction_scale"] for env in envs.envs]
            for _ in range(300)
        ]
    )
    correlation = np.corrcoef(series.T)[np.triu_indices(N_ENVS, 1)]
    assert np.all(np.abs(correlation) < 0.2)
    envs.step(envs.action_space.sample())
    envs.close(), twin.close()


@pytest.mark.parametrize("vec_env", ["dummy", "subproc"])
def test_stable_baselines3_vec_envs_give_each_sub_env_its_own_stream(vec_env):
    def build() -> DummyVecEnv | SubprocVecEnv:
        if vec_env == "dummy":
            return DummyVecEnv([make_env] * N_ENVS)
        return SubprocVecEnv([make_env] * N_ENVS, start_method="fork")

    seeded, twin, unseeded = build(), build(), build()
    for venv in (seeded, twin):
        venv.seed(7)
        venv.reset()
    unseeded.reset()  # no seed: fresh entropy in every sub-env
    draws = friction_draws(seeded.reset_infos)
    assert len(set(draws)) == N_ENVS
    assert draws == friction_draws(twin.reset_infos)
    assert len(set(friction_draws(unseeded.reset_infos))) == N_ENVS
    actions = np.zeros((N_ENVS, 1))
    for _ in range(5):
        obs, *_ = seeded.step(actions)
        np.testing.assert_array_equal(obs, twin.step(actions)[0])
    for venv in (seeded, twin, unseeded):
        venv.close()


def test_ppo_trains_with_randomization():
    venv = DummyVecEnv([lambda: sim2real.make("Hopper", randomization=config_path("Hopper"))] * 2)
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=512)
    assert model.num_timesteps == 512
    obs = venv.reset()
    assert np.all(np.isfinite(model.predict(obs, deterministic=True)[0]))
    venv.close()
