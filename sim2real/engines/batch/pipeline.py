"""One episode's skew pipeline as numbers, and the per-simulation random streams.

A point (``{"section.field": value}``, the exact skews of one episode) becomes a
:class:`Pipeline`: the same numbers the local components compute from it
(:mod:`sim2real.skews`). :class:`RowStreams` are the local block streams, one per
simulation, vectorized over simulations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim2real.skews import ActionLatency, ObservationLatency
from sim2real.skews.sensing import per_dimension
from sim2real.spec import SkewSpec

_BLOCK = 256  # rows per generator call after the first blocks, as sim2real.skews.streams
# The spawn index of each random stream from the reset's SeedSequence: fixed forever, the
# same as the local pipeline's (sim2real.skewed_env.STREAMS, sim2real.skews.pipeline.STREAMS).
STREAM_INDEX = {
    "actuation.noise_std": 0,
    "sensing.noise_std": 1,
    "sensing.bias_std": 2,
    "sensing.dropout_prob": 3,
}
# The fields this engine realizes; a spec setting any other is refused.
SUPPORTED = frozenset(
    {
        "dynamics.friction_scale",
        "dynamics.mass_scale",
        "dynamics.damping_scale",
        "dynamics.actuator_strength",
        "dynamics.gravity",
        "dynamics.armature_scale",
        "actuation.noise_std",
        "actuation.deadband",
        "sensing.noise_std",
        "sensing.bias_std",
        "sensing.dropout_prob",
        "timing.obs_latency_s",
        "timing.action_latency_s",
    }
)
DYNAMICS = (
    "friction_scale",
    "mass_scale",
    "damping_scale",
    "actuator_strength",
    "gravity",
    "armature_scale",
)


@dataclass(frozen=True)
class Pipeline:
    """The numbers of one episode's skew pipeline, as the local components hold them.

    Attributes:
        dynamics: ``{"friction_scale": 0.8, ...}`` for the non-nominal dynamics fields
            (floats, per-element arrays, or a gravity 3-tuple).
        action_std: actuation noise standard deviation per action dimension
            (action units), or ``None``.
        deadband: deadband threshold per action dimension (action units), or ``None``.
        bias_std, noise_std: sensing standard deviations per observation dimension
            (observation units), or ``None`` when all zero.
        dropout: the probability that a reading repeats the previous one (one, or one per
            observation dimension), or ``None``.
        action_substeps, obs_substeps: the latencies realized in physics substeps.
    """

    dynamics: dict[str, Any]
    action_std: np.ndarray | None
    deadband: np.ndarray | None
    bias_std: np.ndarray | None
    noise_std: np.ndarray | None
    dropout: float | np.ndarray | None
    action_substeps: int
    obs_substeps: int

    @property
    def senses(self) -> bool:
        return any(v is not None for v in (self.bias_std, self.noise_std, self.dropout))


def as_point(skews: Any) -> dict[str, Any]:
    """A flat point ``{"section.field": value}`` (non-nominal fields only) from a point,
    a flat or nested mapping, a :class:`SkewSpec`, a YAML path or ``None``."""
    if isinstance(skews, Mapping) and any("." in str(key) for key in skews):
        return dict(skews)
    return dict(SkewSpec.load(skews).active())


def pipeline_of(
    point: Mapping[str, Any],
    low: np.ndarray,
    high: np.ndarray,
    obs_dim: int,
    substep_s: float,
    frame_skip: int,
) -> Pipeline:
    """The pipeline of one episode's point, computed as the local components compute it.

    Raises:
        ValueError: for a field this engine does not realize, or a per-step field.
    """
    unsupported = sorted(set(point) - SUPPORTED)
    if unsupported:
        raise ValueError(
            f"the batch engine does not realize {', '.join(unsupported)}; "
            "use engine='local' for this spec"
        )
    per_step = sorted(name for name, value in point.items() if isinstance(value, Mapping))
    if per_step:
        raise ValueError(
            f"the batch engine does not resample skews every step ({', '.join(per_step)} has "
            "resample: step); use engine='local', or resample: episode"
        )
    dynamics = {
        name.split(".", 1)[1]: value
        for name, value in point.items()
        if name.startswith("dynamics.") and value is not None
    }
    dynamics = {k: v for k, v in dynamics.items() if k == "gravity" or not _is_one(v)}
    action_noise = np.asarray(point.get("actuation.noise_std", 0.0), dtype=np.float64)
    deadband = np.asarray(point.get("actuation.deadband", 0.0), dtype=np.float64)
    bias = per_dimension(point.get("sensing.bias_std", 0.0), obs_dim, "sensing.bias_std")
    noise = per_dimension(point.get("sensing.noise_std", 0.0), obs_dim, "sensing.noise_std")
    dropout = np.asarray(point.get("sensing.dropout_prob", 0.0), dtype=np.float64)
    args = (substep_s, frame_skip)
    action_s = float(point.get("timing.action_latency_s", 0.0))
    obs_s = float(point.get("timing.obs_latency_s", 0.0))
    return Pipeline(
        dynamics=dynamics,
        action_std=action_noise * (high - low) if np.any(action_noise > 0) else None,
        deadband=deadband * (high - low) if np.any(deadband > 0) else None,
        bias_std=bias if bias.any() else None,
        noise_std=noise if noise.any() else None,
        dropout=(float(dropout) if dropout.ndim == 0 else dropout) if dropout.any() else None,
        action_substeps=ActionLatency(action_s, *args).substeps,
        obs_substeps=ObservationLatency(obs_s, *args).substeps,
    )


def _is_one(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == 1.0


# ---------------------------------------------------------------------- random streams
def _block_sizes() -> tuple[int, ...]:
    """The local block streams' schedule of rows per generator call, first blocks first
    (:class:`sim2real.skews.streams.BlockStream`); the last size repeats."""
    from sim2real.skews import streams

    return (*getattr(streams, "_FIRST", ()), getattr(streams, "BLOCK", _BLOCK))


class RowStreams:
    """One block stream per simulation, as the local pipeline's block streams
    (:mod:`sim2real.skews.streams`): rows of ``dim`` from each simulation's generator,
    drawn in blocks of the same sizes (the first blocks small, then 256 rows).

    As the local env's streams, a simulation's stream is kept across episodes while
    its scale (the key given to :meth:`use`) stays the same, and starts afresh (its
    unread rows dropped, the block sizes from the first again) when the scale changes
    or the simulation is reseeded.
    """

    def __init__(self, nsim: int, dim: int, uniform: bool = False) -> None:
        self.dim, self.uniform = dim, uniform
        self.sizes = _block_sizes()
        self.rngs: list[np.random.Generator | None] = [None] * nsim
        self.keys: list[np.ndarray | None] = [None] * nsim
        self.block = np.zeros((nsim, max(self.sizes), dim))
        self.row = np.zeros(nsim, dtype=np.int64)  # the next row of the current block
        self.size = np.zeros(nsim, dtype=np.int64)  # rows in the current block
        self.blocks = np.zeros(nsim, dtype=np.int64)  # blocks drawn since the stream began

    def restart(self, sim: int, rng: np.random.Generator) -> None:
        self.rngs[sim] = rng
        self.keys[sim] = None
        self._begin(sim)

    def _begin(self, sim: int) -> None:
        self.row[sim] = self.size[sim] = self.blocks[sim] = 0

    def use(self, sim: int, key: np.ndarray) -> None:
        """This episode's scale for simulation ``sim``: a new scale starts a new stream."""
        held = self.keys[sim]
        if held is None or held.shape != key.shape or not np.array_equal(held, key):
            self.keys[sim] = key
            self._begin(sim)

    def next(self, ids: np.ndarray) -> np.ndarray:
        """The next row of each simulation in ``ids``, ``(len(ids), dim)``."""
        for sim in ids[self.row[ids] == self.size[ids]].tolist():
            rng, n = self.rngs[sim], self.sizes[min(self.blocks[sim], len(self.sizes) - 1)]
            shape = (n, self.dim)
            self.block[sim, :n] = rng.random(shape) if self.uniform else rng.standard_normal(shape)
            self.row[sim], self.size[sim] = 0, n
            self.blocks[sim] += 1
        rows = self.block[ids, self.row[ids]]
        self.row[ids] += 1
        return rows
