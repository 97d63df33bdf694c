"""A tiny distribution protocol for randomization specs (after dm_control's variations).

Each distribution is a small class built from the keys of its config mapping;
``sample(rng, size)`` draws from a caller's generator, and ``repr`` prints the
config back (``{dist: uniform, low: 0.5, high: 1.5}``, valid YAML). Parameters
and draws are in the unit of the field being randomized (``x nominal``, ``s``, ...).

Parameters are one number or, for per-dimension fields, one number per
dimension; they broadcast like numpy arrays. ``sample(rng, None)`` returns one
draw shaped like the parameters, ``sample(rng, (n,))`` ``n`` independent draws.
A size that broadcasts against per-dimension parameters, such as ``(n, 1)``,
gives ``n`` draws in which every dimension moves together (one underlying
variate, mapped into each dimension's range).

>>> Uniform(low=0.5, high=1.5)
{dist: uniform, low: 0.5, high: 1.5}
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from scipy.special import ndtr, ndtri

Size = int | tuple[int, ...] | None
Param = float | list[float]


class Distribution:
    """Base class: a named family with parameters, a sampler, a support and a mean.

    Subclasses set ``name`` and implement ``__init__`` (validating their
    parameters with :func:`_require`), :meth:`sample`, :attr:`support` and
    :attr:`mean`.
    """

    name: ClassVar[str] = ""

    def sample(self, rng: np.random.Generator, size: Size = None) -> np.ndarray:
        """Draw from ``rng``: parameter-shaped for ``size=None``, else broadcast with ``size``."""
        raise NotImplementedError

    @property
    def support(self) -> tuple[np.ndarray, np.ndarray]:
        """The smallest and largest value a draw can take (``-inf``/``inf`` when unbounded)."""
        raise NotImplementedError

    @property
    def mean(self) -> np.ndarray:
        """The expected value of a draw, shaped like the parameters."""
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, ...]:
        """The broadcast shape of the parameters: ``()`` or ``(dims,)``."""
        return np.broadcast_shapes(*(np.shape(v) for v in self.params().values()))

    def params(self) -> dict[str, np.ndarray]:
        """The parameters by config key, in config order."""
        return {key: value for key, value in vars(self).items() if not key.startswith("_")}

    def __repr__(self) -> str:
        items = [f"dist: {self.name}"] + [f"{k}: {to_yaml(v)}" for k, v in self.params().items()]
        return "{" + ", ".join(items) + "}"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


class Uniform(Distribution):
    """Uniform on ``[low, high]``."""

    name = "uniform"

    def __init__(self, low: Param, high: Param) -> None:
        self.low, self.high = _param(low, "low"), _param(high, "high")
        _require(np.all(self.low <= self.high), "needs low <= high")
        self._span = self.high - self.low

    def sample(self, rng: np.random.Generator, size: Size = None) -> np.ndarray:
        return self.low + self._span * rng.random(size)

    @property
    def support(self) -> tuple[np.ndarray, np.ndarray]:
        return self.low, self.high

    @property
    def mean(self) -> np.ndarray:
        return (self.low + self.high) / 2


class LogUniform(Distribution):
    """Log-uniform on ``[low, high]``: ``exp(uniform(log low, log high))``, ``0 < low <= high``.

    Scales that are as likely to halve as to double (damping, gains) follow it.
    """

    name = "loguniform"

    def __init__(self, low: Param, high: Param) -> None:
        self.low, self.high = _param(low, "low"), _param(high, "high")
        _require(np.all(self.low > 0), "needs low > 0 (it samples the logarithm)")
        _require(np.all(self.low <= self.high), "needs low <= high")
        self._log_low = np.log(self.low)
        self._log_span = np.log(self.high) - self._log_low

    def sample(self, rng: np.random.Generator, size: Size = None) -> np.ndarray:
        return np.exp(self._log_low + self._log_span * rng.random(size))

    @property
    def support(self) -> tuple[np.ndarray, np.ndarray]:
        return self.low, self.high

    @property
    def mean(self) -> np.ndarray:
        span = self.high - self.low
        return np.where(span > 0, span / np.where(span > 0, self._log_span, 1.0), self.low)


class Normal(Distribution):
    """Gaussian with ``mean`` and ``std`` (``std >= 0``); unbounded, so few fields accept it."""

    name = "normal"

    def __init__(self, mean: Param, std: Param) -> None:
        self.mean_, self.std = _param(mean, "mean"), _param(std, "std")
        _require(np.all(self.std >= 0), "needs std >= 0")

    def params(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "std": self.std}

    def sample(self, rng: np.random.Generator, size: Size = None) -> np.ndarray:
        return self.mean_ + self.std * rng.standard_normal(size)

    @property
    def support(self) -> tuple[np.ndarray, np.ndarray]:
        unbounded = np.where(self.std > 0, np.inf, 0.0)
        return self.mean_ - unbounded, self.mean_ + unbounded

    @property
    def mean(self) -> np.ndarray:
        return self.mean_


class TruncNormal(Distribution):
    """A Gaussian ``(mean, std)`` restricted to ``[low, high]`` (``std > 0``, ``low < high``).

    Sampled by inverting the normal CDF; an interval above the mean is sampled
    in the mirrored lower tail, where the CDF keeps its precision.
    """

    name = "truncnormal"

    def __init__(self, mean: Param, std: Param, low: Param, high: Param) -> None:
        self.mean_, self.std = _param(mean, "mean"), _param(std, "std")
        self.low, self.high = _param(low, "low"), _param(high, "high")
        _require(np.all(self.std > 0), "needs std > 0")
        _require(np.all(self.low < self.high), "needs low < high")
        a, b = (self.low - self.mean_) / self.std, (self.high - self.mean_) / self.std
        self._flip = a > 0  # mirror an interval above the mean into the lower tail
        self._p_low = ndtr(np.where(self._flip, -b, a))
        self._p_high = ndtr(np.where(self._flip, -a, b))
        _require(
            np.all(self._p_high - self._p_low > 1e-12),
            "needs [low, high] within about 37 std of the mean (else it holds no probability)",
        )

    def params(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "std": self.std, "low": self.low, "high": self.high}

    def sample(self, rng: np.random.Generator, size: Size = None) -> np.ndarray:
        p = self._p_low + (self._p_high - self._p_low) * rng.random(size)
        z = ndtri(p)
        x = self.mean_ + self.std * np.where(self._flip, -z, z)
        return np.clip(x, self.low, self.high)  # guards the last ulp of the inverse CDF

    @property
    def support(self) -> tuple[np.ndarray, np.ndarray]:
        return self.low, self.high

    @property
    def mean(self) -> np.ndarray:
        a, b = (self.low - self.mean_) / self.std, (self.high - self.mean_) / self.std
        density = np.exp(-0.5 * np.square([a, b])) / math.sqrt(2 * math.pi)
        return self.mean_ + self.std * (density[0] - density[1]) / (ndtr(b) - ndtr(a))


class Choice(Distribution):
    """One of ``values`` (a list of numbers), each equally likely."""

    name = "choice"

    def __init__(self, values: list[float]) -> None:
        self.values = _param(values, "values")
        _require(self.values.ndim == 1 and self.values.size > 0, "needs a non-empty list of values")

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    def sample(self, rng: np.random.Generator, size: Size = None) -> np.ndarray:
        return self.values[rng.integers(self.values.size, size=size)]

    @property
    def support(self) -> tuple[np.ndarray, np.ndarray]:
        return self.values.min(), self.values.max()

    @property
    def mean(self) -> np.ndarray:
        return self.values.mean()


class Constant(Distribution):
    """Always ``value``: pins a field inside a randomization (useful to switch one off)."""

    name = "constant"

    def __init__(self, value: Param) -> None:
        self.value = _param(value, "value")

    def sample(self, rng: np.random.Generator, size: Size = None) -> np.ndarray:
        return self.value + np.zeros(() if size is None else size)

    @property
    def support(self) -> tuple[np.ndarray, np.ndarray]:
        return self.value, self.value

    @property
    def mean(self) -> np.ndarray:
        return self.value


DISTRIBUTIONS: dict[str, type[Distribution]] = {
    cls.name: cls for cls in (Uniform, LogUniform, Normal, TruncNormal, Choice, Constant)
}


def distribution(config: Mapping[str, Any]) -> Distribution:
    """Build a distribution from its config mapping, ``{"dist": name, **parameters}``.

    Raises:
        ValueError: no or an unknown family, a missing or unknown parameter, or
            a parameter outside the family's domain; the message (which starts
            with the family's name) says what is allowed.
    """
    allowed = ", ".join(DISTRIBUTIONS)
    if "dist" not in config:
        raise ValueError(f"a distribution needs 'dist: <family>' (one of {allowed})")
    name = config["dist"]
    if name not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {name!r} (allowed: {allowed})")
    cls = DISTRIBUTIONS[name]
    expected = list(inspect.signature(cls).parameters)
    given = {key: value for key, value in config.items() if key != "dist"}
    unknown = [key for key in given if key not in expected]
    missing = [key for key in expected if key not in given]
    if unknown or missing:
        problem = f"unknown parameter {unknown[0]!r}" if unknown else f"no {missing[0]!r}"
        raise ValueError(f"{name} has {problem} (it takes {', '.join(expected)})")
    try:
        return cls(**given)
    except ValueError as error:
        raise ValueError(f"{name} {error}") from None


def to_yaml(value: Any) -> str:
    """A number or an array in YAML flow style, shortest exact form (``1.0e-05``, ``.inf``)."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim:
        return "[" + ", ".join(to_yaml(v) for v in array) + "]"
    number = float(array)
    if math.isinf(number):
        return "-.inf" if number < 0 else ".inf"
    text = repr(number)
    if "e" in text and "." not in text:  # YAML 1.1 reads 1e-05 as a string, 1.0e-05 as a float
        text = text.replace("e", ".0e")
    return text


def _param(value: Any, key: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, list) and not value:
        raise ValueError(f"parameter {key!r} must not be empty")
    numbers = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise ValueError(f"parameter {key!r} must be a number or a list of numbers")
    array = np.asarray(value, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"parameter {key!r} must be finite, got {value!r}")
    return array if array.ndim else array[()]  # a numpy scalar: fast arithmetic at sample time


def _require(condition: Any, message: str) -> None:
    if not condition:
        raise ValueError(message)
