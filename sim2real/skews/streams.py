"""Seeded random streams drawn in blocks: one generator call serves many steps."""

from __future__ import annotations

import numpy as np

_BLOCK = 256


class GaussianStream:
    """Standard normal rows of length ``dim`` from one generator, drawn 256 rows at a time."""

    def __init__(self, rng: np.random.Generator, dim: int) -> None:
        self.rng, self.dim = rng, dim
        self._block = np.empty((0, dim))
        self._row = 0

    def next(self) -> np.ndarray:
        if self._row == len(self._block):
            self._block = self.rng.standard_normal((_BLOCK, self.dim))
            self._row = 0
        self._row += 1
        return self._block[self._row - 1]


class UniformStream(GaussianStream):
    """Uniform [0, 1) rows of length ``dim``, drawn in blocks like :class:`GaussianStream`."""

    def next(self) -> np.ndarray:
        if self._row == len(self._block):
            self._block = self.rng.random((_BLOCK, self.dim))
            self._row = 0
        self._row += 1
        return self._block[self._row - 1]
