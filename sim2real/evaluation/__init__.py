"""The gap evaluator: one policy (or several), sim against real, on common seeds.

>>> import sim2real
>>> from sim2real.paths import data_dir
>>> policy = data_dir("policies") / "InvertedPendulum" / "sim" / "seed0"
>>> report = sim2real.evaluate_gap(
...     policy, "InvertedPendulum", seeds=range(100, 103), attribution=False,
...     max_episode_steps=50, progress=False,
... )
>>> report.task, report.real
('InvertedPendulum', 'default')
>>> markdown, data = report.to_markdown(), report.to_json()

Modules: :mod:`.stats` (pure statistics and bootstrap intervals),
:mod:`.attribution` (Shapley values over skews), :mod:`.policy` (loading and
checking policies), :mod:`.rollout` (the work types of :mod:`sim2real.engines`, which
run the episodes),
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

# Loaded on first use: engine workers import only what they run, not scipy and plotting.
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
