"""``evaluate_gap``: run policies in sim and real on common seeds, and measure the gap."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import sim2real
from sim2real import engines
from sim2real.cli_options import progress_bar
from sim2real.engines import Engine, Episode, Workload, check_engine, make_env, plan_lanes
from sim2real.evaluation.analysis import AttributionPlan, Settings, return_table, summarize_group
from sim2real.evaluation.attribution import (
    EXACT_MAX_SKEWS,
    coalitions_needed,
    sample_permutations,
)
from sim2real.evaluation.policy import (
    PolicySource,
    check_fits,
    group_of,
    resolve_policies,
)
from sim2real.evaluation.report import GapReport, VariantInfo
from sim2real.evaluation.stats import CONFIDENCE, RESAMPLES
from sim2real.evaluation.store import EpisodeStore
from sim2real.pairing import SpecSource, resolve_spec
from sim2real.spec import SkewSpec
from sim2real.tasks import Task, get_task

DEFAULT_SEEDS = range(100, 130)
DEFAULT_PERMUTATIONS = 16
ATTRIBUTE_BY = ("skew", "section")


def evaluate_gap(
    policy: Any,
    task: str,
    seeds: Iterable[int] = DEFAULT_SEEDS,
    real: SpecSource = "default",
    extra: SpecSource | Sequence[SpecSource] = (),
    *,
    attribution: bool = True,
    attribute_by: str = "skew",
    permutations: int = DEFAULT_PERMUTATIONS,
    max_episode_steps: int | None = None,
    engine: str | Engine = "local",
    n_envs: int = 32,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    confidence: float = CONFIDENCE,
    bootstrap_resamples: int = RESAMPLES,
    bootstrap_seed: int = 0,
) -> GapReport:
    """Run ``policy`` on sim and real variants of ``task`` with common seeds; report the gap.

    One episode per seed per variant per policy, each started with
    ``reset(seed=s)`` and run with deterministic actions until it terminates or
    is truncated; its raw return is what a plain loop over that env would give.
    (An SB3 network acts on padded batches of ``n_envs`` observations, so that
    results never depend on scheduling; float32 inference on a batch may differ
    in the last bit from inference on one observation, which can move a return
    by about 1e-6 of itself. ``n_envs=1`` reproduces a one-at-a-time loop exactly.)
    Every input is checked before the first episode starts.

    Args:
        policy: a path to a saved Stable-Baselines3 model (a training output folder
            or a ``.zip``), a loaded model, a ``(model, VecNormalize)`` tuple, or a
            callable ``obs_batch -> action_batch``; or a sequence of these, or a
            mapping ``{group: policy or sequence}``. A group's policies are the
            training seeds of one configuration and are its replication unit;
            paths stored as ``<config>/seed<N>/`` are grouped by ``<config>``.
        task: a built-in task name (``"Hopper"``) or a Gymnasium id.
        seeds: the episode seeds, shared by every variant and policy.
        real: the real variant: a preset name of the task, a mapping in the skew
            schema, a :class:`~sim2real.spec.SkewSpec`, or a YAML path.
        extra: further variants to compare, in the same forms (e.g. ``"harsh"``).
        attribution: split the real gap over the real variant's skews: each skew
            alone, all but each skew, and Shapley values (exact up to
            ``EXACT_MAX_SKEWS`` skews, else sampled over ``permutations``).
        attribute_by: the players of the attribution: ``"skew"`` (every skew field
            on its own) or ``"section"`` (dynamics, actuation, sensing, timing: far
            fewer coalitions to run, and exact Shapley values).
        permutations: permutations sampled for Shapley values beyond that.
        max_episode_steps: shorter episodes than the task's own time limit.
        engine: what runs the episodes: ``"local"`` (this process, the default),
            ``"batch"`` (the built-in tasks over ``mujoco.batch``), ``"ray"`` (shards on
            a Ray cluster: ``RAY_ADDRESS``, else a local one), or an engine object. The
            same seeds give the same episodes on every engine.
        n_envs: sub-envs stepped side by side (per shard on ``ray``).
        out: a folder for ``episodes.jsonl`` (written as episodes finish) and, at
            the end, ``report.json``, ``report.md`` and the plots.
        resume: continue the episodes already in ``out`` instead of refusing it.
        progress: show a progress bar (default: when writing to a terminal).
        confidence: coverage of the bootstrap intervals.
        bootstrap_resamples: resamples per bootstrap level.
        bootstrap_seed: seeds every bootstrap, so that reports are reproducible.

    Raises:
        ValueError: (including :class:`~sim2real.spec.SkewSpecError` and
            :class:`PolicyError`) for bad input, naming the input and what is allowed.
    """
    _check_counts(permutations=permutations, n_envs=n_envs, bootstrap_resamples=bootstrap_resamples)
    if max_episode_steps is not None:
        _check_counts(max_episode_steps=max_episode_steps)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if attribute_by not in ATTRIBUTE_BY:
        raise ValueError(
            f"attribute_by must be one of {', '.join(ATTRIBUTE_BY)}, got {attribute_by!r}"
        )
    engine = check_engine(engine)
    builtin = _builtin_task(task)
    seed_list = _seed_list(seeds)
    variants, specs = _variants(builtin, real, extra)
    plan = (
        _attribution_plan(variants[1], specs, permutations, attribute_by) if attribution else None
    )
    if plan is not None:
        variants += _subset_variants(variants[1], plan, specs)
    engine_name = engine if isinstance(engine, str) else getattr(engine, "name", repr(engine))
    setup = _Setup(task, seed_list, variants, specs, max_episode_steps, engine_name)
    sources = resolve_policies(policy)
    _check_policies(sources, task, builtin, seed_list, max_episode_steps)
    # Other processes rebuild policies from bytes; an unpicklable callable is refused here.
    in_process = engine_name in ("local", "batch")
    shipped = sources if in_process else [s.portable() for s in sources]
    header = {"task": task, "max_episode_steps": max_episode_steps}
    store = EpisodeStore(Path(out) if out is not None else None, header, resume=resume)
    try:
        _run_pending(setup, sources, shipped, store, engine, n_envs, progress)
    finally:
        store.close()

    settings = Settings(confidence, bootstrap_resamples, bootstrap_seed)
    report = _report(setup, sources, plan, store, settings)
    if out is not None:
        report.save(out)
    return report


# ---------------------------------------------------------------------- checking input
def _check_counts(**counts: Any) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _builtin_task(task: str) -> Task | None:
    if not isinstance(task, str):
        raise ValueError(f"task must be a task name or a Gymnasium id, got {task!r}")
    if "/" in task or "-v" in task:
        return None
    return get_task(task)


def _seed_list(seeds: Iterable[int]) -> list[int]:
    if isinstance(seeds, (str, bytes)):
        raise ValueError(f"seeds must be integers (e.g. range(100, 130)), got {seeds!r}")
    if not isinstance(seeds, Iterable):  # evaluate_gap(seeds=5): not a count of episodes
        raise ValueError(
            f"seeds must be an iterable of episode seeds, such as range(100, 130) or "
            f"[0, 3, 5], got {seeds!r}; for {seeds!r} episodes write range({seeds!r})"
        )
    result = list(seeds)
    if not result:
        raise ValueError("seeds is empty; give at least one seed, e.g. range(100, 130)")
    for seed in result:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seeds must be non-negative integers, got {seed!r}")
    if len(set(result)) != len(result):
        raise ValueError("seeds must be distinct: one episode per seed")
    return [int(s) for s in result]


# ---------------------------------------------------------------------- variants
def _key(spec: SkewSpec) -> str:
    """A content hash of a spec's non-nominal values: equal skews share episodes."""
    text = json.dumps(spec.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _variants(
    builtin: Task | None, real: SpecSource, extra: SpecSource | Sequence[SpecSource]
) -> tuple[list[VariantInfo], dict[str, SkewSpec]]:
    """Sim, real and extra variants (names unique), and the spec of each key."""
    single = isinstance(extra, (str, Path, Mapping, SkewSpec))
    given = [("sim", None, "sim"), ("real", real, "real")]
    given += [("extra", e, f"extra{i}") for i, e in enumerate([extra] if single else extra, 1)]
    variants: list[VariantInfo] = []
    specs: dict[str, SkewSpec] = {}
    for role, source, fallback in given:
        spec = resolve_spec(builtin, source)
        key = _key(spec)
        name = _variant_name(source, fallback)
        if any(v.name == name and v.key == key for v in variants):
            continue
        taken = {v.name for v in variants}
        suffix = 2
        while name in taken:
            name, suffix = f"{_variant_name(source, fallback)}#{suffix}", suffix + 1
        variants.append(VariantInfo(name, role, key, dict(spec.active())))
        specs.setdefault(key, spec)
    return variants, specs


def _variant_name(source: SpecSource, fallback: str) -> str:
    if isinstance(source, str) and not Path(source).suffix:
        return source
    if isinstance(source, (str, Path)):
        return Path(source).stem
    return fallback


def _attribution_plan(
    real: VariantInfo, specs: dict[str, SkewSpec], permutations: int, attribute_by: str = "skew"
) -> AttributionPlan | None:
    spec = specs[real.key]
    members = _players(spec, attribute_by)
    players = tuple(members)
    if not players:
        return None
    orders = (
        None
        if len(players) <= EXACT_MAX_SKEWS
        else tuple(sample_permutations(players, permutations, seed=0))
    )
    keys = {}
    for coalition in coalitions_needed(players, orders):
        subset = spec.only(field for player in coalition for field in members[player])
        keys[coalition] = _key(subset)
        specs.setdefault(keys[coalition], subset)
    return AttributionPlan(real.name, players, keys, orders, attribute_by, members)


def _players(spec: SkewSpec, attribute_by: str) -> dict[str, tuple[str, ...]]:
    """The players of the attribution and the skew fields each one switches on."""
    players: dict[str, tuple[str, ...]] = {}
    for field in spec.active():
        player = field if attribute_by == "skew" else field.split(".")[0]
        players[player] = (*players.get(player, ()), field)
    return players


def _subset_variants(
    real: VariantInfo, plan: AttributionPlan, specs: dict[str, SkewSpec]
) -> list[VariantInfo]:
    """A variant for each coalition not already a sim, real or extra variant."""
    subsets = []
    for coalition, key in plan.keys.items():
        if key in (real.key, _key(SkewSpec())) or any(v.key == key for v in subsets):
            continue
        names = "+".join(p for p in plan.players if p in coalition)
        subsets.append(
            VariantInfo(f"{real.name}[{names}]", "attribution", key, dict(specs[key].active()))
        )
    return subsets


# ---------------------------------------------------------------------- policies
def _check_policies(
    sources: Sequence[PolicySource],
    task: str,
    builtin: Task | None,
    seeds: Sequence[int],
    max_episode_steps: int | None,
) -> None:
    env = make_env(task, {}, max_episode_steps)
    try:
        probe = np.stack([env.reset(seed=seed)[0] for seed in (seeds[0], seeds[-1])])
        for source in sources:
            check_fits(source, env, probe)
            if builtin and source.trained_on and source.trained_on.lower() != builtin.name.lower():
                warnings.warn(
                    f"policy {source.label!r} was trained on {source.trained_on}, "
                    f"evaluated on {builtin.name}",
                    stacklevel=3,
                )
    finally:
        env.close()


# ---------------------------------------------------------------------- running
@dataclass(frozen=True)
class _Setup:
    """What is evaluated, checked."""

    task: str
    seeds: list[int]
    variants: list[VariantInfo]
    specs: dict[str, SkewSpec]
    max_episode_steps: int | None
    engine: str = "local"


def _run_pending(
    setup: _Setup,
    sources: Sequence[PolicySource],
    shipped: Sequence[PolicySource],
    store: EpisodeStore,
    engine: str | Engine,
    n_envs: int,
    progress: bool | None,
) -> None:
    """Run every episode not yet in ``store`` on ``engine``; each goes to ``store`` as it
    finishes.

    ``shipped`` are ``sources`` as the engine receives them (portable for another process).
    """
    first: dict[str, int] = {}  # one run per distinct policy ...
    for index, source in enumerate(sources):
        first.setdefault(source.identity, index)
    keys = list(dict.fromkeys(v.key for v in setup.variants))  # ... and distinct skews
    wanted = [(i, key, seed) for i in first.values() for key in keys for seed in setup.seeds]
    jobs = [job for job in wanted if (sources[job[0]].identity, job[1], job[2]) not in store]
    if not jobs:
        return
    # Lanes of up to 8 seeds, at least 4 per sub-env where there is enough work, so that
    # the sub-envs (and the shards of an engine that shards) finish together. Which lane an
    # episode falls in never changes its result.
    lanes = plan_lanes(jobs, int(np.clip(len(jobs) // (4 * n_envs), 1, 8)))
    workload = Workload(
        task=setup.task,
        specs={key: setup.specs[key].to_dict() for key in keys},
        policies=tuple(shipped),
        lanes=lanes,
        max_episode_steps=setup.max_episode_steps,
        n_envs=n_envs,
    )
    # This process's copies, for the local engine (the others build their own).
    built = {i: sources[i].build(n_envs) for i in first.values()} if engine == "local" else None
    bar = progress_bar(
        total=len(wanted),
        initial=len(wanted) - len(jobs),
        desc=f"evaluate {setup.task}",
        unit="episode",
        disable=None if progress is None else not progress,
    )

    def emit(episode: Episode) -> None:
        if episode.key in store:  # never counted twice, whatever the engine
            return
        store.add(episode)
        bar.update()

    try:
        # Looked up at call time, so that one engine registry serves (and a test patches) all.
        engines.run_workload(workload, engine=engine, on_episode=emit, policies=built)
    finally:
        bar.close()


# ---------------------------------------------------------------------- report
def _report(
    setup: _Setup,
    sources: Sequence[PolicySource],
    plan: AttributionPlan | None,
    store: EpisodeStore,
    settings: Settings,
) -> GapReport:
    variants, seeds = setup.variants, setup.seeds
    keys = list(dict.fromkeys(v.key for v in variants))
    table = return_table(store.episodes, [(s.identity, k) for s in sources for k in keys], seeds)
    headline = [v for v in variants if v.role != "attribution"]
    groups = {
        name: summarize_group(name, members, headline, table, plan, settings)
        for name, members in group_of(sources).items()
    }
    listed = {}  # each key's episodes are listed under its first variant name
    for variant in variants:
        listed.setdefault(variant.key, variant.name)
    episodes = [
        {
            **store.episodes[(s.identity, key, seed)].to_record(),
            "policy": s.label,
            "variant": name,
        }
        for s in sources
        for key, name in listed.items()
        for seed in seeds
    ]
    return GapReport(
        task=setup.task,
        seeds=seeds,
        settings={
            "confidence": settings.confidence,
            "bootstrap_resamples": settings.resamples,
            "bootstrap_seed": settings.seed,
            "max_episode_steps": setup.max_episode_steps,
            "engine": setup.engine,
            "intervals": "one policy: paired BCa bootstrap over episode seeds; several "
            "training seeds: two-level bootstrap over training seeds, then episode seeds",
        },
        variants={v.name: v for v in variants},
        policies=[s.describe() for s in sources],
        groups=groups,
        episodes=episodes,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=sim2real.__version__,
    )
