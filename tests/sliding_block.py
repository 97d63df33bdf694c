"""A user's own robot: a MujocoEnv on a small MJCF model, to test pairing custom envs."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

XML = Path(__file__).parent / "assets" / "sliding_block.xml"


class SlidingBlockEnv(MujocoEnv):
    """Push a block towards x = 1 m. Observation: [x (m), z (m), vx (m/s), vz (m/s)]."""

    metadata: ClassVar[dict] = {
        "render_modes": ["human", "rgb_array", "depth_array"],
        "render_fps": 100,
    }

    def __init__(self, initial_velocity: float = 0.0, **kwargs) -> None:
        self.initial_velocity = initial_velocity
        obs_space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float64)
        MujocoEnv.__init__(self, str(XML), frame_skip=5, observation_space=obs_space, **kwargs)

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel]).copy()

    def step(self, action):
        self.do_simulation(action, self.frame_skip)
        obs = self._get_obs()
        reward = -abs(1.0 - obs[0]) - 1e-3 * float(np.sum(np.square(action)))
        return obs, reward, False, False, {}

    def reset_model(self) -> np.ndarray:
        noise = self.np_random.uniform(-0.01, 0.01, size=self.model.nq)
        qvel = np.array([self.initial_velocity, 0.0])
        self.set_state(self.init_qpos + noise * np.array([1.0, 0.0]), qvel)
        return self._get_obs()
