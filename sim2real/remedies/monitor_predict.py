"""The monitor's predictions along a stream: one-step residuals and k-step blocks.

:class:`StreamPredictor` turns the stream a policy sees (observation, command, ...)
into the raw quantities the monitor's tests and its preparation share:

* a :class:`OneStep` residual for every transition whose starting observation
  determines the state: the observation minus the nominal one-step prediction,
  the same for a few total delays (the delay tests), and whether the nominal
  prediction ends in contact. Where the starting observation does not (a
  velocity on its clip), the prediction runs open loop from the last exact
  observation, at most ``max_gap`` control steps back (``steps`` > 1): a fast
  gait puts a velocity on its clip for several steps in a row, and the delay
  tests would otherwise go blind exactly when the commands change most;
* a :class:`Block` every ``block`` control steps: the observation minus the
  nominal open-loop prediction over the block from its anchor observation, with
  the finite-difference sensitivity of that prediction to each dynamics field.
  Over several steps a dynamics skew accumulates (a velocity error grows with
  the block, a position error with its square) while the anchor's sensor noise
  enters once, so a small skew is far more visible than in one step. On a noisy
  stream the block also carries the spread of that prediction under the
  anchor's noise: the same block run from the anchor moved by plus and minus one
  noise sigma in each position dimension (sigma points), from which the monitor
  builds the block's own residual covariance (the noise pushed through the
  dynamics from this very state, not an average over states).

A reading that was not refreshed (a dimension repeating its previous value
exactly while the model says it moved by more than ``stale_margin``: a stale
packet, a dropped reading held, or an observation latency at an episode's start,
which repeats the first reading) is reported in ``stale`` and neither ends nor
starts a transition or a block: its values are not of the time it arrives.

Preparation (on sim streams) and the online monitor run exactly this code.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import mujoco
import numpy as np

from sim2real.remedies.monitor_model import ReferenceModel


@dataclass(frozen=True)
class OneStep:
    """One transition: residual ``(d,)``, delayed residuals ``(delays, d)`` or None,
    whether the nominal prediction ends in contact, and the control steps it spans from
    its exact anchor (1: from the previous observation)."""

    residual: np.ndarray
    delayed: np.ndarray | None
    contact: bool
    steps: int = 1


@dataclass(frozen=True)
class Block:
    """A k-step open-loop block from an exact anchor observation.

    Attributes:
        anchor: the observation the block starts from.
        commands: the commands applied, ``(k, act_dim)``.
        end: the observation at its end.
        residual: ``end`` minus the nominal prediction, ``(d,)``.
        sensitivity: d prediction / d field per field, ``(fields, d)``.
        contact: whether the nominal prediction ends in contact.
        previous: the commands before the anchor, newest last (for delayed replays).
        spread: the nominal block's end observation from each sigma point of the anchor
            (the anchor plus each row of the predictor's ``spread``) minus the nominal
            prediction, ``(points, d)``; None without sigma points.
    """

    anchor: np.ndarray
    commands: np.ndarray
    end: np.ndarray
    residual: np.ndarray
    sensitivity: np.ndarray
    contact: bool
    previous: tuple[np.ndarray, ...] = ()
    spread: np.ndarray | None = None


class StreamPredictor:
    """Runs the reference model along one stream at a time (``reset`` per episode).

    Args:
        reference: the nominal model and its nudged copies.
        block: control steps per block (0: no blocks).
        delays: total delays (substeps) of the delayed one-step predictions.
        margin: a velocity within this of its clip makes an observation inexact.
        max_delay: the largest delay (substeps) a block may be replayed with; the commands
            before a block's anchor are kept for it (default the largest of ``delays``).
        max_gap: the most control steps a transition may span from its exact anchor
            (1: only transitions from an exact observation).
        spread: offsets ``(points, d)`` added to a block's anchor, each run as a copy of
            the nominal block (its sigma points); None or empty: none.
        stale_margin: a repeated value is stale when the prediction moved it by more than
            this (obs units, a number or one per dimension); None: never stale.
    """

    def __init__(
        self,
        reference: ReferenceModel,
        block: int,
        delays: tuple[int, ...],
        margin: float,
        max_delay: int | None = None,
        max_gap: int = 1,
        spread: np.ndarray | None = None,
        stale_margin: float | np.ndarray | None = None,
    ) -> None:
        self.reference = reference
        self.stale_margin = None if stale_margin is None else np.asarray(stale_margin, float)
        self.max_gap = max(int(max_gap), 1)
        self.block = int(block)
        self.delays = tuple(delays)
        self.margin = float(margin)
        model = reference.model
        self._hyps = [(model, mujoco.MjData(model))] + [
            (m, mujoco.MjData(m)) for m in (reference.nudged(f) for f in reference.fields)
        ]
        self.spread = np.zeros((0, reference.obs_dim)) if spread is None else np.asarray(spread)
        self._fields = len(self._hyps)  # the nominal block and one per field, then sigma points
        self._hyps += [(model, mujoco.MjData(model)) for _ in self.spread]
        longest = max(max(self.delays, default=0), max_delay or 0)
        self._history = longest // reference.frame_skip + 2 + self.max_gap
        self.reset()

    def reset(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray, bool] | None = None
        self._commands: deque[np.ndarray] = deque(maxlen=self._history)
        self._done: int | None = None  # control steps into the current block, None: idle
        self._anchor: np.ndarray | None = None
        self._block_commands: list[np.ndarray] = []
        # The last exact observation, the commands before it and the commands since.
        self._last_exact: tuple[np.ndarray, list[np.ndarray], list[np.ndarray]] | None = None
        # The dimensions of the last observation that were not refreshed (None: all were),
        # and how many of its dimensions the prediction moved past the stale margin.
        self.stale: np.ndarray | None = None
        self.checked = 0

    def step(self, obs: np.ndarray, action: np.ndarray) -> tuple[OneStep | None, Block | None]:
        """Take the next observation and the command sent on it."""
        ref = self.reference
        one = None
        prev = self._prev
        if prev is not None and prev[2]:
            prev_obs, prev_action, _ = prev
            nominal = ref.predict(prev_obs, prev_action)
            contact = ref.data.ncon > 0
            delayed = None
            if self.delays:
                previous = list(self._commands)[:-1]
                delayed = np.empty((len(self.delays), obs.shape[0]))
                for i, d in enumerate(self.delays):
                    delayed[i] = obs - ref.predict(prev_obs, prev_action, previous, d, scratch=True)
            one = OneStep(obs - nominal, delayed, bool(contact))
        elif prev is not None and self._last_exact is not None:
            one = self._from_last_exact(obs)
        self.stale = self._stale_dims(obs, one)
        finished = None
        if self.stale is not None:  # no transition ends or starts at it; the block is dropped
            one, self._done, self._last_exact = None, None, None
        elif self._done is not None and self._done == self.block:
            finished = self._finish(obs)
        exact = self.stale is None and ref.exact(obs, self.margin)
        if exact:
            self._last_exact = (obs, list(self._commands), [action])
        elif self._last_exact is not None:
            if len(self._last_exact[2]) < self.max_gap:
                self._last_exact[2].append(action)
            else:
                self._last_exact = None
        self._commands.append(action)
        if self.block and self._done is None and exact:
            self._start(obs)
        if self._done is not None:
            for model, data in self._hyps:
                ref.advance(model, data, action)
            self._block_commands.append(action)
            self._done += 1
        self._prev = (obs, action, exact)
        return one, finished

    def _stale_dims(self, obs: np.ndarray, one: OneStep | None) -> np.ndarray | None:
        """The dimensions that repeat the previous reading exactly although the prediction
        moved them by more than the stale margin (every dimension when the whole reading
        repeats), or None if there are none."""
        if self.stale_margin is None or self._prev is None:
            return None
        repeated = obs == self._prev[0]
        if one is None:  # no prediction: stale only while a stale run goes on
            self.checked = 0
            if self.stale is None or not repeated[self.stale].all():
                return None
            return self.stale
        moved = np.abs(obs - one.residual - self._prev[0]) > self.stale_margin
        self.checked = int(moved.sum())
        stale = repeated & moved
        if not stale.any():
            return None
        return np.arange(len(obs)) if repeated.all() else np.flatnonzero(stale)  # a copy: all

    def _from_last_exact(self, obs: np.ndarray) -> OneStep:
        """The transition to ``obs`` predicted open loop from the last exact observation."""
        ref = self.reference
        anchor, before, since = self._last_exact  # type: ignore[misc]
        data = ref._scratch
        predictions = []
        for delay in (0, *self.delays):
            ref.anchor(data, anchor)
            history = list(before)
            for command in since:
                ref.advance(ref.model, data, command, history, delay)
                history.append(command)
            predictions.append(ref.observe(data))
            if delay == 0:
                contact = data.ncon > 0
        delayed = np.array([obs - p for p in predictions[1:]]) if self.delays else None
        return OneStep(obs - predictions[0], delayed, bool(contact), len(since))

    def _start(self, obs: np.ndarray) -> None:
        warm = self._hyps[0][1].qacc_warmstart
        for i, (_, data) in enumerate(self._hyps):
            start = obs if i < self._fields else obs + self.spread[i - self._fields]
            self.reference.anchor(data, start)
            data.qacc_warmstart[:] = warm
        self._anchor = obs
        self._previous = tuple(self._commands)[:-1]  # the anchor's own command comes first
        self._block_commands = []
        self._done = 0

    def _finish(self, obs: np.ndarray) -> Block:
        ref = self.reference
        nominal = ref.observe(self._hyps[0][1])
        sens = np.empty((self._fields - 1, obs.shape[0]))
        for i, (_, data) in enumerate(self._hyps[1 : self._fields]):
            sens[i] = (ref.observe(data) - nominal) / ref.fd_steps[i]
        spread = None
        if len(self.spread):
            spread = np.array(
                [ref.observe(data) - nominal for _, data in self._hyps[self._fields :]]
            )
        self._done = None
        return Block(
            self._anchor, np.asarray(self._block_commands), obs, obs - nominal, sens,
            bool(self._hyps[0][1].ncon > 0), self._previous, spread,
        )  # fmt: skip

    def replay(
        self, block: Block, variant: tuple[mujoco.MjModel, mujoco.MjData], delay: int = 0
    ) -> np.ndarray:
        """The block's end observation predicted on ``variant`` (same anchor and commands),
        with the commands delayed by ``delay`` substeps."""
        model, data = variant
        self.reference.anchor(data, block.anchor)
        history = list(block.previous)
        for command in block.commands:
            self.reference.advance(model, data, command, history, delay)
            history.append(command)
        return self.reference.observe(data)
