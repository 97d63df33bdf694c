"""Monitor: decide at deployment that the world is not the simulator, and say which skew.

The reference model is the nominal simulator itself: at every control step it is
set to the state the previous observation implies, the command is applied, and
the prediction is compared with the observation that arrives (DESIGN.md
section 7). Steps whose state the observation does not determine (a velocity on
its clip) are skipped. The residuals, whitened by their per-dimension scale on
the sim variant, feed three kinds of sequential test:

* an omnibus CUSUM over the (capped) mean squared whitened residual, which
  catches anything that makes residuals large;
* for each dynamics field (and for a one-step command lag), a matched filter:
  the exponentially weighted sum of the residuals projected on that field's
  finite-difference sensitivity, normalized by its sim variance, over a short
  and a long window (a small skew accumulates there, while noise averages out);
* for a few total delays (half, one, two and three control steps), Page's
  CUSUM of the log-likelihood ratio of "delayed by d substeps" against "no
  delay".

Every test's threshold is calibrated on sim streams under the stated sensor
noise so that all together raise at most ``false_alarm_rate`` alarms per
control step. After an alarm, identification regresses the recent residuals on
each field's sensitivity (one field at a time) and profiles the total delay in
physics substeps. From commands and observations alone, observation and action
latency show as one total delay: the monitor reports the total and cannot say
how it splits.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sim2real.remedies import monitor_stats as stats
from sim2real.remedies.monitor_model import ReferenceModel, resolve_task

LATENCY = "timing.total_latency_s"  # the one latency the stream identifies (obs + action)
FORMAT = "sim2real.monitor/1"
CUSUM_DRIFT = 2.0  # omnibus CUSUM drift, x the sim mean increment: detects a doubled variance
CUSUM_CAP = 50.0  # cap on one step's omnibus increment: one outlier cannot alarm alone
WINDOWS = (25, 250)  # matched-filter windows in control steps (exponential forgetting)
CLIP = 4.0  # whitened residuals are clipped here when the stream is noisy (heavy tails)
EXACT_MARGIN = 4.0  # a velocity within this many noise sigmas of its clip is not exact


# ---------------------------------------------------------------------- results
@dataclass(frozen=True)
class Suspect:
    """One skew field and how much of the residuals it explains (a score in [0, 1])."""

    field: str
    score: float


@dataclass(frozen=True)
class Estimate:
    """The size of the leading suspect with a 95 % interval.

    For latency, ``value`` is the total delay (observation + action) in seconds,
    realized in ``substeps``; the stream cannot split it between the two.
    """

    field: str
    value: float
    low: float
    high: float
    substeps: int | None = None

    def __str__(self) -> str:
        text = f"{self.field} ~ {self.value:.4g} [{self.low:.4g}, {self.high:.4g}]"
        if self.substeps is not None:
            text += f" ({self.substeps} substeps; the obs/action split is not identifiable)"
        return text


@dataclass(frozen=True)
class MonitorState:
    """The monitor after one control step.

    Attributes:
        step: control steps seen this episode.
        alarm: whether an alarm has been raised this episode (it stays raised).
        statistic: the largest test statistic over its threshold (an alarm at >= 1).
        channel: the test that leads (``omnibus`` or ``<field>@<window>``).
        alarm_step: the step of the alarm, or None.
        suspects: every field with its score, highest first (empty before an alarm).
        estimate: the leading suspect's size, or None.
        used: whether this step's residual entered the tests (its state was exact).
    """

    step: int
    alarm: bool
    statistic: float
    channel: str
    alarm_step: int | None = None
    suspects: tuple[Suspect, ...] = ()
    estimate: Estimate | None = None
    used: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["estimate"] = None if self.estimate is None else {**asdict(self.estimate)}
        out["suspects"] = [asdict(s) for s in self.suspects]
        return out


@dataclass
class Calibration:
    """What preparation on the sim variant found (saved with :meth:`SkewMonitor.save`).

    Attributes:
        noise_std: the sensor noise the monitor was prepared for, per dimension.
        scale: the residual scale per observation dimension (obs units).
        thresholds: per test channel, its threshold.
        steps: calibration steps used (exact transitions).
        exact_share: share of steps whose state the observation determined.
        false_alarm_rate: the target, alarms per control step (all tests together).
        drift: the omnibus CUSUM's drift per step (twice its sim mean increment).
        variance_ratio: per matched-filter direction, the sim variance of the projected
            residual per unit of squared sensitivity.
        extrapolated: per channel, whether its threshold was extrapolated (tail fit).
    """

    noise_std: list[float]
    scale: list[float]
    thresholds: dict[str, float]
    steps: int
    exact_share: float
    false_alarm_rate: float
    drift: float = CUSUM_DRIFT
    variance_ratio: dict[str, float] = field(default_factory=dict)
    extrapolated: dict[str, bool] = field(default_factory=dict)


# ---------------------------------------------------------------------- the monitor
class SkewMonitor:
    """An online test that the world still matches the simulator (DESIGN.md section 7).

    Args:
        task_or_env: a built-in task name, or an env of one (sim or real variant).
        false_alarm_rate: alarms per control step allowed on the sim variant.
        sensor_noise_std: the stream's sensor noise in observation units: a number
            or one per dimension; default the task's ``default`` preset's; 0 for a
            noiseless stream.
        policy: drives the sim episodes of preparation (a callable
            ``obs_batch -> action_batch`` or anything ``resolve_policies`` takes);
            default uniform random commands. Prepare with the deployed policy: the
            false-alarm rate holds for the states it visits.
        prepare_steps: control steps of sim data for the thresholds (>= 50,000
            recommended: the noise statistics have heavy tails).
        matched: run the matched filters (four extra predictions per step); without
            them only the omnibus test runs (cheapest; blind to small dynamics skews).
        window: transitions kept for identification.
        max_delay_s: the largest total latency the delay profile considers, seconds.
        identify_every: after an alarm, re-identify every this many steps (0: only at
            the alarm).
        seed: seeds the preparation episodes.
        calibration: a previous preparation's result (skips preparation).
    """

    def __init__(
        self,
        task_or_env: str | gym.Env,
        false_alarm_rate: float = 1e-4,
        sensor_noise_std: float | list[float] | np.ndarray | None = None,
        *,
        policy: Any = None,
        prepare_steps: int = 50_000,
        matched: bool = True,
        window: int = 200,
        max_delay_s: float = 0.06,
        identify_every: int = 50,
        seed: int = 0,
        calibration: Calibration | None = None,
        progress: bool = False,
    ) -> None:
        if not 0 < false_alarm_rate < 1:
            raise ValueError(f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}")
        if prepare_steps < 1000:
            raise ValueError(f"prepare_steps must be >= 1000, got {prepare_steps}")
        resolved = resolve_task(task_or_env)
        self.task = resolved.task
        self.reference = ReferenceModel(resolved)
        self.obs_dim, self.act_dim = self.reference.obs_dim, self.reference.act_dim
        self.false_alarm_rate = float(false_alarm_rate)
        self.noise_std = _noise_std(sensor_noise_std, self.task, self.obs_dim)
        self.matched = bool(matched)
        self.window = int(window)
        self.max_delay = round(max_delay_s / self.reference.substep_s)
        self.identify_every = int(identify_every)
        self._noisy = bool(self.noise_std.any())
        self._margin = EXACT_MARGIN * float(self.noise_std.max())
        self._gammas = np.array([1.0 - 1.0 / w for w in WINDOWS])
        self.directions = (*self.reference.fields, LATENCY)  # the matched filters' directions
        fs = self.reference.frame_skip
        # Candidate total delays (substeps) of the delay CUSUMs: half, one, two, three steps.
        self.delays = tuple(
            d for d in sorted({max(1, fs // 2), fs, 2 * fs, 3 * fs}) if d <= self.max_delay
        )
        matched_channels = tuple(f"{f}@{w}" for f in self.directions for w in WINDOWS)
        delay_channels = tuple(f"{LATENCY}={d}" for d in self.delays)
        self.channels = (
            "omnibus", *((matched_channels + delay_channels) if self.matched else ())
        )  # fmt: skip
        if calibration is None:
            calibration = self._prepare(policy, int(prepare_steps), int(seed), progress)
        self.calibration = calibration
        self._scale = np.asarray(calibration.scale)
        self._omni_h = calibration.thresholds["omnibus"]
        self._drift = calibration.drift
        self._mf_h = np.array(
            [
                [calibration.thresholds.get(f"{f}@{w}", np.inf) for w in WINDOWS]
                for f in self.directions
            ]
        ).reshape(len(self.directions), len(WINDOWS))
        self._delay_h = np.array(
            [calibration.thresholds.get(f"{LATENCY}={d}", np.inf) for d in self.delays]
        )
        ratio = calibration.variance_ratio
        self._var_ratio = np.array([ratio.get(f, 1.0) for f in self.directions])[:, None]
        self.reset()

    # ------------------------------------------------------------------ online
    def reset(self) -> MonitorState:
        """Start a new episode: forget the stream, clear the alarm."""
        self._step = 0
        self._prev: tuple[np.ndarray, np.ndarray, bool] | None = None
        history = 2 * self.window + self.max_delay // self.reference.frame_skip + 2
        self._obs: deque[np.ndarray] = deque(maxlen=history)
        self._actions: deque[np.ndarray] = deque(maxlen=history)
        self._last_actions: deque[np.ndarray] = deque(
            maxlen=self.max_delay // self.reference.frame_skip + 2
        )
        self._buffer: deque[tuple[int, np.ndarray, np.ndarray | None]] = deque(maxlen=self.window)
        self._alarm_step: int | None = None
        self._last_identified: int | None = None
        self.rearm()
        self.state = MonitorState(0, False, 0.0, "omnibus")
        return self.state

    def rearm(self) -> None:
        """Zero every test statistic and clear the alarm, keeping the stream (after an
        alarm has been handled, or to count false alarms)."""
        self._cusum = 0.0
        self._num = np.zeros((len(self.directions), len(WINDOWS)))
        self._var = np.zeros_like(self._num)
        self._delay_cusum = np.zeros(len(self.delays))
        self._alarm_step = None
        self._suspects: tuple[Suspect, ...] = ()
        self._estimate: Estimate | None = None

    def update(self, obs: np.ndarray, action: np.ndarray) -> MonitorState:
        """Take the observation the policy saw and the command it sent; return the state.

        The residual tested at this call is that of the previous transition: the
        prediction from the previous observation and command against ``obs``.
        """
        obs = _checked(obs, self.obs_dim, "obs")
        action = _checked(action, self.act_dim, "action")
        used = False
        statistic, channel = self.state.statistic, self.state.channel
        if self._prev is not None and self._prev[2]:
            used = True
            statistic, channel = self._test(obs)
        self._step += 1
        self._obs.append(obs)
        self._actions.append(action)
        self._last_actions.append(action)
        self._prev = (obs, action, self.reference.exact(obs, self._margin))
        alarm = self._alarm_step is not None
        if not alarm and statistic >= 1.0:
            self._alarm_step, alarm = self._step, True
        if alarm and self._due():
            self.identify()
        self.state = MonitorState(
            self._step, alarm, statistic, channel, self._alarm_step,
            self._suspects, self._estimate, used,
        )  # fmt: skip
        return self.state

    def _due(self) -> bool:
        """Identify at the alarm, again whenever the evidence has doubled, then every
        ``identify_every`` steps."""
        last = self._last_identified
        if last is None or last < self._alarm_step:
            return True
        if self._step - self._alarm_step < self.window and self._step - last >= max(
            last - self._alarm_step, 1
        ):
            return self.identify_every > 0
        return self.identify_every > 0 and self._step - last >= self.identify_every

    def _test(self, obs: np.ndarray) -> tuple[float, str]:
        prev_obs, prev_action, _ = self._prev
        reference = self.reference
        nominal = reference.predict(prev_obs, prev_action)
        z = (obs - nominal) / self._scale
        if self._noisy:
            np.minimum(z, CLIP, out=z)
            np.maximum(z, -CLIP, out=z)
        x = min(float(np.dot(z, z)) / self.obs_dim, CUSUM_CAP)
        self._cusum = max(0.0, self._cusum + x - self._drift)
        statistic, channel = self._cusum / self._omni_h, "omnibus"
        j = None
        if self.matched:
            earlier = self._actions[-2] if len(self._actions) > 1 else prev_action
            j = reference.sensitivities(prev_obs, prev_action, nominal) / self._scale
            lag = (reference.predict(prev_obs, earlier, scratch=True) - nominal) / self._scale
            directions = np.vstack((j, lag))
            proj = directions @ z
            energy = np.einsum("fd,fd->f", directions, directions)
            self._num = self._gammas * self._num + proj[:, None]
            self._var = self._gammas**2 * self._var + self._var_ratio * energy[:, None]
            ratio = stats.self_normalized(self._num, self._var) / self._mf_h
            best = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
            if ratio[best] > statistic:
                statistic = float(ratio[best])
                channel = f"{self.directions[best[0]]}@{WINDOWS[best[1]]}"
            # Page's CUSUM of the log-likelihood ratio "total delay d" against "no delay".
            previous = list(self._last_actions)[:-1]
            base = float(np.dot(z, z))
            for i, delay in enumerate(self.delays):
                delayed = reference.predict(prev_obs, prev_action, previous, delay, scratch=True)
                z_d = self._whitened(obs - delayed)
                llr = 0.5 * (base - float(np.dot(z_d, z_d)))
                self._delay_cusum[i] = max(0.0, self._delay_cusum[i] + llr)
            ratio_d = self._delay_cusum / self._delay_h
            best_d = int(np.argmax(ratio_d))
            if ratio_d[best_d] > statistic:
                statistic = float(ratio_d[best_d])
                channel = f"{LATENCY}={self.delays[best_d]}"
        self._buffer.append((self._step, z, j))
        return statistic, channel

    # ------------------------------------------------------------------ identification
    def identify(self) -> tuple[tuple[Suspect, ...], Estimate | None]:
        """Regress the recent residuals on each field's sensitivity and profile the delay.

        Updates ``state.suspects`` and ``state.estimate`` from the next update on.
        """
        self._last_identified = self._step
        if not self._buffer:
            return self._suspects, self._estimate
        steps, z, j = self._recent()
        fits = {name: stats.fit_field(j[:, i], z) for i, name in enumerate(self.reference.fields)}
        latency = self._delay_profile(steps[-min(len(steps), 40) :])
        scores = {name: fit.explained for name, fit in fits.items()}
        # A linear fit around nominal misjudges a large skew: refine the two best fields
        # and score them by what their refined value explains.
        estimates = {
            name: Estimate(name, 1 + fit.delta, 1 + fit.delta - 1.96 * fit.se,
                           1 + fit.delta + 1.96 * fit.se)
            for name, fit in fits.items()
        }  # fmt: skip
        for name in sorted(fits, key=lambda n: -scores[n])[:2]:
            estimates[name], scores[name] = self._refine(name, fits[name], steps, z, j)
        scores[LATENCY] = latency[0]
        estimates[LATENCY] = latency[1]
        ranked = sorted(scores.items(), key=lambda item: -item[1])
        self._suspects = tuple(Suspect(name, float(score)) for name, score in ranked)
        self._estimate = estimates[ranked[0][0]]
        return self._suspects, self._estimate

    def _recent(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kept = [entry for entry in self._buffer if self._step - 1 - entry[0] < len(self._obs) - 1]
        steps = np.array([s for s, _, _ in kept])
        z = np.array([z for _, z, _ in kept])
        if self.matched:
            j = np.array([j for _, _, j in kept])
        else:
            j = np.array([self._sensitivity_at(s) for s in steps])
        return steps, z, j

    def _transition(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(obs before, command, obs after, earlier commands) of the transition tested at
        ``step`` (the update that brought the observation after)."""
        offset = self._step - 1 - step  # 0: the newest observation
        n = len(self._obs)
        after, before = n - 1 - offset, n - 2 - offset
        actions = list(self._actions)
        return self._obs[before], actions[before], self._obs[after], np.array(actions[:before])

    def _sensitivity_at(self, step: int) -> np.ndarray:
        before, command, _, _ = self._transition(step)
        nominal = self.reference.predict(before, command, scratch=True)
        return self.reference.sensitivities(before, command, nominal) / self._scale

    def _whitened(self, residual: np.ndarray) -> np.ndarray:
        z = residual / self._scale
        return np.clip(z, -CLIP, CLIP) if self._noisy else z

    def _delay_profile(self, steps: np.ndarray) -> tuple[float, Estimate]:
        """Best total delay (substeps) on ``steps``: (explained share, estimate)."""
        ssr = np.zeros(self.max_delay + 1)
        for step in steps:
            before, command, after, earlier = self._transition(int(step))
            for delay in range(self.max_delay + 1):
                predicted = self.reference.predict(before, command, earlier, delay, scratch=True)
                ssr[delay] += float(np.sum(self._whitened(after - predicted) ** 2))
        best = int(np.argmin(ssr))
        # Profile interval: delays within the chi-square(1) 95 % bound of the best, with the
        # residual variance per whitened dimension estimated at the best delay.
        sigma2 = max(ssr[best] / (len(steps) * self.obs_dim), 1e-300)
        inside = np.nonzero(ssr - ssr[best] <= 3.84 * sigma2)[0]
        dt = self.reference.substep_s
        explained = 1.0 - ssr[best] / ssr[0] if ssr[0] > 0 else 0.0
        estimate = Estimate(LATENCY, best * dt, inside.min() * dt, inside.max() * dt, best)
        return float(explained), estimate

    def _refine(
        self, name: str, fit: stats.FieldFit, steps: np.ndarray, z: np.ndarray, j: np.ndarray
    ) -> tuple[Estimate, float]:
        """Two chord steps (Gauss-Newton with the nominal sensitivity) on the field's value:
        the estimate and the share of the residual sum of squares it explains."""
        index = self.reference.fields.index(name)
        value, se, explained = 1.0 + fit.delta, fit.se, fit.explained
        total = float(np.sum(z * z))
        for iteration in range(3):
            if not 0.2 < value < 5.0:
                break
            variant = self.reference.variant(name, value)
            resid = np.array([self._residual_on(int(s), variant) for s in steps])
            explained = max(1.0 - float(np.sum(resid * resid)) / total, 0.0) if total else 0.0
            if iteration == 2:
                break
            step = stats.fit_field(j[:, index], resid)
            value, se = value + step.delta, step.se
        half = 1.96 * se
        return Estimate(name, value, value - half, value + half), explained

    def _residual_on(self, step: int, variant: Any) -> np.ndarray:
        before, command, after, _ = self._transition(step)
        return self._whitened(after - self.reference.predict(before, command, variant=variant))

    # ------------------------------------------------------------------ preparation
    def _prepare(self, policy: Any, steps: int, seed: int, progress: bool) -> Calibration:
        streams = sim_streams(self.task, policy, steps, seed, self.noise_std, progress=progress)
        residuals, sens, delayed, episode_of, total = [], [], [], [], 0
        lag_steps = self.max_delay // self.reference.frame_skip + 1
        for index, (obs, actions) in enumerate(streams):
            for t in range(len(actions)):
                total += 1
                if not self.reference.exact(obs[t], self._margin):
                    continue
                nominal = self.reference.predict(obs[t], actions[t])
                residuals.append(obs[t + 1] - nominal)
                if self.matched:
                    earlier = actions[t - 1] if t > 0 else actions[t]
                    lag = self.reference.predict(obs[t], earlier, scratch=True) - nominal
                    dyn = self.reference.sensitivities(obs[t], actions[t], nominal)
                    sens.append(np.vstack((dyn, lag)))
                    previous = actions[max(0, t - lag_steps) : t]
                    delayed.append([
                        obs[t + 1]
                        - self.reference.predict(obs[t], actions[t], previous, d, scratch=True)
                        for d in self.delays
                    ])  # fmt: skip
                episode_of.append(index)
        r = np.asarray(residuals)
        floor = np.maximum(1e-3 * self.noise_std, 1e-6)  # MuJoCo's solver tolerance: 1e-8
        scale = stats.robust_scale(r, floor)
        z = r / scale
        if self._noisy:
            z = np.clip(z, -CLIP, CLIP)
        x = stats.omnibus_increment(z, CUSUM_CAP)
        n_channels = len(self.channels)
        rate = self.false_alarm_rate / n_channels
        n = len(z)
        drift = max(CUSUM_DRIFT * float(np.mean(x)), 1e-6)
        thresholds, extrapolated, variance_ratio = {}, {}, {}
        omni = stats.calibrate_threshold(
            lambda h: stats.cusum_alarms(x, drift, h), n, rate, start=1.0, minimum=1.0
        )
        thresholds["omnibus"], extrapolated["omnibus"] = omni.value, omni.extrapolated
        if self.matched:
            j = np.asarray(sens) / scale  # (n, directions, d)
            proj = np.einsum("nfd,nd->nf", j, z)
            energy = np.einsum("nfd,nfd->nf", j, j)
            episodes = np.asarray(episode_of)
            cuts = np.nonzero(np.diff(episodes))[0] + 1
            for f_index, name in enumerate(self.directions):
                # Variance of the projection per unit of squared sensitivity, never below 1:
                # residuals beneath the whitening scale (its floor on a noiseless stream)
                # are insignificant, not noise to be normalized up.
                c = max(
                    float(np.sum(proj[:, f_index] ** 2) / max(np.sum(energy[:, f_index]), 1e-300)),
                    1.0,
                )
                variance_ratio[name] = c
                for gamma, w in zip(self._gammas, WINDOWS, strict=True):
                    series = np.concatenate([
                        stats.self_normalized(
                            stats.ew_sums(p, gamma), stats.ew_sums(c * e, gamma**2)
                        )
                        for p, e in zip(
                            np.split(proj[:, f_index], cuts),
                            np.split(energy[:, f_index], cuts),
                            strict=True,
                        )
                    ])  # fmt: skip
                    found = stats.calibrate_threshold(
                        lambda h, s=series: stats.upcrossings(s, h), n, rate, start=4.0
                    )
                    thresholds[f"{name}@{w}"] = found.value
                    extrapolated[f"{name}@{w}"] = found.extrapolated
            z_delayed = np.asarray(delayed) / scale  # (n, delays, d)
            if self._noisy:
                z_delayed = np.clip(z_delayed, -CLIP, CLIP)
            base = np.sum(z * z, axis=1)
            for i, delay in enumerate(self.delays):
                llr = 0.5 * (base - np.sum(z_delayed[:, i] ** 2, axis=1))
                found = stats.calibrate_threshold(
                    lambda h, v=llr: stats.cusum_alarms(v, 0.0, h), n, rate, start=1.0,
                    minimum=1.0,
                )  # fmt: skip
                thresholds[f"{LATENCY}={delay}"] = found.value
                extrapolated[f"{LATENCY}={delay}"] = found.extrapolated
        return Calibration(
            noise_std=self.noise_std.tolist(),
            scale=scale.tolist(),
            thresholds=thresholds,
            steps=n,
            exact_share=n / max(total, 1),
            false_alarm_rate=self.false_alarm_rate,
            drift=drift,
            variance_ratio=variance_ratio,
            extrapolated=extrapolated,
        )

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the prepared monitor as JSON (its task, settings and calibration)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "task": self.task,
            "settings": {
                "matched": self.matched,
                "window": self.window,
                "max_delay_s": self.max_delay * self.reference.substep_s,
                "identify_every": self.identify_every,
            },
            "calibration": asdict(self.calibration),
        }
        path.write_text(json.dumps(payload, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SkewMonitor:
        """A monitor saved by :meth:`save`, ready to run (no preparation)."""
        payload = json.loads(Path(path).read_text())
        if payload.get("format") != FORMAT:
            raise ValueError(f"{path}: not a saved monitor (format {payload.get('format')!r})")
        calibration = Calibration(**payload["calibration"])
        return cls(
            payload["task"],
            calibration.false_alarm_rate,
            calibration.noise_std,
            calibration=calibration,
            **payload["settings"],
        )

    def __repr__(self) -> str:
        noise = self.noise_std
        shown = f"{noise[0]:g}" if np.all(noise == noise[0]) else "per dimension"
        return (
            f"SkewMonitor({self.task!r}, false_alarm_rate={self.false_alarm_rate:g}, "
            f"sensor_noise_std={shown}, matched={self.matched})"
        )


# ---------------------------------------------------------------------- the wrapper
class Monitored(gym.Wrapper):
    """Runs a :class:`SkewMonitor` on an env's stream: ``info["monitor"]`` every step.

    At each ``step(action)`` the monitor takes the observation the policy acted
    on and the command; the state in ``info`` therefore covers the stream up to
    that observation. ``reset`` starts the monitor's episode.
    """

    def __init__(self, env: gym.Env, monitor: SkewMonitor) -> None:
        super().__init__(env)
        self.monitor = monitor
        self._last_obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        info["monitor"] = self.monitor.reset()
        self._last_obs = np.asarray(obs, dtype=np.float64)
        return obs, info

    def step(self, action):
        if self._last_obs is None:
            raise RuntimeError("Monitored: call reset() before step()")
        state = self.monitor.update(self._last_obs, np.asarray(action, dtype=np.float64))
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["monitor"] = state
        self._last_obs = np.asarray(obs, dtype=np.float64)
        return obs, reward, terminated, truncated, info


# ---------------------------------------------------------------------- helpers
def _checked(value: Any, dim: int, what: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (dim,):
        raise ValueError(f"{what} must have shape ({dim},), got {array.shape}")
    if not np.isfinite(array).all():
        bad = np.nonzero(~np.isfinite(array))[0].tolist()
        raise ValueError(f"{what} must be finite, got NaN or inf in dimensions {bad}")
    return array


def _noise_std(value: Any, task: str, dim: int) -> np.ndarray:
    """The sensor noise per dimension: given, or the task's ``default`` preset's."""
    from sim2real.skews.sensing import per_dimension
    from sim2real.tasks import get_task

    if value is None:
        presets = get_task(task).presets
        value = presets["default"].sensing.noise_std if "default" in presets else 0.0
    if isinstance(value, np.ndarray):
        value = value.tolist()
    noise = np.asarray(per_dimension(value, dim, "sensor_noise_std"), dtype=np.float64)
    if (noise < 0).any() or not np.isfinite(noise).all():
        raise ValueError(f"sensor_noise_std must be finite and >= 0, got {value}")
    return noise


Stream = tuple[np.ndarray, np.ndarray]  # observations (T+1, obs_dim), actions (T, act_dim)


def sim_streams(
    task: str,
    policy: Any,
    steps: int,
    seed: int,
    noise_std: np.ndarray | float = 0.0,
    *,
    skews: dict | None = None,
    lanes: int = 8,
    episodes: int | None = None,
    progress: bool = False,
) -> list[Stream]:
    """Episodes of ``task`` (sim variant plus sensor noise, or ``skews``) until ``steps``
    control steps are collected (or, given ``episodes``, that many episodes have ended):
    ``[(observations, actions), ...]``, in the order they ended.

    ``lanes`` episodes run side by side so that the policy is called on a batch.
    Episode ``i`` is reset with seed ``seed + i``.
    """
    import sim2real

    spec = dict(skews or {})
    noise = np.asarray(noise_std, dtype=np.float64)
    if noise.any():
        spec.setdefault("sensing", {})["noise_std"] = (
            float(noise) if noise.ndim == 0 else noise.tolist()
        )
    act = _policy_fn(policy, lanes)
    envs = [sim2real.make(task, skews=spec or None) for _ in range(lanes)]
    rng = np.random.default_rng(seed)
    low, high = envs[0].action_space.low, envs[0].action_space.high
    next_seed = seed
    current: list[tuple[list, list]] = []
    obs_now = []
    for env in envs:
        o, _ = env.reset(seed=next_seed)
        next_seed += 1
        current.append(([o], []))
        obs_now.append(o)
    done: list[Stream] = []
    collected, reported = 0, 0
    while (collected < steps) if episodes is None else (len(done) < episodes):
        batch = np.asarray(obs_now)
        actions = act(batch) if act is not None else rng.uniform(low, high, (lanes, len(low)))
        for lane, env in enumerate(envs):
            a = np.asarray(actions[lane], dtype=np.float64)
            o, _, terminated, truncated, _ = env.step(a)
            current[lane][0].append(o)
            current[lane][1].append(a)
            collected += 1
            if terminated or truncated:
                done.append((np.asarray(current[lane][0]), np.asarray(current[lane][1])))
                o, _ = env.reset(seed=next_seed)
                next_seed += 1
                current[lane] = ([o], [])
            obs_now[lane] = o
        if progress and collected - reported >= 10_000:
            reported = collected
            print(f"  prepare {task}: {collected}/{steps} sim steps", flush=True)
    if episodes is None:
        done.extend((np.asarray(o), np.asarray(a)) for o, a in current if a)
    else:
        done = done[:episodes]
    for env in envs:
        env.close()
    return done


def _policy_fn(policy: Any, lanes: int) -> Callable[[np.ndarray], np.ndarray] | None:
    if policy is None or (callable(policy) and not isinstance(policy, (str, Path))):
        return policy
    from sim2real.evaluation.policy import resolve_policies

    return resolve_policies(policy)[0].build(batch_size=lanes)
