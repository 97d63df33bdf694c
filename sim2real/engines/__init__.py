"""Engines that run episodes: ``local`` (one process, the default), ``batch`` (the built-in
tasks over ``mujoco.batch``), ``ray`` (shards on a Ray cluster; the extra ``sim2real[ray]``).

>>> run_workload(workload, engine="local", on_episode=store.add)  # doctest: +SKIP

Every engine runs the same :class:`Workload` and gives the same episodes (the
same key gives the same return); each finished episode reaches ``on_episode``
once, in the calling process, as it ends. Every engine calls a policy as
``policy(obs_batch, episode_start=mask)``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

from sim2real.engines.base import (
    Engine,
    Episode,
    EpisodeKey,
    Lane,
    OnEpisode,
    Workload,
    divergence,
    instability_warnings,
    make_env,
    plan_lanes,
)

# Engine name -> "module:attribute" of a class built as ``cls(policies=...)`` or of a
# ``run(workload, on_episode)`` function. Imported on first use (ray and mujoco.batch
# are heavy).
ENGINES: dict[str, str] = {
    "local": "sim2real.engines.local:LocalEngine",
    "batch": "sim2real.engines.batch:run",
    "ray": "sim2real.engines.ray_engine:RayEngine",
}

__all__ = [
    "ENGINES",
    "Engine",
    "Episode",
    "EpisodeKey",
    "Lane",
    "LocalEngine",
    "OnEpisode",
    "RayEngine",
    "Workload",
    "check_engine",
    "divergence",
    "get_engine",
    "instability_warnings",
    "make_env",
    "plan_lanes",
    "run_workload",
]


# Engine classes, imported on first use: ``sim2real.engines.RayEngine(shard_engine="batch")``.
_CLASSES = {
    "LocalEngine": "sim2real.engines.local",
    "RayEngine": "sim2real.engines.ray_engine",
}


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module 'sim2real.engines' has no attribute {name!r}")


# What an engine needs installed beyond the core, and how to get it.
_NEEDS = {"ray": ("ray", "pip install 'sim2real[ray]'")}


def check_engine(engine: str | Engine) -> str | Engine:
    """``engine`` if it names an available engine or is an engine object, else a
    ``ValueError`` in one line listing the allowed names (or what to install)."""
    if isinstance(engine, str):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        module = ENGINES[engine].split(":")[0]
        needed, remedy = _NEEDS.get(engine, (module, "it is not part of this installation"))
        if importlib.util.find_spec(needed) is None:
            raise ValueError(f"engine {engine!r} is not available: {remedy}")
        return engine
    if callable(getattr(engine, "run", None)):
        return engine
    raise ValueError(
        f"engine must be one of {', '.join(ENGINES)} or an object with "
        f"run(workload, on_episode), got {engine!r}"
    )


def get_engine(
    engine: str | Engine = "local", *, policies: Mapping[int, Callable[..., Any]] | None = None
) -> Engine:
    """The engine named ``engine`` (an engine object is returned as is).

    Args:
        engine: a name of :data:`ENGINES` or an object with ``run(workload, on_episode)``.
        policies: batch policies already built in this process, by policy index; the
            ``local`` engine uses them instead of building its own.

    Raises:
        ValueError: for an unknown name; ImportError when the engine's optional
            dependency is missing (``pip install sim2real[ray]``).
    """
    engine = check_engine(engine)
    if not isinstance(engine, str):
        return engine
    module, attribute = ENGINES[engine].split(":")
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, type):
        return target(policies=policies) if engine == "local" else target()
    return _FunctionEngine(engine, target)


class _FunctionEngine:
    """An engine given as a ``run(workload, on_episode)`` function."""

    def __init__(self, name: str, function: Callable[[Workload, OnEpisode], None]) -> None:
        self.name, self.function = name, function

    def run(self, workload: Workload, on_episode: OnEpisode) -> None:
        self.function(workload, on_episode)


def run_workload(
    workload: Workload,
    *,
    engine: str | Engine = "local",
    on_episode: OnEpisode,
    policies: Mapping[int, Callable[..., Any]] | None = None,
) -> None:
    """Run every lane of ``workload`` on ``engine``.

    Args:
        workload: the work; for ``ray`` its policies must be portable
            (:meth:`~sim2real.evaluation.policy.PolicySource.portable`).
        engine: ``"local"`` (default), ``"batch"``, ``"ray"``, or an engine object
            (e.g. ``RayEngine(shard_engine="batch")``).
        on_episode: receives each finished episode once, in this process, as it ends.
        policies: batch policies already built in this process, by index (``local``).
    """
    get_engine(engine, policies=policies).run(workload, on_episode)
