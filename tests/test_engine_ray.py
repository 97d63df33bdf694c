"""The ``ray`` engine against a local Ray (one ``ray.init`` for the module): the same
episodes as the ``local`` engine (a shipped Hopper policy, sim and the ``default`` preset
with its sub-step latencies), episodes streamed as they end, and a worker killed mid-shard
retried with nothing lost or counted twice."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sim2real
from sim2real.engines import Episode, Lane, Workload, check_engine
from sim2real.evaluation.policy import PolicySource
from sim2real.evaluation.store import EPISODES_FILE

ray = pytest.importorskip("ray")
from sim2real.engines.ray_engine import RayEngine, ensure_ray, shard_bounds  # noqa: E402

HOPPER = "policies/Hopper/sim/seed0"
ROOT = Path(__file__).resolve().parents[1]
TASK = "InvertedPendulum"

# The policies below travel to the workers by value (this module is not on their path).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """A local Ray of 2 CPUs, started as the engine starts one (not attached to RAY_ADDRESS)."""
    address = os.environ.pop("RAY_ADDRESS", None)
    ensure_ray(num_cpus=2)
    assert ray.cluster_resources()["CPU"] == 2
    yield
    ray.shutdown()
    if address is not None:
        os.environ["RAY_ADDRESS"] = address


def steady(obs: np.ndarray) -> np.ndarray:
    """A good balance controller: every episode lasts until the time limit."""
    return np.clip(10 * obs[:, 1:2] + obs[:, 3:4] + 0.5 * obs[:, 0:1] + obs[:, 2:3], -3.0, 3.0)


class KillsItsWorkerOnce:
    """``steady``; on its ``at``-th call it SIGKILLs its own process, the first time only
    (whichever process gets there first creates ``marker``)."""

    __name__ = "kills_its_worker_once"

    def __init__(self, marker: Path, at: int) -> None:
        self.marker, self.at, self.calls = str(marker), at, 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == self.at:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return steady(obs)


class WaitsForTheFirstEpisode:
    """``steady``; when its second episode starts, it waits (up to 30 s) for ``go`` to exist,
    which the caller creates on receiving the first episode, and notes what it saw."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.starts = folder, 0

    def __call__(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        self.starts += int(episode_start.sum())
        if self.starts == 2 and episode_start.any():
            deadline = time.monotonic() + 30
            while not (self.folder / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            (self.folder / ("streamed" if (self.folder / "go").exists() else "blocked")).touch()
        return steady(obs)


def returns(report) -> list[tuple[str, int, float, int]]:
    return [(e["variant"], e["seed"], e["return"], e["length"]) for e in report.episodes]


def test_shards_are_contiguous_and_balanced_by_episodes():
    lanes = [Lane(0, "a", tuple(range(n))) for n in (4, 1, 1, 1, 1, 4)]
    assert shard_bounds(lanes, 2) == [(0, 3), (3, 6)]
    assert shard_bounds(lanes, 10) == [(i, i + 1) for i in range(6)]
    assert shard_bounds(lanes[:1], 3) == [(0, 1)]


def test_a_shipped_policy_gives_the_same_episodes_on_every_engine():
    kwargs = dict(
        seeds=range(100, 104),
        real="default",  # obs latency 20 ms, action latency 10 ms: 10 and 5 substeps
        attribution=False,
        max_episode_steps=120,
        n_envs=4,
        progress=False,
    )
    policy = str(ROOT / HOPPER)
    local = sim2real.evaluate_gap(policy, "Hopper", **kwargs)
    on_ray = sim2real.evaluate_gap(policy, "Hopper", engine="ray", **kwargs)
    assert {e["variant"] for e in local.episodes} == {"sim", "default"}
    assert returns(on_ray) == returns(local)
    assert len({e["return"] for e in local.episodes}) == len(local.episodes)  # not trivial
    try:
        check_engine("batch")
    except ValueError:
        return  # the batch engine is not part of this installation
    batch = sim2real.evaluate_gap(policy, "Hopper", engine="batch", **kwargs)
    assert returns(batch) == returns(local)
    shards = RayEngine(shard_engine="batch")  # every shard on mujoco.batch
    assert returns(sim2real.evaluate_gap(policy, "Hopper", engine=shards, **kwargs)) == returns(
        local
    )


def test_a_worker_killed_mid_shard_is_retried_and_nothing_is_lost_or_counted_twice(tmp_path):
    marker = tmp_path / "killed"
    kwargs = dict(
        seeds=range(12),
        real="default",
        attribution=False,
        max_episode_steps=50,  # every episode lasts 50 steps: the kill at call 60 is mid-shard
        n_envs=2,
        progress=False,
    )
    out = tmp_path / "ray"
    on_ray = sim2real.evaluate_gap(
        KillsItsWorkerOnce(marker, at=60), TASK, engine="ray", out=out, **kwargs
    )
    assert marker.exists()  # a worker was killed
    local = sim2real.evaluate_gap(KillsItsWorkerOnce(marker, at=60), TASK, **kwargs)
    assert returns(on_ray) == returns(local)
    lines = [json.loads(line) for line in (out / EPISODES_FILE).read_text().splitlines()[1:]]
    keys = [(r["policy"], r["variant"], r["seed"]) for r in lines]
    assert len(keys) == len(set(keys)) == 24  # each episode once in the results file


def test_episodes_stream_back_before_their_shard_ends(tmp_path):
    source = PolicySource(
        "p", "p", "p", None, "callable", function=WaitsForTheFirstEpisode(tmp_path)
    )
    lanes = (Lane(0, "sim", (1, 2)),)
    work = Workload(TASK, {"sim": {}}, (source,), lanes, 30, 1)
    got: list[Episode] = []

    def on_episode(episode: Episode) -> None:
        got.append(episode)
        (tmp_path / "go").touch()

    RayEngine().run(work, on_episode)
    assert [e.seed for e in got] == [1, 2]
    assert (tmp_path / "streamed").exists()


def test_a_ray_evaluation_resumes_from_its_results_file(tmp_path):
    kwargs = dict(seeds=range(6), attribution=False, max_episode_steps=30, n_envs=2, progress=False)
    first = sim2real.evaluate_gap(steady, TASK, engine="ray", out=tmp_path, **kwargs)
    path = tmp_path / EPISODES_FILE
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:5]) + "\n")
    resumed = sim2real.evaluate_gap(steady, TASK, engine="ray", out=tmp_path, resume=True, **kwargs)
    assert resumed.episodes == first.episodes
    assert path.read_text().splitlines()[:5] == lines[:5]
    assert len(path.read_text().splitlines()) == len(lines)


def test_a_failing_shard_ends_the_run_with_its_error():
    def broken(obs: np.ndarray) -> np.ndarray:
        raise FloatingPointError("the policy broke")

    source = PolicySource("p", "p", "p", None, "callable", function=broken)
    work = Workload(TASK, {"sim": {}}, (source,), (Lane(0, "sim", (1,)),), 10, 1)
    with pytest.raises(FloatingPointError, match="the policy broke"):  # the cause, re-raised
        RayEngine(max_retries=0).run(work, lambda episode: None)


def test_the_command_line_runs_on_ray(tmp_path, capsys):
    from sim2real.cli import main

    common = ["evaluate", "--policy", str(ROOT / HOPPER), "--task", "Hopper", "--seeds", "1-2"]
    common += ["--no-attribution", "--max-episode-steps", "40", "--no-progress"]
    assert main([*common, "--engine", "ray", "--out", str(tmp_path / "ray")]) == 0
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    capsys.readouterr()
    ray_report = json.loads((tmp_path / "ray" / "report.json").read_text())
    local_report = json.loads((tmp_path / "local" / "report.json").read_text())
    assert ray_report["episodes"] == local_report["episodes"]
    engines = ray_report["settings"]["engine"], local_report["settings"]["engine"]
    assert engines == ("ray", "local")


def test_ray_attaches_to_ray_address_else_starts_a_local_one(monkeypatch):
    from sim2real.engines import ray_engine

    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    ray_engine.ensure_ray()
    monkeypatch.delenv("RAY_ADDRESS")
    ray_engine.ensure_ray(num_cpus=3)
    assert calls[0]["address"] == "10.0.0.1:6379"
    assert calls[1]["address"] == "local" and calls[1]["num_cpus"] == 3
    assert calls[1]["include_dashboard"] is False
