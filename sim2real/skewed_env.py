"""The one wrapper: a source's point -> the pipeline of DESIGN.md section 3.

The skews act where they would on a robot::

    command -> action latency (+ jitter) -> actuation (noise, deadband) -> physics (dynamics)
    physics state -> sensing (bias, noise, dropout) -> observation latency -> policy

At every reset the source gives the episode's point (:mod:`sim2real.point`); one
function, :func:`sim2real.skews.pipeline.build_pipeline`, turns it into components
read from the skew registry. Dynamics skews are in-place model edits relative to
the stored nominal model. Actuation and timing act inside the physics step: the
wrapper takes over the env's ``_step_mujoco_simulation`` so that a latency is
realized on the substep grid (``model.opt.timestep``), not rounded to control
steps. Reward and termination are computed by the task from the true physical
state, as upstream.

The step is specialized once per pipeline (no branch it does not need runs); a
mid-step reading of an upstream env goes through
:func:`~sim2real.skews.readers.fast_reader`, the same bits as its ``_get_obs``.
A randomized reset refreshes the components in place and picks the step's closures
kept for its latencies, so that it rebuilds nothing that holds a component
(docs/pipeline_performance.md).
"""

from __future__ import annotations

import functools
import itertools
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from sim2real.point import LATENCIES, FixedSource, Point, Source, as_source, realized
from sim2real.skews import ActuationNoise, ModelSkews
from sim2real.skews.pipeline import STREAMS, Context, Pipeline, build_pipeline, reset_generators
from sim2real.skews.readers import fast_reader, step_only_returns_observation
from sim2real.skews.registry import Element
from sim2real.skews.sensing import Sensors
from sim2real.skews.timing import Arrivals, Latency
from sim2real.spec import SkewSpec, check_dimensions

__all__ = [
    "STREAMS",
    "EnvArgumentError",
    "SkewedEnv",
    "check_dimensions",
    "find_skewed_env",
    "mujoco_base",
    "reset_generators",
]

SourceLike = Source | SkewSpec | Mapping[str, Any] | str | Path | None
ObsFn = Callable[[MujocoEnv], np.ndarray]  # the env's observation, from its physics state

# The MujocoEnvs that carry a SkewedEnv: wrapping one twice would compound its skews.
_CARRIERS: weakref.WeakSet[MujocoEnv] = weakref.WeakSet()


class EnvArgumentError(TypeError, ValueError):
    """An env argument that is not (and does not build) a MuJoCo Gymnasium env."""


def mujoco_base(env: Any, what: str = "env") -> MujocoEnv:
    """The ``MujocoEnv`` under ``env``'s wrappers, or a clear error."""
    base = getattr(env, "unwrapped", None)
    if not isinstance(base, MujocoEnv):
        kind = type(base if base is not None else env).__name__
        raise EnvArgumentError(f"{what} must be built on gymnasium's MujocoEnv, got {kind}")
    return base


class SkewedEnv(gym.Wrapper):
    """Gives every episode of a MuJoCo Gymnasium env the skews of its source's point.

    Args:
        env: a Gymnasium env whose ``unwrapped`` is a ``MujocoEnv``.
        source: where each episode's point comes from: a source
            (:class:`~sim2real.point.FixedSource`,
            :class:`~sim2real.randomization.RandomizationSource`, ...), or a fixed
            spec: a :class:`SkewSpec`, a point, a mapping in the schema, a YAML path,
            or ``None`` (nominal).
        obs_fn: ``obs_fn(env.unwrapped)`` reads the observation from the current
            physics state (e.g. ``MyEnv.my_observation``); needed only for an
            observation latency that is not a whole number of control steps (a
            mid-step reading). Defaults to the env's ``_get_obs`` when it has one.

    With every skew nominal the wrapper is transparent: the env behaves exactly
    as upstream, step for step. ``info["skews"]`` at reset is the episode's point.

    Attributes:
        source: the bound source.
        point: this episode's point (as in ``info["skews"]``).
        pipeline: this episode's components.
    """

    def __init__(
        self, env: gym.Env, source: SourceLike = None, *, obs_fn: ObsFn | None = None
    ) -> None:
        base = mujoco_base(env)
        if base in _CARRIERS or find_skewed_env(env) is not None:
            raise ValueError(
                "this env already carries a SkewedEnv: wrapping it again would compound the "
                "skews; wrap the plain env once (make_pair/make build a fresh one), or give the "
                "existing wrapper a new source with set_source()"
            )
        super().__init__(env)
        self._base = base
        self._model, self._data = base.model, base.data
        self._frame_skip = int(base.frame_skip)
        self._substep_s = float(self._model.opt.timestep)
        self._low = np.asarray(env.action_space.low, dtype=np.float64)
        self._high = np.asarray(env.action_space.high, dtype=np.float64)
        self._obs_dim = int(np.prod(env.observation_space.shape))
        self._own_obs = obs_fn is None  # the env's _get_obs, which a fast reader may replace
        self._fast: Callable[[], np.ndarray] | bool | None = False  # found on first need
        self._obs_fn: Callable[[], np.ndarray] | None = (
            functools.partial(obs_fn, base)
            if obs_fn is not None
            else getattr(base, "_get_obs", None)
        )
        limited = self._model.actuator_ctrllimited.astype(bool)
        self._mujoco_clamps_ctrl = bool(
            limited.all()
            and np.array_equal(self._model.actuator_ctrlrange[:, 0], self._low)
            and np.array_equal(self._model.actuator_ctrlrange[:, 1], self._high)
        )
        model = self._model
        self.context = Context(
            low=self._low,
            high=self._high,
            obs_dim=self._obs_dim,
            substep_s=self._substep_s,
            frame_skip=self._frame_skip,
            elements={
                Element.ENV: 1,
                Element.GEOM: model.ngeom,
                Element.BODY: model.nbody,
                Element.DOF: model.nv,
                Element.ACTUATOR: model.nu,
                Element.ACTION: len(self._low),
                Element.OBSERVATION: self._obs_dim,
            },
            time_limit_s=_time_limit_s(env, self._frame_skip * self._substep_s),
            mid_step_obs=self._obs_fn is not None,
        )
        self.source: Source = as_source(source).bind(self.context)
        self._model_skews = ModelSkews(model)
        self._obs_needs_rne: bool | None = None  # probed on first need
        self._bias_rows: Callable[[], np.ndarray] | None = None  # set by every reseed
        self._drawn: Point | None = None  # the point the pipeline was built from
        self._dynamics_of: Point | None = None  # the point the model carries
        self.point = Point()
        self._hooked = False  # whether the physics hook is installed (from below until close)
        # The closures of the current components: observers by observation latency, physics
        # steps by action latency and mid-step offset (substeps), and the capture.
        self._kept_for: tuple | None = None
        self._observers: dict[int, tuple[Any, deque | None]] = {}
        self._steps: dict[tuple[int, int], tuple[deque, Callable]] = {}
        self._capture: Callable[[], None] | None = None
        self._captured: list[np.ndarray | None] = [None]
        self._physics_step: Callable[[np.ndarray, int], None] | None = None
        # While a step of ours runs, an upstream step that only returns its observation gets
        # the mid-step reading that replaces it, not a new one (_install_physics_hook).
        self._skips_step_obs = (
            self._own_obs
            and "_get_obs" not in vars(base)  # (an observation set on the instance is left alone)
            and step_only_returns_observation(base)
        )
        self._stepping: list[Any] = [False, None]  # within our step; the reading before it
        self._true_obs: np.ndarray | None = None  # the env's own observation after the last call
        self._served: tuple[list, Callable[[], np.ndarray]] | None = None
        self.pipeline = build_pipeline(self.point, self.context)
        self._set_pipeline(self.pipeline)
        _CARRIERS.add(base)
        self._install_physics_hook()  # always, nominal included: "real equals sim" runs it

    # ------------------------------------------------------------------ public
    def set_source(self, source: SourceLike) -> None:
        """Replace the source; it takes effect at the next reset."""
        self.source = as_source(source).bind(self.context)
        self._drawn = None

    def set_skews(self, skews: SkewSpec | Mapping[str, Any] | str | Path | None) -> None:
        """Replace the source by a fixed spec; it takes effect at the next reset."""
        self.set_source(FixedSource(skews))

    @property
    def skews(self) -> SkewSpec:
        """This episode's point as a spec (a fixed source: its spec)."""
        if isinstance(self.source, FixedSource):
            return self.source.spec
        return SkewSpec.load({k: v for k, v in self.point.items() if not isinstance(v, Mapping)})

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        streams = self.context.streams
        if seed is not None or not streams.generators:
            streams.reseed(seed)
            self._drawn = None  # the components hold the old streams
            # The episodes' sensor offsets: one standard-normal row per episode (drawn on use).
            self._bias_rows = streams.rows("sensing.bias_std", self._obs_dim)
        point = self.source.draw(streams.generators["source"])
        if point is not self._drawn:
            self._use(point)
        else:  # the same point: only the per-episode state starts afresh
            self._commands.clear()
            if self._dropout:
                self._sensors.previous = None
            if self._arrivals is not None:
                self._arrivals.clear()
        if self._dynamics_of is not point:
            episode = getattr(point, "episode", None)  # one of a source's block of draws
            if episode is None:
                self._model_skews.apply(self.pipeline.dynamics)
            else:
                self._model_skews.apply_drawn(self.pipeline.dynamics, episode)
            self._dynamics_of = point
        obs, info = self.env.reset(seed=seed, options=options)
        self._true_obs = obs
        bias = self._sensors.bias
        if bias is not None:  # this episode's sensor offsets (Sensors.draw_bias, inlined)
            bias.draw(self._bias_rows())  # type: ignore[misc]
        obs = self._start_observing(obs)
        info["skews"] = Point(self.point)
        return obs, info

    def step(self, action):
        stepping = self._stepping
        stepping[0], stepping[1] = True, self._captured[0]
        try:
            obs, reward, terminated, truncated, info = self.env.step(action)
        finally:
            stepping[0] = stepping[1] = None
        # A served mid-step reading replaced the env's own observation (_install_physics_hook).
        self._true_obs = None if self._serves_reading else obs
        if self._observe is not None:
            obs = self._observe(obs)
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self._uninstall_physics_hook()
        self._model_skews.restore()
        self._dynamics_of = None
        _CARRIERS.discard(self._base)
        super().close()

    def true_observation(self) -> np.ndarray:
        """The observation the sim variant would return now: the env's own, before any sensing
        skew or latency (what an asymmetric critic sees). Reuses the one the last reset or step
        computed; computes it when a mid-step reading took its place."""
        if self._true_obs is not None:
            return self._true_obs
        if self._obs_fn is None:
            raise AttributeError(
                f"{type(self._base).__name__} has no _get_obs: pass obs_fn= to read its true "
                "observation"
            )
        fast = self._fast_reader()  # the same bits as _get_obs, into a buffer it reuses
        if fast is not None:
            return fast().copy()
        own = self._obs_fn if not self._own_obs else type(self._base)._get_obs.__get__(self._base)
        return np.asarray(own())

    def applied_values(self) -> dict[str, Any]:
        """This episode's point (latencies as realized, in seconds)."""
        return dict(self.point)

    def describe(self) -> str:
        """The skew stack with units and effective values: one header, then the source."""
        header = (
            f"{type(self).__name__} on {type(self._base).__name__}: control step "
            f"{self._frame_skip * self._substep_s:g} s = {self._frame_skip} substeps of "
            f"{self._substep_s:g} s; latencies realized on that substep grid"
        )
        return "\n".join([header, *self.source.describe(self._shown)])

    # ------------------------------------------------------------------ internals
    def _shown(self, name: str, value: Any) -> str:
        if name in LATENCIES and not isinstance(value, Mapping):
            return Latency(float(value), self._substep_s, self._frame_skip).describe()
        return f"{value}"

    def _use(self, point: Point) -> None:
        """Build the pipeline of ``point`` (the one place it is built)."""
        previous = self.pipeline
        pipeline = self.pipeline = build_pipeline(point, self.context, previous)
        self.point = realized(point, self.context)
        self._drawn = point
        self._dynamics_of = None
        if pipeline is previous:  # refreshed in place: the same components, new latencies
            self._set_timing(pipeline)
        else:
            self._set_pipeline(pipeline)

    def _set_pipeline(self, pipeline: Pipeline) -> None:
        sensors: Sensors = pipeline.sensors
        self._sensors = sensors
        self._read = sensors.read if sensors.active else None
        self._dropout = sensors.dropout is not None
        # The closures hold the components, which a randomized reset refreshes in place
        # (build_pipeline): while the components stay the same, each closure is kept per
        # latency it depends on, with its buffer, so that a reset rebuilds none of them.
        components = (pipeline.commands, sensors)
        if components != self._kept_for:
            self._kept_for = components
            self._observers.clear()
            self._steps.clear()
            self._capture = None
            self._captured = [None]  # the last mid-step reading
        self._set_timing(pipeline)

    def _set_timing(self, pipeline: Pipeline) -> None:
        """The closures of ``pipeline``'s latencies (kept per latency while its components
        stay the same), their buffers emptied for a new episode."""
        self._obs_latency, self._action_latency = pipeline.obs_latency, pipeline.action_latency
        offset = self._obs_latency.offset
        self._capture_at = self._frame_skip - offset if offset else None
        self._captured[0] = None
        if self._capture_at is not None and self._obs_needs_rne is None:
            self._obs_needs_rne = _reads_constraint_forces(self._data, self._obs_fn)
            self._capture = None  # built before the probe: without the constraint forces
        observer = self._observers.get(self._obs_latency.substeps)
        if observer is None:
            observer = self._observers[self._obs_latency.substeps] = self._observer()
        self._observe, self._readings = observer
        step_key = (self._action_latency.substeps, offset)
        step = self._steps.get(step_key) if pipeline.jitter is None else None
        if step is None:
            self._commands = deque(maxlen=self._action_latency.control_steps + 2)
            self._arrivals = None if pipeline.jitter is None else Arrivals(self._frame_skip)
            step = self._commands, self._make_physics_step(pipeline)
            if pipeline.jitter is None:  # a jitter's stream is its own: nothing to keep
                self._steps[step_key] = step
        else:
            self._arrivals = None
        self._commands, physics_step = step
        self._commands.clear()
        if physics_step is not self._physics_step:  # (a new step: its capture may differ too)
            self._physics_step = physics_step
            if self._hooked:
                self._install_physics_hook()

    def _observer(self) -> tuple[Callable[[np.ndarray], np.ndarray] | None, deque | None]:
        """What turns the env's observation after a step into the policy's, and its latency
        buffer (refilled at every reset), for this observation latency."""
        return self._observe_function(), self._readings

    def _observe_function(self) -> Callable[[np.ndarray], np.ndarray] | None:
        latency, read = self._obs_latency, self._read
        self._readings: deque[np.ndarray] | None = None
        if not latency.substeps:
            return read
        box = self._captured
        if self._capture_at is not None and not latency.control_steps:
            return lambda obs: box[0]  # the reading taken within this very step
        readings = self._readings = deque(maxlen=latency.control_steps + 1)
        append = readings.append
        if self._capture_at is not None:  # the reading was taken within the step

            def delayed(obs: np.ndarray) -> np.ndarray:
                append(box[0])
                return readings[0]

        elif read is not None:
            sensors = self._sensors
            if sensors.noise is not None and sensors.bias is sensors.dropout is None:
                noise = sensors.noise.stream.next  # type: ignore[union-attr]

                def delayed_noisy(obs: np.ndarray) -> np.ndarray:  # Sensors.read, inlined
                    append(obs + noise())
                    return readings[0]

                return delayed_noisy

            def delayed(obs: np.ndarray) -> np.ndarray:
                append(read(obs))
                return readings[0]

        else:

            def delayed(obs: np.ndarray) -> np.ndarray:
                append(obs)
                return readings[0]

        return delayed

    def _start_observing(self, obs: np.ndarray) -> np.ndarray:
        """First reading of the episode; fills the latency buffer with it (never zeros)."""
        read, readings = self._read, self._readings
        first = obs if read is None else read(obs)
        if readings is not None:
            # The oldest slot leaves at the first step; the others are handed to the policy,
            # as distinct copies, so that every array handed out is handed out once.
            readings.clear()
            readings.append(first)
            # (map calls the C method with no Python frame per copy)
            copies = itertools.repeat(first, readings.maxlen - 1)  # type: ignore[operator]
            readings.extend(map(np.ndarray.copy, copies))
        return first

    def _install_physics_hook(self) -> None:
        """Our physics step in place of the env's; with a mid-step reading, which replaces the
        observation an upstream step computes at its end, that step is handed the reading
        instead of computing one (:func:`~sim2real.skews.readers.step_only_returns_observation`:
        the env's reward, termination and info never read it)."""
        attributes = self._base.__dict__
        attributes["_step_mujoco_simulation"] = self._physics_step
        self._serves_reading = self._skips_step_obs and self._capture_at is not None
        if self._serves_reading:
            served = self._served  # (the one kept for this box, without a call, at every reset)
            kept = served is not None and served[0] is self._captured
            attributes["_get_obs"] = served[1] if kept else self._served_obs()  # type: ignore[index]
        elif self._served is not None:
            attributes.pop("_get_obs", None)
        self._hooked = True

    def _uninstall_physics_hook(self) -> None:
        attributes = vars(self._base)
        attributes.pop("_step_mujoco_simulation", None)
        if self._served is not None:
            attributes.pop("_get_obs", None)
        self._hooked = False

    def _served_obs(self) -> Callable[[], np.ndarray]:
        """The env's ``_get_obs`` while the pipeline takes a mid-step reading: within one of our
        steps, its first call after that step's reading was taken returns the reading (what
        the policy receives in place of the observation it would compute); any other call
        (at reset, after the step, during the physics step) computes the observation."""
        box = self._captured
        if self._served is None or self._served[0] is not box:
            own = type(self._base)._get_obs.__get__(self._base)  # type: ignore[attr-defined]
            stepping = self._stepping

            def get_obs() -> np.ndarray:
                if stepping[0] and box[0] is not stepping[1]:  # taken within this step
                    stepping[0] = False
                    return box[0]  # type: ignore[return-value]
                return own()

            self._served = (box, get_obs)
        return self._served[1]

    def _capture_function(self) -> Callable[[], None]:
        """Takes the reading that the observation latency will deliver (mid-step)."""
        obs_fn, read, box = self._obs_fn, self._read, self._captured
        model, data, rne = self._model, self._data, mujoco.mj_rnePostConstraint
        if obs_fn is None:
            return lambda: None
        fast = self._fast_reader()  # the same bits as _get_obs, into a buffer it reuses
        source = obs_fn if fast is None else fast
        finish = read if read is not None or fast is None else np.ndarray.copy
        if self._obs_needs_rne:
            if finish is None:

                def capture() -> None:
                    rne(model, data)
                    box[0] = source()

                return capture

            def capture_read() -> None:
                rne(model, data)
                box[0] = finish(source())

            return capture_read
        if finish is None:

            def capture_plain() -> None:
                box[0] = source()

            return capture_plain
        sensors = self._sensors
        if finish is read and sensors.noise is not None and sensors.bias is sensors.dropout is None:
            noise = sensors.noise.stream.next  # type: ignore[union-attr]

            def capture_noisy() -> None:  # Sensors.read of noise alone, inlined
                box[0] = source() + noise()

            return capture_noisy

        def capture_finished() -> None:
            box[0] = finish(source())

        return capture_finished

    def _fast_reader(self) -> Callable[[], np.ndarray] | None:
        """The env's own observation through :func:`~sim2real.skews.readers.fast_reader`
        (found once); ``None`` with an ``obs_fn`` or an env it does not know."""
        if self._fast is False:
            self._fast = fast_reader(self._base) if self._own_obs else None
        return self._fast  # type: ignore[return-value]

    def _make_physics_step(self, pipeline: Pipeline) -> Callable[[np.ndarray, int], None]:
        """The replacement of ``MujocoEnv._step_mujoco_simulation`` for ``pipeline``: the
        command through actuation and latency, substep by substep; specialized once per
        pipeline so that a step runs no branch it does not need."""
        model, data, frame_skip = self._model, self._data, self._frame_skip
        step, rne = mujoco.mj_step, mujoco.mj_rnePostConstraint
        actuators = data.ctrl  # a view held once: MjData.ctrl makes a new view at every access

        if pipeline.direct:  # exactly the upstream step

            def direct(ctrl: np.ndarray, n_frames: int) -> None:
                if n_frames != frame_skip:
                    _check_frames(n_frames, frame_skip)
                actuators[...] = ctrl
                step(model, data, nstep=n_frames)
                rne(model, data)

            return direct
        command_of = self._command_function(pipeline)
        if self._capture is None:
            self._capture = self._capture_function()
        capture, commands, segments = self._capture, self._commands, pipeline.segments
        arrivals = self._arrivals
        if arrivals is not None:  # control jitter: every command has its own delay
            delay, jitter = self._action_latency.substeps, pipeline.jitter
            capture_at = self._capture_at

            def jittered(ctrl: np.ndarray, n_frames: int) -> None:
                if n_frames != frame_skip:
                    _check_frames(n_frames, frame_skip)
                arrivals.issue(command_of(ctrl), delay + jitter.next())  # type: ignore[union-attr]
                for n_substeps, acting, captures in arrivals.segments(capture_at):
                    if acting is not None:
                        actuators[...] = acting
                    step(model, data, nstep=n_substeps)
                    if captures:
                        capture()
                rne(model, data)

            return jittered
        if segments == ((frame_skip, -1, False),):  # commands act at once, whole-step readings

            def immediate(ctrl: np.ndarray, n_frames: int) -> None:
                if n_frames != frame_skip:
                    _check_frames(n_frames, frame_skip)
                actuators[...] = command_of(ctrl)
                step(model, data, nstep=n_frames)
                rne(model, data)

            return immediate
        if len(segments) == 2 and segments[0][1:] == (-1, True) and segments[1][1] is None:
            # Commands act at once, a reading is taken within the step (the command buffer,
            # which only a delayed command needs, is left out).
            before, after = segments[0][0], segments[1][0]
            noisy = self._noise_only(pipeline)
            if noisy is not None:

                def captured_noisy(ctrl: np.ndarray, n_frames: int) -> None:
                    if n_frames != frame_skip:
                        _check_frames(n_frames, frame_skip)
                    actuators[...] = noisy() + ctrl  # _command_function's noise alone, inlined
                    step(model, data, before)
                    capture()
                    step(model, data, after)
                    rne(model, data)

                return captured_noisy

            def captured(ctrl: np.ndarray, n_frames: int) -> None:
                if n_frames != frame_skip:
                    _check_frames(n_frames, frame_skip)
                actuators[...] = command_of(ctrl)
                step(model, data, before)
                capture()
                step(model, data, after)
                rne(model, data)

            return captured
        short = self._short_delay(pipeline, command_of, capture)
        if short is not None:
            return short
        # The segments as (substeps, command index or None, capture or None), once.
        plan = tuple((n, index, capture if captures else None) for n, index, captures in segments)
        fill = commands.maxlen - 1  # type: ignore[operator]

        noise = self._noise_only(pipeline)

        def delayed(ctrl: np.ndarray, n_frames: int) -> None:
            if n_frames != frame_skip:
                _check_frames(n_frames, frame_skip)
            command = command_of(ctrl) if noise is None else noise() + ctrl
            if not commands:  # the actuators hold the first command until it has travelled
                commands.extend([command] * fill)
            commands.append(command)
            for n_substeps, index, take in plan:
                if index is not None:
                    actuators[...] = commands[index]
                step(model, data, n_substeps)
                if take is not None:
                    take()
            rne(model, data)

        return delayed

    def _short_delay(
        self,
        pipeline: Pipeline,
        command_of: Callable[[np.ndarray], np.ndarray],
        capture: Callable[[], None],
    ) -> Callable[[np.ndarray, int], None] | None:
        """The step of a command delayed by less than a control step, with no mid-step reading
        (Reacher's ``default``) or one taken after the new command has arrived (HalfCheetah's):
        the previous command for ``a`` substeps, the new one until the reading, the rest of
        the step; unrolled (the plan loop of the general step costs about as much as a
        command write). ``None`` for any other plan."""
        segments, frame_skip = pipeline.segments, self._frame_skip
        if len(segments) not in (2, 3) or self._action_latency.control_steps:
            return None
        model, data, step, rne = (
            self._model,
            self._data,
            mujoco.mj_step,
            mujoco.mj_rnePostConstraint,
        )
        actuators, held = self._data.ctrl, self._commands  # held: a deque, cleared at reset
        noise = self._noise_only(pipeline)
        if len(segments) == 2:
            (a, first, take_a), (b, second, take_b) = segments
            if (first, second, take_a, take_b) != (-2, -1, False, False):
                return None

            def short_delay_plain(ctrl: np.ndarray, n_frames: int) -> None:
                if n_frames != frame_skip:
                    _check_frames(n_frames, frame_skip)
                command = command_of(ctrl) if noise is None else noise() + ctrl
                actuators[...] = held[-1] if held else command  # the first command is held
                held.append(command)
                step(model, data, a)
                actuators[...] = command
                step(model, data, b)
                rne(model, data)

            return short_delay_plain
        (a, first, take_a), (b, second, take_b), (c, third, take_c) = segments
        if (first, second, third, take_a, take_b, take_c) != (-2, -1, None, False, True, False):
            return None

        def short_delay(ctrl: np.ndarray, n_frames: int) -> None:
            if n_frames != frame_skip:
                _check_frames(n_frames, frame_skip)
            command = command_of(ctrl) if noise is None else noise() + ctrl
            # Until the first command has travelled, the actuators hold it.
            actuators[...] = held[-1] if held else command
            held.append(command)
            step(model, data, a)
            actuators[...] = command
            step(model, data, b)
            capture()
            step(model, data, c)
            rne(model, data)

        return short_delay

    def _noise_only(self, pipeline: Pipeline) -> Callable[[], np.ndarray] | None:
        """The actuation noise's next row when the command is ``noise + ctrl`` and nothing
        else (what :meth:`_command_function` returns then), for the step to inline."""
        transforms = pipeline.commands
        clip = pipeline.noisy and not self._mujoco_clamps_ctrl
        if len(transforms) == 1 and not clip and isinstance(transforms[0], ActuationNoise):
            return transforms[0].stream.next  # type: ignore[union-attr]
        return None

    def _command_function(self, pipeline: Pipeline) -> Callable[[np.ndarray], np.ndarray]:
        """The command as the actuators receive it: noise (clipped), then deadband."""
        transforms = pipeline.commands
        low, high = self._low, self._high
        clip = pipeline.noisy and not self._mujoco_clamps_ctrl  # MuJoCo clamps limited ctrl
        if not transforms:
            return lambda ctrl: np.array(ctrl, dtype=np.float64)
        if len(transforms) == 1 and not clip:
            only = transforms[0]
            if isinstance(only, ActuationNoise):
                noise = only.stream.next  # type: ignore[union-attr]
                return lambda ctrl: noise() + ctrl
            return only

        def command_of(ctrl: np.ndarray) -> np.ndarray:
            command = ctrl
            for i, transform in enumerate(transforms):
                command = transform(command)
                if i == 0 and clip:
                    command = np.minimum(np.maximum(command, low), high)
            return command

        return command_of


def _check_frames(n_frames: int, frame_skip: int) -> None:
    if n_frames != frame_skip:
        raise ValueError(f"expected {frame_skip} substeps per step, got {n_frames}")


def _time_limit_s(env: gym.Env, control_dt: float) -> float | None:
    """The episode's time limit in seconds, from a TimeLimit wrapper or the env's spec."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env._max_episode_steps * control_dt
        env = env.env
    spec = getattr(env, "spec", None)
    steps = getattr(spec, "max_episode_steps", None)
    if steps is None and spec is not None and spec.id in gym.registry:
        steps = gym.registry[spec.id].max_episode_steps  # gym.make strips it from the env's own
    return None if steps is None else steps * control_dt


def _reads_constraint_forces(data: mujoco.MjData, obs_fn: Callable[[], np.ndarray] | None) -> bool:
    """Whether ``obs_fn`` reads what ``mj_rnePostConstraint`` computes (e.g. Ant's contact
    forces): probed once by poisoning those fields and looking for NaN."""
    if obs_fn is None:
        return False
    fields = ("cacc", "cfrc_int", "cfrc_ext")
    saved = [getattr(data, name).copy() for name in fields]
    try:
        for name in fields:
            getattr(data, name)[:] = np.nan
        with np.errstate(invalid="ignore"):
            return not np.isfinite(np.asarray(obs_fn(), dtype=np.float64)).all()
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
