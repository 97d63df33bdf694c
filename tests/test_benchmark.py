"""End to end: train tiny policies, benchmark them on sim and real, write the tables; bad suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sim2real.benchmark import load_suite
from sim2real.cli import main
from sim2real.paths import data_dir
from sim2real.training import train


@pytest.fixture(scope="module")
def tiny_policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """policies/InvertedPendulum/{sim,dr}/seed0, each trained for 2,048 steps."""
    root = tmp_path_factory.mktemp("policies")
    randomization = data_dir("configs") / "randomization" / "invertedpendulum.yaml"
    for group, spec in (("sim", None), ("dr", randomization)):
        train(
            "InvertedPendulum",
            seed=0,
            timesteps=2048,
            randomization=spec,
            out=root / group / "seed0",
            progress=False,
        )
    return root


def write_suite(path: Path, **changes) -> Path:
    suite = yaml.safe_load((data_dir("configs") / "benchmark" / "default.yaml").read_text())
    suite.update(changes)
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_the_shipped_suite_is_valid():
    suite = yaml.safe_load((data_dir("configs") / "benchmark" / "default.yaml").read_text())
    assert {entry["task"] for entry in suite["tasks"]} >= {
        "InvertedPendulum",
        "InvertedDoublePendulum",
        "Hopper",
        "HalfCheetah",
        "Walker2d",
    }


def test_benchmark_end_to_end_and_resume(tiny_policies: Path, tmp_path: Path, capsys):
    groups = {"sim": str(tiny_policies / "sim"), "dr": str(tiny_policies / "dr")}
    suite = write_suite(
        tmp_path / "suite.yaml",
        seeds={"start": 100, "count": 3},
        tasks=[{"task": "InvertedPendulum", "groups": groups}],
    )
    out = tmp_path / "out"
    status = main(["benchmark", "--suite", str(suite), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    table = json.loads((out / "benchmark.json").read_text())
    assert table["schema"] == "sim2real.benchmark/1"
    assert [row["group"] for row in table["rows"]] == ["sim", "dr"]
    for row in table["rows"]:
        assert row["sim"]["value"] > 0 and "gap_default" in row and "gap_harsh" in row
    assert "| InvertedPendulum | sim" in (out / "benchmark.md").read_text()
    assert (out / "benchmark.png").stat().st_size > 1000
    episodes = (out / "InvertedPendulum" / "episodes.jsonl").read_text().splitlines()
    assert len(episodes) == 1 + 2 * 3 * 3  # a header, then groups x variants x seeds
    # Resuming finds every episode done and writes the same table.
    assert main(["benchmark", "--suite", str(suite), "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "benchmark.json").read_text())["rows"] == table["rows"]
    assert len((out / "InvertedPendulum" / "episodes.jsonl").read_text().splitlines()) == 19


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": {"start": 0, "count": 0}}, "seeds.count must be > 0"),
        ({"colour": "red"}, "unknown"),
        ({"real": "gentle"}, "real preset 'gentle' is not defined for InvertedPendulum"),
        (
            {"tasks": [{"task": "Hopper", "groups": {"sim": "/nonexistent"}}]},
            "group 'sim' has no trained policy in /nonexistent",
        ),
    ],
)
def test_bad_suites_fail_in_one_line_before_any_episode(tmp_path, capsys, changes, message):
    suite = write_suite(tmp_path / "suite.yaml", **changes)
    assert main(["benchmark", "--suite", str(suite), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_unknown_task_filter_is_refused():
    with pytest.raises(ValueError, match="'hopr' is not in the suite"):
        load_suite(None, ["Hopr"])


def test_kept_share_divides_by_the_reference_groups_sim_return():
    from sim2real.benchmark import kept_shares

    def est(value, low=None, high=None):
        return {"value": value, "low": low, "high": high}

    rows = [
        {
            "task": "Hopper",
            "group": "sim",
            "sim": est(2000.0, 1800.0, 2200.0),
            "default": est(500.0),
            "gap_default": est(1500.0),
        },
        {
            "task": "Hopper",
            "group": "dr",
            "sim": est(1800.0),
            "default": est(1500.0, 1200.0, 1700.0),
        },
        {"task": "Walker2d", "group": "dr", "sim": est(100.0)},  # no reference on this task
    ]
    sim_row, dr_row, lonely = kept_shares(rows)
    assert sim_row["kept_sim"]["value"] == 1.0
    assert sim_row["kept_default"]["value"] == 0.25
    assert "kept_gap_default" not in sim_row
    assert dr_row["kept_default"] == {"value": 0.75, "low": 0.6, "high": 0.85}
    assert lonely["kept_sim"]["value"] is None
