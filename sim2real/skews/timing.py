"""Timing skews: latencies realized on the physics substep grid (``model.opt.timestep``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sim2real.skews.streams import BlockStream

if TYPE_CHECKING:
    from sim2real.skews.pipeline import Context


@dataclass(unsafe_hash=True, slots=True)
class Latency:
    """A delay of ``requested_s`` seconds rounded to the nearest physics substep.

    ``substeps`` is the realized delay; ``effective_s`` is what it amounts to
    (``substeps * substep_s``). ``control_steps, offset = divmod(substeps, frame_skip)``
    say how many whole control steps and leftover substeps that is.

    A value: every attribute is set once, at construction, and never changed (compared
    and hashed by the request). Slotted rather than frozen, because a randomized reset
    builds two of these: a frozen dataclass's construction costs about twice as much.
    """

    requested_s: float
    substep_s: float
    frame_skip: int

    field: ClassVar[str] = ""
    unit: ClassVar[str] = "s"

    @classmethod
    def build(cls, value: Any, ctx: Context) -> Latency:
        """The latency of ``value`` seconds as realized on ``ctx``'s substep grid: one object
        per realized delay and env (``requested_s`` is the realized delay), so that a
        randomized reset, which draws a new delay every episode, looks it up."""
        return ctx.latency(cls, round(float(value) / ctx.substep_s))

    @classmethod
    def on_grid(cls, substeps: int, substep_s: float, frame_skip: int) -> Latency:
        """The latency of exactly ``substeps`` substeps (``requested_s = substeps * substep_s``)."""
        latency = cls(substeps * substep_s, substep_s, frame_skip)
        latency.substeps = substeps
        latency.control_steps, latency.offset = divmod(substeps, frame_skip)
        return latency

    # The realized delay in substeps, and as whole control steps plus leftover substeps.
    substeps: int = dataclasses.field(init=False, repr=False, compare=False)
    control_steps: int = dataclasses.field(init=False, repr=False, compare=False)
    offset: int = dataclasses.field(init=False, repr=False, compare=False)

    def __init__(self, requested_s: float, substep_s: float, frame_skip: int) -> None:
        # The realized delay is computed once, here, not at every access.
        self.requested_s, self.substep_s, self.frame_skip = requested_s, substep_s, frame_skip
        self.substeps = substeps = round(requested_s / substep_s)
        self.control_steps, self.offset = divmod(substeps, frame_skip)

    @property
    def effective_s(self) -> float:
        return self.substeps * self.substep_s

    @property
    def rounding(self) -> float:
        """How far rounding moved the delay, as a fraction of the request (0 when exact)."""
        if not self.requested_s:
            return 0.0
        return abs(self.effective_s - self.requested_s) / self.requested_s

    def describe(self) -> str:
        text = (
            f"{self.requested_s:g} s -> {self.substeps} substeps of {self.substep_s:g} s "
            f"= {self.effective_s:g} s ({self.substeps / self.frame_skip:g} control steps)"
        )
        if self.rounding > 1e-9:
            text += f", rounded to the substep grid by {100 * self.rounding:.0f} %"
        return text


class ObservationLatency(Latency):
    """Age of the observation the policy receives, in seconds (realized in substeps).

    The reading delivered after a control step ending at time ``T`` is the one
    the sensors took at ``T - effective_s``; before the episode began it is the
    first reading of the episode. A delay that is not a whole number of control
    steps needs a reading in the middle of a step (the env's observation function).
    """

    __slots__ = ()
    field = "timing.obs_latency_s"


class ActionLatency(Latency):
    """Time between a command and its effect on the actuators, in seconds (realized in substeps).

    A delay shorter than a control step still acts: the previous command drives
    the first ``offset`` substeps of the next step. Before the first command
    arrives the actuators hold the first command.
    """

    __slots__ = ()
    field = "timing.action_latency_s"


class ControlJitter(Latency):
    """A random extra delay of each command, on top of the action latency.

    Each command's extra delay is drawn uniformly from the whole substeps
    ``0, 1, ..., substeps`` (``requested_s`` is the bound, in seconds, rounded to
    the substep grid), independently per command, from its own random stream
    ``timing.control_jitter_s``. The actuators apply the newest command that has
    arrived; a command overtaken by a newer one never acts (a stale packet).
    """

    __slots__ = ("stream",)
    field = "timing.control_jitter_s"

    def __init__(
        self,
        requested_s: float,
        substep_s: float,
        frame_skip: int,
        stream: BlockStream | None = None,
    ) -> None:
        super().__init__(requested_s, substep_s, frame_skip)
        self.stream = stream  # the extra delays, set by build()

    @classmethod
    def build(cls, value: Any, ctx: Context) -> ControlJitter | None:
        if value == 0:  # the common case: no jitter, nothing to build
            return None
        jitter = cls(float(value), ctx.substep_s, ctx.frame_skip)
        if not jitter.substeps:
            return None
        jitter.stream = ctx.streams.integers(cls.field, jitter.substeps)
        return jitter

    def next(self) -> int:
        """The extra delay of the next command, in substeps."""
        return int(self.stream.next()[0])  # type: ignore[union-attr]


def draw_jitter(rng: np.random.Generator, substeps: int, n: int) -> np.ndarray:
    """``n`` extra delays in ``0..substeps``, shaped ``(n, 1)``: the block draw of the stream."""
    return rng.integers(0, substeps + 1, size=(n, 1))


Segment = tuple[int, "int | None", bool]


def step_segments(action: Latency, observation: Latency) -> tuple[Segment, ...]:
    """Split one control step into segments of constant command.

    Returns ``(n_substeps, command, capture)`` triples: run ``n_substeps``
    physics substeps; before them set the command at index ``command`` of a
    buffer of past commands (newest last), or keep the one already set when
    ``command`` is None; after them, when ``capture``, take the sensor reading
    that the observation latency will deliver.
    """
    return _segments(action.frame_skip, action.substeps, observation.offset)


@cache
def _segments(frame_skip: int, action_substeps: int, obs_offset: int) -> tuple[Segment, ...]:
    lag, action_offset = divmod(action_substeps, frame_skip)
    capture_at = frame_skip - obs_offset if obs_offset else None
    cuts = sorted({0, frame_skip} | {c for c in (action_offset, capture_at) if c})
    segments, previous = [], None
    for start, end in pairwise(cuts):
        # Before the offset the command of one more step ago still acts.
        index = -1 - lag - (start < action_offset)
        segments.append((end - start, None if index == previous else index, end == capture_at))
        previous = index
    return tuple(segments)


class Arrivals:
    """Which command acts at each substep when every command has its own delay.

    ``issue(command, delay)`` registers the command of the next control step
    with its delay in substeps; ``segments(capture_at)`` then splits that
    control step into ``(n_substeps, command or None, capture)`` runs, as
    :func:`step_segments` does, with the newest arrived command acting. Before
    the first command arrives the actuators hold it (as with a fixed latency).
    """

    def __init__(self, frame_skip: int) -> None:
        self.frame_skip = frame_skip
        self.clear()

    def clear(self) -> None:
        self._step = 0
        self._pending: list[tuple[int, int, np.ndarray]] = []  # (arrival, issued, command)
        self._acting: tuple[int, np.ndarray | None] = (-1, None)

    def issue(self, command: np.ndarray, delay: int) -> None:
        if self._acting[1] is None:
            self._acting = (-1, command)  # held until it has travelled its delay
        self._pending.append((self._step * self.frame_skip + delay, self._step, command))

    def segments(self, capture_at: int | None) -> list[tuple[int, np.ndarray | None, bool]]:
        start = self._step * self.frame_skip
        end = start + self.frame_skip
        arriving = sorted(p for p in self._pending if p[0] < end)
        self._pending = [p for p in self._pending if p[0] >= end]
        cuts = {0, self.frame_skip} | {max(0, a - start) for a, _, _ in arriving}
        if capture_at:
            cuts.add(capture_at)
        out: list[tuple[int, np.ndarray | None, bool]] = []
        ordered = sorted(cuts)
        for lo, hi in pairwise(ordered):
            changed = lo == 0  # the first segment of a step always sets its command
            while arriving and max(0, arriving[0][0] - start) <= lo:
                _, issued, command = arriving.pop(0)
                if issued > self._acting[0]:
                    self._acting = (issued, command)
                    changed = True
            out.append((hi - lo, self._acting[1] if changed else None, hi == capture_at))
        self._step += 1
        return out
