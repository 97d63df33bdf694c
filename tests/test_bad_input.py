"""Bad input never slips through: one table of inputs, each refused before any work.

Every case asserts the refusal (the exception from the library, exit status 2 and
one line on stderr from the command line) and that the message names the input:
the field, option or argument, and usually the value. The command-line cases run
in-process through ``sim2real.cli.main``; a few run as a subprocess to check the
exit status, the single line and the absence of a traceback as a user sees them.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sim2real
from sim2real.cli import main
from sim2real.paths import data_dir
from sim2real.spec import SkewSpec, SkewSpecError

INF, NAN = math.inf, math.nan
POLICY = data_dir("policies") / "InvertedPendulum" / "sim" / "seed0"
UNWRITABLE = "/proc/sim2real-out"  # refused even to root


@dataclass(frozen=True)
class Case:
    """One bad input: ``run`` must raise ``error`` whose message holds every ``names``."""

    id: str
    run: Callable[[Path], Any]
    names: tuple[str, ...]
    error: type[Exception] = ValueError  # SkewSpecError is one; TypeError for a wrong type


def _spec(section: str, field: str, value: Any) -> Callable[[Path], Any]:
    return lambda _: SkewSpec.load({section: {field: value}})


def _randomization(section: str, field: str, dist: dict) -> Callable[[Path], Any]:
    from sim2real.randomization import RandomizationSpec

    return lambda _: RandomizationSpec.load({section: {field: dist}})


def _pair(*args: Any, **kwargs: Any) -> Callable[[Path], Any]:
    return lambda _: sim2real.make_pair(*args, **kwargs)


def _yaml(text: str, *, randomization: bool = False) -> Callable[[Path], Any]:
    def run(tmp: Path) -> Any:
        path = tmp / "spec.yaml"
        path.write_text(text)
        if randomization:
            from sim2real.randomization import RandomizationSpec

            return RandomizationSpec.load(path)
        return SkewSpec.load(path)

    return run


def _gap(policy: Any = None, task: str = "InvertedPendulum", **kwargs: Any) -> Callable:
    def run(tmp: Path) -> Any:
        from sim2real.evaluation import evaluate_gap

        chosen = policy(tmp) if callable(policy) else policy
        args = {"seeds": range(2), "attribution": False, "max_episode_steps": 5} | kwargs
        return evaluate_gap(chosen if chosen is not None else _zero_policy, task, **args)

    return run


def _zero_policy(obs: np.ndarray, **_: Any) -> np.ndarray:
    return np.zeros((len(obs), 1))


def _policy_without_stats(tmp: Path) -> Path:
    folder = tmp / "no-stats" / "seed0"
    shutil.copytree(POLICY, folder)
    (folder / "vecnormalize.pkl").unlink()
    return folder


# Every numeric field, and one element of each per-dimension or vector field.
SCALAR_FIELDS = [
    ("dynamics", "friction_scale"),
    ("dynamics", "mass_scale"),
    ("dynamics", "damping_scale"),
    ("dynamics", "actuator_strength"),
    ("actuation", "noise_std"),
    ("actuation", "deadband"),
    ("sensing", "noise_std"),
    ("sensing", "bias_std"),
    ("sensing", "dropout_prob"),
    ("timing", "obs_latency_s"),
    ("timing", "action_latency_s"),
]
NON_FINITE: list[Case] = [
    Case(f"{section}.{field}={value}", _spec(section, field, value), (f"{section}.{field}", text))
    for section, field in SCALAR_FIELDS
    for value, text in ((INF, "inf"), (NAN, "nan"))
]
NON_FINITE += [
    Case("gravity z=nan", _spec("dynamics", "gravity", [0, 0, NAN]), ("dynamics.gravity", "nan")),
    Case("gravity x=-inf", _spec("dynamics", "gravity", [-INF, 0, -9.81]), ("gravity", "inf")),
    Case(
        "sensing.noise_std per-dim nan",
        _spec("sensing", "noise_std", [0.01, NAN, 0.01]),
        ("sensing.noise_std", "nan"),
    ),
    Case(
        "sensing.bias_std per-dim inf",
        _spec("sensing", "bias_std", [0.01, 0.01, INF]),
        ("sensing.bias_std", "inf"),
    ),
    Case(
        "randomization high=inf",
        _randomization("dynamics", "friction_scale", {"dist": "uniform", "low": 0.5, "high": INF}),
        ("friction_scale", "inf"),
    ),
    Case(
        "randomization low=nan",
        _randomization("dynamics", "mass_scale", {"dist": "uniform", "low": NAN, "high": 1.2}),
        ("mass_scale", "nan"),
    ),
    Case(
        "randomization loguniform high=inf",
        _randomization("dynamics", "mass_scale", {"dist": "loguniform", "low": 0.8, "high": INF}),
        ("mass_scale", "inf"),
    ),
    Case(
        "randomization latency high=nan",
        _randomization("timing", "obs_latency_s", {"dist": "uniform", "low": 0.0, "high": NAN}),
        ("obs_latency_s", "nan"),
    ),
]

SPEC_AND_PAIRING: list[Case] = [
    Case("unknown field", _spec("dynamics", "friction", 0.7), ("dynamics.friction", "allowed")),
    Case("unknown section", lambda _: SkewSpec.load({"dynamic": {}}), ("dynamic", "allowed")),
    Case("negative friction", _spec("dynamics", "friction_scale", -0.5), ("friction_scale",)),
    Case("a string for a number", _spec("dynamics", "mass_scale", "heavy"), ("mass_scale",)),
    Case("make_pair(42)", _pair(42), ("env argument", "42"), TypeError),
    Case("make_pair(None)", _pair(None), ("env argument", "None"), TypeError),
    Case("unknown task", _pair("Hoper"), ("Hoper", "allowed")),
    Case("unknown preset", _pair("Hopper", real="nope"), ("nope", "default")),
    Case(
        "obs latency below one substep",
        _pair("Hopper", real={"timing": {"obs_latency_s": 0.001}}),
        ("obs_latency_s", "0.001", "substep"),
    ),
    Case(
        "action latency below one substep",
        _pair("Hopper", real={"timing": {"action_latency_s": 0.0004}}),
        ("action_latency_s", "substep"),
    ),
    Case(
        "obs latency longer than the episode",
        _pair("Hopper", real={"timing": {"obs_latency_s": 100.0}}),
        ("obs_latency_s", "100"),
    ),
    Case(
        "action latency longer than the episode",
        _pair("InvertedPendulum", real={"timing": {"action_latency_s": 1e4}}),
        ("action_latency_s",),
    ),
]

YAML: list[Case] = [
    Case(
        "yaml duplicate key",
        _yaml("dynamics:\n  friction_scale: 0.7\n  friction_scale: 0.8\n"),
        ("friction_scale", "duplicate", "spec.yaml"),
    ),
    Case("yaml empty file", _yaml(""), ("spec.yaml", "empty")),
    Case("yaml top-level list", _yaml("- dynamics\n- timing\n"), ("spec.yaml", "mapping")),
    Case(
        "yaml syntax error",
        _yaml("dynamics:\n  friction_scale: [0.7\n"),
        ("spec.yaml", "line", "column"),
    ),
    Case(
        "yaml randomization inf bound",
        _yaml(
            "dynamics:\n  friction_scale: {dist: uniform, low: 0.5, high: .inf}\n",
            randomization=True,
        ),
        ("friction_scale", "inf"),
    ),
    Case("yaml missing file", lambda tmp: SkewSpec.load(tmp / "none.yaml"), ("none.yaml",)),
]

EVALUATE: list[Case] = [
    Case("evaluate_gap(seeds=5)", _gap(seeds=5), ("seeds", "5", "range")),
    Case("evaluate_gap(seeds=[])", _gap(seeds=[]), ("seeds", "empty")),
    Case("evaluate_gap negative seed", _gap(seeds=[3, -1]), ("seeds", "-1")),
    Case("evaluate_gap repeated seed", _gap(seeds=[1, 1]), ("seeds", "distinct")),
    Case("evaluate_gap seeds as text", _gap(seeds="100-129"), ("seeds", "100-129")),
    Case("evaluate_gap unknown task", _gap(task="Hoper"), ("Hoper",)),
    Case("evaluate_gap missing policy", _gap(policy="no/such/policy"), ("no/such/policy",)),
    Case(
        "evaluate_gap policy of another task (obs dim)",
        _gap(policy=str(POLICY), task="Hopper"),
        ("observation",),
    ),
    Case(
        "evaluate_gap policy without its normalization stats",
        _gap(policy=_policy_without_stats),
        ("vecnormalize",),
    ),
    Case("evaluate_gap unknown engine", _gap(engine="gpu"), ("engine", "gpu", "local")),
    Case("evaluate_gap confidence 1.5", _gap(confidence=1.5), ("confidence", "1.5")),
]

API_CASES = NON_FINITE + SPEC_AND_PAIRING + YAML + EVALUATE


@pytest.mark.parametrize("case", API_CASES, ids=lambda c: c.id)
def test_the_library_refuses(case: Case, tmp_path: Path) -> None:
    with pytest.raises(case.error) as info:
        case.run(tmp_path)
    message = str(info.value)
    assert message.strip() and "\n" not in message.strip(), message
    for name in case.names:
        assert name.lower() in message.lower(), f"{name!r} not in {message!r}"


# ---- the command line ---------------------------------------------------------------------
# Placeholders: {tmp} a fresh folder, {file} an existing file, {run} a folder holding a
# trained run, {nan_yaml} a spec file with a NaN, {policy} a shipped policy.
CLI_CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("typo evaluate --polcy", ["evaluate", "--polcy", "x"], ("--polcy", "--policy")),
    ("typo train --timestep", ["train", "--timestep", "9"], ("--timestep", "--timesteps")),
    ("typo benchmark --seed", ["benchmark", "--seed", "3"], ("--seed", "--seeds")),
    ("typo demo --tsk", ["demo", "--tsk", "Hopper"], ("--tsk", "--task")),
    ("typo --out=", ["demo", "--ot=x"], ("--ot", "--out")),
    ("unknown command", ["evaluat"], ("evaluat", "did you mean evaluate")),
    ("evaluate --out a file", ["evaluate", "--out", "{file}", "--policy", "p"], ("--out", "file")),
    ("evaluate --out unwritable", ["evaluate", "--out", UNWRITABLE, "--policy", "p"], ("--out",)),
    ("train --out a file", ["train", "--task", "Hopper", "--out", "{file}"], ("--out", "file")),
    ("train --out unwritable", ["train", "--task", "Hopper", "--out", UNWRITABLE], ("--out",)),
    ("benchmark --out a file", ["benchmark", "--out", "{file}"], ("--out", "file")),
    ("benchmark --out below a file", ["benchmark", "--out", "{file}/sub"], ("--out", "file")),
    ("demo --out a file", ["demo", "--out", "{file}"], ("--out", "file")),
    ("demo --out unwritable", ["demo", "--out", UNWRITABLE], ("--out",)),
    ("benchmark --seeds 0", ["benchmark", "--seeds", "0", "--out", "{tmp}"], ("--seeds", "0")),
    ("demo --seeds 8 (a count)", ["demo", "--seeds", "8", "--out", "{tmp}"], ("--seeds", "8")),
    ("evaluate --seeds reversed", ["evaluate", "--seeds", "9-3"], ("--seeds", "9-3")),
    ("evaluate --seeds empty", ["evaluate", "--seeds", ""], ("--seeds", "empty")),
    ("evaluate --seeds negative", ["evaluate", "--seeds", "-3"], ("--seeds", ">= 0")),
    ("evaluate --seeds not integers", ["evaluate", "--seeds", "a-b"], ("--seeds", "a-b")),
    ("evaluate --seeds repeated", ["evaluate", "--seeds", "1-3,2"], ("--seeds", "2")),
    (
        "train --out an existing run",
        ["train", "--task", "InvertedPendulum", "--out", "{run}"],
        ("--out", "--resume", "--overwrite"),
    ),
    (
        "train --resume without a checkpoint",
        ["train", "--task", "InvertedPendulum", "--out", "{tmp}", "--resume"],
        ("--resume", "checkpoint"),
    ),
    (
        "train --resume --overwrite",
        ["train", "--task", "InvertedPendulum", "--out", "{run}", "--resume", "--overwrite"],
        ("--resume", "--overwrite"),
    ),
    ("train unknown task", ["train", "--task", "Hoper", "--out", "{tmp}"], ("Hoper",)),
    ("train --timesteps 0", ["train", "--task", "Hopper", "--timesteps", "0"], ("--timesteps",)),
    (
        "train missing config",
        ["train", "--task", "Hopper", "--config", "{tmp}/c.yaml"],
        ("--config", "c.yaml"),
    ),
    ("train missing ADR config", ["train", "--task", "Hopper", "--adr", "a.yaml"], ("--adr",)),
    (
        "train warm start from nothing",
        ["train", "--task", "Hopper", "--init-from", "no/run"],
        ("--init-from", "no/run"),
    ),
    (
        "train missing randomization",
        ["train", "--task", "Hopper", "--randomization", "dr.yaml"],
        ("--randomization", "dr.yaml"),
    ),
    ("train unknown algo", ["train", "--task", "Hopper", "--algo", "dqn"], ("--algo", "dqn")),
    ("demo unknown task", ["demo", "--task", "Hoppr", "--out", "{tmp}"], ("Hoppr",)),
    ("benchmark unknown task", ["benchmark", "--tasks", "Nope", "--out", "{tmp}"], ("Nope",)),
    (
        "benchmark missing suite",
        ["benchmark", "--suite", "{tmp}/suite.yaml", "--out", "{tmp}"],
        ("suite.yaml",),
    ),
    (
        "evaluate unknown task",
        ["evaluate", "--policy", "{policy}", "--task", "Hoper", "--out", "{tmp}"],
        ("Hoper",),
    ),
    (
        "evaluate missing policy",
        ["evaluate", "--policy", "no/such", "--task", "Hopper", "--out", "{tmp}"],
        ("--policy", "no/such"),
    ),
    (
        "evaluate unknown preset",
        [
            "evaluate",
            "--policy",
            "{policy}",
            "--task",
            "Hopper",
            "--real",
            "nope",
            "--out",
            "{tmp}",
        ],
        ("--real", "nope"),
    ),
    (
        "evaluate missing extra spec",
        ["evaluate", "--policy", "{policy}", "--task", "Hopper", "--extra", "x.yaml"],
        ("--extra", "x.yaml"),
    ),
    (
        "evaluate spec file with NaN",
        ["evaluate", "--policy", "{policy}", "--task", "Hopper", "--real", "{nan_yaml}"],
        ("friction_scale", "nan"),
    ),
    ("evaluate --confidence 1.5", ["evaluate", "--confidence", "1.5"], ("--confidence", "1.5")),
    ("evaluate --n-envs 0", ["evaluate", "--n-envs", "0"], ("--n-envs", "0")),
    ("evaluate --engine gpu", ["evaluate", "--engine", "gpu"], ("--engine", "gpu")),
]


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    file = tmp_path / "a-file"
    file.write_text("not a folder")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.zip").write_bytes(b"")
    nan_yaml = tmp_path / "nan.yaml"
    nan_yaml.write_text("dynamics:\n  friction_scale: .nan\n")
    return {
        "tmp": str(tmp_path / "out"),
        "file": str(file),
        "run": str(run),
        "nan_yaml": str(nan_yaml),
        "policy": str(POLICY),
    }


@pytest.mark.parametrize(
    ("argv", "names"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_the_command_line_refuses_in_one_line(
    argv: list[str], names: tuple[str, ...], places: dict[str, str], capsys, monkeypatch
) -> None:
    monkeypatch.chdir(Path(places["tmp"]).parent)  # default --out folders land in tmp
    status = main([arg.format(**places) for arg in argv])
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    for name in names:
        assert name.lower() in err.lower(), f"{name!r} not in {err!r}"
    assert not Path(places["tmp"]).exists(), "a failed run left its output folder behind"
    assert not Path("results").exists(), "a failed run left its default output folder behind"


def test_there_are_at_least_sixty_cases() -> None:
    assert len(API_CASES) + len(CLI_CASES) >= 60


# ---- as a user sees it: exit status, one line, no traceback, no heavy import -------------
SUBPROCESS_CASES = [
    ["evaluate", "--polcy", "x"],
    ["benchmark", "--seeds", "0"],
    ["evaluate", "--policy", "no/such", "--task", "Hopper"],
    ["demo", "--out", "/proc/sim2real-out"],
]


@pytest.mark.parametrize("argv", SUBPROCESS_CASES, ids=" ".join)
def test_a_user_sees_one_line_and_status_2(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sim2real", *argv], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_input_errors_come_before_torch_and_sb3_load() -> None:
    code = (
        "import sys; from sim2real.cli import main; "
        "status = main(['evaluate', '--polcy', 'x']); "
        "heavy = [m for m in ('torch', 'stable_baselines3', 'ray') if m in sys.modules]; "
        "print(status, heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "2 []"


# ---- what must be accepted (the other side of the same checks) ----------------------------
def test_2e_minus_2_in_yaml_is_a_number(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("actuation:\n  noise_std: 2e-2\n")
    assert SkewSpec.load(path).to_dict()["actuation"]["noise_std"] == pytest.approx(0.02)


def test_numpy_arrays_are_accepted_wherever_lists_are() -> None:
    spec = SkewSpec.load(
        {
            "dynamics": {"gravity": np.array([0.0, 0.0, -9.0])},
            "sensing": {"noise_std": np.full(3, 0.01)},
        }
    )
    assert spec.to_dict()["dynamics"]["gravity"] == [0.0, 0.0, -9.0]


def test_a_spec_error_is_a_value_error() -> None:
    assert issubclass(SkewSpecError, ValueError)


ROBUSTIFY_EVAL = Path(__file__).resolve().parents[1] / "scripts" / "robustify_eval.py"


@pytest.mark.parametrize(
    ("policy", "out", "named"),
    [
        ("no/such/policy", "evals.jsonl", "no/such/policy"),  # missing policy folder
        (str(POLICY), "/proc/sim2real-out/evals.jsonl", "--out"),  # unusable output folder
    ],
    ids=["missing-policy", "unusable-out"],
)
def test_robustify_eval_refuses_bad_input_before_any_episode(
    policy: str, out: str, named: str, tmp_path: Path
) -> None:
    target = Path(out) if out.startswith("/") else tmp_path / out
    result = subprocess.run(
        [sys.executable, str(ROBUSTIFY_EVAL), "--task", "InvertedPendulum", "--seeds", "0-1",
         "--out", str(target), policy],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and named in result.stderr
    assert result.stdout == ""  # no episode ran
    if not out.startswith("/"):
        assert not target.exists()
