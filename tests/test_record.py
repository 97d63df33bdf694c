"""Logs: what record writes, the folder format round trip, and bad logs refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sim2real
from sim2real.remedies.record import FORMAT, Logs, excitation_signal, load_logs, record


@pytest.fixture(scope="module")
def logs() -> Logs:
    env = sim2real.make(
        "Hopper", skews={"sensing": {"noise_std": 0.01}}, terminate_when_unhealthy=False
    )
    return record(None, env, seeds=[3, 4], max_steps=120, excitation="random")


def test_record_logs_what_the_policy_saw_and_sent(logs: Logs) -> None:
    assert logs.task == "Hopper" and logs.control_dt == pytest.approx(0.008)
    # termination off: a random-excited hopper falls, yet every step is logged
    assert [len(e) for e in logs] == [120, 120]
    episode = logs[0]
    assert episode.observations.shape == (121, 11) and episode.actions.shape == (120, 3)
    np.testing.assert_allclose(episode.times, np.arange(121) * 0.008)
    assert np.all(np.abs(episode.actions) <= 1.0)
    # the same seed replays the same robot: the log is reproducible
    env = sim2real.make(
        "Hopper", skews={"sensing": {"noise_std": 0.01}}, terminate_when_unhealthy=False
    )
    again = record(None, env, seeds=[3], max_steps=120, excitation="random")
    np.testing.assert_array_equal(again[0].observations, episode.observations)


def test_termination_passes_through_make() -> None:
    env = sim2real.make("Hopper", skews={"dynamics": {"mass_scale": 1.2}})
    short = record(None, env, seeds=[3], max_steps=300, excitation="random")
    assert len(short[0]) < 300  # the task's own termination ends a fall


def test_round_trip_through_the_folder_format(logs: Logs, tmp_path) -> None:
    logs.save(tmp_path / "logs")
    meta = json.loads((tmp_path / "logs" / "metadata.json").read_text())
    assert meta["format"] == FORMAT and meta["obs_dim"] == 11 and meta["act_dim"] == 3
    assert "skews" not in json.dumps(meta)  # never the true values
    back = load_logs(tmp_path / "logs", "Hopper")
    assert len(back) == 2 and back.control_dt == logs.control_dt
    for a, b in zip(logs, back, strict=True):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.times, b.times)
    # a robot's own logs in memory: mappings of arrays
    mem = load_logs([{"observations": e.observations, "actions": e.actions} for e in logs])
    np.testing.assert_array_equal(mem[1].actions, logs[1].actions)


@pytest.mark.parametrize(
    ("episodes", "message"),
    [
        ([], "no episodes"),
        ([{"observations": np.zeros((1, 11)), "actions": np.zeros((0, 3))}], "is empty"),
        ([{"observations": np.zeros((5, 17)), "actions": np.zeros((4, 6))}], "Hopper's are 11 x 3"),
        ([{"observations": np.full((5, 11), np.nan), "actions": np.zeros((4, 3))}], "not finite"),
        ([{"observations": np.zeros((4, 11)), "actions": np.zeros((4, 3))}], "one more"),
        ([{"actions": np.zeros((4, 3))}], "no 'observations'"),
    ],
)
def test_bad_logs_are_refused_in_one_line(episodes, message) -> None:
    with pytest.raises(ValueError, match=message) as error:
        load_logs(episodes, "Hopper")
    assert "\n" not in str(error.value)


def test_bad_folder_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"no metadata\.json"):
        load_logs(tmp_path, "Hopper")


def test_excitation_is_bounded_and_seeded() -> None:
    for kind in ("sine", "random"):
        a = excitation_signal(kind, 200, 3, 0.008, seed=1)
        assert a.shape == (200, 3) and np.all(np.abs(a) <= 1.0) and a.std() > 0.1
        np.testing.assert_array_equal(a, excitation_signal(kind, 200, 3, 0.008, seed=1))
    with pytest.raises(ValueError):
        excitation_signal("chirp", 10, 3, 0.008, seed=1)
