"""One small component per skew of the schema (DESIGN.md section 3), and the registry
that lists them (:mod:`sim2real.skews.registry`)."""

from sim2real.skews.actuation import ActuationNoise, Deadband
from sim2real.skews.dynamics import (
    ActuatorStrength,
    ArmatureScale,
    DampingScale,
    FrictionScale,
    Gravity,
    MassScale,
    ModelSkews,
)
from sim2real.skews.sensing import SensorBias, SensorDropout, SensorNoise, Sensors
from sim2real.skews.timing import (
    ActionLatency,
    ControlJitter,
    Latency,
    ObservationLatency,
    step_segments,
)

__all__ = [
    "ActionLatency",
    "ActuationNoise",
    "ActuatorStrength",
    "ArmatureScale",
    "ControlJitter",
    "DampingScale",
    "Deadband",
    "FrictionScale",
    "Gravity",
    "Latency",
    "MassScale",
    "ModelSkews",
    "ObservationLatency",
    "SensorBias",
    "SensorDropout",
    "SensorNoise",
    "Sensors",
    "step_segments",
]
