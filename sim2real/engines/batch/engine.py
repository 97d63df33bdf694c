"""The batch engine for the evaluator: a :class:`~sim2real.engines.base.Workload` on one
:class:`~sim2real.engines.batch.sim.BatchSim`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sim2real.engines.base import (
    Episode,
    OnEpisode,
    Workload,
    takes_active_rows,
    with_episode_start,
)
from sim2real.engines.batch.sim import BatchSim, StepResult


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
        takes_active: dict[int, bool] = {}  # whether it accepts active=rows (asked once)
        last_obs: dict[int, np.ndarray] = {}

        def policy(index: int) -> Callable[..., np.ndarray]:
            if index not in policies:
                built = self.policies.get(index)
                if built is None:
                    built = workload.policies[index].build(workload.n_envs)
                policies[index] = with_episode_start(built)
                takes_active[index] = takes_active_rows(policies[index])
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
                extra = {}
                if takes_active[index]:
                    extra["active"] = np.zeros(workload.n_envs, dtype=bool)
                    extra["active"][rows] = True
                out = np.asarray(act(batch_obs.copy(), episode_start=mask, **extra))
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
