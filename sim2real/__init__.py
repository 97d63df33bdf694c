"""sim2real: paired sim and real MuJoCo environments, domain randomization, gap evaluation.

``import sim2real`` registers ``sim2real/<Task>-sim-v0`` and ``sim2real/<Task>-real-v0``
with Gymnasium for every built-in task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sim2real.pairing import describe, make, make_pair, register_tasks
from sim2real.skewed_env import SkewedEnv
from sim2real.spec import SkewSpec, SkewSpecError
from sim2real.tasks import get_task, tasks

if TYPE_CHECKING:
    from sim2real.randomization import DomainRandomization

__version__ = "0.1.0"

__all__ = [
    "DomainRandomization",
    "SkewSpec",
    "SkewSpecError",
    "SkewedEnv",
    "describe",
    "evaluate_gap",
    "get_task",
    "make",
    "make_pair",
    "tasks",
]

register_tasks()


def __getattr__(name: str) -> Any:
    # Heavier pieces load on first use, so that `import sim2real` stays quick.
    if name == "DomainRandomization":
        from sim2real.randomization import DomainRandomization

        return DomainRandomization
    if name == "evaluate_gap":
        from sim2real.evaluation import evaluate_gap

        return evaluate_gap
    raise AttributeError(f"module 'sim2real' has no attribute {name!r}")
