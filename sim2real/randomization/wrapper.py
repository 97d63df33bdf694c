"""Domain randomization as a wrapper: a :class:`~sim2real.skewed_env.SkewedEnv` whose
source is a :class:`~sim2real.randomization.source.RandomizationSource`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym

from sim2real.randomization.source import RandomizationSource
from sim2real.randomization.spec import RandomizationSpec
from sim2real.skewed_env import ObsFn, SkewedEnv
from sim2real.spec import SkewSpec


class DomainRandomization(SkewedEnv, gym.utils.RecordConstructorArgs):
    """Draws the skews of every episode from a randomization spec.

    The public spelling of ``SkewedEnv(env, RandomizationSource(spec, base))``.

    Args:
        env: a Gymnasium env whose ``unwrapped`` is a ``MujocoEnv``.
        spec: a :class:`RandomizationSpec`, a mapping in the randomization
            schema, or a YAML path (see :mod:`sim2real.randomization.spec`).
        base: the fixed point that every field the spec leaves alone takes
            (a skew spec, mapping or YAML path; default all nominal).
        obs_fn: as for :class:`SkewedEnv`.

    ``info["skews"]`` at reset is the episode's point: every randomized field's
    draw (per-element ones as lists, latencies as realized, per-step ones as their
    distribution) and the non-nominal fixed values.
    """

    def __init__(
        self,
        env: gym.Env,
        spec: RandomizationSpec | Mapping[str, Any] | str | Path,
        base: SkewSpec | Mapping[str, Any] | str | Path | None = None,
        *,
        obs_fn: ObsFn | None = None,
    ) -> None:
        source = RandomizationSource(spec, base)  # validated before the env is touched
        gym.utils.RecordConstructorArgs.__init__(self, spec=spec, base=base)  # for env.spec
        super().__init__(env, source, obs_fn=obs_fn)

    @property
    def randomization(self) -> RandomizationSpec:
        """The validated randomization spec."""
        return self.source.spec  # type: ignore[attr-defined]
