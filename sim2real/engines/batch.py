"""The ``batch`` engine: the built-in tasks vectorized over ``mujoco.batch``.

:class:`BatchSim` runs ``nsim`` simulations of one task on MuJoCo's C thread
pool (``mujoco.batch.Batch``) and realizes the whole skew pipeline of
DESIGN.md section 3 per simulation, equal to the local pipeline
(:class:`sim2real.skewed_env.SkewedEnv`):

- dynamics as per-simulation model fields (``expand``: ``geom_friction``,
  ``body_mass`` + ``body_inertia`` then ``set_const``, ``dof_damping``,
  ``actuator_gear``, ``opt.gravity``, ``dof_armature``), always relative to the nominal model;
- action and observation latencies on the substep grid, by stepping each
  control step in the segments of :func:`sim2real.skews.step_segments`;
- actuation noise and deadband, sensor bias, noise and dropout, from the same
  per-episode generators (``SeedSequence(seed).spawn``, in the order of
  :data:`STREAM_INDEX`) and the same blocks as the local engine;
- reset noise from the task's own ``np_random`` calls
  (:mod:`sim2real.engines.batch_tasks`).

Under the same seeds and actions it gives the Gymnasium env's observations,
rewards and terminations bit for bit (``tests/test_engine_batch.py``).
Per-step randomization (``resample: step``) is not supported.

:func:`run` is the engine for the evaluator: ``run(workload, on_episode)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
from mujoco import batch as mjbatch

from sim2real.engines.base import (
    INSTABILITY_WARNINGS,
    WARNING_INDICES,
    Episode,
    OnEpisode,
    Workload,
    with_episode_start,
)
from sim2real.engines.batch_tasks import State, TaskKernel, kernel_for
from sim2real.skews import ActionLatency, ObservationLatency, step_segments
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
_DYNAMICS = (
    "friction_scale",
    "mass_scale",
    "damping_scale",
    "actuator_strength",
    "gravity",
    "armature_scale",
)


# ---------------------------------------------------------------------- one episode's pipeline
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


# ---------------------------------------------------------------------- dynamics
class BatchDynamics:
    """Per-simulation dynamics skews, always written relative to the nominal model.

    The model fields are expanded (made per-simulation) the first time a
    simulation needs a non-nominal value; after a change, ``mj_setConst`` runs for
    that simulation, as :class:`sim2real.skews.ModelSkews` does on one model.
    """

    def __init__(self, batch: mjbatch.Batch) -> None:
        model = batch.model
        self.batch = batch
        self.nominal = {
            "friction_scale": model.geom_friction[:, 0].copy(),
            "mass": model.body_mass.copy(),
            "inertia": model.body_inertia.copy(),
            "damping_scale": model.dof_damping.copy(),
            "actuator_strength": model.actuator_gear.copy(),
            "gravity": model.opt.gravity.copy(),
            "armature_scale": model.dof_armature.copy(),
        }
        self.applied: list[dict[str, Any]] = [{} for _ in range(batch.nsim)]
        self._fields: dict[str, np.ndarray] | None = None

    def _expanded(self) -> dict[str, np.ndarray]:
        if self._fields is None:
            b = self.batch
            self._fields = {
                "friction": b.expand("geom_friction"),
                "mass": b.expand("body_mass"),
                "inertia": b.expand("body_inertia"),
                "damping": b.expand("dof_damping"),
                "gear": b.expand("actuator_gear"),
                "gravity": b.expand("opt.gravity"),
                "armature": b.expand("dof_armature"),
            }
        return self._fields

    def set(self, sim: int, values: dict[str, Any]) -> bool:
        """Give simulation ``sim`` the dynamics ``values``; whether anything changed."""
        current = self.applied[sim]
        wanted = {k: _canonical(values.get(k), None if k == "gravity" else 1.0) for k in _DYNAMICS}
        wanted = {k: v for k, v in wanted.items() if v is not None}
        if wanted.keys() == current.keys() and all(_same(wanted[k], current[k]) for k in wanted):
            return False
        if not wanted and self._fields is None:
            return False
        f, nominal = self._expanded(), self.nominal
        one = 1.0
        f["friction"][sim, :, 0] = nominal["friction_scale"] * _per_row(
            wanted.get("friction_scale", one), nominal["friction_scale"]
        )
        scale = wanted.get("mass_scale", one)
        f["mass"][sim] = nominal["mass"] * _per_row(scale, nominal["mass"])
        f["inertia"][sim] = nominal["inertia"] * _per_row(scale, nominal["inertia"])
        f["damping"][sim] = nominal["damping_scale"] * _per_row(
            wanted.get("damping_scale", one), nominal["damping_scale"]
        )
        f["gear"][sim] = nominal["actuator_strength"] * _per_row(
            wanted.get("actuator_strength", one), nominal["actuator_strength"]
        )
        f["armature"][sim] = nominal["armature_scale"] * _per_row(
            wanted.get("armature_scale", one), nominal["armature_scale"]
        )
        gravity = wanted.get("gravity")
        f["gravity"][sim] = nominal["gravity"] if gravity is None else gravity
        self.applied[sim] = wanted
        return True


def _per_row(value: Any, nominal: np.ndarray) -> Any:
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 0:
        return value
    if value.shape[0] != nominal.shape[0]:
        raise ValueError(f"expected {nominal.shape[0]} per-element values, got {value.shape[0]}")
    return value.reshape((-1,) + (1,) * (nominal.ndim - 1))


def _canonical(value: Any, nominal: float | None) -> Any:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return None if value == nominal else float(value)
    if nominal is None:
        return tuple(float(v) for v in value)
    return np.array(value, dtype=np.float64)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return a == b


# ---------------------------------------------------------------------- the simulator
@dataclass
class StepResult:
    """One control step of some simulations (rows follow ``ids``)."""

    ids: np.ndarray
    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


class BatchSim:
    """``nsim`` simulations of one built-in task, each with its own skew pipeline.

    Args:
        task: a built-in task name (``"Hopper"``).
        nsim: the number of simulations.
        nthread: MuJoCo batch threads (0: all CPUs).
        max_episode_steps: the time limit (default: the task's, as ``gym.make``).

    Simulations are reset with :meth:`reset` (a seed and a pipeline each) and
    stepped with :meth:`step`; ``episode_steps`` counts steps since the reset.
    """

    def __init__(
        self, task: str, nsim: int, *, nthread: int = 0, max_episode_steps: int | None = None
    ) -> None:
        from sim2real.engines.batch_tasks import _template_env

        self.kernel: TaskKernel = kernel_for(task)
        kernel = self.kernel
        env = kernel.env
        self.task = task
        self.nsim = nsim
        self.model = kernel.model
        self.frame_skip = kernel.frame_skip
        self.substep_s = float(self.model.opt.timestep)
        self.obs_dim = kernel.obs_dim
        self.nu = self.model.nu
        self.low = np.asarray(env.action_space.low, dtype=np.float64)
        self.high = np.asarray(env.action_space.high, dtype=np.float64)
        self.centre = (self.high + self.low) / 2
        limited = self.model.actuator_ctrllimited.astype(bool)
        self.mujoco_clamps_ctrl = bool(
            limited.all()
            and np.array_equal(self.model.actuator_ctrlrange[:, 0], self.low)
            and np.array_equal(self.model.actuator_ctrlrange[:, 1], self.high)
        )
        spec = _template_env(kernel.base_id).spec
        self.max_episode_steps = (
            max_episode_steps if max_episode_steps is not None else spec.max_episode_steps
        )
        self.batch = mjbatch.Batch(self.model, nsim, nthread, persistent=kernel.needs_rne)
        b = self.batch
        self.qpos, self.qvel, self.ctrl = b.bind("qpos"), b.bind("qvel"), b.bind("ctrl")
        self.qacc = b.bind("qacc")
        self._extra = {name: b.bind(name) for name in kernel.fields if name != "cfrc_ext"}
        self._cfrc = np.zeros((nsim, self.model.nbody, 6)) if kernel.needs_rne else None
        self._scratch = mujoco.MjData(self.model) if kernel.needs_rne else None
        self.dynamics = BatchDynamics(b)
        self.warning_numbers = b.warning[:, list(WARNING_INDICES), 1]  # a copy: read anew
        d, nu = self.obs_dim, self.nu
        self.np_random: list[np.random.Generator | None] = [None] * nsim
        self.rngs: list[dict[str, np.random.Generator] | None] = [None] * nsim
        self.action_noise = RowStreams(nsim, nu)
        self.sensor_noise = RowStreams(nsim, d)
        self.dropout_stream = RowStreams(nsim, d, uniform=True)
        self.pipelines: list[Pipeline | None] = [None] * nsim
        self.action_std = np.zeros((nsim, nu))
        self.deadband = np.zeros((nsim, nu))
        self.bias = np.zeros((nsim, d))
        self.noise_std = np.zeros((nsim, d))
        self.dropout = np.zeros((nsim, d))
        self.flags = {
            k: np.zeros(nsim, dtype=bool)
            for k in ("act_noise", "deadband", "bias", "noise", "dropout", "senses")
        }
        self.previous = np.zeros((nsim, d))
        self.has_previous = np.zeros(nsim, dtype=bool)
        self.action_substeps = np.zeros(nsim, dtype=np.int64)
        self.obs_substeps = np.zeros(nsim, dtype=np.int64)
        self.commands = np.zeros((nsim, 2, nu))  # newest last; widened as latencies need
        self.started = np.zeros(nsim, dtype=bool)
        self.readings = np.zeros((nsim, 1, d))  # newest last; widened as latencies need
        self.captured = np.zeros((nsim, d))
        self.episode_steps = np.zeros(nsim, dtype=np.int64)
        self.warnings_at_reset = np.zeros((nsim, len(WARNING_INDICES)), dtype=np.int64)

    # ------------------------------------------------------------------ reset
    def pipeline(self, skews: Any) -> Pipeline:
        """The pipeline of a point or fixed spec (see :func:`as_point`) on this task."""
        return pipeline_of(
            as_point(skews), self.low, self.high, self.obs_dim, self.substep_s, self.frame_skip
        )

    def reset(
        self, ids: Sequence[int], seeds: Sequence[int | None], pipelines: Sequence[Pipeline]
    ) -> np.ndarray:
        """Start a new episode in each simulation of ``ids``; its first observations.

        ``seeds[k]`` reseeds simulation ``ids[k]`` as ``env.reset(seed=...)`` does
        (``None``: the generators continue, as an unseeded reset).
        """
        ids = np.asarray(ids, dtype=np.int64)
        changed = []
        for sim, seed, pipe in zip(ids.tolist(), seeds, pipelines, strict=True):
            if seed is not None or self.rngs[sim] is None:
                self._seed(sim, seed)
            if self.dynamics.set(sim, pipe.dynamics):
                changed.append(sim)
            self._set_pipeline(sim, pipe)
        if changed:
            self.batch.set_const(np.asarray(changed, dtype=np.int32))
        b = self.batch
        b.reset(ids.astype(np.int32), stage=mujoco.mjtStage.mjSTAGE_NONE)
        for sim in ids.tolist():
            qpos, qvel = self.kernel.reset_state(self.np_random[sim])
            self.qpos[sim] = np.copy(qpos)
            self.qvel[sim] = np.copy(qvel)
        b.forward(ids.astype(np.int32))
        if self._cfrc is not None:
            self._cfrc[ids] = 0.0  # mj_resetData zeroes it and mj_forward leaves it
        for sim in ids.tolist():
            bias_std = self.pipelines[sim].bias_std
            if bias_std is not None:
                self.bias[sim] = bias_std * self.rngs[sim]["sensing.bias_std"].standard_normal(
                    bias_std.shape
                )
        self.started[ids] = False
        self.has_previous[ids] = False
        self.episode_steps[ids] = 0
        self.warnings_at_reset[ids] = self.batch.warning[ids][:, list(WARNING_INDICES), 1]
        truth = self.kernel.observe(self._state(ids))
        obs = truth.copy()
        senses = self.flags["senses"][ids]
        if senses.any():
            obs[senses] = self._read(ids[senses], truth[senses])
        delayed = self.obs_substeps[ids] > 0
        if delayed.any():
            self.readings[ids[delayed]] = obs[delayed][:, None, :]
        return obs

    def _seed(self, sim: int, seed: int | None) -> None:
        from gymnasium.utils import seeding

        self.np_random[sim], _ = seeding.np_random(seed)
        children = np.random.SeedSequence(seed).spawn(len(STREAM_INDEX))
        rngs = {
            name: np.random.Generator(np.random.PCG64(children[index]))
            for name, index in STREAM_INDEX.items()
        }
        self.rngs[sim] = rngs
        self.action_noise.restart(sim, rngs["actuation.noise_std"])
        self.sensor_noise.restart(sim, rngs["sensing.noise_std"])
        self.dropout_stream.restart(sim, rngs["sensing.dropout_prob"])

    def _set_pipeline(self, sim: int, pipe: Pipeline) -> None:
        self.pipelines[sim] = pipe
        flags = self.flags
        for name, value, target in (
            ("act_noise", pipe.action_std, self.action_std),
            ("deadband", pipe.deadband, self.deadband),
            ("noise", pipe.noise_std, self.noise_std),
        ):
            flags[name][sim] = value is not None
            if value is not None:
                target[sim] = value
        flags["bias"][sim] = pipe.bias_std is not None
        if pipe.bias_std is None:
            self.bias[sim] = 0.0
        if pipe.action_std is not None:
            self.action_noise.use(sim, pipe.action_std)
        if pipe.noise_std is not None:
            self.sensor_noise.use(sim, pipe.noise_std)
        if pipe.dropout is not None:
            self.dropout_stream.use(sim, np.broadcast_to(pipe.dropout, (self.obs_dim,)))
        flags["dropout"][sim] = pipe.dropout is not None
        self.dropout[sim] = 0.0 if pipe.dropout is None else pipe.dropout
        flags["senses"][sim] = pipe.senses
        self.action_substeps[sim] = pipe.action_substeps
        self.obs_substeps[sim] = pipe.obs_substeps
        lag = pipe.action_substeps // self.frame_skip
        if lag + 2 > self.commands.shape[1]:
            self.commands = _widen(self.commands, lag + 2)
        depth = pipe.obs_substeps // self.frame_skip + 1
        if depth > self.readings.shape[1]:
            self.readings = _widen(self.readings, depth)

    # ------------------------------------------------------------------ step
    def step(self, ids: Sequence[int], actions: np.ndarray) -> StepResult:
        """One control step of the simulations ``ids`` with ``actions`` (one row each,
        in the policy's own dtype: upstream's control cost is computed in it)."""
        ids = np.asarray(ids, dtype=np.int64)
        kernel = self.kernel
        before = kernel.before(self._state(ids, rne=False))
        self._push_commands(ids, self._commands(ids, actions))
        fs = self.frame_skip
        keys = self.action_substeps[ids] * (fs + 1) + self.obs_substeps[ids] % fs
        for key in np.unique(keys).tolist():
            group = ids[keys == key]
            action_substeps, obs_offset = divmod(key, fs + 1)
            self._step_segments(group, action_substeps, obs_offset)
        self.episode_steps[ids] += 1
        state = self._state(ids, rne=True)
        truth = kernel.observe(state)
        reward, terminated = kernel.reward(state, before, actions)
        obs = self._observe(ids, truth)
        truncated = self.episode_steps[ids] >= self.max_episode_steps
        return StepResult(ids, obs, reward, np.asarray(terminated, dtype=bool), truncated)

    def _commands(self, ids: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """What reaches the actuators: actuation noise, then the deadband (float64)."""
        command = np.array(actions, dtype=np.float64)
        noisy = self.flags["act_noise"][ids]
        if noisy.any():
            rows = ids[noisy]
            command[noisy] = self.action_std[rows] * self.action_noise.next(rows) + command[noisy]
            if not self.mujoco_clamps_ctrl:
                command[noisy] = np.minimum(np.maximum(command[noisy], self.low), self.high)
        dead = self.flags["deadband"][ids]
        if dead.any():
            c = command[dead]
            command[dead] = np.where(
                np.abs(c - self.centre) < self.deadband[ids[dead]], self.centre, c
            )
        return command

    def _push_commands(self, ids: np.ndarray, command: np.ndarray) -> None:
        started = self.started[ids]
        old = ids[started]
        if len(old):
            self.commands[old, :-1] = self.commands[old, 1:]
            self.commands[old, -1] = command[started]
        new = ids[~started]
        if len(new):  # the actuators hold the first command until it has travelled
            self.commands[new] = command[~started][:, None, :]
            self.started[new] = True

    def _step_segments(self, group: np.ndarray, action_substeps: int, obs_offset: int) -> None:
        args = (self.substep_s, self.frame_skip)
        action = ActionLatency(action_substeps * self.substep_s, *args)
        observation = ObservationLatency(obs_offset * self.substep_s, *args)
        assert action.substeps == action_substeps and observation.offset == obs_offset
        width = self.commands.shape[1]
        ids32 = group.astype(np.int32)
        for n_substeps, index, capture in step_segments(action, observation):
            if index is not None:
                self.ctrl[group] = self.commands[group, width + index]
            self.batch.step(ids32, nstep=n_substeps)
            if capture:
                truth = self.kernel.observe(self._state(group, rne=True))
                senses = self.flags["senses"][group]
                if senses.any():
                    truth[senses] = self._read(group[senses], truth[senses])
                self.captured[group] = truth

    def _observe(self, ids: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """What the policy receives: sensing, then observation latency."""
        obs = truth.copy()
        offset = (self.obs_substeps[ids] % self.frame_skip) > 0
        direct = ~offset & self.flags["senses"][ids]
        if direct.any():
            obs[direct] = self._read(ids[direct], truth[direct])
        if offset.any():
            obs[offset] = self.captured[ids[offset]]
        delayed = self.obs_substeps[ids] > 0
        if delayed.any():
            rows = ids[delayed]
            self.readings[rows, :-1] = self.readings[rows, 1:]
            self.readings[rows, -1] = obs[delayed]
            back = self.obs_substeps[rows] // self.frame_skip
            obs[delayed] = self.readings[rows, self.readings.shape[1] - 1 - back]
        return obs

    def _read(self, ids: np.ndarray, state: np.ndarray) -> np.ndarray:
        """One sensor reading per simulation: bias, then noise, then dropout."""
        flags = self.flags
        reading = state.copy()
        biased = flags["bias"][ids]
        if biased.any():
            reading[biased] = reading[biased] + self.bias[ids[biased]]
        noisy = flags["noise"][ids]
        if noisy.any():
            rows = ids[noisy]
            reading[noisy] = reading[noisy] + self.noise_std[rows] * self.sensor_noise.next(rows)
        drops = flags["dropout"][ids] & self.has_previous[ids]
        if drops.any():
            rows = ids[drops]
            mask = self.dropout_stream.next(rows) < self.dropout[rows]
            reading[drops] = np.where(mask, self.previous[rows], reading[drops])
        self.previous[ids] = reading
        self.has_previous[ids] = True
        return reading

    def _state(self, ids: np.ndarray, rne: bool = False) -> State:
        extra = {name: field[ids] for name, field in self._extra.items()}
        if self._cfrc is not None:
            if rne:
                model, scratch = self.model, self._scratch
                for sim in ids.tolist():
                    self.batch.get_data(sim, scratch)
                    mujoco.mj_rnePostConstraint(model, scratch)
                    self._cfrc[sim] = scratch.cfrc_ext
            extra["cfrc_ext"] = self._cfrc[ids]
        return State(self.qpos[ids], self.qvel[ids], extra)

    # ------------------------------------------------------------------ divergence
    def divergence(
        self, ids: np.ndarray, obs: np.ndarray, reward: np.ndarray, ending: np.ndarray
    ) -> list[str | None]:
        """Why each simulation diverged this episode, or ``None``; as the local engine:
        the reward and the instability counters every step, the state and observation
        at an episode's end."""
        numbers = self.batch.warning[ids][:, list(WARNING_INDICES), 1]
        raised = (numbers > self.warnings_at_reset[ids]).any(axis=1)
        finite_reward = np.isfinite(reward)
        out: list[str | None] = [None] * len(ids)
        check = np.flatnonzero(~finite_reward | raised | ending)
        for k in check.tolist():
            sim = int(ids[k])
            if not finite_reward[k]:
                out[k] = "non-finite reward"
                continue
            for name, before, after in zip(
                INSTABILITY_WARNINGS, self.warnings_at_reset[sim], numbers[k], strict=True
            ):
                if after > before:
                    out[k] = f"MuJoCo instability warning ({name})"
                    break
            if out[k] is None:
                for name, field in (("qpos", self.qpos), ("qvel", self.qvel), ("qacc", self.qacc)):
                    if not np.isfinite(field[sim]).all():
                        out[k] = f"non-finite {name}"
                        break
            if out[k] is None and not np.isfinite(obs[k]).all():
                out[k] = "non-finite observation"
        return out


def _widen(buffer: np.ndarray, width: int) -> np.ndarray:
    """``buffer`` with more history rows in front (newest stays last)."""
    extra = width - buffer.shape[1]
    return np.concatenate([np.repeat(buffer[:, :1], extra, axis=1), buffer], axis=1)


# ---------------------------------------------------------------------- the evaluator engine
class BatchEngine:
    """Runs a :class:`~sim2real.engines.base.Workload` on one :class:`BatchSim` of
    ``workload.n_envs`` simulations.

    Lanes are taken in order, as by the local engine; each policy gets
    ``n_envs`` rows (row ``i`` is simulation ``i``) and is called once per step
    for all of its simulations, ``policy(obs_batch, episode_start=mask)``; a row
    with nothing to run is given its last observation again (its action is
    dropped). An episode ends at termination, truncation or divergence.

    Args:
        nthread: MuJoCo batch threads (0: all CPUs).
        policies: batch policies already built in this process, by policy index.
    """

    name = "batch"

    def __init__(
        self, nthread: int = 0, policies: dict[int, Callable[..., np.ndarray]] | None = None
    ) -> None:
        self.nthread = nthread
        self.policies = dict(policies or {})

    def run(self, workload: Workload, on_episode: OnEpisode) -> None:
        from sim2real.engines.local import one_torch_thread

        with one_torch_thread():
            self._run(workload, on_episode)

    def _run(self, workload: Workload, on_episode: OnEpisode) -> None:
        n = max(1, min(workload.n_envs, len(workload.lanes)))
        sim = BatchSim(
            workload.task, n, nthread=self.nthread, max_episode_steps=workload.max_episode_steps
        )
        pipes = {key: sim.pipeline(spec) for key, spec in workload.specs.items()}
        lanes = iter(workload.lanes)
        lane_of: list[Any] = [None] * n
        position = np.zeros(n, dtype=np.int64)
        total = np.zeros(n)
        obs = np.zeros((n, sim.obs_dim))
        starting = np.zeros(n, dtype=bool)
        policies: dict[int, Callable[..., np.ndarray]] = {}
        last_obs: dict[int, np.ndarray] = {}

        def policy(index: int) -> Callable[..., np.ndarray]:
            if index not in policies:
                built = self.policies.get(index)
                if built is None:
                    built = workload.policies[index].build(workload.n_envs)
                policies[index] = with_episode_start(built)
                last_obs[index] = np.zeros((workload.n_envs, sim.obs_dim))
            return policies[index]

        def begin(sims: list[int]) -> None:
            if not sims:
                return
            seeds = [lane_of[s].seeds[position[s]] for s in sims]
            first = sim.reset(sims, seeds, [pipes[lane_of[s].variant] for s in sims])
            obs[sims] = first
            total[sims] = 0.0
            starting[sims] = True

        fresh = []
        for s in range(n):
            lane_of[s] = next(lanes, None)
            if lane_of[s] is not None:
                fresh.append(s)
        begin(fresh)
        while True:
            active = [s for s in range(n) if lane_of[s] is not None]
            if not active:
                return
            by_dtype: dict[np.dtype, list[tuple[list[int], np.ndarray]]] = {}
            for index in sorted({lane_of[s].policy for s in active}):
                rows = [s for s in active if lane_of[s].policy == index]
                act = policy(index)
                batch_obs = last_obs[index]
                batch_obs[rows] = obs[rows]
                mask = np.zeros(workload.n_envs, dtype=bool)
                mask[rows] = starting[rows]
                out = np.asarray(act(batch_obs.copy(), episode_start=mask))
                by_dtype.setdefault(out.dtype, []).append((rows, out[rows]))
            # One physics call for all, unless policies give actions of different dtypes (the
            # control cost is computed in the action's dtype, as upstream).
            results = []
            for groups in by_dtype.values():
                ids = np.concatenate([np.asarray(rows) for rows, _ in groups])
                order = np.argsort(ids)
                acts = np.concatenate([a for _, a in groups])[order]
                results.append(sim.step(ids[order], acts))
            result = results[0] if len(results) == 1 else _merged(results)
            ids = result.ids
            active = ids.tolist()
            starting[ids] = False
            total[ids] += result.reward
            obs[ids] = result.obs
            ending = result.terminated | result.truncated
            reasons = sim.divergence(ids, result.obs, result.reward, ending)
            restart = []
            for k, s in enumerate(active):
                if reasons[k] is None and not ending[k]:
                    continue
                lane = lane_of[s]
                on_episode(
                    Episode(
                        policy=workload.policies[lane.policy].identity,
                        variant=lane.variant,
                        seed=lane.seeds[position[s]],
                        ret=float(total[s]) if math.isfinite(total[s]) else math.nan,
                        length=int(sim.episode_steps[s]),
                        diverged=reasons[k] is not None,
                        reason=reasons[k],
                    )
                )
                position[s] += 1
                if position[s] >= len(lane.seeds):
                    lane_of[s] = next(lanes, None)
                    position[s] = 0
                if lane_of[s] is not None:
                    restart.append(s)
            begin(restart)


def _merged(results: list[StepResult]) -> StepResult:
    """Step results of disjoint simulations as one, ordered by simulation."""
    ids = np.concatenate([r.ids for r in results])
    order = np.argsort(ids)
    fields = ("obs", "reward", "terminated", "truncated")
    parts = {f: np.concatenate([getattr(r, f) for r in results])[order] for f in fields}
    return StepResult(ids[order], **parts)


def run(workload: Workload, on_episode: OnEpisode) -> None:
    """Run ``workload`` with the batch engine (all CPUs for MuJoCo's thread pool)."""
    BatchEngine().run(workload, on_episode)
