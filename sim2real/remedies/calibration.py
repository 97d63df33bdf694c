"""Close the gap: fit the simulator's skew values to a robot's logs (DESIGN.md section 7).

>>> logs = sim2real.record(policy, real_env, seeds=range(10))         # doctest: +SKIP
>>> cal = sim2real.calibrate("Hopper", logs)                          # doctest: +SKIP
>>> sim, real = sim2real.make_pair("Hopper", real=cal.spec)           # doctest: +SKIP

What is fitted: ``dynamics.mass_scale``, ``friction_scale``, ``damping_scale``,
``actuator_strength`` (continuous), ``timing.obs_latency_s`` and
``action_latency_s`` (discrete, exact to the physics substep) and
``sensing.noise_std`` (per observation dimension, from the residuals).

How (multiple shooting, :mod:`~sim2real.remedies.calibration_fit`):

1. Total delay: mid-episode a window only sees ``obs + action`` latency. Every
   total from 0 to ``max_latency_s`` is scored on a subset of windows; the scales
   are fitted at the best one and the scan is repeated with them until it settles.
2. Split: at an episode's start the buffers are backfilled and the first command
   is held, so the windows that start there tell the split apart; every split of
   the total is scored on them, the best few with their start states refitted.
3. Final fit on every window: the scales and every window's start state, by
   trust-region least squares on the sparse Jacobian, each dimension weighted by
   one over its noise level (estimated in step 1). The start states are first fitted on
   the windows cut short (``continuation``: 2 then 5 steps), and windows fitting far
   worse than the median are trimmed and the rest refitted (``trim_rounds``).
4. Trust: intervals by a linearized bootstrap over logged episodes (Student-t
   with episodes - 1 degrees of freedom on its spread), a warning for any scale
   whose Gauss-Newton standard error exceeds ``identifiable_se``, the residual per
   observation dimension against the nominal sim's, and the delay's profile.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

from sim2real.remedies.calibration_fit import (
    PRIOR_SD,
    Fit,
    ShootingProblem,
    bootstrap_scales,
    information,
    selection_shift,
)
from sim2real.remedies.calibration_model import (
    SCALE_FIELDS,
    Delay,
    PipelineModel,
    Windows,
    build_windows,
)
from sim2real.remedies.record import LogSource, load_logs
from sim2real.spec import SkewSpec

LATENCY_FIELDS = ("timing.obs_latency_s", "timing.action_latency_s")
NOISE_FIELD = "sensing.noise_std"
FIELDS: tuple[str, ...] = (
    *(f"dynamics.{name}" for name in SCALE_FIELDS),
    *LATENCY_FIELDS,
    NOISE_FIELD,
)
NOISE_FLOOR = 1e-4  # obs units: below this a dimension counts as noiseless
REPORT_SCHEMA = "sim2real.calibration/1"
RUN = 8  # consecutive windows per run of the delay-search subset


@dataclass(frozen=True)
class CalibrationConfig:
    """The knobs of one task's calibration (``configs/calibration/<task>.yaml``).

    Attributes:
        window_steps: control steps per multiple-shooting window.
        max_latency_s: the delay search covers total latency 0..this, seconds.
        search_windows: windows used while searching the delay.
        max_iterations: Levenberg-Marquardt iterations (Jacobians) per fit, at most.
        refit_iterations: iterations of the refit once outlying windows are dropped.
        outlier_factor: a window whose mean squared residual exceeds this multiple of
            the median window's is dropped (its local fit did not resolve a contact).
        trim_rounds: rounds of dropping outlying windows and refitting the rest (the
            scales move once the worst windows are gone, and then so do the costs).
        continuation: shorter window lengths (control steps) whose start states are fitted
            first, shortest first, before the full windows (``_Fitter.continue_starts``).
        clip_margin: a window whose first reading has a velocity within this of the
            task's clip bound (10) is skipped: with noise the true velocity may lie beyond.
        reseed_rounds: rounds of restarting badly fitted windows from their predecessor's
            predicted end state (``_Fitter.reseed``).
        reseed_factor: a window above this multiple of the median window's cost is
            restarted (a well-fitted window's cost varies by far less: chi-square).
        prior_range: where a scale the logs cannot identify is randomized.
        identifiable_se: a scale whose standard error exceeds this is flagged.
        resamples: bootstrap resamples.
        confidence: coverage of the intervals.
    """

    window_steps: int = 10
    max_latency_s: float = 0.08
    search_windows: int = 64
    max_iterations: int = 30
    refit_iterations: int = 10
    outlier_factor: float = 4.0
    trim_rounds: int = 1
    continuation: tuple[int, ...] = ()
    clip_margin: float = 0.5
    reseed_rounds: int = 3
    reseed_factor: float = 1.5
    prior_range: tuple[float, float] = (0.5, 1.5)
    identifiable_se: float = 0.05
    resamples: int = 2000
    confidence: float = 0.95

    @classmethod
    def for_task(cls, task: str, **overrides: Any) -> CalibrationConfig:
        from sim2real.paths import data_dir

        path = data_dir("configs") / "calibration" / f"{task.lower()}.yaml"
        values = yaml.safe_load(path.read_text()) if path.is_file() else {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"calibration config: unknown key {sorted(unknown)[0]!r}; allowed: "
                f"{', '.join(cls.__dataclass_fields__)}"
            )
        if "prior_range" in values:
            values["prior_range"] = tuple(values["prior_range"])
        if "continuation" in values:
            values["continuation"] = tuple(int(v) for v in values["continuation"] or ())
        config = cls(**values)
        if config.window_steps < 1:
            raise ValueError(f"window_steps must be >= 1, got {config.window_steps}")
        if not 0 < config.confidence < 1:
            raise ValueError(f"confidence must be between 0 and 1, got {config.confidence}")
        return config


@dataclass
class Calibration:
    """Skew values fitted to logs, with intervals: the simulator brought to the robot.

    Attributes:
        task: the built-in task.
        fields: the fitted fields (dotted names).
        estimates: the fitted value per field (``sensing.noise_std``: per dimension).
        intervals: ``(low, high)`` per field at ``confidence``; ``None`` when unidentified.
        unidentified: the fields the logs cannot pin down (left nominal in :attr:`spec`).
        warnings: what the reader must know, one sentence each.
        delay: the realized latencies in substeps and the substep length.
        residuals: RMS prediction error per observation dimension (obs units) from the
            logged window starts, for the calibrated and the nominal sim.
        diagnostics: the fit's numbers (cost, evaluations, windows, time, delay profile).
        traces: a few windows of logged, calibrated-sim and nominal-sim observations.
    """

    task: str
    fields: list[str]
    estimates: dict[str, Any]
    intervals: dict[str, tuple[float, float] | None]
    unidentified: list[str]
    warnings: list[str]
    delay: dict[str, Any]
    residuals: dict[str, list[float]]
    diagnostics: dict[str, Any]
    prior_range: tuple[float, float] = (0.5, 1.5)
    confidence: float = 0.95
    traces: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def spec(self) -> SkewSpec:
        """The calibrated point: a real variant (``make_pair(task, real=cal.spec)``)."""
        nested: dict[str, dict[str, Any]] = {}
        for name, value in self.estimates.items():
            if name in self.unidentified:
                continue
            section, key = name.split(".")
            value = [float(v) for v in value] if isinstance(value, list) else float(value)
            nested.setdefault(section, {})[key] = value
        return SkewSpec.load({"description": f"calibrated to logs of {self.task}", **nested})

    def randomization(self, width: float = 1.0) -> Any:
        """A randomization spec centred on the estimate, ``width`` x the intervals wide.

        Each fitted scale and latency is uniform over its interval (scaled by ``width``
        about the estimate; a latency at least one substep either side); an unidentified
        scale is uniform over ``prior_range``; the noise level is fixed.
        """
        from sim2real.randomization import RandomizationSpec

        return RandomizationSpec.load(self.randomization_mapping(width))

    def randomization_mapping(self, width: float = 1.0) -> dict[str, dict[str, Any]]:
        """:meth:`randomization` as a plain mapping (the randomization YAML schema)."""
        if width < 0:
            raise ValueError(f"width must be >= 0, got {width}")
        nested: dict[str, dict[str, Any]] = {}
        substep = self.delay["substep_s"]
        for name, value in self.estimates.items():
            section, key = name.split(".")
            interval = self.intervals.get(name)
            if name in self.unidentified:
                low, high = self.prior_range
            elif isinstance(value, list) or interval is None:
                nested.setdefault(section, {})[key] = value
                continue
            else:
                below, above = value - interval[0], interval[1] - value
                if name in LATENCY_FIELDS:
                    below, above = max(below, substep), max(above, substep)
                low, high = value - width * below, value + width * above
                low = max(low, 0.0 if name in LATENCY_FIELDS else 1e-3)
            if high <= low:
                nested.setdefault(section, {})[key] = float(value)
            else:
                nested.setdefault(section, {})[key] = {
                    "dist": "uniform",
                    "low": round(float(low), 6),
                    "high": round(float(high), 6),
                }
        return nested

    @classmethod
    def from_dict(cls, report: dict[str, Any]) -> Calibration:
        """A calibration back from its ``report.json`` (traces are not kept there)."""
        if report.get("schema") != REPORT_SCHEMA:
            raise ValueError(f"calibration report: schema must be {REPORT_SCHEMA!r}")
        return cls(
            task=report["task"],
            fields=list(report["fields"]),
            estimates=dict(report["estimates"]),
            intervals={
                k: tuple(v) if v is not None else None for k, v in report["intervals"].items()
            },
            unidentified=list(report["unidentified"]),
            warnings=list(report["warnings"]),
            delay=dict(report["delay"]),
            residuals=dict(report["residuals"]),
            diagnostics=dict(report["diagnostics"]),
            prior_range=tuple(report.get("prior_range", (0.5, 1.5))),
            confidence=float(report["confidence"]),
        )

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (schema ``sim2real.calibration/1``)."""
        return {
            "schema": REPORT_SCHEMA,
            "task": self.task,
            "fields": self.fields,
            "estimates": self.estimates,
            "intervals": {k: list(v) if v is not None else None for k, v in self.intervals.items()},
            "confidence": self.confidence,
            "prior_range": list(self.prior_range),
            "unidentified": self.unidentified,
            "warnings": self.warnings,
            "delay": self.delay,
            "residuals": self.residuals,
            "diagnostics": self.diagnostics,
            "spec": self.spec.to_dict(),
        }

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The calibrated spec as YAML (the skew schema); written to ``path`` if given."""
        text = (
            f"# calibrated to logs of {self.task} by sim2real.calibrate; intervals in report.json\n"
            + yaml.safe_dump(self.spec.to_dict(), sort_keys=False)
        )
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        from sim2real.remedies.calibration_report import render_markdown

        return render_markdown(self.to_dict())

    def save(self, out: str | Path) -> Path:
        """Write ``report.json``, ``report.md``, ``calibration.yaml`` and ``traces.png``."""
        from sim2real.remedies.calibration_report import plot_traces

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(self.to_json() + "\n")
        (folder / "report.md").write_text(self.to_markdown())
        self.to_yaml(folder / "calibration.yaml")
        if self.traces:
            plot_traces(self.traces, self.task, folder / "traces.png")
        return folder


# ---------------------------------------------------------------------- calibrate
def calibrate(
    task: str,
    logs: LogSource,
    fields: Sequence[str] | None = None,
    *,
    window_steps: int | None = None,
    max_latency_s: float | None = None,
    threads: int = 1,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    **config: Any,
) -> Calibration:
    """Fit ``fields`` of ``task``'s skew spec so that the simulator reproduces ``logs``.

    Args:
        task: a built-in task whose observation is positions then velocities
            (Hopper, Walker2d, HalfCheetah, InvertedPendulum).
        logs: a log folder, :class:`~sim2real.remedies.record.Logs`, or a list of
            episodes (mappings with ``observations`` (T+1, obs_dim), ``actions`` (T, act_dim)).
        fields: dotted names out of :data:`FIELDS` (default: all); the others stay nominal.
        window_steps: control steps per window (default: the task's config).
        max_latency_s: the largest total latency searched, seconds.
        threads: MuJoCo rollout threads.
        seed: seeds the bootstrap.
        log: called with a line per stage (progress).
        config: further :class:`CalibrationConfig` overrides (``resamples``, ...).

    Raises:
        ValueError: bad logs or fields, in one line, before any fitting.
    """
    from sim2real.tasks import get_task

    spec_task = get_task(task)
    chosen = _check_fields(fields)
    cfg = CalibrationConfig.for_task(
        spec_task.name, window_steps=window_steps, max_latency_s=max_latency_s, **config
    )
    data = load_logs(logs, spec_task.name)
    say = log or (lambda _: None)
    started = time.perf_counter()
    model = PipelineModel(spec_task.name, threads=threads)
    try:
        if data.control_dt is not None and not math.isclose(data.control_dt, model.control_dt):
            raise ValueError(
                f"logs: control_dt {data.control_dt} s, but {spec_task.name} steps every "
                f"{model.control_dt} s"
            )
        episodes = [(e.observations, e.actions) for e in data.episodes]
        fitter = _Fitter(model, episodes, chosen, cfg, say)
        result = fitter.run()
    finally:
        model.close()
    result.diagnostics["time_s"] = round(time.perf_counter() - started, 2)
    result.diagnostics["seed"] = seed
    _add_intervals(result, fitter, cfg, np.random.default_rng(seed))
    say(f"calibrated {spec_task.name} in {result.diagnostics['time_s']} s")
    return result


def _check_fields(fields: Sequence[str] | None) -> list[str]:
    if fields is None:
        return list(FIELDS)
    if isinstance(fields, str):
        fields = [f.strip() for f in fields.split(",") if f.strip()]
    chosen = list(dict.fromkeys(fields))
    for name in chosen:
        if name not in FIELDS:
            raise ValueError(f"fields: {name!r} cannot be calibrated; allowed: {', '.join(FIELDS)}")
    if not chosen:
        raise ValueError(f"fields: give at least one of {', '.join(FIELDS)}")
    return chosen


class _Fitter:
    """The stages of one calibration (module docstring), sharing the model and windows."""

    def __init__(
        self,
        model: PipelineModel,
        episodes: list[tuple[np.ndarray, np.ndarray]],
        fields: list[str],
        cfg: CalibrationConfig,
        say: Callable[[str], None],
    ) -> None:
        self.model, self.episodes, self.fields, self.cfg, self.say = (
            model,
            episodes,
            fields,
            cfg,
            say,
        )
        self.free = [f for f in SCALE_FIELDS if f"dynamics.{f}" in fields]
        self.fit_obs = "timing.obs_latency_s" in fields
        self.fit_action = "timing.action_latency_s" in fields
        self.max_total = round(cfg.max_latency_s / model.substep_s)
        self.weights = np.ones(model.obs_dim)
        self.evals = 0
        self.dropped = 0
        self.profile: dict[int, float] = {}
        self.split_windows: dict[int, np.ndarray] = {}  # obs substeps -> cost per start window

    # ---------------------------------------------------------------- helpers
    def windows(self, delay: Delay) -> Windows:
        return build_windows(
            self.episodes,
            frame_skip=self.model.frame_skip,
            length=self.cfg.window_steps,
            delay=delay,
            exact=self.model.invert,
            clip_margin=self.cfg.clip_margin,
        )

    def problem(
        self, windows: Windows, free: list[str], fixed: dict[str, float]
    ) -> ShootingProblem:
        return ShootingProblem(self.model, windows, free, fixed, self.weights)

    def split(self, total: int, obs: int | None = None) -> Delay:
        """The delay for ``total`` substeps: all of it where only one latency is fitted."""
        if obs is not None:
            return Delay(obs, total - obs)
        if self.fit_obs and not self.fit_action:
            return Delay(total, 0)
        return Delay(0, total)

    def search_subset(self, windows: Windows) -> np.ndarray:
        """At most ``search_windows`` mid-episode windows, in runs of ``RUN`` consecutive ones
        spread evenly over the logs (a run lets :meth:`reseed` use each predecessor)."""
        middle = np.flatnonzero(~windows.at_start)
        if len(middle) == 0:
            middle = np.arange(len(windows))
        count = min(len(middle), self.cfg.search_windows)
        runs = max(1, count // RUN)
        firsts = np.linspace(0, len(middle) - RUN, runs).round().astype(int).clip(0)
        chosen = np.unique((firsts[:, None] + np.arange(RUN)).ravel().clip(0, len(middle) - 1))
        return middle[chosen[:count]]

    # ---------------------------------------------------------------- stages
    def scan_total(self, scales: dict[str, float]) -> dict[int, float]:
        """Cost of every total delay, from the logged starts, on the search subset."""
        costs = {}
        for total in range(self.max_total + 1):
            windows = self.windows(self.split(total))
            sub = windows.subset(self.search_subset(windows))
            problem = self.problem(sub, [], scales)
            costs[total] = problem.cost_at({})
            self.evals += 1
        return costs

    def search_total(self) -> tuple[int, dict[str, float], dict[int, float]]:
        """The total delay: a scan from the logged starts, the scales fitted at its best
        (held starts), repeated until it settles; then the neighbouring totals are fitted
        too and the best fit wins (a scan at wrong scales can be one substep off)."""
        scales = {f: 1.0 for f in self.free}
        if not (self.fit_obs or self.fit_action):
            windows = self.windows(self.split(0))
            sub = windows.subset(self.search_subset(windows))
            fit, kept, _, _ = self.robust_fit(sub, self.fit_subset(0, scales)[0])
            self.set_weights(fit.residuals / self.weights, kept)
            return 0, fit.scales, {0: 0.0}
        fitted: dict[int, tuple[float, dict[str, float]]] = {}
        for _ in range(4):
            costs = self.scan_total(scales)
            total = min(costs, key=costs.get)
            self.say(f"  delay scan: best total {total} substeps")
            if total in fitted:
                break
            scales, cost = self.fit_subset(total, scales)
            fitted[total] = (cost, scales)
        for _ in range(self.max_total + 1):
            for near in (total - 1, total + 1):
                if 0 <= near <= self.max_total and near not in fitted:
                    near_scales, cost = self.fit_subset(near, fitted[total][1])
                    fitted[near] = (cost, near_scales)
            best = min(fitted, key=lambda d: fitted[d][0])
            if best == total:
                break
            total = best
        windows = self.windows(self.split(total))
        sub = windows.subset(self.search_subset(windows))
        fit, kept, _, starts = self.robust_fit(sub, fitted[total][1])
        error = fit.residuals / self.weights
        self.set_weights(error, kept)
        mean = 0.5 * float(np.sum((error * self.weights) ** 2)) / max(len(kept), 1)
        total, scales = self.settle_total(total, (mean, mean * len(sub), fit.scales, starts))
        return total, scales, costs

    def settle_total(
        self, total: int, central: tuple[float, float, dict[str, float], np.ndarray]
    ) -> tuple[int, dict[str, float]]:
        """Free-start fits at the neighbouring totals decide (held starts carry the noise of
        the logged starts, which can hide a one-substep error); their costs give the
        delay's profile. Each neighbour starts from the fit at ``total`` (the same windows:
        their start states carry over)."""
        fits = {total: central}
        while True:
            for near in (total - 1, total + 1):
                if 0 <= near <= self.max_total and near not in fits:
                    fits[near] = self.free_cost(near, fits[total][2], fits[total][3])
            best = min(fits, key=lambda d: fits[d][0])
            if best == total:
                break
            total = best
        self.say(f"  delay settled: total {total} substeps")
        self.profile = {d: cost for d, (_, cost, _, _) in fits.items()}
        return total, fits[total][2]

    def free_cost(
        self, total: int, scales: dict[str, float], starts: np.ndarray
    ) -> tuple[float, float, dict[str, float], np.ndarray]:
        """``(mean cost per kept window, that mean x the subset's windows, scales, starts)``
        of a robust free-start fit on the search subset at ``total``, weights held."""
        windows = self.windows(self.split(total))
        sub = windows.subset(self.search_subset(windows))
        fit, kept, _, fitted = self.robust_fit(sub, scales, held_first=False, starts=starts)
        mean = fit.cost / max(len(kept), 1)
        return mean, mean * len(sub), fit.scales, fitted

    def fit_subset(self, total: int, scales: dict[str, float]) -> tuple[dict[str, float], float]:
        """Scales and cost fitted on the search subset at ``total``, start states held."""
        windows = self.windows(self.split(total))
        sub = windows.subset(self.search_subset(windows))
        if not self.free:
            return scales, self.problem(sub, [], scales).cost_at({})
        problem = self.problem(sub, self.free, {})
        fit = problem.solve(scales, max_iterations=self.cfg.max_iterations, free_starts=False)
        self.evals += problem.nevals
        return fit.scales, fit.cost

    def robust_fit(
        self,
        windows: Windows,
        scales: dict[str, float],
        held_first: bool = True,
        starts: np.ndarray | None = None,
    ) -> tuple[Fit, Windows, ShootingProblem, np.ndarray]:
        """Held starts (a cheap first pass, from far away), then free starts (from ``starts``,
        default the logged observations, first refined on shorter windows:
        :meth:`continue_starts`); windows whose fit stays far worse than the others' (a
        contact event the local search did not resolve) are dropped and the rest refitted,
        ``trim_rounds`` times. Returns the fit, the kept windows, their problem and every
        window's fitted start state."""
        cfg = self.cfg
        if self.free and held_first:
            problem = self.problem(windows, self.free, {})
            scales = problem.solve(
                scales, max_iterations=cfg.max_iterations, free_starts=False
            ).scales
            self.evals += problem.nevals
        if starts is None:
            starts = self.continue_starts(windows, scales)
        problem = self.problem(windows, self.free, {})
        fit = problem.solve(scales, starts, max_iterations=cfg.max_iterations)
        reseeded = self.reseed(windows, fit)
        if reseeded.any():  # the scales refitted with the improved starts
            fit = problem.solve(
                fit.scales,
                fit.starts,
                max_iterations=cfg.refit_iterations,
                local=fit.local,
                active=reseeded,
            )
        self.evals += problem.nevals
        fitted = fit.starts.copy()
        kept, index = windows, np.arange(len(windows))
        for _ in range(cfg.trim_rounds):
            keep = inliers(fit, kept, cfg.outlier_factor)
            if keep.all() or keep.sum() < max(2, len(windows) // 2):
                break
            kept, index = kept.subset(keep), index[keep]
            problem = self.problem(kept, self.free, {})
            fit = problem.solve(fit.scales, fit.starts[keep], max_iterations=cfg.refit_iterations)
            self.evals += problem.nevals
            self.dropped += int((~keep).sum())
            fitted[index] = fit.starts
        return fit, kept, problem, fitted

    def continue_starts(self, windows: Windows, scales: dict[str, float]) -> np.ndarray:
        """Start states fitted on the windows cut short, then lengthened (``continuation``).

        A start state read with noise can put a foot a centimetre into the floor, and over
        a whole window such an error grows into a trajectory whose cost surface has many
        basins: the search from the reading lands in the wrong one (measured on Walker2d:
        from the readings 45 of 98 windows ended more than 5 noise levels from the true
        state, at the true scales). Over a few steps the error has not grown yet; the start
        states fitted there (scales held) seed the next, longer windows.
        """
        starts = windows.targets[:, 0].copy()
        steps = self.cfg.window_steps
        for length in sorted(set(self.cfg.continuation)):
            if not 1 <= length < steps:
                continue
            problem = self.problem(windows.head(length, self.model.frame_skip), [], scales)
            starts = problem.solve({}, starts, max_iterations=self.cfg.max_iterations).starts
            self.evals += problem.nevals * length / steps
        return starts

    def reseed(self, windows: Windows, fit: Fit) -> np.ndarray:
        """Restart badly fitted windows from their predecessor's predicted end state.

        A noisy start reading can leave a window's start-state search in the wrong
        contact mode (a centimetre of penetration is a large force); the window before
        it, if well fitted, predicts the same instant from its whole window of readings.
        For each window above ``reseed_factor`` x the median cost whose predecessor is
        below it, the start states alone are refitted from that prediction (the scales
        held) and kept where the cost falls; repeated ``reseed_rounds`` times. ``fit`` is
        updated in place; returns which windows changed.
        """
        changed = np.zeros(len(windows), dtype=bool)
        if not len(windows) or self.cfg.reseed_rounds < 1:
            return changed
        flat = fit.residuals.reshape(len(windows), -1)
        costs = 0.5 * np.sum(flat**2, axis=1)
        keys = list(zip(windows.episode.tolist(), windows.start.tolist(), strict=True))
        index = {key: i for i, key in enumerate(keys)}
        step = self.cfg.window_steps
        predecessor = np.array([index.get((e, s - step), -1) for e, s in keys], dtype=int)
        shooting = self.problem(windows, [], fit.scales)
        for _ in range(self.cfg.reseed_rounds):
            limit = self.cfg.reseed_factor * np.median(costs)
            bad = np.flatnonzero((costs > limit) & (predecessor >= 0))
            bad = bad[costs[predecessor[bad]] <= limit]
            if not len(bad):
                break
            predicted = shooting.predicted({}, fit.starts)
            sub = self.problem(windows.subset(bad), [], fit.scales)
            local_fit = sub.solve({}, predicted[predecessor[bad], -1], max_iterations=12)
            self.evals += shooting.nevals + sub.nevals
            shooting.nevals = 0
            new = 0.5 * np.sum(local_fit.residuals.reshape(len(bad), -1) ** 2, axis=1)
            better = new < costs[bad]
            rows = bad[better]
            fit.starts[rows] = local_fit.starts[better]
            fit.residuals[rows] = local_fit.residuals[better]
            costs[rows] = new[better]
            changed[rows] = True
            if not better.any():
                break
        fit.cost = float(costs.sum())
        return changed

    def set_weights(self, error: np.ndarray, windows: Windows) -> None:
        """One over each dimension's noise level, estimated from fit residuals."""
        sigma = noise_levels(error, windows)
        self.weights = 1.0 / np.maximum(sigma, NOISE_FLOOR)

    def search_split(self, total: int, scales: dict[str, float]) -> tuple[Delay, dict[int, float]]:
        if not (self.fit_obs and self.fit_action):
            return self.split(total), {}
        costs: dict[int, float] = {}
        for obs in range(total + 1):
            windows = self.windows(Delay(obs, total - obs))
            start = windows.subset(windows.at_start)
            costs[obs] = self.problem(start, [], scales).cost_at({})
        best = sorted(costs, key=costs.get)[:3]
        refined = {}
        for obs in best:
            windows = self.windows(Delay(obs, total - obs))
            start = windows.subset(windows.at_start)
            problem = self.problem(start, [], scales)
            fit = problem.solve({}, max_iterations=20)
            refined[obs] = fit.cost
            self.split_windows[obs] = 0.5 * np.sum(fit.residuals**2, axis=(1, 2))
            self.evals += problem.nevals
        obs = min(refined, key=refined.get)
        self.say(f"  split: obs {obs}, action {total - obs} substeps")
        return Delay(obs, total - obs), refined

    def run(self) -> Calibration:
        total, scales, scan = self.search_total()
        delay, split_costs = self.search_split(total, scales)
        every = self.windows(delay)
        self.say(f"  final fit: {len(every)} windows, {len(self.free)} scales")
        self.dropped = 0
        fit, windows, problem, _ = self.robust_fit(every, scales, held_first=False)
        if self.free:  # the Jacobian at the solution itself, for the intervals
            theta = np.array([fit.scales[f] for f in self.free])
            flat = fit.residuals.reshape(len(windows), -1)
            fit.shared, fit.local = problem.jacobian(theta, fit.starts, flat)
        self.evals += problem.nevals
        self.final = (fit, windows, problem)
        profile = dict(self.profile)
        # both sims replay every window from its logged start; the nominal one without latency
        nominal_windows = self.windows(Delay(0, 0))
        nominal = self.problem(nominal_windows, [], {})
        calibrated = self.problem(every, [], fit.scales)
        calibrated_error = calibrated.predicted({}, every.targets[:, 0]) - every.targets
        nominal_error = nominal.predicted({}, nominal_windows.targets[:, 0]) - every.targets
        sigma = noise_levels(fit.residuals / self.weights, windows)
        estimates: dict[str, Any] = {f"dynamics.{k}": float(v) for k, v in fit.scales.items()}
        h = self.model.substep_s
        if self.fit_obs:
            estimates["timing.obs_latency_s"] = delay.obs * h
        if self.fit_action:
            estimates["timing.action_latency_s"] = delay.action * h
        if NOISE_FIELD in self.fields:
            estimates[NOISE_FIELD] = [float(s) if s > NOISE_FLOOR else 0.0 for s in sigma]
        traces = _traces(every, calibrated_error, nominal_error)
        return Calibration(
            task=self.model.task.name,
            fields=self.fields,
            estimates=estimates,
            intervals={},
            unidentified=[],
            warnings=[],
            delay={
                "obs_substeps": delay.obs,
                "action_substeps": delay.action,
                "total_substeps": delay.total,
                "substep_s": h,
                "frame_skip": self.model.frame_skip,
            },
            residuals={
                "calibrated": _rms(calibrated_error, every).tolist(),
                "nominal": _rms(nominal_error, every).tolist(),
            },
            diagnostics={
                "episodes": len(self.episodes),
                "steps": int(sum(len(a) for _, a in self.episodes)),
                "windows": len(windows),
                "windows_dropped": self.dropped,
                "window_steps": self.cfg.window_steps,
                "cost": fit.cost,
                "final_iterations": fit.iterations,
                "rollout_batches": round(self.evals, 1),
                "total_delay_scan": {int(k): float(v) for k, v in scan.items()},
                "total_delay_profile": profile,
                "split_costs": {int(k): float(v) for k, v in split_costs.items()},
            },
            prior_range=self.cfg.prior_range,
            confidence=self.cfg.confidence,
            traces=traces,
        )


def inliers(fit: Fit, windows: Windows, factor: float) -> np.ndarray:
    """Windows whose mean squared weighted residual is within ``factor`` x the median's."""
    dof = np.maximum(windows.mask.sum(axis=(1, 2)) - windows.targets.shape[2], 1)
    per = np.sum(fit.residuals**2, axis=(1, 2)) / dof
    return per <= factor * np.median(per) + 1e-6


def noise_levels(error: np.ndarray, windows: Windows) -> np.ndarray:
    """Each dimension's noise level (obs units) from fit errors, one start state per window
    taken off the degrees of freedom."""
    mask = windows.mask
    count = mask.sum(axis=(0, 1)) - len(windows)
    return np.sqrt(np.sum((error * mask) ** 2, axis=(0, 1)) / np.maximum(count, 1))


def split_range(
    window_costs: dict[int, np.ndarray], best: int, total: int, confidence: float
) -> tuple[int, int]:
    """The observation delays (substeps) that the episode-start windows cannot reject.

    A split is rejected when its windows fit worse than the best split's by more than a
    one-sided paired t-test allows (per-window cost differences, one start window per
    episode): the spread between windows, not the noise model, sets the scale, so a
    window left in the wrong contact mode widens the set instead of fooling it. If even
    the worst refined split is kept, any split may be right: ``(0, total)``.
    """
    if not window_costs:
        return best, best
    base = window_costs[best]
    inside = []
    for obs, costs in window_costs.items():
        diff = costs - base
        n = len(diff)
        if obs == best or n < 2:
            inside.append(obs)
            continue
        limit = stats.t.ppf(confidence, n - 1) * diff.std(ddof=1) / math.sqrt(n)
        if diff.mean() <= limit:
            inside.append(obs)
    if len(inside) == len(window_costs) and len(window_costs) < total + 1:
        return 0, total
    return min(inside), max(inside)


def profile_range(
    costs: dict[int, float], best: int, sigma2: float, allowed: float
) -> tuple[int, int]:
    """The offsets from ``best`` of the delays whose profile cost is within the likelihood-
    ratio bound: ``2 (c - c_best) / sigma2 < allowed`` (chi-square, 1 dof)."""
    inside = [d for d, c in costs.items() if 2 * (c - costs[best]) / sigma2 < allowed]
    return min(inside) - best, max(inside) - best


def _rms(error: np.ndarray, windows: Windows) -> np.ndarray:
    mask = windows.mask[:, 1:]
    return np.sqrt(
        np.sum((error[:, 1:] * mask) ** 2, axis=(0, 1)) / np.maximum(mask.sum((0, 1)), 1)
    )


def _traces(windows: Windows, calibrated: np.ndarray, nominal: np.ndarray) -> dict[str, np.ndarray]:
    """The first episode's first windows, for the plot."""
    chosen = np.flatnonzero(windows.episode == windows.episode[0])[:12]
    return {
        "start": windows.start[chosen],
        "logged": windows.targets[chosen],
        "calibrated": windows.targets[chosen] + calibrated[chosen],
        "nominal": windows.targets[chosen] + nominal[chosen],
    }


def _add_intervals(cal: Calibration, fitter: _Fitter, cfg: CalibrationConfig, rng) -> None:
    """Bootstrap intervals for the scales, the delay's profile for the latencies, chi-square
    for the noise level, and the unidentifiable fields."""
    fit, windows, _ = fitter.final
    k = len(fitter.free)
    n_episodes = len(fitter.episodes)
    alpha = 1 - cfg.confidence
    if k:
        info = information(fit, windows, n_episodes)
        estimate = np.array([fit.scales[f] for f in fitter.free])
        # the vanishing prior keeps a direction the data do not see at its prior variance
        inverse = np.linalg.inv(info.total + np.eye(k) / PRIOR_SD**2)
        gn_cov = info.sigma2 * inverse
        floor_cov = max(info.sigma2, 1.0) * inverse
        used = int(np.count_nonzero(np.abs(info.by_episode).sum(axis=(1, 2)) > 0))
        draws = bootstrap_scales(info, estimate, cfg.resamples, rng)
        spread = draws.std(axis=0, ddof=1)
        dof = np.maximum(windows.mask.sum(axis=(1, 2)) - windows.targets.shape[2], 1)
        shift = selection_shift(info, estimate, np.sum(fit.residuals**2, axis=(1, 2)) / dof)
        t = stats.t.ppf(1 - alpha / 2, max(used - 1, 1))
        cal.diagnostics["interval_method"] = (
            f"linearized bootstrap over {used} episodes ({cfg.resamples} resamples) and the "
            "shift when only the best-fitted windows count: estimate +- "
            f"t({max(used - 1, 1)}) x sqrt(bootstrap sd^2 + shift^2)"
        )
        cal.diagnostics["bootstrap_sd"] = {}
        cal.diagnostics["selection_shift"] = {}
        cal.diagnostics["interval_t"] = float(t)
        cal.diagnostics["gauss_newton_se"] = {}
        for i, name in enumerate(fitter.free):
            dotted = f"dynamics.{name}"
            se_floor = math.sqrt(max(floor_cov[i, i], 0.0))
            cal.diagnostics["gauss_newton_se"][dotted] = math.sqrt(max(gn_cov[i, i], 0.0))
            cal.diagnostics["bootstrap_sd"][dotted] = float(spread[i])
            cal.diagnostics["selection_shift"][dotted] = float(shift[i])
            if se_floor > cfg.identifiable_se or used < 2:
                why = (
                    f"its standard error is {se_floor:.2g}"
                    if used >= 2
                    else "fewer than 2 episodes cannot bound it"
                )
                cal.unidentified.append(dotted)
                cal.intervals[dotted] = None
                cal.warnings.append(
                    f"{dotted} is not identified by these logs ({why}); it is left nominal "
                    "in the spec (excite it more: e.g. for friction, make the feet slide)"
                )
            else:
                half = t * math.hypot(spread[i], shift[i])
                cal.intervals[dotted] = (estimate[i] - half, estimate[i] + half)
    h = fitter.model.substep_s
    profile = cal.diagnostics.get("total_delay_profile", {})
    if profile:
        best = cal.delay["total_substeps"]
        # free-start costs in units of the noise variance (the weights' own estimate)
        sigma2 = max(
            2 * fit.cost / max(int(np.count_nonzero(windows.mask)) - fit.starts.size, 1), 1e-12
        )
        allowed = stats.chi2.ppf(cfg.confidence, 1)
        lo, hi = profile_range(profile, best, sigma2, allowed)
        obs, action = cal.delay["obs_substeps"], cal.delay["action_substeps"]
        obs_lo, obs_hi = split_range(fitter.split_windows, obs, best, cfg.confidence)
        # the split's range, widened by the total's where the total is uncertain too
        ranges = {
            "timing.obs_latency_s": (obs_lo + min(lo, 0), obs_hi + max(hi, 0)),
            "timing.action_latency_s": (best + lo - obs_hi, best + hi - obs_lo),
        }
        fit_obs = "timing.obs_latency_s" in cal.estimates
        if not (fit_obs and "timing.action_latency_s" in cal.estimates):
            only = obs if fit_obs else action  # one latency fitted: it carries the total
            ranges = {name: (only + lo, only + hi) for name in ranges}
        for name, (low, high) in ranges.items():
            if name in cal.estimates:
                cal.intervals[name] = (max(0, low) * h, max(0, high) * h)
        if hi > lo:
            cal.warnings.append(
                f"the total latency is only known to {hi - lo + 1} substeps "
                f"({(best + lo) * h:g}-{(best + hi) * h:g} s)"
            )
    if NOISE_FIELD in cal.estimates:
        sigma = np.asarray(cal.estimates[NOISE_FIELD])
        count = max(int(np.count_nonzero(windows.mask)) // fitter.model.obs_dim - len(windows), 1)
        lo = math.sqrt(count / stats.chi2.ppf(1 - alpha / 2, count))
        hi = math.sqrt(count / stats.chi2.ppf(alpha / 2, count))
        level = float(np.sqrt(np.mean(sigma**2)))
        cal.diagnostics["noise_rms"] = level
        cal.diagnostics["noise_rms_interval"] = [level * lo, level * hi]
