"""A policy's view of its own past: the current observation, its last K commands and,
optionally, its last K observations.

Latency hides the present state from a feed-forward policy; the classic remedy for
a delayed MDP is to give the policy the commands it has issued since the observation
it holds was taken (the augmented state). :class:`History` says what is kept,
:class:`HistoryBuffer` keeps it for a batch of sub-envs (one row each), and
:class:`HistoryObservation` is the Gymnasium wrapper that training uses. The
evaluator, the benchmark and every engine replay a policy's history with the same
:class:`HistoryBuffer`, from the ``history`` entry of its ``metadata.json``, so the
augmented observation is the same, step for step, in training and in evaluation.

Layout of the augmented observation (``obs_dim`` the env's, ``act_dim`` its action's)::

    [ obs_t | obs_{t-1} ... obs_{t-Ko} | a_{t-1} ... a_{t-Kc} ]

At an episode start the past observations are backfilled with the first observation
(never zeros) and the past commands are zeros (nothing has been commanded yet). The
commands recorded are the ones the env received (SB3 clips a policy's output to the
action space before stepping; its ``predict`` clips alike).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class History:
    """How much of the past a policy sees.

    Attributes:
        commands: the number of past commands appended (``Kc``).
        observations: the number of past observations appended (``Ko``).
    """

    commands: int = 0
    observations: int = 0

    def __post_init__(self) -> None:
        for name in ("commands", "observations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"history {name} must be a non-negative integer, got {value!r}")

    @classmethod
    def load(cls, value: History | int | Mapping[str, Any] | None) -> History:
        """From ``K`` (the last K commands, no past observations), a mapping
        ``{"commands": Kc, "observations": Ko}``, a :class:`History` or ``None`` (none)."""
        if value is None:
            return cls()
        if isinstance(value, History):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"commands", "observations"})
            if unknown:
                raise ValueError(
                    f"history: unknown keys {unknown}; allowed: commands, observations"
                )
            return cls(int(value.get("commands", 0)), int(value.get("observations", 0)))
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(
                "history must be a non-negative integer (the last K commands) or a mapping "
                f"{{commands: K, observations: K}}, got {value!r}"
            )
        return cls(commands=value)

    @property
    def active(self) -> bool:
        return bool(self.commands or self.observations)

    def to_dict(self) -> dict[str, int]:
        return {"commands": self.commands, "observations": self.observations}

    def size(self, obs_dim: int, act_dim: int) -> int:
        """The augmented observation's length."""
        return obs_dim * (1 + self.observations) + act_dim * self.commands


class HistoryBuffer:
    """The past of ``rows`` sub-envs side by side; row ``i`` is always the same sub-env.

    Call :meth:`observe` with every observation batch (and the rows where an episode
    starts) to get the augmented batch, then :meth:`record` with the commands sent.
    """

    def __init__(self, history: History, obs_dim: int, act_dim: int, rows: int = 1) -> None:
        self.history = history
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self._obs = np.zeros((rows, history.observations, obs_dim))  # newest first
        self._commands = np.zeros((rows, history.commands, act_dim))  # newest first
        self._current = np.zeros((rows, obs_dim))

    @property
    def rows(self) -> int:
        return len(self._current)

    def _grow(self, rows: int) -> None:
        extra = rows - self.rows
        if extra > 0:
            self._obs = np.concatenate([self._obs, np.zeros((extra, *self._obs.shape[1:]))])
            self._commands = np.concatenate(
                [self._commands, np.zeros((extra, *self._commands.shape[1:]))]
            )
            self._current = np.concatenate([self._current, np.zeros((extra, self.obs_dim))])

    def observe(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        """The augmented observations of rows ``0..len(obs)-1``.

        Args:
            obs: ``(n, obs_dim)`` current observations.
            episode_start: ``(n,)`` bool, True where ``obs`` is an episode's first;
                ``None`` means no episode starts (rows the buffer has never seen start).
        """
        obs = np.asarray(obs, dtype=np.float64).reshape(len(obs), self.obs_dim)
        n, known = len(obs), self.rows
        self._grow(n)
        start = np.zeros(n, dtype=bool)
        if episode_start is not None:
            start |= np.asarray(episode_start, dtype=bool).reshape(n)
        start[known:] = True
        k = self.history.observations
        if k:
            # The previous current observation becomes the newest past one.
            self._obs[:n] = np.concatenate([self._current[:n, None], self._obs[:n, :-1]], axis=1)
            self._obs[:n][start] = obs[start, None]
        self._commands[:n][start] = 0.0
        self._current[:n] = obs
        parts = [obs]
        if k:
            parts.append(self._obs[:n].reshape(n, -1))
        if self.history.commands:
            parts.append(self._commands[:n].reshape(n, -1))
        return np.concatenate(parts, axis=1)

    def record(self, actions: np.ndarray) -> None:
        """The commands sent to rows ``0..len(actions)-1`` after the last :meth:`observe`."""
        if not self.history.commands:
            return
        actions = np.asarray(actions, dtype=np.float64).reshape(len(actions), self.act_dim)
        n = len(actions)
        self._commands[:n] = np.concatenate([actions[:, None], self._commands[:n, :-1]], axis=1)


class HistoryObservation(gym.Wrapper):
    """Training's view: each observation augmented with the policy's past (module doc).

    Args:
        env: a Gymnasium env with flat Box observations and actions.
        history: a :class:`History`, ``K`` or a mapping (see :meth:`History.load`).
    """

    def __init__(self, env: gym.Env, history: History | int | Mapping[str, Any]) -> None:
        super().__init__(env)
        self.history = History.load(history)
        obs_space, act_space = env.observation_space, env.action_space
        self._obs_dim = int(np.prod(obs_space.shape))
        self._act_dim = int(np.prod(act_space.shape))
        size = self.history.size(self._obs_dim, self._act_dim)
        low = np.concatenate(
            [np.broadcast_to(obs_space.low, obs_space.shape).ravel()]
            * (1 + self.history.observations)
            + [np.broadcast_to(act_space.low, act_space.shape).ravel()] * self.history.commands
        )
        high = np.concatenate(
            [np.broadcast_to(obs_space.high, obs_space.shape).ravel()]
            * (1 + self.history.observations)
            + [np.broadcast_to(act_space.high, act_space.shape).ravel()] * self.history.commands
        )
        self.observation_space = gym.spaces.Box(
            low.astype(np.float64), high.astype(np.float64), (size,), np.float64
        )
        # One env's :class:`HistoryBuffer` row, kept as the augmented vector itself and
        # shifted in place (the same numbers; the batch buffer's general indexing costs
        # about 100 us a step, a fifth of a PPO step on Hopper).
        flat = self._flat = np.zeros(size)
        o, end, a = self._obs_dim, self._obs_dim * (1 + self.history.observations), self._act_dim
        self._past_end = end
        self._low = np.asarray(act_space.low, dtype=np.float64).ravel()
        self._high = np.asarray(act_space.high, dtype=np.float64).ravel()
        # Views into the row, made once (slicing at every step costs more than the copies):
        # the current observation; the past observations and the slots they shift into; the
        # newest command and the older commands with the slots they shift into.
        self._current = flat[:o]
        self._past_dst, self._past_src = flat[2 * o : end], flat[o : end - o]
        self._newest_past = flat[o : 2 * o]
        self._newest_cmd = flat[end : end + a]
        self._older_dst, self._older_src = flat[end + a :], flat[end : len(flat) - a]

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        flat, o, end = self._flat, self._obs_dim, self._past_end
        flat[:o] = np.asarray(obs, dtype=np.float64).ravel()
        if end > o:  # the past observations backfilled with the first one
            flat[o:end] = np.tile(flat[:o], self.history.observations)
        flat[end:] = 0.0  # nothing commanded yet
        return flat.copy(), info

    def step(self, action):
        if self.history.commands:  # the command sent becomes the newest past one, clipped
            self._older_dst[...] = self._older_src  # numpy buffers the overlapping copy
            newest = self._newest_cmd
            np.maximum(np.reshape(action, -1), self._low, out=newest)
            np.minimum(newest, self._high, out=newest)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.history.observations:  # the previous observation becomes the newest past one
            self._past_dst[...] = self._past_src
            self._newest_past[...] = self._current
        self._current[...] = np.reshape(obs, -1)
        return self._flat.copy(), reward, terminated, truncated, info
