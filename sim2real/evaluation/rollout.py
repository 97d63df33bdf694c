"""Running episodes: lanes of pre-assigned seeds, batched inference, worker processes.

The work is a list of :class:`Lane` s. A lane is one sub-env's fixed list of
episodes (one policy, one variant, a few seeds): the sub-env resets with the
lane's first seed, and when an episode ends it starts the next seed of its
lane, until the lane is exhausted. Every seed of every lane runs to its end,
so short episodes are never over-represented.

A process keeps up to ``n_envs`` sub-envs running side by side and calls each
policy once per step for all of its active sub-envs (batched inference).
With a :class:`WorkerPool` the calling process runs lanes itself while the
worker processes (``spawn``, one torch thread each, lowest priority) finish
starting up and join in; a free sub-env claims the next unclaimed lane from a
counter shared by all processes, so they balance themselves whatever their
start-up time. When no lane is left to claim, the calling process backs up the
workers' unfinished lanes, so a worker starved of CPU never holds up the end.
Finished episodes stream back to the caller as they end.

A physics divergence ends its episode and is flagged: one of MuJoCo's
instability warning counters (``mjWARN_BADQACC``, ``mjWARN_BADQVEL``,
``mjWARN_BADQPOS``: MuJoCo found a NaN, infinite or huge value and silently
reset the simulation) increasing during the episode, a non-finite reward, or a
non-finite ``qpos``, ``qvel``, ``qacc`` or observation at the episode's end.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from sim2real.evaluation.policy import BatchPolicy, PolicySource
from sim2real.pairing import make

# MuJoCo's instability warnings: raised when it finds a bad value and resets the simulation.
INSTABILITY_WARNINGS = ("mjWARN_BADQPOS", "mjWARN_BADQVEL", "mjWARN_BADQACC")
_WARNING_INDICES = tuple(int(getattr(mujoco.mjtWarning, name)) for name in INSTABILITY_WARNINGS)

# Workers run at the lowest priority: on an idle core they run at full speed; on a machine
# busy with other work they give way to it and to the calling process, which backs up
# their lanes. They use the CPU that would otherwise sit idle.
WORKER_NICENESS = 19


@dataclass(frozen=True)
class Episode:
    """One finished episode: its raw return, and whether physics diverged."""

    policy: str
    variant: str
    seed: int
    ret: float
    length: int
    diverged: bool = False
    reason: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "variant": self.variant,
            "seed": self.seed,
            "return": self.ret if math.isfinite(self.ret) else None,
            "length": self.length,
            "diverged": self.diverged,
            "reason": self.reason,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Episode:
        ret = record["return"]
        return cls(
            policy=str(record["policy"]),
            variant=str(record["variant"]),
            seed=int(record["seed"]),
            ret=math.nan if ret is None else float(ret),
            length=int(record["length"]),
            diverged=bool(record["diverged"]),
            reason=record.get("reason"),
        )


@dataclass(frozen=True)
class Lane:
    """One sub-env's fixed list of episodes: ``policy`` (an index) on ``variant``."""

    policy: int
    variant: str
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Workload:
    """Everything a process needs to run lanes; picklable for worker processes.

    Attributes:
        task: the task name or Gymnasium id, built with :func:`sim2real.make`.
        specs: the skew spec (nested mapping) of each variant key.
        policies: the policies that lanes refer to by index.
        lanes: the work.
        max_episode_steps: overrides the task's time limit when set.
        n_envs: sub-envs run side by side in one process. SB3 networks always see
            batches of this size (padded), so that an episode's actions do not depend
            on which other sub-envs run with it, nor on the process that runs it.
    """

    task: str
    specs: Mapping[str, Mapping[str, Any]]
    policies: tuple[PolicySource, ...]
    lanes: tuple[Lane, ...]
    max_episode_steps: int | None
    n_envs: int

    @property
    def episodes(self) -> int:
        return sum(len(lane.seeds) for lane in self.lanes)


def make_env(task: str, spec: Mapping[str, Any], max_episode_steps: int | None) -> gym.Env:
    """The variant of ``task`` with skews ``spec``; the sim variant itself when none are set."""
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    return make(task, skews=dict(spec), **kwargs)


def plan_lanes(jobs: Sequence[tuple[int, str, int]], lane_length: int) -> tuple[Lane, ...]:
    """Cut ``(policy, variant, seed)`` jobs, in order, into lanes of up to ``lane_length``
    seeds of one policy and variant."""
    lanes: list[Lane] = []
    current: list[int] = []
    key: tuple[int, str] | None = None
    for policy, variant, seed in jobs:
        if (policy, variant) != key or len(current) == lane_length:
            if current and key is not None:
                lanes.append(Lane(key[0], key[1], tuple(current)))
            key, current = (policy, variant), []
        current.append(seed)
    if current and key is not None:
        lanes.append(Lane(key[0], key[1], tuple(current)))
    return tuple(lanes)


def instability_warnings(data: Any) -> tuple[int, ...]:
    """MuJoCo's instability warning counters of ``data`` (an ``MjData``)."""
    return tuple(int(data.warning[index].number) for index in _WARNING_INDICES)


def divergence(data: Any, warnings_before: tuple[int, ...]) -> str | None:
    """Why the simulation in ``data`` (an ``MjData``) diverged since the counters read
    ``warnings_before``, or ``None``."""
    now = instability_warnings(data)
    for name, before, after in zip(INSTABILITY_WARNINGS, warnings_before, now, strict=True):
        if after > before:
            return f"MuJoCo instability warning ({name})"
    for name in ("qpos", "qvel", "qacc"):
        if not np.isfinite(getattr(data, name)).all():
            return f"non-finite {name}"
    return None


class _SubEnv:
    """One env working through one lane."""

    def __init__(self, lane: Lane, identity: str, env: gym.Env) -> None:
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
        self.total, self.length = 0.0, 0
        if self.data is not None:
            self.warnings = instability_warnings(self.data)
            self.warnings_total = sum(self.warnings)

    def step(self, action: np.ndarray) -> Episode | None:
        """Advance one step; the finished episode when this step ended it."""
        obs, reward, terminated, truncated, _ = self.env.step(action)
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
        if sum(counters[i] for i in _WARNING_INDICES) > self.warnings_total or ending:
            reason = divergence(self.data, self.warnings)
            if reason is None and not np.isfinite(obs).all():
                reason = "non-finite observation"
            return reason
        return None


def run_lanes(
    workload: Workload,
    claim: Callable[[], Lane | None],
    emit: Callable[[Episode], None],
    *,
    policies: Mapping[int, BatchPolicy] | None = None,
    poll: Callable[[], None] | None = None,
) -> None:
    """Run claimed lanes in this process until ``claim`` returns ``None`` and all are done.

    Args:
        workload: how to build the envs and policies of the lanes.
        claim: the next lane to run, or ``None`` when none is left.
        emit: receives each finished episode.
        policies: already built batch policies by index (the others are built on first use).
        poll: called once per step (the caller collects worker results there).
    """
    built: dict[int, BatchPolicy] = dict(policies or {})
    idle: dict[str, list[gym.Env]] = {}
    active: list[_SubEnv] = []

    def start(lane: Lane) -> _SubEnv:
        if lane.policy not in built:
            built[lane.policy] = workload.policies[lane.policy].build(workload.n_envs)
        pool = idle.setdefault(lane.variant, [])
        env = (
            pool.pop()
            if pool
            else make_env(workload.task, workload.specs[lane.variant], workload.max_episode_steps)
        )
        return _SubEnv(lane, workload.policies[lane.policy].identity, env)

    try:
        while True:
            while len(active) < workload.n_envs and (lane := claim()) is not None:
                active.append(start(lane))
            if not active:
                return
            by_policy: dict[int, list[_SubEnv]] = {}
            for sub in active:
                by_policy.setdefault(sub.lane.policy, []).append(sub)
            for index, subs in by_policy.items():
                actions = built[index](np.stack([sub.obs for sub in subs]))
                for sub, action in zip(subs, actions, strict=True):
                    episode = sub.step(action)
                    if episode is not None:
                        emit(episode)
            for sub in active:
                if sub.finished:
                    idle[sub.lane.variant].append(sub.env)
            active = [sub for sub in active if not sub.finished]
            if poll is not None:
                poll()
    finally:
        for env in [sub.env for sub in active] + [e for pool in idle.values() for e in pool]:
            env.close()


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Batched inference of small networks gains nothing from threads; leave the cores to
    the envs (and to the worker processes)."""
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


def _lower_priority(pid: int | None) -> None:
    """Lower a worker's priority from the start, before it imports anything."""
    with suppress(AttributeError, OSError):  # no setpriority on this platform, or not allowed
        current = os.getpriority(os.PRIO_PROCESS, pid)
        os.setpriority(os.PRIO_PROCESS, pid, min(current + WORKER_NICENESS, 19))


class WorkerPool:
    """Worker processes for :func:`run_workload`, started before the work is known.

    Workers are spawned (``spawn``: nothing is inherited) and import what they
    need (numpy, MuJoCo, torch, SB3's policy classes) while the caller is still
    checking its input and loading policies; then each waits for the workload.
    A pool serves one workload; :meth:`close` ends the workers that are left.

    Args:
        size: the number of worker processes.
    """

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.counter = context.Value("q", 0)
        self.results = context.Queue()
        self._inbox = context.Queue()
        self.processes = [
            context.Process(
                target=_worker,
                args=(self._inbox, self.counter, self.results),
                daemon=True,
                name=f"sim2real-eval-{n}",
            )
            for n in range(1, size + 1)
        ]
        for process in self.processes:
            process.start()
            _lower_priority(process.pid)
        self._closed = False

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, workload: Workload) -> None:
        for _ in self.processes:
            self._inbox.put(workload)

    def close(self) -> None:
        """End the workers: when the work is done, those still starting hold none of it."""
        if self._closed:
            return
        self._closed = True
        for process in self.processes:
            if process.is_alive():
                process.terminate()
            process.join()
        for channel in (self.results, self._inbox):
            channel.close()
            channel.cancel_join_thread()


def run_workload(
    workload: Workload,
    emit: Callable[[Episode], None],
    *,
    pool: WorkerPool | None = None,
    policies: Mapping[int, BatchPolicy] | None = None,
) -> None:
    """Run every lane of ``workload``, in this process and in the workers of ``pool``.

    Args:
        workload: the work; with a pool its policies must be portable
            (see :meth:`PolicySource.portable`).
        emit: receives each finished episode once, in this process, as it ends.
        pool: worker processes to share the lanes with (``None``: this process only).
        policies: batch policies already built in this process, by index.
    """
    if pool is None:
        lanes = iter(workload.lanes)
        with _one_torch_thread():
            run_lanes(workload, lambda: next(lanes, None), emit, policies=policies)
        return

    pool.send(workload)
    done: set[tuple[str, str, int]] = set()

    def once(episode: Episode) -> None:
        key = (episode.policy, episode.variant, episode.seed)
        if key not in done:  # an episode backed up by this process may arrive twice
            done.add(key)
            emit(episode)

    def collect(message: tuple[str, Any]) -> None:
        kind, payload = message
        if kind == "error":
            raise RuntimeError(f"an evaluation worker failed:\n{payload}")
        once(payload)

    def poll() -> None:
        while True:
            try:
                message = pool.results.get_nowait()
            except queue.Empty:
                return
            collect(message)

    claim = _BackingUpClaimer(workload, pool.counter, done)
    with _one_torch_thread():
        run_lanes(workload, claim, once, policies=policies, poll=poll)
    # Every lane was run or backed up here, so only the results still on their way remain.
    while len(done) < workload.episodes:
        try:
            collect(pool.results.get(timeout=0.5))
        except queue.Empty:
            if not any(process.is_alive() for process in pool.processes):
                poll()  # a worker's last episodes may have arrived as it exited
                if len(done) < workload.episodes:
                    codes = ", ".join(f"{p.name}: {p.exitcode}" for p in pool.processes)
                    raise RuntimeError(
                        f"evaluation workers exited unexpectedly ({codes})"
                    ) from None


class _Claimer:
    """Hands out the lanes of a workload in turn, counting on a counter shared between
    processes."""

    def __init__(self, workload: Workload, counter: Any) -> None:
        self.lanes, self.counter = workload.lanes, counter

    def claim_index(self) -> int | None:
        with self.counter.get_lock():
            index = self.counter.value
            if index >= len(self.lanes):
                return None
            self.counter.value = index + 1
            return index

    def __call__(self) -> Lane | None:
        index = self.claim_index()
        return None if index is None else self.lanes[index]


class _BackingUpClaimer(_Claimer):
    """The calling process's claimer: once every lane is claimed, it backs up the workers'
    unfinished lanes (the seeds whose episodes have not arrived), latest first, so that a
    worker slowed down by a busy machine never holds up the end. Both copies of an
    episode are identical (see :attr:`Workload.n_envs`); the first to arrive counts."""

    def __init__(self, workload: Workload, counter: Any, done: set) -> None:
        super().__init__(workload, counter)
        self.identities = [p.identity for p in workload.policies]
        self.done = done
        self.taken: set[int] = set()

    def __call__(self) -> Lane | None:
        index = self.claim_index()
        if index is not None:
            self.taken.add(index)
            return self.lanes[index]
        for index in reversed(range(len(self.lanes))):
            if index in self.taken:
                continue
            self.taken.add(index)
            lane = self.lanes[index]
            identity = self.identities[lane.policy]
            missing = tuple(s for s in lane.seeds if (identity, lane.variant, s) not in self.done)
            if missing:
                return Lane(lane.policy, lane.variant, missing)
        return None


def _worker(inbox: Any, counter: Any, results: Any) -> None:
    """Entry point of a worker process: get ready, then claim lanes and send each finished
    episode back."""
    import stable_baselines3.common.policies  # noqa: F401  (unpickling SB3 policy networks)
    import torch

    torch.set_num_threads(1)
    workload = inbox.get()
    try:
        run_lanes(workload, _Claimer(workload, counter), lambda e: results.put(("episode", e)))
    except BaseException:
        results.put(("error", traceback.format_exc()))
