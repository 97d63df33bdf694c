"""The skew schema: a point in skew space, validated before any env is built.

A spec has four sections (``dynamics``, ``actuation``, ``sensing``, ``timing``);
every field has a unit and a nominal value at which it changes nothing, and an
omitted field is nominal. The fields, their units, nominal values and allowed
values come from the skew registry (:mod:`sim2real.skews.registry`); see
DESIGN.md section 3. A field that acts on many elements (geoms, bodies, dofs,
actuators, action or observation dimensions) takes one number for all of them
or a list with one per element.

>>> spec = SkewSpec.load({"dynamics": {"friction_scale": 0.7}})
>>> spec.active()
{'dynamics.friction_scale': 0.7}
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Union

import numpy as np
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from sim2real.skews.registry import FIELDS, SECTIONS, SKEWS, Skew

__all__ = [
    "FIELDS",
    "NOMINAL",
    "SECTIONS",
    "SkewSpec",
    "SkewSpecError",
    "check_dimensions",
    "field_info",
    "format_validation_error",
    "load_yaml",
    "plain",
]


class SkewSpecError(ValueError):
    """A skew spec that breaks the schema; the message is one line naming the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _checker(entry: Skew):
    """The validator of one field: every number finite and within the field's bounds."""
    what = f"one number, or one per {entry.acts_on.value}"

    def check(value: Any) -> Any:
        if value is None:
            return value
        numbers = value if isinstance(value, list) else [value]
        if isinstance(value, list) and entry.per_element and not value:
            raise ValueError(f"must be {what}, not an empty list")
        for number in numbers:
            problem = entry.bounds.problem(number)
            if problem:
                suffix = f" ({what})" if isinstance(value, list) and entry.per_element else ""
                raise ValueError(problem + suffix)
        return value

    return check


def _annotation(entry: Skew) -> Any:
    check = AfterValidator(_checker(entry))
    if entry.vector:
        return Annotated[list[float] | None, check]
    if entry.per_element:
        return Annotated[Union[float, list[float]], check]  # noqa: UP007
    return Annotated[float, check]


def _section_model(section: str) -> type[_Section]:
    fields: dict[str, Any] = {}
    for entry in SKEWS.values():
        if entry.section != section:
            continue
        extra = {"min_length": entry.vector, "max_length": entry.vector} if entry.vector else {}
        fields[entry.name] = (
            _annotation(entry),
            Field(entry.nominal, description=entry.meaning,
                  json_schema_extra={"unit": entry.unit}, **extra),
        )  # fmt: skip
    return create_model(section.capitalize(), __base__=_Section, **fields)


Dynamics = _section_model("dynamics")
Actuation = _section_model("actuation")
Sensing = _section_model("sensing")
Timing = _section_model("timing")

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
    dynamics: Dynamics = Dynamics()  # type: ignore[valid-type]
    actuation: Actuation = Actuation()  # type: ignore[valid-type]
    sensing: Sensing = Sensing()  # type: ignore[valid-type]
    timing: Timing = Timing()  # type: ignore[valid-type]

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, source: SkewSpec | Mapping[str, Any] | str | Path | None) -> SkewSpec:
        """Build a spec from a spec, a mapping, or a YAML file; ``None`` is all-nominal.

        The mapping is nested as in YAML (``{"dynamics": {"mass_scale": 1.2}}``) or flat
        with dotted names, as a point is (``{"dynamics.mass_scale": 1.2}``); numpy arrays
        and numbers are accepted wherever lists and numbers are.
        """
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
            return cls.model_validate(nested(plain(source)))
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
        return {k: v for k, v in self.values().items() if not is_nominal(k, v)}

    def only(self, names: Iterable[str]) -> SkewSpec:
        """This spec with every field outside ``names`` set back to nominal."""
        keep = set(names)
        unknown = keep - set(FIELDS)
        if unknown:
            raise SkewSpecError(f"unknown skew field {sorted(unknown)[0]!r}; allowed: {FIELDS}")
        chosen = {k: v for k, v in self.active().items() if k in keep}
        return SkewSpec.model_validate({"description": self.description, **nested(chosen)})

    def to_dict(self, *, only_active: bool = True) -> dict[str, Any]:
        """The nested mapping form (as in YAML), by default only non-nominal fields."""
        return nested(self.active() if only_active else self.values())


NOMINAL = SkewSpec()


def check_dimensions(spec: SkewSpec, obs_dim: int) -> None:
    """Per-observation-dimension values must have one number per observation dimension."""
    for name, value in spec.active().items():
        entry = SKEWS[name]
        per_dimension = entry.acts_on.value == "observation dimension"
        if per_dimension and isinstance(value, list) and len(value) != obs_dim:
            raise SkewSpecError(
                f"{name} must be one number or {obs_dim} numbers (one per observation "
                f"dimension), got {len(value)}"
            )


def field_info(name: str) -> tuple[str, str]:
    """``(unit, meaning)`` of a dotted field name such as ``"timing.obs_latency_s"``."""
    entry = SKEWS[name]
    return entry.unit, entry.meaning


def is_nominal(name: str, value: Any) -> bool:
    """Whether ``value`` of field ``name`` changes nothing (a list: every element nominal)."""
    nominal = SKEWS[name].nominal
    if isinstance(value, list) and not isinstance(nominal, list) and nominal is not None:
        return all(x == nominal for x in value)
    return value == nominal


def nested(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": v}`` keys as ``{"a": {"b": v}}``; nested keys are kept as they are."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(key, str) and "." in key:
            section, name = key.split(".", 1)
            target = out.setdefault(section, {})
            if isinstance(target, dict):
                target[name] = value
                continue
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def plain(value: Any) -> Any:
    """``value`` with numpy arrays as lists, numpy numbers as Python numbers, tuples as lists."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


# --------------------------------------------------------------------------- YAML
# YAML 1.1 (PyYAML's resolver) reads 2e-2 as a string; YAML 1.2 and every user read a number.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """A safe loader that reads ``2e-2`` as a number and refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def load_yaml(path: str | Path, *, what: str) -> Any:
    """Read a YAML mapping from a file; a missing, empty or malformed file is one clear line.

    Duplicate keys are refused and ``2e-2`` is a number (as in YAML 1.2).
    """
    path = Path(path)
    if not path.is_file():
        raise SkewSpecError(f"{what}: no such file {str(path)!r}")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = error.problem or error.context or "malformed"
        raise SkewSpecError(f"{what}: {path} is not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as error:
        message = str(error).replace("\n", " ")
        raise SkewSpecError(f"{what}: {path} is not valid YAML ({message})") from None
    except UnicodeDecodeError:
        raise SkewSpecError(f"{what}: {path} is not a text file") from None
    if data is None:
        raise SkewSpecError(f"{what}: {path} is empty; it must hold a mapping of sections")
    if not isinstance(data, dict):
        raise SkewSpecError(
            f"{what}: {path} must hold a mapping of sections, got a {type(data).__name__}"
        )
    return data


# --------------------------------------------------------------------------- errors
_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
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
    # Union members (scalar or per-element list) appear as extra location parts.
    loc = [
        str(part)
        for part in first["loc"]
        if not isinstance(part, int) and part not in ("float", "list[float]")
    ]
    name = ".".join(loc)
    value = first["input"]
    if first["type"] == "extra_forbidden":
        parent = loc[0] if len(loc) > 1 else None
        allowed = (
            list(_SECTION_MODELS[parent].model_fields)
            if parent in _SECTION_MODELS
            else ["description", *SECTIONS]
        )
        return f"unknown skew field {name!r}; allowed: {', '.join(allowed)}"
    if first["type"] == "value_error":
        return f"{name} {first['ctx']['error']}, got {_shown(value)}"
    if first["type"] == "float_type" and isinstance(value, list):
        # A list given to a field that takes one number, or a list with a non-number in it.
        entry = SKEWS.get(name)
        if entry is not None and not entry.per_element and not entry.vector:
            return f"{name} must be one number (it acts on the whole env), got {_shown(value)}"
    template = _MESSAGES.get(first["type"], first["msg"])
    message = template.format(**first.get("ctx", {}))
    return f"{name} {message}, got {_shown(value)}"


def _shown(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return repr(value)
