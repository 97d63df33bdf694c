"""Domain randomization over the whole skew space (DESIGN.md section 3).

A randomization spec is a skew spec in which any numeric value may be a
distribution; :class:`DomainRandomization` draws a point from it every episode.

>>> import gymnasium as gym
>>> env = DomainRandomization(gym.make("Hopper-v5"), config_path("Hopper"))
"""

from sim2real.randomization.distributions import (
    DISTRIBUTIONS,
    Choice,
    Constant,
    Distribution,
    LogUniform,
    Normal,
    TruncNormal,
    Uniform,
    distribution,
)
from sim2real.randomization.source import RandomizationSource
from sim2real.randomization.spec import (
    ELEMENTS,
    RANDOMIZABLE,
    STEP_FIELDS,
    RandomizationSpec,
    Randomized,
    config_path,
)
from sim2real.randomization.wrapper import DomainRandomization

__all__ = [
    "DISTRIBUTIONS",
    "ELEMENTS",
    "RANDOMIZABLE",
    "STEP_FIELDS",
    "Choice",
    "Constant",
    "Distribution",
    "DomainRandomization",
    "LogUniform",
    "Normal",
    "RandomizationSource",
    "RandomizationSpec",
    "Randomized",
    "TruncNormal",
    "Uniform",
    "config_path",
    "distribution",
]
