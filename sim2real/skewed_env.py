"""The real variant: one Gymnasium wrapper that applies a skew spec to a MuJoCo env.

The skews act where they would on a robot (DESIGN.md section 3)::

    command -> action latency -> actuation (noise, deadband) -> physics (dynamics skews)
    physics state -> sensing (bias, noise, dropout) -> observation latency -> policy

Dynamics skews are in-place model edits made at reset. Actuation and timing
act inside the physics step: the wrapper takes over the env's
``_step_mujoco_simulation`` so that a latency is realized on the substep grid
(``model.opt.timestep``), not rounded to control steps. Reward and termination
are computed by the task from the true physical state, as upstream.

The pipeline is fused into one wrapper for speed; each skew is still its own
small component in :mod:`sim2real.skews`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from sim2real.skews import (
    ActionLatency,
    ActuationNoise,
    Deadband,
    ModelSkews,
    ObservationLatency,
    SensorBias,
    SensorDropout,
    SensorNoise,
    Sensors,
    step_segments,
)
from sim2real.skews.sensing import per_dimension
from sim2real.skews.streams import GaussianStream, UniformStream
from sim2real.spec import SkewSpec, SkewSpecError, field_info

# One independent random stream per consumer, spawned from the reset seed in this
# fixed order, so that switching one skew on never changes another's draws.
STREAMS = (
    "actuation.noise_std",
    "sensing.noise_std",
    "sensing.bias_std",
    "sensing.dropout_prob",
    "randomization",
)


def mujoco_base(env: gym.Env, what: str = "env") -> MujocoEnv:
    """The ``MujocoEnv`` under ``env``'s wrappers, or a clear error."""
    base = env.unwrapped
    if not isinstance(base, MujocoEnv):
        raise TypeError(f"{what} must be built on gymnasium's MujocoEnv, got {type(base).__name__}")
    return base


def check_dimensions(spec: SkewSpec, obs_dim: int) -> None:
    """Per-dimension sensing values must have one number per observation dimension."""
    for name in ("noise_std", "bias_std"):
        try:
            per_dimension(getattr(spec.sensing, name), obs_dim, f"sensing.{name}")
        except ValueError as error:
            raise SkewSpecError(str(error)) from None


class SkewedEnv(gym.Wrapper):
    """Applies a :class:`~sim2real.spec.SkewSpec` to a MuJoCo Gymnasium env.

    Args:
        env: a Gymnasium env whose ``unwrapped`` is a ``MujocoEnv``.
        skews: a spec, a mapping in the schema, a YAML path, or ``None`` (nominal).

    With every skew nominal the wrapper is transparent: the env behaves
    exactly as upstream, step for step. ``info`` at reset carries the applied
    values under ``"skews"`` (latencies as realized, in seconds).
    """

    def __init__(self, env: gym.Env, skews: SkewSpec | dict | str | None = None) -> None:
        super().__init__(env)
        self._base = mujoco_base(env)
        if "_step_mujoco_simulation" in vars(self._base):
            raise ValueError("this env already carries a SkewedEnv; wrap it only once")
        self._model, self._data = self._base.model, self._base.data
        self._frame_skip = int(self._base.frame_skip)
        self._substep_s = float(self._model.opt.timestep)
        self._low = np.asarray(env.action_space.low, dtype=np.float64)
        self._high = np.asarray(env.action_space.high, dtype=np.float64)
        self._obs_dim = int(np.prod(env.observation_space.shape))
        self._model_skews = ModelSkews(self._model)
        limited = self._model.actuator_ctrllimited.astype(bool)
        self._mujoco_clamps_ctrl = bool(
            limited.all()
            and np.array_equal(self._model.actuator_ctrlrange[:, 0], self._low)
            and np.array_equal(self._model.actuator_ctrlrange[:, 1], self._high)
        )
        self._obs_needs_rne = _reads_constraint_forces(self._base)
        self._rngs: dict[str, np.random.Generator] = {}
        self._gaussian: dict[str, GaussianStream] = {}
        self.skews = self._validated(skews)
        self.episode_skews = self.skews
        self._observe: Callable[[np.ndarray], np.ndarray] | None = None
        self._build_pipeline(self.skews)

    # ------------------------------------------------------------------ public
    def set_skews(self, skews: SkewSpec | dict | str | None) -> None:
        """Replace the spec; it takes effect at the next reset."""
        self.skews = self._validated(skews)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        reseeded = seed is not None or not self._rngs
        if reseeded:
            self._seed(seed)
        spec = self._skews_for_episode()
        self._apply_dynamics(spec)
        if reseeded or spec is not self.episode_skews:
            self._build_pipeline(spec)
        else:  # same components; only the per-episode state starts afresh
            self._commands.clear()
            self._sensors.previous = None
        self.episode_skews = spec
        obs, info = self.env.reset(seed=seed, options=options)
        if self._sensors.bias is not None:
            self._sensors.bias.draw(self._rngs["sensing.bias_std"])
        obs = self._start_observing(obs)
        info["skews"] = self.applied_values()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._observe is not None:
            obs = self._observe(obs)
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self._uninstall_physics_hook()
        self._model_skews.restore()
        super().close()

    def applied_values(self) -> dict[str, Any]:
        """The non-nominal values of this episode; latencies as realized, in seconds."""
        values = dict(self.episode_skews.active())
        for latency in (self._obs_latency, self._action_latency):
            if latency.field in values:
                values[latency.field] = latency.effective_s
        return values

    def describe(self) -> str:
        """The skew stack with units and effective values, one line per active skew."""
        lines = [
            f"{type(self).__name__} on {type(self._base).__name__}: control step "
            f"{self._frame_skip * self._substep_s:g} s = {self._frame_skip} substeps of "
            f"{self._substep_s:g} s"
        ]
        active = self.skews.active()
        if not active:
            lines.append("  (every skew nominal: identical to the sim variant)")
        latencies = {
            "timing.obs_latency_s": ObservationLatency,
            "timing.action_latency_s": ActionLatency,
        }
        for name, value in active.items():
            unit, meaning = field_info(name)
            shown = f"{value}"
            if name in latencies:
                shown = latencies[name](value, self._substep_s, self._frame_skip).describe()
            lines.append(f"  {name:<28} {shown:<12} [{unit}] {meaning}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ hooks for subclasses
    def _skews_for_episode(self) -> SkewSpec:
        """The point in skew space for the next episode (domain randomization overrides this)."""
        return self.skews

    def _apply_dynamics(self, spec: SkewSpec) -> None:
        values = {k: v for k, v in spec.dynamics.model_dump().items() if v is not None}
        self._model_skews.apply(values)

    # ------------------------------------------------------------------ internals
    def _validated(self, skews: SkewSpec | dict | str | None) -> SkewSpec:
        spec = SkewSpec.load(skews)
        check_dimensions(spec, self._obs_dim)
        return spec

    def _seed(self, seed: int | None) -> None:
        children = np.random.SeedSequence(seed).spawn(len(STREAMS))
        self._rngs = {
            name: np.random.Generator(np.random.PCG64(child))
            for name, child in zip(STREAMS, children, strict=True)
        }
        self._gaussian = {}

    def _stream(self, name: str, dim: int, kind: type[GaussianStream]) -> GaussianStream:
        """The block stream of ``name``, kept across episodes until the next seed."""
        stream = self._gaussian.get(name)
        if stream is None:
            stream = self._gaussian[name] = kind(self._rngs[name], dim)
        return stream

    def _build_pipeline(self, spec: SkewSpec) -> None:
        act, sense, timing = spec.actuation, spec.sensing, spec.timing
        self._noise = None
        if act.noise_std > 0:
            self._noise = ActuationNoise(act.noise_std, self._low, self._high)
            if self._rngs:
                self._noise.stream = self._stream(
                    "actuation.noise_std", len(self._low), GaussianStream
                )
        self._deadband = Deadband(act.deadband, self._low, self._high) if act.deadband else None

        dim = self._obs_dim
        bias_std = per_dimension(sense.bias_std, dim, "sensing.bias_std")
        noise_std = per_dimension(sense.noise_std, dim, "sensing.noise_std")
        noise = SensorNoise(noise_std) if noise_std.any() else None
        dropout = SensorDropout(sense.dropout_prob) if sense.dropout_prob > 0 else None
        if self._rngs:
            if noise is not None:
                noise.stream = self._stream("sensing.noise_std", dim, GaussianStream)
            if dropout is not None:
                dropout.stream = self._stream("sensing.dropout_prob", dim, UniformStream)
        self._sensors = Sensors(SensorBias(bias_std) if bias_std.any() else None, noise, dropout)

        args = (self._substep_s, self._frame_skip)
        self._obs_latency = ObservationLatency(timing.obs_latency_s, *args)
        self._action_latency = ActionLatency(timing.action_latency_s, *args)
        self._segments = step_segments(self._action_latency, self._obs_latency)
        self._read = self._sensors.read if self._sensors.active else None
        self._get_obs = self._base._get_obs
        self._commands: deque[np.ndarray] = deque(maxlen=self._action_latency.control_steps + 2)
        if (
            self._noise
            or self._deadband
            or self._action_latency.substeps
            or (self._obs_latency.offset)
        ):
            self._install_physics_hook()
        else:
            self._uninstall_physics_hook()

    def _start_observing(self, obs: np.ndarray) -> np.ndarray:
        """First reading of the episode; fills the latency buffer with it (never zeros)."""
        sensors, latency = self._sensors, self._obs_latency
        if not sensors.active and not latency.substeps:
            self._observe = None
            return obs
        first = sensors.read(obs) if sensors.active else obs
        if not latency.substeps:
            self._observe = sensors.read
            return first
        # Distinct copies, so that every array handed to the policy is handed out once.
        depth = latency.control_steps + 1
        self._readings = deque((first.copy() for _ in range(depth)), maxlen=depth)
        self._observe = self._delayed
        return first

    def _delayed(self, obs: np.ndarray) -> np.ndarray:
        if self._obs_latency.offset:
            reading = self._captured
        else:
            reading = obs if self._read is None else self._read(obs)
        self._readings.append(reading)
        return self._readings[0]

    def _install_physics_hook(self) -> None:
        self._base._step_mujoco_simulation = self._physics_step  # type: ignore[method-assign]

    def _uninstall_physics_hook(self) -> None:
        vars(self._base).pop("_step_mujoco_simulation", None)

    def _physics_step(self, ctrl: np.ndarray, n_frames: int) -> None:
        """Replaces ``MujocoEnv._step_mujoco_simulation``: actuation and latency per substep."""
        if n_frames != self._frame_skip:
            raise ValueError(f"expected {self._frame_skip} substeps per step, got {n_frames}")
        if self._noise is None:
            command = np.array(ctrl, dtype=np.float64)
        else:
            command = self._noise(ctrl)  # a new float64 array
            if not self._mujoco_clamps_ctrl:  # MuJoCo clamps limited controls itself
                command = np.minimum(np.maximum(command, self._low), self._high)
        if self._deadband is not None:
            command = self._deadband(command)
        commands = self._commands
        if commands:
            commands.append(command)
        else:  # the actuators hold the first command until it has travelled the latency
            commands.extend([command] * commands.maxlen)
        model, data = self._model, self._data
        for n_substeps, index, capture in self._segments:
            if index is not None:
                data.ctrl[:] = commands[index]
            mujoco.mj_step(model, data, nstep=n_substeps)
            if capture:
                if self._obs_needs_rne:
                    mujoco.mj_rnePostConstraint(model, data)
                obs = self._get_obs()
                self._captured = obs if self._read is None else self._read(obs)
        mujoco.mj_rnePostConstraint(model, data)


def _reads_constraint_forces(base: MujocoEnv) -> bool:
    """Whether ``base._get_obs`` reads what ``mj_rnePostConstraint`` computes (e.g. Ant's
    contact forces): probed once by poisoning those fields and looking for NaN."""
    data = base.data
    fields = ("cacc", "cfrc_int", "cfrc_ext")
    saved = [getattr(data, name).copy() for name in fields]
    try:
        for name in fields:
            getattr(data, name)[:] = np.nan
        with np.errstate(invalid="ignore"):
            return not np.isfinite(base._get_obs()).all()
    finally:
        for name, value in zip(fields, saved, strict=True):
            getattr(data, name)[:] = value


def find_skewed_env(env: gym.Env) -> SkewedEnv | None:
    """The :class:`SkewedEnv` in ``env``'s wrapper chain, if there is one."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, SkewedEnv):
            return env
        env = env.env
    return None
