"""Training: a tiny end-to-end run, resume, bad input, the CLI wiring and the shipped policies."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import sim2real
from sim2real.paths import data_dir
from sim2real.tasks import tasks
from sim2real.training import (
    ALGOS,
    config_path,
    evaluate_sim_return,
    load_policy,
    register_cli,
    train,
)

MANIFEST = data_dir("policies") / "manifest.yaml"


def _manifest_entries() -> list[dict]:
    if not MANIFEST.is_file():
        return []
    return (yaml.safe_load(MANIFEST.read_text()) or {}).get("policies", [])


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped InvertedPendulum config with a checkpoint after every rollout."""
    cfg = yaml.safe_load(config_path("InvertedPendulum", "ppo").read_text())
    cfg["checkpoint_freq"] = cfg["n_envs"] * cfg["hyperparameters"]["n_steps"]
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_config: Path) -> Path:
    out = tmp_path_factory.mktemp("run")
    return train(
        "InvertedPendulum", seed=3, timesteps=2048, out=out, config=tiny_config, progress=False
    )


def test_every_task_has_a_ppo_config_and_hopper_has_sac_td3() -> None:
    for task in tasks():
        assert config_path(task, "ppo").is_file(), task
    for algo in ALGOS:
        assert config_path("Hopper", algo).is_file(), algo


def test_train_writes_model_stats_and_metadata(tiny_run: Path, tiny_config: Path) -> None:
    for name in ("model.zip", "vecnormalize.pkl", "metadata.json"):
        assert (tiny_run / name).is_file(), name
    assert any((tiny_run / "tb").iterdir())
    assert sorted(p.suffix for p in (tiny_run / "checkpoints").iterdir()) == [".pkl", ".zip"]
    meta = json.loads((tiny_run / "metadata.json").read_text())
    assert meta["task"] == "InvertedPendulum"
    assert meta["algo"] == "ppo"
    assert meta["seed"] == 3
    assert meta["timesteps"] == 2048
    assert meta["obs_normalization"] is True
    assert meta["randomization"] is None
    assert meta["config_path"] == str(tiny_config)
    assert len(meta["config_sha256"]) == 64
    assert set(meta["versions"]) >= {"torch", "stable-baselines3", "gymnasium", "mujoco", "numpy"}
    assert meta["wall_time_s"] > 0
    model, vecnorm = load_policy(tiny_run)
    env = gym.make("sim2real/InvertedPendulum-sim-v0")
    assert model.observation_space.shape == env.observation_space.shape
    assert vecnorm is not None and not vecnorm.training
    returns = evaluate_sim_return(tiny_run, seeds=[0, 1])
    assert len(returns) == 2 and all(r > 0 for r in returns)


def test_resume_continues_to_the_total(tiny_run: Path, tiny_config: Path, tmp_path: Path) -> None:
    checkpoint = next((tiny_run / "checkpoints").glob("*_steps.zip"))
    train(
        "InvertedPendulum",
        timesteps=4096,
        out=tmp_path,
        config=tiny_config,
        resume=checkpoint,
        progress=False,
    )
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["timesteps_done"] == 4096
    assert meta["resumed_from"] == str(checkpoint)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"task": "Pendulum"}, "task must be one of"),
        ({"algo": "dqn"}, "algo must be one of"),
        ({"timesteps": 0}, "timesteps must be a positive integer"),
        ({"timesteps": -5}, "timesteps must be a positive integer"),
        ({"config": Path("/nonexistent/cfg.yaml")}, "config must be an existing YAML file"),
        ({"resume": Path("/nonexistent/ckpt.zip")}, "resume must be an existing checkpoint"),
        ({"randomization": "/nonexistent/dr.yaml"}, "randomization must be"),
        ({"randomization": {"dynamics": {"friction_scale": -0.5}}}, "friction_scale"),
    ],
)
def test_bad_input_raises_before_any_work(kwargs: dict, field: str, tmp_path: Path) -> None:
    args = {"task": "InvertedPendulum", "algo": "ppo", "timesteps": 2048} | kwargs
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=field):
        train(args.pop("task"), args.pop("algo"), out=out, progress=False, **args)
    assert not out.exists()


def test_training_with_randomization_records_the_spec(tmp_path: Path) -> None:
    spec = {"dynamics": {"friction_scale": {"dist": "uniform", "low": 0.8, "high": 1.2}}}
    train("InvertedPendulum", timesteps=2048, out=tmp_path, randomization=spec, progress=False)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["randomization"] == spec


def test_training_with_the_default_progress_bar_runs(tmp_path: Path) -> None:
    """``progress=True`` (the command line's default) needs SB3's progress-bar extras, tqdm
    and rich: a fresh install must carry both, or training fails after building its envs."""
    train("InvertedPendulum", timesteps=2048, out=tmp_path, progress=True)
    assert (tmp_path / "model.zip").is_file()


def test_point_vector_is_each_fields_mean_and_nominal_where_not_a_number() -> None:
    """The critic's episode point: np.mean of each field's value (bit for bit), the field's
    nominal value where the value is absent, not a number or not finite."""
    from sim2real.training.asymmetric import point_vector

    values = {
        "dynamics.friction_scale": 0.7,
        "dynamics.mass_scale": [1.1, 0.93, 1.27, 1.05],
        "dynamics.damping_scale": [[0.5, 1.5], [2.0, 0.75]],
        "actuation.noise_std": {"dist": "uniform", "low": 0.0, "high": 0.1},  # per step
        "sensing.noise_std": [0.01, float("nan")],
    }
    fields = [*values, "dynamics.actuator_strength"]  # the last one absent
    got = point_vector(values, fields)
    expected = [0.7, np.mean(values["dynamics.mass_scale"]), np.mean([0.5, 1.5, 2.0, 0.75]),
                0.0, 0.0, 1.0]  # fmt: skip
    assert got.tolist() == [float(x) for x in expected]


def test_register_cli_adds_train_with_a_handler() -> None:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["train", "--task", "Hopper", "--algo", "sac", "--seed", "4", "--out", "x"]
    )
    assert args.task == "Hopper" and args.algo == "sac" and args.seed == 4
    assert args.out == Path("x") and args.timesteps is None
    assert callable(args.func)


@pytest.mark.parametrize("entry", _manifest_entries(), ids=lambda e: e["path"])
def test_shipped_policy_loads_and_fits_its_task(entry: dict) -> None:
    """Every shipped policy is evaluable on its task as its metadata says (history,
    asymmetric actor, latency compensation), with its frozen normalization."""
    import numpy as np

    from sim2real.evaluation.policy import check_fits, resolve_policies

    run_dir = data_dir("policies") / entry["path"]
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert (meta["task"], meta["seed"]) == (entry["task"], entry["seed"])
    randomized = meta["randomization"] is not None or meta.get("adr") is not None
    assert (entry["variant"] != "sim") == randomized  # dr*, robust: trained randomized
    if entry["variant"] == "robust":  # deployed behind an online delay estimate and a filter
        compensation = meta["latency_compensation"]
        assert compensation["estimate"] is True
        dim = tasks()[entry["task"]].observation_dim
        assert len(compensation["filter"]["noise_std"]) == dim
        assert len(compensation["filter"]["process_std"]) == dim
        assert not str(entry["compensated_at_commit"]).endswith("-dirty")
    source = resolve_policies(run_dir)[0]
    assert source.normalizer is not None, "shipped policies normalize observations"
    env = gym.make(f"sim2real/{entry['task']}-sim-v0")
    probe = np.stack([env.reset(seed=seed)[0] for seed in range(3)])
    check_fits(source, env, probe)


# ---------------------------------------------------------------------- robustify
def _tiny_robust(tmp_path: Path, tiny_config: Path, **kwargs) -> Path:
    return train(
        "InvertedPendulum",
        seed=1,
        timesteps=1024,
        out=tmp_path / "run",
        config=tiny_config,
        progress=False,
        **kwargs,
    )


def test_asymmetric_history_policy_is_evaluated_from_plain_observations(
    tmp_path: Path, tiny_config: Path
) -> None:
    """Trained with a Dict observation (actor: obs + 4 commands; critic: true obs + point),
    the saved policy acts from the plain observation; the critic's input never reaches it."""
    import numpy as np

    from sim2real.evaluation.policy import resolve_policies

    run = _tiny_robust(
        tmp_path,
        tiny_config,
        history=4,
        asymmetric=True,
        randomization=data_dir("configs") / "randomization" / "invertedpendulum.yaml",
    )
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["history"] == {"commands": 4, "observations": 0} and meta["asymmetric"]
    source = resolve_policies(run)[0]
    assert source.asymmetric and source.history.commands == 4
    network = source.network
    assert set(network.observation_space.spaces) == {"actor", "critic"}
    obs = np.random.default_rng(0).normal(size=(5, 4))
    actions = source.build(5)(obs, episode_start=np.ones(5, bool))
    assert actions.shape == (5, 1) and np.isfinite(actions).all()
    aug = np.concatenate([obs, np.zeros((5, 4))], axis=1)
    critic_dim = network.observation_space["critic"].shape[0]
    one, _ = network.predict(
        {"actor": aug, "critic": np.zeros((5, critic_dim))}, deterministic=True
    )
    other, _ = network.predict(
        {"actor": aug, "critic": np.full((5, critic_dim), 7.0)}, deterministic=True
    )
    np.testing.assert_array_equal(one, other)
    returns = evaluate_sim_return(run, seeds=range(2))
    assert len(returns) == 2 and all(r > 0 for r in returns)


def test_warm_start_acts_exactly_as_its_source(tmp_path: Path, tiny_run: Path) -> None:
    """Inputs added by the history start with zero weight: the warm-started policy's action
    equals the source's on the observations the source knew."""
    import numpy as np
    from stable_baselines3 import PPO

    from sim2real.history import History
    from sim2real.training import _make_vec_env
    from sim2real.training.asymmetric import AsymmetricActorCriticPolicy
    from sim2real.training.warm import warm_start

    venv = _make_vec_env(
        "InvertedPendulum",
        None,
        2,
        {"obs": True, "reward": True},
        0.99,
        history=History(3),
        asymmetric=True,
    )
    model = PPO(AsymmetricActorCriticPolicy, venv, device="cpu", seed=0)
    warm_start(model, venv, tiny_run)
    source, stats = load_policy(tiny_run)
    obs = np.random.default_rng(1).normal(size=(6, 4))
    expected, _ = source.predict(stats.normalize_obs(obs), deterministic=True)
    aug = np.concatenate([obs, np.random.default_rng(2).uniform(-3, 3, (6, 3))], axis=1)
    critic_dim = venv.observation_space["critic"].shape[0]
    got, _ = model.predict(
        venv.normalize_obs({"actor": aug, "critic": np.zeros((6, critic_dim))}), deterministic=True
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_warm_start_from_an_asymmetric_policy_keeps_actor_and_critic() -> None:
    """A warm start from a shipped asymmetric policy (one set of normalization statistics
    per input) acts as the source and values states as the source's critic does."""
    import numpy as np
    from stable_baselines3 import PPO

    from sim2real.training import _make_vec_env
    from sim2real.training.asymmetric import AsymmetricActorCriticPolicy
    from sim2real.training.warm import warm_start

    folder = data_dir("policies") / "InvertedPendulum" / "robust" / "seed0"
    meta = json.loads((folder / "metadata.json").read_text())
    venv = _make_vec_env("InvertedPendulum", meta["randomization"], 2,
                         {"obs": True, "reward": True}, 0.99, asymmetric=True)  # fmt: skip
    model = PPO(AsymmetricActorCriticPolicy, venv, device="cpu", seed=0)
    warm_start(model, venv, folder)
    source, stats = load_policy(folder)
    rng = np.random.default_rng(3)
    critic_dim = venv.observation_space["critic"].shape[0]
    obs = {"actor": rng.normal(size=(6, 4)), "critic": rng.normal(size=(6, critic_dim))}
    np.testing.assert_allclose(
        model.predict(venv.normalize_obs(obs), deterministic=True)[0],
        source.predict(stats.normalize_obs(obs), deterministic=True)[0],
        atol=1e-6,
    )
    for key in ("actor", "critic"):
        np.testing.assert_array_equal(venv.obs_rms[key].mean, stats.obs_rms[key].mean)


def test_adr_training_keeps_its_state_in_checkpoints_and_metadata(
    tmp_path: Path, tiny_config: Path
) -> None:
    adr = {
        "task": "InvertedPendulum",
        "boundary_prob": 1.0,
        "buffer_size": 1,
        "thresholds": {"low": -1.0, "high": 0.0},
        "step": 0.5,
        "fields": {"dynamics.mass_scale": {"low": 0.8, "high": 1.2}},
    }
    run = _tiny_robust(tmp_path, tiny_config, adr=adr, history=2)
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["adr"]["ranges"]["dynamics.mass_scale"] == {"low": 0.8, "high": 1.2}
    saved = sorted((run / "checkpoints").glob("adr_state_*_steps.json"))
    assert saved and json.loads(saved[-1].read_text())["progress"]
    checkpoint = sorted((run / "checkpoints").glob("rl_model_*_steps.zip"))[0]
    resumed = train(
        "InvertedPendulum",
        seed=1,
        timesteps=1536,
        out=run,
        config=tiny_config,
        progress=False,
        adr=adr,
        history=2,
        resume=checkpoint,
    )
    assert json.loads((resumed / "metadata.json").read_text())["timesteps_done"] >= 1536


def test_recurrent_ppo_trains_and_is_evaluated_with_its_state(
    tmp_path: Path, tiny_config: Path
) -> None:
    run = _tiny_robust(tmp_path, tiny_config, algo="rppo")
    from sim2real.evaluation.policy import resolve_policies

    source = resolve_policies(run)[0]
    assert source.algo == "rppo" and source.recurrent
    assert len(evaluate_sim_return(run, seeds=range(2))) == 2


def _with_compensation(shipped: Path, dest: Path, compensation: dict) -> Path:
    """A copy of the policy folder ``shipped`` whose metadata adds ``compensation``."""
    import shutil

    shutil.copytree(shipped, dest)
    meta = json.loads((dest / "metadata.json").read_text())
    meta["latency_compensation"] = compensation
    (dest / "metadata.json").write_text(json.dumps(meta))
    return dest


def _hopper_return(path: Path, skews: dict | None) -> float:
    """Return of one 400-step Hopper episode (seed 101) of the policy folder ``path``."""
    import numpy as np

    from sim2real.evaluation.policy import resolve_policies

    policy = resolve_policies(path)[0].build()
    env = sim2real.make("Hopper", skews=skews)
    obs, _ = env.reset(seed=101)
    total, start = 0.0, True
    for _ in range(400):
        action = policy(obs[None], episode_start=np.array([start]))
        start = False
        obs, reward, terminated, truncated, _ = env.step(action[0])
        total += float(reward)
        if terminated or truncated:
            break
    return total


@pytest.mark.slow
def test_latency_compensation_recovers_the_sim_return_under_latency(tmp_path: Path) -> None:
    """Known truth: with latency the only skew, predicting over the loop delay with the
    nominal model gives back (nearly) the sim-trained policy's sim return."""

    shipped = data_dir("policies") / "Hopper" / "sim" / "seed2"
    if not (shipped / "model.zip").is_file():
        pytest.skip("shipped Hopper policy missing")
    compensated = _with_compensation(
        shipped, tmp_path / "comp", {"obs_latency_s": 0.02, "action_latency_s": 0.01}
    )

    latency = {"timing": {"obs_latency_s": 0.02, "action_latency_s": 0.01}}
    sim_return = _hopper_return(shipped, None)
    assert _hopper_return(shipped, latency) < 0.3 * sim_return  # the delay alone makes it fall
    assert _hopper_return(compensated, latency) > 0.95 * sim_return


@pytest.mark.parametrize(
    ("task", "obs_s", "action_s"),
    [("Hopper", 0.0, 0.0), ("Hopper", 0.02, 0.01), ("Hopper", 0.014, 0.0), ("Walker2d", 0.0, 0.04),
     ("HalfCheetah", 0.02, 0.01), ("InvertedDoublePendulum", 0.02, 0.01),
     ("InvertedPendulum", 0.04, 0.02)],
)  # fmt: skip
def test_delay_estimator_finds_both_latencies_to_the_substep(
    task: str, obs_s: float, action_s: float
) -> None:
    """Known truth: on a noiseless stream the estimate is the true total delay (obs + action)
    in substeps, whatever the split, from random commands within a few steps."""
    import numpy as np

    from sim2real.training.compensation import LatencyCompensation, LatencyPredictor

    env = sim2real.make(task, {"timing": {"obs_latency_s": obs_s, "action_latency_s": action_s}})
    predictor = LatencyPredictor(task, LatencyCompensation(estimate=True, max_latency_s=0.08))
    substep = float(env.unwrapped.model.opt.timestep)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    start = True
    for _ in range(12):
        predictor.predict(obs[None], np.array([start]))
        start = False
        action = rng.uniform(-0.5, 0.5, env.action_space.shape)
        predictor.record(action[None])
        obs, *_ = env.step(action)
    predictor.predict(obs[None], np.array([False]))
    assert predictor.split(0) == (round(obs_s / substep), round(action_s / substep))


@pytest.mark.slow
def test_estimated_compensation_keeps_the_sim_return_in_sim_and_under_latency(
    tmp_path: Path,
) -> None:
    """One compensated policy, no latency given: in sim it estimates no delay and keeps its
    sim return; under 20 + 10 ms it estimates 30 ms and recovers (nearly) its sim return."""

    shipped = data_dir("policies") / "Hopper" / "sim" / "seed2"
    if not (shipped / "model.zip").is_file():
        pytest.skip("shipped Hopper policy missing")
    estimated = _with_compensation(
        shipped, tmp_path / "est", {"estimate": True, "max_latency_s": 0.08}
    )

    sim_return = _hopper_return(shipped, None)
    assert _hopper_return(estimated, None) > 0.98 * sim_return
    latency = {"timing": {"obs_latency_s": 0.02, "action_latency_s": 0.01}}
    assert _hopper_return(estimated, latency) > 0.95 * sim_return


def _filtered_stream(skews: dict, noise: list[float], process: list[float], steps: int = 150):
    """Hopper under ``skews`` (sensing only, so the physics is the sim's) driven by random
    commands: per step the raw reading, the filter's estimate and the true observation."""
    import numpy as np

    from sim2real.training.compensation import (
        LatencyCompensation,
        LatencyPredictor,
        StateFilter,
    )

    sim, real = sim2real.make_pair("Hopper", real=skews)
    compensation = LatencyCompensation(filter=StateFilter(tuple(noise), tuple(process)))
    predictor = LatencyPredictor("Hopper", compensation)
    rng = np.random.default_rng(0)
    truth, _ = sim.reset(seed=5)
    reading, _ = real.reset(seed=5)
    rows = []
    for step in range(steps):
        estimate = predictor.predict(reading[None], np.array([step == 0]))[0]
        rows.append((reading, estimate, truth))
        action = rng.uniform(-0.3, 0.3, 3)
        predictor.record(action[None])
        truth, _, done, *_ = sim.step(action)
        reading, *_ = real.step(action)
        if done:
            break
    return [np.array(column) for column in zip(*rows, strict=True)]


def test_state_filter_replaces_dropped_readings_by_the_model_exactly() -> None:
    """Known truth: on a noiseless stream with dropped readings (a dimension repeats its
    last value), the estimate is the true observation: dropped dimensions come from the
    nominal model, which is exact here; the others pass through (no noise: gain 1)."""
    import numpy as np

    raw, estimate, truth = _filtered_stream(
        {"sensing": {"dropout_prob": 0.2}}, [0.0] * 11, [0.1] * 11
    )
    assert len(truth) > 60 and np.abs(raw - truth).max() > 1e-3  # readings were dropped
    np.testing.assert_allclose(estimate, truth, atol=1e-8)


def test_state_filter_reduces_sensor_noise_against_the_truth() -> None:
    """With sensor noise only, the estimate fused with the model's prediction is closer to
    the true observation than the raw reading, on every dimension."""
    import numpy as np

    noise = [0.005, 0.02, 0.02, 0.02, 0.02, 0.1, 0.1, 0.2, 0.2, 0.2, 0.2]
    process = [1e-3] * 5 + [0.02] * 6
    raw, estimate, truth = _filtered_stream({"sensing": {"noise_std": noise}}, noise, process)
    raw_error = np.sqrt(np.mean((raw[1:] - truth[1:]) ** 2, axis=0))
    estimate_error = np.sqrt(np.mean((estimate[1:] - truth[1:]) ** 2, axis=0))
    assert np.all(estimate_error < 0.7 * raw_error), (estimate_error / raw_error).round(2)


def test_state_filter_settings_are_checked() -> None:
    from sim2real.training.compensation import LatencyCompensation

    good = {"noise_std": [0.01] * 11, "process_std": [0.001] * 11}
    loaded = LatencyCompensation.load({"estimate": True, "filter": good})
    assert loaded.filter is not None and loaded.to_dict()["filter"] == good
    for bad, message in [
        ({"noise_std": [0.01] * 11}, "one value per observation dimension"),
        ({**good, "gain": 1}, "unknown keys"),
        ({"noise_std": [float("nan")] * 11, "process_std": [0.0] * 11}, "finite"),
    ]:
        with pytest.raises(ValueError, match=message):
            LatencyCompensation.load({"filter": bad})


def test_predictor_leaves_inactive_rows_untouched() -> None:
    """Rows an engine marks inactive pass through and keep no commands; the active row is
    predicted exactly as by a predictor that only ever saw that row."""
    import numpy as np

    from sim2real.training.compensation import LatencyCompensation, LatencyPredictor

    compensation = LatencyCompensation(0.02, 0.01)
    both = LatencyPredictor("Hopper", compensation)
    alone = LatencyPredictor("Hopper", compensation)
    env = sim2real.make("Hopper", {"timing": {"obs_latency_s": 0.02, "action_latency_s": 0.01}})
    obs, _ = env.reset(seed=4)
    other = np.full_like(obs, 0.5)
    active = np.array([True, False])
    rng = np.random.default_rng(0)
    for step in range(5):
        start = np.array([step == 0, step == 0])
        predicted = both.predict(np.stack([obs, other]), start, active)
        np.testing.assert_array_equal(predicted[0], alone.predict(obs[None], start[:1])[0])
        np.testing.assert_array_equal(predicted[1], other)
        action = rng.uniform(-0.5, 0.5, 3)
        both.record(np.stack([action, -action]), active)
        alone.record(action[None])
        obs, *_ = env.step(action)
    assert both._commands[1] == [] and len(both._commands[0]) == 5


def test_compensate_policy_refuses_a_bad_filter_before_any_work(tmp_path: Path, capsys) -> None:
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "scripts" / "compensate_policy.py"
    spec = importlib.util.spec_from_file_location("compensate_policy", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    robust = data_dir("policies") / "Hopper" / "robust" / "seed0"
    plain = data_dir("policies") / "Hopper" / "sim" / "seed0"
    for source, value, message in [
        (robust, "stormy", "not a preset of Hopper (default, harsh) nor 1 or 11"),
        (robust, "0.1,nan", "nor 1 or 11 finite numbers"),
        (plain, "default", "not trained with randomization"),
    ]:
        dest = tmp_path / value
        assert module.main([str(source), str(dest), "--filter", value]) == 2
        assert message in capsys.readouterr().err
        assert not dest.exists()  # refused before any work
    for value, message in [
        ("1.2:0.5:0.1", "not LOW:HIGH:STEP"),
        ("0.5,nan", "numbers > 0"),
        ("0.5:1.2:0", "not LOW:HIGH:STEP"),
    ]:
        dest = tmp_path / "strengths"
        assert module.main([str(robust), str(dest), "--estimate", "--strengths", value]) == 2
        assert message in capsys.readouterr().err
        assert not dest.exists()
    assert module.main([str(robust), str(tmp_path / "s"), "--strengths", "0.8,1.0"]) == 2
    assert "needs --estimate" in capsys.readouterr().err


def test_compensate_policy_copies_the_checkpoint_it_is_given(tmp_path: Path, capsys) -> None:
    """``--checkpoint STEPS`` copies that checkpoint's model and normalization (and says so in
    the metadata); a step with no checkpoint is refused, listing those there are."""
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "scripts" / "compensate_policy.py"
    spec = importlib.util.spec_from_file_location("compensate_policy", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = tmp_path / "run"
    shutil.copytree(data_dir("policies") / "Hopper" / "robust" / "seed0", run)
    (run / "checkpoints").mkdir()
    other = data_dir("policies") / "Hopper" / "robust" / "seed1"
    shutil.copy2(other / "model.zip", run / "checkpoints" / "rl_model_50_steps.zip")
    shutil.copy2(
        other / "vecnormalize.pkl", run / "checkpoints" / "rl_model_vecnormalize_50_steps.pkl"
    )
    assert module.main([str(run), str(tmp_path / "none"), "--checkpoint", "60"]) == 2
    assert "has no checkpoint at that step (it has 50)" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    dest = tmp_path / "copy"
    argv = ["--estimate", "--checkpoint", "50", "--filter", "default", "--filter-episodes", "2"]
    assert module.main([str(run), str(dest), *argv]) == 0
    for name in ("model.zip", "vecnormalize.pkl"):
        assert (dest / name).read_bytes() == (other / name).read_bytes()
    meta = json.loads((dest / "metadata.json").read_text())
    assert meta["checkpoint_steps"] == meta["timesteps_done"] == 50
    assert meta["latency_compensation"]["filter"] and "train_episodes" not in meta


@pytest.mark.parametrize(
    ("task", "skews", "strength", "delay"),
    [("InvertedDoublePendulum", {"dynamics": {"actuator_strength": 0.7}}, 0.7, (0, 0)),
     ("InvertedDoublePendulum", {"dynamics": {"actuator_strength": 0.8},
                                 "timing": {"obs_latency_s": 0.04, "action_latency_s": 0.02}},
      0.8, (4, 2)),
     ("Hopper", {"dynamics": {"actuator_strength": 0.9},
                 "timing": {"obs_latency_s": 0.02, "action_latency_s": 0.01}}, 0.9, (10, 5)),
     ("Hopper", {}, 1.0, (0, 0))],
)  # fmt: skip
def test_delay_estimator_finds_the_motor_strength_with_the_delay(
    task: str, skews: dict, strength: float, delay: tuple[int, int]
) -> None:
    """Known truth: on a noiseless stream of a robot whose motors deliver ``strength`` of
    their nominal torque, the joint estimate is that strength and the true delays, and the
    prediction then runs on the robot's own gear (the sim variant: 1.0, no delay)."""
    import numpy as np

    from sim2real.training.compensation import LatencyCompensation, LatencyPredictor

    env = sim2real.make(task, skews)
    candidates = tuple(np.arange(0.5, 1.21, 0.1).round(2))
    compensation = LatencyCompensation(estimate=True, max_latency_s=0.08, strengths=candidates)
    predictor = LatencyPredictor(task, compensation)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    for step in range(12):
        predictor.predict(obs[None], np.array([step == 0]))
        action = rng.uniform(-0.5, 0.5, env.action_space.shape)
        predictor.record(action[None])
        obs, *_ = env.step(action)
    predictor.predict(obs[None], np.array([False]))
    assert predictor.split(0) == delay
    assert predictor.strength(0) == strength
    nominal = predictor._nominal_gear
    np.testing.assert_array_equal(predictor._model.actuator_gear, nominal * strength)


def test_strength_candidates_are_checked() -> None:
    from sim2real.training.compensation import LatencyCompensation

    loaded = LatencyCompensation.load({"estimate": True, "strengths": [0.8, 1.0]})
    assert loaded.strengths == (0.8, 1.0) and loaded.to_dict()["strengths"] == [0.8, 1.0]
    assert "strengths" not in LatencyCompensation.load({"estimate": True}).to_dict()
    for bad, message in [
        ({"estimate": True, "strengths": [0.8, float("inf")]}, "finite and > 0"),
        ({"estimate": True, "strengths": [0.0, 1.0]}, "finite and > 0"),
        ({"strengths": [0.8, 1.0]}, "need estimate"),
    ]:
        with pytest.raises(ValueError, match=message):
            LatencyCompensation.load(bad)


def test_preset_parts_builds_each_part_from_the_preset_and_refuses_unknown_ones(capsys) -> None:
    """scripts/preset_parts.py: a part takes exactly the preset's values it names; a part
    naming anything else is refused in one line before any episode (exit 2)."""
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "scripts" / "preset_parts.py"
    spec = importlib.util.spec_from_file_location("preset_parts", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sections = module.preset_sections("InvertedDoublePendulum", "harsh")
    assert sections["dynamics"]["mass_scale"] == 1.2 and sections["timing"]["obs_latency_s"] == 0.04
    assert module.part_skews("all", sections) == sections
    assert set(module.part_skews("no-sensing", sections)) == {"dynamics", "actuation", "timing"}
    assert module.part_skews("dynamics.mass_scale+timing", sections) == {
        "dynamics": {"mass_scale": 1.2},
        "timing": sections["timing"],
    }
    policy = data_dir("policies") / "InvertedDoublePendulum" / "robust" / "seed0"
    for part in ("dynamics.gravity", "wind", "no-wind"):
        assert module.main([str(policy), "--task", "InvertedDoublePendulum", "--parts", part]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and ("is not in the preset" in error or "no section" in error)


def test_process_std_is_zero_on_the_nominal_robot_and_grows_with_its_skew() -> None:
    """Known truth for the filter's model error (:func:`measure_process_std`): with no
    randomization the robot is the model, so every one-step prediction is exact (to
    rounding); on a robot 1.3x as heavy the velocities it predicts are off, and more so
    than on one 1.1x as heavy."""
    import numpy as np

    from sim2real.training.compensation import measure_process_std, policy_transitions

    policy = str(data_dir("policies") / "Hopper" / "sim" / "seed0")
    nominal = measure_process_std("Hopper", policy, {}, episodes=1, max_steps=40)
    assert nominal.shape == (11,) and nominal.max() < 1e-12

    def heavier(scale: float) -> np.ndarray:
        fixed = {"dynamics": {"mass_scale": {"dist": "uniform", "low": scale, "high": scale}}}
        return measure_process_std("Hopper", policy, fixed, episodes=1, max_steps=40)

    light, heavy = heavier(1.1), heavier(1.3)
    assert light[5:].max() > 1e-4 and np.all(heavy[5:] > light[5:])
    # ``sent`` is the episode's command list as of each transition (one more per step).
    counts = [len(sent) for _, sent, _ in policy_transitions("Hopper", policy, {}, 1, 0, 40)]
    assert counts == list(range(1, 41))
