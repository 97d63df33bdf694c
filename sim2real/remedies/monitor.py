"""Monitor: decide at deployment that the world is not the simulator, and say which skew.

The reference model is the nominal simulator itself: at every control step it is
set to the state the previous observation implies, the command is applied, and
the prediction is compared with the observation that arrives (DESIGN.md
section 7). Steps whose state the observation does not determine (a velocity on
its clip) are skipped. Residuals are whitened with the residual covariance
measured on the sim variant under the stated sensor noise, one covariance for
predictions that end in contact and one for those that do not (sensor noise in
a contact state turns into large, correlated velocity residuals). Three kinds
of sequential test run on them:

* an omnibus CUSUM over the (capped) squared Mahalanobis norm of the one-step
  residual, which catches anything that makes residuals large;
* a generalized likelihood ratio test of the total delay: for every candidate
  delay on a grid of half control steps up to three steps, Page's CUSUM of the
  log-likelihood ratio of "delayed by d substeps" against "no delay" under a
  Student-t noise model, one step at a time (clipped, less a small drift), and one statistic, the
  largest of them (one threshold for the whole profile). Where a velocity sits
  on its clip the transition is predicted open loop from the last exact
  observation (up to :data:`MAX_GAP` steps back), whitened with its own
  covariance, so that the delay test keeps its evidence through a fast gait;
* for each dynamics field, a matched filter (the generalized likelihood ratio
  along the field's sensitivity direction): over blocks of ``block`` control
  steps, open-loop from an exact observation, ``sum_i s_i' W r_i`` over
  ``sqrt(sum_i c s_i' W s_i)`` with exponential forgetting over a short and a
  long window (``s_i`` the block's sensitivity to the field, ``r_i`` its
  residual, ``W`` the inverse block covariance, ``c`` the sim variance ratio).
  A skew accumulates over a block while the anchor's noise enters once; on a
  noiseless stream blocks are one step long. On a noisy stream each block is
  whitened by its own covariance (``W`` per block): the block is also run from
  its anchor moved by +-1 noise sigma in each position dimension (sigma points),
  so the noise is pushed through the dynamics from that very state.

A fourth check needs no threshold: a *stale reading*, a dimension that repeats its
previous value exactly although the model says it moved (by more than
:data:`STALE_SIGMAS` noise sigmas). Under continuous sensor noise that has
probability zero on the simulator; on a robot it is a held or repeated packet. When
the whole reading repeats from the episode's first on, it is an observation
latency (before the first reading the toolkit's latency, like a sensor driver,
delivers the first one): ``k`` repeats put the total delay at ``k`` control steps
or more. Anywhere else, it is a dropped reading (``sensing.dropout_prob``).
Stale readings end and start no transition of the other tests.

Every test's threshold is calibrated on sim streams under the stated sensor
noise so that all together raise at most ``false_alarm_rate`` alarms per
control step. After an alarm, identification regresses the recent blocks'
residuals on each field's sensitivity (one field at a time) and profiles the
total delay in physics substeps. From commands and observations alone,
observation and action latency show as one total delay: the monitor reports
the total and cannot say how it splits.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sim2real.remedies import monitor_stats as stats
from sim2real.remedies.envelope_stats import lower_bound, upper_bound
from sim2real.remedies.monitor_model import ReferenceModel, resolve_task
from sim2real.remedies.monitor_predict import Block, OneStep, StreamPredictor

LATENCY = "timing.total_latency_s"  # the one latency the stream identifies (obs + action)
FORMAT = "sim2real.monitor/5"
CUSUM_DRIFT = 2.0  # omnibus CUSUM drift, x the sim mean increment: detects a doubled variance
CUSUM_CAP = 50.0  # cap on one step's omnibus increment: one outlier cannot alarm alone
NOISY_BLOCK_S = 0.064  # seconds per matched-filter block on a noisy stream (1 step when noiseless)
INCREMENT_CLIP = 4.0  # a block's matched-filter increment is clipped at this many sim sigmas
LLR_CLIP = 50.0  # one step's delay log-likelihood ratio is clipped at this (heavy tails)
LLR_DOF = 5.0  # degrees of freedom of the delay test's Student-t noise model (heavy tails)
DELAY_CANDIDATES = 6  # total delays the delay test runs side by side (one prediction each)
MAX_GAP = 4  # a delay-test transition may span this many control steps from an exact anchor
PROFILE_STEPS = 80  # exact transitions the delay profile of identification uses
PROFILE_CAP = 8.0  # the most one transition can count against a delay in the delay profile
LLR_DRIFT = 1.0  # subtracted from each step's delay log-likelihood ratio: short excursions on sim
EXACT_MARGIN = 4.0  # a velocity within this many noise sigmas of its clip is not exact
WINDOWS = (25, 250)  # matched-filter windows in control steps for one-step blocks
STALE = "stale reading"  # the channel of readings that repeat while the model moves them
STALE_SIGMAS = 3.0  # a repeated value is stale if the model moved it by this many noise sigmas
STALE_TOL = 1e-6  # ... or, on a noiseless stream, by this much (obs units)
DROPOUT = "sensing.dropout_prob"  # what stale readings after the first fresh one look like


def windows_for(block: int) -> tuple[int, int]:
    """Matched-filter windows (control steps) for blocks of ``block`` steps."""
    return WINDOWS if block <= 1 else (10 * block, 50 * block)


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
        channel: the test that leads (``omnibus``, ``<field>@<window>``,
            ``timing.total_latency_s=<substeps>`` or ``stale reading``).
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
        scale: the one-step residual's robust scale per observation dimension (obs units).
        thresholds: per test channel, its threshold.
        steps: calibration steps used (exact transitions).
        exact_share: share of steps whose state the observation determined.
        false_alarm_rate: the target, alarms per control step (all tests together).
        drift: the omnibus CUSUM's drift per step (twice its sim mean increment).
        variance_ratio: per dynamics field, the sim variance of the block's projected
            residual per unit of squared whitened sensitivity.
        extrapolated: per channel, whether its threshold was extrapolated (tail fit).
        block: control steps per matched-filter block.
        whiten_step: one-step whitening matrices ``T`` (``z = T r``), [no contact, contact,
            from an exact anchor more than one step back].
        whiten_block: the same for block residuals.
        increment_clip: per dynamics field, where a block's increment is clipped, in
            units of its sim standard deviation (inf: no clip).
        delay_drift: per delay (substeps), the drift of its CUSUM per step (the delay
            profile's threshold is ``thresholds[timing.total_latency_s]``).
        sigma_points: whether each block is whitened by its own covariance, from sigma
            points of its anchor's noise (``whiten_block`` is then unused by the tests).
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
    block: int = 1
    whiten_step: list = field(default_factory=list)
    whiten_block: list = field(default_factory=list)
    increment_clip: dict[str, float] = field(default_factory=dict)
    delay_drift: dict[str, float] = field(default_factory=dict)
    sigma_points: bool = False


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
        matched: run the matched filters and the delay tests (one extra prediction per
            dynamics field and per delay each step); without them only the omnibus
            test runs (one prediction per step; blind to small dynamics skews).
        window: control steps of blocks kept for identification (at least 50 blocks).
        max_delay_s: the largest total latency the delay profile considers, seconds.
        identify_every: after an alarm, re-identify every this many steps (0: only at
            the alarm).
        seed: seeds the preparation episodes.
        calibration: a previous preparation's result (skips preparation).
        block: control steps per matched-filter block (default 1 on a noiseless stream,
            64 ms worth on a noisy one: 8 steps of Hopper and Walker2d, 1 of HalfCheetah).
        sigma_points: whiten each block by its own residual covariance, the sensor noise
            of its anchor pushed through the dynamics from that state (each block is run
            again from the anchor moved by +-1 noise sigma in each position dimension:
            two predictions per position dimension per step). Default: on a noisy stream.
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
        block: int | None = None,
        sigma_points: bool | None = None,
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
        if calibration is not None:
            block = calibration.block
        elif block is None:
            steps = round(NOISY_BLOCK_S / self.reference.control_dt)
            block = max(1, steps) if self._noisy else 1
        if block < 1:
            raise ValueError(f"block must be >= 1 control step, got {block}")
        self.block = int(block) if self.matched else 0
        if calibration is not None:
            sigma_points = calibration.sigma_points
        elif sigma_points is None:
            sigma_points = self._noisy
        self.sigma_points = bool(sigma_points) and self._noisy and self.block > 0
        self.windows = windows_for(self.block)
        self._gammas = np.array([1.0 - self.block / w for w in self.windows]) if self.block else []
        self.fields = self.reference.fields
        fs = self.reference.frame_skip
        # Candidate total delays (substeps) of the delay test: up to three control steps,
        # evenly spaced, at most DELAY_CANDIDATES of them (every half step on Hopper).
        top = min(3 * fs, self.max_delay)
        delays = range(-(-top // DELAY_CANDIDATES), top + 1, -(-top // DELAY_CANDIDATES))
        self.delays = tuple(delays) if self.matched else ()
        matched_channels = tuple(f"{f}@{w}" for f in self.fields for w in self.windows)
        delay_channels = (LATENCY,) if self.delays else ()
        self.channels = (
            "omnibus", *((matched_channels + delay_channels) if self.matched else ())
        )  # fmt: skip
        self.predictor = StreamPredictor(
            self.reference, self.block, self.delays, self._margin, self.max_delay,
            max_gap=MAX_GAP if self.delays else 1, spread=self._sigma_offsets(),
            stale_margin=np.maximum(STALE_SIGMAS * self.noise_std, STALE_TOL),
        )  # fmt: skip
        if calibration is None:
            calibration = self._prepare(policy, int(prepare_steps), int(seed), progress)
        self.calibration = calibration
        self._set_calibration(calibration)
        self.reset()

    def _sigma_offsets(self) -> np.ndarray | None:
        """The anchor offsets of the blocks' sigma points (+-1 noise sigma per position
        dimension), and the variance they do not carry, per dimension: the end
        observation's noise, plus the anchor's on the dimensions not moved (a velocity's
        noise passes through a block about unchanged). None without sigma points."""
        if not self.sigma_points:
            self._spread_base = None
            return None
        dims = self.reference.position_dims
        offsets = np.zeros((2 * len(dims), self.obs_dim))
        for k, dim in enumerate(dims):
            offsets[2 * k, dim], offsets[2 * k + 1, dim] = self.noise_std[dim], -self.noise_std[dim]
        moved = np.zeros(self.obs_dim, dtype=bool)
        moved[dims] = True
        floor = np.maximum(1e-3 * self.noise_std, 1e-6)
        self._spread_base = self.noise_std**2 * np.where(moved, 1.0, 2.0) + floor**2
        return offsets

    def _set_calibration(self, calibration: Calibration) -> None:
        self._scale = np.asarray(calibration.scale)
        self._t_step = np.asarray(calibration.whiten_step, dtype=np.float64)
        self._t_block = np.asarray(calibration.whiten_block, dtype=np.float64)
        self._omni_h = calibration.thresholds["omnibus"]
        self._drift = calibration.drift
        th = calibration.thresholds
        self._mf_h = np.array(
            [[th.get(f"{f}@{w}", np.inf) for w in self.windows] for f in self.fields]
        ).reshape(len(self.fields), len(self.windows))
        self._delay_h = th.get(LATENCY, np.inf)
        drift = calibration.delay_drift
        self._delay_drift = np.array([drift.get(str(d), LLR_DRIFT) for d in self.delays])
        ratio = calibration.variance_ratio
        self._var_ratio = np.array([ratio.get(f, 1.0) for f in self.fields])
        clip = calibration.increment_clip
        self._clip = np.array([clip.get(f, np.inf) for f in self.fields])

    # ------------------------------------------------------------------ online
    def reset(self) -> MonitorState:
        """Start a new episode: forget the stream, clear the alarm."""
        self._step = 0
        self.predictor.reset()
        history = PROFILE_STEPS + 64 + self.max_delay // self.reference.frame_skip + 2
        self._obs: deque[np.ndarray] = deque(maxlen=history)
        self._actions: deque[np.ndarray] = deque(maxlen=history)
        self._steps_tested: deque[int] = deque(maxlen=PROFILE_STEPS)  # exact transitions
        kept = max(self.window // max(self.block, 1), 50)
        # Each block with its whitened residual, sensitivities and whitening matrix.
        self._blocks: deque[tuple[Block, np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=kept)
        self._alarm_step: int | None = None
        self._last_identified: int | None = None
        self._stale_start = 0  # whole readings repeating the episode's first one
        self._dropped = self._checked = 0  # stale dimensions later on, and dimensions checked
        self.rearm()
        self.state = MonitorState(0, False, 0.0, "omnibus")
        return self.state

    def rearm(self) -> None:
        """Zero every test statistic and clear the alarm, keeping the stream (after an
        alarm has been handled, or to count false alarms)."""
        self._cusum = 0.0
        self._num = np.zeros((len(self.fields), len(self.windows)))
        self._var = np.zeros_like(self._num)
        self._mf_ratio, self._mf_channel = 0.0, "omnibus"
        self._delay_cusum = np.zeros(len(self.delays))
        self._stale = 0  # stale readings since re-armed (an alarm at the first)
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
        one, block = self.predictor.step(obs, action)
        if self.predictor.stale is not None:
            self._note_stale(self.predictor.stale)
        self._checked += self.predictor.checked
        statistic, channel = 0.0, "omnibus"
        if one is not None:
            if one.steps == 1:
                self._steps_tested.append(self._step)
            statistic, channel = self._test_step(one)
        else:
            statistic = self._cusum / self._omni_h
            if self.delays:
                ratio_d, channel_d = self._delay_lead()
                if ratio_d > statistic:
                    statistic, channel = ratio_d, channel_d
        if block is not None:
            self._test_block(block)
        if self._mf_ratio > statistic:
            statistic, channel = self._mf_ratio, self._mf_channel
        if self._stale > statistic:
            statistic, channel = float(self._stale), STALE
        self._step += 1
        self._obs.append(obs)
        self._actions.append(action)
        alarm = self._alarm_step is not None
        if not alarm and statistic >= 1.0:
            self._alarm_step, alarm = self._step, True
        if alarm and self._due():
            self.identify()
        self.state = MonitorState(
            self._step, alarm, statistic, channel, self._alarm_step,
            self._suspects, self._estimate, one is not None,
        )  # fmt: skip
        return self.state

    def _note_stale(self, dims: np.ndarray) -> None:
        """Count a stale reading: part of the episode's opening run of repeats of its first
        reading (an observation latency), or a dropped reading."""
        self._stale += 1
        if len(dims) == self.obs_dim and self._stale_start == self._step - 1:
            self._stale_start += 1
        elif self.predictor.checked:  # its dimensions were checked against a prediction
            self._dropped += len(dims)

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

    def _test_step(self, one: OneStep) -> tuple[float, str]:
        """Omnibus and delay CUSUMs on one transition's residual (the omnibus on transitions
        from the previous observation only)."""
        t = self._t_step[_regime(one)]
        z = t @ one.residual
        base = float(np.dot(z, z))
        if one.steps == 1:
            x = min(base / self.obs_dim, CUSUM_CAP)
            self._cusum = max(0.0, self._cusum + x - self._drift)
        statistic, channel = self._cusum / self._omni_h, "omnibus"
        if one.delayed is not None:
            z_d = one.delayed @ t.T
            llr = stats.delay_llr(
                np.array([base]), np.einsum("nd,nd->n", z_d, z_d)[None], self.obs_dim,
                LLR_DOF, LLR_CLIP,
            )[0]  # fmt: skip
            np.maximum(self._delay_cusum + llr - self._delay_drift, 0.0, out=self._delay_cusum)
            ratio_d, channel_d = self._delay_lead()
            if ratio_d > statistic:
                statistic, channel = ratio_d, channel_d
        return statistic, channel

    def _delay_lead(self) -> tuple[float, str]:
        """The delay profile's statistic (its largest CUSUM over the threshold) and channel."""
        best = int(np.argmax(self._delay_cusum))
        return float(self._delay_cusum[best] / self._delay_h), f"{LATENCY}={self.delays[best]}"

    def _test_block(self, block: Block) -> None:
        """The matched filters on one block."""
        z, j, t = self._whiten_block(block)
        a, v = stats.matched_increments(j, z, self._var_ratio, self._clip)
        self._num = self._gammas * self._num + a[:, None]
        self._var = self._gammas**2 * self._var + v[:, None]
        ratio = stats.self_normalized(self._num, self._var) / self._mf_h
        best = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        self._mf_ratio = float(ratio[best])
        self._mf_channel = f"{self.fields[best[0]]}@{self.windows[best[1]]}"
        self._blocks.append((block, z, j, t))

    def _whiten_block(self, block: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The block's whitened residual and sensitivities, and its whitening matrix."""
        t = self._block_whitener(block)
        return t @ block.residual, block.sensitivity @ t.T, t

    def _block_whitener(self, block: Block) -> np.ndarray:
        """The block's own whitener from its sigma points, or its contact regime's."""
        if block.spread is None or self._spread_base is None:
            return self._t_block[int(block.contact)]
        return stats.whitener(stats.sigma_point_covariance(block.spread, self._spread_base))

    # ------------------------------------------------------------------ identification
    def identify(self) -> tuple[tuple[Suspect, ...], Estimate | None]:
        """Regress the recent blocks' residuals on each field's sensitivity and profile
        the delay. Updates ``state.suspects`` and ``state.estimate`` from the next update on.
        """
        self._last_identified = self._step
        scores: dict[str, float] = {}
        estimates: dict[str, Estimate] = {}
        if self._blocks and self.fields:
            blocks = [(b, t) for b, _, _, t in self._blocks]
            z = np.array([z for _, z, _, _ in self._blocks])
            j = np.array([j for _, _, j, _ in self._blocks])
            fits = {name: stats.fit_field(j[:, i], z) for i, name in enumerate(self.fields)}
            scores = {name: fit.explained for name, fit in fits.items()}
            estimates = {
                name: Estimate(name, 1 + fit.delta, 1 + fit.delta - 1.96 * fit.se,
                               1 + fit.delta + 1.96 * fit.se)
                for name, fit in fits.items()
            }  # fmt: skip
            # A linear fit around nominal misjudges a large skew: refine the two best fields
            # and score them by what their refined value explains.
            for name in sorted(fits, key=lambda n: -scores[n])[:2]:
                estimates[name], scores[name] = self._refine(name, fits[name], blocks, z, j)
        tested = [s for s in self._steps_tested if self._step - 1 - s < len(self._obs) - 1]
        floor = min(self._stale_start * self.reference.frame_skip, self.max_delay)
        if tested and self.max_delay > 0:
            scores[LATENCY], estimates[LATENCY] = self._delay_profile(tested, floor)
            if self._blocks and self.fields:  # score the best delay on the same blocks
                scores[LATENCY] = self._explained_on_blocks(estimates[LATENCY].substeps)
        if floor:  # the opening stale readings: only a latency explains them
            scores[LATENCY] = 1.0
            if LATENCY not in estimates:
                dt = self.reference.substep_s
                estimates[LATENCY] = Estimate(
                    LATENCY, floor * dt, floor * dt, self.max_delay * dt, floor
                )
        if self._dropped:
            scores[DROPOUT], estimates[DROPOUT] = 1.0, self._dropout_estimate()
        if not scores:
            return self._suspects, self._estimate
        ranked = sorted(scores.items(), key=lambda item: -item[1])
        self._suspects = tuple(Suspect(name, float(score)) for name, score in ranked)
        self._estimate = estimates[ranked[0][0]]
        return self._suspects, self._estimate

    def _dropout_estimate(self) -> Estimate:
        """The share of checked dimensions that were stale, with a 95 % Clopper-Pearson
        interval (a dimension is checked where the prediction moved it past the margin)."""
        k, n = self._dropped, max(self._checked, self._dropped)
        return Estimate(DROPOUT, k / n, lower_bound(k, n, 0.975), upper_bound(k, n, 0.975))

    def _transition(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(obs before, command, obs after, earlier commands) of the transition tested at
        ``step`` (the update that brought the observation after)."""
        offset = self._step - 1 - step  # 0: the newest observation
        n = len(self._obs)
        after, before = n - 1 - offset, n - 2 - offset
        actions = list(self._actions)
        return self._obs[before], actions[before], self._obs[after], np.array(actions[:before])

    def _delay_profile(self, steps: list[int], floor: int = 0) -> tuple[float, Estimate]:
        """Best total delay (substeps, at least ``floor``) on ``steps``: (explained share,
        estimate).

        The profile is a bounded-influence log-likelihood: each transition adds, per delay,
        its excess negative log-likelihood over that transition's best delay, capped at
        :data:`PROFILE_CAP` (a few transitions near a fall or a contact change, whose
        residuals are far off the noise model, would otherwise decide it)."""
        ssr = np.zeros(self.max_delay + 1)
        penalty = np.empty((len(steps), self.max_delay + 1))
        ref = self.reference
        for row, step in enumerate(steps):
            before, command, after, earlier = self._transition(int(step))
            t = None
            sq = np.empty(self.max_delay + 1)
            for delay in range(self.max_delay + 1):
                predicted = ref.predict(before, command, earlier, delay, scratch=True)
                if t is None:  # the nominal prediction's contact picks the whitening
                    t = self._t_step[int(ref._scratch.ncon > 0)]
                z = t @ (after - predicted)
                sq[delay] = float(np.dot(z, z))
            ssr += sq
            penalty[row] = np.minimum(0.5 * (sq - sq.min()), PROFILE_CAP)
        best = floor + int(np.argmin(penalty[:, floor:].sum(axis=0)))
        low, high = stats.bootstrap_argmin_interval(penalty[:, floor:], seed=len(steps))
        low, high = min(low + floor, best), max(high + floor, best)
        dt = ref.substep_s
        explained = max(1.0 - ssr[best] / ssr[0], 0.0) if ssr[0] > 0 else 0.0
        estimate = Estimate(LATENCY, best * dt, low * dt, high * dt, best)
        return float(explained), estimate

    def _refine(
        self,
        name: str,
        fit: stats.FieldFit,
        blocks: list[tuple[Block, np.ndarray]],
        z: np.ndarray,
        j: np.ndarray,
    ) -> tuple[Estimate, float]:
        """Two chord steps (Gauss-Newton with the nominal sensitivity) on the field's value:
        the estimate and the share of the residual sum of squares it explains."""
        index = self.fields.index(name)
        value, se, explained = 1.0 + fit.delta, fit.se, fit.explained
        total = float(np.sum(z * z))
        for iteration in range(3):
            if not 0.2 < value < 5.0:
                break
            variant = self.reference.variant(name, value)
            resid = np.array([self._residual_on(b, variant) for b in blocks])
            explained = max(1.0 - float(np.sum(resid * resid)) / total, 0.0) if total else 0.0
            if iteration == 2:
                break
            step = stats.fit_field(j[:, index], resid)
            value, se = value + step.delta, step.se
        half = 1.96 * se
        return Estimate(name, value, value - half, value + half), explained

    def _residual_on(
        self, block: tuple[Block, np.ndarray], variant: Any, delay: int = 0
    ) -> np.ndarray:
        """The whitened residual of ``(block, its whitener)`` replayed on ``variant``."""
        predicted = self.predictor.replay(block[0], variant, delay)
        return block[1] @ (block[0].end - predicted)

    def _explained_on_blocks(self, delay: int) -> float:
        """The share of the blocks' residual sum of squares that a total delay of ``delay``
        substeps removes (the dynamics fields are scored on the same blocks)."""
        z = np.array([z for _, z, _, _ in self._blocks])
        total = float(np.sum(z * z))
        if delay == 0 or total <= 0:
            return 0.0
        nominal = (self.reference.model, self.reference._scratch)
        resid = np.array([self._residual_on((b, t), nominal, delay) for b, _, _, t in self._blocks])
        return max(1.0 - float(np.sum(resid * resid)) / total, 0.0)

    # ------------------------------------------------------------------ preparation
    def _prepare(self, policy: Any, steps: int, seed: int, progress: bool) -> Calibration:
        streams = sim_streams(self.task, policy, steps, seed, self.noise_std, progress=progress)
        ones: list[OneStep] = []
        blocks: list[Block] = []
        one_episode, block_episode, total = [], [], 0
        for index, (obs, actions) in enumerate(streams):
            self.predictor.reset()
            total += len(actions)
            # Every logged step, then the last observation (it closes the last transition).
            for o, a in [*zip(obs, actions, strict=False), (obs[-1], actions[-1])]:
                one, block = self.predictor.step(o, a)
                if one is not None:
                    ones.append(one)
                    one_episode.append(index)
                if block is not None:
                    blocks.append(block)
                    block_episode.append(index)
        self.predictor.reset()
        floor = np.maximum(1e-3 * self.noise_std, 1e-6)  # MuJoCo's solver tolerance: 1e-8
        r = np.array([o.residual for o in ones])
        regime = np.array([_regime(o) for o in ones], dtype=int)
        single = regime < 2
        scale = stats.robust_scale(r[single], floor)
        t_step = _regime_whiteners(r, regime, floor)
        z = np.einsum("nij,nj->ni", t_step[regime], r)
        n = int(single.sum())
        rate = self.false_alarm_rate / len(self.channels)
        x = stats.omnibus_increment(z[single], CUSUM_CAP)
        drift = max(CUSUM_DRIFT * float(np.mean(x)), 1e-6)
        thresholds, extrapolated, variance_ratio, increment_clip = {}, {}, {}, {}
        delay_drift: dict[str, float] = {}
        omni = stats.calibrate_threshold(
            lambda h: stats.cusum_alarms(x, drift, h), n, rate, start=1.0, minimum=1.0
        )
        thresholds["omnibus"], extrapolated["omnibus"] = omni.value, omni.extrapolated
        t_block = np.zeros((2, self.obs_dim, self.obs_dim))
        if self.delays:
            delayed = np.array([o.delayed for o in ones])  # (n, delays, d)
            z_d = np.einsum("nij,nkj->nki", t_step[regime], delayed)
            base = np.sum(z * z, axis=1)
            llr = stats.delay_llr(base, np.sum(z_d**2, axis=2), self.obs_dim, LLR_DOF, LLR_CLIP)
            # A policy reacts to the noise of the observation it acts on, so on sim the
            # delayed prediction can explain part of the noise pushed through the
            # dynamics: the ratio's sim mean may be positive. The drift removes it.
            drift_d = LLR_DRIFT + np.maximum(llr.mean(axis=0), 0.0)
            delay_drift = {str(d): float(m) for d, m in zip(self.delays, drift_d, strict=True)}
            found = stats.calibrate_threshold(
                lambda h: stats.cusum_max_alarms(llr, drift_d, h), len(llr), rate,
                start=1.0, minimum=1.0,
            )  # fmt: skip
            thresholds[LATENCY], extrapolated[LATENCY] = found.value, found.extrapolated
        if self.block and blocks:
            rb = np.array([b.residual for b in blocks])
            cb = np.array([b.contact for b in blocks])
            t_block = _regime_whiteners(rb, cb, floor, count=2)
            self._t_block = t_block
            tb = np.array([self._block_whitener(b) for b in blocks])
            zb = np.einsum("nij,nj->ni", tb, rb)
            jb = np.einsum("nij,nfj->nfi", tb, np.array([b.sensitivity for b in blocks]))
            proj = np.einsum("nfd,nd->nf", jb, zb)
            energy = np.einsum("nfd,nfd->nf", jb, jb)
            ratio, clip = _variance_ratio(proj, energy, robust=self._noisy)
            variance_ratio = {name: float(c) for name, c in zip(self.fields, ratio, strict=True)}
            increment_clip = {name: float(c) for name, c in zip(self.fields, clip, strict=True)}
            a, v = stats.matched_increments(jb, zb, ratio, clip)
            cuts = np.nonzero(np.diff(np.asarray(block_episode)))[0] + 1
            for f_index, name in enumerate(self.fields):
                for gamma, w in zip(self._gammas, self.windows, strict=True):
                    series = np.concatenate([
                        stats.ew_self_normalized(pa, pv, gamma)
                        for pa, pv in zip(
                            np.split(a[:, f_index], cuts), np.split(v[:, f_index], cuts),
                            strict=True,
                        )
                    ])  # fmt: skip
                    found = stats.calibrate_threshold(
                        lambda h, s=series: stats.upcrossings(s, h), n, rate, start=4.0
                    )
                    thresholds[f"{name}@{w}"] = found.value
                    extrapolated[f"{name}@{w}"] = found.extrapolated
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
            increment_clip=increment_clip,
            delay_drift=delay_drift,
            block=self.block,
            whiten_step=t_step.tolist(),
            whiten_block=t_block.tolist(),
            sigma_points=self.sigma_points,
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
            "channels": list(self.channels),
            "calibration": asdict(self.calibration),
        }
        path.write_text(json.dumps(payload, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SkewMonitor:
        """A monitor saved by :meth:`save`, ready to run (no preparation)."""
        payload = json.loads(Path(path).read_text())
        if payload.get("format") != FORMAT:
            raise ValueError(
                f"{path}: not a monitor of this version (format {payload.get('format')!r}, "
                f"expected {FORMAT!r}); prepare it again"
            )
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
    if (
        type(value) is np.ndarray
        and value.dtype == np.float64
        and value.shape == (dim,)
        and math.isfinite(value.sum())  # a NaN or inf anywhere makes the sum non-finite
    ):
        return value
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (dim,):
        raise ValueError(f"{what} must have shape ({dim},), got {array.shape}")
    if not np.isfinite(array).all():
        bad = np.nonzero(~np.isfinite(array))[0].tolist()
        raise ValueError(f"{what} must be finite, got NaN or inf in dimensions {bad}")
    return array


def _regime(one: OneStep) -> int:
    """A transition's whitening regime: 0 out of contact, 1 in contact, 2 from an exact
    anchor more than one control step back."""
    return 2 if one.steps > 1 else int(one.contact)


def _regime_whiteners(
    residuals: np.ndarray, regimes: np.ndarray, floor: np.ndarray, count: int = 3
) -> np.ndarray:
    """Whitening matrices ``(count, d, d)``, one per regime (``regimes``: one per residual,
    see :func:`_regime`; for blocks 0/1, contact): each from its regime's robust covariance,
    the pooled one where a regime has too few residuals."""
    regimes = np.asarray(regimes).astype(int)
    pooled = stats.whitener(stats.robust_covariance(residuals, floor))
    out = np.empty((count, *pooled.shape))
    for regime in range(count):
        rows = residuals[regimes == regime]
        enough = len(rows) >= max(20 * residuals.shape[1], 200)
        out[regime] = stats.whitener(stats.robust_covariance(rows, floor)) if enough else pooled
    return out


def _variance_ratio(
    proj: np.ndarray, energy: np.ndarray, robust: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per direction, the sim variance of the projected block residual per unit of squared
    whitened sensitivity (``proj``, ``energy``: ``(blocks, directions)``), and the clip of
    an increment in units of that variance's square root.

    On a noisy stream the increments are clipped at :data:`INCREMENT_CLIP` robust sigmas
    (the MAD-scale of ``proj / sqrt(energy)``: a few contact blocks with huge residuals
    would otherwise set the scale for all and bury a small skew), and the ratio is the
    variance of the clipped increments, so that the statistic is about chi-square(1)
    on sim. On a noiseless stream it is the plain ratio, never below 1 (residuals beneath
    the whitening scale, its floor, are insignificant, not noise to be normalized up),
    with no clip.
    """
    n_dir = proj.shape[1]
    if not robust:
        ratio = np.maximum(np.sum(proj**2, axis=0) / np.maximum(energy.sum(axis=0), 1e-300), 1)
        return ratio, np.full(n_dir, np.inf)
    ratio, clip = np.ones(n_dir), np.full(n_dir, INCREMENT_CLIP)
    for f in range(n_dir):
        keep = energy[:, f] > 0
        if keep.sum() >= 10:
            q = proj[keep, f] / np.sqrt(energy[keep, f])
            sigma = max(float(stats.robust_scale(q[:, None], np.array([1e-12]))[0]), 1e-12)
            u = np.clip(q / sigma, -INCREMENT_CLIP, INCREMENT_CLIP)
            inflation = max(float(np.mean(u * u)), 1e-12)
            ratio[f] = sigma**2 * inflation
            clip[f] = INCREMENT_CLIP / np.sqrt(inflation)
    return ratio, clip


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
