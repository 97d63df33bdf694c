"""Building paired sim and real environments: built-in tasks, Gymnasium ids, user callables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym

from sim2real.point import FixedSource, Point, Source, as_source, has_per_step
from sim2real.skewed_env import EnvArgumentError, ObsFn, SkewedEnv, find_skewed_env, mujoco_base
from sim2real.spec import SkewSpec, SkewSpecError, check_dimensions
from sim2real.tasks import Task, get_task, tasks

EnvSource = str | Callable[..., gym.Env]
SpecSource = SkewSpec | Point | dict | str | Path | None


def register_tasks() -> None:
    """Register ``sim2real/<Task>-sim-v0`` and ``sim2real/<Task>-real-v0`` for every task."""
    for task in tasks().values():
        if task.sim_id in gym.registry:
            continue
        upstream = gym.spec(task.base_id)
        # The sim variant is the upstream env itself: same entry point, kwargs and limits.
        gym.register(
            id=task.sim_id,
            entry_point=upstream.entry_point,
            max_episode_steps=upstream.max_episode_steps,
            reward_threshold=upstream.reward_threshold,
            kwargs=dict(upstream.kwargs),
        )
        gym.register(
            id=task.real_id,
            entry_point=build_real_env,
            max_episode_steps=upstream.max_episode_steps,
            kwargs={"task": task.name, "skews": "default"},
        )


def build_real_env(
    task: str,
    skews: SpecSource | Source = "default",
    obs_fn: ObsFn | None = None,
    **env_kwargs: Any,
) -> gym.Env:
    """Entry point of ``sim2real/<Task>-real-v0``: the base env wrapped in its skews.

    ``skews`` is a preset name of the task, a mapping or point, a spec, a YAML path,
    or a source; ``env_kwargs`` go to the upstream env (``render_mode``, ``xml_file``, ...).
    """
    spec_task = get_task(task)
    source = resolve_source(spec_task, skews)
    base = gym.make(spec_task.base_id, **env_kwargs).unwrapped
    return SkewedEnv(base, source, obs_fn=obs_fn)


def resolve_source(task: Task | None, skews: SpecSource | Source) -> Any:
    """A source from a preset name, spec, point, mapping, YAML path or source, validated.

    A point with a per-step field (from a randomized episode) becomes the source
    that replays it; anything else is a fixed spec.
    """
    if isinstance(skews, Source):
        return skews
    if isinstance(skews, Mapping) and has_per_step(skews):
        source = as_source(skews)  # a randomization whose random fields are drawn per step
        if task is not None:
            source.spec.check_dimensions(task.observation_dim)
        return source
    return FixedSource(resolve_spec(task, skews))


def resolve_spec(task: Task | None, skews: SpecSource) -> SkewSpec:
    """A preset name (of a built-in task), mapping, spec or YAML path, validated in full."""
    if skews is not None and not isinstance(skews, (str, Path, SkewSpec, Mapping)):
        raise SkewSpecError(
            "real must be a preset name, a mapping in the skew schema (a point from "
            f"info['skews'] included), a SkewSpec or a YAML path, got {type(skews).__name__}"
        )
    if isinstance(skews, str) and task is not None and skews in task.presets:
        spec = task.preset(skews)
    elif isinstance(skews, str) and not Path(skews).suffix:
        if task is None:
            raise SkewSpecError(
                f"real={skews!r} looks like a preset name, but this env has no presets; "
                "pass a mapping in the skew schema or a YAML path"
            )
        spec = task.preset(skews)  # raises, listing the presets
    else:
        spec = SkewSpec.load(skews)
    if task is not None:
        check_dimensions(spec, task.observation_dim)
    return spec


def _builtin(task: EnvSource) -> Task | None:
    if not isinstance(task, str) and not callable(task):
        raise EnvArgumentError(
            "the env argument (task) must be a built-in task name such as 'Hopper', a "
            "Gymnasium id of a MujocoEnv, or a callable that builds one, "
            f"got {task!r} ({type(task).__name__})"
        )
    if isinstance(task, str) and "/" not in task and "-v" not in task:
        return get_task(task)
    return None


def _build(source: EnvSource, env_kwargs: dict[str, Any]) -> gym.Env:
    if callable(source):
        env = source(**env_kwargs)
    else:
        try:
            env = gym.make(source, **env_kwargs)
        except gym.error.Error as error:
            raise ValueError(
                f"task {source!r} is neither a built-in task nor a Gymnasium id "
                f"({error}); built-in tasks: {', '.join(tasks())}"
            ) from None
    mujoco_base(env, what=f"task {getattr(source, '__name__', source)!r}")
    return env


def make_pair(
    task: EnvSource,
    real: SpecSource | Source = "default",
    *,
    obs_fn: ObsFn | None = None,
    **env_kwargs: Any,
) -> tuple[gym.Env, gym.Env]:
    """The sim and real variants of one task.

    Args:
        task: a built-in task name (``"Hopper"``), any Gymnasium id of a
            ``MujocoEnv``-based env, or a callable that builds one (a custom
            MJCF model included, whatever its observation method is called).
        real: a preset name (built-in tasks), a mapping in the skew schema (nested
            or flat; an episode's ``info["skews"]`` replays that episode), a
            :class:`SkewSpec`, a YAML path, or a source.
        obs_fn: reads the observation from the physics state; needed only for an
            observation latency that is not a whole number of control steps, on an
            env without ``_get_obs``.
        env_kwargs: passed to the env constructor of both variants.
    """
    builtin = _builtin(task)
    source = resolve_source(builtin, real)  # validated before any env is built
    if builtin is not None:
        sim = gym.make(builtin.sim_id, **env_kwargs)
        return sim, gym.make(builtin.real_id, skews=source, obs_fn=obs_fn, **env_kwargs)
    sim = _build(task, env_kwargs)
    return sim, SkewedEnv(_build(task, env_kwargs), source, obs_fn=obs_fn)


def make(
    task: EnvSource,
    skews: SpecSource | Source = None,
    randomization: SpecSource = None,
    *,
    obs_fn: ObsFn | None = None,
    history: int | Mapping[str, int] | None = None,
    **env_kwargs: Any,
) -> gym.Env:
    """One env of ``task`` with fixed ``skews`` (default: none, the sim variant) and,
    optionally, a domain randomization drawn around them each episode; with
    ``history=K`` each observation carries the last K commands (or a mapping
    ``{commands: K, observations: K}``; :mod:`sim2real.history`)."""
    if "real" in env_kwargs:  # make_pair's spelling: it would reach the env constructor
        raise TypeError(
            "make() takes the skews of one env as skews=..., not real= "
            "(make_pair(task, real=...) builds the sim and real variants)"
        )
    if history is not None:
        from sim2real.history import History, HistoryObservation

        spec = History.load(history)  # validated before any env
        env = make(task, skews, randomization, obs_fn=obs_fn, **env_kwargs)
        return HistoryObservation(env, spec)
    builtin = _builtin(task)
    if randomization is not None:
        from sim2real.randomization import DomainRandomization, RandomizationSpec

        spec = resolve_spec(builtin, skews)
        randomization = RandomizationSpec.load(randomization)  # validated before any env
        if builtin is not None:
            randomization.check_dimensions(builtin.observation_dim)
        base = builtin.base_id if builtin is not None else task
        return DomainRandomization(_build(base, env_kwargs), randomization, base=spec,
                                   obs_fn=obs_fn)  # fmt: skip
    source = resolve_source(builtin, skews)
    if builtin is not None:
        nominal = getattr(source, "point", None) == {} and obs_fn is None
        if nominal:
            return gym.make(builtin.sim_id, **env_kwargs)
        return gym.make(builtin.real_id, skews=source, obs_fn=obs_fn, **env_kwargs)
    return SkewedEnv(_build(task, env_kwargs), source, obs_fn=obs_fn)


def describe(env: gym.Env, *, show: bool = True) -> str:
    """The skew stack of ``env`` with units and effective values; printed unless ``show=False``."""
    skewed = find_skewed_env(env)
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    text = f"{name}\n" + (
        skewed.describe() if skewed else "  no skews: the sim variant (the upstream env unchanged)"
    )
    if show:
        print(text)
    return text
