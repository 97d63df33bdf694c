#!/usr/bin/env python
"""Experiment (session 13, a negative result kept to be rerun): a full-state filter for IDP.

The shipped compensator filters each reading per dimension (:class:`StateFilter`). This
experiment replaces that, for one evaluation, with a steady-state Kalman filter over the
pendulum's whole state ``(qpos, qvel)``: the transition and the observation map linearized
at the upright rest state (finite differences of the nominal model over one control
step), the process covariance measured as the model's one-step state error under the
policy's randomized dynamics and actuation (full covariance, ``--q-scale`` x), the sensor
noise the policy's filter records (``--r-scale`` x), the gain from the discrete Riccati
equation. Each reading then updates the model's prediction from the last estimate along
that gain, dropped readings (a dimension repeated to the bit) ignored, as shipped.

    python scripts/experiments/idp_full_state_filter.py \
        policies/InvertedDoublePendulum/robust/seed0 --seeds 200-205 --mode full --r-scale 1

``--mode shipped`` runs the shipped per-dimension filter, ``--mode raw`` no filter at all.
Result in docs/robustify.md ("InvertedDoublePendulum (session 13)").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TASK = "InvertedDoublePendulum"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", type=Path)
    parser.add_argument("--seeds", default="200-205")
    parser.add_argument("--variants", default="harsh,default")
    parser.add_argument("--mode", choices=["full", "shipped", "raw"], default="full")
    parser.add_argument("--r-scale", type=float, default=1.0, help="x the recorded sensor noise")
    parser.add_argument("--q-scale", type=float, default=1.0, help="x the measured process cov.")
    args = parser.parse_args(argv)
    import scipy.linalg
    import torch

    import sim2real
    from sim2real.evaluation.cli import parse_seeds
    from sim2real.training import compensation

    torch.set_num_threads(1)
    meta = json.loads((args.policy / "metadata.json").read_text())
    noise = np.asarray(meta["latency_compensation"]["filter"]["noise_std"])
    helper = compensation.LatencyPredictor(TASK, compensation.LatencyCompensation())
    model = helper._model
    nx, measured = model.nq + model.nv, np.flatnonzero(noise > 0)

    def transition(x: np.ndarray) -> np.ndarray:
        return _step(helper, x, np.zeros(model.nu))

    a = _jacobian(transition, np.zeros(nx))
    h = _jacobian(lambda x: _obs_of(helper, x), np.zeros(nx))[measured]
    q = args.q_scale * _process_covariance(helper, args.policy, meta["randomization"])
    r = np.diag((args.r_scale * noise[measured]) ** 2)
    prior = scipy.linalg.solve_discrete_are(a.T, h.T, q, r)
    gain = prior @ h.T @ np.linalg.inv(h @ prior @ h.T + r)

    def full_filter(self, row: int, raw: np.ndarray, sent: list) -> tuple[np.ndarray, bool]:
        last = self._estimate_obs[row]
        if self._near_clip(last) or self._near_clip(raw):
            return raw, False
        obs_lag, action_lag = self.split(row)
        now = len(sent) * self._frame_skip
        begin, end = self._reading_interval(now, obs_lag)
        predicted = self._roll(last, begin, end, sent, action_lag, self.strength(row))
        settled = self.estimator is None or now - self._frame_skip >= self.estimator.max_delay
        innovation, dropped = (raw - predicted)[measured], False
        if settled and end > begin:
            repeated = ((raw == self._last_obs[row]) & (predicted != last))[measured]
            innovation, dropped = np.where(repeated, 0.0, innovation), bool(repeated.any())
        estimate = _obs_of(self, _state_of(self, predicted) + gain @ innovation)
        estimate[noise == 0] = raw[noise == 0]
        return estimate, dropped

    if args.mode == "full":
        compensation.LatencyPredictor._filter = full_filter
    elif args.mode == "raw":
        compensation.LatencyPredictor._filter = lambda self, row, raw, sent: (raw, False)
    variants = args.variants.split(",")
    report = sim2real.evaluate_gap(str(args.policy), TASK, seeds=list(parse_seeds(args.seeds)),
                                   real=variants[0], extra=variants[1:], attribution=False,
                                   n_envs=8, progress=False)  # fmt: skip
    returns: dict[str, list[float]] = {}
    for episode in json.loads(report.to_json())["episodes"]:
        returns.setdefault(episode["variant"], []).append(episode["return"])
    means = {variant: round(float(np.mean(v)), 1) for variant, v in returns.items()}
    print(json.dumps({"mode": args.mode, "r_scale": args.r_scale, "q_scale": args.q_scale,
                      "seeds": args.seeds, **means}))  # fmt: skip
    return 0


def _state_of(predictor, obs: np.ndarray) -> np.ndarray:
    return np.concatenate(predictor._invert(obs))


def _obs_of(predictor, x: np.ndarray) -> np.ndarray:
    import mujoco

    model, data = predictor._model, predictor._data
    data.qpos[:], data.qvel[:], data.act[:] = x[: model.nq], x[model.nq :], 0.0
    mujoco.mj_forward(model, data)
    return predictor._env._get_obs().copy()


def _step(predictor, x: np.ndarray, command: np.ndarray) -> np.ndarray:
    import mujoco

    model, data = predictor._model, predictor._data
    data.qpos[:], data.qvel[:], data.act[:] = x[: model.nq], x[model.nq :], 0.0
    data.ctrl[:] = command
    mujoco.mj_step(model, data, nstep=predictor._frame_skip)
    return np.concatenate([data.qpos, data.qvel])


def _jacobian(f, x0: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    columns = []
    for j in range(len(x0)):
        step = np.zeros(len(x0))
        step[j] = eps
        columns.append((f(x0 + step) - f(x0 - step)) / (2 * eps))
    return np.stack(columns, axis=1)


def _process_covariance(predictor, policy: Path, randomization: dict) -> np.ndarray:
    """The nominal model's one-step state error under the randomized dynamics and actuation."""
    from sim2real.training.compensation import policy_transitions

    errors = np.asarray([
        _state_of(predictor, after) - _step(predictor, _state_of(predictor, obs), sent[-1])
        for obs, sent, after in policy_transitions(TASK, str(policy), randomization)
        if predictor._invert.exact(after)
    ])  # fmt: skip
    return errors.T @ errors / len(errors)


if __name__ == "__main__":
    raise SystemExit(main())
