"""Benchmark of the skew monitor (issue 12): false alarms, delays, identification, cost.

For each task and sensor noise level: prepare a monitor on sim episodes driven by the
shipped sim-trained policy (seeds from 10,000), count false alarms on fresh sim episodes
(seeds from 20,000; the monitor is re-armed after each alarm), then run each skew alone
(seeds from 30,000) and record the first alarm, the suspect and estimate at the alarm,
25 steps after it and at the episode's end. Results go to ``--out`` (one JSON per task and
noise, reused unless ``--fresh``) and the table is printed.

    python scripts/bench_monitor.py --tasks Hopper --episodes 20
    python scripts/bench_monitor.py --table-only      # print the table of saved results
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np

SKEWS = {
    "mass 1.1x": ({"dynamics": {"mass_scale": 1.1}}, "dynamics.mass_scale", 1.1),
    "friction 0.8x": ({"dynamics": {"friction_scale": 0.8}}, "dynamics.friction_scale", 0.8),
    "motor 0.9x": ({"dynamics": {"actuator_strength": 0.9}}, "dynamics.actuator_strength", 0.9),
    "damping 1.5x": ({"dynamics": {"damping_scale": 1.5}}, "dynamics.damping_scale", 1.5),
    "obs latency 20 ms": ({"timing": {"obs_latency_s": 0.02}}, "timing.total_latency_s", 0.02),
    "action latency 10 ms": (
        {"timing": {"action_latency_s": 0.01}},
        "timing.total_latency_s",
        0.01,
    ),
    "dropout 5 %": ({"sensing": {"dropout_prob": 0.05}}, "sensing.dropout_prob", 0.05),
}
RATES = ("sensing.dropout_prob",)  # fields whose size is a probability, not a scale


def _summary(suspects, estimate) -> dict:
    return {
        "suspect": suspects[0].field if suspects else None,
        "estimate": None if estimate is None else estimate.value,
        "low": None if estimate is None else estimate.low,
        "high": None if estimate is None else estimate.high,
        "substeps": None if estimate is None else estimate.substeps,
    }


EVIDENCE_TOL = 1e-6  # a one-step residual above this departs from the nominal model (obs units)


def first_evidence(reference, obs: np.ndarray, actions: np.ndarray) -> int | None:
    """The first step at which the physics shows the skew at all on a noiseless stream: the
    monitor step (counted as ``alarm_step`` is: the update that brings ``obs[t]`` is step
    ``t + 1``) of the first transition from an exact observation whose one-step residual
    departs from the nominal prediction by more than :data:`EVIDENCE_TOL` in any dimension
    (the sim variant's is at MuJoCo's solver tolerance, <= 1e-8). None if none does."""
    for t in range(len(actions)):
        if reference.exact(obs[t]):
            predicted = reference.predict(obs[t], actions[t])
            if np.max(np.abs(obs[t + 1] - predicted)) > EVIDENCE_TOL:
                return t + 2
    return None


def first_noisy_evidence(
    reference, obs: np.ndarray, actions: np.ndarray, field: str, truth: float, noise: float
) -> int | None:
    """On a noisy stream with ``field`` at ``truth`` (a total latency in seconds for
    ``timing.total_latency_s``): the first monitor step (as in :func:`first_evidence`) of a
    transition from an exact observation whose one-step prediction under the true skew
    differs from the nominal one by more than one noise sigma in some dimension. Before it
    no single transition can tell the skew from the noise (a dynamics skew may still add up
    over many transitions below that, a latency cannot: it acts only through the commands
    changing)."""
    latency = field == "timing.total_latency_s"
    delay = round(truth / reference.substep_s) if latency else 0
    variant = None if latency else reference.variant(field, truth)
    for t in range(len(actions)):
        if reference.exact(obs[t], 4.0 * noise):
            nominal = reference.predict(obs[t], actions[t])
            if latency:
                true = reference.predict(obs[t], actions[t], actions[:t], delay, scratch=True)
            else:
                true = reference.predict(obs[t], actions[t], variant=variant)
            if np.max(np.abs(true - nominal)) > noise:
                return t + 2
    return None


@functools.cache
def _reference(task: str):
    """A nominal reference model of ``task`` of its own (not the monitor's)."""
    from sim2real.remedies.monitor_model import ReferenceModel, resolve_task

    return ReferenceModel(resolve_task(task))


def evidence(task: str, noise: float, obs, actions, field: str, truth: float) -> int | None:
    """The first step the physics shows the skew: :func:`first_evidence` on a noiseless
    stream, :func:`first_noisy_evidence` on a noisy one."""
    if field in RATES:  # a dropped reading shows at once; nothing to locate
        return None
    ref = _reference(task)
    if noise == 0:
        return first_evidence(ref, obs, actions)
    return first_noisy_evidence(ref, obs, actions, field, truth, noise)


def run_episode(monitor, obs: np.ndarray, actions: np.ndarray, skew: tuple | None = None) -> dict:
    """One stream through the monitor: the first alarm and the identification around it;
    given ``skew`` (its field and true value), the first step the physics shows it."""
    monitor.reset()
    out: dict = {"steps": len(actions), "alarm": None, "at_alarm": None, "after_25": None}
    if skew is not None:
        noise = float(np.max(monitor.noise_std))
        out["evidence"] = evidence(monitor.task, noise, obs, actions, *skew)
    for t in range(len(actions)):
        state = monitor.update(obs[t], actions[t])
        if state.alarm and out["alarm"] is None:
            out["alarm"], out["channel"] = state.alarm_step, state.channel
            out["at_alarm"] = _summary(state.suspects, state.estimate)
        if out["alarm"] is not None and out["after_25"] is None and t + 1 >= out["alarm"] + 25:
            out["after_25"] = _summary(*monitor.identify())
    out["at_end"] = _summary(*monitor.identify())
    return out


def false_alarms(monitor, streams) -> tuple[int, int]:
    """Alarms and tested steps over sim streams, re-arming after each alarm."""
    alarms = steps = 0
    for obs, actions in streams:
        monitor.reset()
        for t in range(len(actions)):
            state = monitor.update(obs[t], actions[t])
            steps += 1
            if state.alarm:
                alarms += 1
                monitor.rearm()
    return alarms, steps


VARIANTS = {  # --variant: the monitor's settings, and the suffix of its files
    "full": ({}, ""),
    "no-sigma": ({"sigma_points": False}, "_no-sigma"),
    "omnibus": ({"matched": False}, "_omnibus"),
}


def bench(task: str, noise: float, args: argparse.Namespace) -> dict:
    from sim2real.remedies.monitor import SkewMonitor, sim_streams

    policy = f"policies/{task}/sim/seed0"
    settings, suffix = VARIANTS[args.variant]
    path = args.out / f"monitor_{task}_{noise:g}{suffix}.json"
    t0 = time.perf_counter()
    if path.exists() and not args.fresh:
        monitor = SkewMonitor.load(path)
    else:
        monitor = SkewMonitor(
            task, args.rate, noise, policy=policy, prepare_steps=args.prepare_steps,
            seed=10_000, identify_every=0, **settings,
        )  # fmt: skip
        monitor.save(path)
    monitor.identify_every = 0
    prepare_s = time.perf_counter() - t0
    print(f"{task} noise {noise:g}: prepared in {prepare_s:.0f} s", flush=True)
    result: dict = {"task": task, "noise": noise, "prepare_s": prepare_s, "variant": args.variant}
    result["calibration"] = {
        "steps": monitor.calibration.steps,
        "exact_share": monitor.calibration.exact_share,
    }
    partial = args.out / f"partial_{task}_{noise:g}{suffix}.json"
    if partial.exists() and not args.fresh:  # resume: rows already measured are kept
        result = {**result, **json.loads(partial.read_text())}
    if "false_alarms" not in result and args.fa_steps == 0:  # not measured on this run
        result["false_alarms"] = {"alarms": 0, "steps": 0, "episodes": 0}
    if "false_alarms" not in result:
        streams = sim_streams(task, policy, args.fa_steps, 20_000, noise, lanes=8)
        alarms, steps = false_alarms(monitor, streams)
        result["false_alarms"] = {"alarms": alarms, "steps": steps, "episodes": len(streams)}
        partial.write_text(json.dumps(result, indent=1))
    fa = result["false_alarms"]
    print(f"  false alarms {fa['alarms']} in {fa['steps']} steps", flush=True)
    result.setdefault("skews", {})
    for name, (skews, field, truth) in SKEWS.items():
        if name in result["skews"] or not wanted(name, args):
            continue
        streams = sim_streams(
            task, policy, 0, 30_000, noise, skews=skews, lanes=8, episodes=args.episodes
        )
        episodes = [run_episode(monitor, obs, act, (field, truth)) for obs, act in streams]
        result["skews"][name] = {"field": field, "truth": truth, "episodes": episodes}
        partial.write_text(json.dumps(result, indent=1))
        found = [e for e in episodes if e["alarm"] is not None]
        print(f"  {name}: {len(found)}/{len(episodes)} detected", flush=True)
    result["skews"] = {name: result["skews"][name] for name in SKEWS if name in result["skews"]}
    return result


def wanted(name: str, args: argparse.Namespace) -> bool:
    """Whether the skew row ``name`` is asked for (``--skews``: words its name contains)."""
    return not args.skews or any(word in name for word in args.skews)


def add_evidence(result: dict, args: argparse.Namespace) -> dict:
    """Recompute the first step the physics shows each skew on a saved row's episodes (the
    same seeds give the same streams; the monitor is not run)."""
    from sim2real.remedies.monitor import sim_streams

    task, noise = result["task"], result["noise"]
    policy = f"policies/{task}/sim/seed0"
    for name, entry in result["skews"].items():
        skews, field, truth = SKEWS[name]
        streams = sim_streams(
            task, policy, 0, 30_000, noise, skews=skews, lanes=8, episodes=len(entry["episodes"])
        )
        for episode, (obs, act) in zip(entry["episodes"], streams, strict=True):
            if len(act) != episode["steps"]:
                raise RuntimeError(f"{task} {noise:g} {name}: the stream differs from the saved")
            episode["evidence"] = evidence(task, noise, obs, act, field, truth)
        print(f"  {task} {noise:g} {name}: evidence recomputed", flush=True)
    return result


def cost(task: str, out: Path, steps: int = 2000, rounds: int = 3) -> dict:
    """Milliseconds per call, wall clock and this thread's CPU time (the CPU time is what
    the code costs; on a loaded machine the wall clock also counts other processes'
    slices), measured side by side in one process and interleaved in rounds
    (so that all share the same contention): the nominal one-step prediction alone
    (``mj_step`` with ``nstep=frame_skip``), ``env.step`` of the sim variant, and ``update``
    of the omnibus-only monitor, of the full one without sigma points and of the full one
    (no identification: its thresholds are the full monitor's, and the timing leaves
    identification out)."""
    import dataclasses

    import gymnasium as gym
    import mujoco

    import sim2real  # noqa: F401
    from sim2real.remedies.monitor import SkewMonitor, sim_streams

    saved = out / f"monitor_{task}_0.01.json"
    full = SkewMonitor.load(saved) if saved.exists() else SkewMonitor(task, 1e-4, 0.01)
    omnibus = SkewMonitor(task, 1e-4, 0.01, matched=False, calibration=full.calibration)
    # The full monitor without the blocks' sigma points (average contact covariance).
    plain = SkewMonitor(
        task, 1e-4, 0.01, calibration=dataclasses.replace(full.calibration, sigma_points=False)
    )
    for mon in (full, omnibus, plain):  # time the tests alone: identification (after an alarm) off
        mon.identify = lambda mon=mon: (mon._suspects, mon._estimate)
    streams = sim_streams(task, f"policies/{task}/sim/seed0", steps, 5, 0.01, lanes=1)
    env = gym.make(f"sim2real/{task}-sim-v0")
    env.reset(seed=0)
    ref = omnibus.reference
    model, data = ref.model, mujoco.MjData(ref.model)
    rng = np.random.default_rng(0)
    commands = rng.uniform(-1, 1, (steps, *env.action_space.shape))
    times: dict[str, list[tuple[float, float]]] = {}

    def updates(mon) -> tuple[float, float]:
        t0, c0, n = time.perf_counter(), time.thread_time(), 0
        for obs, act in streams:
            mon.reset()
            for t in range(len(act)):
                mon.update(obs[t], act[t])
            n += len(act)
        return (time.perf_counter() - t0) / n, (time.thread_time() - c0) / n

    def env_steps() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.thread_time()
        for a in commands:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        return (time.perf_counter() - t0) / steps, (time.thread_time() - c0) / steps

    def predictions() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.thread_time()
        for a in commands:
            data.ctrl[:] = a
            mujoco.mj_step(model, data, nstep=ref.frame_skip)
            if not np.isfinite(data.qpos[0]):  # pragma: no cover
                mujoco.mj_resetData(model, data)
        return (time.perf_counter() - t0) / steps, (time.thread_time() - c0) / steps

    probes = {
        "mj_step(nstep=frame_skip)": predictions,
        "env.step (sim variant)": env_steps,
        "update (omnibus only)": lambda: updates(omnibus),
        "update (no sigma points, no identification)": lambda: updates(plain),
        "update (full, no identification)": lambda: updates(full),
    }
    for _ in range(rounds):
        for label, probe in probes.items():
            times.setdefault(label, []).append(probe())
    env.close()
    return {label: tuple(1e3 * np.median(t, axis=0)) for label, t in times.items()}


def example(out: Path, docs: Path) -> None:
    """The docs' example: three Hopper episodes (400 steps, not stopped by a fall) of the
    sim-trained policy on motor strength 0.9 and on the sim variant, both with 0.01 sensor
    noise, recorded as logs and run through ``sim2real monitor`` with the benchmark's
    Hopper monitor (``OUT/monitor_Hopper_0.01.json``); reports and plots go to ``docs``."""
    import shutil
    import tempfile

    import sim2real
    from sim2real.cli import main as cli
    from sim2real.remedies.record import record

    saved = out / "monitor_Hopper_0.01.json"
    docs.mkdir(parents=True, exist_ok=True)
    cases = {"hopper_motor_0.9": {"dynamics": {"actuator_strength": 0.9}}, "hopper_sim": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, skews in cases.items():
            spec = {**skews, "sensing": {"noise_std": 0.01}}
            env = sim2real.make("Hopper", skews=spec, terminate_when_unhealthy=False)
            logs = Path(tmp) / name
            record("policies/Hopper/sim/seed0", env, seeds=range(3), max_steps=400, out=logs)
            env.close()
            report = Path(tmp) / f"{name}-report"
            cli(["monitor", "--task", "Hopper", "--logs", str(logs), "--monitor", str(saved),
                 "--out", str(report), "--no-progress"])  # fmt: skip
            shutil.copy(report / "report.md", docs / f"{name}_report.md")
            shutil.copy(report / "monitor.png", docs / f"{name}.png")
            print((report / "report.md").read_text())


def _right(episodes: list[dict], key: str, field: str) -> list[dict]:
    return [e for e in episodes if e.get(key) and e[key]["suspect"] == field]


def _size(episodes: list[dict], key: str, field: str, truth: float) -> str:
    """Latency: how often the total delay is exact; dynamics: the median error of the size
    as a share of the skew itself (|estimate - truth| / |truth - 1|); a rate: as a share of
    the rate."""
    right = _right(episodes, key, field)
    if field == "timing.total_latency_s":
        exact = sum(1 for e in right if abs(e[key]["estimate"] - truth) < 1e-9)
        return f"exact {exact}/{len(episodes)}"
    spread = truth if field in RATES else abs(truth - 1)  # a rate's error relative to itself
    errs = [abs(e[key]["estimate"] - truth) / spread for e in right]
    return f"{np.median(errs):.2f}" if errs else "-"


def _evidence(episodes: list[dict]) -> str:
    """The median step the physics first shows the skew (see :func:`run_episode`), and how
    many steps after it the alarm came (median, max) over episodes with both."""
    shown = [e["evidence"] for e in episodes if e.get("evidence") is not None]
    lags = [e["alarm"] - e["evidence"] for e in episodes
            if e.get("evidence") is not None and e["alarm"] is not None]  # fmt: skip
    if not shown:
        return ""
    lag = f"{np.median(lags):.0f}, {max(lags)}" if lags else "-"
    return f"{np.median(shown):.0f} / {lag}"


def table(results: list[dict]) -> str:
    rows = [
        "| task | noise | skew | detected | median delay (steps) | median episode length "
        "| right field at alarm / +25 steps / end | size at +25 steps | size at end "
        "| physics shows it (median step) / alarm after it (median, max steps) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        fa = res["false_alarms"]
        rate = 1e4 * fa["alarms"] / max(fa["steps"], 1)
        counted = f"{fa['alarms']} in {fa['steps']} steps = {rate:.2f} per 1e4"
        variant = res.get("variant", "full")
        label = res["task"] if variant == "full" else f"{res['task']} ({variant})"
        rows.append(
            f"| {label} | {res['noise']:g} | **sim: false alarms** | "
            f"{counted if fa['steps'] else 'not measured (--fa-steps 0)'} | | | | | | |"
        )
        for name, entry in res["skews"].items():
            eps = entry["episodes"]
            found = [e for e in eps if e["alarm"] is not None]
            delay = np.median([e["alarm"] for e in found]) if found else float("nan")
            length = np.median([e["steps"] for e in eps])
            field, truth = entry["field"], entry["truth"]
            named = " / ".join(
                str(len(_right(found, key, field))) for key in ("at_alarm", "after_25", "at_end")
            )
            rows.append(
                f"| | | {name} | {len(found)}/{len(eps)} | {delay:.0f} | {length:.0f} | "
                f"{named} of {len(found)} | {_size(found, 'after_25', field, truth)} | "
                f"{_size(found, 'at_end', field, truth)} | {_evidence(eps)} |"
            )
    return "\n".join(rows)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="Hopper,Walker2d,HalfCheetah")
    parser.add_argument("--noise", default="0,0.01", help="sensor noise levels, comma-separated")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per skew")
    parser.add_argument("--prepare-steps", type=int, default=50_000)
    parser.add_argument(
        "--fa-steps", type=int, default=100_000, help="sim steps for false alarms (0: none)"
    )
    parser.add_argument("--rate", type=float, default=1e-4, help="false alarms per step allowed")
    parser.add_argument("--out", type=Path, default=Path("bench_monitor_out"))
    parser.add_argument("--fresh", action="store_true", help="re-prepare and re-run everything")
    parser.add_argument(
        "--skews", type=lambda text: text.split(","), default=None,
        help="only the skews whose names contain one of these words (comma-separated)",
    )  # fmt: skip
    parser.add_argument(
        "--variant", choices=tuple(VARIANTS), default="full",
        help="the monitor benchmarked: full (default), no-sigma (sigma_points=False), "
        "omnibus (matched=False)",
    )  # fmt: skip
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument(
        "--evidence", action="store_true",
        help="recompute, on saved rows, the first step the physics shows each skew",
    )  # fmt: skip
    parser.add_argument("--cost", action="store_true", help="also time update vs env.step")
    parser.add_argument(
        "--example", type=Path, default=None, help="write the docs' example here and stop"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.example is not None:
        example(args.out, args.example)
        return
    results = []
    for task in args.tasks.split(","):
        for noise in (float(n) for n in args.noise.split(",")):
            suffix = VARIANTS[args.variant][1]
            path = args.out / f"result_{task}_{noise:g}{suffix}.json"
            if path.exists() and not args.fresh:
                saved = json.loads(path.read_text())
                done = saved["skews"]
                missing = [name for name in SKEWS if wanted(name, args) and name not in done]
                if not missing or args.table_only:
                    if args.evidence:
                        saved = add_evidence(saved, args)
                        path.write_text(json.dumps(saved, indent=1))
                    results.append(saved)
                    continue
                # A finished run without some of the skews asked for now: resume it for those.
                print(f"{path.name}: measuring {', '.join(missing)} as well", flush=True)
                partial = args.out / f"partial_{task}_{noise:g}{suffix}.json"
                if not partial.exists():
                    partial.write_text(json.dumps(saved, indent=1))
            if args.table_only:
                continue
            res = bench(task, noise, args)
            path.write_text(json.dumps(res, indent=1))
            results.append(res)
    print(table(results))
    if args.cost:
        for task in args.tasks.split(","):
            for label, (wall, cpu) in cost(task, args.out).items():
                print(f"{task:<12} {label:<44} {wall:.3f} ms wall  {cpu:.3f} ms CPU")


if __name__ == "__main__":
    main()
