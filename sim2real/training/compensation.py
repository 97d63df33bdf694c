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

The delay can be given (measured by calibration) or **estimated online**
(``estimate=True``): from commands and observations only the total delay
``L_o + L_a`` is identifiable, and it is also all the predictor needs (a loop
delayed ``L_o`` then ``L_a`` is, input to output, the loop delayed ``L_o + L_a``
then 0, with the plant's clock shifted). :class:`DelayEstimator` picks, for each
episode, the total delay on the substep grid whose nominal one-step predictions
best explain the observations so far (least squares, each dimension scaled by the
task's ``default`` sensor noise), over the first ``estimate_steps`` informative
steps; then it holds. The same policy then runs undelayed in sim and compensated
on a robot of unknown latency.

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
    """The loop delays to compensate, in seconds, or how to estimate them.

    Attributes:
        obs_latency_s, action_latency_s: the delays; with ``estimate`` their sum is
            the prior total used before the stream says otherwise.
        estimate: estimate the total delay online, per episode (:class:`DelayEstimator`).
        max_latency_s: the largest total delay the estimate considers.
        estimate_steps: informative steps per episode the estimate uses before it holds.
    """

    obs_latency_s: float = 0.0
    action_latency_s: float = 0.0
    estimate: bool = False
    max_latency_s: float = 0.08
    estimate_steps: int = 50

    _KEYS = ("obs_latency_s", "action_latency_s", "estimate", "max_latency_s", "estimate_steps")

    @classmethod
    def load(cls, value: Mapping[str, Any] | None) -> LatencyCompensation | None:
        if not value:
            return None
        extra = sorted(set(value) - {*cls._KEYS, "source"})
        if extra:
            raise ValueError(
                f"latency_compensation: unknown keys {extra}; allowed: {', '.join(cls._KEYS)}, "
                "source"
            )
        compensation = cls(
            float(value.get("obs_latency_s", 0.0)),
            float(value.get("action_latency_s", 0.0)),
            bool(value.get("estimate", False)),
            float(value.get("max_latency_s", cls.max_latency_s)),
            int(value.get("estimate_steps", cls.estimate_steps)),
        )
        numbers = (compensation.obs_latency_s, compensation.action_latency_s,
                   compensation.max_latency_s)  # fmt: skip
        if not all(np.isfinite(numbers)) or min(numbers) < 0:
            raise ValueError("latency_compensation: latencies must be finite and >= 0 s")
        if compensation.estimate_steps < 1:
            raise ValueError("latency_compensation: estimate_steps must be >= 1")
        return compensation

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "obs_latency_s": self.obs_latency_s,
            "action_latency_s": self.action_latency_s,
        }
        if self.estimate:
            out.update(estimate=True, max_latency_s=self.max_latency_s,
                       estimate_steps=self.estimate_steps)  # fmt: skip
        return out


class DelayEstimator:
    """The total loop delay of each row's episode, in substeps, from its stream.

    For every candidate delay ``d`` in ``0..max_delay`` the nominal model predicts
    each observation from the previous one and the commands (the command of step
    ``t - k`` acting on the substeps it reaches under ``d``); the estimate is the
    ``d`` of least scaled squared error so far, switched to only when it beats the
    current estimate by :attr:`MARGIN` (a likelihood-ratio margin: transitions that
    cannot tell delays apart, like the first, where every delay holds the first
    command, leave the prior in place). Steps whose previous observation does not
    determine the state (a clipped velocity) are skipped.
    """

    MARGIN = 4.0  # scaled squared error by which a delay must beat the current one

    def __init__(self, task: str, max_latency_s: float, steps: int, prior: int) -> None:
        from sim2real.remedies.monitor_model import ReferenceModel, resolve_task
        from sim2real.skews.sensing import per_dimension
        from sim2real.tasks import get_task

        self.reference = ReferenceModel(resolve_task(task), fields=())
        self.max_delay = round(max_latency_s / self.reference.substep_s)
        self.steps = steps
        self.prior = min(prior, self.max_delay)
        presets = get_task(task).presets
        noise = presets["default"].sensing.noise_std if "default" in presets else 0.0
        scale = np.asarray(per_dimension(noise, self.reference.obs_dim, "noise"), dtype=float)
        self._weight = 1.0 / np.maximum(scale, 1e-3) ** 2
        self._ssr: list[np.ndarray] = []
        self._used: list[int] = []
        self._current: list[int] = []

    def reset(self, row: int) -> None:
        while len(self._ssr) <= row:
            self._ssr.append(np.zeros(self.max_delay + 1))
            self._used.append(0)
            self._current.append(self.prior)
        self._ssr[row][:] = 0.0
        self._used[row] = 0
        self._current[row] = self.prior

    def delay(self, row: int) -> int:
        """The current estimate (substeps): the prior until the stream says otherwise."""
        return self._current[row]

    def update(self, row: int, before: np.ndarray, after: np.ndarray, sent: list) -> None:
        """Score every delay on one transition: ``before`` -> ``after`` under the
        commands ``sent`` (newest last; the newest was sent at ``before``)."""
        if self._used[row] >= self.steps or not self.reference.exact(before):
            return
        reference, ssr = self.reference, self._ssr[row]
        command, previous = sent[-1], sent[:-1] or None
        for d in range(self.max_delay + 1):
            predicted = reference.predict(before, command, previous, d)
            ssr[d] += float(np.dot((after - predicted) ** 2, self._weight))
        self._used[row] += 1
        best = int(np.argmin(ssr))
        if ssr[self._current[row]] - ssr[best] > self.MARGIN:
            self._current[row] = best


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
        self.estimator: DelayEstimator | None = None
        longest = self._obs_substeps + self._action_substeps
        if compensation.estimate:
            self.estimator = DelayEstimator(
                task, compensation.max_latency_s, compensation.estimate_steps, longest
            )
            longest = max(longest, self.estimator.max_delay)
        self._depth = longest // self._frame_skip + 2
        self._commands: list[list[np.ndarray]] = []
        self._last_obs: list[np.ndarray | None] = []

    def delays(self, row: int) -> tuple[int, int]:
        """Row ``row``'s compensated (observation, action) delays in substeps; an
        estimate is a total, compensated as observation delay (equivalent, see above)."""
        if self.estimator is None:
            return self._obs_substeps, self._action_substeps
        return self.estimator.delay(row), 0

    def predict(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        import mujoco

        obs = np.asarray(obs, dtype=np.float64)
        count = len(obs)
        while len(self._commands) < count:
            self._commands.append([])
            self._last_obs.append(None)
            if self.estimator is not None:
                self.estimator.reset(len(self._commands) - 1)
        starts = np.zeros(count, dtype=bool)
        if episode_start is not None:
            starts |= np.asarray(episode_start, dtype=bool).reshape(count)
        qpos, qvel = self._invert(obs)
        model, data, fs = self._model, self._data, self._frame_skip
        predicted = np.empty_like(obs)
        for row in range(count):
            if starts[row]:
                self._commands[row] = []
                self._last_obs[row] = None
                if self.estimator is not None:
                    self.estimator.reset(row)
            sent = self._commands[row]
            if self.estimator is not None and sent and self._last_obs[row] is not None:
                self.estimator.update(row, self._last_obs[row], obs[row], sent)
            self._last_obs[row] = obs[row].copy()
            obs_substeps, action_substeps = self.delays(row)
            data.qpos[:], data.qvel[:] = qpos[row], qvel[row]
            data.act[:] = 0.0
            mujoco.mj_forward(model, data)
            # Substep s (0 = now) carries the command sent floor((s - L_a) / frame_skip)
            # control steps ago (-1 the last one); before the first, nothing acts. Runs of
            # one command are stepped in one call.
            s = -obs_substeps
            while s < action_substeps:
                back = (s - action_substeps) // fs
                run = min(action_substeps, s + fs - (s - action_substeps) % fs) - s
                data.ctrl[:] = sent[max(back, -len(sent))] if sent else 0.0
                mujoco.mj_step(model, data, nstep=run)
                s += run
            predicted[row] = self._env._get_obs()
        return predicted

    def record(self, actions: np.ndarray) -> None:
        for row, action in enumerate(np.asarray(actions, dtype=np.float64)):
            sent = self._commands[row]
            sent.append(action.copy())
            del sent[: -self._depth]
