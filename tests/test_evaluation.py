"""The gap evaluator end to end: plain-loop returns, attribution, divergence, resume, engines,
saved policies and bad input. Small: InvertedPendulum, a few seeds, short episodes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import sim2real
from sim2real.cli import main
from sim2real.evaluation import GapReport, PolicyError
from sim2real.evaluation.analysis import Settings, return_table, summarize_group
from sim2real.evaluation.policy import PolicySource, resolve_policies
from sim2real.evaluation.report import VariantInfo
from sim2real.evaluation.rollout import (
    Episode,
    Lane,
    divergence,
    instability_warnings,
    plan_lanes,
)
from sim2real.evaluation.store import EPISODES_FILE
from sim2real.spec import SkewSpecError

TASK = "InvertedPendulum"
STEPS = 200
SEEDS = [100, 101, 102, 103]
REAL = {
    "dynamics": {"mass_scale": 1.3},
    "actuation": {"noise_std": 0.05},
    "timing": {"obs_latency_s": 0.02},
}
UNSTABLE = {"dynamics": {"actuator_strength": 1e9}}  # MuJoCo resets the simulation at once


def wobbly(obs: np.ndarray) -> np.ndarray:
    """A weak balance controller: episodes end after a seed-dependent number of steps."""
    return np.clip(2.0 * obs[:, 1:2] + 0.2 * obs[:, 3:4], -3.0, 3.0)


def steady(obs: np.ndarray) -> np.ndarray:
    """A good balance controller: every episode lasts until the time limit."""
    return np.clip(10 * obs[:, 1:2] + obs[:, 3:4] + 0.5 * obs[:, 0:1] + obs[:, 2:3], -3.0, 3.0)


class Counting:
    """A policy that counts the observations it was asked to act on; it keeps the name
    of the policy it wraps, which is how a callable's episodes are found on resume."""

    def __init__(self, policy):
        self.policy, self.rows = policy, 0
        self.__name__ = policy.__name__

    def __call__(self, obs):
        self.rows += len(obs)
        return self.policy(obs)


def plain_loop(env: gym.Env, policy, seed: int) -> float:
    obs, _ = env.reset(seed=seed)
    total = 0.0
    while True:
        obs, reward, terminated, truncated, _ = env.step(policy(obs[None])[0])
        total += reward
        if terminated or truncated:
            return total


def returns_of(report: GapReport, variant: str, policy: str | None = None) -> dict[int, float]:
    return {
        e["seed"]: e["return"]
        for e in report.episodes
        if e["variant"] == variant and (policy is None or e["policy"] == policy)
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[GapReport, Path]:
    out = tmp_path_factory.mktemp("gap")
    report = sim2real.evaluate_gap(
        wobbly,
        TASK,
        seeds=SEEDS,
        real=REAL,
        extra=("harsh", UNSTABLE),
        max_episode_steps=STEPS,
        n_envs=3,
        out=out,
        progress=False,
    )
    return report, out


@pytest.fixture(scope="module")
def saved_ppo(tmp_path_factory) -> Path:
    """A tiny PPO with observation normalization, saved as a training run is."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    folder = tmp_path_factory.mktemp("runs") / "tiny" / "seed0"
    folder.mkdir(parents=True)
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("InvertedPendulum-v5")]))
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=128,
        batch_size=64,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [16]},
    )
    model.learn(256)
    model.save(folder / "model.zip")
    venv.save(str(folder / "vecnormalize.pkl"))
    metadata = {"task": TASK, "algo": "ppo", "obs_normalization": True}
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


# ---------------------------------------------------------------------- returns
@pytest.mark.parametrize("variant", ["sim", "real"])
def test_returns_equal_a_plain_loop(run, variant):
    report, _ = run
    skews = {} if variant == "sim" else REAL
    env = sim2real.make(TASK, skews=skews, max_episode_steps=STEPS)
    expected = {seed: plain_loop(env, wobbly, seed) for seed in SEEDS}
    assert returns_of(report, variant) == expected
    assert len(set(expected.values())) > 1  # seed-dependent episodes, not all truncated


def test_real_variant_matches_the_registered_real_env(run):
    report, _ = run
    env = gym.make(f"sim2real/{TASK}-real-v0", skews="harsh", max_episode_steps=STEPS)
    assert returns_of(report, "harsh") == {s: plain_loop(env, wobbly, s) for s in SEEDS}


def test_saved_ppo_with_frozen_normalization_equals_a_plain_loop(saved_ppo):
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    model = PPO.load(saved_ppo / "model.zip", device="cpu")
    stats = VecNormalize.load(
        str(saved_ppo / "vecnormalize.pkl"), DummyVecEnv([lambda: gym.make("InvertedPendulum-v5")])
    )
    stats.training = False

    def reference(obs):
        return model.predict(stats.normalize_obs(obs), deterministic=True)[0]

    # One sub-env: batches of one observation, as in the plain loop (a larger batch may
    # change a network output in the last bit, as with any batched inference).
    report = sim2real.evaluate_gap(
        saved_ppo,
        TASK,
        seeds=[5, 6],
        real="default",
        attribution=False,
        max_episode_steps=60,
        n_envs=1,
        progress=False,
    )
    for variant, skews in (("sim", {}), ("default", "default")):
        env = sim2real.make(TASK, skews=skews, max_episode_steps=60)
        expected = {s: plain_loop(env, reference, s) for s in (5, 6)}
        assert returns_of(report, variant) == expected
    assert report.policies[0]["obs_normalization"] is True
    assert report.policies[0]["label"] == "tiny/seed0"


# ---------------------------------------------------------------------- report
def test_gap_is_sim_minus_real_paired_by_seed(run):
    report, _ = run
    sim, real = returns_of(report, "sim"), returns_of(report, "real")
    gap = report.groups["wobbly"].gaps["real"]
    assert gap.gap.value == pytest.approx(np.mean([sim[s] - real[s] for s in SEEDS]))
    assert report.gap == gap.gap
    assert gap.relative_gap.value == pytest.approx(gap.gap.value / np.mean(list(sim.values())))
    assert gap.gap.low <= gap.gap.value <= gap.gap.high
    assert gap.pairs == len(SEEDS)


def test_exact_attribution_adds_up_to_the_gap(run):
    report, _ = run
    attribution = report.groups["wobbly"].attribution
    assert attribution.method == "exact" and attribution.permutations is None
    assert list(attribution.shapley) == list(sim2real.SkewSpec.load(REAL).active())
    total = sum(e.value for e in attribution.shapley.values())
    assert total == pytest.approx(attribution.total.value)
    assert attribution.total.value == pytest.approx(report.gap.value)
    # "alone" is the gap with only that skew: sim minus the one-skew variant, per seed.
    sim = returns_of(report, "sim")
    alone = returns_of(report, "real[dynamics.mass_scale]")
    assert attribution.alone["dynamics.mass_scale"].value == pytest.approx(
        np.mean([sim[s] - alone[s] for s in SEEDS])
    )
    fixing = attribution.fixing["timing.obs_latency_s"].value
    without = attribution.without["timing.obs_latency_s"].value
    assert fixing == pytest.approx(attribution.total.value - without)
    subsets = [v for v in report.variants.values() if v.role == "attribution"]
    assert len(subsets) == 2**3 - 2  # the empty and full subsets are sim and real


SEVEN_SKEWS = {
    "dynamics": {
        "friction_scale": 0.8,
        "mass_scale": 1.1,
        "damping_scale": 1.2,
        "actuator_strength": 0.9,
    },
    "actuation": {"noise_std": 0.01},
    "sensing": {"noise_std": 0.01},
    "timing": {"obs_latency_s": 0.02},
}


def test_sampled_attribution_beyond_six_skews_is_efficient():
    report = sim2real.evaluate_gap(
        wobbly,
        TASK,
        seeds=[1, 2],
        real=SEVEN_SKEWS,
        permutations=2,
        max_episode_steps=40,
        progress=False,
    )
    attribution = report.groups["wobbly"].attribution
    assert len(attribution.shapley) == 7
    assert attribution.method == "sampled" and attribution.permutations == 2
    total = sum(e.value for e in attribution.shapley.values())
    assert total == pytest.approx(attribution.total.value)
    assert "Shapley values sampled over 2 permutations" in report.to_markdown()


def test_divergence_is_flagged_counted_and_excluded(run):
    report, _ = run
    unstable = report.groups["wobbly"].returns["extra2"]
    assert unstable.diverged == unstable.episodes == len(SEEDS)
    assert np.isnan(unstable.mean.value)
    flagged = [e for e in report.episodes if e["variant"] == "extra2"]
    assert all(e["diverged"] and "MuJoCo instability warning" in e["reason"] for e in flagged)
    assert report.divergences == len(SEEDS)
    data = report.to_dict()
    assert data["divergences"] == {"total": len(SEEDS), "by_variant": {"extra2": len(SEEDS)}}
    assert data["groups"]["wobbly"]["returns"]["extra2"]["mean"]["value"] is None
    assert data["groups"]["wobbly"]["gaps"]["extra2"]["pairs"] == 0
    assert "4 episodes ended in a physics divergence" in report.to_markdown()
    # The other variants ran untouched.
    assert report.groups["wobbly"].returns["real"].diverged == 0


def test_divergence_detects_instability_warnings_and_non_finite_state():
    env = sim2real.make(TASK, skews=UNSTABLE)
    env.reset(seed=0)
    data = env.unwrapped.data
    before = instability_warnings(data)
    assert divergence(data, before) is None
    env.step(np.array([3.0]))  # a full push on a 1e9 times stronger motor
    assert divergence(data, before) == "MuJoCo instability warning (mjWARN_BADQACC)"
    # MuJoCo has reset the state: without the counter this would pass for a fresh start.
    assert np.isfinite(data.qacc).all()
    env.reset(seed=0)
    data.qvel[1] = np.nan
    assert divergence(data, instability_warnings(data)) == "non-finite qvel"


def test_a_diverged_episode_never_poisons_a_mean():
    source = PolicySource("p", "p", "p", None, "callable", function=wobbly)
    episodes = {
        ("p", "S", 1): Episode("p", "S", 1, 10.0, 5),
        ("p", "S", 2): Episode("p", "S", 2, 20.0, 5),
        ("p", "R", 1): Episode("p", "R", 1, 4.0, 5),
        ("p", "R", 2): Episode("p", "R", 2, 1e300, 3, diverged=True, reason="non-finite qacc"),
    }
    table = return_table(episodes, [("p", "S"), ("p", "R")], [1, 2])
    variants = [VariantInfo("sim", "sim", "S", {}), VariantInfo("real", "real", "R", {})]
    group = summarize_group("p", [source], variants, table, None, Settings(0.95, 200, 0))
    assert group.returns["real"].mean.value == 4.0
    assert group.returns["real"].diverged == 1
    assert group.returns["sim"].mean.value == 15.0
    assert group.gaps["real"].gap.value == 6.0  # only seed 1 is paired
    assert group.gaps["real"].pairs == 1


def test_json_markdown_and_plots(run):
    report, out = run
    data = json.loads((out / "report.json").read_text())
    assert data["schema"] == "sim2real.gap_report/1"
    assert data["task"] == TASK and data["seeds"] == SEEDS
    assert set(data) >= {"settings", "variants", "policies", "groups", "divergences", "episodes"}
    assert data["variants"]["sim"] == {
        "role": "sim",
        "key": data["variants"]["sim"]["key"],
        "skews": {},
    }
    assert data["variants"]["real"]["skews"] == sim2real.SkewSpec.load(REAL).active()
    group = data["groups"]["wobbly"]
    assert set(group["returns"]) == {"sim", "real", "harsh", "extra2"}
    assert set(group["gaps"]["real"]) == {"gap", "relative_gap", "prob_sim_beats", "pairs"}
    assert set(group["attribution"]["shapley"]["dynamics.mass_scale"]) == {"value", "low", "high"}
    assert json.loads(report.to_json()) == data | {"created": report.created}
    markdown = (out / "report.md").read_text()
    assert "| wobbly | real |" in markdown and "**total**" in markdown
    for png in ("returns.png", "attribution.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------- resume
def test_interrupted_evaluation_resumes_without_redoing_episodes(run, tmp_path):
    report, out = run
    lines = (out / EPISODES_FILE).read_text().splitlines()
    # Keep the header and 10 episodes, and a last line cut short by the interruption.
    (tmp_path / EPISODES_FILE).write_text("\n".join(lines[:11]) + "\n" + lines[11][:25])
    policy = Counting(wobbly)
    resumed = sim2real.evaluate_gap(
        policy,
        TASK,
        seeds=SEEDS,
        real=REAL,
        extra=("harsh", UNSTABLE),
        max_episode_steps=STEPS,
        out=tmp_path,
        resume=True,
        progress=False,
    )
    assert [e["return"] for e in resumed.episodes] == [e["return"] for e in report.episodes]
    written = (tmp_path / EPISODES_FILE).read_text().splitlines()
    assert written[:11] == lines[:11]
    assert len(written) == len(lines)  # nothing done twice
    # The first 10 episodes were not rerun: fewer policy steps than the full evaluation.
    steps = sum(e["length"] for e in report.episodes)
    kept = sum(json.loads(line)["length"] for line in lines[1:11])
    probe = 2  # two observations checked before any episode
    assert policy.rows == steps - kept + probe
    # Resuming a finished evaluation runs nothing.
    policy.rows = 0
    sim2real.evaluate_gap(
        policy,
        TASK,
        seeds=SEEDS,
        real=REAL,
        extra=("harsh", UNSTABLE),
        max_episode_steps=STEPS,
        out=tmp_path,
        resume=True,
        progress=False,
    )
    assert policy.rows == probe


def test_existing_results_are_not_overwritten(run):
    _, out = run
    with pytest.raises(ValueError, match="already holds results; resume it"):
        sim2real.evaluate_gap(wobbly, TASK, seeds=SEEDS, real=REAL, out=out, progress=False)
    with pytest.raises(ValueError, match="cannot resume"):
        sim2real.evaluate_gap(
            wobbly, TASK, seeds=SEEDS, real=REAL, out=out, resume=True, progress=False
        )  # another max_episode_steps: other episodes


# ---------------------------------------------------------------------- vectorization
def test_lanes_give_each_seed_to_exactly_one_sub_env():
    jobs = [(p, v, s) for p in (0, 1) for v in ("a", "b") for s in range(7)]
    lanes = plan_lanes(jobs, 3)
    assert lanes[:3] == (Lane(0, "a", (0, 1, 2)), Lane(0, "a", (3, 4, 5)), Lane(0, "a", (6,)))
    assert sorted((lane.policy, lane.variant, s) for lane in lanes for s in lane.seeds) == sorted(
        jobs
    )


def test_sb3_results_do_not_depend_on_scheduling(saved_ppo):
    # A network sees padded batches of n_envs observations: its output for one observation
    # is the same whichever observations share its batch, and wherever it sits in it.
    (source,) = resolve_policies(saved_ppo)
    policy = source.build(batch_size=8)
    obs = np.random.default_rng(0).normal(size=(6, 4))
    actions = policy(obs)
    assert actions.shape == (6, 1)
    np.testing.assert_array_equal(policy(obs[:2]), actions[:2])
    np.testing.assert_array_equal(policy(obs[::-1]), actions[::-1])
    # So an SB3 policy's episodes do not depend on which lanes run side by side.
    kwargs = dict(
        seeds=range(8),
        real="default",
        attribution=False,
        max_episode_steps=40,
        n_envs=3,
        progress=False,
    )
    here = sim2real.evaluate_gap(saved_ppo, TASK, **kwargs)
    wide = sim2real.evaluate_gap(saved_ppo, TASK, **{**kwargs, "seeds": range(7, -1, -1)})
    by_seed = {(e["variant"], e["seed"]): e for e in wide.episodes}
    assert [by_seed[e["variant"], e["seed"]] for e in here.episodes] == here.episodes


def test_an_unpicklable_policy_is_refused_by_ray_before_any_episode():
    with pytest.raises(PolicyError, match="cannot be sent to a worker process"):
        sim2real.evaluate_gap(
            lambda obs: wobbly(obs), TASK, seeds=[1, 2], engine="ray", progress=False
        )


# ---------------------------------------------------------------------- several policies
def test_training_seeds_form_a_group_compared_on_common_seeds(saved_ppo, tmp_path):
    for seed in ("seed1", "seed2"):
        copy = tmp_path / "tiny" / seed
        copy.mkdir(parents=True)
        for file in saved_ppo.iterdir():
            (copy / file.name).write_bytes(file.read_bytes())
    sources = resolve_policies([saved_ppo, tmp_path / "tiny" / "seed1", steady])
    assert [s.group for s in sources] == ["tiny", "tiny", "steady"]
    report = sim2real.evaluate_gap(
        {"ppo": [saved_ppo, tmp_path / "tiny" / "seed2"], "pd": [wobbly, steady]},
        TASK,
        seeds=[3, 4],
        attribution=False,
        max_episode_steps=30,
        progress=False,
    )
    assert list(report.groups) == ["ppo", "pd"]
    assert report.groups["ppo"].replication == "2 training seeds"
    ppo = report.groups["ppo"].returns["sim"].per_policy
    assert ppo["tiny/seed0"] == ppo["tiny/seed2"]  # same weights, same seeds: same episodes
    pd = report.groups["pd"].returns["sim"]
    means = [v["mean"] for v in pd.per_policy.values()]
    assert pd.mean.value == pytest.approx(np.mean(means))


class Predictor:
    """Not SB3, but with SB3's ``predict``: accepted like a model."""

    def __init__(self):
        env = gym.make("InvertedPendulum-v5")
        self.observation_space, self.action_space = env.observation_space, env.action_space

    def predict(self, obs, deterministic=False):
        assert deterministic
        return wobbly(obs), None


def test_loaded_models_and_predictors(saved_ppo):
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    model = PPO.load(saved_ppo / "model.zip", device="cpu")
    stats = VecNormalize.load(
        str(saved_ppo / "vecnormalize.pkl"), DummyVecEnv([lambda: gym.make("InvertedPendulum-v5")])
    )
    kwargs = dict(seeds=[1, 2], attribution=False, max_episode_steps=30, progress=False)
    loaded = sim2real.evaluate_gap((model, stats), TASK, **kwargs)
    from_disk = sim2real.evaluate_gap(saved_ppo, TASK, **kwargs)
    assert [e["return"] for e in loaded.episodes] == [e["return"] for e in from_disk.episodes]
    assert loaded.policies[0]["obs_normalization"] and loaded.policies[0]["algo"] == "ppo"
    predicted = sim2real.evaluate_gap(Predictor(), TASK, **kwargs)
    plain = sim2real.evaluate_gap(wobbly, TASK, **kwargs)
    assert [e["return"] for e in predicted.episodes] == [e["return"] for e in plain.episodes]


def test_algorithm_is_detected_from_the_saved_model(tmp_path):
    from stable_baselines3 import A2C, PPO, SAC, TD3

    env = gym.make("InvertedPendulum-v5")
    for algo in (PPO, A2C, SAC, TD3):
        algo("MlpPolicy", env, device="cpu").save(tmp_path / f"{algo.__name__}.zip")
    sources = resolve_policies([tmp_path / f"{a}.zip" for a in ("PPO", "A2C", "SAC", "TD3")])
    assert [s.algo for s in sources] == ["ppo", "a2c", "sac", "td3"]
    # A policy class of the user's own (here: only its name changed): the loaders are tried.
    with zipfile.ZipFile(tmp_path / "SAC.zip") as source_zip:
        files = {name: source_zip.read(name) for name in source_zip.namelist()}
    data = json.loads(files["data"])
    data["policy_class"]["__module__"] = "my_lab.policies"
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(tmp_path / "custom.zip", "w") as custom:
        for name, content in files.items():
            custom.writestr(name, content)
    assert resolve_policies(tmp_path / "custom.zip")[0].algo == "sac"
    report = sim2real.evaluate_gap(
        [str(tmp_path / "SAC.zip"), str(tmp_path / "TD3.zip")],
        TASK,
        seeds=[1],
        real={},
        max_episode_steps=5,
        progress=False,
    )
    assert len(report.episodes) == 2  # a real variant without skews shares sim's episodes
    assert report.groups["SAC"].gaps["real"].gap.value == 0.0


# ---------------------------------------------------------------------- bad input
def bad_inputs(saved_ppo: Path, tmp_path: Path) -> list[tuple[dict, type, str]]:
    from stable_baselines3 import PPO

    hopper = tmp_path / "hopper.zip"
    PPO("MlpPolicy", gym.make("Hopper-v5"), device="cpu").save(hopper)
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"not a zip file")
    no_stats = tmp_path / "no_stats"
    no_stats.mkdir()
    for name in ("model.zip", "metadata.json"):
        (no_stats / name).write_bytes((saved_ppo / name).read_bytes())
    return [
        ({"policy": tmp_path / "missing"}, PolicyError, "no such file or directory"),
        ({"policy": tmp_path}, PolicyError, "no model.zip in this folder"),
        ({"policy": corrupt}, PolicyError, "is not a Stable-Baselines3 model file"),
        ({"policy": no_stats}, PolicyError, "trained with observation normalization"),
        ({"policy": hopper}, PolicyError, r"expects observations of shape \(11,\)"),
        ({"policy": lambda obs: obs}, PolicyError, r"returned actions of shape \(2, 4\)"),
        ({"policy": 42}, PolicyError, "is not a path"),
        ({"seeds": []}, ValueError, "seeds is empty"),
        ({"seeds": [1, 1]}, ValueError, "seeds must be distinct"),
        ({"real": "stormy"}, SkewSpecError, "real preset 'stormy' is not defined"),
        ({"extra": ["harsh", "stormy"]}, SkewSpecError, "allowed: default, harsh"),
        ({"real": {"dynamics": {"friction": 2}}}, SkewSpecError, "unknown skew field"),
        ({"task": "Hoper"}, SkewSpecError, "unknown task 'Hoper'"),
        ({"engine": "warp"}, ValueError, "engine must be one of local, batch, ray, got 'warp'"),
    ]


def test_bad_input_is_refused_before_any_episode(saved_ppo, tmp_path):
    for override, error, message in bad_inputs(saved_ppo, tmp_path):
        arguments = {"policy": wobbly, "task": TASK, "seeds": [1], **override}
        out = tmp_path / "out"
        with pytest.raises(error, match=message):
            sim2real.evaluate_gap(**arguments, out=out, progress=False)
        assert not (out / EPISODES_FILE).exists(), override


def test_command_line(saved_ppo, tmp_path, capsys):
    out = tmp_path / "gap"
    common = ["evaluate", "--task", TASK, "--no-progress"]
    status = main(
        [
            *common,
            "--policy",
            str(saved_ppo),
            "--seeds",
            "1-2,7",
            "--extra",
            "harsh",
            "--max-episode-steps",
            "20",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    assert "| tiny | sim |" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["seeds"] == [1, 2, 7]
    assert {p.name for p in out.iterdir()} >= {"episodes.jsonl", "report.md", "returns.png"}

    for arguments, message in (
        (["--policy", str(tmp_path / "nope"), "--out", str(tmp_path / "a")], "no such file"),
        (
            ["--policy", str(saved_ppo), "--seeds", "9-3", "--out", str(tmp_path / "b")],
            "runs backwards",
        ),
        (
            ["--policy", str(saved_ppo), "--real", "stormy", "--out", str(tmp_path / "c")],
            "real preset 'stormy'",
        ),
    ):
        assert main([*common, *arguments]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and "\n" not in error
