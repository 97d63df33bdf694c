"""The monitor's reference model: the nominal simulator, re-anchored to each observation.

Given the observation at step ``t`` (which implies the physical state, see
:mod:`sim2real.remedies.state`) and the commands, :class:`ReferenceModel`
predicts the observation at ``t + 1`` on the nominal model, on copies of it with
one dynamics field nudged (finite-difference sensitivities), or with the
commands delayed by a whole number of physics substeps (the total latency).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from sim2real.remedies.state import VELOCITY_CLIP, StateFromObs, state_from_obs
from sim2real.skews.dynamics import ModelSkews

# The dynamics fields the monitor tests, with the relative step of their finite differences.
DYNAMICS_FIELDS: tuple[str, ...] = (
    "dynamics.mass_scale",
    "dynamics.friction_scale",
    "dynamics.actuator_strength",
    "dynamics.damping_scale",
)
FD_STEP = 0.05  # relative change of a field for its finite-difference sensitivity
# Friction's response is one-sided: a foot that sticks ignores more friction, one that is
# about to slip feels less. Its sensitivity is the secant towards a slippery floor (-20 %).
FD_STEPS = {"dynamics.friction_scale": -0.2}


def fd_step(name: str) -> float:
    """The relative step of ``name``'s finite-difference (secant) sensitivity."""
    return FD_STEPS.get(name, FD_STEP)


# Tasks whose observation is [qpos[skip:], qvel] (clipped at +-10 where the task clips).
_POSITIONS_VELOCITIES = {"Hopper": 1, "Walker2d": 1, "HalfCheetah": 1, "InvertedPendulum": 0}


@dataclass(frozen=True)
class Resolved:
    """What the monitor needs of a task: its name, a nominal base env, and its state map."""

    task: str
    base: gym.Env
    state: StateFromObs


def resolve_task(task_or_env: str | gym.Env) -> Resolved:
    """A built-in task name, or an env of one (sim or real variant): a fresh nominal copy.

    The reference is always built from the upstream env, never from the env given,
    whose model a real variant has edited in place.
    """
    from sim2real.tasks import get_task, tasks

    if isinstance(task_or_env, str):
        task = get_task(task_or_env)
    else:
        base_id = getattr(getattr(task_or_env.unwrapped, "spec", None), "id", None)
        names = {t.base_id: t for t in tasks().values()}
        if base_id not in names:
            raise ValueError(
                f"SkewMonitor needs a built-in task or an env of one; got an env of {base_id!r}; "
                f"built-in: {', '.join(tasks())}"
            )
        task = names[base_id]
    base = gym.make(task.base_id).unwrapped
    base.reset(seed=0)
    model = base.model
    return Resolved(task.name, base, state_from_obs(task.name, model.nq, model.nv))


class ReferenceModel:
    """Nominal predictions of the next observation, their sensitivities and delayed variants.

    Args:
        resolved: the task (see :func:`resolve_task`).
        fields: the dynamics fields whose sensitivities are computed.
    """

    def __init__(self, resolved: Resolved, fields: Sequence[str] = DYNAMICS_FIELDS) -> None:
        self.task = resolved.task
        self.state = resolved.state
        self._base = resolved.base
        self.model = resolved.base.model
        self.data = mujoco.MjData(self.model)
        # Side predictions run on their own data, so that the nominal prediction's solver
        # warm start always comes from the previous nominal prediction, as the robot's does.
        self._scratch = mujoco.MjData(self.model)
        self.frame_skip = int(resolved.base.frame_skip)
        self.substep_s = float(self.model.opt.timestep)
        self.control_dt = self.frame_skip * self.substep_s
        self.fields = tuple(fields)
        self.obs_dim = int(resolved.base.observation_space.shape[0])
        self.act_dim = int(self.model.nu)
        self._observe = self._observation_fn()
        skip = _POSITIONS_VELOCITIES.get(self.task)
        fits = skip is not None and self.obs_dim == self.model.nq - skip + self.model.nv
        self._skip = skip if fits else None
        self._npos = self.model.nq - skip if fits else 0
        self._velocity_dims = self._find_velocity_dims()
        self._nudged = {f: self._variant({f: 1.0 + fd_step(f)}) for f in self.fields}
        self.fd_steps = np.array([fd_step(f) for f in self.fields])
        self._variants: dict[tuple[str, float], tuple[mujoco.MjModel, mujoco.MjData]] = {}

    # ------------------------------------------------------------------ building
    def _variant(self, values: dict[str, float]) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model = copy.deepcopy(self.model)
        ModelSkews(model).apply({name.split(".", 1)[1]: value for name, value in values.items()})
        return model, mujoco.MjData(model)

    def _observation_fn(self) -> Callable[[mujoco.MjData], np.ndarray]:
        skip = _POSITIONS_VELOCITIES.get(self.task)
        if skip is not None and self.obs_dim == self.model.nq - skip + self.model.nv:
            clip = self.state.clipped_velocity

            def observe(data: mujoco.MjData) -> np.ndarray:
                out = np.concatenate((data.qpos[skip:], data.qvel))
                if clip:  # np.minimum/np.maximum in place: cheaper than np.clip on small arrays
                    vel = out[data.qpos.shape[0] - skip :]
                    np.minimum(vel, VELOCITY_CLIP, out=vel)
                    np.maximum(vel, -VELOCITY_CLIP, out=vel)
                return out

            return observe
        base = self._base

        def generic(data: mujoco.MjData) -> np.ndarray:  # the task's own _get_obs on ``data``
            own = base.data
            base.data = data
            try:
                return np.asarray(base._get_obs(), dtype=np.float64)
            finally:
                base.data = own

        return generic

    def _find_velocity_dims(self) -> np.ndarray:
        """Observation dimensions that carry a clipped velocity (for the exactness margin)."""
        if not self.state.clipped_velocity:
            return np.zeros(0, dtype=int)
        probe = np.zeros(self.obs_dim)
        base_qvel = self.state(probe)[1]
        dims = []
        for dim in range(self.obs_dim):
            probe[dim] = 1.0
            if np.any(self.state(probe)[1] != base_qvel):
                dims.append(dim)
            probe[dim] = 0.0
        return np.asarray(dims, dtype=int)

    # ------------------------------------------------------------------ queries
    @property
    def position_dims(self) -> np.ndarray:
        """Observation dimensions that carry a position (every dimension where the task's
        observation is not ``[qpos[skip:], qvel]``)."""
        count = self._npos if self._skip is not None else self.obs_dim
        return np.arange(count)

    def exact(self, obs: np.ndarray, margin: float = 0.0) -> bool:
        """Whether ``obs`` determines the state: no velocity within ``margin`` of its clip."""
        dims = self._velocity_dims
        if not dims.size:
            return True
        vel = (obs[self._npos :] if self._skip is not None else obs[dims]).tolist()
        bound = VELOCITY_CLIP - margin  # Python's max/min: cheaper than two ufunc reductions
        return max(vel) < bound and min(vel) > -bound

    def predict(
        self,
        obs: np.ndarray,
        command: np.ndarray,
        previous: np.ndarray | None = None,
        delay: int = 0,
        variant: tuple[mujoco.MjModel, mujoco.MjData] | None = None,
        scratch: bool = False,
    ) -> np.ndarray:
        """The next observation from ``obs`` under ``command``.

        Args:
            obs: the observation at step ``t``.
            command: the command the policy sent at ``t``.
            previous: commands before it, newest last (needed when ``delay > 0``).
            delay: total latency in physics substeps (observation + action): the
                command of step ``t - k`` acts on the substeps it reaches.
            variant: a ``(model, data)`` pair to predict on; default the nominal model.
            scratch: predict on the nominal model's side data (leaves the main one alone).
        """
        if variant is not None:
            model, data = variant
        else:
            model, data = self.model, self._scratch if scratch else self.data
        self.anchor(data, obs)
        self.advance(model, data, command, previous, delay)
        return self._observe(data)

    def anchor(self, data: mujoco.MjData, obs: np.ndarray) -> None:
        """Set ``data`` to the state ``obs`` implies."""
        skip = self._skip
        if skip is not None:  # [qpos[skip:], qvel]: write the state straight from obs
            data.qpos[:skip] = 0.0
            data.qpos[skip:] = obs[: self._npos]
            data.qvel[:] = obs[self._npos :]
        else:
            qpos, qvel = self.state(obs)
            data.qpos[:] = qpos
            data.qvel[:] = qvel

    def advance(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        command: np.ndarray,
        previous: np.ndarray | Sequence[np.ndarray] | None = None,
        delay: int = 0,
    ) -> None:
        """One control step of ``data`` from its current state under ``command`` (delayed by
        ``delay`` substeps, ``previous`` the commands before it, newest last)."""
        if delay == 0:
            data.ctrl[:] = command
            mujoco.mj_step(model, data, nstep=self.frame_skip)
        else:
            for n_substeps, ctrl in self._segments(command, previous, delay):
                data.ctrl[:] = ctrl
                mujoco.mj_step(model, data, nstep=n_substeps)

    def observe(self, data: mujoco.MjData) -> np.ndarray:
        """The observation of ``data``'s state (the task's own, clipped where it clips)."""
        return self._observe(data)

    def _segments(
        self, command: np.ndarray, previous: np.ndarray | None, delay: int
    ) -> list[tuple[int, np.ndarray]]:
        lag, offset = divmod(delay, self.frame_skip)
        history = [command] if previous is None or len(previous) == 0 else [*previous, command]

        def back(k: int) -> np.ndarray:  # the command of k steps ago (the first one held)
            return history[max(len(history) - 1 - k, 0)]

        segments = []
        if offset:
            segments.append((offset, back(lag + 1)))
        segments.append((self.frame_skip - offset, back(lag)))
        return segments

    def sensitivities(
        self, obs: np.ndarray, command: np.ndarray, nominal: np.ndarray
    ) -> np.ndarray:
        """``d next_obs / d field`` per field, shape ``(fields, obs_dim)``, by forward
        differences of :func:`fd_step` around nominal (``nominal``: the nominal prediction)."""
        out = np.empty((len(self.fields), self.obs_dim))
        for i, name in enumerate(self.fields):
            model, data = self._nudged[name]
            data.qacc_warmstart[:] = self.data.qacc_warmstart
            out[i] = (self.predict(obs, command, variant=(model, data)) - nominal) / fd_step(name)
        return out

    def nudged(self, name: str) -> mujoco.MjModel:
        """The nominal model with ``name`` scaled by ``1 + fd_step(name)`` (finite differences)."""
        return self._nudged[name][0]

    def variant(self, name: str, value: float) -> tuple[mujoco.MjModel, mujoco.MjData]:
        """A private model with ``name`` set to ``value`` (cached for reuse)."""
        key = (name, round(float(value), 6))
        if key not in self._variants:
            if len(self._variants) > 32:
                self._variants.clear()
            self._variants[key] = self._variant({name: key[1]})
        return self._variants[key]
