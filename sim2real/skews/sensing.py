"""Sensing skews: what the sensors do to the physical state before the policy reads it.

A reading is ``state + bias + noise``; with dropout a dimension repeats its
previous reading instead. All values are in the observation's own units, one
number for every dimension or one per dimension.
"""

from __future__ import annotations

import numpy as np

from sim2real.skews.streams import GaussianStream, UniformStream


def per_dimension(value: float | list[float], dim: int, field: str) -> np.ndarray:
    """A scalar or per-dimension value as an array of length ``dim``; a wrong length is an error."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return np.full(dim, float(array))
    if array.shape != (dim,):
        raise ValueError(
            f"{field} must be one number or {dim} numbers (one per observation dimension), "
            f"got {array.shape[0]}"
        )
    return array


class SensorBias:
    """A constant offset per dimension, drawn once per episode: ``bias ~ N(0, bias_std²)``.

    Args:
        std: standard deviation per dimension, in observation units.
    """

    field = "sensing.bias_std"
    unit = "obs units"

    def __init__(self, std: np.ndarray) -> None:
        self.std = std
        self.offset = np.zeros_like(std)

    def draw(self, rng: np.random.Generator) -> None:
        self.offset = self.std * rng.standard_normal(self.std.shape)


class SensorNoise:
    """White gaussian noise on every reading, per dimension, in observation units.

    Args:
        std: standard deviation per dimension, in observation units.
    """

    field = "sensing.noise_std"
    unit = "obs units"

    def __init__(self, std: np.ndarray) -> None:
        self.std = std
        self.stream: GaussianStream | None = None

    def sample(self) -> np.ndarray:
        return self.std * self.stream.next()  # type: ignore[union-attr]


class SensorDropout:
    """Each dimension of a reading repeats its previous value with probability ``prob``.

    Args:
        prob: per-dimension, per-reading probability (dimensionless, in [0, 1]).
    """

    field = "sensing.dropout_prob"
    unit = "probability"

    def __init__(self, prob: float) -> None:
        self.prob = prob
        self.stream: UniformStream | None = None

    def mask(self) -> np.ndarray:
        return self.stream.next() < self.prob  # type: ignore[union-attr]


class Sensors:
    """The sensing stack of one env: bias, then noise, then dropout."""

    def __init__(
        self, bias: SensorBias | None, noise: SensorNoise | None, dropout: SensorDropout | None
    ) -> None:
        self.bias, self.noise, self.dropout = bias, noise, dropout
        self.previous: np.ndarray | None = None

    @property
    def active(self) -> bool:
        return any(s is not None for s in (self.bias, self.noise, self.dropout))

    def read(self, state: np.ndarray) -> np.ndarray:
        """One reading of ``state``; the first reading of an episode never drops out."""
        reading = state
        if self.bias is not None:
            reading = reading + self.bias.offset
        if self.noise is not None:
            reading = reading + self.noise.sample()
        if self.dropout is not None and self.previous is not None:
            reading = np.where(self.dropout.mask(), self.previous, reading)
        if reading is state:
            reading = state.copy()
        self.previous = reading
        return reading
