"""Dynamics skews: in-place edits of the MuJoCo model, always relative to its nominal values.

Each class stores the nominal values it touches when it is built and writes
``nominal * value`` on every :meth:`apply`, so a thousand resets never compound.
A value may be one number (shared by every body, geom, dof or actuator) or an
array with one number per element (independent per-element draws).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mujoco
import numpy as np

Value = float | np.ndarray


class _ScaleSkew:
    """Base for a multiplicative skew on one model array."""

    field = ""
    unit = "x nominal"

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.target = self._target()  # a view held once: MjModel makes a new one per access
        self.nominal = self.target.copy()
        self._rows = _Rows(self.target, self.nominal)

    def _target(self) -> np.ndarray:
        raise NotImplementedError

    def apply(self, value: Value) -> None:
        if type(value) is float:  # one number for every element (a drawn scalar)
            np.multiply(self.nominal, value, out=self.target)
            return
        np.multiply(self.nominal, per_row(value, self.nominal), out=self.target)

    def apply_rows(self, value: np.ndarray) -> None:
        """:meth:`apply` of one float64 value per element (a drawn array), without checks
        beyond its length."""
        if len(value) != len(self.nominal):
            raise ValueError(f"expected {len(self.nominal)} per-element values, got {len(value)}")
        rows = self._rows
        np.multiply(rows.nominal, value.repeat(rows.columns) if rows.columns else value,
                    out=rows.target)  # fmt: skip

    def restore(self) -> None:
        self.target[...] = self.nominal

    def __repr__(self) -> str:
        return f"{type(self).__name__}(field={self.field!r}, unit={self.unit!r})"


class _Rows:
    """How ``nominal * value`` (one value per row, per element) is written into a model array.

    A 2-D array (a gear or an inertia row per element) is written through its flat view,
    times the value repeated ``columns`` times along each row: two plain calls cost about
    half of one broadcasting multiply (numpy's general iterator); the products are the same.
    The writers inline the multiply (it runs at every randomized reset).
    """

    def __init__(self, target: np.ndarray, nominal: np.ndarray) -> None:
        if target.ndim > 2 or (target.ndim == 2 and not target.flags.c_contiguous):
            raise ValueError("a per-element model edit needs a vector or a contiguous matrix")
        matrix = target.ndim == 2
        self.columns = target.shape[1] if matrix else 0
        # Flat views of a matrix (contiguous: views, so writes land in the model); a vector,
        # possibly strided (friction's first column), as it is.
        self.target = target.reshape(-1) if matrix else target
        self.nominal = nominal.reshape(-1) if matrix else nominal


def per_row(value: Value, nominal: np.ndarray) -> Any:
    """Broadcast a scalar or a per-element array against the rows of ``nominal``: a number
    stays a number, an array of one value per row (per element) gets trailing axes of 1.
    Shared by the model edits here and the batch engine's per-simulation ones."""
    if isinstance(value, float):
        return value
    if type(value) is not np.ndarray or value.dtype != np.float64:  # a drawn array is both
        value = np.asarray(value, dtype=np.float64)
    if value.ndim == 0:
        return value
    if value.shape[0] != nominal.shape[0]:
        raise ValueError(f"expected {nominal.shape[0]} per-element values, got {value.shape[0]}")
    return value if nominal.ndim == 1 else value.reshape((-1,) + (1,) * (nominal.ndim - 1))


class FrictionScale(_ScaleSkew):
    """Scales the sliding friction coefficient of every geom (``geom_friction[:, 0]``).

    Unit: multiple of the nominal coefficient (dimensionless). Torsional and
    rolling friction are left alone.
    """

    field = "dynamics.friction_scale"

    def _target(self) -> np.ndarray:
        return self.model.geom_friction[:, 0]


class DampingScale(_ScaleSkew):
    """Scales the viscous damping of every degree of freedom (``dof_damping``, N·m·s/rad)."""

    field = "dynamics.damping_scale"

    def _target(self) -> np.ndarray:
        return self.model.dof_damping


class ArmatureScale(_ScaleSkew):
    """Scales the armature of every degree of freedom (``dof_armature``, kg·m²).

    Armature is the rotor inertia a geared motor adds to its joint (the rotor's
    inertia times the gear ratio squared); a motor with a heavier rotor or a
    higher reduction than modelled has a larger one. Unit: multiple of nominal.
    """

    field = "dynamics.armature_scale"

    def _target(self) -> np.ndarray:
        return self.model.dof_armature


class ActuatorStrength(_ScaleSkew):
    """Scales every actuator's gear (``actuator_gear``): torque per unit command.

    Unit: multiple of the nominal gear. A weaker motor (0.85) yields 85 % of the
    nominal torque for the same command.
    """

    field = "dynamics.actuator_strength"

    def _target(self) -> np.ndarray:
        return self.model.actuator_gear


class MassScale:
    """Scales every body's mass (kg) and rotational inertia (kg·m²) by the same factor.

    The derived quantities (subtree masses, inverse weights) are recomputed by
    :class:`ModelSkews` once all dynamics skews are in place.
    """

    field = "dynamics.mass_scale"
    unit = "x nominal"

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.mass, self.inertia = model.body_mass, model.body_inertia  # views held once
        self.nominal_mass = self.mass.copy()
        self.nominal_inertia = self.inertia.copy()
        self._inertia_rows = _Rows(self.inertia, self.nominal_inertia)

    def apply(self, value: Value) -> None:
        np.multiply(self.nominal_mass, per_row(value, self.nominal_mass), out=self.mass)
        np.multiply(self.nominal_inertia, per_row(value, self.nominal_inertia), out=self.inertia)

    def apply_rows(self, value: np.ndarray) -> None:
        """:meth:`apply` of one float64 value per body (a drawn array)."""
        if len(value) != len(self.nominal_mass):
            raise ValueError(
                f"expected {len(self.nominal_mass)} per-element values, got {len(value)}"
            )
        np.multiply(self.nominal_mass, value, out=self.mass)
        rows = self._inertia_rows
        np.multiply(rows.nominal, value.repeat(rows.columns), out=rows.target)

    def restore(self) -> None:
        self.apply(1.0)

    def __repr__(self) -> str:
        return f"MassScale(field={self.field!r}, unit={self.unit!r})"


class Gravity:
    """Sets the gravity vector (``opt.gravity``, m/s²); ``None`` restores the model's own."""

    field = "dynamics.gravity"
    unit = "m/s^2"

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.nominal = model.opt.gravity.copy()

    def apply(self, value: Value | list[float] | None) -> None:
        self.model.opt.gravity[:] = self.nominal if value is None else value

    def restore(self) -> None:
        self.model.opt.gravity[:] = self.nominal

    def __repr__(self) -> str:
        return f"Gravity(field={self.field!r}, unit={self.unit!r})"


class ModelSkews:
    """The dynamics skews of one model (every registered one), applied only when a value changes.

    ``apply(values)`` takes ``{"friction_scale": 0.7, ...}`` (field names without the
    section); omitted fields go back to nominal. After any change the derived
    quantities (subtree masses, inverse weights, actuator accelerations) are
    recomputed with ``mj_setConst`` on a private ``MjData``, so the simulation's own
    state is never touched. :meth:`restore` leaves the model exactly nominal.
    """

    def __init__(self, model: mujoco.MjModel) -> None:
        from sim2real.skews.registry import SKEWS, Stage

        self.model = model
        self._scratch = mujoco.MjData(model)
        self.skews = {
            entry.name: entry.component(model)
            for entry in SKEWS.values()
            if entry.stage is Stage.DYNAMICS
        }
        self._nominal = {
            entry.name: entry.nominal for entry in SKEWS.values() if entry.stage is Stage.DYNAMICS
        }
        self._applied: dict[str, Any] = {}
        self._entries = tuple(
            (name, skew, self._nominal[name], getattr(skew, "apply_rows", None))
            for name, skew in self.skews.items()
        )
        # Every scaled model array as (target, nominal) pairs by skew, for apply_drawn, and one
        # flat view of the model's buffer over all of them (None if they do not share one).
        self._scaled = {
            name: (
                [(skew.mass, skew.nominal_mass), (skew.inertia, skew.nominal_inertia)]
                if isinstance(skew, MassScale)
                else [(skew.target, skew.nominal)]
            )
            for name, skew in self.skews.items()
            if isinstance(skew, (MassScale, _ScaleSkew))
        }
        self._flat = _flat_view(model, [t for pairs in self._scaled.values() for t, _ in pairs])
        self._block: tuple[Any, ...] | None = None  # (columns, index, rows, names) of apply_drawn

    def apply(self, values: dict[str, Any]) -> None:
        changed = False
        applied = self._applied
        for name, skew, nominal, rows in self._entries:
            value = values.get(name)
            if value is None and name not in applied:  # nominal, and nominal already
                continue
            if type(value) is np.ndarray and value.dtype == np.float64:  # drawn per element:
                if value is applied.get(name):  # written as it comes (comparing costs more)
                    continue
                if value.ndim == 1 and rows is not None:
                    rows(value)
                else:
                    skew.apply(value)
                applied[name] = value
                changed = True
                continue
            if type(value) is float and value != nominal:  # one number for every element
                written = applied.get(name)
                if type(written) is not float or written != value:  # else already written
                    skew.apply(value)
                    applied[name] = value
                    changed = True
                continue
            value = _canonical(value, nominal=nominal)
            if _same(value, applied.get(name)):
                continue
            if value is None:
                skew.restore()
                del applied[name]
            else:
                skew.apply(value)
                applied[name] = value
            changed = True
        # Only masses, inertias, armatures and gears feed the derived quantities; gravity,
        # friction and damping do not, but recomputing after any change keeps the rule simple.
        if changed:
            mujoco.mj_setConst(self.model, self._scratch)

    def apply_drawn(self, values: dict[str, Any], episode: tuple[Mapping[str, Any], int]) -> None:
        """:meth:`apply` of the values of episode ``i`` of a source's block of draws
        (``episode = (columns, i)``: ``columns`` maps each drawn field to its block, one row per
        episode; ``values`` are row ``i``'s, as :meth:`apply` takes them).

        The products ``nominal * value`` of every edited model array are computed once per
        block, for all its episodes (the same products, element by element, as :meth:`apply`
        computes), so that an episode writes every edited number with one indexed assignment
        into the model's buffer, then ``mj_setConst``. Anything else (a field not drawn in the
        block, a field set by an earlier episode that this one leaves alone, a model whose
        arrays do not share one buffer) goes through :meth:`apply`."""
        columns, i = episode
        block = self._block
        if block is None or block[0] is not columns:
            block = self._block = self._plan(columns, values)
        _, rows, index, names = block
        applied = self._applied
        if rows is None or values.keys() != names or not applied.keys() <= names:
            self.apply(values)
            return
        self._flat[0][index] = rows[i]  # type: ignore[index]
        applied.update(values)
        mujoco.mj_setConst(self.model, self._scratch)

    def _plan(self, columns: Mapping[str, Any], values: dict[str, Any]) -> tuple[Any, ...]:
        """``(columns, rows, index, names)``: every episode's products for the fields named in
        ``values`` (each drawn in ``columns``), ``rows[i]`` to be written at ``index`` of the
        flat view; ``rows`` is None when :meth:`apply_drawn` cannot write them so."""
        cannot = (columns, None, None, frozenset())
        if self._flat is None:
            return cannot
        start = self._flat[1]
        pieces, indices = [], []
        for name in values:
            block = columns.get(f"dynamics.{name}")
            pairs = self._scaled.get(name)
            if pairs is None or type(block) is not np.ndarray or block.dtype != np.float64:
                return cannot
            per_episode = block.reshape(len(block), -1)  # (episodes, 1 or one per element)
            # As apply takes them: a float for a block of one number per episode, else an array.
            kind = float if block.ndim == 1 else np.ndarray
            if block.ndim > 2 or type(values[name]) is not kind:
                return cannot
            for target, nominal in pairs:
                if block.ndim == 2 and per_episode.shape[1] != len(nominal):
                    return cannot
                if not nominal.size:
                    continue
                elements = nominal.reshape(1, len(nominal), -1)  # (1, element, column)
                pieces.append((elements * per_episode[:, :, None]).reshape(len(block), -1))
                indices.append(_index(target, start))
        if not pieces:  # nothing to write (apply restores what an earlier episode set)
            return cannot
        return (columns, np.concatenate(pieces, axis=1), np.concatenate(indices), frozenset(values))

    def restore(self) -> None:
        self.apply({})


def _flat_view(model: mujoco.MjModel, arrays: list[np.ndarray]) -> tuple[np.ndarray, int] | None:
    """One float64 view of the model's buffer from the first to the last of ``arrays`` (views
    into it), and its start address; ``None`` unless they lie within one buffer's length and on
    its 8-byte grid. The view holds the first array, which holds the model."""
    arrays = [a for a in arrays if a.size]
    if not arrays or any(a.dtype != np.float64 or a.ndim > 2 for a in arrays):
        return None
    if any(stride <= 0 or stride % 8 for a in arrays for stride in a.strides):
        return None
    first = min(arrays, key=lambda a: a.ctypes.data)
    start = first.ctypes.data
    last = [a.ctypes.data + sum((n - 1) * st for n, st in zip(a.shape, a.strides, strict=True))
            for a in arrays]  # fmt: skip
    end = max(last) + 8
    if end - start > int(getattr(model, "nbuffer", 0)) or any(
        (a.ctypes.data - start) % 8 for a in arrays
    ):
        return None
    view = np.lib.stride_tricks.as_strided(first, shape=((end - start) // 8,), strides=(8,))
    return view, start


def _index(target: np.ndarray, start: int) -> np.ndarray:
    """Where ``target``'s elements (in C order) are in the flat view starting at ``start``."""
    position = np.full(target.shape, (target.ctypes.data - start) // 8, dtype=np.intp)
    for axis, stride in enumerate(target.strides):
        shape = [1] * target.ndim
        shape[axis] = target.shape[axis]
        position += (np.arange(target.shape[axis]) * (stride // 8)).reshape(shape)
    return position.reshape(-1)


def _canonical(value: Any, nominal: float | None) -> float | tuple | np.ndarray | None:
    """A float, an array, or ``None`` for the nominal value (cheap to compare).

    Arrays (per-element draws) are taken as they come: writing an all-ones array
    is exact too, and comparing arrays would cost more than the write.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return None if value == nominal else float(value)
    if nominal is None:  # gravity: a vector that is set, not scaled
        return tuple(float(v) for v in value)
    return np.asarray(value, dtype=np.float64)


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and isinstance(a, (float, tuple)) and a == b)
