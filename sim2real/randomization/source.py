"""The randomization source: a fresh point in skew space every episode, drawn from a spec.

Where the draws come from: a reset with a seed gives the source its ``"source"``
generator (:func:`sim2real.skews.pipeline.reset_generators`); each randomized field
draws from its own generator, :func:`~sim2real.skews.pipeline.field_generator` of
that one keyed by the field's name, so that randomizing one more field changes no
other field's draws. A per-episode field draws 64 episodes at a time (one
generator call); a ``resample: step`` field is handed to the pipeline as its
distribution, which draws a fresh level at every step from the same per-field
generator.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.point import LATENCIES, Point, Shown, check_length, check_point
from sim2real.randomization.distributions import Distribution
from sim2real.randomization.spec import RandomizationSpec, Randomized
from sim2real.skews.pipeline import Context, field_generator
from sim2real.skews.registry import SKEWS
from sim2real.spec import SkewSpec, SkewSpecError, field_info

_EPISODE_BLOCK = 64  # episodes' draws per generator call


class RandomizationSource:
    """Draws every episode's point from a randomization spec around a fixed base.

    Args:
        spec: a :class:`RandomizationSpec`, a mapping in the randomization schema,
            or a YAML path (see :mod:`sim2real.randomization.spec`).
        base: the fixed point that every field the spec leaves alone takes (a skew
            spec, mapping or YAML path; default all nominal).

    Attributes:
        spec: the validated randomization spec.
        drawn: the last point drawn, latencies as requested (the env's point has them
            as realized on its substep grid).
    """

    def __init__(
        self,
        spec: RandomizationSpec | Mapping[str, Any] | str | Path,
        base: SkewSpec | Mapping[str, Any] | str | Path | None = None,
    ) -> None:
        self.spec = RandomizationSpec.load(spec)
        self.base = SkewSpec.load(base)
        point = self.spec.over(self.base)
        self._fixed = Point(
            {k: v for k, v in point.active().items() if k not in self.spec.randomized}
        )
        self._step = {
            name: _config(r) for name, r in self.spec.randomized.items() if r.resample == "step"
        }
        self._episode: list[tuple[str, Distribution, tuple[int, ...]]] = []
        self._rng: np.random.Generator | None = None
        self._blocks = _EpisodeBlocks([], None)
        self.drawn = Point()

    # ------------------------------------------------------------------ the protocol
    def bind(self, context: Context) -> RandomizationSource:
        """A copy of this source for one env: element counts and latency bounds checked."""
        check_point(self._fixed, context)
        bound = copy.copy(self)
        bound._episode = []
        for name, randomized in self.spec.randomized.items():
            _check_support(name, randomized, context)
            if randomized.resample == "step":
                continue
            size: tuple[int, ...]
            if randomized.per == "element":
                size = (int(context.elements[SKEWS[name].acts_on]),)
            else:  # one variate per episode, scaled into each dimension's range
                size = (1,) * len(randomized.dist.shape)
            bound._episode.append((name, randomized.dist, size))
        bound._rng, bound._blocks = None, _EpisodeBlocks([], None)
        return bound

    def draw(self, rng: np.random.Generator) -> Point:
        if rng is not self._rng:  # a new seed: new per-field generators
            self._rng = rng
            self._blocks = _EpisodeBlocks(self._episode, rng)
        blocks = self._blocks
        if not blocks.points:
            blocks.refill(self._fixed, self._step)
        self.drawn = point = blocks.points.pop()
        return point

    def describe(self, shown: Shown) -> list[str]:
        """The randomized fields with their distributions, then the fixed (base) values."""
        lines = [
            "  randomized (drawn each episode unless marked):"
            if self.spec.randomized
            else "  randomized: nothing (every field fixed)"
        ]
        for name, randomized in self.spec.randomized.items():
            unit, meaning = field_info(name)
            lines.append(f"    {name:<28} {randomized!r}  [{unit}] {meaning}")
        lines.append(
            "  fixed (base):" if self._fixed else "  fixed (base): every other field nominal"
        )
        for name, value in self._fixed.items():
            unit, meaning = field_info(name)
            lines.append(f"    {name:<28} {shown(name, value)}  [{unit}] {meaning}")
        return lines

    def __repr__(self) -> str:
        return f"RandomizationSource({len(self.spec.randomized)} randomized fields)"


def _config(randomized: Randomized) -> dict[str, Any]:
    """A per-step field as it stands in a point: its distribution's config, JSON-ready."""
    params = {k: v.tolist() for k, v in randomized.dist.params().items()}
    config: dict[str, Any] = {"dist": randomized.dist.name, **params, "resample": "step"}
    if randomized.per == "element":
        config["per"] = "element"
    return config


def _check_support(name: str, randomized: Randomized, ctx: Context) -> None:
    """Per-dimension parameters of the right length; latency draws within an episode."""
    shape = randomized.dist.shape
    if shape and name in SKEWS and SKEWS[name].per_element:
        check_length(name, shape[0], ctx, where=f" in {randomized!r}")
    if name in LATENCIES:
        high = float(np.max(randomized.dist.support[1]))
        if ctx.time_limit_s is not None and high > ctx.time_limit_s:
            raise SkewSpecError(
                f"{name} can draw {high:g} s, longer than an episode ({ctx.time_limit_s:g} s), "
                f"in {randomized!r}; allowed: at most {ctx.time_limit_s:g} s"
            )
        if name == "timing.obs_latency_s" and not ctx.mid_step_obs and high > 0:
            raise SkewSpecError(
                f"{name} randomized in {randomized!r} can fall between control steps and "
                "needs a reading in the middle of a step, but this env has no _get_obs; pass "
                "obs_fn=<callable: env -> observation> to make/SkewedEnv"
            )


class _EpisodeBlocks:
    """The per-episode fields' draws, 64 episodes at a time: one generator call per field and
    block (the rows of ``dist.sample(rng, (64, *size))``, as drawn one block after another).

    ``points`` are the block's episodes not handed out yet, the next one last (``pop()``
    hands it out, and the block lets go of it): each is the fixed fields, the drawn values
    in point form (a float, or a list for a field with one value per element or dimension)
    and the per-step fields; its ``arrays`` are the values of the fields drawn as arrays, as
    views of the block, which the pipeline takes as they are. The points of a block are
    assembled together, in one loop, rather than one per reset.
    """

    def __init__(
        self,
        fields: list[tuple[str, Distribution, tuple[int, ...]]],
        rng: np.random.Generator | None,
    ) -> None:
        self.fields = [(field_generator(rng, name), dist, size) for name, dist, size in fields]
        self.names = tuple(name for name, _, _ in fields)
        # A field with a size beyond the episode axis is drawn as one array per episode.
        self.array_names = tuple(name for name, _, size in fields if size)
        self.points: list[Point] = []  # no block drawn yet

    def refill(self, fixed: Point, step: Mapping[str, Any]) -> None:
        """Draw the next block and assemble its points around ``fixed`` and ``step``."""
        blocks = [dist.sample(rng, (_EPISODE_BLOCK, *size)) for rng, dist, size in self.fields]
        empty = [()] * _EPISODE_BLOCK
        values = list(zip(*(block.tolist() for block in blocks), strict=True)) or empty
        rows = [list(block) for block, field in zip(blocks, self.fields, strict=True) if field[2]]
        arrays = list(zip(*rows, strict=True)) or empty
        names, array_names = self.names, self.array_names
        if fixed or step:
            points = []
            for drawn in values:
                point = Point(fixed)
                point.update(zip(names, drawn, strict=True))
                point.update(step)
                points.append(point)
        else:  # the common case, every field drawn: the points are built in C (map, no frame)
            points = list(map(Point, map(zip, itertools.repeat(names), values)))
        for point, drawn_arrays in zip(points, arrays, strict=True):
            point.arrays = dict(zip(array_names, drawn_arrays, strict=True))
        if names:  # the block's draws by field, for the reset's products of a whole block
            columns = dict(zip(names, blocks, strict=True))
            for i, point in enumerate(points):
                point.episode = (columns, i)
        points.reverse()  # the first episode last, for pop()
        self.points = points
