"""Actuation skews: what the motor driver does to a command before it reaches the physics."""

from __future__ import annotations

import numpy as np

from sim2real.skews.streams import GaussianStream


class ActuationNoise:
    """Gaussian noise added to every command, drawn per control step and dimension.

    Args:
        std_fraction: standard deviation as a fraction of each action's range
            (``high - low``); 0.02 on a [-1, 1] action is 0.04 action units.
        low, high: the action bounds (action units); noisy commands are clipped to them.
    """

    field = "actuation.noise_std"
    unit = "x action range"

    def __init__(self, std_fraction: float | np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
        self.std = np.asarray(std_fraction, dtype=np.float64) * (high - low)
        self.stream: GaussianStream | None = None

    def __call__(self, command: np.ndarray) -> np.ndarray:
        return self.std * self.stream.next() + command  # type: ignore[union-attr]


class Deadband:
    """Commands closer to the centre of the range than the threshold produce nothing.

    Args:
        fraction: the threshold as a fraction of each action's range
            (``high - low``); 0.05 on a [-1, 1] action zeroes ``|a| < 0.1``.
        low, high: the action bounds (action units).
    """

    field = "actuation.deadband"
    unit = "x action range"

    def __init__(self, fraction: float, low: np.ndarray, high: np.ndarray) -> None:
        self.centre = (high + low) / 2
        self.threshold = fraction * (high - low)

    def __call__(self, command: np.ndarray) -> np.ndarray:
        return np.where(np.abs(command - self.centre) < self.threshold, self.centre, command)
