"""The seven built-in tasks vectorized over simulations: observation, reward, termination,
reset noise, each exactly as its Gymnasium v5 env computes it.

A :class:`TaskKernel` reads the task's parameters off one Gymnasium env built
with default kwargs (the weights, ranges and noise scales upstream uses), and
computes over ``n`` simulations at once from :class:`State`: the ``(n, ...)``
rows of the MuJoCo fields the task reads. Every expression repeats upstream's
operations in upstream's order and dtypes, so the results are equal bit for bit
(``tests/test_engine_batch.py`` proves it step by step). Three upstream
operations have no bit-identical vectorized form and are computed per row
instead: ``np.linalg.norm`` of a 3-vector (BLAS ``ddot``; Reacher) and the
scalar ``x ** 2`` of a NumPy float (libm ``pow``, which differs from
``x * x`` in the last bit; InvertedDoublePendulum).

The reset noise is drawn per simulation, by the same generator calls on the
same ``np_random`` (seeded by ``reset(seed=...)``) as upstream's
``reset_model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv


@dataclass
class State:
    """The rows of the MuJoCo fields a task reads, for the simulations of one call.

    ``qpos`` and ``qvel`` are always there; ``extra`` holds the task's other
    fields by MjData name (``xpos``, ``site_xpos``, ``qfrc_constraint``,
    ``cfrc_ext``), each ``(n, ...)``.
    """

    qpos: np.ndarray
    qvel: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


class TaskKernel:
    """One task over many simulations.

    Attributes:
        base_id: the upstream Gymnasium id, e.g. ``"Hopper-v5"``.
        fields: the MjData fields besides ``qpos`` and ``qvel`` that the task reads.
        needs_rne: whether the observation reads what ``mj_rnePostConstraint``
            computes (Ant's contact forces).
    """

    base_id: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()
    needs_rne: ClassVar[bool] = False

    def __init__(self, env: MujocoEnv) -> None:
        self.env = env
        self.model = env.model
        self.frame_skip = int(env.frame_skip)
        self.dt = env.dt
        self.init_qpos = env.init_qpos.copy()
        self.init_qvel = env.init_qvel.copy()
        self.obs_dim = int(np.prod(env.observation_space.shape))
        self.nq, self.nv = self.model.nq, self.model.nv

    # --------------------------------------------------------------- per simulation
    def reset_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(qpos, qvel)`` after reset, drawn from ``rng`` exactly as ``reset_model``."""
        raise NotImplementedError

    # --------------------------------------------------------------- vectorized
    def before(self, state: State) -> np.ndarray | None:
        """What the reward needs from before the step (e.g. the x position)."""
        return None

    def observe(self, state: State) -> np.ndarray:
        """The true observation, ``(n, obs_dim)`` float64."""
        raise NotImplementedError

    def reward(
        self, state: State, before: Any, action: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(reward (n,), terminated (n,) bool)`` from the true state after the step.

        ``action`` is the command as the policy gave it (its dtype matters: upstream's
        control cost is computed in the action's dtype).
        """
        raise NotImplementedError

    def _ctrl_cost(self, action: np.ndarray) -> np.ndarray:
        return self.env._ctrl_cost_weight * np.sum(np.square(action), axis=1)


def _uniform_reset(kernel: TaskKernel, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    scale = kernel.env._reset_noise_scale
    qpos = kernel.init_qpos + rng.uniform(low=-scale, high=scale, size=kernel.nq)
    qvel = kernel.init_qvel + rng.uniform(low=-scale, high=scale, size=kernel.nv)
    return qpos, qvel


def _gaussian_velocity_reset(
    kernel: TaskKernel, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    scale = kernel.env._reset_noise_scale
    qpos = kernel.init_qpos + rng.uniform(low=-scale, high=scale, size=kernel.nq)
    qvel = kernel.init_qvel + scale * rng.standard_normal(kernel.nv)
    return qpos, qvel


class _Planar(TaskKernel):
    """Hopper, Walker2d and HalfCheetah: x velocity forward reward, qpos[1:] and qvel."""

    clip_velocity: ClassVar[bool] = True

    def reset_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return _uniform_reset(self, rng)

    def before(self, state: State) -> np.ndarray:
        return state.qpos[:, 0].copy()

    def observe(self, state: State) -> np.ndarray:
        velocity = np.clip(state.qvel, -10, 10) if self.clip_velocity else state.qvel
        return np.concatenate((state.qpos[:, 1:], velocity), axis=1)

    def _forward(self, state: State, before: np.ndarray) -> np.ndarray:
        x_velocity = (state.qpos[:, 0] - before) / self.dt
        return self.env._forward_reward_weight * x_velocity

    def _healthy(self, state: State) -> np.ndarray:
        raise NotImplementedError

    def reward(self, state, before, action):
        healthy = self._healthy(state)
        rewards = self._forward(state, before) + healthy * self.env._healthy_reward
        reward = rewards - self._ctrl_cost(action)
        terminated = ~healthy & self.env._terminate_when_unhealthy
        return reward, terminated


class Hopper(_Planar):
    base_id = "Hopper-v5"

    def _healthy(self, state: State) -> np.ndarray:
        env = self.env
        z, angle = state.qpos[:, 1], state.qpos[:, 2]
        rest = np.concatenate((state.qpos[:, 2:], state.qvel), axis=1)
        min_state, max_state = env._healthy_state_range
        min_z, max_z = env._healthy_z_range
        min_angle, max_angle = env._healthy_angle_range
        healthy_state = np.all((min_state < rest) & (rest < max_state), axis=1)
        return healthy_state & (min_z < z) & (z < max_z) & (min_angle < angle) & (angle < max_angle)


class Walker2d(_Planar):
    base_id = "Walker2d-v5"

    def _healthy(self, state: State) -> np.ndarray:
        env = self.env
        z, angle = state.qpos[:, 1], state.qpos[:, 2]
        min_z, max_z = env._healthy_z_range
        min_angle, max_angle = env._healthy_angle_range
        return (min_z < z) & (z < max_z) & (min_angle < angle) & (angle < max_angle)


class HalfCheetah(_Planar):
    base_id = "HalfCheetah-v5"
    clip_velocity = False

    def reset_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return _gaussian_velocity_reset(self, rng)

    def reward(self, state, before, action):
        reward = self._forward(state, before) - self._ctrl_cost(action)
        return reward, np.zeros(len(reward), dtype=bool)


class Ant(TaskKernel):
    base_id = "Ant-v5"
    fields = ("xpos", "cfrc_ext")
    needs_rne = True

    def __init__(self, env: MujocoEnv) -> None:
        super().__init__(env)
        self.main_body = env.data.body(env._main_body).id

    def reset_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return _gaussian_velocity_reset(self, rng)

    def before(self, state: State) -> np.ndarray:
        return state.extra["xpos"][:, self.main_body, :2].copy()

    def _contact_forces(self, state: State) -> np.ndarray:
        low, high = self.env._contact_force_range
        return np.clip(state.extra["cfrc_ext"], low, high)

    def observe(self, state: State) -> np.ndarray:
        forces = self._contact_forces(state)[:, 1:].reshape(len(state.qpos), -1)
        return np.concatenate((state.qpos[:, 2:], state.qvel, forces), axis=1)

    def reward(self, state, before, action):
        env = self.env
        xy_velocity = (state.extra["xpos"][:, self.main_body, :2] - before) / self.dt
        forward = xy_velocity[:, 0] * env._forward_reward_weight
        z = state.qpos[:, 2]
        min_z, max_z = env._healthy_z_range
        finite = np.isfinite(state.qpos).all(axis=1) & np.isfinite(state.qvel).all(axis=1)
        healthy = finite & (min_z <= z) & (z <= max_z)
        rewards = forward + healthy * env._healthy_reward
        forces = self._contact_forces(state).reshape(len(z), -1)
        contact_cost = env._contact_cost_weight * np.sum(np.square(forces), axis=1)
        reward = rewards - (self._ctrl_cost(action) + contact_cost)
        return reward, ~healthy & env._terminate_when_unhealthy


class InvertedPendulum(TaskKernel):
    base_id = "InvertedPendulum-v5"

    def reset_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return _uniform_reset(self, rng)

    def observe(self, state: State) -> np.ndarray:
        return np.concatenate((state.qpos, state.qvel), axis=1)

    def reward(self, state, before, action):
        obs = self.observe(state)
        terminated = ~np.isfinite(obs).all(axis=1) | (np.abs(obs[:, 1]) > 0.2)
        return (~terminated).astype(np.int64), terminated


class InvertedDoublePendulum(TaskKernel):
    base_id = "InvertedDoublePendulum-v5"
    fields = ("site_xpos", "qfrc_constraint")

    def reset_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        scale = self.env._reset_noise_scale
        qpos = self.init_qpos + rng.uniform(low=-scale, high=scale, size=self.nq)
        qvel = self.init_qvel + rng.standard_normal(self.nv) * scale
        return qpos, qvel

    def observe(self, state: State) -> np.ndarray:
        qpos = state.qpos
        return np.concatenate(
            (
                qpos[:, :1],
                np.sin(qpos[:, 1:]),
                np.cos(qpos[:, 1:]),
                np.clip(state.qvel, -10, 10),
                np.clip(state.extra["qfrc_constraint"], -10, 10)[:, :1],
            ),
            axis=1,
        )

    def reward(self, state, before, action):
        site = state.extra["site_xpos"][:, 0]
        terminated = site[:, 2] <= 1
        bonus = self.env._healthy_reward
        # Python floats: ``x ** 2`` is libm pow, as on upstream's NumPy scalars.
        rewards = [
            bonus * int(not done) - (0.01 * x**2 + (y - 2) ** 2) - (1e-3 * v1**2 + 5e-3 * v2**2)
            for (x, _, y), (v1, v2), done in zip(
                site.tolist(), state.qvel[:, 1:3].tolist(), terminated.tolist(), strict=True
            )
        ]
        return np.asarray(rewards, dtype=np.float64), terminated


class Reacher(TaskKernel):
    base_id = "Reacher-v5"
    fields = ("xpos",)

    def __init__(self, env: MujocoEnv) -> None:
        super().__init__(env)
        self.fingertip = env.data.body("fingertip").id
        self.target = env.data.body("target").id

    def reset_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        qpos = rng.uniform(low=-0.1, high=0.1, size=self.nq) + self.init_qpos
        while True:
            goal = rng.uniform(low=-0.2, high=0.2, size=2)
            if np.linalg.norm(goal) < 0.2:
                break
        qpos[-2:] = goal
        qvel = self.init_qvel + rng.uniform(low=-0.005, high=0.005, size=self.nv)
        qvel[-2:] = 0
        return qpos, qvel

    def _vec(self, state: State) -> np.ndarray:
        xpos = state.extra["xpos"]
        return xpos[:, self.fingertip] - xpos[:, self.target]

    def observe(self, state: State) -> np.ndarray:
        theta = state.qpos[:, :2]
        return np.concatenate(
            (
                np.cos(theta),
                np.sin(theta),
                state.qpos[:, 2:],
                state.qvel[:, :2],
                self._vec(state)[:, :2],
            ),
            axis=1,
        )

    def reward(self, state, before, action):
        env = self.env
        # Per row: np.linalg.norm of a 3-vector has no bit-identical vectorized form.
        dist = np.array([-np.linalg.norm(v) * env._reward_dist_weight for v in self._vec(state)])
        ctrl = -np.square(action).sum(axis=1) * env._reward_control_weight
        return dist + ctrl, np.zeros(len(dist), dtype=bool)


KERNELS: dict[str, type[TaskKernel]] = {
    cls.__name__: cls
    for cls in (
        Hopper,
        Walker2d,
        HalfCheetah,
        Ant,
        InvertedPendulum,
        InvertedDoublePendulum,
        Reacher,
    )
}


@cache
def template_env(base_id: str) -> gym.Env:
    return gym.make(base_id)


def kernel_for(task: str) -> TaskKernel:
    """The kernel of built-in task ``task`` (a name such as ``"Hopper"``), or a clear error."""
    from sim2real.spec import SkewSpecError
    from sim2real.tasks import get_task

    try:
        spec = get_task(task)
    except SkewSpecError:
        raise ValueError(
            f"engine 'batch' runs the built-in tasks ({', '.join(KERNELS)}), got {task!r}; "
            "use engine='local' for other envs"
        ) from None
    cls = KERNELS.get(spec.name)
    if cls is None or cls.base_id != spec.base_id:
        raise ValueError(
            f"the batch engine has no kernel for task {task!r} (base {spec.base_id}); "
            f"it runs the built-in tasks {', '.join(KERNELS)}"
        )
    return cls(template_env(spec.base_id).unwrapped)
