"""The gap evaluator: one policy (or several), sim against real, on common seeds.

>>> report = sim2real.evaluate_gap("policies/Hopper/sim/seed0", "Hopper", seeds=range(100, 130))
>>> print(report.to_markdown())

Modules: :mod:`.stats` (pure statistics and bootstrap intervals),
:mod:`.attribution` (Shapley values over skews), :mod:`.policy` (loading and
checking policies), :mod:`.rollout` (batched, multi-process episodes),
:mod:`.store` (the resumable results file), :mod:`.analysis` (episodes to
numbers), :mod:`.report` (``GapReport`` and its JSON schema), :mod:`.gap`
(``evaluate_gap``), :mod:`.cli` (``sim2real evaluate``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sim2real.evaluation.cli import register_cli

if TYPE_CHECKING:
    from sim2real.evaluation.gap import evaluate_gap
    from sim2real.evaluation.policy import PolicyError
    from sim2real.evaluation.report import SCHEMA, GapReport
    from sim2real.evaluation.stats import Estimate

__all__ = ["SCHEMA", "Estimate", "GapReport", "PolicyError", "evaluate_gap", "register_cli"]

# Loaded on first use: worker processes import only the rollout code, not scipy and plotting.
_LAZY = {
    "evaluate_gap": "sim2real.evaluation.gap",
    "PolicyError": "sim2real.evaluation.policy",
    "SCHEMA": "sim2real.evaluation.report",
    "GapReport": "sim2real.evaluation.report",
    "Estimate": "sim2real.evaluation.stats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sim2real.evaluation' has no attribute {name!r}")
