"""One point, one pipeline (DESIGN.md section 5): the exact skews of one episode and the
sources that give every episode its point.

A :class:`Point` is ``{"section.field": value}`` for every non-nominal skew of one
episode, exactly as applied: one number, or one per element where drawn per element
(a mass scale per body, a noise level per observation dimension), latencies as
realized on the substep grid, and a field drawn afresh at every step as its
per-step distribution (``{"dist": ..., "resample": "step"}``). It is plain JSON.
``info["skews"]`` at reset is the episode's point, and ``make_pair(task, real=point)``
(or ``SkewedEnv(env, point)``) replays that episode's robot exactly when reset with
the same seed.

A source gives each episode its point. The protocol is three methods:

- ``bind(context) -> source``: check the source against one env (element counts,
  substep grid, time limit) and return the source to use for it; errors are
  :class:`~sim2real.spec.SkewSpecError` lines naming the field.
- ``draw(rng) -> Point``: the next episode's point, drawing from ``rng``, the reset's
  ``"source"`` generator (the same object until the next seeded reset; see
  :func:`sim2real.skews.pipeline.field_generator` for per-field generators).
  Returning the same object again means "the same point" and costs nothing.
- ``describe(shown) -> list[str]``: lines for ``describe()``; ``shown(field, value)``
  formats a value in the env's terms (latencies realized).

:class:`FixedSource` (a real variant) and
:class:`~sim2real.randomization.RandomizationSource` (domain randomization) are the
two here; ADR and calibration add more.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sim2real.skews.pipeline import Context
from sim2real.skews.registry import FIELDS, SKEWS, Element
from sim2real.spec import SkewSpec, SkewSpecError, field_info, nested, plain

Shown = Callable[[str, Any], str]
LATENCIES = ("timing.obs_latency_s", "timing.action_latency_s", "timing.control_jitter_s")


class Point(dict):
    """The exact skew values of one episode: ``{"section.field": value}``, non-nominal only.

    A plain ``dict`` (JSON-serializable, picklable) with conversions to and from a spec.
    A source may attach ``arrays``: the per-element values as the numpy arrays it drew
    (the same numbers as the lists), which the pipeline then uses as they are (unset:
    ``getattr(point, "arrays", None)`` is ``None``). A slot rather than an instance dict:
    a randomization assembles one point per episode.
    """

    __slots__ = ("arrays", "episode")
    arrays: Mapping[str, np.ndarray]
    # Where a source drew it, when it drew many episodes at once: (the block's draws by field,
    # one row per episode; this episode's row). The model edit of a randomized reset uses it.
    episode: tuple[Mapping[str, np.ndarray], int]

    @classmethod
    def from_spec(cls, spec: SkewSpec) -> Point:
        return cls(spec.active())

    @classmethod
    def load(cls, source: Any) -> Point:
        """A point from a spec, a mapping (flat or nested), a YAML path, or ``None``."""
        if isinstance(source, Point):
            return source
        return cls.from_spec(SkewSpec.load(source))

    def to_spec(self) -> SkewSpec:
        """This point as a :class:`SkewSpec` (a point with a per-step field is not one)."""
        return SkewSpec.load(self)

    def nested(self) -> dict[str, Any]:
        """The nested mapping form, as in YAML."""
        return nested(self)

    def per_step(self) -> dict[str, Any]:
        """The fields drawn afresh at every step, with their distributions."""
        return {k: v for k, v in self.items() if isinstance(v, Mapping)}


@runtime_checkable
class Source(Protocol):
    """Gives each episode its point (see the module docstring)."""

    def bind(self, context: Context) -> Source: ...

    def draw(self, rng: np.random.Generator) -> Point: ...

    def describe(self, shown: Shown) -> list[str]: ...


def skew_line(name: str, shown: str, indent: str = "  ") -> str:
    """One line of ``describe()``: field, value, unit and meaning."""
    unit, meaning = field_info(name)
    return f"{indent}{name:<28} {shown:<12} [{unit}] {meaning}"


class FixedSource:
    """The same point every episode: a real variant.

    Args:
        spec: a :class:`SkewSpec`, a point, a mapping in the schema (nested or
            flat), a YAML path, or ``None`` (every skew nominal).
    """

    def __init__(self, spec: SkewSpec | Mapping[str, Any] | str | Path | None = None) -> None:
        self.spec = spec if isinstance(spec, SkewSpec) else SkewSpec.load(spec)
        self.point = Point.from_spec(self.spec)

    def bind(self, context: Context) -> FixedSource:
        check_point(self.point, context)
        return self

    def draw(self, rng: np.random.Generator) -> Point:
        return self.point

    def describe(self, shown: Shown) -> list[str]:
        if not self.point:
            return ["  (every skew nominal: identical to the sim variant)"]
        return [skew_line(name, shown(name, value)) for name, value in self.point.items()]

    def __repr__(self) -> str:
        return f"FixedSource({self.point.nested()!r})"


def check_point(point: Mapping[str, Any], ctx: Context, *, fixed: bool = True) -> None:
    """Refuse what a point cannot mean on this env, in one line naming the field.

    Per-element lists need one value per element; a nonzero latency must realize to
    at least one substep (``fixed``) and fit in the episode's time limit; a latency
    off the substep grid is rounded to the nearest substep, with a warning (once)
    when that moves it by more than 10 %; an observation latency that is not a whole
    number of control steps needs a mid-step reading.
    """
    for name, value in point.items():
        entry = SKEWS[name]
        if isinstance(value, list) and entry.per_element:
            check_length(name, len(value), ctx)
        if name in LATENCIES and not isinstance(value, Mapping):
            check_latency(name, float(value), ctx, fixed=fixed)


def element_count(element: Element, ctx: Context) -> int:
    return int(ctx.elements[element])


def check_length(name: str, length: int, ctx: Context, where: str = "") -> None:
    element = SKEWS[name].acts_on
    count = element_count(element, ctx)
    if length != count:
        raise SkewSpecError(
            f"{name} must be one number or {count} numbers (one per {element.value}), "
            f"got {length}{where}"
        )


_WARNED: set[tuple[str, float, float]] = set()


def check_latency(name: str, value: float, ctx: Context, *, fixed: bool = True) -> None:
    """A latency on this env's substep grid: refused when it vanishes or outlasts an episode."""
    if value <= 0:
        return
    substeps = round(value / ctx.substep_s)
    if substeps == 0 and fixed:
        raise SkewSpecError(
            f"{name} of {value:g} s rounds to zero physics substeps of {ctx.substep_s:g} s, "
            f"so it would realize to no delay at all; allowed: 0, or more than half a substep "
            f"({ctx.substep_s / 2:g} s; latencies are rounded to the nearest substep)"
        )
    if ctx.time_limit_s is not None and value > ctx.time_limit_s:
        raise SkewSpecError(
            f"{name} of {value:g} s is longer than an episode ({ctx.time_limit_s:g} s); "
            f"allowed: at most {ctx.time_limit_s:g} s"
        )
    effective = substeps * ctx.substep_s
    key = (name, value, ctx.substep_s)
    if fixed and abs(effective - value) > 0.1 * value and key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(
            f"{name} of {value:g} s is off the substep grid ({ctx.substep_s:g} s): realized as "
            f"{substeps} substeps = {effective:g} s, {100 * abs(effective - value) / value:.0f} "
            "% away",
            stacklevel=4,
        )
    if name == "timing.obs_latency_s" and substeps % ctx.frame_skip and not ctx.mid_step_obs:
        raise SkewSpecError(
            f"{name} of {value:g} s is not a whole number of control steps "
            f"({ctx.control_dt:g} s) and needs a reading in the middle of a step, but this env "
            "has no _get_obs; pass obs_fn=<callable: env -> observation> to "
            f"make_pair/make/SkewedEnv, or a latency that is a multiple of {ctx.control_dt:g} s"
        )


def as_source(source: Any) -> Any:
    """A source from a source, a spec, a point or mapping, a YAML path, or ``None``.

    A mapping with a per-step distribution in it (a point of a randomization with
    ``resample: step``) becomes a randomization source whose only random fields are
    those, so that it replays its episode.
    """
    if isinstance(source, Source) and not isinstance(source, type):
        return source
    if isinstance(source, Mapping) and has_per_step(source):
        from sim2real.randomization import RandomizationSource

        return RandomizationSource(nested(plain(source)))
    return FixedSource(source)


def has_per_step(mapping: Mapping[str, Any]) -> bool:
    """Whether a spec mapping (nested or flat) holds a distribution for some field."""
    return any(isinstance(v, Mapping) for v in _flat(mapping).values())


def _flat(mapping: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and key in {f.split(".")[0] for f in FIELDS}:
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def realized(point: Point, ctx: Context) -> Point:
    """``point`` with latencies as realized on the substep grid (seconds)."""
    out = Point(point)
    step = ctx.substep_s
    for name in LATENCIES:
        value = out.get(name)
        if type(value) is float or (value is not None and isinstance(value, (float, int))):
            out[name] = round(value / step) * step
    return out


def finite(value: Any) -> bool:
    """Whether every number in ``value`` is finite."""
    return all(math.isfinite(v) for v in np.ravel(np.asarray(value, dtype=np.float64)))
