"""Seeded random streams drawn in blocks: one generator call serves many steps.

The one block-stream class of the toolkit. A stream's rows depend only on its
generator's seed and on the block draw, never on when the rows are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

BLOCK = 256  # rows per generator call, once a stream is past its first few rows
_FIRST = (4, 16, 64)  # the first blocks are small, so that a short-lived stream costs little


class BlockStream:
    """Rows of ``draw(n)`` one at a time: blocks of 4, 16, 64 rows, then 256 per call.

    A generator fills its rows in sequence, so the rows do not depend on the block
    sizes (``standard_normal((4, d))`` then ``((252, d))`` are the rows of
    ``((256, d))``). ``next()`` returns the next row (a view into the current block);
    it is a bound C-level call on the hot path.
    """

    def __init__(self, draw: Callable[[int], np.ndarray]) -> None:
        self._draw = draw
        # A generator of its own, not a method's: the stream is freed (by reference counting)
        # as soon as it is replaced, without waiting for the cycle collector.
        self.next: Callable[[], np.ndarray] = _rows(draw).__next__


def _rows(draw: Callable[[int], np.ndarray]) -> Iterator[np.ndarray]:
    for n in _FIRST:
        yield from draw(n)
    while True:
        yield from draw(BLOCK)


def gaussian(rng: np.random.Generator, dim: int, scale: np.ndarray | float = 1.0) -> BlockStream:
    """Rows ``scale * N(0, 1)`` of length ``dim``; the block is scaled once, not every row."""
    if isinstance(scale, float) and scale == 1.0:
        return BlockStream(lambda n: rng.standard_normal((n, dim)))
    return BlockStream(lambda n: scale * rng.standard_normal((n, dim)))


def below(rng: np.random.Generator, dim: int, prob: np.ndarray | float) -> BlockStream:
    """Boolean rows, each entry True with probability ``prob`` (``uniform[0, 1) < prob``)."""
    return BlockStream(lambda n: rng.random((n, dim)) < prob)
