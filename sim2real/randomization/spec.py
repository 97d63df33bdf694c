"""The randomization schema: the skew schema in which a numeric value may be a distribution.

A randomization spec has the four sections and field names of a
:class:`~sim2real.spec.SkewSpec` (DESIGN.md section 3). A plain value is fixed;
a mapping with a ``dist`` key is drawn from that distribution, with two options:

- ``resample: episode`` (default) draws once per episode; ``resample: step``
  draws again at every control step (only for the noise-like fields in
  :data:`STEP_FIELDS`).
- ``per: shared`` (default) draws one value for every body, geom, dof,
  actuator or dimension the field acts on; ``per: element`` draws one for each
  (the fields in :data:`ELEMENTS`).

Field names, types and constraints come from the point schema itself: fixed
values are validated by :class:`SkewSpec`, and a distribution's support is
validated at both ends by the same field constraints.

>>> spec = RandomizationSpec.load({"dynamics": {"mass_scale": {"dist": "uniform",
...     "low": 0.8, "high": 1.2, "per": "element"}}})
>>> spec.randomized["dynamics.mass_scale"]
{dist: uniform, low: 0.8, high: 1.2, per: element}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from sim2real.paths import data_dir
from sim2real.randomization.distributions import Distribution, distribution, to_yaml
from sim2real.skews.registry import SKEWS, Element
from sim2real.skews.sensing import per_dimension
from sim2real.spec import (
    FIELDS,
    SECTIONS,
    SkewSpec,
    SkewSpecError,
    check_dimensions,
    format_validation_error,
    load_yaml,
    plain,
)

# Fields whose value is a noise level, so that a fresh draw at every control step is physical.
STEP_FIELDS: tuple[str, ...] = tuple(name for name in FIELDS if SKEWS[name].per_step)

# Fields that act on many elements, and what one element is (``per: element`` draws one each).
ELEMENTS: dict[str, str] = {
    name: SKEWS[name].acts_on.value for name in FIELDS if SKEWS[name].per_element
}

RESAMPLE = ("episode", "step")
PER = ("shared", "element")

# A field can be randomized when the point schema gives it a number (gravity is a vector).
RANDOMIZABLE: tuple[str, ...] = tuple(name for name in FIELDS if SKEWS[name].randomizable)
# Fields that take one number or a list with one per observation dimension.
PER_DIMENSION: tuple[str, ...] = tuple(
    name for name in RANDOMIZABLE if SKEWS[name].acts_on is Element.OBSERVATION
)


@dataclass(frozen=True)
class Randomized:
    """One randomized field: its distribution and when and per what it is drawn.

    Attributes:
        field: dotted field name, e.g. ``"dynamics.mass_scale"``.
        dist: the distribution of the field's value, in the field's unit.
        resample: ``"episode"`` (once per reset) or ``"step"`` (every control step).
        per: ``"shared"`` (one value for all elements) or ``"element"`` (one each).
    """

    field: str
    dist: Distribution
    resample: str = "episode"
    per: str = "shared"

    def __repr__(self) -> str:
        options = [f"{key}: {getattr(self, key)}" for key in ("resample", "per")]
        defaults = (f"resample: {RESAMPLE[0]}", f"per: {PER[0]}")
        extra = "".join(f", {option}" for option in options if option not in defaults)
        return f"{self.dist!r}"[:-1] + extra + "}"


@dataclass(frozen=True)
class RandomizationSpec:
    """A distribution over skew space: fixed values and randomized fields.

    Attributes:
        fixed: the plain values of the spec, validated by the point schema.
        fixed_fields: the dotted names the spec sets to a plain value; they
            override the base point, every other field keeps the base value.
        randomized: the randomized fields by dotted name, in schema order.
    """

    fixed: SkewSpec
    fixed_fields: tuple[str, ...]
    randomized: dict[str, Randomized]

    @classmethod
    def load(cls, source: RandomizationSpec | Mapping[str, Any] | str | Path) -> RandomizationSpec:
        """Build a spec from a spec, a mapping or a YAML file, validated in full.

        Raises:
            SkewSpecError: one line naming the field, the value and what is allowed.
        """
        if isinstance(source, RandomizationSpec):
            return source
        if isinstance(source, (str, Path)):
            source = load_yaml(source, what="randomization spec")
        if not isinstance(source, Mapping):
            raise SkewSpecError(
                f"randomization spec must be a mapping or a YAML path, got {type(source).__name__}"
            )
        source = plain(source)
        values: dict[str, Any] = {}
        randomized: dict[str, Randomized] = {}
        for key, value in source.items():
            if key not in SECTIONS or not isinstance(value, Mapping):
                if isinstance(value, Mapping) and key == "description":
                    raise SkewSpecError(f"description cannot be randomized, got {_flow(value)}")
                values[key] = value  # the point schema reports unknown keys and wrong types
                continue
            for name, entry in value.items():
                dotted = f"{key}.{name}"
                if dotted in FIELDS and isinstance(entry, Mapping):
                    randomized[dotted] = _randomized(dotted, entry)
                else:
                    values.setdefault(key, {})[name] = entry
        fixed = SkewSpec.load(values)
        fixed_fields = tuple(
            name for name in FIELDS if name.split(".")[1] in _fields_set(fixed, name)
        )
        ordered = {name: randomized[name] for name in FIELDS if name in randomized}
        return cls(fixed=fixed, fixed_fields=fixed_fields, randomized=ordered)

    def over(self, base: SkewSpec) -> SkewSpec:
        """``base`` with this spec's fixed fields (and description, if any) put in."""
        updates: dict[str, Any] = {}
        for name in self.fixed_fields:
            section, field = name.split(".")
            updates.setdefault(section, {})[field] = getattr(getattr(self.fixed, section), field)
        sections = {
            section: getattr(base, section).model_copy(update=values)
            for section, values in updates.items()
        }
        if self.fixed.description:
            sections["description"] = self.fixed.description
        return base.model_copy(update=sections)

    def check_dimensions(self, obs_dim: int) -> None:
        """Per-dimension values and parameters must have one number per observation dimension."""
        check_dimensions(self.fixed, obs_dim)
        for name, randomized in self.randomized.items():
            shape = randomized.dist.shape
            if name in PER_DIMENSION and shape:
                try:
                    per_dimension(np.zeros(shape).tolist(), obs_dim, name)
                except ValueError as error:
                    raise SkewSpecError(f"{error} in {randomized!r}") from None


def config_path(task: str) -> Path:
    """The shipped randomization spec of a built-in task: ``configs/randomization/<task>.yaml``."""
    return data_dir("configs") / "randomization" / f"{task.lower()}.yaml"


def _randomized(name: str, entry: Mapping[str, Any]) -> Randomized:
    """Validate one distribution entry of field ``name``."""
    got = _flow(entry)
    if name not in RANDOMIZABLE:
        raise SkewSpecError(f"{name} cannot be randomized (it takes a fixed value), got {got}")
    options = {key: entry[key] for key in ("resample", "per") if key in entry}
    resample, per = options.get("resample", RESAMPLE[0]), options.get("per", PER[0])
    if resample not in RESAMPLE:
        raise SkewSpecError(f"{name}: resample must be one of {', '.join(RESAMPLE)}, got {got}")
    if per not in PER:
        raise SkewSpecError(f"{name}: per must be one of {', '.join(PER)}, got {got}")
    if resample == "step" and name not in STEP_FIELDS:
        raise SkewSpecError(
            f"{name} is drawn once per episode (resample: step is allowed only on "
            f"{', '.join(STEP_FIELDS)}), got {got}"
        )
    if per == "element" and name not in ELEMENTS:
        raise SkewSpecError(
            f"{name} has one value per env (per: element is allowed only on "
            f"{', '.join(ELEMENTS)}), got {got}"
        )
    try:
        dist = distribution({k: v for k, v in entry.items() if k not in options})
    except ValueError as error:
        raise SkewSpecError(f"{name}: {error}, got {got}") from None
    randomized = Randomized(name, dist, resample, per)
    section, field = name.split(".")
    for end, value in zip(("low", "high"), dist.support, strict=True):
        number = value.tolist() if np.ndim(value) else float(value)
        try:
            SkewSpec.model_validate({section: {field: number}})
        except ValidationError as error:
            message = format_validation_error(error)
            raise SkewSpecError(f"{message} (the {end} end of {randomized!r})") from None
    return randomized


def _fields_set(spec: SkewSpec, name: str) -> set[str]:
    return getattr(spec, name.split(".")[0]).model_fields_set


def _flow(value: Any) -> str:
    """A config value in YAML flow style, as the user wrote it."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return to_yaml(value)
    return str(value)
