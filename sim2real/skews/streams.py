"""Seeded random streams drawn in blocks: one generator call serves many steps.

The one block-stream class of the toolkit. A stream's rows depend only on its
generator's seed and on the block draw, never on when the rows are read.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np

BLOCK = 256  # rows per generator call, once a stream is past its first few rows
_FIRST = (4, 16, 64)  # the first blocks are small, so that a short-lived stream costs little
_END = 2**62  # an index past the end of any block


class _Blocks:
    """What a stream's row generator reads: the block draw, the block being read, and whether
    the stream was restarted. Held by the generator, not the stream: no reference cycle."""

    __slots__ = ("block", "draw", "restarted")

    def __init__(self, draw: Callable[[int], np.ndarray]) -> None:
        self.draw = draw
        self.block: Iterator[np.ndarray] | None = None  # the rows of the current block
        self.restarted = False


class BlockStream:
    """Rows of ``draw(n)`` one at a time: blocks of 4, 16, 64 rows, then 256 per call.

    A generator fills its rows in sequence, so the rows do not depend on the block
    sizes (``standard_normal((4, d))`` then ``((252, d))`` are the rows of
    ``((256, d))``). ``next()`` returns the next row (a view into the current block);
    it is a bound C-level call on the hot path, the same callable for the stream's life.
    """

    def __init__(self, draw: Callable[[int], np.ndarray]) -> None:
        self._blocks = _Blocks(draw)
        # The rows of one block after another: ``chain`` hands out the current block's rows
        # in C (no Python frame per row) and asks the generator only for the next block. A
        # generator of its own, not a method's: the stream is freed (by reference counting)
        # as soon as it is dropped, without waiting for the cycle collector.
        rows = itertools.chain.from_iterable(_block_rows(self._blocks))
        self.next: Callable[[], np.ndarray] = rows.__next__

    def restart(self, draw: Callable[[int], np.ndarray]) -> None:
        """From the next row on, the rows a new ``BlockStream(draw)`` would give now: the
        rest of the current block is dropped (its rows were drawn, as they would have been
        for a stream replaced now) and the blocks start again at 4 rows. ``next`` stays the
        same callable, so whatever holds it needs no rebuilding."""
        blocks = self._blocks
        blocks.draw = draw
        if blocks.block is not None:
            blocks.block.__setstate__(_END)  # type: ignore[attr-defined]  # a sequence iterator
            blocks.restarted = True


def _block_rows(blocks: _Blocks) -> Iterator[Iterator[np.ndarray]]:
    """The row iterator of each block in turn; after a restart, the blocks start again."""
    while True:
        blocks.restarted = False
        for n in itertools.chain(_FIRST, itertools.repeat(BLOCK)):
            block = blocks.block = iter(blocks.draw(n))
            yield block  # its rows are read until it ends (or a restart ends it)
            if blocks.restarted:
                break


class Normals:
    """Consecutive rows of ``rng.standard_normal((n, dim))``, drawn 256 rows per generator
    call: the same numbers as drawing them ``n`` at a time (a generator fills its rows in
    sequence), so that a stream restarted at every reset costs no generator call."""

    def __init__(self, rng: np.random.Generator, dim: int) -> None:
        self._rng, self._dim = rng, dim
        self._buffer = np.empty((0, dim))
        self._at = 0

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` rows (a view: the caller derives a new array from it)."""
        at, end = self._at, self._at + n
        if end <= len(self._buffer):
            self._at = end
            return self._buffer[at:end]
        rest = self._buffer[at:]
        need = n - len(rest)
        self._buffer = self._rng.standard_normal((max(BLOCK, need), self._dim))
        self._at = need
        return np.concatenate((rest, self._buffer[:need])) if len(rest) else self._buffer[:need]


def gaussian(rng: np.random.Generator, dim: int, scale: np.ndarray | float = 1.0) -> BlockStream:
    """Rows ``scale * N(0, 1)`` of length ``dim``; the block is scaled once, not every row."""
    return BlockStream(gaussian_draw(Normals(rng, dim).take, scale))


def gaussian_draw(
    normals: Callable[[int], np.ndarray], scale: np.ndarray | float = 1.0
) -> Callable[[int], np.ndarray]:
    """The block draw of :func:`gaussian`, from ``normals(n)``: ``n`` standard-normal rows."""
    if isinstance(scale, float) and scale == 1.0:
        return lambda n: normals(n).copy()
    return lambda n: scale * normals(n)


def below(rng: np.random.Generator, dim: int, prob: np.ndarray | float) -> BlockStream:
    """Boolean rows, each entry True with probability ``prob`` (``uniform[0, 1) < prob``)."""
    return BlockStream(below_draw(rng, dim, prob))


def below_draw(
    rng: np.random.Generator, dim: int, prob: np.ndarray | float
) -> Callable[[int], np.ndarray]:
    """The block draw of :func:`below`."""
    return lambda n: rng.random((n, dim)) < prob
