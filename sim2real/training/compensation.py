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

Timing, in physics substeps from the episode start (as :mod:`sim2real.skews.timing`
realizes it): observation ``t`` shows the state at ``max(t * fs - L_o, 0)`` (a robot
repeats its initial reading until the first fresh one), and command ``k`` acts on
``[k * fs + L_a, (k + 1) * fs + L_a)``, the first one held before it arrives.

The delays can be given or **estimated online** (``estimate=True``,
:class:`DelayEstimator`): the same policy then runs undelayed in sim and compensated
on a robot of unknown latency. Once readings are fresh, a loop delayed ``L_o`` then
``L_a`` is, input to output, the loop delayed ``L_o + L_a`` then 0 (shift the
plant's clock), so only the total is identifiable there, and it is all the
predictor needs; the split shows at the episode start alone, where the estimator
scores every split.

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
    """The loop delays of each row's episode, in substeps, from its stream.

    Every transition ``obs[t-1] -> obs[t]`` is predicted on the nominal model under
    each candidate delay, and its error (squared, each dimension scaled by the task's
    ``default`` sensor noise) is summed per candidate: per split ``(L_o, L_a)`` while
    some candidate's readings are not yet fresh (the first ``max_delay`` substeps),
    per total once they all are. The score of a total is its best split's start
    error plus its fresh error; the estimate moves to the best total only when it
    beats the current one by :attr:`MARGIN` (a likelihood-ratio margin: transitions
    that cannot tell delays apart leave it in place). It uses the first ``steps``
    fresh transitions of an episode, then holds. Transitions from an observation
    that does not determine the state (a clipped velocity) are skipped.
    """

    MARGIN = 4.0  # scaled squared error by which a total must beat the current one

    def __init__(self, task: str, obs_dim: int, max_delay: int, steps: int, prior: tuple) -> None:
        from sim2real.skews.sensing import per_dimension
        from sim2real.tasks import get_task

        self.max_delay = max_delay
        self.steps = steps
        self.prior = prior if sum(prior) <= max_delay else (max_delay, 0)
        presets = get_task(task).presets
        noise = presets["default"].sensing.noise_std if "default" in presets else 0.0
        scale = np.asarray(per_dimension(noise, obs_dim, "noise"), dtype=float)
        self.weight = 1.0 / np.maximum(scale, 1e-3) ** 2
        n = max_delay + 1
        obs_lag, action_lag = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        valid = obs_lag + action_lag <= max_delay
        self.pairs = list(zip(obs_lag[valid].tolist(), action_lag[valid].tolist(), strict=True))
        self._start: list[np.ndarray] = []  # per split, indexed [L_o, L_a]; inf where invalid
        self._fresh: list[np.ndarray] = []  # per total
        self._used: list[int] = []
        self._current: list[tuple[int, int]] = []
        self._invalid = ~valid

    def reset(self, row: int) -> None:
        n = self.max_delay + 1
        while len(self._used) <= row:
            self._start.append(np.zeros((n, n)))
            self._fresh.append(np.zeros(n))
            self._used.append(0)
            self._current.append(self.prior)
        self._start[row][:] = 0.0
        self._start[row][self._invalid] = np.inf
        self._fresh[row][:] = 0.0
        self._used[row] = 0
        self._current[row] = self.prior

    def split(self, row: int) -> tuple[int, int]:
        """The current estimate ``(L_o, L_a)`` in substeps (the prior until the stream
        says otherwise; past the start only its total is identified)."""
        return self._current[row]

    def wants(self, row: int) -> bool:
        return self._used[row] < self.steps

    def add_start(self, row: int, errors: np.ndarray) -> None:
        """One start transition's errors per split (``errors[L_o, L_a]``)."""
        self._start[row] += errors
        self._decide(row)

    def add_fresh(self, row: int, errors: np.ndarray) -> None:
        """One fresh transition's errors per total delay."""
        self._fresh[row] += errors
        self._used[row] += 1
        self._decide(row)

    def _decide(self, row: int) -> None:
        start, n = self._start[row], self.max_delay + 1
        # Per total d: the best split's start error (the anti-diagonal L_o + L_a = d).
        flipped = start[:, ::-1]
        per_total = np.array([np.min(np.diagonal(flipped, n - 1 - d)) for d in range(n)])
        score = per_total + self._fresh[row]
        best = int(np.argmin(score))
        current = sum(self._current[row])
        if score[current] - score[best] > self.MARGIN or (
            best == current and self._current[row] != self._best_split(row, best)
        ):
            self._current[row] = self._best_split(row, best)

    def _best_split(self, row: int, total: int) -> tuple[int, int]:
        lags = np.arange(total + 1)
        action = int(lags[np.argmin(self._start[row][total - lags, lags])])
        return total - action, action


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
        self._given = (
            round(compensation.obs_latency_s / substep),
            round(compensation.action_latency_s / substep),
        )
        self._invert = state_from_obs(task, self._model.nq, self._model.nv)
        self.estimator: DelayEstimator | None = None
        if compensation.estimate:
            self.estimator = DelayEstimator(
                task,
                int(env.observation_space.shape[0]),
                round(compensation.max_latency_s / substep),
                compensation.estimate_steps,
                self._given,
            )
        self._commands: list[list[np.ndarray]] = []  # this episode's, from its start
        self._last_obs: list[np.ndarray | None] = []

    def split(self, row: int) -> tuple[int, int]:
        """Row ``row``'s compensated ``(L_o, L_a)``, in substeps."""
        return self._given if self.estimator is None else self.estimator.split(row)

    def delay(self, row: int) -> int:
        """Row ``row``'s compensated total delay (observation + action), in substeps."""
        return sum(self.split(row))

    def predict(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
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
        fs = self._frame_skip
        predicted = np.empty_like(obs)
        for row in range(count):
            if starts[row]:
                self._commands[row] = []
                self._last_obs[row] = None
                if self.estimator is not None:
                    self.estimator.reset(row)
            sent = self._commands[row]
            if self.estimator is not None and sent and self.estimator.wants(row):
                self._estimate(row, self._last_obs[row], obs[row], sent)
            self._last_obs[row] = obs[row].copy()
            if not sent:  # nothing sent yet: the next command acts from the start
                predicted[row] = obs[row]
                continue
            obs_lag, action_lag = self.split(row)
            now = len(sent) * fs  # the state the next command meets: at now + L_a
            predicted[row] = self._roll(obs[row], max(now - obs_lag, 0), now + action_lag,
                                        sent, action_lag)  # fmt: skip
        return predicted

    def record(self, actions: np.ndarray) -> None:
        for row, action in enumerate(np.asarray(actions, dtype=np.float64)):
            self._commands[row].append(action.copy())

    def _estimate(self, row: int, before: np.ndarray, after: np.ndarray, sent: list) -> None:
        """Score the candidate delays on the transition ``before`` -> ``after``."""
        if not self._invert.exact(before):
            return
        estimator, fs = self.estimator, self._frame_skip
        now, weight, n = len(sent) * fs, estimator.weight, estimator.max_delay + 1
        if now - fs >= estimator.max_delay:  # fresh under every delay: the total decides
            errors = np.empty(n)
            for d in range(n):
                guess = self._roll(before, now - fs - d, now - d, sent, 0)
                errors[d] = float(np.dot((after - guess) ** 2, weight))
            estimator.add_fresh(row, errors)
            return
        errors = np.full((n, n), np.inf)
        seen: dict[tuple, float] = {}
        for obs_lag, action_lag in estimator.pairs:
            begin, end = max(now - fs - obs_lag, 0), max(now - obs_lag, 0)
            key = (begin, end, *self._commands_on(begin, end, action_lag))
            if key not in seen:
                guess = self._roll(before, begin, end, sent, action_lag)
                seen[key] = float(np.dot((after - guess) ** 2, weight))
            errors[obs_lag, action_lag] = seen[key]
        estimator.add_start(row, errors)

    def _commands_on(self, begin: int, end: int, action_lag: int) -> list[int]:
        fs = self._frame_skip
        return [max((substep - action_lag) // fs, 0) for substep in range(begin, end)]

    def _roll(
        self, obs: np.ndarray, begin: int, end: int, sent: list, action_lag: int
    ) -> np.ndarray:
        """The observation after stepping the nominal model from the state ``obs``
        implies over substeps ``[begin, end)``, where substep ``s`` carries command
        ``max((s - action_lag) // frame_skip, 0)``."""
        import mujoco

        if end <= begin:
            return obs.copy()
        model, data, fs = self._model, self._data, self._frame_skip
        data.qpos[:], data.qvel[:] = self._invert(obs)
        data.act[:] = 0.0
        mujoco.mj_forward(model, data)
        substep = begin
        while substep < end:
            k = max((substep - action_lag) // fs, 0)
            run = min(end, (k + 1) * fs + action_lag) - substep
            data.ctrl[:] = sent[k]
            mujoco.mj_step(model, data, nstep=run)
            substep += run
        return self._env._get_obs()
