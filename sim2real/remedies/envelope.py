"""Restrict: the operating envelope of a policy, certified region by region.

:func:`envelope` maps where, along one to three numeric skew fields (the other
fields fixed at ``base``), a policy keeps at least ``threshold`` of its sim
return, with a Clopper-Pearson guarantee per region (DESIGN.md section 7):

1. The policy's mean sim return is measured first, on the episode seeds the
   map draws from. An episode *succeeds* when its return is at least
   ``mean - (1 - threshold) * |mean|`` (``threshold * mean`` for a positive mean);
   a diverged episode fails.
2. The map is a set of cells over the axes' lattice (:mod:`.envelope_axes`).
   An episode of a cell runs at a lattice point and an episode seed drawn
   uniformly, without repetition, from the cell's points and the seeds, so a
   cell's success probability is that of a skew drawn uniformly from its
   points; when a cell is split, each child keeps the episodes that fell in it
   (still a uniform sample of the child). A cell is inside, outside or
   uncertain by :func:`~.envelope_stats.classify`.
3. Adaptive: a coarse grid first; then every round splits a cell in two along
   each axis across which it is inside and its neighbour outside (or the
   reverse), splits an undecided cell along every axis once it holds the
   zero-failure count of episodes without reaching ``success`` (one that looks
   uniform, its rate at least ``success``, gets up to twice that count first),
   splits an outside cell whose success rate is at least ``success / 2`` (it may
   hold an inside part), and gives an undecided cell the fewest episodes that
   could decide it, larger cells first. It stops when no cell can change, or at
   the budget.

Episodes run on any engine (:func:`sim2real.engines.run_workload`); with
``out`` they are written to ``episodes.jsonl`` as they end, and ``resume``
replays the same rounds, reading finished episodes back instead of running
them. The map's JSON schema is :data:`ENVELOPE_SCHEMA` (see :meth:`EnvelopeMap.to_json`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.remedies.envelope_axes import Axis, check_axes, with_value
from sim2real.remedies.envelope_cells import Cell, coarse_grid, neighbours
from sim2real.remedies.envelope_stats import (
    Status,
    classify,
    episodes_to_decide,
    lower_bound,
    upper_bound,
    zero_failure_episodes,
)
from sim2real.spec import SkewSpec, SkewSpecError

ENVELOPE_SCHEMA = "sim2real.envelope/1"
DEFAULT_SEEDS = range(100, 164)
DEFAULT_BUDGET = 2000
SIM_VARIANT = "sim"
FIRST_BATCH = 8  # episodes per coarse cell in the first round
MIN_BATCH = 4  # the fewest episodes a cell is given in one round

Point = tuple[int, ...]
_DISAGREE = {Status.INSIDE, Status.OUTSIDE}


# ==================================================================== the adaptive refinement
class Refinement:
    """The adaptive part of an envelope, over lattice indices only: cells, the episodes
    recorded in them, and which episodes to run next. Deterministic: the same results give
    the same requests.

    Args:
        sizes: the lattice size of each axis.
        seeds: the episode seeds to draw from.
        success, confidence: the certificate (see :mod:`.envelope_stats`).
        coarse: parts per axis of the starting grid.
        max_cell_episodes: the most episodes an undecided cell is given (default twice the
            zero-failure count, 58 for 0.9 at 95 %: about what decides a point whose
            success probability is below 0.8 or above 0.97).
        draw_seed: seeds the draws of points and episode seeds.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        seeds: Sequence[int],
        success: float,
        confidence: float,
        *,
        coarse: int = 4,
        max_cell_episodes: int | None = None,
        draw_seed: int = 0,
    ) -> None:
        self.sizes = tuple(sizes)
        self.seeds = tuple(seeds)
        self.success, self.confidence = success, confidence
        self.split_after = zero_failure_episodes(success, confidence)
        self.max_cell_episodes = max_cell_episodes or 2 * self.split_after
        self.draw_seed = draw_seed
        self.leaves: list[Cell] = coarse_grid(self.sizes, coarse)
        self.results: dict[tuple[Point, int], bool] = {}
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self.rounds = 0

    # ---------------------------------------------------------------- bookkeeping
    def record(self, point: Point, seed: int, ok: bool) -> None:
        """The outcome of the episode at lattice ``point`` with ``seed``."""
        if (point, seed) in self.results:
            return
        self.results[(point, seed)] = bool(ok)
        self._arrays = None

    def counts(self, cell: Cell) -> tuple[int, int]:
        """``(successes, episodes)`` of ``cell``."""
        if self._arrays is None:
            points = np.array([p for p, _ in self.results], dtype=int)
            self._arrays = (
                points.reshape(-1, len(self.sizes)),
                np.fromiter(self.results.values(), dtype=bool, count=len(self.results)),
            )
        points, ok = self._arrays
        held = cell.holds(points)
        return int(ok[held].sum()), int(held.sum())

    def status(self, cell: Cell) -> Status:
        return classify(*self.counts(cell), self.success, self.confidence)

    def capacity(self, cell: Cell) -> int:
        """Episodes the cell can hold: each of its points once per seed."""
        return cell.size * len(self.seeds)

    # ---------------------------------------------------------------- one round
    def target(self, cell: Cell, k: int, n: int) -> int:
        """How many episodes an undecided cell is given before it is split (or, when it
        cannot be split, left undecided): the zero-failure count; up to
        ``max_cell_episodes`` where it has that many and its success rate is at least
        ``success`` (it looks uniform: more episodes, not a split, decide it)."""
        limit = min(self.capacity(cell), self.max_cell_episodes)
        if not cell.splittable() or (n >= self.split_after and k >= self.success * n):
            return limit
        return min(self.split_after, limit)

    def plan(self) -> list[tuple[Point, int]]:
        """Split the cells that need it and return the episodes to run next, as
        ``(point, seed)``, larger cells first; an empty list when no cell can change."""
        self.rounds += 1
        if self.rounds > 1:
            while self._split():
                pass
        wanted = FIRST_BATCH if self.rounds == 1 else MIN_BATCH
        drawn: list[tuple[int, list[tuple[Point, int]]]] = []
        for cell in self.leaves:
            k, n = self.counts(cell)
            if classify(k, n, self.success, self.confidence) is not Status.UNCERTAIN:
                continue
            room = self.target(cell, k, n) - n
            if room <= 0:
                continue
            needed = episodes_to_decide(k, n, self.success, self.confidence, room)
            drawn.append((cell.size, self._draw(cell, n, min(room, max(needed, wanted)))))
        drawn.sort(key=lambda item: -item[0])  # stable: within a size, in cell order
        return [pair for _, pairs in drawn for pair in pairs]

    def _splits_alone(self, cell: Cell, status: Status, k: int, n: int) -> bool:
        """Whether a cell is split whatever its neighbours: undecided after its
        :meth:`target`, or outside with a success rate (at least ``success / 2``) that
        could come from an inside part."""
        if not cell.splittable():
            return False
        if status is Status.UNCERTAIN:
            return n >= self.target(cell, k, n)
        return status is Status.OUTSIDE and k >= self.success / 2 * n

    def _split(self) -> bool:
        """One pass of splits; whether any cell was split. A cell is split along every
        axis when it :meth:`splits alone <_splits_alone>`, and along each axis across which
        it is inside and a neighbour outside, or the reverse, once neither can change by
        more episodes (the boundary is drawn there)."""
        tallies = [self.counts(cell) for cell in self.leaves]
        statuses = [classify(k, n, self.success, self.confidence) for k, n in tallies]
        settled = [
            s is not Status.UNCERTAIN or n >= self.target(cell, k, n)
            for cell, s, (k, n) in zip(self.leaves, statuses, tallies, strict=True)
        ]
        touching = neighbours(self.leaves)
        new_leaves: list[Cell] = []
        changed = False
        for i, cell in enumerate(self.leaves):
            axes: set[int] = set()
            if self._splits_alone(cell, statuses[i], *tallies[i]):
                axes.update(cell.splittable())
            for j, axis in touching[i]:
                if settled[i] and settled[j] and {statuses[i], statuses[j]} == _DISAGREE:
                    axes.add(axis)
            axes &= set(cell.splittable())
            if axes:
                new_leaves.extend(cell.split(sorted(axes)))
                changed = True
            else:
                new_leaves.append(cell)
        self.leaves = sorted(new_leaves)
        return changed

    def _draw(self, cell: Cell, n: int, count: int) -> list[tuple[Point, int]]:
        """``count`` new ``(point, seed)`` pairs of ``cell``, uniformly without repetition."""
        free = [
            (point, seed)
            for point in cell.points()
            for seed in self.seeds
            if (point, seed) not in self.results
        ]
        rng = np.random.default_rng([self.draw_seed, n, *cell.lo, *cell.hi])
        chosen = rng.choice(len(free), size=min(count, len(free)), replace=False)
        return [free[i] for i in sorted(chosen)]


# ==================================================================== the map
@dataclass(frozen=True)
class CellResult:
    """One region of the map: lattice indices ``[lo, hi)``, its episodes and verdict."""

    lo: tuple[int, ...]
    hi: tuple[int, ...]
    episodes: int
    successes: int
    lower: float
    upper: float
    status: Status

    @property
    def cell(self) -> Cell:
        return Cell(self.lo, self.hi)


@dataclass
class EnvelopeMap:
    """Where a policy keeps its share of the sim return; see :func:`envelope`.

    Attributes:
        task: the task mapped.
        policy: ``{"label": ..., "id": ...}`` of the policy.
        axes: the axes, each with the values actually run.
        base: the other skew fields (nested mapping, non-nominal only).
        settings: threshold, success, confidence, seeds, budget, ...
        sim: the sim baseline: ``mean_return``, ``success_return``, ``episodes``.
        cells: the regions, covering the axes' box without overlap.
        points: per lattice point that ran episodes: ``index``, ``values``,
            ``episodes``, ``successes``.
        summary: episodes run, the area of each status, rounds, why it stopped.
    """

    task: str
    policy: dict[str, Any]
    axes: list[Axis]
    base: dict[str, Any]
    settings: dict[str, Any]
    sim: dict[str, Any]
    cells: list[CellResult]
    points: list[dict[str, Any]]
    summary: dict[str, Any]
    created: str = ""
    version: str = ""
    _grid: np.ndarray | None = field(default=None, repr=False, compare=False)

    # ---------------------------------------------------------------- queries
    def status_grid(self) -> np.ndarray:
        """The status of every lattice point (an array of :class:`Status` values, one axis
        per map axis)."""
        if self._grid is None:
            grid = np.empty(tuple(a.size for a in self.axes), dtype=object)
            for result in self.cells:
                grid[tuple(slice(lo, hi) for lo, hi in zip(result.lo, result.hi, strict=True))] = (
                    result.status
                )
            self._grid = grid
        return self._grid

    def area(self, status: Status | str = Status.INSIDE) -> float:
        """The share of the axes' box (each axis in its own spacing, linear or log) whose
        cells have ``status``: 0 to 1."""
        status = Status(status)
        edges = [axis.unit_edges() for axis in self.axes]
        return float(sum(r.cell.volume(edges) for r in self.cells if r.status is status))

    @property
    def area_inside(self) -> float:
        return self.area(Status.INSIDE)

    def contains(self, spec_or_box: Any) -> Status:
        """Whether a deployment is inside the envelope.

        Args:
            spec_or_box: a skew spec (a :class:`~sim2real.spec.SkewSpec`, a nested
                mapping, a YAML path or a preset name of the task), or a box
                ``{"section.field": (low, high)}`` (for example a calibration's
                intervals; an object with an ``intervals`` attribute is read as its
                box, an unidentified field, ``None``, as any value). Axis fields absent
                from a box take the value of ``base``.

        Returns:
            ``"inside"`` when every cell the spec or box meets is inside, ``"outside"``
            when every one is outside, ``"uncertain"`` otherwise, and ``"uncertain"``
            when it leaves the map: a value beyond an axis's range, or a field off the
            axes that differs from ``base`` (the map certifies nothing there).
        """
        box = _as_box(spec_or_box, self.task)
        base = SkewSpec.load(self.base).values()
        on_axes = {axis.field for axis in self.axes}
        for name, (low, high) in box.items():
            if name in on_axes:
                continue
            if name not in base:
                raise SkewSpecError(f"unknown skew field {name!r}")
            if not _matches(base[name], low, high):
                return Status.UNCERTAIN
        lo, hi = [], []
        for axis in self.axes:
            low, high = box.get(axis.field, (base[axis.field], base[axis.field]))
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high)):
                return Status.UNCERTAIN  # per-dimension values, or unidentified
            found = axis.index_range(float(low), float(high))
            if found is None:
                return Status.UNCERTAIN
            lo.append(found[0])
            hi.append(found[1])
        statuses = {r.status for r in self.cells if r.cell.meets(lo, hi)}
        return statuses.pop() if len(statuses) == 1 else Status.UNCERTAIN

    # ---------------------------------------------------------------- serialization
    def to_dict(self) -> dict[str, Any]:
        """The map as data, in the schema :data:`ENVELOPE_SCHEMA`:

        ``schema``, ``task``, ``policy`` {label, id}, ``created``, ``version``;
        ``settings`` {threshold, success, confidence, seeds, budget, resolution,
        coarse, max_episode_steps, engine}; ``base`` (the fixed skews, nested);
        ``axes`` [{field, unit, low, high, scale, values (run), edges (cell
        bounds), substep_s, substeps (latency axes)}]; ``sim`` {mean_return,
        success_return, episodes}; ``cells`` [{lo, hi (lattice indices,
        half-open), bounds [[low, high] per axis, field units], episodes,
        successes, lower, upper (one-sided Clopper-Pearson bounds at
        ``confidence``), status}]; ``points`` [{index, values, episodes,
        successes}]; ``summary`` {episodes, sim_episodes, map_episodes,
        area_inside, area_outside, area_uncertain, rounds, stopped}.
        """
        edges = [axis.edges() for axis in self.axes]
        return {
            "schema": ENVELOPE_SCHEMA,
            "task": self.task,
            "policy": self.policy,
            "created": self.created,
            "version": self.version,
            "settings": self.settings,
            "base": self.base,
            "axes": [axis.to_dict() for axis in self.axes],
            "sim": self.sim,
            "cells": [
                {
                    "lo": list(r.lo),
                    "hi": list(r.hi),
                    "bounds": [
                        [float(e[lo]), float(e[hi])]
                        for e, lo, hi in zip(edges, r.lo, r.hi, strict=True)
                    ],
                    "episodes": r.episodes,
                    "successes": r.successes,
                    "lower": r.lower,
                    "upper": r.upper,
                    "status": r.status.value,
                }
                for r in self.cells
            ],
            "points": self.points,
            "summary": self.summary,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvelopeMap:
        if data.get("schema") != ENVELOPE_SCHEMA:
            raise ValueError(
                f"not an envelope map: schema {data.get('schema')!r}, expected {ENVELOPE_SCHEMA}"
            )
        return cls(
            task=data["task"],
            policy=dict(data["policy"]),
            axes=[Axis.from_dict(a) for a in data["axes"]],
            base=dict(data["base"]),
            settings=dict(data["settings"]),
            sim=dict(data["sim"]),
            cells=[
                CellResult(
                    tuple(c["lo"]),
                    tuple(c["hi"]),
                    int(c["episodes"]),
                    int(c["successes"]),
                    float(c["lower"]),
                    float(c["upper"]),
                    Status(c["status"]),
                )
                for c in data["cells"]
            ],
            points=list(data["points"]),
            summary=dict(data["summary"]),
            created=data.get("created", ""),
            version=data.get("version", ""),
        )

    @classmethod
    def load(cls, path: str | Path) -> EnvelopeMap:
        """A map saved by :meth:`save` (``envelope.json``, or the folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / ENVELOPE_FILE
        return cls.from_dict(json.loads(path.read_text()))

    def to_markdown(self) -> str:
        from sim2real.remedies.envelope_report import to_markdown

        return to_markdown(self)

    def save(self, out: str | Path) -> list[Path]:
        """Write ``envelope.json``, ``report.md`` and the plots into ``out``."""
        from sim2real.remedies.envelope_report import save_report

        return save_report(self, Path(out))


ENVELOPE_FILE = "envelope.json"


def _as_box(spec_or_box: Any, task: str) -> dict[str, tuple[Any, Any]]:
    """``{field: (low, high)}`` from a box, an object with ``intervals`` (an unidentified
    field, ``None``, may be anything), a spec, or a preset name of ``task``."""
    intervals = getattr(spec_or_box, "intervals", None)
    if intervals is not None and not isinstance(spec_or_box, Mapping):
        spec_or_box = intervals
    if (
        isinstance(spec_or_box, Mapping)
        and spec_or_box
        and all(isinstance(k, str) and "." in k for k in spec_or_box)
    ):
        return {name: _interval(name, value) for name, value in spec_or_box.items()}
    if isinstance(spec_or_box, str) and not Path(spec_or_box).suffix:
        from sim2real.tasks import get_task

        spec = get_task(task).preset(spec_or_box)
    else:
        spec = SkewSpec.load(spec_or_box)
    return {name: (value, value) for name, value in spec.values().items()}


def _interval(name: str, value: Any) -> tuple[float, float]:
    if value is None:
        return -math.inf, math.inf
    if isinstance(value, Mapping):
        value = (value["low"], value["high"])
    elif hasattr(value, "low") and hasattr(value, "high"):
        value = (value.low, value.high)
    elif isinstance(value, (int, float)):
        value = (value, value)
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"box {name}: low must be <= high, got {low:g}:{high:g}")
    return low, high


def _matches(base_value: Any, low: Any, high: Any) -> bool:
    """Whether a field off the axes, at ``base_value`` in the map, is what ``[low, high]`` asks."""
    if isinstance(base_value, list) or isinstance(low, list):
        return low == high == base_value
    if base_value is None or low is None:
        return base_value == low == high
    return low == high == float(base_value)


# ==================================================================== envelope()
@dataclass(frozen=True)
class _Setup:
    task: str
    axes: list[Axis]
    base: SkewSpec
    seeds: list[int]
    threshold: float
    success: float
    confidence: float
    budget: int
    coarse: int
    resolution: int
    max_episode_steps: int | None
    n_envs: int
    reference_return: float | None = None


def envelope(
    policy: Any,
    task: str,
    axes: Mapping[str, Sequence[Any]],
    threshold: float = 0.8,
    success: float = 0.9,
    confidence: float = 0.95,
    base: Any = "default",
    *,
    budget: int = DEFAULT_BUDGET,
    seeds: Iterable[int] = DEFAULT_SEEDS,
    engine: Any = "local",
    out: str | Path | None = None,
    resume: bool = False,
    resolution: int = 16,
    coarse: int = 4,
    max_episode_steps: int | None = None,
    n_envs: int = 32,
    progress: bool | None = None,
    reference_return: float | None = None,
) -> EnvelopeMap:
    """Map where ``policy`` keeps ``threshold`` of its sim return on ``task``, certified.

    Args:
        policy: one policy, in any form the evaluator takes (a training output folder,
            a ``.zip``, a loaded SB3 model, a callable ``obs_batch -> action_batch``).
        task: a built-in task name (``"Hopper"``) or a Gymnasium id.
        axes: one to three numeric skew fields and their ranges:
            ``{"timing.obs_latency_s": (0.0, 0.05), "dynamics.mass_scale": (0.5, 2, "log")}``.
        threshold: an episode succeeds when its return is at least this share of the
            policy's mean sim return (``mean - (1 - threshold) * |mean|``).
        success: a region is inside when its success probability is at least this ...
        confidence: ... with this confidence (one-sided Clopper-Pearson).
        base: the other skew fields: a preset name of the task (``"default"``), ``None``
            (nominal), a mapping, a spec or a YAML path. Its values on the axes are replaced.
        budget: the most episodes the map may run (the sim baseline not counted).
        seeds: the episode seeds; the sim baseline runs each once, the map draws from them.
        engine: ``"local"``, ``"batch"``, ``"ray"`` or an engine object.
        out: a folder for ``episodes.jsonl`` (as episodes end), ``envelope.json``,
            ``report.md`` and the plots.
        resume: continue the episodes in ``out``; nothing finished runs again.
        resolution: lattice values per axis (the finest cells; fewer on a latency axis
            whose range holds fewer whole substeps).
        coarse: parts per axis of the starting grid.
        max_episode_steps: shorter episodes than the task's own time limit.
        n_envs: sub-envs stepped side by side.
        progress: show progress (default: a bar on a terminal, lines in a log).
        reference_return: the return ``threshold`` applies to, instead of this policy's
            own mean sim return (still measured and reported): e.g. the sim-trained
            policy's sim return, to hold several policies to one bar.

    Raises:
        ValueError: (including :class:`~sim2real.spec.SkewSpecError`) for bad input, in one
            line, before any episode runs.
    """
    from sim2real.engines import check_engine, get_engine
    from sim2real.evaluation.gap import _builtin_task, _check_counts, _seed_list
    from sim2real.evaluation.policy import check_fits, resolve_policies
    from sim2real.evaluation.store import EpisodeStore
    from sim2real.pairing import resolve_spec

    _check_probability("threshold", threshold, closed=True)
    _check_probability("success", success)
    _check_probability("confidence", confidence)
    _check_counts(budget=budget, n_envs=n_envs, coarse=coarse)
    if max_episode_steps is not None:
        _check_counts(max_episode_steps=max_episode_steps)
    if reference_return is not None and not (
        isinstance(reference_return, (int, float)) and np.isfinite(reference_return)
    ):
        raise ValueError(f"reference_return must be a finite number, got {reference_return!r}")
    engine = check_engine(engine)
    builtin = _builtin_task(task)
    seed_list = _seed_list(seeds)
    base_spec = resolve_spec(builtin, base)
    check_axes(axes, base_spec, resolution=resolution)  # the schema, before building anything
    probe = _probe_env(task, max_episode_steps)
    try:
        substep_s = float(probe.unwrapped.model.opt.timestep)
        checked = check_axes(axes, base_spec, resolution=resolution, substep_s=substep_s)
        sources = resolve_policies(policy)
        if len(sources) != 1:
            raise ValueError(
                f"envelope maps one policy, got {len(sources)}; use compare_envelopes for several"
            )
        observations = np.stack([probe.reset(seed=s)[0] for s in (seed_list[0], seed_list[-1])])
        check_fits(sources[0], probe, observations)
    finally:
        probe.close()
    source = sources[0]
    in_process = isinstance(engine, str) and engine in ("local", "batch")
    shipped = source if in_process else source.portable()
    built = {0: source.build(n_envs)} if engine == "local" else None
    runner = get_engine(engine, policies=built)
    setup = _Setup(
        task,
        checked,
        base_spec,
        seed_list,
        float(threshold),
        float(success),
        float(confidence),
        int(budget),
        int(coarse),
        int(resolution),
        max_episode_steps,
        int(n_envs),
        None if reference_return is None else float(reference_return),
    )
    header = json.loads(
        json.dumps(
            {
                "task": task,
                "max_episode_steps": max_episode_steps,
                "envelope": {"axes": [a.to_dict() for a in checked], "base": base_spec.to_dict()},
            }
        )
    )
    store = EpisodeStore(Path(out) if out is not None else None, header, resume=resume)
    try:
        result = _Mapper(setup, source, shipped, runner, store, progress).run()
    finally:
        store.close()
    result.settings["engine"] = engine if isinstance(engine, str) else type(engine).__name__
    if out is not None:
        result.save(out)
    return result


def _check_probability(name: str, value: Any, *, closed: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = 0 < value <= 1 if closed else 0 < value < 1
    if not ok:
        allowed = "in (0, 1]" if closed else "strictly between 0 and 1"
        raise ValueError(f"{name} must be a number {allowed}, got {value!r}")


def _probe_env(task: str, max_episode_steps: int | None) -> Any:
    from sim2real.engines import make_env

    return make_env(task, {}, max_episode_steps)


def point_key(point: Point) -> str:
    """The variant key of a lattice point in ``episodes.jsonl``: its indices, e.g. ``"3,7"``."""
    return ",".join(str(i) for i in point)


class _Mapper:
    """Runs the rounds of one map: the sim baseline, then the refinement's requests."""

    def __init__(
        self,
        setup: _Setup,
        source: Any,
        shipped: Any,
        runner: Any,
        store: Any,
        progress: bool | None,
    ) -> None:
        self.setup, self.source, self.shipped = setup, source, shipped
        self.runner, self.store, self.progress = runner, store, progress
        self.ran = 0

    def run(self) -> EnvelopeMap:
        from sim2real.cli_options import Progress

        setup = self.setup
        with Progress(
            len(setup.seeds), f"envelope {setup.task}: sim baseline", enabled=self.progress
        ) as bar:
            sim = self._episodes([(SIM_VARIANT, s) for s in setup.seeds], {}, bar.update)
        returns = np.array([sim[(SIM_VARIANT, s)] for s in setup.seeds])
        mean = float(np.nanmean(returns)) if np.isfinite(returns).any() else float("nan")
        if not np.isfinite(mean):
            raise RuntimeError("every sim episode diverged: the policy has no sim return to keep")
        reference = mean if setup.reference_return is None else setup.reference_return
        bar_return = reference - (1 - setup.threshold) * abs(reference)
        refinement = Refinement(
            [a.size for a in setup.axes],
            setup.seeds,
            setup.success,
            setup.confidence,
            coarse=setup.coarse,
        )
        used, stopped = 0, "decided"
        with Progress(setup.budget, f"envelope {setup.task}", enabled=self.progress) as bar:
            while True:
                requests = refinement.plan()
                if not requests:
                    break
                if used + len(requests) > setup.budget:
                    requests = requests[: setup.budget - used]
                    stopped = "budget"
                jobs = [(point_key(p), s) for p, s in requests]
                specs = {point_key(p): self._spec(p) for p, _ in requests}
                got = self._episodes(jobs, specs, bar.update)
                for point, seed in requests:
                    ret = got[(point_key(point), seed)]
                    refinement.record(point, seed, bool(np.isfinite(ret) and ret >= bar_return))
                used += len(requests)
                if used >= setup.budget:
                    stopped = "budget"
                    break
        return self._result(refinement, returns, mean, bar_return, used, stopped)

    def _spec(self, point: Point) -> dict[str, Any]:
        axes = self.setup.axes
        values = {axis.field: axis.values[i] for axis, i in zip(axes, point, strict=True)}
        return with_value(self.setup.base, values).to_dict()

    def _episodes(
        self,
        jobs: Sequence[tuple[str, int]],
        specs: Mapping[str, Mapping[str, Any]],
        tick: Callable[[int], None],
    ) -> dict[tuple[str, int], float]:
        """The return of each ``(variant, seed)`` job (NaN when diverged): from the store,
        or run on the engine and stored."""
        from sim2real.engines import Workload, plan_lanes, run_workload

        identity = self.source.identity
        done = {
            (v, s): self.store.episodes[(identity, v, s)]
            for v, s in jobs
            if (identity, v, s) in self.store
        }
        if done:
            tick(len(done))
        pending = [(0, v, s) for v, s in jobs if (v, s) not in done]
        if pending:
            n_envs = self.setup.n_envs
            # One lane per lattice point (up to 8 seeds): its env is built once per round.
            lanes = plan_lanes(sorted(pending), 8)
            variant_specs = dict(specs)
            variant_specs.setdefault(SIM_VARIANT, {})
            workload = Workload(
                task=self.setup.task,
                specs={v: variant_specs[v] for v in {lane.variant for lane in lanes}},
                policies=(self.shipped,),
                lanes=lanes,
                max_episode_steps=self.setup.max_episode_steps,
                n_envs=n_envs,
            )

            def on_episode(episode: Any) -> None:
                key = (episode.variant, episode.seed)
                if key in done:
                    return
                self.store.add(episode)
                done[key] = episode
                self.ran += 1
                tick(1)

            run_workload(workload, engine=self.runner, on_episode=on_episode)
        return {key: (float("nan") if done[key].diverged else float(done[key].ret)) for key in jobs}

    def _result(
        self,
        refinement: Refinement,
        returns: np.ndarray,
        mean: float,
        bar_return: float,
        used: int,
        stopped: str,
    ) -> EnvelopeMap:
        import sim2real

        setup = self.setup
        cells = []
        for cell in refinement.leaves:
            k, n = refinement.counts(cell)
            cells.append(
                CellResult(
                    cell.lo,
                    cell.hi,
                    n,
                    k,
                    lower_bound(k, n, setup.confidence),
                    upper_bound(k, n, setup.confidence),
                    classify(k, n, setup.success, setup.confidence),
                )
            )
        tally: dict[Point, list[int]] = {}
        for (point, _), ok in refinement.results.items():
            counts = tally.setdefault(point, [0, 0])
            counts[0] += int(ok)
            counts[1] += 1
        points = [
            {
                "index": list(point),
                "values": [a.values[i] for a, i in zip(setup.axes, point, strict=True)],
                "episodes": n,
                "successes": k,
            }
            for point, (k, n) in sorted(tally.items())
        ]
        env_map = EnvelopeMap(
            task=setup.task,
            policy={"label": self.source.label, "id": self.source.identity},
            axes=setup.axes,
            base=setup.base.to_dict(),
            settings={
                "threshold": setup.threshold,
                "success": setup.success,
                "confidence": setup.confidence,
                "seeds": setup.seeds,
                "budget": setup.budget,
                "resolution": setup.resolution,
                "coarse": setup.coarse,
                "max_episode_steps": setup.max_episode_steps,
                "success_rule": "return >= reference - (1 - threshold) * |reference|, the "
                "reference being the mean sim return unless reference_return is given; "
                "a diverged episode fails",
                "reference_return": setup.reference_return,
                "region_probability": "success probability of an episode at a lattice point "
                "and seed drawn uniformly from the region's",
                "bounds": "one-sided Clopper-Pearson, each at confidence",
            },
            sim={
                "mean_return": mean,
                "success_return": bar_return,
                "episodes": len(returns),
                "diverged": int((~np.isfinite(returns)).sum()),
            },
            cells=cells,
            points=points,
            summary={},
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            version=sim2real.__version__,
        )
        env_map.summary = {
            "episodes": used + len(returns),
            "sim_episodes": len(returns),
            "map_episodes": used,
            "episodes_run": self.ran,
            "area_inside": env_map.area(Status.INSIDE),
            "area_outside": env_map.area(Status.OUTSIDE),
            "area_uncertain": env_map.area(Status.UNCERTAIN),
            "cells": len(cells),
            "rounds": refinement.rounds - (stopped == "decided"),  # the last found no work
            "stopped": stopped,
        }
        return env_map


# ==================================================================== comparing policies
@dataclass
class EnvelopeComparison:
    """Several policies mapped on the same axes, base and certificate."""

    maps: dict[str, EnvelopeMap]

    def areas(self) -> dict[str, float]:
        """The area inside of each policy's map (share of the mapped box)."""
        return {name: env_map.area_inside for name, env_map in self.maps.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": COMPARISON_SCHEMA,
            "policies": {
                name: {
                    "policy": m.policy,
                    "mean_sim_return": m.sim["mean_return"],
                    "success_return": m.sim["success_return"],
                    "area_inside": m.area(Status.INSIDE),
                    "area_outside": m.area(Status.OUTSIDE),
                    "area_uncertain": m.area(Status.UNCERTAIN),
                    "episodes": m.summary["episodes"],
                }
                for name, m in self.maps.items()
            },
        }

    def to_markdown(self) -> str:
        first = next(iter(self.maps.values()))
        axes = " x ".join(f"{a.field} {a.low:g}-{a.high:g}" for a in first.axes)
        lines = [
            f"# Operating envelopes on {first.task}: {axes}",
            "",
            "Each policy's episodes succeed at the success return shown: a threshold share of "
            "its own mean sim return, or of a common reference return. Compare the sim "
            "returns too: a policy that earns little in sim keeps little easily.",
            "",
            "| policy | mean sim return | success return | inside | outside | uncertain | "
            "episodes |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, m in self.maps.items():
            lines.append(
                f"| {name} | {m.sim['mean_return']:.1f} | {m.sim['success_return']:.1f} | "
                f"{m.area(Status.INSIDE):.1%} | {m.area(Status.OUTSIDE):.1%} | "
                f"{m.area(Status.UNCERTAIN):.1%} | {m.summary['episodes']} |"
            )
        return "\n".join(lines) + "\n"

    def save(self, out: str | Path) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        (out / "comparison.md").write_text(self.to_markdown())


COMPARISON_SCHEMA = "sim2real.envelope_comparison/1"


def compare_envelopes(
    policies: Mapping[str, Any] | Sequence[Any],
    task: str,
    axes: Mapping[str, Sequence[Any]],
    *,
    out: str | Path | None = None,
    common_reference: bool = False,
    **options: Any,
) -> EnvelopeComparison:
    """Map each policy with :func:`envelope` on the same axes and settings (``options``) and
    compare their areas inside. ``policies``: ``{name: policy}``, or a sequence (named
    ``policy0``, ``policy1``, ...). With ``out``, each map goes to ``out/<name>/`` and the
    comparison to ``out/comparison.json`` and ``comparison.md``. With ``common_reference``
    every policy is held to the first one's mean sim return (``reference_return``), not to
    its own: a policy that earns little in sim then cannot look robust by keeping little."""
    named = (
        dict(policies)
        if isinstance(policies, Mapping)
        else {f"policy{i}": p for i, p in enumerate(policies)}
    )
    if not named:
        raise ValueError("policies is empty; give at least one policy")
    maps = {}
    for name, policy in named.items():
        where = None if out is None else Path(out) / name.replace("/", "_")
        maps[name] = envelope(policy, task, axes, out=where, **options)
        if common_reference and "reference_return" not in options:
            options["reference_return"] = maps[name].sim["mean_return"]
    comparison = EnvelopeComparison(maps)
    if out is not None:
        comparison.save(out)
    return comparison
