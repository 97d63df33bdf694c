"""Per-simulation dynamics skews: model fields expanded per simulation, always written
relative to the nominal model, ``mj_setConst`` after a change."""

from __future__ import annotations

from typing import Any

import numpy as np
from mujoco import batch as mjbatch

from sim2real.engines.batch.pipeline import DYNAMICS
from sim2real.skews.dynamics import per_row


class BatchDynamics:
    """Per-simulation dynamics skews, always written relative to the nominal model.

    The model fields are expanded (made per-simulation) the first time a
    simulation needs a non-nominal value; after a change, ``mj_setConst`` runs for
    that simulation, as :class:`sim2real.skews.ModelSkews` does on one model.
    """

    def __init__(self, batch: mjbatch.Batch) -> None:
        model = batch.model
        self.batch = batch
        self.nominal = {
            "friction_scale": model.geom_friction[:, 0].copy(),
            "mass": model.body_mass.copy(),
            "inertia": model.body_inertia.copy(),
            "damping_scale": model.dof_damping.copy(),
            "actuator_strength": model.actuator_gear.copy(),
            "gravity": model.opt.gravity.copy(),
            "armature_scale": model.dof_armature.copy(),
        }
        self.applied: list[dict[str, Any]] = [{} for _ in range(batch.nsim)]
        self._fields: dict[str, np.ndarray] | None = None

    def _expanded(self) -> dict[str, np.ndarray]:
        if self._fields is None:
            b = self.batch
            self._fields = {
                "friction": b.expand("geom_friction"),
                "mass": b.expand("body_mass"),
                "inertia": b.expand("body_inertia"),
                "damping": b.expand("dof_damping"),
                "gear": b.expand("actuator_gear"),
                "gravity": b.expand("opt.gravity"),
                "armature": b.expand("dof_armature"),
            }
        return self._fields

    def set(self, sim: int, values: dict[str, Any]) -> bool:
        """Give simulation ``sim`` the dynamics ``values``; whether anything changed."""
        current = self.applied[sim]
        wanted = {k: _canonical(values.get(k), None if k == "gravity" else 1.0) for k in DYNAMICS}
        wanted = {k: v for k, v in wanted.items() if v is not None}
        if wanted.keys() == current.keys() and all(_same(wanted[k], current[k]) for k in wanted):
            return False
        if not wanted and self._fields is None:
            return False
        f, nominal = self._expanded(), self.nominal
        one = 1.0
        f["friction"][sim, :, 0] = nominal["friction_scale"] * per_row(
            wanted.get("friction_scale", one), nominal["friction_scale"]
        )
        scale = wanted.get("mass_scale", one)
        f["mass"][sim] = nominal["mass"] * per_row(scale, nominal["mass"])
        f["inertia"][sim] = nominal["inertia"] * per_row(scale, nominal["inertia"])
        f["damping"][sim] = nominal["damping_scale"] * per_row(
            wanted.get("damping_scale", one), nominal["damping_scale"]
        )
        f["gear"][sim] = nominal["actuator_strength"] * per_row(
            wanted.get("actuator_strength", one), nominal["actuator_strength"]
        )
        f["armature"][sim] = nominal["armature_scale"] * per_row(
            wanted.get("armature_scale", one), nominal["armature_scale"]
        )
        gravity = wanted.get("gravity")
        f["gravity"][sim] = nominal["gravity"] if gravity is None else gravity
        self.applied[sim] = wanted
        return True


def _canonical(value: Any, nominal: float | None) -> Any:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return None if value == nominal else float(value)
    if nominal is None:
        return tuple(float(v) for v in value)
    return np.array(value, dtype=np.float64)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return a == b
