"""From a point to the section-3 pipeline: one function, reading the skew registry.

:func:`build_pipeline` turns a point (the exact skew values of one episode) into
the components that act on commands, readings and timing, calling
``component.build(value, context)`` for every registered skew of those stages.
Dynamics skews are model edits (:class:`~sim2real.skews.dynamics.ModelSkews`);
the pipeline carries their values. The :class:`Context` is what a component may
know of its env: action bounds, observation size, substep grid, element counts,
and the env's named random streams.

Random streams (DESIGN.md section 3): every reset with a seed spawns one
generator per stream name from ``SeedSequence(seed)`` (:func:`reset_generators`).
The names of today's streams keep their historical spawn index
(:data:`STREAMS`), so a fixed spec gives the same episode bit for bit as before;
any other name is keyed by a hash of the name, so adding a skew never changes
another's draws. Block streams (256 rows per generator call) live until the next
seed; a stream whose parameter changes (a new episode's noise level) restarts in
place with the rows a new stream would give, so that what holds it stays valid.
A source draws its point from the ``"source"`` generator; a field drawn afresh at
every step draws from :func:`field_generator` of that generator.
"""

from __future__ import annotations

import operator
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from sim2real.skews.actuation import ActuationNoise, Deadband
from sim2real.skews.registry import SKEWS, Element, Stage
from sim2real.skews.sensing import SensorBias, SensorDropout, SensorNoise, Sensors
from sim2real.skews.streams import (
    _FIRST,
    BlockStream,
    Normals,
    below_draw,
    gaussian,
    gaussian_draw,
)
from sim2real.skews.timing import (
    ActionLatency,
    ControlJitter,
    ObservationLatency,
    Segment,
    _segments,
    draw_jitter,
    step_segments,
)

# Spawn index of each stream from the reset's SeedSequence, fixed forever (see module doc).
STREAMS: tuple[str, ...] = (
    "actuation.noise_std",
    "sensing.noise_std",
    "sensing.bias_std",
    "sensing.dropout_prob",
    "source",
)


def stream_key(name: str) -> int:
    """The spawn key of stream ``name``: its index in :data:`STREAMS`, else a hash above 2^32."""
    if name in STREAMS:
        return STREAMS.index(name)
    return 2**32 + zlib.crc32(name.encode())


def _child(root: np.random.SeedSequence, name: str) -> np.random.Generator:
    seq = np.random.SeedSequence(
        root.entropy, spawn_key=(*root.spawn_key, stream_key(name)), pool_size=root.pool_size
    )
    return np.random.Generator(np.random.PCG64(seq))


def reset_generators(
    seed: int | None, names: tuple[str, ...] | None = None
) -> dict[str, np.random.Generator]:
    """The named generators of one reset with ``seed`` (``None``: fresh entropy).

    ``names`` defaults to :data:`STREAMS` and every stream a registered skew needs.
    ``reset_generators(s)["sensing.noise_std"]`` is the generator whose blocks of
    256 standard-normal rows, scaled by the noise level, are the sensor noise of an
    episode reset with seed ``s``.
    """
    root = np.random.SeedSequence(seed)
    wanted = names or tuple(dict.fromkeys(STREAMS + ALL_STREAMS))
    return {name: _child(root, name) for name in wanted}


def field_generator(source: np.random.Generator, field: str) -> np.random.Generator:
    """The generator of randomized field ``field``, derived from a reset's ``"source"`` one.

    A randomization draws each field's per-episode values, and a per-step field its
    per-step values, from this generator, so that drawing one more field changes no
    other field's draws.
    """
    return _child(source.bit_generator.seed_seq, field)  # type: ignore[attr-defined]


_count_nonzero = np.count_nonzero

ALL_STREAMS: tuple[str, ...] = tuple(
    dict.fromkeys(name for entry in SKEWS.values() for name in entry.streams)
)


class Streams:
    """The block streams of one env, from the generators of its last seeded reset."""

    def __init__(self) -> None:
        self.generators: dict[str, np.random.Generator] = {}
        self._blocks: dict[str, tuple[Any, BlockStream]] = {}
        self._normals: dict[str, Normals] = {}  # the gaussian streams' standard normals

    def reseed(self, seed: int | None) -> None:
        self.generators = reset_generators(seed)
        self._blocks = {}
        self._normals = {}

    def _kept(self, name: str, key: Any, make: Callable[[], BlockStream]) -> BlockStream:
        """The stream of ``name``, kept while ``key`` (its kind and scale) stays the same."""
        held = self._blocks.get(name)
        if held is not None and held[0] == key:
            return held[1]
        stream = make()
        self._blocks[name] = (key, stream)
        return stream

    def gaussian(self, name: str, dim: int, scale: np.ndarray) -> BlockStream:
        """Rows ``scale * N(0, 1)`` from generator ``name``."""
        key = ("gaussian", dim, scale.tobytes() if type(scale) is np.ndarray else scale)
        held = self._blocks.get(name)  # the common case of _stream, inlined
        if held is not None and held[0] == key:
            return held[1]
        normals = self._normals.get(name)
        if normals is None:
            normals = self._normals[name] = Normals(self.generators[name], dim)
        return self._stream(name, key, gaussian_draw(normals.take, scale))

    def below(self, name: str, dim: int, prob: Any) -> BlockStream:
        """Boolean rows, True with probability ``prob``, from generator ``name``."""
        key = ("below", dim, prob.tobytes() if type(prob) is np.ndarray else prob)
        held = self._blocks.get(name)
        if held is not None and held[0] == key:
            return held[1]
        return self._stream(name, key, below_draw(self.generators[name], dim, prob))

    def keeps_gaussian(self, name: str, stream: BlockStream | None, scale: Any) -> bool:
        """Whether ``stream`` is still the gaussian stream of ``name``; if so it takes ``scale``:
        kept as it runs when the scale is the same, else restarted in place (the rows of a new
        stream). ``False`` after a reseed (the stream is not the env's any more). What a
        component's ``refresh`` asks at every randomized reset: one lookup, and no draw built
        unless the scale changed."""
        dim = self._changed(name, stream, "gaussian", scale)
        if dim is None:
            return False
        if dim:
            stream.restart(gaussian_draw(self._normals[name].take, scale))  # type: ignore[union-attr]
        return True

    def keeps_below(self, name: str, stream: BlockStream | None, prob: Any) -> bool:
        """:meth:`keeps_gaussian` for the boolean rows of :meth:`below`."""
        dim = self._changed(name, stream, "below", prob)
        if dim is None:
            return False
        if dim:
            stream.restart(below_draw(self.generators[name], dim, prob))  # type: ignore[union-attr]
        return True

    def _changed(
        self, name: str, stream: BlockStream | None, kind: str, parameter: Any
    ) -> int | None:
        """``None`` when ``stream`` is not (any more) the ``kind`` stream of ``name``; else 0
        when ``parameter`` is the one it runs with, or its row length when the parameter is new
        (recorded here: the caller restarts the stream with the draw a new stream would use)."""
        held = self._blocks.get(name)
        if held is None or held[1] is not stream:
            return None
        key = held[0]
        new = parameter.tobytes() if type(parameter) is np.ndarray else parameter
        if key[2] == new and key[0] == kind:
            return 0
        self._blocks[name] = ((kind, key[1], new), stream)  # type: ignore[assignment]
        return key[1]

    def rows(self, name: str, dim: int) -> Callable[[], np.ndarray]:
        """The next standard-normal row of ``dim`` from generator ``name`` at each call: the
        numbers of one ``standard_normal(dim)`` call per row, drawn many rows at a time."""
        return self._kept(name, ("rows", dim), lambda: gaussian(self.generators[name], dim)).next

    def _stream(self, name: str, key: tuple, draw: Callable[[int], np.ndarray]) -> BlockStream:
        """The stream of ``name`` for ``key`` (kind, dim, parameter): kept while the key stays
        the same; with another parameter the same stream object restarts, so that whatever
        holds its ``next`` keeps working (this runs at every randomized reset)."""
        held = self._blocks.get(name)
        if held is not None:
            if held[0] == key:
                return held[1]
            kind, dim = held[0][0], held[0][1]
            if kind == key[0] and dim == key[1]:  # the same kind of stream: restarted in place
                stream = held[1]
                stream.restart(draw)
                self._blocks[name] = (key, stream)
                return stream
        stream = BlockStream(draw)
        self._blocks[name] = (key, stream)
        return stream

    def integers(self, name: str, high: int) -> BlockStream:
        """Rows of one integer uniform on ``0..high``, from generator ``name``."""
        rng = self.generators[name]
        return self._kept(
            name, ("integers", high), lambda: BlockStream(lambda n: draw_jitter(rng, high, n))
        )

    def per_step(self, name: str, key: Any, make: Callable[[], BlockStream]) -> BlockStream:
        return self._kept(f"step:{name}", key, make)


@dataclass
class Context:
    """What a component may know of its env when it is built.

    Attributes:
        low, high: the action bounds (action units).
        obs_dim: the number of observation dimensions.
        substep_s: the physics substep (``model.opt.timestep``), seconds.
        frame_skip: physics substeps per control step.
        elements: how many of each element the env has (geoms, bodies, ...).
        time_limit_s: the episode's time limit, when known.
        mid_step_obs: whether an observation can be read in the middle of a step.
        streams: the env's random streams.
    """

    low: np.ndarray
    high: np.ndarray
    obs_dim: int
    substep_s: float
    frame_skip: int
    elements: Mapping[Element, int]
    time_limit_s: float | None = None
    mid_step_obs: bool = True
    streams: Streams = field(default_factory=Streams)
    span: np.ndarray = field(init=False, repr=False)  # high - low, action units
    centre: np.ndarray = field(init=False, repr=False)  # (high + low) / 2, action units
    _latencies: dict[tuple[type, int], Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.span = self.high - self.low
        self.centre = (self.high + self.low) / 2
        self._latencies = {}

    def latency(self, kind: type, substeps: int) -> Any:
        """The latency component ``kind`` of ``substeps`` physics substeps, built once per env
        (a value: the same object serves every episode with that delay)."""
        key = (kind, substeps)
        latency = self._latencies.get(key)
        if latency is None:
            latency = self._latencies[key] = kind.on_grid(  # type: ignore[attr-defined]
                substeps, self.substep_s, self.frame_skip
            )
        return latency

    @property
    def control_dt(self) -> float:
        return self.substep_s * self.frame_skip

    @staticmethod
    def per_step(value: Any) -> bool:
        """Whether ``value`` is a per-step distribution (a mapping) rather than a number."""
        kind = type(value)
        if kind is float or kind is np.ndarray:
            return False
        return isinstance(value, dict) or (
            not isinstance(value, (float, int, list, np.ndarray)) and isinstance(value, Mapping)
        )

    @staticmethod
    def elementwise(value: Any, dim: int) -> float | np.ndarray:
        """One number (a float, which broadcasts) or one per element (an array)."""
        kind = type(value)
        if kind is float or (kind is np.ndarray and value.dtype == np.float64):
            return value
        if isinstance(value, float):
            return value
        if isinstance(value, int):
            return float(value)
        if isinstance(value, np.ndarray) and value.dtype == np.float64:
            return value
        return np.array(value, dtype=float)

    @staticmethod
    def takes(value: Any) -> bool:
        """Whether a component with ``refresh`` can take ``value`` in place: a number or an
        array (what a source draws; a list or a per-step distribution is built afresh), not
        all zero (a zero value builds no component)."""
        kind = type(value)
        if kind is float:
            return value != 0.0
        # ndarray.nonzero is a C method; np.count_nonzero goes through numpy's dispatch (two
        # Python frames), which costs more on these few numbers, at every randomized reset.
        return kind is np.ndarray and len(value.nonzero()[0]) > 0

    @staticmethod
    def nonzero(value: float | np.ndarray) -> bool:
        """Whether a scalar or per-element value is anywhere nonzero."""
        # count_nonzero is one C call; ndarray.any goes through numpy's Python layer.
        return value != 0.0 if isinstance(value, float) else _count_nonzero(value) > 0

    def per_step_stream(
        self,
        name: str,
        config: Mapping[str, Any],
        dim: int,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> BlockStream:
        """The rows of a per-step field: ``level_t * z_t`` (noise) or ``u_t - p_t`` (dropout),
        the level drawn at each step from the field's distribution, then ``transform``.

        Drawn from :func:`field_generator` of the reset's ``"source"`` generator; the stream
        is kept across episodes until the next seed (while its distribution stays the same).
        """
        from sim2real.randomization.distributions import distribution

        def make() -> BlockStream:
            rng = field_generator(self.streams.generators["source"], name)
            params = {k: v for k, v in config.items() if k not in ("resample", "per")}
            sample = distribution(params).sample
            columns = dim if config.get("per") == "element" else 1
            if name == SensorDropout.field:
                raw = lambda n: rng.random((n, dim)) - sample(rng, (n, columns))  # noqa: E731
            else:
                raw = lambda n: sample(rng, (n, columns)) * rng.standard_normal((n, dim))  # noqa: E731
            if transform is None:
                return BlockStream(raw)
            return BlockStream(lambda n: transform(raw(n)))

        return self.streams.per_step(name, (repr(sorted(config.items())), dim), make)


@dataclass(slots=True)  # built at every randomized reset: slots make that cheaper
class Pipeline:
    """The components of one episode's point, in the order they act (DESIGN.md section 3).

    Attributes:
        dynamics: the model edits' values by field name without the section.
        commands: the command transforms (noise, then deadband), applied in order.
        clip: whether noisy commands must be clipped to the action bounds here.
        sensors: bias, noise, dropout of each reading.
        obs_latency, action_latency: the latencies as realized on the substep grid.
        jitter: the per-command extra delay, if any.
        segments: one control step split at the command and capture changes.
    """

    dynamics: dict[str, Any]
    commands: tuple[Callable[[np.ndarray], np.ndarray], ...]
    noisy: bool
    sensors: Sensors
    obs_latency: ObservationLatency
    action_latency: ActionLatency
    jitter: ControlJitter | None
    segments: tuple[Segment, ...]
    components: tuple[Any, ...] = field(default=(), repr=False)  # refreshable, _REFRESHED order
    # The fused refresh of these components (_refresher), with the context it was built for.
    refresher: tuple[Context, Callable[[Mapping[str, Any]], bool]] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def direct(self) -> bool:
        """Whether commands reach the actuators unchanged and at once (the upstream step)."""
        return not (
            self.commands or self.action_latency.substeps or self.obs_latency.offset or self.jitter
        )


def build_pipeline(
    point: Mapping[str, Any], ctx: Context, previous: Pipeline | None = None
) -> Pipeline:
    """The pipeline of ``point`` (``{"section.field": value}``, omitted fields nominal).

    Every registered skew is built by its component from its value; the dynamics
    values are collected for the model edits. With ``previous`` (the pipeline of the
    env's last episode), a component that can take its new value in place
    (``component.refresh(value, ctx)``) is kept, its streams restarted: the same
    numbers as a fresh build, without rebuilding what holds the component. When every
    component is kept (a randomized reset), ``previous`` itself is returned with the new
    dynamics values and latencies: the env's wiring of its components stays as it is.
    """
    if previous is not None:  # a randomized reset: every component refreshed by one function
        fused = previous.refresher
        if fused is None or fused[0] is not ctx:
            fused = previous.refresher = (ctx, _refresher(previous, ctx))
        if fused[1](point):
            return previous
    arrays: Mapping[str, np.ndarray] = getattr(point, "arrays", None) or _NO_ARRAYS
    get = point.get
    dynamics: dict[str, Any] = {}
    for name, short, nominal in _DYNAMICS:
        value = arrays.get(name)
        if value is None:
            value = get(name, nominal)
            if value is None or (not isinstance(value, np.ndarray) and value == nominal):
                continue
        dynamics[short] = value
    # The components that can take a new value in place, then those built every episode
    # (latencies and jitter: small values, cheaper to build than to check).
    old = previous.components if previous is not None else _NO_COMPONENTS
    kept = []
    for (name, nominal, build), component in zip(_REFRESHED, old, strict=True):
        value = arrays[name] if name in arrays else get(name, nominal)
        if component is None or not component.refresh(value, ctx):
            component = build(value, ctx)
        kept.append(component)
    components = tuple(kept)
    obs_latency, action_latency, jitter = _pick_rebuilt(
        [build(arrays[name] if name in arrays else get(name, nominal), ctx)
         for name, nominal, build in _REBUILT]
    )  # fmt: skip
    segments = step_segments(action_latency, obs_latency)
    if previous is not None and components == old:  # every component kept: the same wiring
        previous.dynamics, previous.segments = dynamics, segments
        previous.obs_latency, previous.action_latency, previous.jitter = (
            obs_latency, action_latency, jitter,
        )  # fmt: skip
        previous.sensors.previous = None  # a new episode: no reading to repeat yet
        return previous
    noise, deadband, bias, sensor_noise, dropout = _pick_refreshed(components)
    if noise is None:
        commands = () if deadband is None else (deadband,)
    else:
        commands = (noise,) if deadband is None else (noise, deadband)
    sensors = None if previous is None else previous.sensors
    if sensors is not None and (
        sensors.bias is bias and sensors.noise is sensor_noise and sensors.dropout is dropout
    ):
        sensors.previous = None  # the same components: its reader holds them
    else:
        sensors = Sensors(bias, sensor_noise, dropout)
    return Pipeline(
        dynamics=dynamics,
        commands=commands,
        noisy=noise is not None,
        sensors=sensors,
        obs_latency=obs_latency,
        action_latency=action_latency,
        jitter=jitter,
        segments=segments,
        components=components,
    )


_DYNAMICS = tuple(
    (name, e.name, e.nominal) for name, e in SKEWS.items() if e.stage is Stage.DYNAMICS
)
_NO_ARRAYS: Mapping[str, np.ndarray] = {}


def _built(refreshable: bool) -> tuple[tuple[str, Any, Callable[[Any, Context], Any]], ...]:
    """``(field, nominal, build)`` of the pipeline's components, in the registry's order: those
    that can take a new value in place (they have ``refresh``), or those that cannot."""
    return tuple(
        (name, e.nominal, e.component.build)
        for name, e in SKEWS.items()
        if e.stage is not Stage.DYNAMICS and hasattr(e.component, "refresh") is refreshable
    )


_REFRESHED = _built(True)
_REBUILT = _built(False)
_NO_COMPONENTS: tuple[Any, ...] = (None,) * len(_REFRESHED)


def _picker(built: tuple[tuple[str, Any, Any], ...], kinds: tuple[type, ...]) -> Any:
    """Picks the components of ``kinds`` (by their field) out of a tuple in ``built``'s order."""
    names = [name for name, _, _ in built]
    return operator.itemgetter(*(names.index(kind.field) for kind in kinds))


_pick_refreshed = _picker(
    _REFRESHED, (ActuationNoise, Deadband, SensorBias, SensorNoise, SensorDropout)
)
_pick_rebuilt = _picker(_REBUILT, (ObservationLatency, ActionLatency, ControlJitter))
# The fused refresh (_refresher) knows these components and latencies, and no others.
_FUSED = [name for name, _, _ in _REFRESHED] == [
    kind.field for kind in (ActuationNoise, Deadband, SensorNoise, SensorBias, SensorDropout)
] and [name for name, _, _ in _REBUILT] == [
    kind.field for kind in (ObservationLatency, ActionLatency, ControlJitter)
]


def _refresher(previous: Pipeline, ctx: Context) -> Callable[[Mapping[str, Any]], bool]:
    """What :func:`build_pipeline` does with ``previous`` when every component takes the point's
    value in place, fused into one function: ``refresh(point)`` checks every value first (a
    number or an array, not all zero, for a component present; the field absent for one that is
    not; the component's stream still the env's) and returns ``False``, having changed nothing,
    when any check fails (the general path then runs); else it makes the same changes as the
    components' ``refresh`` in the same order (the same stream restarts, the same keys, the
    same values), takes the latencies, and returns ``True``. One Python frame instead of about
    thirty at every randomized reset."""
    if not _FUSED or len(previous.components) != len(_REFRESHED):
        return lambda point: False
    noise, deadband, bias, sensor_noise, sensor_dropout = _pick_refreshed(previous.components)
    refreshed = (
        (ActuationNoise.field, noise),
        (Deadband.field, deadband),
        (SensorNoise.field, sensor_noise),
        (SensorBias.field, bias),
        (SensorDropout.field, sensor_dropout),
    )
    present = tuple(name for name, component in refreshed if component is not None)
    absent = tuple(name for name, component in refreshed if component is None)
    streamed = (  # (name, component): the components whose stream refresh restarts
        (ActuationNoise.field, noise),
        (SensorNoise.field, sensor_noise),
        (SensorDropout.field, sensor_dropout),
    )
    streamed = tuple((name, c.stream) for name, c in streamed if c is not None)
    streams, span, obs_dim, cache = ctx.streams, ctx.span, ctx.obs_dim, ctx._latencies
    substep_s, frame_skip = ctx.substep_s, ctx.frame_skip
    obs_key, action_key, jitter_key = (
        ObservationLatency.field,
        ActionLatency.field,
        ControlJitter.field,
    )
    ndarray, float_ = np.ndarray, float
    previous_reading = previous.sensors._previous  # type: ignore[attr-defined]

    def restart(name: str, stream: BlockStream, kind: str, parameter: Any) -> int:
        """:meth:`Streams._changed` for a stream checked to be the env's: 0 when ``parameter``
        is the one it runs with, else its row length (the new key recorded; restart it)."""
        table = streams._blocks
        key = table[name][0]
        new = parameter.tobytes() if type(parameter) is ndarray else parameter
        if key[2] == new and key[0] == kind:
            return 0
        table[name] = ((kind, key[1], new), stream)  # type: ignore[assignment]
        return key[1]

    held_block: list[Any] = [None, None]  # the block of draws prepared last, and its products

    def structure_fits(point: Mapping[str, Any], arrays: Mapping[str, Any]) -> bool:
        """The checks that depend only on which fields ``point`` holds and on its fixed values
        (the same for every episode of a source's block): no value for an absent component,
        latencies as floats (or nominal), no jitter."""
        get = point.get
        for name in absent:
            if name in arrays or get(name) is not None:
                return False
        for name in (obs_key, action_key):
            value = get(name)
            if value is not None and type(value) is not float_:
                return False
        return get(jitter_key, 0.0) == 0

    def prepare(columns: Mapping[str, np.ndarray], point: Mapping[str, Any]) -> _Prepared:
        """The checks and products of a block of episodes' refreshes, for all of them at once
        (the same numbers, element by element): which episodes every component takes (with
        ``point``'s fields, those of every episode of the block), the actuation noise's scale
        and the deadband's threshold, and the sensor noise's scale laid out as its first block
        of rows (a same-shape multiply instead of a broadcasting one, three times dearer)."""
        drawn = {name: columns[name] for name in present if name in columns}
        episodes = len(next(iter(columns.values())))
        takes = np.ones(episodes, dtype=bool)
        for block in drawn.values():  # Context.takes of each episode's value
            takes &= block.reshape(episodes, -1).any(axis=1)
        arrays = getattr(point, "arrays", None) or _NO_ARRAYS
        if (
            len(drawn) != len(present)
            or any(b.dtype != np.float64 for b in drawn.values())
            or not structure_fits(point, arrays)
        ):
            takes[:] = False  # a value not drawn in the block: every episode checked alone
        scales = [
            None if name not in drawn else drawn[name].reshape(episodes, -1) * span
            for name in (ActuationNoise.field, Deadband.field)
        ]
        sensor = drawn.get(SensorNoise.field)
        first = None
        if sensor is not None and sensor.shape[1:] == (obs_dim,):  # one per dimension
            first = np.tile(sensor, (1, _FIRST_ROWS))
        return _Prepared(takes.tolist(), scales[0], scales[1], first)

    def refresh(point: Mapping[str, Any]) -> bool:
        arrays = getattr(point, "arrays", None) or _NO_ARRAYS
        get = point.get
        values = [arrays[name] if name in arrays else get(name) for name in present]
        episode = getattr(point, "episode", None)  # (the block of draws, this episode's row)
        prepared = None
        if episode is not None:
            columns, i = episode
            if held_block[0] is not columns:
                held_block[0], held_block[1] = columns, prepare(columns, point)
            prepared = held_block[1]
            if not prepared.takes[i]:
                prepared = None
        if prepared is None:  # the checks of one episode alone
            for value in values:  # Context.takes
                kind = type(value)
                if kind is float_:
                    if value == 0.0:
                        return False
                elif kind is not ndarray or not len(value.nonzero()[0]):
                    return False
            if not structure_fits(point, arrays):
                return False
        table = streams._blocks
        for name, stream in streamed:  # still the env's streams (a reseed replaces them)
            held = table.get(name)
            if held is None or held[1] is not stream:
                return False
        # Every check passed: the components' refreshes, in their order.
        at = iter(values)
        if noise is not None:
            value = next(at)
            scales = None if prepared is None else prepared.noise_std
            std = value * span if scales is None else scales[i]
            if restart(ActuationNoise.field, noise.stream, "gaussian", std):
                noise.stream.restart(
                    gaussian_draw(streams._normals[ActuationNoise.field].take, std)
                )
            noise.std = std
        if deadband is not None:
            value = next(at)
            scales = None if prepared is None else prepared.threshold
            deadband.threshold = value * span if scales is None else scales[i]
        if sensor_noise is not None:
            value = next(at)
            if restart(SensorNoise.field, sensor_noise.stream, "gaussian", value):
                take = streams._normals[SensorNoise.field].take
                first = None if prepared is None else prepared.sensor_first
                sensor_noise.stream.restart(
                    gaussian_draw(take, value)
                    if first is None
                    else _first_rows(take, value, first[i])
                )
            sensor_noise.std = value
        if bias is not None:
            value = next(at)
            bias.std = np.full(obs_dim, value) if type(value) is float_ else value
        if sensor_dropout is not None:
            value = next(at)
            if restart(SensorDropout.field, sensor_dropout.stream, "below", value):
                sensor_dropout.stream.restart(
                    below_draw(streams.generators[SensorDropout.field], obs_dim, value)
                )
            sensor_dropout.prob = value
        # The latencies (Latency.build: one object per realized delay, from the context).
        obs_latency = _latency(ObservationLatency, get(obs_key), cache, substep_s, frame_skip)
        action_latency = _latency(ActionLatency, get(action_key), cache, substep_s, frame_skip)
        dynamics: dict[str, Any] = {}
        for name, short, nominal in _DYNAMICS:
            value = arrays.get(name)
            if value is None:
                value = get(name, nominal)
                if value is None or (not isinstance(value, ndarray) and value == nominal):
                    continue
            dynamics[short] = value
        previous.dynamics = dynamics
        previous.segments = _segments(frame_skip, action_latency.substeps, obs_latency.offset)
        previous.obs_latency, previous.action_latency, previous.jitter = (
            obs_latency, action_latency, None,
        )  # fmt: skip
        previous_reading[0] = None  # a new episode: no reading to repeat yet
        return True

    return refresh


class _Prepared(NamedTuple):
    """What :func:`_refresher` computes once per block of drawn episodes (see ``prepare``)."""

    takes: list[bool]  # whether every present component takes episode i's value
    noise_std: np.ndarray | None  # the actuation noise's scale of each episode (action units)
    threshold: np.ndarray | None  # the deadband's threshold of each episode (action units)
    sensor_first: np.ndarray | None  # the sensor noise's scale tiled over its first block


_FIRST_ROWS = _FIRST[0]  # the rows of a (re)started stream's first block


def _first_rows(
    normals: Callable[[int], np.ndarray], scale: np.ndarray, tiled: np.ndarray
) -> Callable[[int], np.ndarray]:
    """:func:`gaussian_draw` of ``scale`` whose first block (``tiled``: ``scale`` repeated over
    its rows, flat) is one same-shape multiply: the same products as ``scale * normals(n)``."""

    def draw(n: int) -> np.ndarray:
        rows = normals(n)
        if rows.size == tiled.size:
            return (rows.reshape(-1) * tiled).reshape(rows.shape)
        return scale * rows

    return draw


def _latency(
    kind: type, value: float | None, cache: dict, substep_s: float, frame_skip: int
) -> Any:
    """``kind.build(value, ctx)`` for a float or an absent (nominal) value: the context's
    latency object of that many substeps."""
    substeps = 0 if value is None else round(value / substep_s)
    latency = cache.get((kind, substeps))
    if latency is None:
        latency = cache[(kind, substeps)] = kind.on_grid(substeps, substep_s, frame_skip)
    return latency
