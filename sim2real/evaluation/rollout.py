"""Running episodes: moved to :mod:`sim2real.engines`; these names stay importable here.

The work (:class:`Workload` of :class:`Lane` s), its result (:class:`Episode`)
and divergence detection live in :mod:`sim2real.engines.base`; the engines
that run it (``local``, ``batch``, ``ray``) in :mod:`sim2real.engines`.
"""

from __future__ import annotations

from sim2real.engines import run_workload
from sim2real.engines.base import (
    INSTABILITY_WARNINGS,
    Episode,
    Lane,
    Workload,
    divergence,
    instability_warnings,
    make_env,
    plan_lanes,
)

__all__ = [
    "INSTABILITY_WARNINGS",
    "Episode",
    "Lane",
    "Workload",
    "divergence",
    "instability_warnings",
    "make_env",
    "plan_lanes",
    "run_workload",
]
