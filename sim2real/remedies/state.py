"""The physical state that an observation implies, for the built-in tasks.

Calibration (multiple shooting) and the monitor both re-anchor the simulator to
what the robot reports: they need ``(qpos, qvel)`` from one observation. Each
built-in task's observation is a known function of the state (see its
``_get_obs``); this module inverts it. What the observation does not contain
is filled with a value the dynamics do not depend on (the x position of a
walker, the x-y position of the Ant), and a velocity that the task clips
(Hopper and Walker2d at +-10, InvertedDoublePendulum likewise) makes that
step's state unknown: ``StateFromObs.exact`` says so per observation.

A custom env provides its own ``state_from_obs(obs) -> (qpos, qvel)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

StateFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

VELOCITY_CLIP = 10.0  # the bound at which Hopper, Walker2d and IDP clip velocities


@dataclass(frozen=True)
class StateFromObs:
    """Rebuilds ``(qpos, qvel)`` from a (possibly batched) observation of one task.

    Attributes:
        task: the built-in task name.
        nq, nv: the model's position and velocity sizes.
        clipped_velocity: whether the task clips velocities at +-10 (then a
            state whose observed velocity sits on the bound is not exact).
    """

    task: str
    nq: int
    nv: int
    clipped_velocity: bool
    _invert: Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(qpos, qvel)`` for ``obs`` of shape ``(obs_dim,)`` or ``(n, obs_dim)``."""
        return self._invert(np.asarray(obs, dtype=np.float64), self.nq, self.nv)

    def exact(self, obs: np.ndarray) -> np.ndarray | bool:
        """Whether the observation determines the state (no velocity on its clip bound)."""
        if not self.clipped_velocity:
            obs = np.asarray(obs)
            return np.ones(obs.shape[:-1], dtype=bool) if obs.ndim > 1 else True
        _, qvel = self(obs)
        return ~np.any(np.abs(qvel) >= VELOCITY_CLIP, axis=-1)


def _positions_then_velocities(skip: int) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """Observation ``[qpos[skip:], qvel]``; the first ``skip`` positions are set to 0."""

    def invert(obs: np.ndarray, nq: int, nv: int) -> tuple[np.ndarray, np.ndarray]:
        lead = obs.shape[:-1]
        qpos = np.concatenate([np.zeros((*lead, skip)), obs[..., : nq - skip]], axis=-1)
        qvel = obs[..., nq - skip : nq - skip + nv].copy()
        return qpos, qvel

    return invert


def _double_pendulum(obs: np.ndarray, nq: int, nv: int) -> tuple[np.ndarray, np.ndarray]:
    # [x, sin(q1), sin(q2), cos(q1), cos(q2), clip(qvel), clip(qfrc_constraint)[:1]]
    angles = np.arctan2(obs[..., 1:3], obs[..., 3:5])
    qpos = np.concatenate([obs[..., :1], angles], axis=-1)
    return qpos, obs[..., 5:8].copy()


def _reacher(obs: np.ndarray, nq: int, nv: int) -> tuple[np.ndarray, np.ndarray]:
    # [cos(q0:2), sin(q0:2), target qpos (2), qvel[:2], fingertip - target (2)]
    angles = np.arctan2(obs[..., 2:4], obs[..., 0:2])
    qpos = np.concatenate([angles, obs[..., 4:6]], axis=-1)
    qvel = np.concatenate([obs[..., 6:8], np.zeros((*obs.shape[:-1], 2))], axis=-1)
    return qpos, qvel


_INVERTERS: dict[str, tuple[Callable[..., tuple[np.ndarray, np.ndarray]], bool]] = {
    "Hopper": (_positions_then_velocities(1), True),
    "Walker2d": (_positions_then_velocities(1), True),
    "HalfCheetah": (_positions_then_velocities(1), False),
    "Ant": (_positions_then_velocities(2), False),
    "InvertedPendulum": (_positions_then_velocities(0), False),
    "InvertedDoublePendulum": (_double_pendulum, True),
    "Reacher": (_reacher, False),
}


def state_from_obs(task: str, nq: int, nv: int) -> StateFromObs:
    """The inverse observation map of built-in ``task`` (a model with ``nq``, ``nv``)."""
    if task not in _INVERTERS:
        raise ValueError(
            f"no state_from_obs is known for {task!r}; built-in: {', '.join(_INVERTERS)}; "
            "for a custom env pass state_from_obs=(obs -> (qpos, qvel))"
        )
    invert, clipped = _INVERTERS[task]
    return StateFromObs(task, nq, nv, clipped, invert)
