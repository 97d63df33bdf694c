"""The batch engine equals the Gymnasium envs bit for bit, for every task, sim and both
presets, and gives the local engine's per-episode returns."""

from __future__ import annotations

import numpy as np
import pytest

import sim2real
from sim2real.engines import Episode, Workload, plan_lanes, run_workload
from sim2real.engines.batch import BatchSim
from sim2real.evaluation.policy import resolve_policies
from sim2real.paths import data_dir
from sim2real.tasks import get_task, tasks

VARIANTS = ("sim", "default", "harsh")
N_SIMS = 3
STEPS = 40


def _spec(task: str, variant: str):
    return None if variant == "sim" else get_task(task).preset(variant)


def _lockstep(task: str, variants: list[str], steps: int, max_steps: int | None = None):
    """Step Gymnasium envs and one BatchSim side by side under the same seeds and actions;
    every episode that ends restarts with the next seed in both. Returns the batch
    observations seen (for the tests that the skews act) and the first difference."""
    n = len(variants)
    kwargs = {} if max_steps is None else {"max_episode_steps": max_steps}
    envs = [sim2real.make(task, skews=_spec(task, v), **kwargs) for v in variants]
    sim = BatchSim(task, n, nthread=1, max_episode_steps=max_steps)
    pipes = [sim.pipeline(_spec(task, v)) for v in variants]
    seeds = list(range(100, 100 + n))
    nxt = 100 + n
    batch_obs = sim.reset(range(n), seeds, pipes)
    gym_obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds, strict=True)])
    assert np.array_equal(batch_obs, gym_obs), "first observations differ"
    seen = [batch_obs]
    rng = np.random.default_rng(0)
    space = envs[0].action_space
    ends = 0
    for step in range(steps):
        actions = rng.uniform(space.low, space.high, (n, sim.nu)).astype(np.float32)
        result = sim.step(np.arange(n), actions)
        seen.append(result.obs)
        for i, env in enumerate(envs):
            obs, reward, terminated, truncated, _ = env.step(actions[i])
            where = f"step {step}, sim {i} ({variants[i]})"
            assert np.array_equal(obs, result.obs[i]), f"observation differs at {where}"
            assert reward == result.reward[i], f"reward differs at {where}"
            assert terminated == result.terminated[i], f"termination differs at {where}"
            assert truncated == result.truncated[i], f"truncation differs at {where}"
            if terminated or truncated:
                ends += 1
                first = env.reset(seed=nxt)[0]
                assert np.array_equal(first, sim.reset([i], [nxt], [pipes[i]])[0])
                nxt += 1
    return np.stack(seen), ends


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("task", list(tasks()))
def test_equals_gymnasium_step_for_step(task: str, variant: str) -> None:
    # A short time limit makes every task cross episode boundaries (truncation and reset).
    _, ends = _lockstep(task, [variant] * N_SIMS, STEPS, max_steps=15)
    assert ends >= N_SIMS


@pytest.mark.parametrize("task", ["Hopper", "Ant", "Reacher"])
def test_mixed_variants_in_one_batch(task: str) -> None:
    """Each simulation has its own dynamics, latencies and streams: a sim, a default and a
    harsh simulation side by side each equal their own Gymnasium env, and the skews act."""
    seen, _ = _lockstep(task, list(VARIANTS), STEPS)
    sim_rows, default_rows, harsh_rows = seen[:, 0], seen[:, 1], seen[:, 2]
    assert not np.array_equal(sim_rows, default_rows)
    assert not np.array_equal(default_rows, harsh_rows)


def test_no_state_leaks_between_episodes() -> None:
    """A reset with a seed gives the same episode whatever ran before it in that
    simulation (latency buffers, dropout's previous reading, command history, dynamics)."""
    spec = get_task("Hopper").preset("harsh")
    sim = BatchSim("Hopper", 2, nthread=1)
    pipe, nominal = sim.pipeline(spec), sim.pipeline(None)
    actions = np.full((2, 3), 0.3, dtype=np.float32)
    sim.reset([0, 1], [7, 8], [nominal, pipe])
    for _ in range(5):
        sim.step([0, 1], actions)
    first = sim.reset([0], [9], [pipe])
    steps = [sim.step([0], actions[:1]).obs for _ in range(5)]
    fresh = BatchSim("Hopper", 1, nthread=1)
    assert np.array_equal(first, fresh.reset([0], [9], [pipe]))
    for obs in steps:
        assert np.array_equal(obs, fresh.step([0], actions[:1]).obs)


def test_divergence_is_flagged_per_simulation() -> None:
    sim = BatchSim("Hopper", 2, nthread=1)
    nominal = sim.pipeline(None)
    sim.reset([0, 1], [1, 2], [nominal, nominal])
    sim.qvel[0] = np.nan  # MuJoCo finds the bad value, warns and resets simulation 0
    result = sim.step([0, 1], np.zeros((2, 3), dtype=np.float32))
    reasons = sim.divergence(result.ids, result.obs, result.reward, np.zeros(2, dtype=bool))
    assert reasons == ["MuJoCo instability warning (mjWARN_BADQVEL)", None]


def test_refuses_what_it_cannot_realize() -> None:
    sim = BatchSim("Hopper", 1, nthread=1)
    with pytest.raises(ValueError, match="runs the built-in tasks"):
        BatchSim("NoSuchTask", 1)
    assert sim.pipeline({"timing": {"obs_latency_s": 0.01}}).obs_substeps == 5
    with pytest.raises(ValueError, match=r"does not realize timing\.control_jitter_s"):
        sim.pipeline({"timing.control_jitter_s": 0.004})
    with pytest.raises(ValueError, match="does not resample skews every step"):
        sim.pipeline({"sensing.noise_std": {"dist": "uniform", "low": 0, "high": 0.1,
                                            "resample": "step"}})  # fmt: skip


HOPPER = data_dir("policies") / "Hopper" / "sim" / "seed0"


@pytest.mark.slow
@pytest.mark.skipif(not HOPPER.is_dir(), reason="shipped Hopper policy missing")
def test_same_episodes_as_the_local_engine() -> None:
    """A shipped policy on sim and the default preset (sub-step latencies: 20 ms and 10 ms
    on a 2 ms substep grid and 8 ms control step): identical per-episode records."""
    sources = tuple(resolve_policies(str(HOPPER)))
    specs = {"sim": {}, "default": get_task("Hopper").preset("default").to_dict()}
    jobs = [(0, variant, seed) for variant in specs for seed in range(100, 103)]
    workload = Workload(
        task="Hopper",
        specs=specs,
        policies=sources,
        lanes=plan_lanes(jobs, 2),
        max_episode_steps=100,
        n_envs=4,
    )
    results: dict[str, list[Episode]] = {"local": [], "batch": []}
    for engine, found in results.items():
        run_workload(workload, engine=engine, on_episode=found.append)
    local = sorted(e.to_record().items() for e in results["local"])
    batch = sorted(e.to_record().items() for e in results["batch"])
    assert len(batch) == len(jobs)
    assert batch == local
    assert len({e.ret for e in results["batch"]}) > 1


class _Clocked:
    """A stateful policy: a gain that follows each row's own time in its episode, restarted by
    ``episode_start``, so that a wrong row or mask changes the returns."""

    def __init__(self, gain: float, dtype: type) -> None:
        self.gain, self.dtype, self.t = gain, dtype, None

    def __call__(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        if self.t is None:
            self.t = np.zeros(len(obs))
        self.t = np.where(episode_start, 0.0, self.t + 1.0)
        gain = self.gain * np.sin(self.t / 3.0)[:, None]
        return np.clip(gain * obs[:, 2:5], -1.0, 1.0).astype(self.dtype)


def test_policies_variants_and_lanes_as_the_local_engine() -> None:
    """Two stateful policies (one acting in float32, one in float64: upstream's control cost
    follows the action's dtype), two variants, lanes of several seeds on fewer simulations
    than lanes: the same records as the local engine."""
    from sim2real.evaluation.policy import PolicySource

    specs = {"sim": {}, "harsh": get_task("Hopper").preset("harsh").to_dict()}
    jobs = [(p, v, s) for p in (0, 1) for v in specs for s in range(10, 15)]
    records = {}
    for engine in ("local", "batch"):
        policies = tuple(
            PolicySource(
                label=f"p{g}",
                group=f"p{g}",
                identity=f"p{g}",
                algo=None,
                origin="callable",
                function=_Clocked(g, dtype),
            )
            for g, dtype in ((1.0, np.float32), (2.5, np.float64))
        )
        workload = Workload(
            task="Hopper",
            specs=specs,
            policies=policies,
            lanes=plan_lanes(jobs, 3),
            max_episode_steps=40,
            n_envs=3,
        )
        found: list[Episode] = []
        run_workload(workload, engine=engine, on_episode=found.append)
        records[engine] = sorted(tuple(e.to_record().items()) for e in found)
    assert len(records["batch"]) == len(jobs)
    assert records["batch"] == records["local"]
    assert len({dict(r)["return"] for r in records["batch"]}) > len(jobs) // 2


def test_every_dynamics_field() -> None:
    """Gravity, damping and (where the schema has it) armature, besides the presets' fields."""
    from sim2real.spec import SkewSpec

    dynamics = {"gravity": [0.5, 0.0, -7.0], "damping_scale": 2.0, "friction_scale": 0.5}
    if "armature_scale" in SkewSpec().dynamics.model_dump():
        dynamics["armature_scale"] = 3.0
    spec = {"dynamics": dynamics}
    n = 2
    envs = [sim2real.make("Walker2d", skews=spec) for _ in range(n)]
    sim = BatchSim("Walker2d", n, nthread=1)
    pipe = sim.pipeline(spec)
    assert set(pipe.dynamics) == set(dynamics)
    obs = sim.reset(range(n), [3, 4], [pipe] * n)
    assert np.array_equal(
        obs, np.stack([e.reset(seed=s)[0] for e, s in zip(envs, [3, 4], strict=True)])
    )
    rng = np.random.default_rng(5)
    for _ in range(30):
        actions = rng.uniform(-1, 1, (n, sim.nu)).astype(np.float32)
        result = sim.step(np.arange(n), actions)
        for i, env in enumerate(envs):
            obs, reward, terminated, _, _ = env.step(actions[i])
            assert np.array_equal(obs, result.obs[i]) and reward == result.reward[i]
            if terminated:
                return
