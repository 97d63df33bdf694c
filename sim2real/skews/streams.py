"""Seeded random streams drawn in blocks: one generator call serves many steps.

The one block-stream class of the toolkit. A stream's rows depend only on its
generator's seed and on the block draw, never on when the rows are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

BLOCK = 256  # rows per generator call


class BlockStream:
    """Rows of ``draw(BLOCK)`` one at a time; ``draw`` is called again every ``BLOCK`` rows.

    ``next()`` returns the next row (a view into the current block); it is a bound
    C-level call on the hot path.
    """

    def __init__(self, draw: Callable[[int], np.ndarray]) -> None:
        self._draw = draw
        self.next: Callable[[], np.ndarray] = self._rows().__next__

    def _rows(self) -> Iterator[np.ndarray]:
        while True:
            yield from self._draw(BLOCK)


def gaussian(rng: np.random.Generator, dim: int, scale: np.ndarray | float = 1.0) -> BlockStream:
    """Rows ``scale * N(0, 1)`` of length ``dim``; the block is scaled once, not every row."""
    if np.all(np.asarray(scale) == 1.0) and np.ndim(scale) == 0:
        return BlockStream(lambda n: rng.standard_normal((n, dim)))
    return BlockStream(lambda n: scale * rng.standard_normal((n, dim)))


def below(rng: np.random.Generator, dim: int, prob: np.ndarray | float) -> BlockStream:
    """Boolean rows, each entry True with probability ``prob`` (``uniform[0, 1) < prob``)."""
    return BlockStream(lambda n: rng.random((n, dim)) < prob)
