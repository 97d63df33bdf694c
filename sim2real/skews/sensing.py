"""Sensing skews: what the sensors do to the physical state before the policy reads it.

A reading is ``state + bias + noise``; with dropout a dimension repeats its
previous reading instead. All values are in the observation's own units, one
number for every dimension or one per dimension.
"""

from __future__ import annotations

from collections.abc import Callable
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
        self.offset = np.zeros(std.shape)  # float64, as std

    @classmethod
    def build(cls, value: Any, ctx: Context) -> SensorBias | None:
        std = ctx.elementwise(value, ctx.obs_dim)
        if not ctx.nonzero(std):
            return None
        return cls(np.full(ctx.obs_dim, std) if isinstance(std, float) else std)

    def refresh(self, value: Any, ctx: Context) -> bool:
        """Take the episode's ``value`` in place (readers hold ``offset``); ``False`` when it
        needs building afresh."""
        if not ctx.takes(value):
            return False
        self.std = np.full(ctx.obs_dim, value) if type(value) is float else value
        return True

    def draw(self, normal: np.ndarray) -> None:
        """This episode's offsets from one standard-normal row, written in place (readers
        hold the array)."""
        np.multiply(self.std, normal, out=self.offset)


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

    def refresh(self, value: Any, ctx: Context) -> bool:
        """Take the episode's ``value`` in place (the same stream, restarted); ``False`` when
        it needs building afresh."""
        if not (ctx.takes(value) and ctx.streams.keeps_gaussian(self.field, self.stream, value)):
            return False
        self.std = value
        return True

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

    def refresh(self, value: Any, ctx: Context) -> bool:
        """Take the episode's ``value`` in place (the same stream, restarted); ``False`` when
        it needs building afresh."""
        if not (ctx.takes(value) and ctx.streams.keeps_below(self.field, self.stream, value)):
            return False
        self.prob = value
        return True

    def mask(self) -> np.ndarray:
        return self.stream.next()  # type: ignore[union-attr]


class Sensors:
    """The sensing stack of one env: bias, then noise, then dropout.

    ``read(state)`` is specialized to the components present when built (one
    closure, no branches on the hot path); it always returns a new array.
    """

    def __init__(
        self, bias: SensorBias | None, noise: SensorNoise | None, dropout: SensorDropout | None
    ) -> None:
        self.bias, self.noise, self.dropout = bias, noise, dropout
        self.active = not (bias is None and noise is None and dropout is None)
        self._previous: list[np.ndarray | None] = [None]  # held by read(), not self: no cycle
        self.read = self._reader()

    @property
    def previous(self) -> np.ndarray | None:
        """The last reading (what a dropped-out dimension repeats); ``None`` at an episode's
        start."""
        return self._previous[0]

    @previous.setter
    def previous(self, value: np.ndarray | None) -> None:
        self._previous[0] = value

    def draw_bias(self, normal: Callable[[], np.ndarray]) -> None:
        """The episode's sensor offsets, drawn at reset: ``normal()`` is the next standard-normal
        row of the ``"sensing.bias_std"`` stream (one ``standard_normal(dim)`` per episode)."""
        if self.bias is not None:
            self.bias.draw(normal())

    def _reader(self):
        offset = None if self.bias is None else self.bias.offset
        noise = None if self.noise is None else self.noise.stream.next  # type: ignore[union-attr]
        if self.dropout is None:  # the common cases, without the dropout bookkeeping
            if offset is not None and noise is not None:
                return lambda state: state + offset + noise()
            if noise is not None:
                return lambda state: state + noise()
            if offset is not None:
                return lambda state: state + offset
            return lambda state: state.copy()
        mask = self.dropout.stream.next  # type: ignore[union-attr]
        last = self._previous

        def read(state: np.ndarray) -> np.ndarray:
            """One reading of ``state``; the first reading of an episode never drops out."""
            reading = state
            if offset is not None:
                reading = reading + offset
            if noise is not None:
                reading = reading + noise()
            previous = last[0]
            if previous is not None:
                reading = np.where(mask(), previous, reading)
            if reading is state:
                reading = state.copy()
            last[0] = reading
            return reading

        return read
