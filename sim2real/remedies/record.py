"""What a robot logs, and the log format that calibration and the monitor read.

Logs hold, per episode, the observations the policy received, the commands it
sent and the control timestamps: nothing else, never the true skew values (the
real variant stands in for the robot). On disk (format ``sim2real.logs/1``) a
log is a folder with::

    metadata.json        {"format": "sim2real.logs/1", "task": "Hopper", "control_dt": 0.008,
                          "obs_dim": 11, "act_dim": 3, "episodes": 10, ...}
    episode_0000.npz     observations (T+1, obs_dim), actions (T, act_dim), times (T+1,) [s]
    episode_0001.npz     ...

``observations[t]`` is what the policy saw before sending ``actions[t]``;
``observations[T]`` is the last reading. A user's own robot logs in this
format load the same way, and :func:`load_logs` also takes a list of episodes
in memory, each a mapping with ``observations`` and ``actions`` arrays.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "sim2real.logs/1"
METADATA_FILE = "metadata.json"


class Excitation(str, Enum):
    """Commands added to (or, without a policy, sent instead of) the policy's."""

    SINE = "sine"  # a sum of three sines per actuator, random frequencies and phases
    RANDOM = "random"  # uniform random commands, each held for a random 1-4 steps


@dataclass(frozen=True)
class LogEpisode:
    """One logged episode: ``observations`` (T+1, obs_dim), ``actions`` (T, act_dim), ``times``
    (T+1,) in seconds."""

    observations: np.ndarray
    actions: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)


@dataclass
class Logs:
    """Logged episodes of one task, with their metadata (a sequence of :class:`LogEpisode`)."""

    task: str | None
    control_dt: float | None
    episodes: list[LogEpisode]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self):
        return iter(self.episodes)

    def __getitem__(self, index: int) -> LogEpisode:
        return self.episodes[index]

    @property
    def steps(self) -> int:
        return sum(len(e) for e in self.episodes)

    def save(self, path: str | Path) -> Path:
        """Write the folder format; returns the folder."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("episode_*.npz"):
            old.unlink()
        first = self.episodes[0]
        meta = {
            **self.metadata,
            "format": FORMAT,
            "task": self.task,
            "control_dt": self.control_dt,
            "obs_dim": int(first.observations.shape[1]),
            "act_dim": int(first.actions.shape[1]),
            "episodes": len(self.episodes),
            "steps": self.steps,
        }
        for index, episode in enumerate(self.episodes):
            np.savez_compressed(
                out / f"episode_{index:04d}.npz",
                observations=episode.observations,
                actions=episode.actions,
                times=episode.times,
            )
        (out / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return out


LogSource = Logs | str | Path | Sequence[Mapping[str, Any]]


def load_logs(
    source: LogSource, task: str | None = None, *, control_dt: float | None = None
) -> Logs:
    """Logs from a folder, a :class:`Logs`, or a list of mappings, checked in full.

    Args:
        source: a log folder (format ``sim2real.logs/1``), logs, or a list of episodes,
            each a mapping with ``observations`` (T+1, obs_dim) and ``actions`` (T, act_dim)
            arrays (``times`` optional).
        task: when given, the logs must be of this built-in task (shapes and name).
        control_dt: the control period (s) of in-memory episodes without ``times``.

    Raises:
        ValueError: one line naming the episode and what is wrong (empty, NaN, shapes,
            another task's shapes).
    """
    if isinstance(source, (str, Path)):
        logs = _read_folder(Path(source))
    elif isinstance(source, Logs):
        logs = source
    elif isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        logs = Logs(None, control_dt, [_episode(e, i, control_dt) for i, e in enumerate(source)])
    else:
        raise ValueError(
            f"logs must be a log folder, Logs or a list of episodes, got {type(source).__name__}"
        )
    _check(logs, task)
    return logs


def _episode(raw: Any, index: int, control_dt: float | None) -> LogEpisode:
    if isinstance(raw, LogEpisode):
        return raw
    if not isinstance(raw, Mapping) and not hasattr(raw, "files"):
        raise ValueError(
            f"logs: episode {index} must be a mapping with observations and actions, "
            f"got {type(raw).__name__}"
        )
    missing = [k for k in ("observations", "actions") if k not in raw]
    if missing:
        raise ValueError(f"logs: episode {index} has no {missing[0]!r} array")
    try:
        obs = np.asarray(raw["observations"], dtype=np.float64)
        actions = np.asarray(raw["actions"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"logs: episode {index}: observations and actions must be numbers"
        ) from None
    if "times" in raw:
        times = np.asarray(raw["times"], dtype=np.float64)
    else:
        times = np.arange(len(obs)) * (control_dt if control_dt is not None else np.nan)
    return LogEpisode(obs, actions, times)


def _read_folder(path: Path) -> Logs:
    meta_file = path / METADATA_FILE
    if not path.is_dir():
        raise ValueError(f"logs: no such folder {str(path)!r}")
    if not meta_file.is_file():
        raise ValueError(f"logs: {str(path)!r} has no {METADATA_FILE} (format {FORMAT})")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"logs: {meta_file} is not valid JSON ({error})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"logs: {meta_file} has format {meta.get('format')!r}, expected {FORMAT}")
    files = sorted(path.glob("episode_*.npz"))
    episodes = []
    for index, file in enumerate(files):
        with np.load(file) as raw:
            episodes.append(_episode(raw, index, meta.get("control_dt")))
    return Logs(meta.get("task"), meta.get("control_dt"), episodes, meta)


def _check(logs: Logs, task: str | None) -> None:
    if not logs.episodes:
        raise ValueError("logs: no episodes")
    expected: tuple[int, int] | None = None
    if task is not None:
        from sim2real.tasks import get_task

        spec = get_task(task)
        if logs.task is not None and logs.task.lower() != spec.name.lower():
            raise ValueError(f"logs: recorded on {logs.task}, not {spec.name}")
        expected = (spec.observation_dim, spec.action_dim)
    first = logs.episodes[0]
    for index, e in enumerate(logs.episodes):
        name = f"logs: episode {index}"
        if e.observations.ndim != 2 or e.actions.ndim != 2:
            raise ValueError(f"{name}: observations and actions must be 2-D (steps, dims)")
        if len(e.actions) == 0:
            raise ValueError(f"{name} is empty (no actions)")
        if len(e.observations) != len(e.actions) + 1:
            raise ValueError(
                f"{name}: {len(e.observations)} observations for {len(e.actions)} actions; "
                "expected one more observation than actions"
            )
        if e.times.shape != (len(e.observations),):
            raise ValueError(f"{name}: times must have one value per observation")
        dims = (e.observations.shape[1], e.actions.shape[1])
        want = expected or (first.observations.shape[1], first.actions.shape[1])
        if dims != want:
            whose = f"{task}'s" if expected else "episode 0's"
            raise ValueError(
                f"{name}: observations x actions are {dims[0]} x {dims[1]} wide, "
                f"{whose} are {want[0]} x {want[1]}"
            )
        for what, array in (("observations", e.observations), ("actions", e.actions)):
            if not np.isfinite(array).all():
                row = int(np.argwhere(~np.isfinite(array))[0, 0])
                raise ValueError(f"{name}: {what} are not finite (NaN or inf) at step {row}")


# ---------------------------------------------------------------------- recording
Policy = Callable[[np.ndarray], np.ndarray]


def excitation_signal(
    kind: Excitation | str, steps: int, act_dim: int, control_dt: float, seed: int
) -> np.ndarray:
    """An excitation of ``steps`` x ``act_dim`` in [-1, 1], reproducible from ``seed``."""
    kind = Excitation(kind)
    rng = np.random.default_rng([seed, 0x5EED])
    if kind is Excitation.SINE:
        t = np.arange(steps)[:, None, None] * control_dt
        freq = rng.uniform(0.5, 4.0, (1, act_dim, 3))  # Hz
        phase = rng.uniform(0, 2 * np.pi, (1, act_dim, 3))
        return np.sin(2 * np.pi * freq * t + phase).mean(axis=2)
    holds = rng.integers(1, 5, steps)
    values = rng.uniform(-1, 1, (steps, act_dim))
    index = np.repeat(np.arange(steps), holds)[:steps]
    return values[index]


def record(
    policy: Any,
    env: Any,
    seeds: Iterable[int] = range(10),
    max_steps: int = 300,
    excitation: Excitation | str | None = None,
    *,
    amplitude: float = 0.3,
    out: str | Path | None = None,
) -> Logs:
    """Run ``policy`` on ``env`` (the robot) and log what a robot would log.

    Args:
        policy: a path to a saved SB3 policy folder, a loaded model, a callable
            ``obs_batch -> action_batch``, or ``None`` (excitation alone).
        env: a Gymnasium env (e.g. the real variant; build it with
            ``terminate_when_unhealthy=False`` to log a robot that falls), or a task name
            (its default real variant).
        seeds: one episode per seed, started with ``reset(seed=s)``.
        max_steps: control steps per episode, at most.
        excitation: ``"sine"`` or ``"random"`` commands added to the policy's (sent alone
            without a policy); identifies the dynamics faster than a policy that only walks.
        amplitude: the excitation's size as a share of half the action range (1.0 alone).
        out: a folder to write the logs to.

    Returns:
        The logs: observations received, commands sent, control timestamps.
    """

    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    if excitation is not None:
        excitation = Excitation(excitation)
    if policy is None and excitation is None:
        raise ValueError("record needs a policy, an excitation, or both")
    if isinstance(env, str):
        from sim2real.pairing import make_pair

        env = make_pair(env)[1]
    act = _policy(policy)
    base = env.unwrapped
    control_dt = float(base.dt)
    space = env.action_space
    low, high = np.asarray(space.low, float), np.asarray(space.high, float)
    centre, half = (high + low) / 2, (high - low) / 2
    scale = amplitude if policy is not None else 1.0
    task = _task_name(env)
    episodes = []
    for seed in seeds:
        obs, _ = env.reset(seed=int(seed))
        shaking = (
            excitation_signal(excitation, max_steps, len(low), control_dt, int(seed))
            if excitation is not None
            else None
        )
        observations, actions = [np.array(obs, dtype=np.float64)], []
        for t in range(max_steps):
            command = act(obs) if act is not None else centre.copy()
            if shaking is not None:
                command = command + scale * half * shaking[t]
            command = np.clip(command, low, high)
            obs, _, terminated, truncated, _ = env.step(command)
            actions.append(command)
            observations.append(np.array(obs, dtype=np.float64))
            if terminated or truncated:
                break
        times = np.arange(len(observations)) * control_dt
        episodes.append(LogEpisode(np.asarray(observations), np.asarray(actions), times))
    meta = {
        "recorded_by": "sim2real.record",
        "env": env.spec.id if env.spec is not None else type(base).__name__,
        "seeds": [int(s) for s in seeds],
        "max_steps": max_steps,
        "excitation": excitation.value if excitation is not None else None,
        "amplitude": scale if excitation is not None else None,
        "policy": str(policy) if isinstance(policy, (str, Path)) else type(policy).__name__,
    }
    logs = Logs(task, control_dt, episodes, meta)
    if out is not None:
        logs.save(out)
    return logs


def _policy(policy: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """A one-observation policy from a path, model or batch callable."""
    if policy is None:
        return None
    from sim2real.evaluation.policy import resolve_policies

    sources = resolve_policies(str(policy) if isinstance(policy, Path) else policy)
    if len(sources) != 1:
        raise ValueError(f"record takes one policy, got {len(sources)}")
    batch = sources[0].build(1)

    def act(obs: np.ndarray) -> np.ndarray:
        return np.asarray(batch(np.asarray(obs, dtype=np.float64)[None]), dtype=np.float64)[0]

    return act


def _task_name(env: Any) -> str | None:
    """The built-in task an env belongs to, from its Gymnasium id."""
    from sim2real.tasks import tasks

    spec_id = env.spec.id if env.spec is not None else ""
    for task in tasks().values():
        if spec_id in (task.sim_id, task.real_id, task.base_id):
            return task.name
    name = type(env.unwrapped).__name__.removesuffix("Env")
    return name if name in tasks() else None


def terminates_when_unhealthy(task: str) -> bool:
    """Whether built-in ``task`` ends an episode when the robot falls (then logging a robot
    that falls needs ``terminate_when_unhealthy=False``)."""
    import gymnasium as gym

    from sim2real.tasks import get_task

    env = gym.make(get_task(task).base_id).unwrapped
    try:
        return hasattr(env, "_terminate_when_unhealthy")
    finally:
        env.close()
