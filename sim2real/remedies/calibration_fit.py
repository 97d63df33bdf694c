"""The multiple-shooting fit: dynamics scales and window start states by least squares.

Unknowns: the dynamics scales (shared by every window) and each window's start
state (free, tied to its logged observation by that observation's residual).
Residuals: predicted minus logged observation, per dimension divided by the
noise level. The Jacobian is block-arrow shaped: each window's residuals depend
on its own start state and the shared scales only. Finite differences exploit
that (one batched rollout per start-state coordinate, for every window at once,
and one per scale), and each Levenberg-Marquardt step is solved exactly by
eliminating the start states window by window (the Schur complement), the
classic bundle-adjustment solve. ``scipy.optimize.least_squares`` with
``jac_sparsity`` computes the same Jacobian but its iterative ``lsmr`` steps did
not converge on these problems within a useful number of Jacobians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim2real.remedies.calibration_model import PipelineModel, Windows

PRIOR_SD = 100.0  # a vanishing pull of each scale toward 1.0: keeps a flat direction finite
SCALE_BOUNDS = (0.2, 5.0)
FD_STEP = 1e-6  # relative finite-difference step
ABS_TOL = 1e-6  # a cost drop below this (in units of the noise variance) is convergence


@dataclass
class Fit:
    """The solution of one multiple-shooting problem.

    Attributes:
        scales: fitted value per scale field.
        starts: (n_windows, obs_dim) fitted start states, as observations.
        residuals: (n_windows, W + 1, obs_dim) weighted residuals (0 where masked).
        cost: half the sum of squared weighted residuals.
        shared: (n_windows, rows, k) Jacobian columns of the scales at the solution.
        local: (n_windows, rows, obs_dim) each window's Jacobian in its start state.
        iterations: Jacobians computed.
    """

    scales: dict[str, float]
    starts: np.ndarray
    residuals: np.ndarray
    cost: float
    shared: np.ndarray
    local: np.ndarray
    iterations: int


class ShootingProblem:
    """Multiple shooting over ``windows`` with the scales ``free`` (others held at ``fixed``).

    Args:
        model: the pipeline model of the task.
        windows: the windows, cut for one delay.
        free: the scale fields to fit (``SCALE_FIELDS`` names).
        fixed: values of the scale fields held fixed.
        weights: (obs_dim,) one over each dimension's noise level.
    """

    def __init__(
        self,
        model: PipelineModel,
        windows: Windows,
        free: list[str],
        fixed: dict[str, float],
        weights: np.ndarray,
    ) -> None:
        self.model, self.windows = model, windows
        self.free, self.fixed = list(free), dict(fixed)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.mask = windows.mask.astype(np.float64)
        self.n, self.rows, self.dim = windows.targets.shape
        self.nevals = 0

    def predicted(self, scales: dict[str, float], starts: np.ndarray) -> np.ndarray:
        self.model.set_scales({**self.fixed, **scales})
        self.nevals += 1
        return self.model.simulate(self.windows, starts)

    def weighted(
        self, scales: dict[str, float], starts: np.ndarray, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Weighted residuals (n, W + 1, obs_dim), or of the windows ``rows`` only."""
        if rows is None:
            error = self.predicted(scales, starts) - self.windows.targets
            return error * self.weights * self.mask
        windows = self.windows.subset(rows)
        self.model.set_scales({**self.fixed, **scales})
        self.nevals += len(rows) / max(self.n, 1)
        error = self.model.simulate(windows, starts) - windows.targets
        return error * self.weights * self.mask[rows]

    def cost_at(self, scales: dict[str, float], starts: np.ndarray | None = None) -> float:
        """Half the sum of squared weighted residuals, start states held where given."""
        starts = self.windows.targets[:, 0] if starts is None else starts
        return 0.5 * float(np.sum(self.weighted(scales, starts) ** 2))

    def local_jacobian(
        self, theta: np.ndarray, starts: np.ndarray, base: np.ndarray, rows: np.ndarray
    ) -> np.ndarray:
        """Forward differences in the start states of the windows ``rows``: (len(rows), R, d)."""
        per = self.rows * self.dim
        scales = dict(zip(self.free, theta, strict=True))
        local = np.zeros((len(rows), per, self.dim))
        z = starts[rows]
        for j in range(self.dim):
            step = FD_STEP * np.maximum(1.0, np.abs(z[:, j]))
            moved = z.copy()
            moved[:, j] += step
            r = self.weighted(scales, moved, rows).reshape(len(rows), per)
            local[:, :, j] = (r - base[rows]) / step[:, None]
        return local

    def shared_jacobian(
        self, theta: np.ndarray, starts: np.ndarray, base: np.ndarray
    ) -> np.ndarray:
        """Forward differences in the scales, every window: (n, R, k)."""
        n, per = self.n, self.rows * self.dim
        scales = dict(zip(self.free, theta, strict=True))
        shared = np.empty((n, per, len(self.free)))
        for i, name in enumerate(self.free):
            step = FD_STEP * max(1.0, abs(theta[i]))
            moved_scales = {**scales, name: theta[i] + step}
            shared[:, :, i] = (self.weighted(moved_scales, starts).reshape(n, per) - base) / step
        return shared

    def jacobian(
        self, theta: np.ndarray, starts: np.ndarray, base: np.ndarray, free_starts: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Forward differences: ``(shared (n, R, k), local (n, R, d))``, R = (W + 1) * d
        (``local`` is zero when the start states are held)."""
        if free_starts:
            local = self.local_jacobian(theta, starts, base, np.arange(self.n))
        else:
            local = np.zeros((self.n, self.rows * self.dim, self.dim))
        return self.shared_jacobian(theta, starts, base), local

    def solve(
        self,
        scales: dict[str, float],
        starts: np.ndarray | None = None,
        *,
        max_iterations: int = 30,
        tol: float = 1e-9,
        free_starts: bool = True,
        settle: float = 1e-3,
        local: np.ndarray | None = None,
        active: np.ndarray | None = None,
    ) -> Fit:
        """Levenberg-Marquardt from ``scales`` and ``starts`` (default: the logged observations);
        with ``free_starts=False`` the start states are held (a cheap first pass).

        A window's start-state Jacobian is recomputed only while the window is still
        settling (its last step moved it and cut its cost by more than ``settle`` of
        itself); a settled window (or one whose step was refused, so its start did not
        move) keeps its last one, which changes little when the scales do. The residuals
        are always exact, so the fixed point is the same. ``local`` and ``active`` carry
        such Jacobians over from an earlier solve of the same windows.
        """
        z = (self.windows.targets[:, 0] if starts is None else starts).copy()
        theta = np.array([scales[f] for f in self.free], dtype=np.float64)
        k, n, per = len(self.free), self.n, self.rows * self.dim
        as_dict = lambda values: dict(zip(self.free, values, strict=True))  # noqa: E731
        r = self.weighted(as_dict(theta), z).reshape(n, per)
        costs = 0.5 * np.sum(r**2, axis=1)
        total = costs.sum() + _prior(theta)
        lam_windows, lam_scales, iterations = np.full(n, 1e-3), 1e-3, 0
        shared = np.zeros((n, per, k))
        if local is None or active is None or not free_starts:
            local = np.zeros((n, per, self.dim))
            active = np.full(n, free_starts)
        else:
            local, active = local.copy(), np.asarray(active, dtype=bool).copy()
        for iterations in range(1, max_iterations + 1):  # noqa: B007 (returned)
            if k:
                shared = self.shared_jacobian(theta, z, r)
            if active.any():
                rows = np.flatnonzero(active)
                local[rows] = self.local_jacobian(theta, z, r, rows)
            accepted = False
            for _ in range(8):
                d_theta, d_z = lm_step(shared, local, r, theta, lam_windows, lam_scales)
                if not free_starts:
                    d_z[:] = 0.0
                new_theta = np.clip(theta + d_theta, *SCALE_BOUNDS)
                moved = self.weighted(as_dict(new_theta), z + d_z).reshape(n, per)
                moved_costs = 0.5 * np.sum(moved**2, axis=1)
                if k and free_starts:  # each window may keep its old start under the new scales
                    kept = self.weighted(as_dict(new_theta), z).reshape(n, per)
                    kept_costs = 0.5 * np.sum(kept**2, axis=1)
                elif k:
                    kept, kept_costs = moved, moved_costs
                else:
                    kept, kept_costs = r, costs
                take = np.isfinite(moved_costs) & (moved_costs < kept_costs)
                new_costs = np.where(take, moved_costs, kept_costs)
                new_total = new_costs.sum() + _prior(new_theta)
                if np.isfinite(new_total) and new_total < total:
                    accepted = True
                    break
                lam_scales *= 8.0
                lam_windows *= 8.0
            if not accepted:
                break
            drop = total - new_total
            if free_starts:
                active = take & (costs - new_costs > settle * new_costs)
            theta, total, costs = new_theta, new_total, new_costs
            z = np.where(take[:, None], z + d_z, z)
            r = np.where(take[:, None], moved, kept)
            lam_windows = np.clip(np.where(take, lam_windows / 4.0, lam_windows * 8.0), 1e-9, 1e9)
            lam_scales = max(lam_scales / 4.0, 1e-9)
            if drop <= tol * total + ABS_TOL:
                break
        fitted = dict(zip(self.free, (float(v) for v in theta), strict=True))
        residuals = r.reshape(n, self.rows, self.dim)
        return Fit(fitted, z, residuals, 0.5 * float(np.sum(r**2)), shared, local, iterations)


def _prior(theta: np.ndarray) -> float:
    return 0.5 * float(np.sum(((theta - 1.0) / PRIOR_SD) ** 2))


def lm_step(
    shared: np.ndarray,
    local: np.ndarray,
    r: np.ndarray,
    theta: np.ndarray,
    lam_windows: np.ndarray,
    lam_scales: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One damped Gauss-Newton step, the start states eliminated window by window.

    Solves ``(J'J + D) dx = -J'r`` for ``dx = (d_theta, d_z)`` with
    ``J = [shared | blockdiag(local)]``, where ``D`` is Marquardt's ``lam diag(J'J)``
    with one ``lam`` per window (its start state) and one for the scales; a weak prior
    pulls each scale toward 1.
    """
    k, dim = shared.shape[2], local.shape[2]
    a = np.einsum("npi,npj->nij", local, local)
    a = a + lam_windows[:, None, None] * np.einsum("nii->ni", a)[:, :, None] * np.eye(dim)
    a += 1e-12 * np.eye(dim)
    b = np.einsum("npi,np->ni", local, r)
    prior = np.eye(k) / PRIOR_SD**2
    if k:
        c = np.einsum("npi,npj->nij", local, shared)
        g_total = np.einsum("npi,np->i", shared, r) + (theta - 1.0) / PRIOR_SD**2
        h = np.einsum("npi,npj->ij", shared, shared) + prior
        h += lam_scales * np.diag(np.diag(h))
        solved = np.linalg.solve(a, np.concatenate([c, b[:, :, None]], axis=2))
        schur = h - np.einsum("nij,nik->jk", c, solved[:, :, :k])
        rhs = g_total - np.einsum("nij,ni->j", c, solved[:, :, k])
        d_theta = -np.linalg.solve(schur, rhs)
        d_z = -(solved[:, :, k] + np.einsum("nij,j->ni", solved[:, :, :k], d_theta))
    else:
        d_theta = np.zeros(0)
        d_z = -np.linalg.solve(a, b[:, :, None])[:, :, 0]
    return d_theta, d_z


# ---------------------------------------------------------------------- uncertainty
@dataclass(frozen=True)
class Information:
    """What the fit knows about the scales, with each window's start state profiled out.

    Attributes:
        by_episode: (n_episodes, k, k) Gauss-Newton information of each episode.
        scores: (n_episodes, k) each episode's gradient of the cost in the scales.
        sigma2: residual variance in weighted units (1.0 when the weights are right).
    """

    by_episode: np.ndarray
    scores: np.ndarray
    sigma2: float
    by_window: np.ndarray | None = None
    window_scores: np.ndarray | None = None

    @property
    def total(self) -> np.ndarray:
        return self.by_episode.sum(axis=0)


def information(fit: Fit, windows: Windows, n_episodes: int) -> Information:
    """The scales' information and scores per episode, from the Jacobian at the solution.

    For window ``w`` with scale columns ``G`` and start-state columns ``L`` the start
    state is eliminated (Schur complement): ``S_w = G'G - G'L (L'L)^-1 L'G`` and
    ``u_w = G'r - G'L (L'L)^-1 L'r``.
    """
    g, lo = fit.shared, fit.local
    n, _, k = g.shape
    dim = lo.shape[2]
    r = fit.residuals.reshape(n, -1)
    gram = np.einsum("npi,npj->nij", lo, lo) + 1e-12 * np.eye(dim)
    cross = np.einsum("npi,npj->nij", lo, g)
    solved = np.linalg.solve(
        gram, np.concatenate([cross, np.einsum("npi,np->ni", lo, r)[:, :, None]], 2)
    )
    s_w = np.einsum("npi,npj->nij", g, g) - np.einsum("nij,nik->njk", cross, solved[:, :, :k])
    u_w = np.einsum("npi,np->ni", g, r) - np.einsum("nij,ni->nj", cross, solved[:, :, k])
    by_episode = np.zeros((n_episodes, k, k))
    scores = np.zeros((n_episodes, k))
    np.add.at(by_episode, windows.episode, s_w)
    np.add.at(scores, windows.episode, u_w)
    used = int(np.count_nonzero(windows.mask))
    dof = max(1, used - n * dim - k)
    return Information(by_episode, scores, float(np.sum(r**2)) / dof, s_w, u_w)


def selection_shift(
    info: Information, estimate: np.ndarray, window_costs: np.ndarray, factors: tuple = (1.5, 2.5)
) -> np.ndarray:
    """How far the scales move when only the best-fitted windows count: (k,).

    For each factor ``f`` the windows whose cost per degree of freedom is at most ``f`` x
    the median's are kept and the scales take one Gauss-Newton step on them alone
    (``-(sum S_w)^-1 sum u_w``, start states profiled out); the largest move per scale
    is returned. A window left in the wrong contact mode by its start-state search
    pulls the scales while the well-fitted ones do not, so this measures the error that
    the windows' fit quality leaves in the estimate, which an episode bootstrap cannot see.
    """
    assert info.by_window is not None and info.window_scores is not None
    k = estimate.size
    shift = np.zeros(k)
    median = np.median(window_costs)
    for factor in factors:
        keep = window_costs <= factor * median
        if keep.sum() < max(2, len(keep) // 2):
            continue
        hessian = info.by_window[keep].sum(axis=0) + np.eye(k) / PRIOR_SD**2
        step = -np.linalg.solve(hessian, info.window_scores[keep].sum(axis=0))
        shift = np.maximum(shift, np.abs(step))
    return shift


def bootstrap_scales(
    info: Information, estimate: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Linearized bootstrap over episodes: one Gauss-Newton step per resample.

    Resampling episodes with replacement reweights their residuals; the start states
    stay optimal under any weight, so each resample's solution is, to first order,
    ``estimate - (sum_e w_e S_e)^-1 sum_e w_e u_e``. Returns (resamples, k).
    """
    n_e = len(info.scores)
    present = np.flatnonzero(np.abs(info.by_episode).sum(axis=(1, 2)) > 0)
    draws = np.zeros((resamples, estimate.size))
    for b in range(resamples):
        picks = rng.choice(present, size=len(present), replace=True)
        weight = np.bincount(picks, minlength=n_e).astype(np.float64)
        hessian = np.einsum("e,eij->ij", weight, info.by_episode)
        hessian += np.eye(estimate.size) / PRIOR_SD**2
        score = weight @ info.scores
        draws[b] = estimate - np.linalg.solve(hessian, score)
    return draws
