"""The skew schema: a point in skew space, validated before any env is built.

A spec has four sections (``dynamics``, ``actuation``, ``sensing``, ``timing``);
every field has a unit and a nominal value at which it changes nothing, and an
omitted field is nominal. See DESIGN.md section 3.

>>> spec = SkewSpec.load({"dynamics": {"friction_scale": 0.7}})
>>> spec.active()
{'dynamics.friction_scale': 0.7}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

SECTIONS = ("dynamics", "actuation", "sensing", "timing")


def _non_negative_per_dimension(value: float | list[float]) -> float | list[float]:
    values = value if isinstance(value, list) else [value]
    if any(v < 0 for v in values):
        raise ValueError("must be >= 0 (one number, or one per observation dimension)")
    return value


# A value in observation units: one number for all dimensions, or one per dimension.
PerDimension = Annotated[Union[float, list[float]], AfterValidator(_non_negative_per_dimension)]  # noqa: UP007


def _field(default: Any, unit: str, meaning: str, **constraints: Any) -> Any:
    return Field(default, description=meaning, json_schema_extra={"unit": unit}, **constraints)


class SkewSpecError(ValueError):
    """A skew spec that breaks the schema; the message is one line naming the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Dynamics(_Section):
    friction_scale: float = _field(1.0, "x nominal", "sliding friction of every geom", gt=0)
    mass_scale: float = _field(1.0, "x nominal", "body masses, inertias scaled alike", gt=0)
    damping_scale: float = _field(1.0, "x nominal", "joint damping", gt=0)
    actuator_strength: float = _field(1.0, "x nominal", "actuator gear (torque per command)", gt=0)
    gravity: list[float] | None = _field(
        None, "m/s^2", "gravity vector; null keeps the model's own", min_length=3, max_length=3
    )


class Actuation(_Section):
    noise_std: float = _field(0.0, "x action range", "gaussian noise on each command", ge=0)
    deadband: float = _field(
        0.0, "x action range", "|command - centre| below this produces nothing", ge=0, le=0.5
    )


class Sensing(_Section):
    noise_std: PerDimension = _field(0.0, "obs units", "gaussian noise on each reading")
    bias_std: PerDimension = _field(0.0, "obs units", "offset per dimension, drawn per episode")
    dropout_prob: float = _field(
        0.0, "probability", "a reading repeats the previous one", ge=0, le=1
    )


class Timing(_Section):
    obs_latency_s: float = _field(0.0, "s", "age of the observation the policy receives", ge=0)
    action_latency_s: float = _field(0.0, "s", "time between a command and its effect", ge=0)


_SECTION_MODELS: dict[str, type[_Section]] = {
    "dynamics": Dynamics,
    "actuation": Actuation,
    "sensing": Sensing,
    "timing": Timing,
}


class SkewSpec(BaseModel):
    """A point in skew space: a value for some skews, all others nominal."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    description: str = ""
    dynamics: Dynamics = Dynamics()
    actuation: Actuation = Actuation()
    sensing: Sensing = Sensing()
    timing: Timing = Timing()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, source: SkewSpec | Mapping[str, Any] | str | Path | None) -> SkewSpec:
        """Build a spec from a spec, a mapping, or a YAML file; ``None`` is all-nominal."""
        if source is None:
            return cls()
        if isinstance(source, SkewSpec):
            return source
        if isinstance(source, (str, Path)):
            source = load_yaml(source, what="skew spec")
        if not isinstance(source, Mapping):
            raise SkewSpecError(
                f"skew spec must be a mapping or a YAML path, got {type(source).__name__}"
            )
        try:
            return cls.model_validate(dict(source))
        except ValidationError as error:
            raise SkewSpecError(format_validation_error(error)) from None

    # ------------------------------------------------------------------ views
    def values(self) -> dict[str, Any]:
        """Every field as ``{"section.field": value}``, nominal ones included."""
        return {
            f"{section}.{name}": getattr(getattr(self, section), name)
            for section in SECTIONS
            for name in _SECTION_MODELS[section].model_fields
        }

    def active(self) -> dict[str, Any]:
        """The non-nominal fields as ``{"section.field": value}``, in schema order."""
        nominal = NOMINAL.values()
        return {k: v for k, v in self.values().items() if not _same(v, nominal[k])}

    def only(self, names: Iterable[str]) -> SkewSpec:
        """This spec with every field outside ``names`` set back to nominal."""
        keep = set(names)
        unknown = keep - set(FIELDS)
        if unknown:
            raise SkewSpecError(f"unknown skew field {sorted(unknown)[0]!r}; allowed: {FIELDS}")
        nested: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        for key, value in self.active().items():
            if key in keep:
                section, name = key.split(".")
                nested[section][name] = value
        return SkewSpec.model_validate({"description": self.description, **nested})

    def to_dict(self, *, only_active: bool = True) -> dict[str, Any]:
        """The nested mapping form (as in YAML), by default only non-nominal fields."""
        items = self.active() if only_active else self.values()
        nested: dict[str, Any] = {}
        for key, value in items.items():
            section, name = key.split(".")
            nested.setdefault(section, {})[name] = value
        return nested


NOMINAL = SkewSpec()
FIELDS: tuple[str, ...] = tuple(NOMINAL.values())


def field_info(name: str) -> tuple[str, str]:
    """``(unit, meaning)`` of a dotted field name such as ``"timing.obs_latency_s"``."""
    section, field = name.split(".")
    info = _SECTION_MODELS[section].model_fields[field]
    return info.json_schema_extra["unit"], info.description  # type: ignore[index]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and not isinstance(b, list):
        return all(x == b for x in a)
    return a == b


def load_yaml(path: str | Path, *, what: str) -> Any:
    """Read a YAML file, turning a missing or malformed file into one clear line."""
    path = Path(path)
    if not path.is_file():
        raise SkewSpecError(f"{what}: no such file {str(path)!r}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SkewSpecError(f"{what}: {path} is not valid YAML ({error})") from None


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "float_type": "must be a number",
    "list_type": "must be a list of numbers",
    "too_short": "must have exactly 3 components",
    "too_long": "must have exactly 3 components",
    "string_type": "must be a string",
    "model_type": "must be a mapping",
    "dict_type": "must be a mapping",
}


def format_validation_error(error: ValidationError) -> str:
    """One line naming the field, the value and what is allowed."""
    first = error.errors()[0]
    # Union members (scalar or per-dimension list) appear as extra location parts.
    loc = [
        str(part)
        for part in first["loc"]
        if not isinstance(part, int) and part not in ("float", "list[float]")
    ]
    name = ".".join(loc)
    if first["type"] == "extra_forbidden":
        parent = loc[0] if len(loc) > 1 else None
        allowed = (
            list(_SECTION_MODELS[parent].model_fields)
            if parent in _SECTION_MODELS
            else ["description", *SECTIONS]
        )
        return f"unknown skew field {name!r}; allowed: {', '.join(allowed)}"
    if first["type"] == "value_error":
        return f"{name} {first['ctx']['error']}, got {first['input']!r}"
    template = _MESSAGES.get(first["type"], first["msg"])
    message = template.format(**first.get("ctx", {}))
    return f"{name} {message}, got {first['input']!r}"
