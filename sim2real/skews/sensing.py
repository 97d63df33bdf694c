"""Sensing skews: what the sensors do to the physical state before the policy reads it.

A reading is ``state + bias + noise``; with dropout a dimension repeats its
previous reading instead. All values are in the observation's own units, one
number for every dimension or one per dimension.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sim2real.skews.streams import BlockStream

if TYPE_CHECKING:
    from sim2real.skews.pipeline import Context


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

    @classmethod
    def build(cls, value: Any, ctx: Context) -> SensorBias | None:
        std = ctx.elementwise(value, ctx.obs_dim)
        if not ctx.nonzero(std):
            return None
        return cls(np.full(ctx.obs_dim, std) if isinstance(std, float) else std)

    def draw(self, rng: np.random.Generator) -> None:
        self.offset = self.std * rng.standard_normal(self.std.shape)


class SensorNoise:
    """White gaussian noise on every reading, per dimension, in observation units.

    Args:
        std: standard deviation per dimension, in observation units.
        stream: the noise rows in observation units (already scaled), one per reading.
    """

    field = "sensing.noise_std"
    unit = "obs units"

    def __init__(self, std: np.ndarray, stream: BlockStream | None = None) -> None:
        self.std = std
        self.stream = stream

    @classmethod
    def build(cls, value: Any, ctx: Context) -> SensorNoise | None:
        dim = ctx.obs_dim
        if ctx.per_step(value):  # noise = std_t * z_t, std_t drawn at every reading
            return cls(np.ones(dim), ctx.per_step_stream(cls.field, value, dim))
        std = ctx.elementwise(value, dim)
        if not ctx.nonzero(std):
            return None
        return cls(std, ctx.streams.gaussian(cls.field, dim, std))

    def sample(self) -> np.ndarray:
        return self.stream.next()  # type: ignore[union-attr]


class SensorDropout:
    """Each dimension of a reading repeats its previous value with probability ``prob``.

    Args:
        prob: per-dimension, per-reading probability (dimensionless, in [0, 1]).
        stream: boolean rows, True where a dimension drops out of that reading.
    """

    field = "sensing.dropout_prob"
    unit = "probability"

    def __init__(self, prob: float | np.ndarray, stream: BlockStream | None = None) -> None:
        self.prob = prob
        self.stream = stream

    @classmethod
    def build(cls, value: Any, ctx: Context) -> SensorDropout | None:
        dim = ctx.obs_dim
        if ctx.per_step(value):  # dropped where u_t < p_t, p_t drawn at every reading
            return cls(0.0, ctx.per_step_stream(cls.field, value, dim, lambda rows: rows < 0))
        prob = ctx.elementwise(value, dim)
        if not ctx.nonzero(prob):
            return None
        return cls(value, ctx.streams.below(cls.field, dim, prob))

    def mask(self) -> np.ndarray:
        return self.stream.next()  # type: ignore[union-attr]


class Sensors:
    """The sensing stack of one env: bias, then noise, then dropout."""

    def __init__(
        self, bias: SensorBias | None, noise: SensorNoise | None, dropout: SensorDropout | None
    ) -> None:
        self.bias, self.noise, self.dropout = bias, noise, dropout
        self.previous: np.ndarray | None = None
        self._offset = None if bias is None else bias.offset
        self._noise = None if noise is None else noise.stream.next  # type: ignore[union-attr]
        self._mask = None if dropout is None else dropout.stream.next  # type: ignore[union-attr]

    @property
    def active(self) -> bool:
        return any(s is not None for s in (self.bias, self.noise, self.dropout))

    def draw_bias(self, rng: np.random.Generator) -> None:
        """The episode's sensor offsets, drawn at reset."""
        if self.bias is not None:
            self.bias.draw(rng)
            self._offset = self.bias.offset

    def read(self, state: np.ndarray) -> np.ndarray:
        """One reading of ``state``; the first reading of an episode never drops out."""
        reading = state
        if self._offset is not None:
            reading = reading + self._offset
        if self._noise is not None:
            reading = reading + self._noise()
        if self._mask is not None and self.previous is not None:
            reading = np.where(self._mask(), self.previous, reading)
        if reading is state:
            reading = state.copy()
        self.previous = reading
        return reading
