"""Domain randomization: a fresh point in skew space every episode, drawn from a spec.

:class:`DomainRandomization` is a :class:`~sim2real.skewed_env.SkewedEnv` whose
point changes at every reset: it draws the randomized fields, applies the
dynamics in place relative to the nominal model, and rebuilds the actuation,
sensing and timing pipeline through SkewedEnv's own code. Fields marked
``resample: step`` get a fresh value at every control step from a block
stream prepared at reset, so a step costs no more than a fixed noise level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sim2real.randomization.spec import ELEMENTS, PER_DIMENSION, RandomizationSpec
from sim2real.skewed_env import SkewedEnv
from sim2real.skews import ActuationNoise, Deadband, SensorDropout, SensorNoise
from sim2real.spec import FIELDS, SkewSpec, field_info

_ROWS = 256  # rows per generator call, as in sim2real.skews.streams
_EPISODE_BLOCK = 64  # episodes' draws per generator call


class BlockStream:
    """Rows from ``draw(n)``, which returns ``n`` rows at once; called every 256 rows."""

    def __init__(self, draw: Callable[[int], np.ndarray]) -> None:
        self._draw = draw
        self._block = np.empty((0, 0))
        self._row = 0

    def next(self) -> np.ndarray:
        if self._row == len(self._block):
            self._block = self._draw(_ROWS)
            self._row = 0
        self._row += 1
        return self._block[self._row - 1]


class DomainRandomization(SkewedEnv, gym.utils.RecordConstructorArgs):
    """Draws the skews of every episode from a randomization spec.

    Args:
        env: a Gymnasium env whose ``unwrapped`` is a ``MujocoEnv``.
        spec: a :class:`RandomizationSpec`, a mapping in the randomization
            schema, or a YAML path (see :mod:`sim2real.randomization.spec`).
        base: the fixed point that every field the spec leaves alone takes
            (a skew spec, mapping or YAML path; default all nominal).

    Every draw comes from a generator spawned, one per randomized field, from
    the seed given to ``reset(seed=...)``: the same seed gives the same draws,
    and randomizing one more field changes no other field's draws. ``info`` at
    reset holds, under ``"skews"``, every randomized field's draw (per-element
    ones as lists, latencies as realized on the substep grid, per-step ones as
    their distribution) and the non-nominal fixed values.

    Attributes:
        randomization: the validated spec.
        episode_draws: this episode's draws by dotted field name, in the
            field's unit (latencies as requested, in seconds), as floats, or
            lists for ``per: element`` and per-dimension parameters.
        episode_skews: this episode's point; a per-element draw on a field that
            takes one number shows as its mean over elements, a per-step field
            as its distribution's mean (``episode_draws`` has the exact values).
    """

    def __init__(
        self,
        env: gym.Env,
        spec: RandomizationSpec | Mapping[str, Any] | str | Path,
        base: SkewSpec | Mapping[str, Any] | str | Path | None = None,
    ) -> None:
        randomization = RandomizationSpec.load(spec)
        randomization.check_dimensions(int(np.prod(env.observation_space.shape)))
        gym.utils.RecordConstructorArgs.__init__(self, spec=spec, base=base)  # for env.spec
        self.randomization = randomization
        self.episode_draws: dict[str, float | list[float]] = {}
        self._per_step = {
            name: randomized
            for name, randomized in randomization.randomized.items()
            if randomized.resample == "step"
        }
        self._field_rngs: dict[str, np.random.Generator] = {}  # spawned at the first reset
        self._step_streams: dict[str, BlockStream] = {}
        super().__init__(env, base)  # builds the base pipeline, so the fields above come first
        model, n_actions = self._model, len(self._low)
        elements = {
            "geom": model.ngeom,
            "body": model.nbody,
            "dof": model.nv,
            "actuator": model.nu,
            "action dimension": n_actions,
            "observation dimension": self._obs_dim,
        }
        sizes = {
            name: (elements[ELEMENTS[name]],) if randomized.per == "element" else None
            for name, randomized in randomization.randomized.items()
        }
        # What each reset draws: (field, distribution, size), in schema order.
        self._episode_fields = [
            (name, randomized.dist, sizes[name])
            for name, randomized in randomization.randomized.items()
            if randomized.resample == "episode"
        ]
        self._step_values = {name: f"{r!r} each step" for name, r in self._per_step.items()}
        self._step_means = {name: r.dist.mean.tolist() for name, r in self._per_step.items()}
        self._point_of: SkewSpec | None = None  # the base that the next two were made for
        self._point_values: dict[str, Any] = {}  # the fixed point, as a nested mapping
        self._fixed: dict[str, Any] = {}  # its non-nominal values on fields left fixed
        self._arrays: dict[str, np.ndarray] = {}  # this episode's draws as drawn

    # ------------------------------------------------------------------ public
    def applied_values(self) -> dict[str, Any]:
        """Every randomized field's value this episode and the non-nominal fixed values.

        Per-element draws are lists, latencies are as realized (seconds), and a
        per-step field shows its distribution.
        """
        values = {**self._fixed, **self.episode_draws, **self._step_values}
        for latency in (self._obs_latency, self._action_latency):
            if latency.field in values:
                values[latency.field] = latency.effective_s
        return {name: values[name] for name in FIELDS if name in values}

    def describe(self) -> str:
        """The randomized fields with their distributions, then the fixed (base) values."""
        lines = [
            f"{type(self).__name__} on {type(self._base).__name__}: control step "
            f"{self._frame_skip * self._substep_s:g} s = {self._frame_skip} substeps of "
            f"{self._substep_s:g} s; latencies realized on that substep grid",
            "  randomized (drawn each episode unless marked):"
            if self.randomization.randomized
            else "  randomized: nothing (every field fixed)",
        ]
        for name, randomized in self.randomization.randomized.items():
            unit, meaning = field_info(name)
            lines.append(f"    {name:<28} {randomized!r}  [{unit}] {meaning}")
        fixed = _fixed_values(self.randomization.over(self.skews), self.randomization)
        lines.append("  fixed (base):" if fixed else "  fixed (base): every other field nominal")
        for name, value in fixed.items():
            unit, meaning = field_info(name)
            lines.append(f"    {name:<28} {value}  [{unit}] {meaning}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ SkewedEnv hooks
    def _seed(self, seed: int | None) -> None:
        super()._seed(seed)
        # One generator per field, spawned in schema order from the stream reserved for
        # randomization, so that randomizing one more field never changes another's draws.
        children = self._rngs["randomization"].bit_generator.seed_seq.spawn(len(FIELDS))
        self._field_rngs = {
            name: np.random.Generator(np.random.PCG64(children[FIELDS.index(name)]))
            for name in self.randomization.randomized
        }
        self._step_streams = {}
        self._episode_streams = {
            # Shared: one variate per episode, scaled into each dimension's range (size 1).
            name: _episode_draws(self._field_rngs[name], dist, size or (1,) * len(dist.shape))
            for name, dist, size in self._episode_fields
        }

    def _skews_for_episode(self) -> SkewSpec:
        self._refresh_fixed_point()
        self._arrays = {name: next(draws) for name, draws in self._episode_streams.items()}
        self.episode_draws = {name: draw.tolist() for name, draw in self._arrays.items()}
        point = {k: dict(v) if isinstance(v, dict) else v for k, v in self._point_values.items()}
        for name, value in (*self.episode_draws.items(), *self._step_means.items()):
            section, field = name.split(".")
            point[section][field] = _point_value(name, value)
        return SkewSpec.model_validate(point)  # faster than copying the frozen sections

    def _apply_dynamics(self, spec: SkewSpec) -> None:
        # The point holds the fixed values; the draws are exact where it holds a mean.
        values = {name: value for name, value in spec.dynamics if value is not None}
        for name, draw in self._arrays.items():
            section, field = name.split(".")
            if section == "dynamics":
                values[field] = draw
        self._model_skews.apply(values)

    def _build_pipeline(self, spec: SkewSpec) -> None:
        """SkewedEnv's pipeline for ``spec``, then the exact per-element and per-step values.

        A component exists when its field's point value (a mean) is non-zero;
        it is then rebuilt here from the exact draw, or, for a per-step field,
        at unit strength fed by a stream that carries the per-step value.
        """
        super()._build_pipeline(spec)
        if not self._field_rngs:  # SkewedEnv.__init__ builds the base pipeline before any draw
            return
        draws, step = self._arrays, self._per_step
        low, high = self._low, self._high
        if self._noise is not None:
            if "actuation.noise_std" in step:  # noise = (std_t * z_t) x action range
                self._noise = ActuationNoise(1.0, low, high)
                self._noise.stream = self._step_stream("actuation.noise_std", len(low))
            elif "actuation.noise_std" in draws:
                stream = self._noise.stream
                self._noise = ActuationNoise(draws["actuation.noise_std"], low, high)
                self._noise.stream = stream
        if self._deadband is not None and "actuation.deadband" in draws:
            self._deadband = Deadband(draws["actuation.deadband"], low, high)
        sensors = self._sensors
        if sensors.noise is not None and "sensing.noise_std" in step:  # noise = std_t * z_t
            sensors.noise = SensorNoise(np.ones(self._obs_dim))
            sensors.noise.stream = self._step_stream("sensing.noise_std", self._obs_dim)
        if sensors.dropout is not None:
            if "sensing.dropout_prob" in step:  # the stream yields u_t - p_t: dropped where < 0
                sensors.dropout = SensorDropout(0.0)
                sensors.dropout.stream = self._step_stream("sensing.dropout_prob", self._obs_dim)
            elif "sensing.dropout_prob" in draws:
                stream = sensors.dropout.stream
                sensors.dropout = SensorDropout(draws["sensing.dropout_prob"])
                sensors.dropout.stream = stream

    # ------------------------------------------------------------------ internals
    def _refresh_fixed_point(self) -> None:
        """Remake the fixed point (base and plain values) when the base changes (``set_skews``)."""
        if self._point_of is not self.skews:
            point = self.randomization.over(self.skews)
            self._point_values = point.model_dump()
            self._fixed = _fixed_values(point, self.randomization)
            self._point_of = self.skews

    def _step_stream(self, name: str, dim: int) -> BlockStream:
        """The per-step stream of ``name``, kept across episodes until the next seed."""
        stream = self._step_streams.get(name)
        if stream is None:
            rng, randomized = self._field_rngs[name], self._per_step[name]
            sample, columns = randomized.dist.sample, dim if randomized.per == "element" else 1

            def draw(n: int) -> np.ndarray:
                if name == "sensing.dropout_prob":
                    return rng.random((n, dim)) - sample(rng, (n, columns))
                return sample(rng, (n, columns)) * rng.standard_normal((n, dim))

            stream = self._step_streams[name] = BlockStream(draw)
        return stream


def _episode_draws(
    rng: np.random.Generator, dist: Any, shape: tuple[int, ...]
) -> Iterator[np.ndarray]:
    """One draw per episode, sampled 64 episodes at a time (one generator call, not 64)."""
    while True:
        yield from dist.sample(rng, (_EPISODE_BLOCK, *shape))


def _fixed_values(point: SkewSpec, randomization: RandomizationSpec) -> dict[str, Any]:
    """The non-nominal values of ``point`` on the fields that ``randomization`` leaves fixed."""
    return {k: v for k, v in point.active().items() if k not in randomization.randomized}


def _point_value(name: str, value: float | list[float]) -> float | list[float]:
    """What the point schema can hold of a value: exact, or its mean over elements."""
    if isinstance(value, float) or name in PER_DIMENSION:
        return value
    return sum(value) / len(value)
