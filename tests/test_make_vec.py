"""make_vec: sub-env i equals sim2real.make's env step for step (same seeds, same actions,
autoreset included), randomization drawn from the same source; SB3 trains on it."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import sim2real
from sim2real.engines.vec import BatchVectorEnv, make_vec

RANDOMIZATION = {
    "dynamics": {
        "friction_scale": {"dist": "uniform", "low": 0.5, "high": 1.5},
        "mass_scale": {"dist": "loguniform", "low": 0.8, "high": 1.25, "per": "element"},
    },
    "actuation": {"noise_std": {"dist": "uniform", "low": 0.0, "high": 0.05}},
    "sensing": {"noise_std": {"dist": "uniform", "low": 0.0, "high": 0.05}},
    "timing": {"action_latency_s": {"dist": "uniform", "low": 0.0, "high": 0.03}},
}


def _same_as_sync_vector_env(task, skews, randomization, steps=80, n=3, max_steps=25) -> int:
    """Step make_vec and Gymnasium's SyncVectorEnv (SAME_STEP autoreset) of sim2real.make
    envs side by side; assert equality everywhere; return the number of episodes ended."""
    kwargs = {"skews": skews, "randomization": randomization, "max_episode_steps": max_steps}
    batch = make_vec(task, n, nthread=1, **kwargs)
    local = SyncVectorEnv(
        [lambda: sim2real.make(task, **kwargs) for _ in range(n)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    assert batch.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert batch.single_observation_space == local.single_observation_space
    assert batch.single_action_space == local.single_action_space
    obs, _ = batch.reset(seed=11)
    assert np.array_equal(obs, local.reset(seed=11)[0])
    rng = np.random.default_rng(3)
    ended = 0
    for step in range(steps):
        actions = rng.uniform(-1, 1, batch.action_space.shape).astype(np.float32)
        got, want = batch.step(actions), local.step(actions)
        for name, a, b in zip(
            ("obs", "reward", "terminated", "truncated"), got, want, strict=False
        ):
            assert np.array_equal(a, b), f"{name} differs at step {step}"
        mask = want[4].get("_final_obs", np.zeros(n, dtype=bool))
        assert np.array_equal(got[4].get("_final_obs", np.zeros(n, dtype=bool)), mask)
        for i in np.flatnonzero(mask):
            assert np.array_equal(got[4]["final_obs"][i], want[4]["final_obs"][i])
        ended += int(mask.sum())
    return ended


@pytest.mark.parametrize("skews", [None, "default", "harsh"])
def test_equals_local_envs_with_autoreset(skews) -> None:
    assert _same_as_sync_vector_env("Hopper", skews, None) >= 3


@pytest.mark.parametrize("task", ["Hopper", "Ant"])
def test_randomization_draws_the_same_points(task: str) -> None:
    """Every episode's point (per-body masses, latencies, noise levels) comes from the same
    source and generators as the local DomainRandomization env, across autoresets."""
    assert _same_as_sync_vector_env(task, "default", RANDOMIZATION, steps=60) >= 3


def test_seeds() -> None:
    venv = make_vec("InvertedPendulum", 2, nthread=1)
    one = venv.reset(seed=[5, 9])[0]
    env = sim2real.make("InvertedPendulum")
    assert np.array_equal(one[1], env.reset(seed=9)[0])
    assert np.array_equal(venv.reset(seed=8)[0][1], one[1])  # seed s gives sub-env i s + i
    with pytest.raises(ValueError, match="expected 2 seeds"):
        venv.reset(seed=[1, 2, 3])


def test_refuses_per_step_randomization() -> None:
    per_step = {"sensing": {"noise_std": {"dist": "uniform", "low": 0, "high": 0.1,
                                          "resample": "step"}}}  # fmt: skip
    with pytest.raises(ValueError, match="does not resample skews every step"):
        BatchVectorEnv("Hopper", 2, randomization=per_step)


@pytest.mark.slow
def test_ppo_trains_on_the_sb3_adapter() -> None:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from sim2real.engines.vec import SB3VecEnv

    torch.set_num_threads(1)
    venv = VecNormalize(SB3VecEnv(make_vec("Hopper", 4, nthread=1)))
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(512)
    assert model.num_timesteps >= 512
    episodes = list(model.ep_info_buffer)
    assert episodes and all(e["l"] >= 1 and np.isfinite(e["r"]) for e in episodes)
    obs = venv.reset()
    assert obs.shape == (4, 11)
    actions, _ = model.predict(obs, deterministic=True)
    obs, rewards, dones, infos = venv.step(actions)
    assert rewards.dtype == np.float32 and dones.shape == (4,) and len(infos) == 4
