"""The demo runs on the shipped policies and writes its report; bad input is one line."""

import pytest

from sim2real import demo_remedies
from sim2real.cli import main


def test_demo_runs_on_shipped_policies(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--task", "InvertedPendulum", "--seeds", "100-100", "--out", str(out)]
    assert main([*args, "--no-remedies"]) == 0
    text = capsys.readouterr().out
    for step in ("1. Verify", "2. Characterise", "3. Robustify", "Shapley"):
        assert step in text
    assert "4. Close" not in text
    for name in ("report.json", "report.md", "returns.png", "attribution.png"):
        assert (out / name).is_file()


@pytest.mark.slow
def test_demo_runs_every_remedy(tmp_path, capsys, monkeypatch):
    # The demo's own sizes, cut down: the steps and their files are what is checked here.
    for name, value in {
        "LOG_EPISODES": 2,
        "LOG_STEPS": 60,
        "MONITOR_STEPS": 60,
        "MONITOR_PREPARE_STEPS": 2000,
        "ENVELOPE_BUDGET": 40,
        "ENVELOPE_STEPS": 40,
    }.items():
        monkeypatch.setattr(demo_remedies, name, value)
    out = tmp_path / "demo"
    args = ["demo", "--task", "InvertedPendulum", "--seeds", "100-101", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    text = capsys.readouterr().out
    for step in ("4. Close", "5. Monitor", "6. Restrict", "on the robot:", "on the sim:"):
        assert step in text
    for name in ("calibration/report.json", "calibration/calibration.yaml", "logs/metadata.json"):
        assert (out / name).is_file()
    assert (out / "envelope" / "comparison.json").is_file()


def test_demo_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert main(["demo", "--task", "Hoppr", "--out", str(tmp_path / "x")]) == 2
    assert main(["demo", "--seeds", "0", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown task 'Hoppr'" in err[0] and "--seeds" in err[1]
    assert not (tmp_path / "x").exists()
