"""Seeded random streams drawn in blocks: one generator call serves many steps."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

_BLOCK = 256


class GaussianStream:
    """Standard normal rows of length ``dim`` from one generator, drawn 256 rows at a time.

    ``next()`` returns the next row; the sequence depends only on the generator's seed.
    """

    def __init__(self, rng: np.random.Generator, dim: int) -> None:
        self.rng, self.dim = rng, dim
        self.next = self._rows().__next__  # a bound C-level call on the hot path

    def _draw(self) -> np.ndarray:
        return self.rng.standard_normal((_BLOCK, self.dim))

    def _rows(self) -> Iterator[np.ndarray]:
        while True:
            yield from self._draw()


class UniformStream(GaussianStream):
    """Uniform [0, 1) rows of length ``dim``, drawn in blocks like :class:`GaussianStream`."""

    def _draw(self) -> np.ndarray:
        return self.rng.random((_BLOCK, self.dim))
