"""Engines: the registry, the shared work types, and the ``local`` engine (one process,
sub-envs side by side, one row per slot, ``episode_start`` on every episode's first
observation)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import sim2real
from sim2real.engines import ENGINES, Episode, Lane, Workload, check_engine, run_workload
from sim2real.engines.local import LocalEngine
from sim2real.evaluation import rollout
from sim2real.evaluation.policy import PolicySource
from sim2real.paths import data_dir

TASK = "InvertedPendulum"
STEPS = 60


def clock_gain(t: np.ndarray) -> np.ndarray:
    """A gain that changes with the time in the episode: wrong rows or masks change returns."""
    return 2.0 * np.sin(t / 3.0)


def clocked_action(obs: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.clip(clock_gain(t)[:, None] * obs[:, 1:2] + 0.2 * obs[:, 3:4], -3.0, 3.0)


class Clocked:
    """A stateful policy: each row's own step counter, restarted by ``episode_start``;
    it records the size of every batch and how often episodes start."""

    def __init__(self) -> None:
        self.t: np.ndarray | None = None
        self.sizes: list[int] = []
        self.starts = 0

    def __call__(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        if self.t is None:
            self.t = np.zeros(len(obs))
        self.sizes.append(len(obs))
        self.starts += int(episode_start.sum())
        self.t = np.where(episode_start, 0.0, self.t + 1.0)
        return clocked_action(obs, self.t)


def plain_clocked_loop(seed: int, spec: dict) -> tuple[float, int]:
    env = sim2real.make(TASK, skews=spec, max_episode_steps=STEPS)
    obs, _ = env.reset(seed=seed)
    total, t = 0.0, 0
    while True:
        obs, reward, terminated, truncated, _ = env.step(
            clocked_action(obs[None], np.array([float(t)]))[0]
        )
        total, t = total + reward, t + 1
        if terminated or truncated:
            env.close()
            return total, t


def workload(policy, lanes, n_envs: int, specs=None) -> Workload:
    source = PolicySource("p", "p", "p", None, "callable", function=policy)
    return Workload(TASK, specs or {"sim": {}}, (source,), tuple(lanes), STEPS, n_envs)


def test_registry_names_the_three_engines_and_refuses_others_in_one_line():
    assert list(ENGINES) == ["local", "batch", "ray"]
    assert check_engine("local") == "local"
    with pytest.raises(ValueError, match=r"^engine must be one of local, batch, ray, got 'gpu'$"):
        check_engine("gpu")
    with pytest.raises(ValueError, match="engine must be one of"):
        check_engine(42)


def test_work_types_are_one_and_the_same_from_the_old_module():
    assert rollout.Workload is Workload and rollout.Lane is Lane and rollout.Episode is Episode
    episode = Episode("p", "v", 3, math.nan, 7, True, "non-finite qpos")
    assert episode.key == ("p", "v", 3)
    assert Episode.from_record(episode.to_record()).to_record() == episode.to_record()


def test_stateful_policy_keeps_its_row_across_lanes_and_episodes():
    # Three slots, lanes of uneven length, episodes of uneven length: sub-envs come and go.
    seeds = list(range(10))
    lanes = [Lane(0, "sim", (0, 1, 2)), Lane(0, "sim", (3,)), Lane(0, "sim", (4, 5))]
    lanes += [Lane(0, "sim", (6, 7, 8, 9))]
    policy = Clocked()
    got: list[Episode] = []
    run_workload(workload(policy, lanes, 3), engine="local", on_episode=got.append)
    assert sorted(e.seed for e in got) == seeds  # each episode once
    for episode in got:
        ret, length = plain_clocked_loop(episode.seed, {})
        assert (episode.ret, episode.length) == (ret, length), episode.seed
    assert set(policy.sizes) == {3}  # always one row per slot
    assert policy.starts == len(seeds)  # one start per episode
    assert len({e.length for e in got}) > 3  # the test exercised uneven episodes


def test_a_plain_callable_gets_its_busy_rows_alone():
    sizes: list[int] = []

    def plain(obs: np.ndarray) -> np.ndarray:
        sizes.append(len(obs))
        return np.clip(2.0 * obs[:, 1:2] + 0.2 * obs[:, 3:4], -3.0, 3.0)

    got: list[Episode] = []
    lanes = [Lane(0, "sim", (s,)) for s in range(5)]
    LocalEngine().run(workload(plain, lanes, 4), got.append)
    assert sum(sizes) == sum(e.length for e in got)  # one row per step of an episode
    assert max(sizes) == 4 and min(sizes) < 4


def test_every_variant_runs_with_its_own_skews():
    real = {"dynamics": {"mass_scale": 1.3}, "timing": {"obs_latency_s": 0.02}}
    lanes = [Lane(0, "sim", (1, 2)), Lane(0, "real", (1, 2))]
    got: dict = {}
    run_workload(
        workload(Clocked(), lanes, 2, {"sim": {}, "real": real}),
        on_episode=lambda e: got.setdefault(e.key, e.ret),
    )
    for seed in (1, 2):
        assert got[("p", "sim", seed)] == plain_clocked_loop(seed, {})[0]
        assert got[("p", "real", seed)] == plain_clocked_loop(seed, real)[0]


def test_evaluate_gap_on_the_local_engine_spawns_no_process(tmp_path):
    script = f"""
import multiprocessing, os, sys
import numpy as np
import sim2real
sim2real.evaluate_gap(
    lambda obs: np.clip(2 * obs[:, 1:2], -3, 3), {TASK!r}, seeds=[1, 2], attribution=False,
    max_episode_steps=20, progress=False,
)
children = [p for p in os.listdir('/proc') if p.isdigit() and open(f'/proc/{{p}}/stat').read()
            .rsplit(')', 1)[1].split()[1] == str(os.getpid())]
print(len(children), len(multiprocessing.active_children()), 'ray' in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["0", "0", "False"]


def test_a_gymnasium_id_runs_on_the_local_engine():
    got: list[Episode] = []
    source = PolicySource("p", "p", "p", None, "callable", function=lambda o: np.zeros((len(o), 1)))
    work = Workload("InvertedPendulum-v5", {"sim": {}}, (source,), (Lane(0, "sim", (0,)),), 5, 1)
    run_workload(work, on_episode=got.append)
    assert [(e.seed, e.length) for e in got] == [(0, 5)]


@pytest.mark.parametrize(
    ("group", "real"), [("sim", "default"), ("sim", "harsh"), ("robust", "harsh")]
)  # robust: latency compensation with the delay estimated online, one predictor per row
def test_a_shipped_policy_gives_the_same_episodes_on_local_and_batch(group, real):
    try:
        check_engine("batch")
    except ValueError:
        pytest.skip("the batch engine is not part of this installation")
    kwargs = dict(
        seeds=range(100, 104), real=real, attribution=False, max_episode_steps=100, n_envs=4
    )
    policy = data_dir("policies") / "Hopper" / group / "seed0"
    local = sim2real.evaluate_gap(policy, "Hopper", progress=False, **kwargs)
    batch = sim2real.evaluate_gap(policy, "Hopper", engine="batch", progress=False, **kwargs)
    assert local.episodes == batch.episodes
    assert len({e["return"] for e in local.episodes}) == len(local.episodes)
