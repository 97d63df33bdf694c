"""A built-in task's batch simulations as a vector env for training.

>>> venv = make_vec("Hopper", 16, skews="default")          # a Gymnasium VectorEnv
>>> model = PPO("MlpPolicy", SB3VecEnv(venv)).learn(100_000)  # doctest: +SKIP

:func:`make_vec` runs ``n`` simulations of one task on MuJoCo's C thread pool
(:class:`~sim2real.engines.batch.BatchSim`). Sub-env ``i`` behaves exactly as
``sim2real.make(task, skews=..., randomization=...)`` would: the same
observations, rewards, terminations and truncations under the same seeds and
actions, every episode's point drawn from the same source and generators.

Autoreset: ``AutoresetMode.SAME_STEP``. When a sub-env's episode ends, the
step that ended it returns the first observation of the next episode (reset
without a seed: its generators continue, as an unseeded ``env.reset()``), and
``info["final_obs"][i]`` (with the mask ``info["_final_obs"]``) holds the last
observation of the finished one; reward, terminated and truncated are the
finished episode's. ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``, or
with ``seed[i]`` for a list, as Gymnasium's vector envs do.

:class:`SB3VecEnv` adapts it to Stable-Baselines3's ``VecEnv`` (``dones``,
``infos[i]["terminal_observation"]``, ``"TimeLimit.truncated"``, and the
``"episode"`` statistics of SB3's ``Monitor``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from sim2real.engines.batch import BatchSim, Pipeline

SpecLike = Any  # a preset name, mapping, SkewSpec, point or YAML path (as sim2real.make)


class BatchVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` sub-envs of one built-in task on ``mujoco.batch`` (see the module doc).

    Args:
        task: a built-in task name (``"Hopper"``).
        num_envs: the number of sub-envs.
        skews: the fixed skews (a preset name, mapping, spec or YAML path), as
            :func:`sim2real.make`; default none (the sim variant).
        randomization: a randomization spec drawn around ``skews`` every episode.
        max_episode_steps: the time limit (default: the task's).
        nthread: MuJoCo batch threads (0: all CPUs).
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        task: str,
        num_envs: int,
        skews: SpecLike = None,
        randomization: SpecLike | Path | None = None,
        *,
        max_episode_steps: int | None = None,
        nthread: int = 0,
    ) -> None:
        from sim2real.pairing import make
        from sim2real.skewed_env import find_skewed_env

        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        # The local env validates the skews exactly as sim2real.make does, and binds the source.
        template = make(task, skews=skews, randomization=randomization, **kwargs)
        skewed = find_skewed_env(template)
        self.sim = BatchSim(task, num_envs, nthread=nthread, max_episode_steps=max_episode_steps)
        self._sources: list[Any] | None = None
        self._nominal = self.sim.pipeline(None)
        if skewed is not None and not hasattr(skewed, "source"):  # before sim2real.point
            if randomization is not None:
                raise ValueError("make_vec needs sim2real.point's sources to randomize")
            self._nominal = self.sim.pipeline(skewed.skews)
        elif skewed is not None:
            self._sources = [skewed.source.bind(skewed.context) for _ in range(num_envs)]
            probe = self._sources[0].draw(np.random.default_rng(0))
            self.sim.pipeline(probe)  # refuses what the batch engine cannot realize, now
            self._sources[0] = skewed.source.bind(skewed.context)
        self._source_rngs: list[np.random.Generator | None] = [None] * num_envs
        self._pipelines: dict[int, tuple[Any, Pipeline]] = {}
        self.num_envs = num_envs
        self.single_observation_space = template.observation_space
        self.single_action_space = template.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.spec = None
        self.render_mode = None
        self.task = task
        template.close()
        self._ids = np.arange(num_envs)
        self._obs = np.zeros((num_envs, self.sim.obs_dim))

    # ------------------------------------------------------------------ Gymnasium API
    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env (``seed``: an int ``s`` seeds sub-env ``i`` with ``s + i``)."""
        super().reset(seed=seed if isinstance(seed, int) else None)
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"expected {self.num_envs} seeds, got {len(seeds)}")
        self._obs = self._reset(self._ids, seeds)
        return self._obs.copy(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        result = self.sim.step(self._ids, actions)
        obs = result.obs
        done = result.terminated | result.truncated
        infos: dict[str, Any] = {}
        if done.any():
            ended = np.flatnonzero(done)
            final = np.full(self.num_envs, None, dtype=object)
            for i in ended.tolist():
                final[i] = obs[i].copy()
            infos = {"final_obs": final, "_final_obs": done.copy()}
            obs[ended] = self._reset(ended, [None] * len(ended))
        self._obs = obs
        return (
            obs.copy(),
            result.reward.astype(np.float64),
            result.terminated,
            result.truncated,
            infos,
        )

    def close_extras(self, **kwargs: Any) -> None:
        self._sources = None

    # ------------------------------------------------------------------ internals
    def _reset(self, ids: np.ndarray, seeds: Sequence[int | None]) -> np.ndarray:
        pipelines = [self._pipeline(int(i), s) for i, s in zip(ids, seeds, strict=True)]
        return self.sim.reset(ids, seeds, pipelines)

    def _pipeline(self, env: int, seed: int | None) -> Pipeline:
        """Sub-env ``env``'s next point, drawn from its source with the reset's ``"source"``
        generator (kept until the next seeded reset), as the local env draws it."""
        if self._sources is None:
            return self._nominal
        from sim2real.skews.pipeline import reset_generators

        if seed is not None or self._source_rngs[env] is None:
            self._source_rngs[env] = reset_generators(seed, ("source",))["source"]
        point = self._sources[env].draw(self._source_rngs[env])
        cached = self._pipelines.get(env)
        if cached is not None and cached[0] is point:  # a source's "same point again"
            return cached[1]
        pipeline = self.sim.pipeline(point)
        self._pipelines[env] = (point, pipeline)
        return pipeline


def make_vec(
    task: str,
    n: int,
    skews: SpecLike = None,
    randomization: SpecLike | Path | None = None,
    *,
    max_episode_steps: int | None = None,
    nthread: int = 0,
) -> BatchVectorEnv:
    """``n`` sub-envs of built-in ``task`` as a Gymnasium ``VectorEnv`` on ``mujoco.batch``;
    see :class:`BatchVectorEnv`. Wrap it in :class:`SB3VecEnv` to train with SB3."""
    return BatchVectorEnv(
        task, n, skews, randomization, max_episode_steps=max_episode_steps, nthread=nthread
    )


def __getattr__(name: str) -> Any:
    # SB3VecEnv subclasses SB3's VecEnv: built on first use, so that importing this module
    # does not import SB3 and torch.
    if name == "SB3VecEnv":
        return _sb3_vec_env_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _sb3_vec_env_class() -> type:
    from stable_baselines3.common.vec_env import VecEnv

    class SB3VecEnv(_SB3Adapter, VecEnv):
        __doc__ = _SB3Adapter.__doc__

    SB3VecEnv.__module__ = __name__
    return SB3VecEnv


class _SB3Adapter:
    """A :class:`BatchVectorEnv` as a Stable-Baselines3 ``VecEnv``.

    Rewards are float32 and ``dones`` is terminated or truncated, as in SB3's
    ``DummyVecEnv``; an ending sub-env's ``info`` carries ``terminal_observation``,
    ``TimeLimit.truncated`` and ``episode`` (``r`` return, ``l`` length, ``t`` seconds
    since the adapter was made, as SB3's ``Monitor``).
    """

    def __init__(self, venv: BatchVectorEnv) -> None:
        self.venv = venv  # before VecEnv.__init__, which reads render_mode through get_attr
        super().__init__(  # type: ignore[call-arg]
            venv.num_envs, venv.single_observation_space, venv.single_action_space
        )
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(venv.num_envs)
        self._lengths = np.zeros(venv.num_envs, dtype=np.int64)
        self._start = time.time()

    def reset(self) -> np.ndarray:
        seeds = list(self._seeds)
        obs, _ = self.venv.reset(seed=seeds if any(s is not None for s in seeds) else None)
        self._reset_seeds()
        self._reset_options()
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        self._returns += reward
        self._lengths += 1
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones).tolist():
            infos[i] = {
                "terminal_observation": info["final_obs"][i],
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                "episode": {
                    "r": float(self._returns[i]),
                    "l": int(self._lengths[i]),
                    "t": round(time.time() - self._start, 6),
                },
            }
            self._returns[i] = 0.0
            self._lengths[i] = 0
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.venv, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any):
        raise NotImplementedError(
            f"the batch sub-envs have no separate env objects to call {method_name!r} on"
        )

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
