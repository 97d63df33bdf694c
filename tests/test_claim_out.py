"""The one resume/overwrite preamble of the commands that write results into --out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim2real.cli import main
from sim2real.cli_options import claim_out


def _episodes(path: Path, count: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"schema": "test"})] + [json.dumps({"seed": i}) for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_results_are_refused_without_resume_or_overwrite(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"already holds results \(episodes.jsonl\).*--resume"):
        claim_out(tmp_path, ["episodes.jsonl"], resume=False, overwrite=False)
    with pytest.raises(ValueError, match="exclude each other"):
        claim_out(tmp_path, [], resume=True, overwrite=True)
    claim_out(tmp_path, [], resume=False, overwrite=False)  # nothing held: nothing to say


def test_overwrite_discards_files_and_folders_and_nothing_else(tmp_path: Path) -> None:
    episodes = _episodes(tmp_path / "episodes.jsonl", 3)
    folder = tmp_path / "calibration"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / "x.json").write_text("{}")
    kept = tmp_path / "notes.txt"
    kept.write_text("mine")
    claim_out(
        tmp_path,
        ["episodes.jsonl"],
        resume=False,
        overwrite=True,
        discard=[episodes, folder, tmp_path / "absent.md"],
    )
    assert not episodes.exists() and not folder.exists()
    assert kept.read_text() == "mine"


def test_resume_says_how_many_episodes_it_reuses(tmp_path: Path, capsys) -> None:
    first = _episodes(tmp_path / "a" / "episodes.jsonl", 2)
    second = _episodes(tmp_path / "b" / "episodes.jsonl", 5)
    claim_out(tmp_path, ["a", "b"], resume=True, overwrite=False, reused=[first, second])
    assert "reusing 7 finished episodes from 2 results files" in capsys.readouterr().out
    claim_out(tmp_path, ["a"], resume=False, overwrite=True, discard=[first], reused=[second])
    assert capsys.readouterr().out == ""  # only --resume reports reuse
    assert not first.exists() and second.exists()


ENVELOPE = ["envelope", "--task", "Hopper", "--axis", "dynamics.friction_scale=0.5:1.5"]


def test_envelope_refuses_an_existing_map_before_any_work(tmp_path: Path, capsys) -> None:
    _episodes(tmp_path / "episodes.jsonl", 4)
    status = main([*ENVELOPE, "--policy", "no/such/policy", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "already holds results" in err and "--overwrite" in err
    status = main([*ENVELOPE, "--policy", "x", "--out", str(tmp_path), "--resume", "--overwrite"])
    assert status == 2 and "exclude each other" in capsys.readouterr().err


def test_envelope_names_the_maps_of_several_policies(tmp_path: Path, capsys) -> None:
    _episodes(tmp_path / "sim_seed1" / "episodes.jsonl", 2)
    argv = [*ENVELOPE, "--policy", "a/sim/seed0", "b/sim/seed1", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sim_seed1/episodes.jsonl" in err and "sim_seed0" not in err
