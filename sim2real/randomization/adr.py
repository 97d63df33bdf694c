"""Automatic domain randomization (OpenAI et al. 2019) as a source of points.

Each field's range starts at its nominal value and moves, side by side, between
nominal and a limit set in the config. With probability ``boundary_prob`` an episode
pins one side of one field at its current boundary (the others drawn uniformly in
their ranges); that episode's return goes into the side's performance buffer. When a
buffer holds ``buffer_size`` returns, their mean decides: at or above
``high_threshold`` the side widens by ``step`` (a fraction of the distance from nominal
to the limit), below ``low_threshold`` it narrows by one, and the buffer empties.

:class:`AdrState` is that state machine, pure and serializable (checkpoints and the
policy's metadata keep it); :class:`AdrSource` gives one env's points
(``draw(rng) -> point``) and takes back its returns; :class:`AdrEnv` is the training env.

Config (``configs/adr/<task>.yaml``)::

    task: Hopper
    boundary_prob: 0.5         # share of episodes that test a boundary
    buffer_size: 10            # boundary episodes per decision
    thresholds: {low: 800, high: 2000}   # raw episode return
    step: 0.1                  # default step, fraction of nominal -> limit
    fields:
      dynamics.friction_scale: {low: 0.5, high: 1.25}
      sensing.noise_std: {high: [0.006, 0.03, ...]}   # a side absent: not randomized
      timing.obs_latency_s: {high: 0.05, step: 0.05}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml

from sim2real.spec import FIELDS, SkewSpec

SIDES = ("low", "high")


@dataclass(frozen=True)
class AdrField:
    """One randomized field: its nominal value and how far each side may go.

    Attributes:
        name: ``"section.field"``.
        nominal: the value at which it changes nothing.
        low, high: the limits of each side (``None``: that side stays at nominal);
            a list for a per-dimension field.
        step: a widening step, as a fraction of the distance nominal -> limit.
    """

    name: str
    nominal: float
    low: float | tuple[float, ...] | None
    high: float | tuple[float, ...] | None
    step: float

    def limit(self, side: str) -> np.ndarray | None:
        value = self.low if side == "low" else self.high
        return None if value is None else np.asarray(value, dtype=float)

    def bound(self, side: str, progress: float) -> np.ndarray | float:
        """The side's current boundary at ``progress`` in [0, 1]."""
        limit = self.limit(side)
        if limit is None:
            return self.nominal
        return self.nominal + progress * (limit - self.nominal)


def _nominal(name: str) -> float:
    from sim2real.training.asymmetric import nominal_of

    return nominal_of(name)


@dataclass(frozen=True)
class AdrConfig:
    """An ADR configuration (module doc); :meth:`load` checks it."""

    task: str
    fields: tuple[AdrField, ...]
    boundary_prob: float = 0.5
    buffer_size: int = 10
    low_threshold: float = 0.0
    high_threshold: float = 0.0

    @classmethod
    def load(cls, source: AdrConfig | Mapping[str, Any] | str | Path) -> AdrConfig:
        if isinstance(source, AdrConfig):
            return source
        where = "ADR config"
        if isinstance(source, (str, Path)):
            where = f"ADR config {str(source)!r}"
            if not Path(source).is_file():
                raise ValueError(f"{where}: no such file")
            source = yaml.safe_load(Path(source).read_text()) or {}
        if not isinstance(source, Mapping):
            raise ValueError(f"{where} must be a mapping")
        allowed = {
            "task",
            "boundary_prob",
            "buffer_size",
            "thresholds",
            "step",
            "fields",
            "description",
        }
        unknown = sorted(set(source) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")
        thresholds = source.get("thresholds") or {}
        if not {"low", "high"} <= set(thresholds) or thresholds["low"] > thresholds["high"]:
            raise ValueError(f"{where}: thresholds must be {{low: L, high: H}} with L <= H")
        p_b = float(source.get("boundary_prob", 0.5))
        if not 0.0 < p_b <= 1.0:
            raise ValueError(f"{where}: boundary_prob must be in (0, 1], got {p_b}")
        buffer_size = source.get("buffer_size", 10)
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError(f"{where}: buffer_size must be a positive integer")
        step = float(source.get("step", 0.1))
        fields = []
        for name, entry in (source.get("fields") or {}).items():
            if name not in FIELDS or name == "dynamics.gravity":
                raise ValueError(f"{where}: unknown field {name!r}; allowed: {', '.join(FIELDS)}")
            entry = dict(entry or {})
            extra = sorted(set(entry) - {"low", "high", "step"})
            if extra or not ({"low", "high"} & set(entry)):
                raise ValueError(f"{where}: field {name} takes low and/or high limits and step")
            limits = {
                side: tuple(float(v) for v in entry[side])
                if isinstance(entry.get(side), list)
                else (None if entry.get(side) is None else float(entry[side]))
                for side in SIDES
            }
            field_step = float(entry.get("step", step))
            if not 0.0 < field_step <= 1.0:
                raise ValueError(f"{where}: field {name}: step must be in (0, 1]")
            fields.append(AdrField(name, _nominal(name), limits["low"], limits["high"], field_step))
        if not fields:
            raise ValueError(f"{where}: no fields")
        return cls(
            task=str(source.get("task", "")),
            fields=tuple(fields),
            boundary_prob=p_b,
            buffer_size=buffer_size,
            low_threshold=float(thresholds["low"]),
            high_threshold=float(thresholds["high"]),
        )

    def new_state(self) -> AdrState:
        return AdrState(self)


@dataclass
class AdrState:
    """Every side's progress (0 = nominal, 1 = the limit) and performance buffer."""

    config: AdrConfig
    progress: dict[str, float] = field(default_factory=dict)
    buffers: dict[str, list[float]] = field(default_factory=dict)
    changes: int = 0

    def __post_init__(self) -> None:
        for side in self.sides:
            self.progress.setdefault(side, 0.0)
            self.buffers.setdefault(side, [])

    @property
    def sides(self) -> list[str]:
        """``"<field>:<side>"`` for every side that may move."""
        return [
            f"{f.name}:{side}"
            for f in self.config.fields
            for side in SIDES
            if f.limit(side) is not None
        ]

    def _field(self, name: str) -> AdrField:
        return next(f for f in self.config.fields if f.name == name)

    def bounds(self, name: str) -> tuple[Any, Any]:
        """The current range of field ``name``: (low, high)."""
        f = self._field(name)
        return (
            f.bound("low", self.progress.get(f"{name}:low", 0.0)),
            f.bound("high", self.progress.get(f"{name}:high", 0.0)),
        )

    def sample(self, rng: np.random.Generator) -> tuple[dict[str, Any], str | None]:
        """One episode's values by field, and the side it tests (or None)."""
        boundary = None
        if rng.random() < self.config.boundary_prob and self.sides:
            boundary = self.sides[int(rng.integers(len(self.sides)))]
        values: dict[str, Any] = {}
        for f in self.config.fields:
            low, high = (np.asarray(b, dtype=float) for b in self.bounds(f.name))
            value = rng.uniform(np.minimum(low, high), np.maximum(low, high))
            if boundary is not None and boundary.startswith(f"{f.name}:"):
                value = low if boundary.endswith(":low") else high
            values[f.name] = value.tolist() if np.ndim(value) else float(value)
        return values, boundary

    def report(self, boundary: str | None, episode_return: float) -> int:
        """Add a boundary episode's return; +1 when its side widened, -1 narrowed, else 0."""
        if boundary is None:
            return 0
        buffer = self.buffers[boundary]
        buffer.append(float(episode_return))
        if len(buffer) < self.config.buffer_size:
            return 0
        mean = float(np.mean(buffer))
        buffer.clear()
        step = self._field(boundary.split(":")[0]).step
        before = self.progress[boundary]
        if mean >= self.config.high_threshold:
            self.progress[boundary] = min(1.0, before + step)
        elif mean < self.config.low_threshold:
            self.progress[boundary] = max(0.0, before - step)
        moved = int(np.sign(self.progress[boundary] - before))
        self.changes += abs(moved)
        return moved

    def ranges(self) -> dict[str, dict[str, Any]]:
        out = {}
        for f in self.config.fields:
            low, high = self.bounds(f.name)
            out[f.name] = {"low": np.asarray(low).tolist(), "high": np.asarray(high).tolist()}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranges": self.ranges(),
            "progress": dict(self.progress),
            "buffers": {k: list(v) for k, v in self.buffers.items()},
            "changes": self.changes,
        }

    def load_dict(self, data: Mapping[str, Any]) -> None:
        self.progress.update({k: float(v) for k, v in data["progress"].items()})
        self.buffers.update({k: list(v) for k, v in data.get("buffers", {}).items()})
        self.changes = int(data.get("changes", 0))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    def load_file(self, path: Path) -> None:
        if not Path(path).is_file():
            raise ValueError(f"resume: the ADR state {str(path)!r} of this checkpoint is missing")
        self.load_dict(json.loads(Path(path).read_text()))


def _nested(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    point: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        section, key = name.split(".")
        point.setdefault(section, {})[key] = value
    return point


class AdrSource:
    """One env's source of points from a shared :class:`AdrState`.

    ``draw(rng)`` gives the next episode's point (a :class:`SkewSpec`) and remembers
    which side it tests; :meth:`episode_return` hands that episode's return back.
    """

    def __init__(
        self,
        state: AdrState,
        base: Mapping[str, Any] | None = None,
        latency_grid_s: float | None = None,
    ) -> None:
        self.state = state
        self.base = dict(base or {})
        self.latency_grid_s = latency_grid_s
        self.boundary: str | None = None

    def draw(self, rng: np.random.Generator) -> SkewSpec:
        """The next episode's point; latencies rounded to ``latency_grid_s`` (the physics
        substep, on which they are realized anyway) when it is given."""
        values, self.boundary = self.state.sample(rng)
        if self.latency_grid_s:
            grid = self.latency_grid_s
            for name in ("timing.obs_latency_s", "timing.action_latency_s"):
                if name in values:
                    values[name] = round(values[name] / grid) * grid
        point = _nested(values)
        for section, fields in self.base.items():
            point.setdefault(section, {}).update(
                {k: v for k, v in fields.items() if k not in point.get(section, {})}
            )
        return SkewSpec.load(point)

    def episode_return(self, episode_return: float) -> int:
        moved = self.state.report(self.boundary, episode_return)
        self.boundary = None
        return moved


class AdrEnv(gym.Wrapper):
    """A task whose every episode's point comes from ADR.

    Args:
        task: a built-in task name.
        state: the ADR state shared by every training env of one run.
        seed: seeds this env's draws (the physics streams are seeded by ``reset``).
    """

    def __init__(self, task: str, state: AdrState, seed: int = 0) -> None:
        from sim2real.skewed_env import find_skewed_env
        from sim2real.tasks import tasks

        super().__init__(gym.make(tasks()[task].real_id, skews=SkewSpec()))
        self._skewed = find_skewed_env(self.env)
        timestep = float(self.env.unwrapped.model.opt.timestep)
        self.source = AdrSource(state, latency_grid_s=timestep)
        self._rng = np.random.default_rng(seed)
        self._return = 0.0

    def reset(self, **kwargs: Any):
        self._skewed.set_skews(self.source.draw(self._rng))
        self._return = 0.0
        obs, info = self.env.reset(**kwargs)
        info["adr_boundary"] = self.source.boundary
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        if terminated or truncated:
            self.source.episode_return(self._return)
        return obs, reward, terminated, truncated, info
