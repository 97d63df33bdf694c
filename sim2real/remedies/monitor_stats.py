"""Pure statistics of the monitor: whitening, the sequential tests, their thresholds, the fits.

Everything here is a function of arrays, so the tests and the benchmark can
check it without a simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

MAD_TO_SIGMA = 1.4826  # the MAD of a normal sample times this is its standard deviation


def robust_scale(residuals: np.ndarray, floor: float) -> np.ndarray:
    """Per-dimension noise scale of ``residuals`` ``(n, d)``: 1.4826 x MAD, at least ``floor``."""
    centre = np.median(residuals, axis=0)
    mad = np.median(np.abs(residuals - centre), axis=0)
    return np.maximum(MAD_TO_SIGMA * mad, floor)


def omnibus_increment(z: np.ndarray, cap: float) -> np.ndarray:
    """The mean squared whitened residual of each step, capped at ``cap`` (``z``: ``(..., d)``)."""
    return np.minimum(np.mean(np.square(z), axis=-1), cap)


def delay_llr(
    base: np.ndarray, delayed: np.ndarray, dim: int, dof: float, clip: float
) -> np.ndarray:
    """Per transition and candidate delay, the log-likelihood ratio of "delayed" against "no
    delay" under a ``dim``-variate Student-t noise model with ``dof`` degrees of freedom,
    clipped at +-``clip``: ``(dof + dim) / 2 * (log(1 + base / dof) - log(1 + delayed / dof))``.

    ``base``: ``(n,)`` squared whitened residuals of the nominal prediction; ``delayed``:
    ``(n, K)`` those of the ``K`` delayed predictions. Near the noise model this is the
    Gaussian ratio ``(base - delayed) / 2``; for a transition far off it (a contact change,
    a fall: both residuals large) it is about the log of their ratio, so that a few such
    sim transitions no longer set the threshold for every stream.
    """
    k = 0.5 * (dof + dim)
    llr = k * (np.log1p(np.asarray(base)[..., None] / dof) - np.log1p(np.asarray(delayed) / dof))
    return np.clip(llr, -clip, clip)


def cusum_alarms(x: np.ndarray, drift: float, threshold: float) -> int:
    """Alarms of the one-sided CUSUM ``S = max(0, S + x - drift)`` over ``x``, restarting at 0
    after each alarm (``S >= threshold``)."""
    s, alarms = 0.0, 0
    for value in x - drift:
        s = max(0.0, s + value)
        if s >= threshold:
            alarms += 1
            s = 0.0
    return alarms


def cusum_max_alarms(x: np.ndarray, drift: np.ndarray, threshold: float) -> int:
    """Alarms of the largest of several one-sided CUSUMs run side by side, ``x``: ``(n, k)``,
    ``drift``: ``(k,)``: ``S_j = max(0, S_j + x_j - drift_j)``, an alarm when ``max_j S_j >=
    threshold``, after which all restart at 0 (a generalized likelihood ratio over ``k``
    alternatives)."""
    s = np.zeros(x.shape[1])
    alarms = 0
    for row in (x - drift).tolist():
        s = np.maximum(s + row, 0.0)
        if s.max() >= threshold:
            alarms += 1
            s[:] = 0.0
    return alarms


def ew_sums(values: np.ndarray, gamma: float) -> np.ndarray:
    """Exponentially weighted running sums ``S_t = gamma S_{t-1} + v_t`` along axis 0."""
    return lfilter([1.0], [1.0, -gamma], values, axis=0)


def self_normalized(num: np.ndarray, var: np.ndarray) -> np.ndarray:
    """The squared self-normalized sum ``N^2 / V`` (0 where ``V`` is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, np.square(num) / var, 0.0)


def upcrossings(series: np.ndarray, threshold: float) -> int:
    """How often ``series`` crosses from below ``threshold`` to at or above it."""
    above = series >= threshold
    return int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1]))


@dataclass(frozen=True)
class Threshold:
    """A calibrated threshold and how it was found.

    Attributes:
        value: the threshold.
        rate: the per-step alarm rate it targets.
        observed: alarms per step at ``value`` on the calibration data.
        extrapolated: whether the target lay beyond the data (log-linear tail fit).
    """

    value: float
    rate: float
    observed: float
    extrapolated: bool


def calibrate_threshold(
    count, steps: int, rate: float, start: float, *, minimum: float = 0.0
) -> Threshold:
    """The threshold at which alarms per step fall to ``rate``.

    ``count(h)`` is the number of alarms at threshold ``h`` over ``steps``
    calibration steps. Sequential statistics have exponential tails (the
    average run length grows like ``exp(c h)``), so the rate is read off the
    data where at least 10 alarms remain and extrapolated on a log-linear fit
    of the upper tail beyond that; where the target expects less than one alarm in
    the data, never below the first level the data never reach. Where the data show
    fewer than two levels with 10 alarms, there is no tail to fit: the threshold is
    twice that first level unreached. Thresholds never go below ``minimum``.
    """
    levels, rates = [], []
    h = max(start, minimum, 1e-9)
    n = count(h)
    while n >= 10 and len(levels) < 200:
        levels.append(h)
        rates.append(n / steps)
        if n / steps <= rate:  # the data reach the target with 10 alarms: interpolate
            value = h
            if len(levels) > 1:
                r_lo, r_hi = np.log(rates[-2]), np.log(rates[-1])
                frac = (np.log(rate) - r_lo) / (r_hi - r_lo) if r_hi != r_lo else 1.0
                value = levels[-2] + frac * (levels[-1] - levels[-2])
            return Threshold(float(value), rate, count(value) / steps, False)
        h *= 1.25
        n = count(h)
    unreached = h
    while n > 0 and unreached < 1e12:
        unreached *= 1.25
        n = count(unreached)
    if len(levels) >= 2:  # fit log(rate) = a + b h on the last levels with >= 10 alarms
        slope, intercept = np.polyfit(np.asarray(levels[-4:]), np.log(rates[-4:]), 1)
        slope = min(float(slope), -1e-9)
        # Where the target expects under one alarm in the data, the data's maximum bounds it.
        floor = unreached if rate * steps < 1 else minimum
        value = max(float((np.log(rate) - intercept) / slope), floor, minimum)
    else:
        value = max(2.0 * unreached, minimum)
    return Threshold(value, rate, count(value) / steps, True)


@dataclass(frozen=True)
class FieldFit:
    """A one-field least-squares fit of whitened residuals on that field's sensitivity.

    Attributes:
        delta: the fitted change of the field from nominal (e.g. +0.1 for mass 1.1x).
        se: its standard error (heteroskedasticity- and lag-1-autocorrelation-robust).
        explained: the share of the residual sum of squares it removes, in [0, 1].
    """

    delta: float
    se: float
    explained: float


def fit_field(j: np.ndarray, z: np.ndarray) -> FieldFit:
    """Regress ``z`` ``(n, d)`` on ``j`` ``(n, d)``: ``z ~ delta j``.

    The standard error is Newey-West with one lag over steps: the one-step
    residuals of a re-anchored model share each observation's noise with the
    next step.
    """
    q = float(np.sum(j * j))
    total = float(np.sum(z * z))
    if q <= 0 or total <= 0:
        return FieldFit(0.0, float("inf"), 0.0)
    delta = float(np.sum(j * z)) / q
    error = z - delta * j
    score = np.sum(j * error, axis=1)  # per-step contribution to the normal equation
    var = float(np.sum(score**2) + 2 * np.sum(score[1:] * score[:-1])) / q**2
    explained = 1.0 - float(np.sum(error * error)) / total
    return FieldFit(delta, float(np.sqrt(max(var, 0.0))), max(explained, 0.0))


def robust_covariance(
    residuals: np.ndarray, floor: np.ndarray, clip: float = 4.0, iterations: int = 3
) -> np.ndarray:
    """Robust covariance ``(d, d)`` of ``residuals`` ``(n, d)``, plus ``diag(floor**2)``.

    Start from each dimension clipped at ``clip`` robust scales about its median, then
    winsorize whole rows in the Mahalanobis norm of the current estimate at the 99.9 %
    chi-square quantile, a few times: contact outliers lie far off the correlated core,
    and clipping dimensions one by one would inflate its thin directions.
    """
    from scipy.stats import chi2

    x = residuals - np.median(residuals, axis=0)
    scale = robust_scale(residuals, floor)
    n, d = x.shape
    ridge = np.diag(np.square(floor))
    clipped = np.clip(x, -clip * scale, clip * scale)
    cov = clipped.T @ clipped / max(n - 1, 1) + ridge
    bound = float(np.sqrt(chi2.ppf(0.999, d)))
    for _ in range(iterations):
        distance = np.linalg.norm(x @ whitener(cov).T, axis=1)
        weight = np.minimum(1.0, bound / np.maximum(distance, 1e-300))
        xw = x * weight[:, None]
        cov = xw.T @ xw / max(n - 1, 1) + ridge
    return cov


def sigma_point_covariance(spread: np.ndarray, base: np.ndarray) -> np.ndarray:
    """The covariance of a prediction's residual from its sigma points: ``diag(base) +
    sum_k spread_k spread_k' / 2``.

    ``spread`` ``(2m, d)``: the prediction from the anchor moved by plus and minus one noise
    sigma along each of ``m`` directions, minus the nominal prediction (central pairs: for a
    linear map ``J`` this is ``J diag(sigma^2) J'`` exactly, and it follows the map's
    curvature across one sigma); ``base`` ``(d,)``: the variance the sigma points do not
    carry (the end observation's own noise, the anchor's noise in directions not moved).
    """
    spread = np.asarray(spread, dtype=np.float64)
    return np.diag(np.asarray(base, dtype=np.float64)) + 0.5 * (spread.T @ spread)


def whitener(cov: np.ndarray) -> np.ndarray:
    """``T`` with ``T cov T^T = I`` (the inverse Cholesky factor): ``z = T r`` is white."""
    from scipy.linalg import cholesky, solve_triangular

    factor = cholesky(cov, lower=True)
    return solve_triangular(factor, np.eye(len(cov)), lower=True)


def matched_increments(
    j: np.ndarray, z: np.ndarray, ratio: np.ndarray, clip: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per block and direction, the projection of the whitened residual on the whitened
    sensitivity and its sim variance: ``a = j . z`` clipped at ``clip`` sim sigmas (one
    number or one per direction), and ``v = ratio |j|^2``.  ``j``: ``(..., F, d)``,
    ``z``: ``(..., d)``, ``ratio``: ``(F,)``."""
    a = np.einsum("...fd,...d->...f", j, z)
    v = ratio * np.einsum("...fd,...fd->...f", j, j)
    if not np.isfinite(clip).any():
        return a, v
    bound = clip * np.sqrt(v)
    return np.clip(a, -bound, bound), v


def ew_self_normalized(a: np.ndarray, v: np.ndarray, gamma: float) -> np.ndarray:
    """``N_t^2 / V_t`` with ``N_t = gamma N + a_t`` and ``V_t = gamma^2 V + v_t`` along axis 0."""
    return self_normalized(ew_sums(a, gamma), ew_sums(v, gamma**2))


def bootstrap_argmin_interval(
    penalty: np.ndarray, level: float = 0.95, draws: int = 400, seed: int = 0
) -> tuple[int, int]:
    """The ``level`` bootstrap interval of ``argmin_k sum_i penalty[i, k]`` over rows ``i``
    (``penalty``: ``(n, K)``, one row per independent transition), resampling rows."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(penalty), size=(draws, len(penalty)))
    best = np.argmin(penalty[rows].sum(axis=1), axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(best, [tail, 100 - tail], method="nearest")
    return int(low), int(high)
