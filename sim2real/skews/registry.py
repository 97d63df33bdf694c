"""Every skew, registered once: the table that the schema, ``describe()``, the randomization
spec and the pipeline builder all read (DESIGN.md section 5, "One point, one pipeline").

A :class:`Skew` entry says what a field is called, its unit, nominal value and meaning,
which values it allows, what it acts on (one value per env, or one per geom, body, dof,
actuator, action or observation dimension), the random streams it draws from, whether a
randomization may draw it afresh at every control step, and the component class that
realizes it (``component.build(value, context)``, see :mod:`sim2real.skews.pipeline`).

Adding a skew is one class and one entry in :data:`SKEWS`. Within a section, entries are
listed in the order the schema shows them; new ones go at the end of their section.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Element(str, Enum):
    """What one value of a skew acts on; ``ENV`` means one value for the whole env."""

    ENV = "env"
    GEOM = "geom"
    BODY = "body"
    DOF = "dof"
    ACTUATOR = "actuator"
    ACTION = "action dimension"
    OBSERVATION = "observation dimension"


class Stage(str, Enum):
    """Where in the section-3 pipeline a skew acts."""

    DYNAMICS = "dynamics"  # an in-place model edit at reset
    ACTUATION = "actuation"  # a transform of each command
    SENSING = "sensing"  # a transform of each reading
    TIMING = "timing"  # when commands act and readings arrive


@dataclass(frozen=True)
class Bounds:
    """The values a field allows: ``low`` (exclusive when ``open_low``) up to ``high``."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False

    def problem(self, value: float) -> str | None:
        """What is wrong with one number, or ``None``."""
        if math.isnan(value):
            return "must be a finite number"
        if self.open_low and value <= self.low:
            return f"must be > {self.low}"
        if value < self.low:
            return f"must be >= {self.low}"
        if value > self.high:
            return f"must be <= {self.high}"
        if not math.isfinite(value):
            return "must be a finite number"
        return None


POSITIVE = Bounds(0.0, open_low=True)
NON_NEGATIVE = Bounds(0.0)


@dataclass(frozen=True)
class Skew:
    """One registered skew.

    Attributes:
        field: dotted name, ``"<section>.<name>"``; the section is its pipeline stage.
        unit: the unit of its value (``"x nominal"``, ``"s"``, ...).
        nominal: the value at which it changes nothing (``None``: the model's own).
        meaning: one phrase for the schema and ``describe()``.
        acts_on: what one value acts on; a field with elements also takes one value per
            element (a list), which is how per-element draws are written in a point.
        bounds: the numbers it allows (every element alike).
        component: the class that realizes it; ``component.build(value, context)``.
        streams: the names of the random streams it draws from at every step or reset.
        per_step: whether a randomization may draw it afresh at every control step
            (noise-like fields only).
        vector: a fixed-length vector that is set, not scaled (gravity: 3 components).
    """

    field: str
    unit: str
    nominal: Any
    meaning: str
    acts_on: Element
    bounds: Bounds
    component: type
    streams: tuple[str, ...] = ()
    per_step: bool = False
    vector: int = 0

    def __post_init__(self) -> None:
        section, name = self.field.split(".")
        object.__setattr__(self, "section", section)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "stage", Stage(section))

    section: str = field(init=False, repr=False, compare=False)
    name: str = field(init=False, repr=False, compare=False)
    stage: Stage = field(init=False, repr=False, compare=False)

    @property
    def per_element(self) -> bool:
        """Whether it takes one value per element (a list) as well as one number."""
        return self.acts_on is not Element.ENV and not self.vector

    @property
    def randomizable(self) -> bool:
        """Whether a randomization may draw it (a number, not a vector)."""
        return not self.vector


def _registry() -> dict[str, Skew]:
    from sim2real.skews.actuation import ActuationNoise, Deadband
    from sim2real.skews.dynamics import (
        ActuatorStrength,
        ArmatureScale,
        DampingScale,
        FrictionScale,
        Gravity,
        MassScale,
    )
    from sim2real.skews.sensing import SensorBias, SensorDropout, SensorNoise
    from sim2real.skews.timing import ActionLatency, ControlJitter, ObservationLatency

    fraction = Bounds(0.0, 0.5)
    probability = Bounds(0.0, 1.0)
    entries = (
        Skew("dynamics.friction_scale", "x nominal", 1.0, "sliding friction of every geom",
             Element.GEOM, POSITIVE, FrictionScale),
        Skew("dynamics.mass_scale", "x nominal", 1.0, "body masses, inertias scaled alike",
             Element.BODY, POSITIVE, MassScale),
        Skew("dynamics.damping_scale", "x nominal", 1.0, "joint damping",
             Element.DOF, POSITIVE, DampingScale),
        Skew("dynamics.actuator_strength", "x nominal", 1.0, "actuator gear (torque per command)",
             Element.ACTUATOR, POSITIVE, ActuatorStrength),
        Skew("dynamics.gravity", "m/s^2", None, "gravity vector; null keeps the model's own",
             Element.ENV, Bounds(), Gravity, vector=3),
        Skew("dynamics.armature_scale", "x nominal", 1.0,
             "joint armature (rotor inertia reflected through the gear)",
             Element.DOF, POSITIVE, ArmatureScale),
        Skew("actuation.noise_std", "x action range", 0.0, "gaussian noise on each command",
             Element.ACTION, NON_NEGATIVE, ActuationNoise, ("actuation.noise_std",), True),
        Skew("actuation.deadband", "x action range", 0.0,
             "|command - centre| below this produces nothing", Element.ACTION, fraction, Deadband),
        Skew("sensing.noise_std", "obs units", 0.0, "gaussian noise on each reading",
             Element.OBSERVATION, NON_NEGATIVE, SensorNoise, ("sensing.noise_std",), True),
        Skew("sensing.bias_std", "obs units", 0.0, "offset per dimension, drawn per episode",
             Element.OBSERVATION, NON_NEGATIVE, SensorBias, ("sensing.bias_std",)),
        Skew("sensing.dropout_prob", "probability", 0.0, "a reading repeats the previous one",
             Element.OBSERVATION, probability, SensorDropout, ("sensing.dropout_prob",), True),
        Skew("timing.obs_latency_s", "s", 0.0, "age of the observation the policy receives",
             Element.ENV, NON_NEGATIVE, ObservationLatency),
        Skew("timing.action_latency_s", "s", 0.0, "time between a command and its effect",
             Element.ENV, NON_NEGATIVE, ActionLatency),
        Skew("timing.control_jitter_s", "s", 0.0,
             "extra delay of each command, uniform on the substeps within this bound",
             Element.ENV, NON_NEGATIVE, ControlJitter, ("timing.control_jitter_s",)),
    )  # fmt: skip
    return {entry.field: entry for entry in entries}


SKEWS: Mapping[str, Skew] = _registry()
SECTIONS: tuple[str, ...] = tuple(stage.value for stage in Stage)
FIELDS: tuple[str, ...] = tuple(
    name for section in SECTIONS for name, skew in SKEWS.items() if skew.section == section
)


def skew(field: str) -> Skew:
    """The registered skew ``field`` (a dotted name), or a one-line error listing them."""
    try:
        return SKEWS[field]
    except KeyError:
        raise ValueError(f"unknown skew field {field!r}; allowed: {', '.join(FIELDS)}") from None
