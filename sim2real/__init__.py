"""sim2real: paired sim and real MuJoCo environments, domain randomization, gap evaluation.

``import sim2real`` registers ``sim2real/<Task>-sim-v0`` and ``sim2real/<Task>-real-v0``
with Gymnasium for every built-in task.
"""

from __future__ import annotations

from typing import Any

from sim2real.pairing import describe, make, make_pair, register_tasks
from sim2real.skewed_env import SkewedEnv
from sim2real.spec import SkewSpec, SkewSpecError
from sim2real.tasks import get_task, tasks

__version__ = "0.1.0"

# Heavier pieces load on first use, so that `import sim2real` stays quick: name -> module.
_LAZY = {
    "DomainRandomization": "sim2real.randomization",
    "RandomizationSource": "sim2real.randomization",
    "Point": "sim2real.point",
    "FixedSource": "sim2real.point",
    "evaluate_gap": "sim2real.evaluation",
    "make_vec": "sim2real.engines.vec",
    "record": "sim2real.remedies.record",
    "load_logs": "sim2real.remedies.record",
    "calibrate": "sim2real.remedies.calibration",
    "Calibration": "sim2real.remedies.calibration",
    "SkewMonitor": "sim2real.remedies.monitor",
    "Monitored": "sim2real.remedies.monitor",
    "envelope": "sim2real.remedies.envelope",
    "EnvelopeMap": "sim2real.remedies.envelope",
    "compare_envelopes": "sim2real.remedies.envelope",
    "SB3VecEnv": "sim2real.engines.vec",
    "History": "sim2real.history",
    "HistoryObservation": "sim2real.history",
}

__all__ = [
    "SkewSpec",
    "SkewSpecError",
    "SkewedEnv",
    "describe",
    "get_task",
    "make",
    "make_pair",
    "tasks",
    *_LAZY,
]

register_tasks()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sim2real' has no attribute {name!r}")
