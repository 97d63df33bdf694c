"""The skew monitor: false alarms at the stated rate, detection, identification, files, input."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sim2real
from sim2real.remedies import monitor_stats as stats
from sim2real.remedies.monitor import (
    DROPOUT,
    LATENCY,
    STALE,
    Monitored,
    SkewMonitor,
    sim_streams,
)

TASK = "Hopper"


@pytest.fixture(scope="module")
def noiseless() -> SkewMonitor:
    """A monitor for a noiseless Hopper stream, prepared on random commands."""
    return SkewMonitor(TASK, 1e-4, 0.0, prepare_steps=2000, seed=1)


def _longest(streams):
    return max(streams, key=lambda s: len(s[1]))


def _first_shown(monitor: SkewMonitor, obs: np.ndarray, actions: np.ndarray, delay: int) -> int:
    """The monitor step of the first transition whose prediction with a total delay of
    ``delay`` substeps differs from the undelayed one by more than the noise (0.01)."""
    ref = monitor.reference
    for t in range(len(actions)):
        nominal = ref.predict(obs[t], actions[t])
        delayed = ref.predict(obs[t], actions[t], actions[:t], delay, scratch=True)
        if np.max(np.abs(delayed - nominal)) > 0.01:
            return t + 2
    return len(actions) + 1


def _first_alarm(monitor: SkewMonitor, obs: np.ndarray, actions: np.ndarray):
    """The state at the first alarm (None without one), after the whole stream has run."""
    monitor.reset()
    first = None
    for t in range(len(actions)):
        state = monitor.update(obs[t], actions[t])
        if state.alarm and first is None:
            first = state
    return first


# ---------------------------------------------------------------------- pure statistics
def test_threshold_extrapolates_an_exponential_tail() -> None:
    """iid Exp(1) steps: upcrossings of h happen at rate ~exp(-h); 1e-4 needs h ~ 9.2,
    beyond what 50,000 steps show with 10 alarms left: the tail fit must find it."""
    x = np.random.default_rng(0).exponential(size=50_000)
    found = stats.calibrate_threshold(lambda h: stats.upcrossings(x, h), len(x), 1e-4, 1.0)
    assert found.extrapolated
    assert -np.log(1e-4) - 0.7 < found.value < -np.log(1e-4) + 0.7


def test_threshold_without_a_tail_to_fit_stays_above_the_data() -> None:
    """A statistic that never alarms 10 times gives no tail to fit: the threshold is twice
    the first level the data never reach, not an arbitrary extrapolation below it."""
    x = np.zeros(10_000)
    x[[100, 5000]] = 7.0  # two isolated excursions
    found = stats.calibrate_threshold(lambda h: stats.upcrossings(x, h), len(x), 1e-6, 1.0)
    assert found.extrapolated and found.value > 7.0 and found.observed == 0.0


def test_field_fit_recovers_a_known_slope() -> None:
    rng = np.random.default_rng(1)
    j = rng.normal(size=(400, 5))
    z = 0.1 * j + rng.normal(size=(400, 5))
    fit = stats.fit_field(j, z)
    assert abs(fit.delta - 0.1) < 3 * fit.se
    assert 0.01 < fit.se < 0.05


def test_delay_llr_is_gaussian_near_the_model_and_bounded_far_off_it() -> None:
    """Near the noise model (small squared residuals, many degrees of freedom) the Student-t
    ratio is the Gaussian (base - delayed) / 2; for a transition far off the model (both
    residuals large, in ratio 2) it is about (dof + d) / 2 log 2 however large they are."""
    base, delayed = np.array([12.0]), np.array([[10.0, 14.0]])
    near = stats.delay_llr(base, delayed, dim=11, dof=1e6, clip=50.0)
    assert np.allclose(near, [[1.0, -1.0]], atol=1e-4)
    far = stats.delay_llr(np.array([2e6]), np.array([[1e6]]), dim=11, dof=5.0, clip=50.0)
    assert abs(far[0, 0] - 8.0 * np.log(2.0)) < 1e-3
    assert stats.delay_llr(np.array([1e9]), np.array([[0.0]]), 11, 5.0, 50.0)[0, 0] == 50.0


# ---------------------------------------------------------------------- false alarms
def test_no_alarm_on_noiseless_sim_streams(noiseless: SkewMonitor) -> None:
    """The re-anchored nominal model reproduces the sim variant exactly: no alarm at all."""
    streams = sim_streams(TASK, None, 2000, seed=500, lanes=4)
    assert sum(len(a) for _, a in streams) >= 2000
    for obs, actions in streams:
        assert _first_alarm(noiseless, obs, actions) is None


@pytest.mark.slow
def test_false_alarm_rate_holds_on_a_noisy_nominal_stream() -> None:
    """Calibrated on 8,000 noisy sim steps, fresh sim streams (other seeds) alarm at about
    the stated rate: with a rate of 3e-3 over >= 5,000 tested steps, at most 2.5x the
    rate (a binomial tolerance: P(X > 2.5 n p) < 1e-3 for n p >= 15)."""
    rate = 3e-3
    monitor = SkewMonitor(TASK, rate, 0.01, prepare_steps=8_000, matched=False, seed=2)
    alarms = tested = 0
    for obs, actions in sim_streams(TASK, None, 7_000, seed=50_000, noise_std=0.01):
        monitor.reset()
        for t in range(len(actions)):
            state = monitor.update(obs[t], actions[t])
            tested += state.used
            if state.alarm:
                alarms += 1
                monitor.rearm()
    assert tested >= 5_000
    assert alarms <= 2.5 * rate * tested


# ---------------------------------------------------------------------- detection
@pytest.mark.parametrize(
    "skews",
    [{"dynamics": {"mass_scale": 1.5}}, {"timing": {"obs_latency_s": 0.04}}],
    ids=["mass 1.5x", "obs latency 40 ms"],
)
def test_large_skew_alarms_within_five_steps(noiseless: SkewMonitor, skews: dict) -> None:
    obs, actions = _longest(sim_streams(TASK, None, 300, seed=7, skews=skews, lanes=2))
    state = _first_alarm(noiseless, obs, actions)
    assert state is not None and state.alarm_step <= 5


# ---------------------------------------------------------------------- identification
@pytest.mark.parametrize(
    ("skews", "field", "truth"),
    [
        ({"dynamics": {"actuator_strength": 0.7}}, "dynamics.actuator_strength", 0.7),
        ({"dynamics": {"damping_scale": 2.0}}, "dynamics.damping_scale", 2.0),
        ({"timing": {"obs_latency_s": 0.012, "action_latency_s": 0.008}}, LATENCY, 0.02),
    ],
    ids=["dynamics: motor", "dynamics: damping", "timing: total latency"],
)
def test_suspect_and_size_on_a_clear_case(
    noiseless: SkewMonitor, skews: dict, field: str, truth: float
) -> None:
    obs, actions = _longest(sim_streams(TASK, None, 400, seed=11, skews=skews, lanes=4))
    assert _first_alarm(noiseless, obs, actions) is not None
    suspects, estimate = noiseless.identify()
    assert suspects[0].field == field
    assert [s.score for s in suspects] == sorted((s.score for s in suspects), reverse=True)
    if field == LATENCY:
        assert estimate.substeps == 10  # 12 + 8 ms = 20 ms = 10 substeps of 2 ms, in total
        assert "not identifiable" in str(estimate)
    else:
        assert abs(estimate.value - truth) <= 0.1 * abs(truth - 1)
        assert estimate.low <= estimate.value <= estimate.high


# ---------------------------------------------------------------------- files, wrapper
def test_save_load_round_trip(noiseless: SkewMonitor, tmp_path) -> None:
    path = noiseless.save(tmp_path / "monitor.json")
    assert json.loads(path.read_text())["format"] == "sim2real.monitor/5"
    loaded = SkewMonitor.load(path)
    assert loaded.calibration == noiseless.calibration
    old = json.loads(path.read_text())
    old["format"] = "sim2real.monitor/4"
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="prepare it again"):
        SkewMonitor.load(tmp_path / "old.json")
    obs, actions = _longest(
        sim_streams(TASK, None, 200, seed=3, skews={"dynamics": {"mass_scale": 1.2}}, lanes=2)
    )
    for monitor in (noiseless, loaded):
        monitor.reset()
    for t in range(len(actions)):
        a, b = noiseless.update(obs[t], actions[t]), loaded.update(obs[t], actions[t])
        assert a == b


def test_monitored_puts_the_state_in_info(noiseless: SkewMonitor) -> None:
    env = Monitored(sim2real.make(TASK, skews={"dynamics": {"mass_scale": 1.3}}), noiseless)
    _, info = env.reset(seed=0)
    assert info["monitor"].alarm is False
    rng = np.random.default_rng(0)
    states = []
    for _ in range(10):
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 3))
        states.append(info["monitor"])
        if terminated or truncated:
            break
    assert [s.step for s in states] == list(range(1, len(states) + 1))
    assert states[-1].alarm


# ---------------------------------------------------------------------- bad input
def test_bad_input_is_refused_in_one_line(noiseless: SkewMonitor) -> None:
    noiseless.reset()
    good_obs, good_action = np.zeros(11), np.zeros(3)
    cases = [
        (np.zeros(10), good_action, "obs must have shape (11,)"),
        (np.full(11, np.nan), good_action, "obs must be finite"),
        (good_obs, np.zeros(4), "action must have shape (3,)"),
        (good_obs, [np.inf, 0, 0], "action must be finite"),
    ]
    for obs, action, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
            noiseless.update(obs, action)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="false_alarm_rate must be in"):
        SkewMonitor(TASK, 1.5)
    with pytest.raises(ValueError, match="sensor_noise_std must be one number or 11"):
        SkewMonitor(TASK, 1e-4, [0.01, 0.02])
    with pytest.raises(ValueError, match="unknown task"):
        SkewMonitor("Hoppr")


def test_cli_writes_report_and_refuses_bad_input(noiseless: SkewMonitor, tmp_path) -> None:
    from sim2real.cli import main

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metadata.json").write_text(json.dumps({
        "format": "sim2real.logs/1", "task": TASK, "control_dt": 0.008, "obs_dim": 11,
        "act_dim": 3, "episodes": 2,
    }))  # fmt: skip
    streams = sim_streams(TASK, None, 100, seed=4, skews={"dynamics": {"mass_scale": 1.3}})
    for i, (obs, actions) in enumerate(streams[:2]):
        times = np.arange(len(obs)) * 0.008
        np.savez(logs / f"episode_{i:04d}.npz", observations=obs, actions=actions, times=times)
    saved = noiseless.save(tmp_path / "monitor.json")
    out = tmp_path / "out"
    status = main(["monitor", "--task", TASK, "--logs", str(logs), "--monitor", str(saved),
                   "--out", str(out)])  # fmt: skip
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["alarmed"] == 2
    assert (out / "report.md").is_file() and (out / "monitor.png").stat().st_size > 0
    assert main(["monitor", "--task", "Hoppr", "--logs", str(logs)]) == 2
    assert main(["monitor", "--task", TASK, "--logs", str(tmp_path / "none")]) == 2


# ---------------------------------------------------------------------- whitening, matched filters
def test_whitener_whitens_a_correlated_sample_with_outliers() -> None:
    """The robust covariance ignores a few gross outliers; its whitener makes the core white."""
    rng = np.random.default_rng(3)
    mix = np.array([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [0.2, -0.5, 0.1]])
    x = rng.normal(size=(20_000, 3)) @ mix.T
    x[:40] *= 1e3  # contact outliers
    t = stats.whitener(stats.robust_covariance(x, np.full(3, 1e-9)))
    z = x[40:] @ t.T
    assert np.allclose(np.cov(z.T), np.eye(3), atol=0.08)


def test_sigma_point_covariance_is_the_noise_pushed_through_a_linear_map() -> None:
    """For a linear prediction ``J x``, central sigma points at +-sigma along each anchor
    dimension give ``diag(base) + J diag(sigma^2) J'`` exactly."""
    rng = np.random.default_rng(3)
    jac = rng.normal(size=(5, 3))
    sigma = np.array([0.01, 0.02, 0.005])
    spread = np.array([sign * s * jac[:, k] for k, s in enumerate(sigma) for sign in (1, -1)])
    base = np.full(5, 1e-4)
    expected = np.diag(base) + jac @ np.diag(sigma**2) @ jac.T
    assert np.allclose(stats.sigma_point_covariance(spread, base), expected, rtol=1e-12)


def test_matched_increments_clip_at_their_sim_sigma() -> None:
    j = np.array([[[1.0, 0.0]], [[0.0, 2.0]]])  # two blocks, one direction
    z = np.array([[10.0, 0.0], [0.0, 0.5]])
    a, v = stats.matched_increments(j, z, np.array([1.0]), clip=4.0)
    assert np.allclose(v[:, 0], [1.0, 4.0])
    assert np.allclose(a[:, 0], [4.0, 1.0])  # 10 clipped at 4 sigma; 1.0 within 8
    unclipped, _ = stats.matched_increments(j, z, np.array([1.0]), clip=np.inf)
    assert np.allclose(unclipped[:, 0], [10.0, 1.0])


# ---------------------------------------------------------------------- a noisy stream
@pytest.fixture(scope="module")
def noisy() -> SkewMonitor:
    """A Hopper monitor for 0.01 sensor noise, prepared on the shipped sim-trained policy."""
    return SkewMonitor(
        TASK, 1e-3, 0.01, policy="policies/Hopper/sim/seed0", prepare_steps=6000, seed=5
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("skews", "field", "within"),
    [
        ({"dynamics": {"actuator_strength": 0.7}}, "dynamics.actuator_strength", 200),
        ({"dynamics": {"friction_scale": 0.8}}, "dynamics.friction_scale", 120),
        ({"timing": {"obs_latency_s": 0.04}}, LATENCY, 6),
    ],
    ids=["dynamics: motor", "dynamics: friction", "timing: total latency"],
)
def test_noisy_stream_alarms_and_names_the_skew(
    noisy: SkewMonitor, skews: dict, field: str, within: int
) -> None:
    """Under 0.01 sensor noise the block matched filters (8-step open-loop windows, each
    whitened by its own covariance from the sigma points of its anchor's noise) and the
    delay tests still catch a clear skew early: the motor within 200 steps, friction 0.8
    within 120 (this policy falls about 240-280 steps in; whitened by the average contact
    covariance instead, the same streams alarmed at 209-220), the latency within 6 steps of
    the first one its delay changes a one-step prediction by more than the noise (a policy
    that repeats its command at the start shows a delay nothing before that)."""
    assert noisy.block == 8
    policy = "policies/Hopper/sim/seed0"
    obs, actions = _longest(
        sim_streams(TASK, policy, 0, seed=21, noise_std=0.01, skews=skews, lanes=2, episodes=2)
    )
    state = _first_alarm(noisy, obs, actions)
    start = _first_shown(noisy, obs, actions, delay=20) if field == LATENCY else 0
    assert state is not None and state.alarm_step <= start + within
    suspects, estimate = noisy.identify()
    assert suspects[0].field == field
    if field == LATENCY:
        assert estimate.substeps == 20  # 40 ms in 2 ms substeps


def test_opening_stale_readings_alarm_at_once_and_bound_the_latency(noisy: SkewMonitor) -> None:
    """A 20 ms observation latency (2.5 Hopper control steps) repeats the episode's first
    reading twice, noise and all (the latency delivers the first reading until a newer one
    is due). The monitor alarms on the first repeat, names the latency with the bound the
    repeats give (one repeat: at least one control step), keeps the stale readings out of
    its other tests, and the delay profile, held above that bound, finds 10 substeps."""
    policy = "policies/Hopper/sim/seed0"
    skews = {"timing": {"obs_latency_s": 0.02}}
    obs, actions = _longest(
        sim_streams(TASK, policy, 0, seed=31, noise_std=0.01, skews=skews, lanes=2, episodes=2)
    )
    np.testing.assert_array_equal(obs[1], obs[0])
    np.testing.assert_array_equal(obs[2], obs[0])
    assert not np.array_equal(obs[3], obs[0])
    noisy.reset()
    states = [noisy.update(o, a) for o, a in zip(obs, actions, strict=False)]
    first = next(s for s in states if s.alarm)
    assert (first.alarm_step, first.channel) == (2, STALE)
    assert first.suspects[0].field == LATENCY and first.estimate.substeps == 4
    assert not states[1].used and not states[2].used  # no transition ends at a stale reading
    assert states[4].used
    suspects, estimate = noisy.identify()
    assert suspects[0].field == LATENCY and estimate.substeps == 10


def test_dropped_readings_are_named_with_their_rate(noisy: SkewMonitor) -> None:
    """A reading dimension held at its last value while the model moves it is a dropped
    reading: the monitor alarms on it and estimates the dropout rate, its 95 % interval
    covering the truth; the sim variant's noisy stream has none (a repeat of a noisy value
    has probability zero)."""
    policy = "policies/Hopper/sim/seed0"
    skews = {"sensing": {"dropout_prob": 0.1}}
    obs, actions = _longest(
        sim_streams(TASK, policy, 0, seed=41, noise_std=0.01, skews=skews, lanes=2, episodes=2)
    )
    state = _first_alarm(noisy, obs, actions)
    assert state is not None and state.channel == STALE and state.alarm_step <= 10
    suspects, estimate = noisy.identify()
    assert suspects[0].field == DROPOUT and estimate.low <= 0.1 <= estimate.high
    assert estimate.high - estimate.low < 0.1
    obs, actions = _longest(sim_streams(TASK, policy, 0, seed=41, noise_std=0.01, episodes=2))
    noisy.reset()
    for o, a in zip(obs, actions, strict=False):
        noisy.update(o, a)
        assert noisy.predictor.stale is None


def test_block_replay_with_a_delay_uses_the_commands_before_the_anchor() -> None:
    """A one-step block replayed with a total delay of d substeps predicts what the
    reference model predicts for that transition under the same delay."""
    from sim2real.remedies.monitor_model import ReferenceModel, resolve_task
    from sim2real.remedies.monitor_predict import StreamPredictor

    reference = ReferenceModel(resolve_task(TASK))
    predictor = StreamPredictor(reference, block=1, delays=(), margin=0.0, max_delay=12)
    obs, actions = _longest(sim_streams(TASK, None, 40, seed=9, lanes=1))
    blocks = [b for t in range(6) if (b := predictor.step(obs[t], actions[t])[1]) is not None]
    block = blocks[-1]  # anchored at obs[4] under actions[4], commands before: actions[:4]
    assert np.array_equal(block.anchor, obs[4])
    scratch = (reference.model, reference._scratch)
    for delay in (2, 4, 6):
        expected = reference.predict(obs[4], actions[4], actions[:4], delay, scratch=True)
        assert np.allclose(predictor.replay(block, scratch, delay), expected, atol=1e-9)


def test_block_sigma_points_are_the_block_run_from_the_moved_anchor() -> None:
    """Each sigma point of a block is the nominal block run from its anchor plus that
    point's offset (minus the nominal prediction), and a position offset in contact moves
    the prediction by more than the offset itself (the noise is pushed through contact)."""
    from dataclasses import replace

    from sim2real.remedies.monitor_model import ReferenceModel, resolve_task
    from sim2real.remedies.monitor_predict import StreamPredictor

    reference = ReferenceModel(resolve_task(TASK))
    dims = reference.position_dims
    assert list(dims) == [0, 1, 2, 3, 4]  # Hopper: z, the torso angle and three joints
    offsets = np.zeros((2 * len(dims), reference.obs_dim))
    for k, dim in enumerate(dims):
        offsets[2 * k, dim], offsets[2 * k + 1, dim] = 0.01, -0.01
    predictor = StreamPredictor(reference, block=4, delays=(), margin=0.0, spread=offsets)
    obs, actions = _longest(sim_streams(TASK, "policies/Hopper/sim/seed0", 200, seed=9, lanes=1))
    blocks = [b for t in range(60) if (b := predictor.step(obs[t], actions[t])[1]) is not None]
    assert len(blocks) >= 10 and all(b.spread.shape == offsets.shape for b in blocks)
    scratch = (reference.model, reference._scratch)
    for block in blocks[:4]:
        nominal = block.end - block.residual
        for offset, row in zip(offsets, block.spread, strict=True):
            moved = predictor.replay(replace(block, anchor=block.anchor + offset), scratch)
            assert np.allclose(moved - nominal, row, atol=1e-6)
    in_contact = [b for b in blocks if b.contact]
    assert in_contact and max(np.abs(b.spread).max() for b in in_contact) > 0.05


@pytest.mark.slow
def test_transition_past_a_clipped_velocity_is_predicted_from_the_last_exact_observation() -> None:
    """Where the previous observation has a velocity on its clip, the transition is
    predicted open loop from the last exact observation: on a noiseless stream with a one-step
    total delay, the delayed prediction over the gap reproduces the stream (and the nominal
    one does not), so the delay test keeps its evidence through a fast gait."""
    from sim2real.remedies.monitor_model import ReferenceModel, resolve_task
    from sim2real.remedies.monitor_predict import StreamPredictor

    reference = ReferenceModel(resolve_task("Walker2d"))  # its fast gait hits the clip often
    predictor = StreamPredictor(reference, block=0, delays=(4,), margin=0.0, max_gap=4)
    skews = {"timing": {"action_latency_s": 0.008}}  # 4 substeps of 2 ms: one control step
    policy = "policies/Walker2d/sim/seed0"
    gaps = []
    for obs, actions in sim_streams("Walker2d", policy, 150, seed=4, skews=skews, lanes=1):
        predictor.reset()
        for t in range(len(actions)):
            one, _ = predictor.step(obs[t], actions[t])
            if one is not None and one.steps > 1:
                gaps.append(one)
    assert len(gaps) >= 5 and max(g.steps for g in gaps) <= 4
    delayed = np.array([np.abs(g.delayed[0]).max() for g in gaps])
    nominal = np.array([np.abs(g.residual).max() for g in gaps])
    assert np.median(delayed) < 1e-6 and np.median(nominal) > 1e-3
