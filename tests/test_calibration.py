"""Calibration recovers a known robot: exact values on noiseless logs, exact latencies,
an unidentifiable field flagged, and the command line end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sim2real
from sim2real.cli import main
from sim2real.paths import data_dir
from sim2real.remedies.calibration import Calibration, calibrate
from sim2real.remedies.calibration_model import Delay, PipelineModel, build_windows
from sim2real.remedies.record import record

TRUTH = {
    "dynamics": {
        "mass_scale": 1.1,
        "friction_scale": 0.8,
        "damping_scale": 1.3,
        "actuator_strength": 0.9,
    },
    "timing": {"obs_latency_s": 0.006, "action_latency_s": 0.004},  # 3 and 2 substeps
}
FAST = {"max_latency_s": 0.016, "resamples": 200, "search_windows": 24}


def _hopper_logs(spec: dict, seeds: list[int], steps: int):
    env = sim2real.make("Hopper", skews=spec, terminate_when_unhealthy=False)
    return record(None, env, seeds=seeds, max_steps=steps, excitation="sine")


@pytest.fixture(scope="module")
def noiseless() -> Calibration:
    return calibrate("Hopper", _hopper_logs(TRUTH, [0, 1, 2], 60), **FAST)


def test_pipeline_model_replays_the_skewed_env_exactly() -> None:
    logs = _hopper_logs(TRUTH, [5], 40)
    model = PipelineModel("Hopper")
    model.set_scales(TRUTH["dynamics"])
    episodes = [(e.observations, e.actions) for e in logs]
    windows = build_windows(
        episodes, frame_skip=4, length=10, delay=Delay(3, 2), exact=model.invert
    )
    predicted = model.simulate(windows, windows.targets[:, 0])
    np.testing.assert_allclose(predicted, windows.targets, atol=1e-9)
    wrong = build_windows(episodes, frame_skip=4, length=10, delay=Delay(2, 3), exact=model.invert)
    assert np.abs(model.simulate(wrong, wrong.targets[:, 0]) - wrong.targets).max() > 1e-3


def test_noiseless_logs_recover_the_truth(noiseless: Calibration) -> None:
    for name, value in TRUTH["dynamics"].items():
        assert noiseless.estimates[f"dynamics.{name}"] == pytest.approx(value, abs=1e-3)
        low, high = noiseless.intervals[f"dynamics.{name}"]
        assert low <= noiseless.estimates[f"dynamics.{name}"] <= high
    assert not noiseless.unidentified


def test_latency_is_recovered_exactly_to_the_substep(noiseless: Calibration) -> None:
    assert (noiseless.delay["obs_substeps"], noiseless.delay["action_substeps"]) == (3, 2)
    assert noiseless.spec.timing.obs_latency_s == pytest.approx(0.006)
    assert noiseless.spec.timing.action_latency_s == pytest.approx(0.004)


def test_calibrated_spec_is_a_real_variant_and_a_randomization(noiseless, tmp_path) -> None:
    _, real = sim2real.make_pair("Hopper", real=noiseless.spec)
    _, info = real.reset(seed=0)
    assert info["skews"]["dynamics.mass_scale"] == pytest.approx(1.1, abs=1e-3)
    randomization = noiseless.randomization(width=2.0)
    drawn = randomization.randomized["dynamics.actuator_strength"]
    assert drawn.dist.low <= 0.9 <= drawn.dist.high
    noiseless.save(tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"] == "sim2real.calibration/1"
    calibrated, nominal = report["residuals"]["calibrated"], report["residuals"]["nominal"]
    assert max(calibrated) < 1e-3 < max(nominal)
    assert (tmp_path / "traces.png").stat().st_size > 0
    loaded = sim2real.spec.SkewSpec.load(str(tmp_path / "calibration.yaml"))
    assert loaded.dynamics.damping_scale == pytest.approx(1.3, abs=1e-3)


def test_friction_without_contact_is_flagged_unidentifiable() -> None:
    env = sim2real.make("InvertedPendulum", skews={"dynamics": {"mass_scale": 1.2}})
    policy = data_dir("policies") / "InvertedPendulum/sim/seed0"  # balances, touches nothing
    logs = record(policy, env, seeds=[0, 1, 2], max_steps=60, excitation="sine", amplitude=0.5)
    cal = calibrate(
        "InvertedPendulum",
        logs,
        ["dynamics.mass_scale", "dynamics.friction_scale"],
        resamples=100,
    )
    assert cal.unidentified == ["dynamics.friction_scale"]
    assert any("friction_scale is not identified" in w for w in cal.warnings)
    assert "friction_scale" not in cal.spec.to_dict().get("dynamics", {})
    assert cal.estimates["dynamics.mass_scale"] == pytest.approx(1.2, abs=1e-3)


def test_bad_fields_and_logs_are_refused() -> None:
    logs = [{"observations": np.zeros((5, 11)), "actions": np.zeros((4, 3))}]
    with pytest.raises(ValueError, match="cannot be calibrated"):
        calibrate("Hopper", logs, ["dynamics.gravity"])
    with pytest.raises(ValueError, match="Walker2d's are 17 x 6"):
        calibrate("Walker2d", logs)


def test_cli_records_and_calibrates_end_to_end(tmp_path, capsys) -> None:
    spec = tmp_path / "robot.yaml"
    spec.write_text("dynamics:\n  actuator_strength: 0.85\ntiming:\n  action_latency_s: 0.004\n")
    logs = tmp_path / "logs"
    status = main(
        [
            "record",
            "--task",
            "Hopper",
            "--real",
            str(spec),
            "--excitation",
            "sine",
            "--seeds",
            "0-1",
            "--max-steps",
            "40",
            "--out",
            str(logs),
        ]
    )
    assert status == 0 and (logs / "episode_0001.npz").is_file()
    out = tmp_path / "calib"
    status = main(
        [
            "calibrate",
            "--task",
            "Hopper",
            "--logs",
            str(logs),
            "--fields",
            "dynamics.actuator_strength,timing.action_latency_s",
            "--max-latency",
            "0.008",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    assert report["estimates"]["dynamics.actuator_strength"] == pytest.approx(0.85, abs=1e-3)
    assert report["delay"]["action_substeps"] == 2
    assert (out / "report.md").is_file() and (out / "calibration.yaml").is_file()
    capsys.readouterr()
    assert main(["calibrate", "--task", "Hopper", "--logs", str(logs), "--fields", "x.y"]) == 2
    assert "cannot be calibrated" in capsys.readouterr().err


def test_report_round_trips_to_the_same_calibration(noiseless, tmp_path) -> None:
    noiseless.save(tmp_path)
    back = Calibration.from_dict(json.loads((tmp_path / "report.json").read_text()))
    assert back.spec.to_dict() == noiseless.spec.to_dict()
    assert back.intervals == {k: tuple(v) if v else v for k, v in noiseless.intervals.items()}
    assert back.randomization_mapping(2.0) == noiseless.randomization_mapping(2.0)
    with pytest.raises(ValueError, match="schema"):
        Calibration.from_dict({"schema": "other"})


def test_windows_starting_near_the_velocity_clip_are_skipped() -> None:
    model = PipelineModel("Hopper")
    obs = np.zeros((41, 11))
    obs[10, 7] = 9.8  # a noisy reading just under the clip: the true velocity may exceed 10
    obs[20, 8] = 10.0  # on the clip: never a start
    episodes = [(obs, np.zeros((40, 3)))]
    cut = {
        margin: build_windows(
            episodes, frame_skip=4, length=10, delay=Delay(0, 0), exact=model.invert,
            clip_margin=margin,
        ).start.tolist()
        for margin in (0.0, 0.5)
    }  # fmt: skip
    assert cut == {0.0: [0, 10, 21], 0.5: [0, 11, 21]}  # packed: the next usable step


def test_selection_shift_measures_the_pull_of_badly_fitted_windows() -> None:
    from sim2real.remedies.calibration_fit import Information, selection_shift

    by_window = np.tile(np.eye(1), (10, 1, 1))  # ten windows, one scale, unit information
    scores = np.zeros((10, 1))
    scores[9] = 0.9  # the badly fitted window pulls the estimate by -0.09 ...
    scores[:9] = -0.1  # ... and the good ones balance it at the joint optimum
    info = Information(by_window.copy(), scores.copy(), 1.0, by_window, scores)
    costs = np.array([1.0] * 9 + [10.0])
    shift = selection_shift(info, np.array([1.0]), costs)
    assert shift == pytest.approx([0.1], rel=1e-3)  # without it the scale moves by 0.1
    assert selection_shift(info, np.array([1.0]), np.ones(10)) == pytest.approx([0.0], abs=1e-9)


def test_delay_profile_range_is_the_likelihood_ratio_set() -> None:
    from sim2real.remedies.calibration import profile_range

    costs = {3: 10.0, 4: 10.5, 5: 40.0, 2: 12.5}
    assert profile_range(costs, 3, sigma2=1.0, allowed=3.84) == (0, 1)  # 2 x 2.5 > 3.84
    assert profile_range(costs, 3, sigma2=2.0, allowed=3.84) == (-1, 1)


def test_split_range_rejects_only_splits_the_start_windows_refute() -> None:
    from sim2real.remedies.calibration import split_range

    rng = np.random.default_rng(0)
    base = rng.uniform(50, 60, 8)
    costs = {2: base, 1: base + 40 + rng.normal(0, 1, 8), 3: base + rng.normal(0, 5, 8)}
    assert split_range(costs, 2, total=5, confidence=0.95) == (2, 3)  # 1 is refuted
    alike = {2: base, 1: base + rng.normal(0, 5, 8), 3: base + rng.normal(0, 5, 8)}
    assert split_range(alike, 2, total=5, confidence=0.95) == (0, 5)  # none refuted
