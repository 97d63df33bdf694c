"""The operating envelope: exact statistics, a known boundary recovered, resume, bad axes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import binomtest

import sim2real.engines
from sim2real.cli import main
from sim2real.remedies.envelope import ENVELOPE_FILE, EnvelopeMap, Refinement, envelope
from sim2real.remedies.envelope_axes import Axis, check_axes, parse_axis
from sim2real.remedies.envelope_cells import Cell, across, coarse_grid
from sim2real.remedies.envelope_stats import (
    Status,
    classify,
    episodes_to_decide,
    lower_bound,
    upper_bound,
    zero_failure_episodes,
)
from sim2real.spec import SkewSpec, SkewSpecError

TASK = "InvertedPendulum"
MAGNITUDE = 1.5  # the scripted controller's force, N; the action range is [-3, 3]
# A deadband silences |command| < deadband * (high - low) = 6 * deadband: the controller's
# every command is silenced, and the pole falls, exactly when deadband > 1.5 / 6.
KNOWN_DEADBAND = MAGNITUDE / 6
SEEDS = range(32)
STEPS = 100  # an uncontrolled pole falls within 60 steps: below 0.8 x 100


class BangBang:
    """Pushes the cart with a constant force towards catching the pole: holds it for the
    whole episode whenever its commands get through."""

    def __init__(self, magnitude: float = MAGNITUDE) -> None:
        self.magnitude = magnitude
        self.gains = np.array([1.0, 20.0, 1.0, 3.0])

    def __call__(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        return self.magnitude * np.where(obs @ self.gains >= 0, 1.0, -1.0)[:, None]


def _map(axes, **options) -> EnvelopeMap:
    options = {
        "base": None,
        "seeds": SEEDS,
        "max_episode_steps": STEPS,
        "progress": False,
        "n_envs": 16,
        **options,
    }
    return envelope(BangBang(), TASK, axes, **options)


# ---------------------------------------------------------------------- statistics
@pytest.mark.parametrize(("k", "n"), [(0, 5), (3, 10), (29, 29), (27, 30), (50, 64)])
def test_bounds_are_scipys_one_sided_exact_intervals(k, n):
    lower = binomtest(k, n, alternative="greater").proportion_ci(0.95, method="exact").low
    upper = binomtest(k, n, alternative="less").proportion_ci(0.95, method="exact").high
    assert lower_bound(k, n, 0.95) == pytest.approx(lower, abs=1e-9)
    assert upper_bound(k, n, 0.95) == pytest.approx(upper, abs=1e-9)


def test_zero_failure_count_is_what_the_bound_implies():
    assert zero_failure_episodes(0.9, 0.95) == 29
    assert classify(29, 29, 0.9, 0.95) is Status.INSIDE
    assert classify(28, 28, 0.9, 0.95) is Status.UNCERTAIN
    assert zero_failure_episodes(0.95, 0.95) == 59
    assert classify(0, 2, 0.9, 0.95) is Status.OUTSIDE  # two failures rule out p >= 0.9
    assert classify(1, 2, 0.9, 0.95) is Status.UNCERTAIN
    assert episodes_to_decide(0, 0, 0.9, 0.95, 100) == 2
    assert episodes_to_decide(8, 8, 0.9, 0.95, 100) == 21
    assert episodes_to_decide(8, 8, 0.9, 0.95, 5) == 5


# ---------------------------------------------------------------------- axes and cells
def test_latency_axis_runs_whole_substeps():
    axis = Axis.build("timing.obs_latency_s", 0.0, 0.05, resolution=16, substep_s=0.002)
    steps = np.array(axis.values) / 0.002
    assert np.allclose(steps, np.round(steps)) and len(set(axis.values)) == axis.size == 16
    assert axis.substeps == tuple(int(s) for s in np.round(steps))
    few = Axis.build("timing.obs_latency_s", 0.0, 0.01, resolution=16, substep_s=0.002)
    assert few.values == pytest.approx((0.0, 0.002, 0.004, 0.006, 0.008, 0.01))
    # a requested latency is placed where the env realizes it: the nearest substep
    assert axis.index_range(0.0051, 0.0051) == axis.index_range(0.006, 0.006)


def test_log_axis_spacing_and_cells():
    axis = Axis.build("dynamics.mass_scale", 0.5, 2.0, "log", resolution=4)
    assert np.allclose(np.diff(np.log(axis.values)), np.log(4) / 4)
    assert axis.edges()[2] == pytest.approx(1.0)
    assert np.allclose(axis.unit_edges(), [0, 0.25, 0.5, 0.75, 1])


def test_cells_split_and_touch():
    cells = coarse_grid((16, 16), 4)
    assert len(cells) == 16 and sum(c.size for c in cells) == 256
    assert across(cells[0], cells[1]) == 1 and across(cells[0], cells[4]) == 0
    assert across(cells[0], cells[5]) is None  # corner only
    children = Cell((0, 0), (4, 4)).split((0, 1))
    assert len(children) == 4 and sum(c.size for c in children) == 16


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"dynamics.frction_scale": (0.5, 1.0)}, "unknown skew field 'dynamics.frction_scale'"),
        ({"dynamics.friction_scale": (1.0, 0.5)}, "low must be < high"),
        ({"dynamics.friction_scale": (1.0, 1.0)}, "low must be < high"),
        ({"dynamics.gravity": (0.0, 1.0)}, "takes no single number"),
        ({"actuation.deadband": (0.0, 0.7)}, "actuation.deadband must be <= 0.5"),
        ({"dynamics.friction_scale": (0.0, 1.0)}, "friction_scale must be > 0"),
        ({"dynamics.friction_scale": (0.0, 1.0, "log")}, "friction_scale must be > 0"),
        ({"actuation.noise_std": (0.0, 1.0, "log")}, "log spacing needs low > 0"),
        ({"actuation.noise_std": (0.0, 1.0, "cubic")}, "spacing must be one of"),
        ({"timing.obs_latency_s": (0.001, 0.0015)}, "holds no whole physics substep"),
        ({}, "axes must be a mapping of 1 to 3"),
    ],
)
def test_bad_axis_is_refused_in_one_line_before_any_episode(axes, message, monkeypatch):
    def no_episodes(*args, **kwargs):
        raise AssertionError("an episode was run")

    monkeypatch.setattr(sim2real.engines, "run_workload", no_episodes)
    with pytest.raises(SkewSpecError, match=message) as error:
        _map(axes)
    assert "\n" not in str(error.value)


def test_bad_axis_on_the_command_line(capsys):
    code = main(
        [
            "envelope",
            "--policy",
            "nowhere",
            "--task",
            TASK,
            "--axis",
            "dynamics.gravity=0:1",
            "--out",
            "unused",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "takes no single number" in err
    with pytest.raises(ValueError, match="expected FIELD=LOW:HIGH"):
        parse_axis("dynamics.friction_scale=0.4")
    assert parse_axis("dynamics.mass_scale=0.5:2:log") == ("dynamics.mass_scale", (0.5, 2.0, "log"))
    check_axes({"dynamics.mass_scale": (0.5, 2.0)}, SkewSpec())


# ---------------------------------------------------------------------- the adaptive map
def _oracle_run(ok, sizes, budget=10**6, coarse=4):
    """Run the refinement against a known success function of the lattice point."""
    refinement = Refinement(sizes, range(64), 0.9, 0.95, coarse=coarse)
    used = 0
    while used < budget and (requests := refinement.plan()):
        for point, seed in requests:
            refinement.record(point, seed, ok(point, seed))
        used += len(requests)
    return refinement, used


def test_refinement_finds_a_diagonal_boundary_with_few_episodes():
    def ok(point, seed):
        return point[0] + point[1] < 18

    refinement, used = _oracle_run(ok, (16, 16))
    statuses = {}
    for cell in refinement.leaves:
        status = refinement.status(cell)
        for point in cell.points():
            statuses[point] = status
    truth = {p: Status.INSIDE if ok(p, 0) else Status.OUTSIDE for p in statuses}
    agree = np.mean([statuses[p] is truth[p] for p in truth])
    assert not any(statuses[p] is Status.INSIDE and truth[p] is Status.OUTSIDE for p in truth)
    assert agree >= 0.95
    assert used <= 0.2 * 256 * 30


def test_refinement_in_three_dimensions_covers_the_lattice_and_finds_a_plane():
    def ok(point, seed):
        return point[0] + point[2] < 7

    refinement, used = _oracle_run(ok, (8, 8, 8), coarse=2)
    assert sum(cell.size for cell in refinement.leaves) == 8**3
    right = 0
    for cell in refinement.leaves:
        status = refinement.status(cell)
        truths = [ok(point, 0) for point in cell.points()]
        if status is Status.INSIDE:
            assert all(truths)  # never inside where any point fails
        right += sum(t == (status is Status.INSIDE) for t in truths)
    assert right >= 0.95 * 8**3
    assert used <= 0.3 * 8**3 * 30


def test_known_boundary_recovered_within_one_cell():
    env_map = _map({"actuation.deadband": (0.0, 0.37)}, resolution=16)
    axis = env_map.axes[0]
    width = (axis.high - axis.low) / axis.size
    edges = axis.edges()
    for cell in env_map.cells:
        low, high = edges[cell.lo[0]], edges[cell.hi[0]]
        if cell.status is Status.INSIDE:
            assert high <= KNOWN_DEADBAND + width
        elif cell.status is Status.OUTSIDE:
            assert low >= KNOWN_DEADBAND - width
    inside_top = max(edges[c.hi[0]] for c in env_map.cells if c.status is Status.INSIDE)
    assert abs(inside_top - KNOWN_DEADBAND) <= width
    assert env_map.area(Status.UNCERTAIN) <= 1 / axis.size  # at most the boundary cell
    assert env_map.area_inside == pytest.approx(KNOWN_DEADBAND / 0.37, abs=1 / axis.size)
    # the sim baseline came first, on the map's seeds
    assert env_map.sim["episodes"] == len(SEEDS) and env_map.sim["mean_return"] == STEPS
    # queries
    assert env_map.contains({"actuation": {"deadband": 0.1}}) == "inside"
    assert env_map.contains({"actuation": {"deadband": 0.33}}) == "outside"
    assert env_map.contains({"actuation.deadband": (0.05, 0.15)}) == "inside"
    assert env_map.contains({"actuation.deadband": (0.15, 0.33)}) == "uncertain"  # a whole box
    assert env_map.contains({"actuation": {"deadband": 0.45}}) == "uncertain"  # off the map
    other = {"actuation": {"deadband": 0.1}, "dynamics": {"mass_scale": 1.2}}
    assert env_map.contains(other) == "uncertain"  # a field off the axes, not the base
    assert env_map.contains("default") == "uncertain"  # the preset skews more than the map
    calibration = SimpleNamespace(intervals={"actuation.deadband": (0.05, 0.1)})
    assert env_map.contains(calibration) == "inside"
    unidentified = SimpleNamespace(intervals={"actuation.deadband": None})
    assert env_map.contains(unidentified) == "uncertain"


def test_two_axes_boundary_and_saved_report(tmp_path):
    env_map = _map(
        {"actuation.deadband": (0.1, 0.4), "dynamics.mass_scale": (0.8, 1.25, "log")},
        resolution=6,
        coarse=2,
        out=tmp_path,
    )
    grid = env_map.status_grid()
    deadband = np.array(env_map.axes[0].values)
    width = (0.4 - 0.1) / 6
    for i, value in enumerate(deadband):
        for status in grid[i]:
            if value < KNOWN_DEADBAND - width:
                assert status is Status.INSIDE
            elif value > KNOWN_DEADBAND + width:
                assert status is Status.OUTSIDE
    dense = grid.size * 30
    assert env_map.summary["map_episodes"] <= 0.5 * dense
    saved = json.loads((tmp_path / ENVELOPE_FILE).read_text())
    assert saved["schema"] == "sim2real.envelope/1"
    again = EnvelopeMap.from_dict(saved)
    assert again.cells == env_map.cells and again.area_inside == env_map.area_inside
    assert (tmp_path / "report.md").read_text().startswith("# Operating envelope")
    assert (tmp_path / "envelope_deadband_mass_scale.png").stat().st_size > 1000


def test_zero_failure_cells_need_29_episodes(tmp_path):
    env_map = _map({"actuation.deadband": (0.0, 0.2)}, out=tmp_path)  # never silenced
    assert {c.status for c in env_map.cells} == {Status.INSIDE}
    assert all(c.episodes == 29 and c.successes == 29 for c in env_map.cells)
    assert env_map.summary["map_episodes"] == 29 * len(env_map.cells) == 29 * 4
    assert env_map.area_inside == pytest.approx(1.0)
    assert (tmp_path / "envelope.png").is_file()  # one axis: the curve


def test_resume_after_an_interruption_recomputes_nothing(tmp_path):
    axes = {"actuation.deadband": (0.0, 0.37)}
    first = _map(axes, out=tmp_path, resolution=8)
    path = tmp_path / "episodes.jsonl"
    lines = path.read_text().splitlines()
    total = len(lines) - 1
    kept = 60
    path.write_text("\n".join(lines[: 1 + kept]) + "\n" + lines[1 + kept][:20])  # cut short
    resumed = _map(axes, out=tmp_path, resume=True, resolution=8)
    assert resumed.summary["episodes_run"] == total - kept
    assert resumed.cells == first.cells
    again = _map(axes, out=tmp_path, resume=True, resolution=8)
    assert again.summary["episodes_run"] == 0 and again.cells == first.cells
    with pytest.raises(ValueError, match="already holds results"):
        _map(axes, out=tmp_path, resolution=8)


def test_budget_stops_the_map():
    env_map = _map({"actuation.deadband": (0.0, 0.37)}, budget=40)
    assert env_map.summary["map_episodes"] == 40 and env_map.summary["stopped"] == "budget"
    assert sum(c.episodes for c in env_map.cells) == 40


def test_command_line_maps_a_shipped_policy(tmp_path, capsys):
    out = tmp_path / "env"
    code = main(
        [
            "envelope",
            "--policy",
            "policies/InvertedPendulum/sim/seed0",
            "--task",
            TASK,
            "--axis",
            "dynamics.actuator_strength=0.5:1.5",
            "--base",
            "none",
            "--resolution",
            "2",
            "--coarse",
            "1",
            "--seeds",
            "0-29",
            "--max-episode-steps",
            "20",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    saved = EnvelopeMap.load(out)
    assert saved.axes[0].values == pytest.approx((0.75, 1.25))
    assert saved.sim["episodes"] == 30 and (out / "report.md").is_file()
    assert "Operating envelope" in capsys.readouterr().out


def test_a_common_reference_return_sets_the_bar():
    env_map = _map({"actuation.deadband": (0.0, 0.2)}, reference_return=10 * STEPS)
    assert env_map.sim["mean_return"] == STEPS  # measured and reported all the same
    assert env_map.sim["success_return"] == pytest.approx(0.8 * 10 * STEPS)
    assert {c.status for c in env_map.cells} == {Status.OUTSIDE}  # no episode reaches it


def test_shipped_config_gives_the_settings_and_the_command_line_overrides_it():
    from sim2real.cli import build_parser
    from sim2real.remedies.envelope_cli import settings

    config = "configs/envelope/hopper_latency_friction.yaml"
    args = build_parser().parse_args(
        ["envelope", "--policy", "p", "--config", config, "--budget", "99"]
    )
    given = settings(args)
    assert given["task"] == "Hopper" and given["base"] is None and given["budget"] == 99
    assert given["seeds"] == list(range(100, 164)) and given["threshold"] == 0.8
    check_axes(given["axes"], SkewSpec(), substep_s=0.002)
    args = build_parser().parse_args(
        ["envelope", "--policy", "p", "--config", config, "--axis", "actuation.deadband=0:0.1"]
    )
    assert list(settings(args)["axes"]) == ["actuation.deadband"]
