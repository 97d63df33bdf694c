"""The skewed pipeline replayed over short windows of a log (multiple shooting).

A window starts at a logged observation ``o_k`` from a free state ``z`` (the
state the sensors saw when they took ``o_k``) and runs the logged commands
through MuJoCo on the physics substep grid, exactly as
:class:`~sim2real.skewed_env.SkewedEnv` does:

- the reading handed to the policy after control step ``t`` was taken at physical
  substep ``max(0, t * F - d_obs)`` (``F`` substeps per control step); before the
  episode began it is the first reading (the buffer is backfilled);
- the command sent at step ``j`` drives the actuators from substep ``j * F + d_act``
  on; before the first command arrives the actuators hold it.

Mid-episode a window only sees the total delay ``d_obs + d_act``; a window that
starts at the episode's first observation also sees the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np
from mujoco import rollout

from sim2real.remedies.state import VELOCITY_CLIP, StateFromObs, state_from_obs
from sim2real.skews.dynamics import ModelSkews
from sim2real.tasks import get_task

#: The dynamics fields a calibration fits, by their name in ``ModelSkews``.
SCALE_FIELDS = ("mass_scale", "friction_scale", "damping_scale", "actuator_strength")


@dataclass(frozen=True)
class Delay:
    """Observation and action latency, in physics substeps."""

    obs: int
    action: int

    @property
    def total(self) -> int:
        return self.obs + self.action


@dataclass(frozen=True)
class Windows:
    """Every window of a set of episodes for one delay.

    Attributes:
        episode: (n,) the episode each window comes from.
        start: (n,) the control step of the window's first observation.
        targets: (n, W + 1, obs_dim) the logged observations the window predicts.
        mask: (n, W + 1, obs_dim) False where a logged value is known to be stale
            (a dropout repeat mid-episode).
        sample: (n, W + 1) substep (from the window's start state) of each prediction.
        controls: (n, W * F, nu) the command in effect at each substep.
        at_start: (n,) whether the window begins at its episode's first observation.
    """

    episode: np.ndarray
    start: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    sample: np.ndarray
    controls: np.ndarray
    at_start: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    def subset(self, keep: np.ndarray) -> Windows:
        """The windows selected by the boolean or index array ``keep``."""
        return Windows(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))

    def head(self, steps: int, frame_skip: int) -> Windows:
        """The same windows cut to their first ``steps`` control steps (same start states)."""
        return Windows(
            self.episode,
            self.start,
            self.targets[:, : steps + 1],
            self.mask[:, : steps + 1],
            self.sample[:, : steps + 1],
            self.controls[:, : steps * frame_skip],
            self.at_start,
        )


def leading_repeats(obs: np.ndarray) -> int:
    """How many observations after the first repeat it exactly (a backfilled buffer)."""
    same = np.all(obs[1:] == obs[0], axis=1)
    return int(np.argmin(same)) if not same.all() else len(same)


def window_starts(
    obs: np.ndarray, steps: int, length: int, exact: StateFromObs, clip_margin: float
) -> list[int]:
    """Non-overlapping window starts, packed greedily: a window starts at every step that
    determines the state (and keeps ``clip_margin`` from a velocity clip) once the last
    window has ended, so a clipped reading costs one step rather than a whole window."""
    usable = np.asarray(exact.exact(obs[: steps + 1]), dtype=bool).reshape(-1)
    if exact.clipped_velocity and clip_margin > 0:
        _, qvel = exact(obs[: steps + 1])
        usable &= np.all(np.abs(qvel) < VELOCITY_CLIP - clip_margin, axis=-1)
    starts, k = [], 0
    while k + length <= steps:
        if usable[k]:
            starts.append(k)
            k += length
        else:
            k += 1
    return starts


def build_windows(
    episodes: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    frame_skip: int,
    length: int,
    delay: Delay,
    exact: StateFromObs,
    clip_margin: float = 0.0,
) -> Windows:
    """Cut ``episodes`` (``(observations, actions)`` pairs) into windows of ``length`` steps.

    A window never starts at an observation that does not determine the state (a
    velocity on its clip bound, or with noisy readings within ``clip_margin`` of it,
    where the true velocity may lie beyond the bound): :func:`window_starts`.
    """
    F, W = frame_skip, length
    parts: dict[str, list] = {k: [] for k in Windows.__dataclass_fields__}
    offsets = np.arange(W + 1)
    substeps = np.arange(W * F)
    for index, (obs, actions) in enumerate(episodes):
        T = len(actions)
        stale = np.zeros(obs.shape, dtype=bool)
        stale[1:] = obs[1:] == obs[:-1]
        stale[: leading_repeats(obs) + 1] = False  # the backfilled start is modelled
        starts = window_starts(obs, T, W, exact, clip_margin)
        for k in starts:
            steps = k + offsets
            first = max(0, k * F - delay.obs)
            sensed = np.maximum(0, steps * F - delay.obs) - first
            command = np.clip((first + substeps - delay.action) // F, 0, T - 1)
            parts["episode"].append(index)
            parts["start"].append(k)
            parts["targets"].append(obs[steps])
            parts["mask"].append(~stale[steps])
            parts["sample"].append(sensed)
            parts["controls"].append(actions[command])
            parts["at_start"].append(first == 0)
    if not parts["start"]:
        raise ValueError(
            f"logs: no window of {length} steps starts at an exact state; "
            "log longer episodes or use shorter windows"
        )
    return Windows(**{k: np.asarray(v) for k, v in parts.items()})


class PipelineModel:
    """One task's MuJoCo model with the dynamics skews, simulating windows in a batch.

    Args:
        task: a built-in task whose observation is positions then velocities.
        threads: MuJoCo rollout threads.
    """

    def __init__(self, task: str, threads: int = 1) -> None:
        self.task = get_task(task)
        self._env = gym.make(self.task.base_id).unwrapped  # owns the model
        self.model: mujoco.MjModel = self._env.model
        self.frame_skip = int(self._env.frame_skip)
        self.substep_s = float(self.model.opt.timestep)
        self.control_dt = self.frame_skip * self.substep_s
        self.nq, self.nv, self.nu = self.model.nq, self.model.nv, self.model.nu
        self.obs_dim = self.task.observation_dim
        self.invert = state_from_obs(self.task.name, self.nq, self.nv)
        self._skip = self.nq - (self.obs_dim - self.nv)
        self._skews = ModelSkews(self.model)
        self._datas = [mujoco.MjData(self.model) for _ in range(max(1, threads))]
        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self._template = np.zeros(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self._env.data, self._template, spec)
        self._check_layout()

    def close(self) -> None:
        self._skews.restore()
        self._env.close()

    def _check_layout(self) -> None:
        """The observation must be ``[qpos[skip:], clip(qvel)]``; checked on random states."""
        rng = np.random.default_rng(0)
        data = self._env.data
        for _ in range(3):
            data.qpos[:] = self._env.init_qpos + rng.uniform(-0.1, 0.1, self.nq)
            data.qvel[:] = rng.uniform(-12, 12, self.nv)
            mujoco.mj_forward(self.model, data)
            expected = self._env._get_obs()
            got = self.observe(data.qpos[None], data.qvel[None])[0]
            if expected.shape != got.shape or not np.allclose(expected, got):
                raise ValueError(
                    f"calibration of {self.task.name} is not supported: its observation is "
                    "not positions then velocities (supported: Hopper, Walker2d, HalfCheetah, "
                    "InvertedPendulum)"
                )
        self._env.reset(seed=0)

    def observe(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """The observation of states ``(..., nq)``, ``(..., nv)``, clipped as the task clips."""
        if self.invert.clipped_velocity:
            qvel = np.clip(qvel, -10.0, 10.0)
        return np.concatenate([qpos[..., self._skip :], qvel], axis=-1)

    def set_scales(self, values: dict[str, float]) -> None:
        """Dynamics scales (``SCALE_FIELDS`` names), relative to the nominal model."""
        self._skews.apply(values)

    def simulate(self, windows: Windows, starts: np.ndarray) -> np.ndarray:
        """Predicted observations (n, W + 1, obs_dim) from start states given as observations."""
        qpos, qvel = self.invert(starts)
        state = np.tile(self._template, (len(starts), 1))
        state[:, 1 : 1 + self.nq] = qpos
        state[:, 1 + self.nq : 1 + self.nq + self.nv] = qvel
        out, _ = rollout.rollout(self.model, self._datas, state, windows.controls)
        path = np.concatenate([state[:, None], out], axis=1)
        chosen = path[np.arange(len(starts))[:, None], windows.sample]
        return self.observe(
            chosen[..., 1 : 1 + self.nq], chosen[..., 1 + self.nq : 1 + self.nq + self.nv]
        )
