"""Domain randomization over the whole skew space (DESIGN.md section 3).

A randomization spec is a skew spec in which any numeric value may be a
distribution. :class:`RandomizationSource` draws a point from it every episode
(the source protocol of :mod:`sim2real.point`); :class:`DomainRandomization` is
the public spelling of ``SkewedEnv(env, RandomizationSource(spec, base))``.

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
