"""Train Stable-Baselines3 policies on a task's sim variant, optionally with domain randomization.

One call, :func:`train`, builds the environment stack (readable top to bottom in
:func:`_make_vec_env`), reads the hyperparameters from
``configs/train/<task_lower>_<algo>.yaml``, trains, and writes into ``out/``:

- ``model.zip`` and, when observations are normalized, ``vecnormalize.pkl``;
- ``metadata.json``: what was trained, with which config, code and packages;
- ``tb/`` TensorBoard logs and ``checkpoints/`` (each with its VecNormalize stats and,
  with ADR, its ADR state).

Options that make a policy see what latency hides and train robustly (DESIGN.md 7):

- ``history``: the actor sees its last K commands (and optionally K past observations),
  :mod:`sim2real.history`; recorded in the metadata, replayed by the evaluator;
- ``algo="rppo"``: sb3-contrib's RecurrentPPO (an LSTM policy);
- ``asymmetric=True``: the critic also sees the true, undelayed observation and the
  episode's point (its skew values); the actor sees only what the robot sees. The
  observation is a Dict ``{"actor", "critic"}`` with one feature extractor each;
- ``adr``: automatic domain randomization (:mod:`sim2real.randomization.adr`);
- ``init_from``: warm start from a trained policy (a sim-trained one): its weights
  and normalization statistics, widened with zeros where the new inputs are larger.

:func:`evaluate_sim_return` measures a trained policy the way the manifest reports
it: raw return of deterministic actions on fresh sim episodes, statistics frozen.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from sim2real.history import History, HistoryObservation
from sim2real.paths import data_dir
from sim2real.tasks import tasks
from sim2real.training.asymmetric import (
    AsymmetricActorCriticPolicy,
    PrivilegedObservation,
    asymmetric_policy_kwargs,
    critic_fields,
)
from sim2real.training.warm import AdrCallback, warm_start


def _recurrent_ppo() -> type[BaseAlgorithm]:
    from sb3_contrib import RecurrentPPO

    return RecurrentPPO


ALGOS: dict[str, Any] = {"ppo": PPO, "sac": SAC, "td3": TD3, "rppo": _recurrent_ppo}


def algo_class(algo: str) -> type[BaseAlgorithm]:
    """The SB3 (or sb3-contrib) class of ``algo``."""
    cls = ALGOS[algo]
    return cls() if cls is _recurrent_ppo else cls


_ACTIVATIONS: dict[str, type[torch.nn.Module]] = {
    "tanh": torch.nn.Tanh,
    "relu": torch.nn.ReLU,
    "elu": torch.nn.ELU,
}
MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = "vecnormalize.pkl"
METADATA_FILE = "metadata.json"
_CONFIG_KEYS = {
    "timesteps",
    "n_envs",
    "policy",
    "normalize",
    "checkpoint_freq",
    "hyperparameters",
    "history",
    "asymmetric",
}


def config_path(task: str, algo: str) -> Path:
    """Return the shipped hyperparameter file for ``task`` and ``algo`` (it may not exist);
    RecurrentPPO falls back to the PPO file."""
    path = data_dir("configs") / "train" / f"{task.lower()}_{algo}.yaml"
    if algo == "rppo" and not path.is_file():
        return data_dir("configs") / "train" / f"{task.lower()}_ppo.yaml"
    return path


def load_config(path: Path) -> dict[str, Any]:
    """Read a training config and check its top-level keys."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"config {path} must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"config {path}: unknown keys {unknown}; allowed: {', '.join(sorted(_CONFIG_KEYS))}"
        )
    if "hyperparameters" not in config:
        raise ValueError(f"config {path}: missing 'hyperparameters' mapping")
    return config


def _validate(
    task: str,
    algo: str,
    timesteps: int | None,
    config: Path | None,
    resume: Path | None,
    randomization: str | Path | dict | None,
) -> Path:
    """Check user input before any work; return the config path to use."""
    if task not in tasks():
        raise ValueError(f"task must be one of {', '.join(tasks())}, got {task!r}")
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {algo!r}")
    if timesteps is not None and (
        isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps <= 0
    ):
        raise ValueError(f"timesteps must be a positive integer, got {timesteps!r}")
    path = Path(config) if config is not None else config_path(task, algo)
    if not path.is_file():
        raise ValueError(f"config must be an existing YAML file, got {str(path)!r}")
    if resume is not None and resume is not True and not Path(resume).is_file():
        raise ValueError(f"resume must be an existing checkpoint .zip, got {str(resume)!r}")
    if isinstance(randomization, (str, Path)) and not Path(randomization).is_file():
        raise ValueError(
            f"randomization must be a spec mapping or an existing YAML file, got {randomization!r}"
        )
    return path


def _resolve_randomization(spec: str | Path | dict | None) -> dict | None:
    """Validate a randomization spec in full and return it as a plain mapping.

    Raises:
        ValueError: naming the field, the value and what is allowed.
    """
    if spec is None:
        return None
    from sim2real.randomization import RandomizationSpec

    RandomizationSpec.load(spec)
    return spec if isinstance(spec, dict) else yaml.safe_load(Path(spec).read_text())


def _make_env(
    task: str,
    randomization: dict | None,
    *,
    history: History | None = None,
    asymmetric: bool = False,
    adr: Any = None,
    adr_seed: int = 0,
) -> gym.Env:
    """Build one training env, readable top to bottom: the sim variant, or the task under
    domain randomization or ADR; then the history; then the critic's privileged view."""
    import sim2real  # importing the package registers the sim2real/* ids

    if adr is not None:
        from sim2real.randomization.adr import AdrEnv

        env: gym.Env = AdrEnv(task, adr, seed=adr_seed)
    elif randomization is not None:
        env = sim2real.make(task, randomization=randomization)
    else:
        env = gym.make(tasks()[task].sim_id)
    if history is not None and history.active:
        env = HistoryObservation(env, history)
    if asymmetric:
        fields = critic_fields(randomization, adr)
        env = PrivilegedObservation(env, fields)
    return env


def _make_vec_env(
    task: str,
    randomization: dict | None,
    n_envs: int,
    normalize: dict,
    gamma: float,
    *,
    history: History | None = None,
    asymmetric: bool = False,
    adr: Any = None,
    seed: int = 0,
) -> VecEnv:
    """The wrapper stack: env -> Monitor (raw returns) -> DummyVecEnv -> VecNormalize."""

    def factory(index: int) -> Callable[[], gym.Env]:
        return lambda: Monitor(
            _make_env(
                task,
                randomization,
                history=history,
                asymmetric=asymmetric,
                adr=adr,
                adr_seed=seed * 1000 + index,
            )
        )

    venv: VecEnv = DummyVecEnv([factory(i) for i in range(n_envs)])
    if normalize.get("obs") or normalize.get("reward"):
        venv = VecNormalize(
            venv,
            norm_obs=bool(normalize.get("obs")),
            norm_reward=bool(normalize.get("reward")),
            clip_obs=float(normalize.get("clip_obs", 10.0)),
            gamma=gamma,
        )
    return venv


def _linear_schedule(start: float) -> Callable[[float], float]:
    """Learning rate decaying linearly from ``start`` to 0 over training."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * start

    return schedule


def _algo_kwargs(hyperparameters: dict[str, Any], n_actions: int) -> dict[str, Any]:
    """Turn YAML hyperparameters into SB3 constructor arguments."""
    kwargs = dict(hyperparameters)
    lr = kwargs.get("learning_rate")
    if isinstance(lr, str):
        match = re.fullmatch(r"lin_([0-9.eE+-]+)", lr)
        if not match:
            raise ValueError(f"learning_rate must be a number or 'lin_<number>', got {lr!r}")
        kwargs["learning_rate"] = _linear_schedule(float(match.group(1)))
    policy_kwargs = dict(kwargs.pop("policy_kwargs", None) or {})
    if "activation_fn" in policy_kwargs:
        name = policy_kwargs["activation_fn"]
        if name not in _ACTIVATIONS:
            raise ValueError(
                f"activation_fn must be one of {', '.join(_ACTIVATIONS)}, got {name!r}"
            )
        policy_kwargs["activation_fn"] = _ACTIVATIONS[name]
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    noise_std = kwargs.pop("action_noise_std", None)
    if noise_std is not None:
        kwargs["action_noise"] = NormalActionNoise(
            np.zeros(n_actions), float(noise_std) * np.ones(n_actions)
        )
    return kwargs


def _vecnormalize_of(checkpoint: Path) -> Path:
    """The VecNormalize file CheckpointCallback saved next to ``checkpoint``."""
    match = re.fullmatch(r"(.*)_(\d+)_steps\.zip", checkpoint.name)
    if not match:
        raise ValueError(f"resume must be a checkpoint '<prefix>_<N>_steps.zip', got {checkpoint}")
    return checkpoint.with_name(f"{match.group(1)}_vecnormalize_{match.group(2)}_steps.pkl")


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in ("sim2real", "torch", "stable-baselines3", "gymnasium", "mujoco", "numpy"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def _git_commit() -> str | None:
    """The checkout's commit (suffixed ``-dirty`` if tracked files changed), or None."""
    repo = Path(__file__).resolve().parent.parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "sim2real", "configs"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def _episode_stats(model: BaseAlgorithm) -> dict[str, float | int | None]:
    """Raw returns of the last (up to 100) training episodes, from the Monitor wrapper."""
    returns = np.array([info["r"] for info in model.ep_info_buffer or []], dtype=float)
    lengths = np.array([info["l"] for info in model.ep_info_buffer or []], dtype=float)
    if returns.size == 0:
        return {"episodes": 0, "return_mean": None, "return_std": None, "length_mean": None}
    return {
        "episodes": int(returns.size),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "length_mean": float(lengths.mean()),
    }


def train(
    task: str,
    algo: str = "ppo",
    *,
    seed: int = 0,
    timesteps: int | None = None,
    out: Path,
    randomization: str | Path | dict | None = None,
    config: Path | None = None,
    resume: Path | None = None,
    progress: bool = True,
    history: History | int | dict | None = None,
    asymmetric: bool | None = None,
    adr: str | Path | dict | None = None,
    init_from: Path | None = None,
) -> Path:
    """Train a policy and write its artefacts to ``out``.

    Args:
        task: a built-in task name, e.g. ``"Hopper"``.
        algo: ``"ppo"``, ``"rppo"`` (RecurrentPPO), ``"sac"`` or ``"td3"``.
        seed: seeds the model, the env resets and torch.
        timesteps: total environment steps; defaults to the config's ``timesteps``.
        out: output folder (created).
        randomization: a randomization spec (mapping or YAML path); None trains on sim only.
        config: a hyperparameter YAML; defaults to ``configs/train/<task_lower>_<algo>.yaml``.
        resume: a checkpoint zip from ``out/checkpoints``; training continues to ``timesteps``.
        progress: show a progress bar.
        history: ``K`` (last K commands) or ``{commands: K, observations: K}``; default
            from the config's ``history`` (none).
        asymmetric: a privileged critic (true state and the episode's point); default
            from the config's ``asymmetric`` (False). PPO only.
        adr: an ADR config (mapping or YAML path, ``configs/adr/<task>.yaml``); replaces
            ``randomization`` as the source of each episode's point.
        init_from: a trained policy folder to warm start from (PPO).

    Returns:
        The output folder.

    Raises:
        ValueError: on an unknown task or algo, a missing file or non-positive timesteps.
    """
    cfg_path = _validate(task, algo, timesteps, config, resume, randomization)
    cfg = load_config(cfg_path)
    total = int(timesteps if timesteps is not None else cfg.get("timesteps", 0))
    if total <= 0:
        raise ValueError(f"timesteps must be a positive integer, got {total!r} (from {cfg_path})")
    spec = _resolve_randomization(randomization)
    hist = History.load(history if history is not None else cfg.get("history"))
    asym = bool(cfg.get("asymmetric", False) if asymmetric is None else asymmetric)
    if asym and algo != "ppo":
        raise ValueError(f"asymmetric critic is built for algo ppo, got {algo!r}")
    if init_from is not None and not (Path(init_from) / MODEL_FILE).is_file():
        raise ValueError(f"init_from must be a trained policy folder, got {str(init_from)!r}")
    adr_config = None
    if adr is not None:
        from sim2real.randomization.adr import AdrConfig

        if spec is not None:
            raise ValueError("give either randomization or adr, not both")
        adr_config = AdrConfig.load(adr)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    code_commit = _git_commit()  # the code that trains, read before training starts
    torch.set_num_threads(1)
    hyper = dict(cfg["hyperparameters"])
    normalize = dict(cfg.get("normalize") or {})
    adr_state = adr_config.new_state() if adr_config is not None else None
    if resume is not None and adr_state is not None:
        adr_state.load_file(AdrCallback.state_file(Path(resume)))
    venv = _make_vec_env(
        task,
        spec,
        int(cfg.get("n_envs", 1)),
        normalize,
        hyper.get("gamma", 0.99),
        history=hist,
        asymmetric=asym,
        adr=adr_state,
        seed=seed,
    )
    venv.seed(seed)
    cls = algo_class(algo)
    n_actions = int(np.prod(venv.action_space.shape))

    if resume is not None:
        resume = Path(resume)
        if isinstance(venv, VecNormalize):
            venv = VecNormalize.load(str(_vecnormalize_of(resume)), venv.venv)
        model = cls.load(resume, env=venv, device="cpu", tensorboard_log=str(out / "tb"))
    else:
        kwargs = _algo_kwargs(hyper, n_actions)
        policy = cfg.get("policy", "MlpPolicy")
        if asym:
            policy = AsymmetricActorCriticPolicy
            kwargs["policy_kwargs"] = asymmetric_policy_kwargs(kwargs.get("policy_kwargs"))
        if algo == "rppo":
            policy = "MlpLstmPolicy"
        model = cls(
            policy,
            venv,
            seed=seed,
            device="cpu",
            verbose=0,
            tensorboard_log=str(out / "tb"),
            **kwargs,
        )
        if init_from is not None:
            warm_start(model, venv, Path(init_from))

    n_envs = venv.num_envs
    save_freq = max(int(cfg.get("checkpoint_freq", 100_000)) // n_envs, 1)
    callbacks: list[Any] = [
        CheckpointCallback(
            save_freq=save_freq, save_path=str(out / "checkpoints"), save_vecnormalize=True
        )
    ]
    if adr_state is not None:
        callbacks.append(AdrCallback(adr_state, out / "checkpoints", save_freq))
    start = time.perf_counter()
    model.learn(
        total_timesteps=max(total - model.num_timesteps, 0),
        callback=callbacks,
        progress_bar=progress,
        reset_num_timesteps=resume is None,
        tb_log_name=f"{task.lower()}_{algo}_seed{seed}",
    )
    wall_time = time.perf_counter() - start

    model.save(out / MODEL_FILE)
    obs_normalized = isinstance(venv, VecNormalize) and venv.norm_obs
    if isinstance(venv, VecNormalize):
        venv.save(str(out / VECNORMALIZE_FILE))
    meta = {
        "task": task,
        "algo": algo,
        "seed": seed,
        "timesteps": total,
        "timesteps_done": int(model.num_timesteps),
        "config_path": str(cfg_path),
        "config": cfg,
        "config_sha256": hashlib.sha256(cfg_path.read_bytes()).hexdigest(),
        "randomization": spec,
        "randomization_source": str(randomization)
        if isinstance(randomization, (str, Path))
        else None,
        "history": hist.to_dict(),
        "asymmetric": asym,
        "adr": adr_state.to_dict() if adr_state is not None else None,
        "adr_source": str(adr) if isinstance(adr, (str, Path)) else None,
        "init_from": str(init_from) if init_from is not None else None,
        "obs_normalization": bool(obs_normalized),
        "reward_normalization": bool(isinstance(venv, VecNormalize) and venv.norm_reward),
        "resumed_from": str(resume) if resume is not None else None,
        "wall_time_s": round(wall_time, 1),
        "train_episodes": _episode_stats(model),
        "versions": _package_versions(),
        "git_commit": code_commit,
    }
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    venv.close()
    return out


def load_policy(run_dir: Path) -> tuple[BaseAlgorithm, VecNormalize | None]:
    """Load ``model.zip`` and its frozen VecNormalize stats from a training output folder.

    Raises:
        ValueError: when the metadata says observations were normalized but the stats are missing.
    """
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / METADATA_FILE).read_text())
    model = algo_class(meta["algo"]).load(run_dir / MODEL_FILE, device="cpu")
    if not meta.get("obs_normalization"):
        return model, None
    stats = run_dir / VECNORMALIZE_FILE
    if not stats.is_file():
        raise ValueError(f"{stats} is missing but {run_dir} was trained with obs normalization")
    with stats.open("rb") as file:
        vecnorm = pickle.load(file)  # our own file, written by train()
    vecnorm.training = False
    vecnorm.norm_reward = False
    return model, vecnorm


def evaluate_sim_return(run_dir: Path, seeds: Iterable[int] = range(1000, 1010)) -> list[float]:
    """Raw sim return per episode (one per seed) of deterministic actions, stats frozen,
    history and recurrent state replayed as the evaluator replays them."""
    from sim2real.evaluation.policy import resolve_policies

    meta = json.loads((Path(run_dir) / METADATA_FILE).read_text())
    policy = resolve_policies(Path(run_dir))[0].build()
    env = gym.make(tasks()[meta["task"]].sim_id)
    returns = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total, done, start = 0.0, False, True
        while not done:
            action = policy(obs[None], episode_start=np.array([start]))
            start = False
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


# The command line (``sim2real train``) lives in sim2real.training_cli, which loads this module
# only when training starts; these names stay importable from here.
from sim2real.training_cli import (  # noqa: E402, F401
    add_train_arguments,
    register_cli,
    train_from_args,
)
