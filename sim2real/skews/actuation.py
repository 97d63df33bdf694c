"""Actuation skews: what the motor driver does to a command before it reaches the physics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sim2real.skews.streams import BlockStream

if TYPE_CHECKING:
    from sim2real.skews.pipeline import Context


class ActuationNoise:
    """Gaussian noise added to every command, drawn per control step and dimension.

    Args:
        std_fraction: standard deviation as a fraction of each action's range
            (``high - low``), one number or one per action dimension; 0.02 on a
            [-1, 1] action is 0.04 action units.
        span: each action's range ``high - low`` (action units).
        stream: the noise rows in action units (already scaled), one per control step.
    """

    field = "actuation.noise_std"
    unit = "x action range"

    def __init__(
        self,
        std_fraction: float | np.ndarray,
        span: np.ndarray,
        stream: BlockStream | None = None,
    ) -> None:
        self.std = std_fraction * span
        self.stream = stream

    @classmethod
    def build(cls, value: Any, ctx: Context) -> ActuationNoise | None:
        span, dim = ctx.span, len(ctx.low)
        if type(value) is float and value == 0.0:  # the common case: no noise, nothing to build
            return None
        if ctx.per_step(value):  # noise = (std_t * z_t) x action range, std_t drawn each step
            stream = ctx.per_step_stream(cls.field, value, dim, lambda rows: span * rows)
            return cls(1.0, span, stream)
        std = ctx.elementwise(value, dim)
        if not ctx.nonzero(std):
            return None
        noise = cls(std, span)
        noise.stream = ctx.streams.gaussian(cls.field, dim, noise.std)
        return noise

    def refresh(self, value: Any, ctx: Context) -> bool:
        """Take the episode's ``value`` in place (the same object and stream, restarted);
        ``False`` when it needs building afresh (a per-step or nominal value, new streams)."""
        if not ctx.takes(value):
            return False
        std = value * ctx.span
        if not ctx.streams.keeps_gaussian(self.field, self.stream, std):
            return False
        self.std = std
        return True

    def __call__(self, command: np.ndarray) -> np.ndarray:
        return self.stream.next() + command  # type: ignore[union-attr]


class Deadband:
    """Commands closer to the centre of the range than the threshold produce nothing.

    Args:
        fraction: the threshold as a fraction of each action's range
            (``high - low``), one number or one per action dimension; 0.05 on a
            [-1, 1] action zeroes ``|a| < 0.1``.
        centre, span: the middle ``(high + low) / 2`` and range ``high - low`` of each
            action (action units).
    """

    field = "actuation.deadband"
    unit = "x action range"

    def __init__(self, fraction: float | np.ndarray, centre: np.ndarray, span: np.ndarray) -> None:
        self.centre = centre
        self.threshold = fraction * span
        self._centred = not np.any(centre)  # a range symmetric about 0: no subtraction needed

    @classmethod
    def build(cls, value: Any, ctx: Context) -> Deadband | None:
        fraction = ctx.elementwise(value, len(ctx.low))
        return cls(fraction, ctx.centre, ctx.span) if ctx.nonzero(fraction) else None

    def refresh(self, value: Any, ctx: Context) -> bool:
        """Take the episode's ``value`` in place; ``False`` when it needs building afresh."""
        if not ctx.takes(value):
            return False
        self.threshold = value * ctx.span
        return True

    def __call__(self, command: np.ndarray) -> np.ndarray:
        if self._centred:  # the same numbers as below, one array operation fewer
            return np.where(np.abs(command) < self.threshold, self.centre, command)
        return np.where(np.abs(command - self.centre) < self.threshold, self.centre, command)
