"""One point, one pipeline: an episode's point replays it exactly; sources are tiny; the random
streams of a fixed spec are those of before the redesign, bit for bit."""

from __future__ import annotations

import hashlib
import json

import gymnasium as gym
import numpy as np
import pytest

import sim2real
from sim2real.point import FixedSource, Point, Source
from sim2real.randomization import RandomizationSource, config_path
from sim2real.skewed_env import SkewedEnv
from sim2real.skews.pipeline import STREAMS, reset_generators
from sim2real.spec import SkewSpec


def run(env: gym.Env, seed: int, steps: int = 80, action_seed: int = 1) -> tuple[list, dict]:
    """(obs, reward, terminated, truncated) of one episode with fixed random actions."""
    rng = np.random.default_rng(action_seed)
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False, False)]
    for _ in range(steps):
        action = rng.uniform(env.action_space.low, env.action_space.high)
        obs, reward, terminated, truncated, _ = env.step(action.astype(env.action_space.dtype))
        out.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            break
    return out, info


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (oa, *ra), (ob, *rb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb


def test_a_fixed_spec_episode_replays_from_its_point():
    _, real = sim2real.make_pair("Hopper", real="harsh")
    episode, info = run(real, seed=21)
    point = json.loads(json.dumps(info["skews"]))  # plain JSON
    _, replay = sim2real.make_pair("Hopper", real=point)
    again, info_again = run(replay, seed=21)
    assert_same(episode, again)
    assert info_again["skews"] == info["skews"]


def test_a_randomized_episode_replays_as_a_fixed_spec():
    """Per-element masses, dampings and gears, per-dimension noise and bias, latencies."""
    dr = sim2real.make("Hopper", randomization=config_path("Hopper"))
    episode, info = run(dr, seed=5)
    point = json.loads(json.dumps(info["skews"]))
    assert len(point["dynamics.mass_scale"]) == dr.unwrapped.model.nbody
    assert len(point["sensing.bias_std"]) == 11
    spec = SkewSpec.load(point)  # a point is a spec: the schema takes per-element lists
    assert spec.active() == point
    _, replay = sim2real.make_pair("Hopper", real=point)
    assert isinstance(replay.unwrapped, type(dr.unwrapped))
    again, _ = run(replay, seed=5)
    assert_same(episode, again)


def test_a_randomized_episode_with_per_step_draws_replays():
    spec = {
        "dynamics": {"friction_scale": {"dist": "uniform", "low": 0.5, "high": 1.5}},
        "actuation": {"noise_std": {"dist": "uniform", "low": 0, "high": 0.05, "resample": "step"}},
        "sensing": {
            "noise_std": {"dist": "uniform", "low": 0, "high": 0.1, "resample": "step"},
            "dropout_prob": {
                "dist": "uniform", "low": 0, "high": 0.2, "resample": "step", "per": "element",
            },
        },
    }  # fmt: skip
    dr = sim2real.make("Hopper", randomization=spec)
    dr.reset(seed=0)
    run(dr, seed=None)  # an earlier episode: replay needs only the episode's own seed
    episode, info = run(dr, seed=9)
    point = json.loads(json.dumps(info["skews"]))
    assert point["actuation.noise_std"]["resample"] == "step"
    _, replay = sim2real.make_pair("Hopper", real=point)
    again, _ = run(replay, seed=9)
    assert_same(episode, again)


def test_info_skews_is_the_episodes_point_and_a_plain_dict():
    _, real = sim2real.make_pair("Hopper", real="default")
    _, info = real.reset(seed=0)
    assert isinstance(info["skews"], Point) and isinstance(info["skews"], dict)
    assert info["skews"] == Point.from_spec(sim2real.get_task("Hopper").preset("default"))
    info["skews"]["dynamics.mass_scale"] = 9.0  # the caller's copy: the env keeps its own
    assert real.reset(seed=0)[1]["skews"]["dynamics.mass_scale"] == 1.1
    assert Point(info["skews"]).nested()["dynamics"]["mass_scale"] == 9.0


def test_fixed_spec_streams_are_the_historical_ones():
    """SeedSequence(seed).spawn in the historical order: today's episodes do not change."""
    generators = reset_generators(123)
    children = np.random.SeedSequence(123).spawn(len(STREAMS))
    for name, child in zip(STREAMS, children, strict=True):
        expected = np.random.Generator(np.random.PCG64(child)).standard_normal(5)
        np.testing.assert_array_equal(generators[name].standard_normal(5), expected)
    assert "timing.control_jitter_s" in generators  # a new stream, keyed by its name


@pytest.mark.parametrize(
    ("task", "preset", "seed", "digest"),
    [  # computed by the code before the redesign (commit cc01c98)
        ("Hopper", "harsh", 7, "92b2aa9f6e73c3dc"),
        ("Hopper", "default", 8, "990bc8f447aa19e9"),
        ("HalfCheetah", "harsh", 7, "6c6208628de944fc"),
        ("Ant", "default", 8, "14642a507cdb1bab"),
    ],
)
def test_fixed_spec_episodes_are_bit_identical_to_before(task, preset, seed, digest):
    _, real = sim2real.make_pair(task, real=preset)
    rng = np.random.default_rng(1)
    h = hashlib.sha256()
    obs, _ = real.reset(seed=seed)
    h.update(obs.tobytes())
    for _ in range(60):
        action = rng.uniform(real.action_space.low, real.action_space.high)
        obs, reward, terminated, truncated, _ = real.step(action.astype(real.action_space.dtype))
        h.update(obs.tobytes())
        h.update(np.float64(reward).tobytes())
        if terminated or truncated:
            break
    assert h.hexdigest()[:16] == digest


class Alternating:
    """A source of our own: two points, in turn (the protocol is three small methods)."""

    def __init__(self, *points: dict) -> None:
        self.points = [Point.from_spec(SkewSpec.load(p)) for p in points]
        self.count = 0

    def bind(self, context) -> Alternating:
        return self

    def draw(self, rng: np.random.Generator) -> Point:
        self.count += 1
        return self.points[self.count % len(self.points)]

    def describe(self, shown) -> list[str]:
        return [f"  alternating between {len(self.points)} points"]


def test_any_object_with_the_protocol_is_a_source():
    source = Alternating({"dynamics": {"mass_scale": 2.0}}, {"dynamics": {"mass_scale": 0.5}})
    assert isinstance(source, Source)
    base = gym.make("Hopper-v5")
    nominal = base.unwrapped.model.body_mass.copy()
    env = SkewedEnv(base, source)
    for _ in range(4):
        _, info = env.reset(seed=0)
        scale = info["skews"]["dynamics.mass_scale"]
        np.testing.assert_allclose(env.unwrapped.model.body_mass, scale * nominal)
    assert "alternating between 2 points" in sim2real.describe(env, show=False)


def test_the_sources_behind_the_public_spellings():
    _, real = sim2real.make_pair("Hopper", real="default")
    assert isinstance(real.get_wrapper_attr("source"), FixedSource)
    dr = sim2real.DomainRandomization(gym.make("Hopper-v5"), config_path("Hopper"))
    assert isinstance(dr, SkewedEnv) and isinstance(dr.source, RandomizationSource)
    assert dr.randomization is dr.source.spec


def test_describe_has_one_header_for_every_source():
    _, real = sim2real.make_pair("Hopper", real="default")
    dr = sim2real.make("Hopper", randomization=config_path("Hopper"))
    headers = [sim2real.describe(e, show=False).splitlines()[1] for e in (real, dr)]
    assert headers[0].split(":", 1)[1] == headers[1].split(":", 1)[1]
    assert "control step 0.008 s = 4 substeps of 0.002 s" in headers[0]
