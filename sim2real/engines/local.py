"""The ``local`` engine: one process, sub-envs side by side, batched inference.

Up to ``workload.n_envs`` sub-envs run side by side; each takes the next lane
of the workload in order (episodes are pre-assigned: a lane's seeds run on
one sub-env, one after the other). Every step, each policy is called once for
all of its sub-envs: ``policy(obs_batch, episode_start=mask)``, one row per
*slot*. A policy has ``n_envs`` slots and a sub-env keeps its slot for as long
as it runs, so row ``i`` of consecutive calls is the same sub-env until
``mask[i]`` says that a new episode starts there: history and recurrent
policies keep per-row state. A slot with nothing to run is given its last
observation again (its action is dropped); a plain ``obs -> actions``
callable (no ``episode_start``: it keeps no state) is given its busy rows
alone. No process is ever spawned.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np

from sim2real.engines.base import (
    WARNING_INDICES,
    Episode,
    Lane,
    OnEpisode,
    Workload,
    divergence,
    instability_warnings,
    make_env,
    takes_active_rows,
    with_episode_start,
)

if TYPE_CHECKING:
    from sim2real.evaluation.policy import PolicySource


class _SubEnv:
    """One env working through one lane."""

    def __init__(self, lane: Lane, identity: str, env: Any) -> None:
        self.lane, self.identity, self.env = lane, identity, env
        data = getattr(env.unwrapped, "data", None)
        self.data = data if isinstance(data, mujoco.MjData) else None
        # A live view of MuJoCo's warning counters, read every step.
        self.counters = self.data.warning.number if self.data is not None else None
        self.position = 0
        self.finished = False
        self._begin()

    def _begin(self) -> None:
        self.obs, _ = self.env.reset(seed=self.lane.seeds[self.position])
        self.starting = True
        self.total, self.length = 0.0, 0
        if self.data is not None:
            self.warnings = instability_warnings(self.data)
            self.warnings_total = sum(self.warnings)

    def step(self, action: np.ndarray) -> Episode | None:
        """Advance one step; the finished episode when this step ended it."""
        obs, reward, terminated, truncated, _ = self.env.step(action)
        self.starting = False
        self.total += reward
        self.length += 1
        reason = self._diverged(obs, reward, terminated or truncated)
        if reason is None and not (terminated or truncated):
            self.obs = obs
            return None
        episode = Episode(
            policy=self.identity,
            variant=self.lane.variant,
            seed=self.lane.seeds[self.position],
            ret=float(self.total),
            length=self.length,
            diverged=reason is not None,
            reason=reason,
        )
        self.position += 1
        if self.position < len(self.lane.seeds):
            self._begin()
        else:
            self.finished = True
        return episode

    def _diverged(self, obs: np.ndarray, reward: float, ending: bool) -> str | None:
        """Every step: the reward and MuJoCo's warning counters (MuJoCo checks the state at
        every substep). At the end: the state and observation too, since a bad value from
        the last substep has not been checked by MuJoCo yet."""
        if not math.isfinite(reward):
            return "non-finite reward"
        if self.data is None:
            return None if not ending or np.isfinite(obs).all() else "non-finite observation"
        counters = self.counters
        if sum(counters[i] for i in WARNING_INDICES) > self.warnings_total or ending:
            reason = divergence(self.data, self.warnings)
            if reason is None and not np.isfinite(obs).all():
                reason = "non-finite observation"
            return reason
        return None


class _Slots:
    """One policy's ``n_envs`` rows: which sub-env holds each, and each row's last
    observation. A ``stateless`` policy is given its busy rows alone."""

    def __init__(self, policy: Callable[..., np.ndarray], size: int, stateless: bool) -> None:
        self.policy = with_episode_start(policy)
        self.stateless = stateless
        self.takes_active = takes_active_rows(self.policy)
        self.subs: list[_SubEnv | None] = [None] * size
        self.obs: np.ndarray | None = None

    def free(self) -> int | None:
        return next((i for i, sub in enumerate(self.subs) if sub is None), None)

    def act(self, on_episode: OnEpisode) -> None:
        """One policy call for every row, one step for every sub-env holding a row."""
        rows = [i for i, sub in enumerate(self.subs) if sub is not None]
        first = np.asarray(self.subs[rows[0]].obs)
        if self.obs is None:
            self.obs = np.zeros((len(self.subs), *first.shape), dtype=first.dtype)
        start = np.zeros(len(self.subs), dtype=bool)
        for i in rows:
            self.obs[i] = self.subs[i].obs
            start[i] = self.subs[i].starting
        if self.stateless:
            actions = self.policy(self.obs[rows], episode_start=start[rows])
        elif self.takes_active:
            active = np.zeros(len(self.subs), dtype=bool)
            active[rows] = True
            actions = self.policy(self.obs.copy(), episode_start=start, active=active)[rows]
        else:
            actions = self.policy(self.obs.copy(), episode_start=start)[rows]
        for i, action in zip(rows, actions, strict=True):
            episode = self.subs[i].step(action)
            if episode is not None:
                on_episode(episode)


class LocalEngine:
    """Runs a workload in this process.

    Args:
        policies: batch policies already built in this process, by policy index
            (the others are built from the workload on first use).
    """

    name = "local"

    def __init__(self, policies: Mapping[int, Callable[..., np.ndarray]] | None = None) -> None:
        self.policies = dict(policies or {})

    def run(self, workload: Workload, on_episode: OnEpisode) -> None:
        with one_torch_thread():
            self._run(workload, on_episode)

    def _run(self, workload: Workload, on_episode: OnEpisode) -> None:
        lanes = iter(workload.lanes)
        slots: dict[int, _Slots] = {}
        idle: dict[str, list[Any]] = {}
        active: list[_SubEnv] = []

        def start(lane: Lane) -> _SubEnv:
            pool = idle.setdefault(lane.variant, [])
            env = (
                pool.pop()
                if pool
                else make_env(
                    workload.task, workload.specs[lane.variant], workload.max_episode_steps
                )
            )
            return _SubEnv(lane, workload.policies[lane.policy].identity, env)

        def place(lane: Lane) -> None:
            """Give ``lane`` a sub-env in a free slot of its policy (there is one: fewer than
            ``n_envs`` sub-envs run)."""
            if lane.policy not in slots:
                built = self.policies.get(lane.policy)
                if built is None:
                    built = workload.policies[lane.policy].build(workload.n_envs)
                stateless = _keeps_no_state(workload.policies[lane.policy])
                slots[lane.policy] = _Slots(built, workload.n_envs, stateless)
            row = slots[lane.policy].free()
            assert row is not None
            sub = start(lane)
            slots[lane.policy].subs[row] = sub
            active.append(sub)

        try:
            while True:
                while len(active) < workload.n_envs and (lane := next(lanes, None)) is not None:
                    place(lane)
                if not active:
                    return
                for group in slots.values():
                    if any(sub is not None for sub in group.subs):
                        group.act(on_episode)
                for group in slots.values():
                    for row, sub in enumerate(group.subs):
                        if sub is not None and sub.finished:
                            group.subs[row] = None
                            idle[sub.lane.variant].append(sub.env)
                active = [sub for sub in active if not sub.finished]
        finally:
            for env in [sub.env for sub in active] + [e for pool in idle.values() for e in pool]:
                env.close()


def _keeps_no_state(source: PolicySource) -> bool:
    """A plain ``obs -> actions`` callable (no ``episode_start``): it cannot tell rows apart
    from one call to the next, so it needs no fixed rows."""
    return source.function is not None and with_episode_start(source.function) is not (
        source.function
    )


def run(workload: Workload, on_episode: OnEpisode) -> None:
    """Run ``workload`` with the local engine."""
    LocalEngine().run(workload, on_episode)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Batched inference of small networks gains nothing from threads; leave the cores to
    the physics."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
