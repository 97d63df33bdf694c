"""Start-state search of the multiple-shooting fit: short windows first, then the full ones.

A noisy reading can start a Walker2d window a centimetre inside the floor; from there the
search over a whole window lands in the wrong basin. Fitting the start states on the
windows cut short first, then lengthening them, must bring them back to the true state."""

from __future__ import annotations

import numpy as np
import pytest

import sim2real
from sim2real.paths import data_dir
from sim2real.remedies.calibration import FIELDS, CalibrationConfig, _Fitter
from sim2real.remedies.calibration_model import Delay, PipelineModel
from sim2real.remedies.record import record

NOISE = 0.01
DELAY = Delay(14, 5)  # substeps: 28 ms observation, 10 ms action latency
SCALES = {
    "mass_scale": 0.95,
    "friction_scale": 0.9,
    "damping_scale": 1.25,
    "actuator_strength": 1.05,
}


def _walker(steps: int = 200):
    """Noiseless Walker2d logs of the shipped sim policy under latency (the truth), and the
    same with reading noise added."""
    timing = {"obs_latency_s": DELAY.obs * 0.002, "action_latency_s": DELAY.action * 0.002}
    env = sim2real.make(
        "Walker2d", skews={"dynamics": SCALES, "timing": timing}, terminate_when_unhealthy=False
    )
    policy = data_dir("policies") / "Walker2d" / "sim" / "seed0"
    logs = record(policy, env, seeds=[3, 4, 5], max_steps=steps, excitation="sine")
    env.close()
    rng = np.random.default_rng(0)
    clean = [(e.observations, e.actions) for e in logs]
    noisy = [(o + rng.normal(0, NOISE, o.shape), a) for o, a in clean]
    return clean, noisy


def test_head_windows_predict_the_first_steps_of_the_full_ones() -> None:
    model = PipelineModel("Walker2d")
    clean, _ = _walker(40)
    fitter = _Fitter(model, clean, list(FIELDS), CalibrationConfig.for_task("Walker2d"), print)
    windows = fitter.windows(DELAY)
    model.set_scales(SCALES)
    full = model.simulate(windows, windows.targets[:, 0])
    short = model.simulate(windows.head(3, model.frame_skip), windows.targets[:, 0])
    np.testing.assert_array_equal(short, full[:, :4])


@pytest.mark.slow  # about 12 CPU s
def test_continuation_brings_start_states_back_to_the_truth() -> None:
    model = PipelineModel("Walker2d", threads=2)
    clean, noisy = _walker()
    cfg = CalibrationConfig.for_task("Walker2d", continuation=[2, 5])
    fitter = _Fitter(model, noisy, list(FIELDS), cfg, print)
    fitter.weights = np.full(model.obs_dim, 1 / NOISE)
    windows = fitter.windows(DELAY)
    truth = np.array([clean[e][0][s] for e, s in zip(windows.episode, windows.start, strict=True)])

    def far(starts: np.ndarray) -> float:
        """Share of windows whose start lies more than 5 noise levels off in some dimension."""
        return float(np.mean(np.abs(starts - truth).max(axis=1) > 5 * NOISE))

    direct = fitter.problem(windows, [], SCALES).solve({}, max_iterations=12).starts
    seeded = fitter.continue_starts(windows, SCALES)
    continued = fitter.problem(windows, [], SCALES).solve({}, seeded, max_iterations=12).starts
    print(
        f"far from the truth of {len(windows)}: direct {far(direct):.3f}, continued "
        f"{far(continued):.3f}"
    )
    assert far(direct) > 0.25  # the problem is there: a third of the searches go astray
    assert far(continued) < 0.6 * far(direct)
