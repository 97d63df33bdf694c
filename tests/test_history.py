"""History: the buffer's layout and backfill, and the evaluator replaying exactly what the
training wrapper showed the policy, step for step, row by row; RecurrentPPO's state per row."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sim2real
from sim2real.evaluation.policy import PolicySource, check_fits
from sim2real.history import History, HistoryBuffer, HistoryObservation


def test_history_load_and_size() -> None:
    assert History.load(4) == History(commands=4)
    assert History.load({"commands": 2, "observations": 3}) == History(2, 3)
    assert History.load(None) == History() and not History().active
    assert History(4, 1).size(obs_dim=11, act_dim=3) == 11 * 2 + 3 * 4
    for bad in (-1, 2.5, True, {"command": 4}):
        with pytest.raises(ValueError):
            History.load(bad)


def test_buffer_backfills_observations_zeroes_commands_and_shifts() -> None:
    buffer = HistoryBuffer(History(commands=2, observations=2), obs_dim=1, act_dim=1)
    first = buffer.observe(np.array([[5.0]]), np.array([True]))
    assert first.tolist() == [[5.0, 5.0, 5.0, 0.0, 0.0]]  # past obs = first obs, no commands
    buffer.record(np.array([[0.5]]))
    second = buffer.observe(np.array([[6.0]]))
    assert second.tolist() == [[6.0, 5.0, 5.0, 0.5, 0.0]]
    buffer.record(np.array([[-0.5]]))
    third = buffer.observe(np.array([[7.0]]))
    assert third.tolist() == [[7.0, 6.0, 5.0, -0.5, 0.5]]
    buffer.record(np.array([[0.25]]))
    again = buffer.observe(np.array([[1.0]]), np.array([True]))  # a new episode forgets
    assert again.tolist() == [[1.0, 1.0, 1.0, 0.0, 0.0]]


def test_buffer_rows_are_independent() -> None:
    buffer = HistoryBuffer(History(commands=1), obs_dim=1, act_dim=1, rows=2)
    buffer.observe(np.array([[1.0], [2.0]]), np.array([True, True]))
    buffer.record(np.array([[0.1], [0.2]]))
    out = buffer.observe(np.array([[3.0], [4.0]]), np.array([False, True]))
    assert out.tolist() == [[3.0, 0.1], [4.0, 0.0]]


class _RecordingNetwork:
    """A stand-in for an SB3 policy network: records its inputs, acts deterministically."""

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.spaces.Box) -> None:
        self.observation_space, self.action_space = observation_space, action_space
        self.inputs: list[np.ndarray] = []
        weights = np.random.default_rng(0).normal(size=(observation_space.shape[0], 1))
        self.weights = weights / observation_space.shape[0]

    def predict(self, obs: np.ndarray, deterministic: bool = True):
        self.inputs.append(np.array(obs))
        return np.clip(np.tanh(obs @ self.weights) * 4.0, -3.0, 3.0), None


@pytest.mark.parametrize("history", [History(commands=4), History(commands=3, observations=2)])
def test_evaluator_replays_the_training_wrappers_observation(history: History) -> None:
    """Two sub-envs with different episode lengths: at every step the evaluator's augmented
    observation equals the training wrapper's, including across episode starts."""
    envs = [
        HistoryObservation(gym.make("sim2real/InvertedPendulum-sim-v0"), history) for _ in range(2)
    ]
    network = _RecordingNetwork(envs[0].observation_space, envs[0].action_space)
    source = PolicySource(
        label="p",
        group="p",
        identity="p",
        algo="ppo",
        origin="object",
        network=network,
        history=history,
    )
    policy = source.build(batch_size=2)
    obs = [env.reset(seed=10 + i)[0] for i, env in enumerate(envs)]
    starts = np.array([True, True])
    seeds = iter(range(100, 200))
    restarts = 0
    for _ in range(150):
        current = np.stack([o[:4] for o in obs])  # the raw observation leads the augmented one
        actions = policy(current, episode_start=starts)
        np.testing.assert_array_equal(network.inputs[-1], np.stack(obs))
        starts = np.array([False, False])
        for i, env in enumerate(envs):
            obs[i], _, terminated, truncated, _ = env.step(actions[i])
            if terminated or truncated:
                obs[i] = env.reset(seed=next(seeds))[0]
                starts[i] = True
                restarts += 1
    assert restarts >= 2  # the random linear policy drops the pole: episode starts exercised


def test_check_fits_knows_the_history_size() -> None:
    env = gym.make("sim2real/InvertedPendulum-sim-v0")
    wrapped = HistoryObservation(env, History(commands=4))
    network = _RecordingNetwork(wrapped.observation_space, wrapped.action_space)
    source = PolicySource(
        label="p",
        group="p",
        identity="p",
        algo="ppo",
        origin="object",
        network=network,
        history=History(commands=4),
    )
    probe = np.stack([env.reset(seed=s)[0] for s in range(3)])
    check_fits(source, env, probe)  # 4 + 4 x 1 inputs from 4-dim observations
    plain = PolicySource(
        label="q", group="q", identity="q", algo="ppo", origin="object", network=network
    )
    with pytest.raises(ValueError, match="expects observations of shape"):
        check_fits(plain, env, probe)


@pytest.mark.slow
def test_recurrent_policy_carries_state_per_row_and_resets_it() -> None:
    """Batched evaluation equals one-row-at-a-time evaluation with each row's own LSTM
    state, and an episode start gives the fresh-state action."""
    from sb3_contrib import RecurrentPPO

    env = gym.make("sim2real/InvertedPendulum-sim-v0")
    model = RecurrentPPO(
        "MlpLstmPolicy",
        env,
        n_steps=16,
        seed=0,
        device="cpu",
        policy_kwargs={"lstm_hidden_size": 8},
    )
    source = PolicySource(
        label="r",
        group="r",
        identity="r",
        algo="rppo",
        origin="object",
        network=model.policy,
        recurrent=True,
    )
    policy = source.build(batch_size=2)
    rng = np.random.default_rng(1)
    obs_seq = rng.normal(size=(6, 2, 4))
    batched = [policy(obs_seq[0], episode_start=np.array([True, True]))]
    batched += [policy(o) for o in obs_seq[1:5]]
    batched.append(policy(obs_seq[5], episode_start=np.array([True, False])))
    for row in range(2):
        state, start = None, np.array([True])
        for t in range(6):
            if row == 0 and t == 5:
                state, start = None, np.array([True])
            action, state = model.policy.predict(
                obs_seq[t, row][None], state=state, episode_start=start, deterministic=True
            )
            start = np.array([False])
            np.testing.assert_allclose(batched[t][row], action[0], atol=1e-6)
    # The state matters: without it the last action of row 1 would differ.
    fresh, _ = model.policy.predict(
        obs_seq[5, 1][None], episode_start=np.array([True]), deterministic=True
    )
    assert not np.allclose(fresh[0], batched[5][1])


def test_make_takes_a_history() -> None:
    env = sim2real.make("Hopper", skews="default", history=4)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (11 + 4 * 3,) and env.observation_space.shape == obs.shape
    assert not obs[11:].any()  # no command yet
    obs, *_ = env.step(np.full(3, 0.5))
    np.testing.assert_array_equal(obs[11:14], np.full(3, 0.5))
    with pytest.raises(ValueError, match="history"):
        sim2real.make("Hopper", history=-1)


def test_metadata_that_changes_how_a_network_runs_is_part_of_its_identity(tmp_path) -> None:
    """Two folders with the same network files but different latency compensation are
    different policies (their episodes must never be shared in a results file)."""
    import json
    import shutil

    from sim2real.evaluation.policy import resolve_policies
    from sim2real.paths import data_dir

    shipped = data_dir("policies") / "InvertedPendulum" / "sim" / "seed0"
    if not (shipped / "model.zip").is_file():
        pytest.skip("shipped policy missing")
    plain, compensated = tmp_path / "a" / "seed0", tmp_path / "b" / "seed0"
    shutil.copytree(shipped, plain)
    shutil.copytree(shipped, compensated)
    meta = json.loads((compensated / "metadata.json").read_text())
    meta["latency_compensation"] = {"obs_latency_s": 0.02, "action_latency_s": 0.0}
    (compensated / "metadata.json").write_text(json.dumps(meta))
    original, same, other = resolve_policies([shipped, plain, compensated])
    assert original.identity == same.identity != other.identity
