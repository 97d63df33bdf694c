"""The simulator of the batch engine: ``nsim`` simulations of one built-in task on
``mujoco.batch``, each with its own skew pipeline, equal to the Gymnasium env bit for bit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
from mujoco import batch as mjbatch

from sim2real.engines.base import INSTABILITY_WARNINGS, WARNING_INDICES
from sim2real.engines.batch.dynamics import BatchDynamics
from sim2real.engines.batch.pipeline import (
    STREAM_INDEX,
    Pipeline,
    RowStreams,
    as_point,
    pipeline_of,
)
from sim2real.engines.batch.tasks import State, TaskKernel, kernel_for, template_env
from sim2real.skews import ActionLatency, ObservationLatency, step_segments


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
        spec = template_env(kernel.base_id).spec
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
