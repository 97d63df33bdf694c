"""Timing skews: latencies realized on the physics substep grid (``model.opt.timestep``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from itertools import pairwise
from typing import ClassVar


@dataclass(frozen=True)
class Latency:
    """A delay of ``requested_s`` seconds rounded to whole physics substeps.

    ``substeps`` is the realized delay; ``effective_s`` is what it amounts to
    (``substeps * substep_s``). ``control_steps, offset = divmod(substeps, frame_skip)``
    say how many whole control steps and leftover substeps that is.
    """

    requested_s: float
    substep_s: float
    frame_skip: int

    field: ClassVar[str] = ""
    unit: ClassVar[str] = "s"

    @cached_property
    def substeps(self) -> int:
        return round(self.requested_s / self.substep_s)

    @property
    def effective_s(self) -> float:
        return self.substeps * self.substep_s

    @property
    def control_steps(self) -> int:
        return self.substeps // self.frame_skip

    @property
    def offset(self) -> int:
        return self.substeps % self.frame_skip

    def describe(self) -> str:
        return (
            f"{self.requested_s:g} s -> {self.substeps} substeps of {self.substep_s:g} s "
            f"= {self.effective_s:g} s ({self.substeps / self.frame_skip:g} control steps)"
        )


class ObservationLatency(Latency):
    """Age of the observation the policy receives, in seconds (realized in substeps).

    The reading delivered after a control step ending at time ``T`` is the one
    the sensors took at ``T - effective_s``; before the episode began it is the
    first reading of the episode.
    """

    field = "timing.obs_latency_s"


class ActionLatency(Latency):
    """Time between a command and its effect on the actuators, in seconds (realized in substeps).

    A delay shorter than a control step still acts: the previous command drives
    the first ``offset`` substeps of the next step. Before the first command
    arrives the actuators hold the first command.
    """

    field = "timing.action_latency_s"


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
