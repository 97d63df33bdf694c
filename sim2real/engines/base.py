"""What every engine shares: the work (:class:`Workload` of :class:`Lane` s), its result
(:class:`Episode`), how an env is built by name, and how a physics divergence is detected.

The work is a list of lanes. A lane is one sub-env's fixed list of episodes
(one policy, one variant, a few seeds): the sub-env resets with the lane's
first seed, and when an episode ends it starts the next seed of its lane,
until the lane is exhausted. Every seed of every lane runs to its end, so
short episodes are never over-represented. An episode is identified by its
:attr:`Episode.key` ``(policy id, variant key, seed)``; the same key gives the
same episode on every engine.

A physics divergence ends its episode and is flagged: one of MuJoCo's
instability warning counters (``mjWARN_BADQACC``, ``mjWARN_BADQVEL``,
``mjWARN_BADQPOS``: MuJoCo found a NaN, infinite or huge value and silently
reset the simulation) increasing during the episode, a non-finite reward, or a
non-finite ``qpos``, ``qvel``, ``qacc`` or observation at the episode's end.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import mujoco
import numpy as np

if TYPE_CHECKING:
    import gymnasium as gym

    from sim2real.evaluation.policy import PolicySource

# MuJoCo's instability warnings: raised when it finds a bad value and resets the simulation.
INSTABILITY_WARNINGS = ("mjWARN_BADQPOS", "mjWARN_BADQVEL", "mjWARN_BADQACC")
WARNING_INDICES = tuple(int(getattr(mujoco.mjtWarning, name)) for name in INSTABILITY_WARNINGS)

EpisodeKey = tuple[str, str, int]


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

    @property
    def key(self) -> EpisodeKey:
        """``(policy id, variant key, seed)``: the same on every engine."""
        return (self.policy, self.variant, self.seed)

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
    """Everything an engine needs to run lanes; picklable when its policies are portable.

    Attributes:
        task: the task name or Gymnasium id, built with :func:`sim2real.make`.
        specs: the skew spec (nested mapping) of each variant key.
        policies: the policies that lanes refer to by index.
        lanes: the work.
        max_episode_steps: overrides the task's time limit when set.
        n_envs: sub-envs run side by side. SB3 networks always see batches of this
            size (padded), so that an episode's actions do not depend on which other
            sub-envs run with it, nor on the engine or shard that runs it.
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

    def keys(self) -> list[EpisodeKey]:
        """The key of every episode of the work, in lane order."""
        return [
            (self.policies[lane.policy].identity, lane.variant, seed)
            for lane in self.lanes
            for seed in lane.seeds
        ]


OnEpisode = Callable[[Episode], None]


class Engine(Protocol):
    """Runs every lane of a workload, handing each finished episode to ``on_episode`` once,
    in the calling process, as it ends."""

    def run(self, workload: Workload, on_episode: OnEpisode) -> None: ...


def make_env(task: str, spec: Mapping[str, Any], max_episode_steps: int | None) -> gym.Env:
    """The variant of ``task`` with skews ``spec``; the sim variant itself when none are set."""
    from sim2real.pairing import make

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
    return tuple(int(data.warning[index].number) for index in WARNING_INDICES)


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


def takes_active_rows(policy: Callable[..., np.ndarray]) -> bool:
    """Whether ``policy`` accepts ``active=mask``: the rows of a fixed-row batch that hold
    one of its episodes, so that per-row work (a latency predictor) skips the others."""
    try:
        return "active" in inspect.signature(policy).parameters
    except (TypeError, ValueError):
        return False


def with_episode_start(policy: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """``policy`` as ``policy(obs_batch, episode_start=mask)``: a plain
    ``obs_batch -> action_batch`` callable is wrapped to ignore the mask."""
    try:
        parameters = inspect.signature(policy).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        parameters = ()
    if any(
        p.name == "episode_start" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters
    ):
        return policy

    def call(obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        return policy(obs)

    return call
