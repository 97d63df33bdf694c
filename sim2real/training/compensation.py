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

With a ``filter`` (:class:`StateFilter`) the predictor is also the robot's state
observer: each reading is fused with the model's one-step prediction from the last
estimate (a steady-state Kalman gain per dimension, from the sensors' noise and the
model's one-step error), and a reading that repeats the last one exactly while the
state must have moved (a dropped packet) is replaced by the prediction.

:class:`LatencyCompensation` is what a policy's ``metadata.json`` records
(``latency_compensation``); :class:`LatencyPredictor` does the prediction for a
batch of sub-envs, one row each, and the evaluator applies it before the policy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
        strengths: with ``estimate``, candidate motor strengths (x the nominal gear) that
            the estimate scores jointly with the delay; the prediction then runs on the
            best one. A Smith predictor whose model drives the robot harder than the robot
            moves mispredicts every command in flight: on InvertedDoublePendulum, a robot
            with 0.8 strength and 1.2x mass under 60 ms (``harsh`` without its sensing)
            falls within 25 steps on the nominal model and balances on the true one
            (docs/robustify.md). Uniformly heavier links are the same as weaker motors
            to a pendulum (gravity and inertia scale together), so the candidates cover
            ``strength / mass``. Empty: the nominal model only.
    """

    obs_latency_s: float = 0.0
    action_latency_s: float = 0.0
    estimate: bool = False
    max_latency_s: float = 0.08
    estimate_steps: int = 50
    filter: StateFilter | None = None
    strengths: tuple[float, ...] = ()

    _KEYS = (
        "obs_latency_s",
        "action_latency_s",
        "estimate",
        "max_latency_s",
        "estimate_steps",
        "filter",
        "strengths",
    )

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
            StateFilter.load(value.get("filter")),
            tuple(float(v) for v in np.ravel(value.get("strengths", ()))),
        )
        numbers = (compensation.obs_latency_s, compensation.action_latency_s,
                   compensation.max_latency_s)  # fmt: skip
        if not all(np.isfinite(numbers)) or min(numbers) < 0:
            raise ValueError("latency_compensation: latencies must be finite and >= 0 s")
        if compensation.estimate_steps < 1:
            raise ValueError("latency_compensation: estimate_steps must be >= 1")
        strengths = compensation.strengths
        if strengths and not (all(np.isfinite(strengths)) and min(strengths) > 0):
            raise ValueError("latency_compensation: strengths must be finite and > 0")
        if strengths and not compensation.estimate:
            raise ValueError("latency_compensation: strengths are estimated: they need estimate")
        return compensation

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "obs_latency_s": self.obs_latency_s,
            "action_latency_s": self.action_latency_s,
        }
        if self.estimate:
            out.update(estimate=True, max_latency_s=self.max_latency_s,
                       estimate_steps=self.estimate_steps)  # fmt: skip
        if self.filter is not None:
            out["filter"] = self.filter.to_dict()
        if self.strengths:
            out["strengths"] = list(self.strengths)
        return out


@dataclass(frozen=True)
class StateFilter:
    """A per-dimension steady-state Kalman filter on the readings, around the model.

    Attributes:
        noise_std: the sensors' noise per observation dimension, in each reading's
            units (a datasheet or the calibration remedy gives it).
        process_std: the nominal model's one-step prediction error per dimension on
            the robot (what the randomized dynamics make it; ``compensate_policy.py
            --filter`` measures it).
    """

    noise_std: tuple[float, ...]
    process_std: tuple[float, ...]

    MIN_GAIN = 0.05  # never trust the model alone: a dimension the model predicts perfectly
    # in the measurement still drifts on a robot it does not describe

    @classmethod
    def load(cls, value: Mapping[str, Any] | None) -> StateFilter | None:
        if not value:
            return None
        extra = sorted(set(value) - {"noise_std", "process_std"})
        if extra:
            raise ValueError(
                f"latency_compensation.filter: unknown keys {extra}; allowed: noise_std, "
                "process_std"
            )
        noise = tuple(float(v) for v in np.ravel(value.get("noise_std", ())))
        process = tuple(float(v) for v in np.ravel(value.get("process_std", ())))
        if not noise or len(noise) != len(process):
            raise ValueError(
                "latency_compensation.filter: noise_std and process_std need one value per "
                f"observation dimension (got {len(noise)} and {len(process)})"
            )
        if not (np.all(np.isfinite(noise + process)) and min(noise + process) >= 0):
            raise ValueError("latency_compensation.filter: values must be finite and >= 0")
        return cls(noise, process)

    def to_dict(self) -> dict[str, list[float]]:
        return {"noise_std": list(self.noise_std), "process_std": list(self.process_std)}

    def gain(self) -> np.ndarray:
        """Per dimension, the weight of a new reading against the prediction."""
        return steady_state_gain(np.asarray(self.process_std), np.asarray(self.noise_std),
                                 self.MIN_GAIN)  # fmt: skip


def steady_state_gain(
    process_std: np.ndarray, noise_std: np.ndarray, min_gain: float = 0.0
) -> np.ndarray:
    """The steady-state Kalman gain of a random walk (one-step error ``process_std``)
    seen through noise ``noise_std``, per dimension: ``K = P / (P + r)`` with the prior
    variance ``P = (q + sqrt(q^2 + 4 q r)) / 2`` (``q``, ``r`` the variances). A
    noiseless dimension gets 1 (the reading is the state).

    >>> steady_state_gain(np.array([1.0, 0.1, 0.5]), np.array([0.0, 1.0, 0.5])).round(3)
    array([1.   , 0.095, 0.618])
    """
    q, r = np.square(process_std), np.square(noise_std)
    prior = (q + np.sqrt(q * q + 4.0 * q * r)) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(r > 0, prior / (prior + r), 1.0)
    return np.clip(np.nan_to_num(gain, nan=1.0), min_gain, 1.0)


class DelayEstimator:
    """The loop delays of each row's episode, in substeps, and the robot's motor strength,
    from its stream.

    Every transition ``obs[t-1] -> obs[t]`` is predicted on the nominal model under
    each candidate delay (and each candidate strength: the model's gear scaled), and
    its error (squared, each dimension scaled by the task's ``default`` sensor noise)
    is summed per candidate: per split ``(L_o, L_a)`` while some candidate's readings
    are not yet fresh (the first ``max_delay`` substeps), per total once they all
    are. The score of a total is its best split's start error plus its fresh error;
    the estimate moves to the best total only when it beats the current one by
    :attr:`MARGIN` (a likelihood-ratio margin: transitions that cannot tell delays
    apart leave it in place). Delays and strengths are scored as pairs: a weaker
    robot also looks like a later one. It uses the first ``steps``
    fresh transitions of an episode, then holds. Transitions from an observation
    that does not determine the state (a clipped velocity) are skipped.
    """

    MARGIN = 4.0  # scaled squared error by which a total must beat the current one

    def __init__(
        self,
        task: str,
        obs_dim: int,
        max_delay: int,
        steps: int,
        prior: tuple,
        strengths: tuple[float, ...] = (),
    ) -> None:
        from sim2real.skews.sensing import per_dimension
        from sim2real.tasks import get_task

        self.max_delay = max_delay
        self.steps = steps
        self.prior = prior if sum(prior) <= max_delay else (max_delay, 0)
        self.strengths = tuple(sorted({1.0, *strengths}))  # the nominal model is the prior
        self._nominal = self.strengths.index(1.0)
        presets = get_task(task).presets
        noise = presets["default"].sensing.noise_std if "default" in presets else 0.0
        scale = np.asarray(per_dimension(noise, obs_dim, "noise"), dtype=float)
        self.weight = 1.0 / np.maximum(scale, 1e-3) ** 2
        n = max_delay + 1
        obs_lag, action_lag = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        valid = obs_lag + action_lag <= max_delay
        self.pairs = list(zip(obs_lag[valid].tolist(), action_lag[valid].tolist(), strict=True))
        self._start: list[np.ndarray] = []  # per strength and split [s, L_o, L_a]; inf if invalid
        self._fresh: list[np.ndarray] = []  # per strength and total [s, d]
        self._used: list[int] = []
        self._current: list[tuple[int, int]] = []
        self._strength: list[int] = []  # index into strengths
        self._invalid = ~valid
        # Per total d, the splits on its anti-diagonal L_o + L_a = d.
        self._diagonals = [(np.arange(d, -1, -1), np.arange(d + 1)) for d in range(n)]

    def reset(self, row: int) -> None:
        n, count = self.max_delay + 1, len(self.strengths)
        while len(self._used) <= row:
            self._start.append(np.zeros((count, n, n)))
            self._fresh.append(np.zeros((count, n)))
            self._used.append(0)
            self._current.append(self.prior)
            self._strength.append(self._nominal)
        self._start[row][:] = 0.0
        self._start[row][:, self._invalid] = np.inf
        self._fresh[row][:] = 0.0
        self._used[row] = 0
        self._current[row] = self.prior
        self._strength[row] = self._nominal

    def split(self, row: int) -> tuple[int, int]:
        """The current estimate ``(L_o, L_a)`` in substeps (the prior until the stream
        says otherwise; past the start only its total is identified)."""
        return self._current[row]

    def strength(self, row: int) -> float:
        """The current estimate of the robot's motor strength (x nominal gear)."""
        return self.strengths[self._strength[row]]

    def wants(self, row: int) -> bool:
        return self._used[row] < self.steps

    def add_start(self, row: int, errors: np.ndarray) -> None:
        """One start transition's errors per strength and split (``errors[s, L_o, L_a]``)."""
        self._start[row] += errors
        self._decide(row)

    def add_fresh(self, row: int, errors: np.ndarray) -> None:
        """One fresh transition's errors per strength and total delay (``errors[s, d]``)."""
        self._fresh[row] += errors
        self._used[row] += 1
        self._decide(row)

    def _decide(self, row: int) -> None:
        start = self._start[row]
        # Per strength and total d: the best split's start error (on d's anti-diagonal).
        per_total = np.stack([start[:, lo, la].min(axis=1) for lo, la in self._diagonals], 1)
        score = per_total + self._fresh[row]
        strength, total = np.unravel_index(int(np.argmin(score)), score.shape)
        strength, total = int(strength), int(total)
        current = (self._strength[row], sum(self._current[row]))
        if score[current] - score[strength, total] > self.MARGIN or (
            (strength, total) == current
            and self._current[row] != self._best_split(row, strength, total)
        ):
            self._current[row] = self._best_split(row, strength, total)
            self._strength[row] = strength

    def _best_split(self, row: int, strength: int, total: int) -> tuple[int, int]:
        lags = np.arange(total + 1)
        action = int(lags[np.argmin(self._start[row][strength, total - lags, lags])])
        return total - action, action


class LatencyPredictor:
    """Predicted observations for rows of sub-envs of a built-in ``task``.

    Call :meth:`predict` with each observation batch (and the episode starts), then
    :meth:`record` with the commands sent. Row ``i`` is always the same sub-env.
    """

    CLIP_MARGIN = 0.5  # velocity units: the filter passes readings this close to the clip

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
                compensation.strengths,
            )
        self._nominal_gear = self._model.actuator_gear.copy()
        self._gear_scale = 1.0  # the strength the model's gear is set to now
        self._commands: list[list[np.ndarray]] = []  # this episode's, from its start
        self._last_obs: list[np.ndarray | None] = []  # the last raw reading
        self._gain = None if compensation.filter is None else compensation.filter.gain()
        if self._gain is not None and len(self._gain) != env.observation_space.shape[0]:
            raise ValueError(
                f"latency_compensation.filter: {len(self._gain)} values for {task}'s "
                f"{env.observation_space.shape[0]} observation dimensions"
            )
        self._estimate_obs: list[np.ndarray | None] = []  # the filter's last state estimate
        self._dropped: list[bool] = []  # whether the last raw reading was a dropped packet

    def split(self, row: int) -> tuple[int, int]:
        """Row ``row``'s compensated ``(L_o, L_a)``, in substeps."""
        return self._given if self.estimator is None else self.estimator.split(row)

    def strength(self, row: int) -> float:
        """Row ``row``'s motor strength in the model (x nominal gear; 1 unless estimated)."""
        return 1.0 if self.estimator is None else self.estimator.strength(row)

    def delay(self, row: int) -> int:
        """Row ``row``'s compensated total delay (observation + action), in substeps."""
        return sum(self.split(row))

    def predict(
        self,
        obs: np.ndarray,
        episode_start: np.ndarray | None = None,
        active: np.ndarray | None = None,
    ) -> np.ndarray:
        """The observation each row's next command will meet. Rows where ``active`` is
        False (an engine's rows that hold no episode of this policy) pass through
        untouched and keep their state."""
        obs = np.asarray(obs, dtype=np.float64)
        count = len(obs)
        while len(self._commands) < count:
            self._commands.append([])
            self._last_obs.append(None)
            self._estimate_obs.append(None)
            self._dropped.append(False)
            if self.estimator is not None:
                self.estimator.reset(len(self._commands) - 1)
        starts = np.zeros(count, dtype=bool)
        if episode_start is not None:
            starts |= np.asarray(episode_start, dtype=bool).reshape(count)
        fs = self._frame_skip
        predicted = obs.copy()
        for row in range(count) if active is None else np.flatnonzero(active):
            if starts[row]:
                self._commands[row] = []
                self._last_obs[row] = None
                self._dropped[row] = False
                if self.estimator is not None:
                    self.estimator.reset(row)
            sent, reading = self._commands[row], obs[row]
            dropped = False
            if self._gain is not None and sent:
                reading, dropped = self._filter(row, obs[row], sent)
            if (self.estimator is not None and sent and self.estimator.wants(row)
                    and not (dropped or self._dropped[row])):  # fmt: skip
                self._estimate(row, self._last_obs[row], obs[row], sent)
            self._last_obs[row], self._dropped[row] = obs[row].copy(), dropped
            self._estimate_obs[row] = reading.copy()
            if not sent:  # nothing sent yet: the next command acts from the start
                predicted[row] = reading
                continue
            obs_lag, action_lag = self.split(row)
            now = len(sent) * fs  # the state the next command meets: at now + L_a
            predicted[row] = self._roll(reading, max(now - obs_lag, 0), now + action_lag,
                                        sent, action_lag, self.strength(row))  # fmt: skip
        return predicted

    def _filter(self, row: int, raw: np.ndarray, sent: list) -> tuple[np.ndarray, bool]:
        """The state estimate at reading ``raw`` (the model's one-step prediction from
        the last estimate, corrected by the reading) and whether a dimension of ``raw``
        was dropped (it repeats the last reading to the bit where the state must have
        moved: the prediction stands in for it)."""
        last = self._estimate_obs[row]
        if self._near_clip(last) or self._near_clip(raw):
            return raw, False  # a velocity (nearly) on its clip: no state to predict from
        obs_lag, action_lag = self.split(row)
        fs, now = self._frame_skip, len(sent) * self._frame_skip
        begin, end = self._reading_interval(now, obs_lag)
        prior = self._roll(last, begin, end, sent, action_lag, self.strength(row))
        # Past the estimator's start window every candidate delay says the state moved.
        settled = self.estimator is None or now - fs >= self.estimator.max_delay
        gain = self._gain
        dropped = False
        if settled and end > begin:
            repeated = (raw == self._last_obs[row]) & (prior != last)
            if repeated.any():
                gain, dropped = np.where(repeated, 0.0, gain), True
        return prior + gain * (raw - prior), dropped

    def _near_clip(self, obs: np.ndarray) -> bool:
        """Whether a velocity of ``obs`` lies within :attr:`CLIP_MARGIN` of the task's
        velocity clip (a noisy reading of a clipped velocity can sit just inside it)."""
        from sim2real.remedies.state import VELOCITY_CLIP

        if not self._invert.clipped_velocity:
            return False
        return bool(np.max(np.abs(self._invert(obs)[1])) >= VELOCITY_CLIP - self.CLIP_MARGIN)

    def record(self, actions: np.ndarray, active: np.ndarray | None = None) -> None:
        for row, action in enumerate(np.asarray(actions, dtype=np.float64)):
            if active is None or active[row]:
                self._commands[row].append(action.copy())

    def _estimate(self, row: int, before: np.ndarray, after: np.ndarray, sent: list) -> None:
        """Score the candidate delays (and strengths) on the transition ``before`` ->
        ``after``."""
        if not self._invert.exact(before):
            return
        estimator, fs = self.estimator, self._frame_skip
        now, weight, n = len(sent) * fs, estimator.weight, estimator.max_delay + 1
        strengths = estimator.strengths
        if now - fs >= estimator.max_delay:  # fresh under every delay: the total decides
            errors = np.empty((len(strengths), n))
            for s, strength in enumerate(strengths):
                for d in range(n):
                    begin, end = self._reading_interval(now, d)
                    guess = self._roll(before, begin, end, sent, 0, strength)
                    errors[s, d] = float(np.dot((after - guess) ** 2, weight))
            estimator.add_fresh(row, errors)
            return
        # Splits that replay the same substeps with the same commands give the same guess.
        cells = []
        for obs_lag, action_lag in estimator.pairs:
            begin, end = self._reading_interval(now, obs_lag)
            key = (begin, end, *self._commands_on(begin, end, action_lag))
            cells.append((obs_lag, action_lag, begin, end, key))
        errors = np.full((len(strengths), n, n), np.inf)
        for s, strength in enumerate(strengths):
            seen: dict[tuple, float] = {}
            for obs_lag, action_lag, begin, end, key in cells:
                if key not in seen:
                    guess = self._roll(before, begin, end, sent, action_lag, strength)
                    seen[key] = float(np.dot((after - guess) ** 2, weight))
                errors[s, obs_lag, action_lag] = seen[key]
        estimator.add_start(row, errors)

    def _set_strength(self, strength: float) -> None:
        """Scale the model's gear to ``strength`` x nominal (as ``dynamics.actuator_strength``
        does on a robot). The quantity ``mj_setConst`` derives from a gear
        (``actuator_acc0``) serves muscles and servo damping only, not these motors."""
        if strength != self._gear_scale:
            np.multiply(self._nominal_gear, strength, out=self._model.actuator_gear)
            self._gear_scale = strength

    def _reading_interval(self, now: int, obs_lag: int) -> tuple[int, int]:
        """The substeps between the states that the last two readings show, when the
        newer one arrives at substep ``now`` ``obs_lag`` substeps old (a robot repeats its
        initial reading until the first fresh one)."""
        return max(now - self._frame_skip - obs_lag, 0), max(now - obs_lag, 0)

    def _commands_on(self, begin: int, end: int, action_lag: int) -> list[int]:
        fs = self._frame_skip
        return [max((substep - action_lag) // fs, 0) for substep in range(begin, end)]

    def _roll(
        self,
        obs: np.ndarray,
        begin: int,
        end: int,
        sent: list,
        action_lag: int,
        strength: float = 1.0,
    ) -> np.ndarray:
        """The observation after stepping the model (its motors at ``strength`` x nominal)
        from the state ``obs`` implies over substeps ``[begin, end)``, where substep ``s``
        carries command ``max((s - action_lag) // frame_skip, 0)``."""
        import mujoco

        self._set_strength(strength)
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


def policy_transitions(
    task: str,
    policy: Any,
    randomization: Mapping[str, Any],
    episodes: int = 20,
    seed: int = 0,
    max_steps: int = 300,
) -> Iterator[tuple[np.ndarray, list[np.ndarray], np.ndarray]]:
    """``(obs, sent, after)`` for each step of ``episodes`` driven by ``policy`` on ``task``
    under ``randomization``'s dynamics and actuation (its sensing and timing dropped: the
    readings are the true states), where ``sent`` holds the episode's commands so far (the
    same list, grown after each yield) and ``obs`` determines the state
    (:meth:`StateFromObs.exact`)."""
    import sim2real
    from sim2real.evaluation.policy import resolve_policies
    from sim2real.remedies.state import state_from_obs

    spec = {key: randomization[key] for key in ("dynamics", "actuation") if key in randomization}
    env = sim2real.make(task, randomization=spec)
    model = env.unwrapped.model
    invert = state_from_obs(task, model.nq, model.nv)
    act = resolve_policies(policy)[0].build()
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            sent: list[np.ndarray] = []
            for step in range(max_steps):
                action = np.asarray(act(obs[None], episode_start=np.array([step == 0])))[0]
                sent.append(np.asarray(action, dtype=np.float64))
                after, _, terminated, truncated, _ = env.step(action)
                if invert.exact(obs):
                    yield np.asarray(obs, float), sent, np.asarray(after, float)
                obs = after
                if terminated or truncated:
                    break
    finally:
        env.close()


def measure_process_std(
    task: str,
    policy: Any,
    randomization: Mapping[str, Any],
    episodes: int = 20,
    seed: int = 0,
    max_steps: int = 300,
) -> np.ndarray:
    """The nominal model's one-step prediction error per observation dimension, RMS over
    ``episodes`` driven by ``policy`` on ``task`` under ``randomization``'s dynamics and
    actuation (:func:`policy_transitions`).

    This is a :class:`StateFilter`'s ``process_std``: how far a step of the robot departs
    from a step of the model, over the robots the policy was trained for.
    """
    model = LatencyPredictor(task, LatencyCompensation())
    fs, squares, count = model._frame_skip, 0.0, 0
    for obs, sent, after in policy_transitions(task, policy, randomization, episodes, seed,
                                               max_steps):  # fmt: skip
        begin, end = model._reading_interval(len(sent) * fs, 0)
        squares = squares + (after - model._roll(obs, begin, end, sent, 0)) ** 2
        count += 1
    return np.sqrt(squares / max(count, 1))
