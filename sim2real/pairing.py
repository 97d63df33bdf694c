"""Building paired sim and real environments: built-in tasks, Gymnasium ids, user callables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym

from sim2real.skewed_env import SkewedEnv, check_dimensions, find_skewed_env, mujoco_base
from sim2real.spec import SkewSpec, SkewSpecError
from sim2real.tasks import Task, get_task, tasks

EnvSource = str | Callable[..., gym.Env]
SpecSource = SkewSpec | dict | str | Path | None


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


def build_real_env(task: str, skews: SpecSource = "default", **env_kwargs: Any) -> gym.Env:
    """Entry point of ``sim2real/<Task>-real-v0``: the base env wrapped in its skews.

    ``skews`` is a preset name of the task, a mapping, a spec, or a YAML path;
    ``env_kwargs`` go to the upstream env (``render_mode``, ``xml_file``, ...).
    """
    spec_task = get_task(task)
    spec = resolve_spec(spec_task, skews)
    base = gym.make(spec_task.base_id, **env_kwargs).unwrapped
    return SkewedEnv(base, spec)


def resolve_spec(task: Task | None, skews: SpecSource) -> SkewSpec:
    """A preset name (of a built-in task), mapping, spec or YAML path, validated in full."""
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
    task: EnvSource, real: SpecSource = "default", **env_kwargs: Any
) -> tuple[gym.Env, gym.Env]:
    """The sim and real variants of one task.

    Args:
        task: a built-in task name (``"Hopper"``), any Gymnasium id of a
            ``MujocoEnv``-based env, or a callable that builds one (a custom
            MJCF model included).
        real: a preset name (built-in tasks), a mapping in the skew schema, a
            :class:`SkewSpec`, or a YAML path.
        env_kwargs: passed to the env constructor of both variants.
    """
    builtin = _builtin(task)
    spec = resolve_spec(builtin, real)  # validated before any env is built
    if builtin is not None:
        sim = gym.make(builtin.sim_id, **env_kwargs)
        return sim, gym.make(builtin.real_id, skews=spec, **env_kwargs)
    sim = _build(task, env_kwargs)
    check_dimensions(spec, int(sim.observation_space.shape[0]))
    return sim, SkewedEnv(_build(task, env_kwargs), spec)


def make(
    task: EnvSource,
    skews: SpecSource = None,
    randomization: SpecSource = None,
    **env_kwargs: Any,
) -> gym.Env:
    """One env of ``task`` with fixed ``skews`` (default: none, the sim variant) and,
    optionally, a domain randomization drawn around them each episode."""
    builtin = _builtin(task)
    spec = resolve_spec(builtin, skews)
    if randomization is not None:
        from sim2real.randomization import DomainRandomization, RandomizationSpec

        randomization = RandomizationSpec.load(randomization)  # validated before any env
        if builtin is not None:
            randomization.check_dimensions(builtin.observation_dim)
        source = builtin.base_id if builtin is not None else task
        return DomainRandomization(_build(source, env_kwargs), randomization, base=spec)
    if builtin is not None:
        if not spec.active():
            return gym.make(builtin.sim_id, **env_kwargs)
        return gym.make(builtin.real_id, skews=spec, **env_kwargs)
    return SkewedEnv(_build(task, env_kwargs), spec)


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
