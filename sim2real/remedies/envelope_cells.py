"""Cells of an envelope: boxes of lattice indices, split along the axes where needed.

A :class:`Cell` holds the lattice points ``lo[a] <= i[a] < hi[a]`` on every
axis ``a``. The map starts from a coarse grid of cells and splits a cell in
two along an axis (k-d style) where the status changes across that axis, or
along every axis where its own episodes leave it undecided. Pure geometry: no
episodes, no statistics.

>>> cells = coarse_grid((16, 16), 4)
>>> len(cells), cells[0]
(16, Cell(lo=(0, 0), hi=(4, 4)))
>>> cells[0].split((0,))
(Cell(lo=(0, 0), hi=(2, 4)), Cell(lo=(2, 0), hi=(4, 4)))
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, order=True)
class Cell:
    """A box of lattice points: ``lo[a] <= index[a] < hi[a]`` on each axis ``a``."""

    lo: tuple[int, ...]
    hi: tuple[int, ...]

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(h - a for a, h in zip(self.lo, self.hi, strict=True))

    @property
    def size(self) -> int:
        """The number of lattice points."""
        return int(np.prod(self.widths))

    def splittable(self) -> tuple[int, ...]:
        """The axes along which the cell spans more than one lattice value."""
        return tuple(a for a, w in enumerate(self.widths) if w > 1)

    def split(self, axes: Sequence[int]) -> tuple[Cell, ...]:
        """The children after halving along each of ``axes`` (those that can be halved)."""
        cuts = []
        for a in range(len(self.lo)):
            if a in axes and self.widths[a] > 1:
                middle = (self.lo[a] + self.hi[a]) // 2
                cuts.append(((self.lo[a], middle), (middle, self.hi[a])))
            else:
                cuts.append(((self.lo[a], self.hi[a]),))
        return tuple(
            Cell(tuple(c[0] for c in combo), tuple(c[1] for c in combo))
            for combo in itertools.product(*cuts)
        )

    def points(self) -> Iterator[tuple[int, ...]]:
        """Every lattice point of the cell."""
        return itertools.product(*(range(a, h) for a, h in zip(self.lo, self.hi, strict=True)))

    def holds(self, points: np.ndarray) -> np.ndarray:
        """Which rows of ``points`` (``(n, axes)`` lattice indices) lie in the cell."""
        points = np.asarray(points).reshape(-1, len(self.lo))
        return np.all((points >= self.lo) & (points < self.hi), axis=1)

    def meets(self, lo: Sequence[int], hi: Sequence[int]) -> bool:
        """Whether the cell shares a lattice point with the box ``[lo, hi)``."""
        return all(a < d and c < b for a, b, c, d in zip(self.lo, self.hi, lo, hi, strict=True))

    def extent(self, unit_edges: Sequence[np.ndarray]) -> np.ndarray:
        """``(axes, 2)``: the cell's bounds along each axis, from each axis's edges."""
        return np.array(
            [[e[a], e[h]] for e, a, h in zip(unit_edges, self.lo, self.hi, strict=True)]
        )

    def volume(self, unit_edges: Sequence[np.ndarray]) -> float:
        """The share of the mapped box the cell covers (edges given in ``[0, 1]``)."""
        bounds = self.extent(unit_edges)
        return float(np.prod(bounds[:, 1] - bounds[:, 0]))


def coarse_grid(sizes: Sequence[int], parts: int) -> list[Cell]:
    """The starting grid: each axis of ``sizes[a]`` lattice values cut into ``parts``
    near-equal runs (fewer when the axis has fewer values)."""
    runs = []
    for size in sizes:
        cuts = sorted({round(float(x)) for x in np.linspace(0, size, min(parts, size) + 1)})
        runs.append(list(itertools.pairwise(cuts)))
    return [
        Cell(tuple(r[0] for r in combo), tuple(r[1] for r in combo))
        for combo in itertools.product(*runs)
    ]


def across(a: Cell, b: Cell) -> int | None:
    """The axis across which ``a`` and ``b`` share a face, or ``None`` when they do not touch
    face to face."""
    axis = None
    for k, (alo, ahi, blo, bhi) in enumerate(zip(a.lo, a.hi, b.lo, b.hi, strict=True)):
        if ahi == blo or bhi == alo:
            if axis is not None:
                return None  # touching at an edge or corner only
            axis = k
        elif not (alo < bhi and blo < ahi):
            return None
    return axis


def neighbours(cells: Sequence[Cell]) -> list[list[tuple[int, int]]]:
    """For each cell, its face neighbours as ``(index into cells, axis across)``."""
    found: list[list[tuple[int, int]]] = [[] for _ in cells]
    for i, j in itertools.combinations(range(len(cells)), 2):
        axis = across(cells[i], cells[j])
        if axis is not None:
            found[i].append((j, axis))
            found[j].append((i, axis))
    return found
