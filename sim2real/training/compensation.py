"""Latency compensation (a Smith predictor): the policy acts on the state its command will meet.

A robot whose observations are ``L_o`` old and whose commands act ``L_a`` late
closes its loop over ``L_o + L_a``. Given those latencies (measured: the
calibration remedy reports them), the nominal simulator predicts the present:
set it to the state the delayed observation implies
(:func:`sim2real.remedies.state.state_from_obs`), apply the commands already sent
over the ``L_o + L_a`` they still have to act (each at the substep it takes effect),
and read the observation there. The policy then sees the state its next command
will meet when it arrives. With latency alone this recovers a sim-trained policy's
sim return; the other skews (dynamics, noise) stay for robust training to handle.

:class:`LatencyCompensation` is what a policy's ``metadata.json`` records
(``latency_compensation``); :class:`LatencyPredictor` does the prediction for a
batch of sub-envs, one row each, and the evaluator applies it before the policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencyCompensation:
    """The loop delays to compensate, in seconds."""

    obs_latency_s: float = 0.0
    action_latency_s: float = 0.0

    @classmethod
    def load(cls, value: Mapping[str, Any] | None) -> LatencyCompensation | None:
        if not value:
            return None
        extra = sorted(set(value) - {"obs_latency_s", "action_latency_s", "source"})
        if extra:
            raise ValueError(
                f"latency_compensation: unknown keys {extra}; allowed: obs_latency_s, "
                "action_latency_s, source"
            )
        compensation = cls(
            float(value.get("obs_latency_s", 0.0)), float(value.get("action_latency_s", 0.0))
        )
        if compensation.obs_latency_s < 0 or compensation.action_latency_s < 0:
            raise ValueError("latency_compensation: latencies must be >= 0 s")
        return compensation

    def to_dict(self) -> dict[str, float]:
        return {"obs_latency_s": self.obs_latency_s, "action_latency_s": self.action_latency_s}


class LatencyPredictor:
    """Predicted observations for rows of sub-envs of a built-in ``task``.

    Call :meth:`predict` with each observation batch (and the episode starts), then
    :meth:`record` with the commands sent. Row ``i`` is always the same sub-env.
    """

    def __init__(self, task: str, compensation: LatencyCompensation) -> None:
        import gymnasium as gym

        import sim2real  # noqa: F401  (registers the ids)
        from sim2real.remedies.state import state_from_obs
        from sim2real.tasks import tasks

        env = gym.make(tasks()[task].sim_id).unwrapped
        self._env, self._model, self._data = env, env.model, env.data
        substep = float(self._model.opt.timestep)
        self._frame_skip = int(env.frame_skip)
        self._obs_substeps = round(compensation.obs_latency_s / substep)
        self._action_substeps = round(compensation.action_latency_s / substep)
        self._invert = state_from_obs(task, self._model.nq, self._model.nv)
        depth = (self._obs_substeps + self._action_substeps) // self._frame_skip + 2
        self._depth = depth
        self._commands: list[list[np.ndarray]] = []

    def predict(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        import mujoco

        obs = np.asarray(obs, dtype=np.float64)
        count = len(obs)
        while len(self._commands) < count:
            self._commands.append([])
        starts = np.zeros(count, dtype=bool)
        if episode_start is not None:
            starts |= np.asarray(episode_start, dtype=bool).reshape(count)
        qpos, qvel = self._invert(obs)
        model, data = self._model, self._data
        predicted = np.empty_like(obs)
        for row in range(count):
            if starts[row]:
                self._commands[row] = []
            sent = self._commands[row]
            data.qpos[:], data.qvel[:] = qpos[row], qvel[row]
            data.act[:] = 0.0
            mujoco.mj_forward(model, data)
            # Substep s (0 = now) carries the command sent floor((s - L_a) / frame_skip)
            # control steps ago (-1 the last one); before the first, nothing acts.
            for s in range(-self._obs_substeps, self._action_substeps):
                back = (s - self._action_substeps) // self._frame_skip
                if not sent:
                    data.ctrl[:] = 0.0
                else:
                    data.ctrl[:] = sent[max(back, -len(sent))]
                mujoco.mj_step(model, data)
            predicted[row] = self._env._get_obs()
        return predicted

    def record(self, actions: np.ndarray) -> None:
        for row, action in enumerate(np.asarray(actions, dtype=np.float64)):
            sent = self._commands[row]
            sent.append(action.copy())
            del sent[: -self._depth]
