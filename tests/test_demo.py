"""The demo runs on the shipped policies and writes its report; bad input is one line."""

from sim2real.cli import main


def test_demo_runs_on_shipped_policies(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--task", "InvertedPendulum", "--seeds", "100-100", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    for step in ("1. Verify", "2. Characterise", "3. Remedy", "Shapley"):
        assert step in text
    for name in ("report.json", "report.md", "returns.png", "attribution.png"):
        assert (out / name).is_file()


def test_demo_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert main(["demo", "--task", "Hoppr", "--out", str(tmp_path / "x")]) == 2
    assert main(["demo", "--seeds", "0", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown task 'Hoppr'" in err[0] and "--seeds" in err[1]
    assert not (tmp_path / "x").exists()
