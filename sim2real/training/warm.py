"""Warm starts and the ADR callback of :func:`sim2real.training.train`."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize


def _widen(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor | None:
    """``old`` in ``new``'s shape: equal, or a weight matrix with more input columns
    (the extra columns zero, so the new inputs start with no effect)."""
    if old.shape == new.shape:
        return old.clone()
    if old.ndim == 2 and old.shape[0] == new.shape[0] and old.shape[1] < new.shape[1]:
        widened = torch.zeros_like(new)
        widened[:, : old.shape[1]] = old
        return widened
    return None


def warm_start(model: Any, venv: Any, source: Path) -> list[str]:
    """Copy a trained PPO policy's weights and normalization into ``model`` and ``venv``.

    A layer whose input grew (history, privileged critic inputs) keeps the old
    columns for the old inputs and zeros for the new ones, so the warm-started policy
    acts exactly as the source on the inputs it knew. Returns the parameters copied.
    """
    old = PPO.load(Path(source) / "model.zip", device="cpu").policy.state_dict()
    new = model.policy.state_dict()
    copied = []
    for name, value in new.items():
        if name in old and (widened := _widen(old[name], value)) is not None:
            new[name] = widened
            copied.append(name)
    model.policy.load_state_dict(new)
    stats_file = Path(source) / "vecnormalize.pkl"
    if isinstance(venv, VecNormalize) and stats_file.is_file():
        with stats_file.open("rb") as file:
            stats = pickle.load(file)  # our own file, written by train()
        targets = venv.obs_rms if isinstance(venv.obs_rms, dict) else {"": venv.obs_rms}
        for key, rms in targets.items():
            # An asymmetric source keeps one set of statistics per input; a plain one, one.
            known = stats.obs_rms.get(key, stats.obs_rms["actor"]) if isinstance(
                stats.obs_rms, dict) else stats.obs_rms  # fmt: skip
            n = min(len(rms.mean), len(known.mean))
            rms.mean[:n] = known.mean[:n]
            rms.var[:n] = known.var[:n]
            rms.count = float(known.count)
        venv.ret_rms = stats.ret_rms
    return copied


class AdrCallback(BaseCallback):
    """Logs the ADR ranges to TensorBoard after every rollout and saves the ADR state beside
    each checkpoint (``adr_state_<steps>_steps.json``)."""

    def __init__(self, state: Any, folder: Path, save_freq: int) -> None:
        super().__init__()
        self.state, self.folder, self.save_freq = state, Path(folder), save_freq

    @staticmethod
    def state_file(checkpoint: Path) -> Path:
        match = re.fullmatch(r".*_(\d+)_steps\.zip", Path(checkpoint).name)
        if not match:
            raise ValueError(
                f"resume must be a checkpoint '<prefix>_<N>_steps.zip', got {checkpoint}"
            )
        return Path(checkpoint).with_name(f"adr_state_{match.group(1)}_steps.json")

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.state.save(self.folder / f"adr_state_{self.num_timesteps}_steps.json")
        return True

    def _on_rollout_end(self) -> None:
        for name, bounds in self.state.ranges().items():
            for side in ("low", "high"):
                self.logger.record(f"adr/{name}/{side}", float(np.mean(bounds[side])))
        for side, progress in self.state.progress.items():
            self.logger.record(f"adr_progress/{side}", progress)
