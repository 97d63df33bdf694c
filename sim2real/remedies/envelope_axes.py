"""The axes of an envelope: numeric skew fields, their ranges and the values episodes run at.

Each axis is a numeric field of the skew schema (:mod:`sim2real.spec`) over
``[low, high]``, spaced linearly or logarithmically. Its *lattice* is the
finest set of values the map resolves: the centres of ``resolution`` equal
bins (equal in log space for a log axis). A latency axis lives on the physics
substep grid: its lattice is whole substeps (``k * substep_s``) within the
range, so every value the map reports is a latency that was actually run.

Every value stands for a cell of the axis, between the midpoints (in the
axis's own spacing) to its neighbours; the outer cells end at ``low`` and
``high``. Everything here is checked before any episode runs; a bad axis is
refused in one line naming it and what is allowed.

>>> axis = Axis.build("dynamics.friction_scale", 0.4, 1.4, resolution=4)
>>> [round(v, 3) for v in axis.values]
[0.525, 0.775, 1.025, 1.275]
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim2real.spec import _SECTION_MODELS, FIELDS, SkewSpec, SkewSpecError, field_info

LATENCY_FIELDS = ("timing.obs_latency_s", "timing.action_latency_s")
SCALES = ("linear", "log")
MAX_AXES = 3

AxisRange = tuple[float, float] | tuple[float, float, str]


def takes_number(name: str) -> bool:
    """Whether the schema field ``name`` (``"section.field"``) accepts one number."""
    section, field = name.split(".")
    annotation = _SECTION_MODELS[section].model_fields[field].annotation
    return annotation is float or float in typing.get_args(annotation)


def numeric_fields() -> list[str]:
    """The schema fields an axis may run along."""
    return [name for name in FIELDS if takes_number(name)]


@dataclass(frozen=True)
class Axis:
    """One axis of an envelope.

    Attributes:
        field: the skew field, e.g. ``"dynamics.friction_scale"``.
        low, high: the range mapped, in the field's unit.
        scale: ``"linear"`` or ``"log"``.
        values: the lattice, ascending: the values episodes run at.
        substep_s: the physics substep of a latency axis (its values are whole
            substeps), else ``None``.
    """

    field: str
    low: float
    high: float
    scale: str
    values: tuple[float, ...]
    substep_s: float | None = None

    # ---------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        field: str,
        low: float,
        high: float,
        scale: str = "linear",
        *,
        resolution: int = 16,
        substep_s: float | None = None,
    ) -> Axis:
        """An axis of ``resolution`` lattice values (fewer on a latency axis whose range
        holds fewer whole substeps). Inputs are assumed checked (:func:`check_axes`)."""
        low, high = float(low), float(high)
        centres = (np.arange(resolution) + 0.5) / resolution
        if scale == "log":
            values = np.exp(math.log(low) + centres * (math.log(high) - math.log(low)))
        else:
            values = low + centres * (high - low)
        if field in LATENCY_FIELDS and substep_s is not None:
            first, last = _substep_range(low, high, substep_s)
            steps = np.unique(np.clip(np.rint(values / substep_s), first, last).astype(int))
            lattice = tuple(float(k * substep_s) for k in steps)
            return cls(field, low, high, scale, lattice, substep_s)
        return cls(field, low, high, scale, tuple(float(v) for v in values))

    # ---------------------------------------------------------------- geometry
    @property
    def unit(self) -> str:
        return field_info(self.field)[0]

    @property
    def size(self) -> int:
        return len(self.values)

    @property
    def substeps(self) -> tuple[int, ...] | None:
        """The lattice in whole substeps, on a latency axis."""
        if self.substep_s is None:
            return None
        return tuple(round(v / self.substep_s) for v in self.values)

    def to_unit(self, value: float | np.ndarray) -> np.ndarray:
        """Position along the axis in ``[0, 1]`` (``low`` -> 0, ``high`` -> 1), in its spacing."""
        value = np.asarray(value, dtype=float)
        if self.scale == "log":
            return (np.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def from_unit(self, u: float | np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=float)
        if self.scale == "log":
            return np.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return self.low + u * (self.high - self.low)

    def edges(self) -> np.ndarray:
        """The ``size + 1`` cell edges, in the field's unit: ``low``, the midpoints between
        lattice values (in the axis's spacing), ``high``."""
        u = self.to_unit(np.array(self.values))
        inner = (u[:-1] + u[1:]) / 2
        return np.concatenate([[self.low], self.from_unit(inner), [self.high]])

    def unit_edges(self) -> np.ndarray:
        """:meth:`edges` in ``[0, 1]``."""
        return np.clip(self.to_unit(self.edges()), 0.0, 1.0)

    def realized(self, value: float) -> float:
        """The value an env runs when asked for ``value``: on a latency axis, the nearest
        whole substep."""
        if self.substep_s is None:
            return float(value)
        return round(value / self.substep_s) * self.substep_s

    def index_range(self, low: float, high: float) -> tuple[int, int] | None:
        """The lattice indices ``[first, last)`` whose cells meet ``[low, high]`` (values
        realized first); ``None`` when that interval leaves the mapped range."""
        low, high = self.realized(low), self.realized(high)
        tolerance = 1e-9 * max(1.0, abs(self.high - self.low))
        if low < self.low - tolerance or high > self.high + tolerance:
            return None
        edges = self.edges()
        first = int(np.searchsorted(edges, low, side="right")) - 1
        last = int(np.searchsorted(edges, high, side="left"))
        first = min(max(first, 0), self.size - 1)
        return first, max(min(last, self.size), first + 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "unit": self.unit,
            "low": self.low,
            "high": self.high,
            "scale": self.scale,
            "values": list(self.values),
            "edges": [float(e) for e in self.edges()],
            "substep_s": self.substep_s,
            "substeps": list(self.substeps) if self.substeps is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Axis:
        return cls(
            field=str(data["field"]),
            low=float(data["low"]),
            high=float(data["high"]),
            scale=str(data["scale"]),
            values=tuple(float(v) for v in data["values"]),
            substep_s=None if data.get("substep_s") is None else float(data["substep_s"]),
        )


def _substep_range(low: float, high: float, substep_s: float) -> tuple[int, int]:
    """The whole substeps ``[first, last]`` that lie in ``[low, high]`` seconds."""
    first = math.ceil(low / substep_s - 1e-9)
    last = math.floor(high / substep_s + 1e-9)
    return first, last


# -------------------------------------------------------------------- checking
def parse_axis(text: str) -> tuple[str, AxisRange]:
    """``"timing.obs_latency_s=0:0.05"`` or ``"dynamics.mass_scale=0.5:2:log"`` ->
    ``(field, (low, high[, scale]))``; a malformed text is refused in one line."""
    match = re.fullmatch(r"\s*([\w.]+)\s*=\s*([^:]+):([^:]+)(?::(\w+))?\s*", text)
    if match is None:
        raise ValueError(
            f"--axis {text!r}: expected FIELD=LOW:HIGH or FIELD=LOW:HIGH:log, "
            "e.g. dynamics.friction_scale=0.4:1.4"
        )
    field, low, high, scale = match.groups()
    try:
        bounds = (float(low), float(high))
    except ValueError:
        raise ValueError(f"--axis {text!r}: LOW and HIGH must be numbers") from None
    return field, (*bounds, scale) if scale else bounds


def check_axes(
    axes: Mapping[str, Sequence[Any]],
    base: SkewSpec,
    *,
    resolution: int = 16,
    substep_s: float | None = None,
) -> list[Axis]:
    """Check ``axes`` (``{field: (low, high)}`` or ``(low, high, "log")``) against the
    schema with the other fields at ``base``; the axes, in the order given.

    Raises:
        SkewSpecError: in one line naming the axis and what is allowed.
    """
    if not isinstance(axes, Mapping) or not 1 <= len(axes) <= MAX_AXES:
        given = len(axes) if isinstance(axes, Mapping) else type(axes).__name__
        raise SkewSpecError(
            f"axes must be a mapping of 1 to {MAX_AXES} fields to (low, high), got {given}"
        )
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise SkewSpecError(f"resolution must be an integer >= 2, got {resolution!r}")
    checked = []
    for field, bounds in axes.items():
        low, high, scale = _check_range(field, bounds)
        for value in (low, high):
            _check_value(field, value, base, (low, high))
        if scale == "log" and low <= 0:
            raise SkewSpecError(f"axis {field}: log spacing needs low > 0, got {low:g}")
        if field in LATENCY_FIELDS and substep_s is not None:
            first, last = _substep_range(low, high, substep_s)
            if first > last:
                raise SkewSpecError(
                    f"axis {field}: {low:g}:{high:g} s holds no whole physics substep "
                    f"of {substep_s:g} s; widen the range"
                )
        checked.append(
            Axis.build(field, low, high, scale, resolution=resolution, substep_s=substep_s)
        )
    return checked


def _check_range(field: Any, bounds: Any) -> tuple[float, float, str]:
    if not isinstance(field, str) or field not in FIELDS:
        raise SkewSpecError(
            f"unknown skew field {field!r} for an axis; allowed: {', '.join(numeric_fields())}"
        )
    if not takes_number(field):
        raise SkewSpecError(
            f"axis {field}: the field takes no single number; allowed: "
            f"{', '.join(numeric_fields())}"
        )
    if (
        isinstance(bounds, (str, bytes))
        or not isinstance(bounds, Sequence)
        or not (2 <= len(bounds) <= 3)
    ):
        raise SkewSpecError(
            f"axis {field}: expected (low, high) or (low, high, 'log'), got {bounds!r}"
        )
    low, high = bounds[0], bounds[1]
    scale = bounds[2] if len(bounds) == 3 else "linear"
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise SkewSpecError(f"axis {field}: low and high must be numbers, got {value!r}")
        if not math.isfinite(value):
            raise SkewSpecError(f"axis {field}: low and high must be finite, got {value!r}")
    if scale not in SCALES:
        raise SkewSpecError(
            f"axis {field}: spacing must be one of {', '.join(SCALES)}, got {scale!r}"
        )
    if not low < high:
        raise SkewSpecError(f"axis {field}: low must be < high, got {low:g}:{high:g}")
    return float(low), float(high), scale


def _check_value(field: str, value: float, base: SkewSpec, bounds: tuple[float, float]) -> None:
    """The schema's own verdict on ``value`` for ``field`` (ranges are intervals, so checking
    both ends checks the range)."""
    try:
        with_value(base, {field: value})
    except SkewSpecError as error:
        raise SkewSpecError(
            f"axis {field}: range {bounds[0]:g}:{bounds[1]:g} refused by the schema: {error}"
        ) from None


def with_value(base: SkewSpec, values: Mapping[str, float]) -> SkewSpec:
    """``base`` with the fields of ``values`` (``{"section.field": number}``) set."""
    nested = base.to_dict()
    for field, value in values.items():
        section, name = field.split(".")
        nested.setdefault(section, {})[name] = float(value)
    return SkewSpec.load({"description": base.description, **nested})
