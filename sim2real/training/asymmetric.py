"""An asymmetric actor-critic (Pinto et al. 2018): the critic sees what the robot cannot.

Training observations become a Dict: ``"actor"`` is what the robot sees (the skewed,
delayed observation, with its history); ``"critic"`` is the true, undelayed observation
of the simulator followed by the episode's point (one number per randomized field: the
value drawn, its mean over elements for a per-element field). The actor reads only
``"actor"`` and the critic only ``"critic"`` (:class:`SelectKey`, one extractor each),
so the deployed policy needs the actor's input alone: the evaluator passes zeros in the
critic's slot, which no actor computation reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, MlpExtractor

from sim2real.skewed_env import find_skewed_env

_SCALES = ("friction_scale", "mass_scale", "damping_scale", "actuator_strength")


def nominal_of(field: str) -> float:
    """The nominal value of a scalar skew field (1 for scales, 0 for the others)."""
    return 1.0 if field.split(".")[-1] in _SCALES else 0.0


def critic_fields(randomization: Mapping[str, Any] | None, adr: Any = None) -> list[str]:
    """The fields whose per-episode value the critic sees, in a fixed order."""
    from sim2real.spec import FIELDS

    names: set[str] = set()
    if adr is not None:
        names |= {field.name for field in adr.config.fields}
    for section, fields in (randomization or {}).items():
        if isinstance(fields, Mapping):
            names |= {f"{section}.{name}" for name in fields}
    return [name for name in FIELDS if name in names and name != "dynamics.gravity"]


def point_vector(values: Mapping[str, Any], fields: Sequence[str]) -> np.ndarray:
    """One number per field: its value this episode (a mean over elements or dimensions),
    nominal when absent or not a number (a per-step field)."""
    out = np.empty(len(fields))
    for i, name in enumerate(fields):
        value = values.get(name)
        if type(value) is float:  # the common case first (this runs at every reset)
            number = value
        else:  # np.mean's numbers (its sum over its count), without its wrapper's cost
            try:
                array = np.asarray(value, dtype=float)
                number = (
                    float(np.add.reduce(array, axis=None)) / array.size if array.size else math.nan
                )
            except (TypeError, ValueError):
                number = math.nan
        out[i] = number if math.isfinite(number) else nominal_of(name)
    return out


class PrivilegedObservation(gym.Wrapper):
    """``{"actor": env's observation, "critic": true observation + episode point}``.

    Args:
        env: the training env (its ``unwrapped`` a ``MujocoEnv`` with ``_get_obs``).
        fields: the skew fields of the point, see :func:`critic_fields`.
    """

    def __init__(self, env: gym.Env, fields: Sequence[str]) -> None:
        super().__init__(env)
        self.fields = list(fields)
        self._skewed = find_skewed_env(env)
        true_dim = int(np.prod(env.unwrapped.observation_space.shape))
        critic = gym.spaces.Box(-np.inf, np.inf, (true_dim + len(self.fields),), np.float64)
        self.observation_space = gym.spaces.Dict({"actor": env.observation_space, "critic": critic})
        self._point = np.zeros(len(self.fields))

    def _observation(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        skewed = self._skewed
        own = skewed.true_observation() if skewed is not None else self.env.unwrapped._get_obs()
        true = np.asarray(own, dtype=np.float64).ravel()
        return {"actor": obs, "critic": np.concatenate([true, self._point])}

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        skewed = self._skewed
        values = skewed.applied_values() if skewed is not None else {}
        self._point = point_vector(values, self.fields)
        return self._observation(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._observation(obs), reward, terminated, truncated, info


class SelectKey(BaseFeaturesExtractor):
    """Features: one key of a Dict observation, flattened."""

    def __init__(self, observation_space: gym.spaces.Dict, key: str = "actor") -> None:
        super().__init__(observation_space, int(np.prod(observation_space[key].shape)))
        self.key = key

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.flatten(observations[self.key], start_dim=1)


class AsymmetricActorCriticPolicy(MultiInputActorCriticPolicy):
    """SB3's actor-critic with the actor on ``"actor"`` and the critic on ``"critic"``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(
            features_extractor_class=SelectKey,
            features_extractor_kwargs={"key": "actor"},
            share_features_extractor=False,
        )
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.vf_features_extractor = SelectKey(self.observation_space, "critic")
        self.mlp_extractor = MlpExtractor(
            self.features_dim, self.net_arch, self.activation_fn, device=self.device
        )
        critic = MlpExtractor(
            self.vf_features_extractor.features_dim,
            self.net_arch,
            self.activation_fn,
            device=self.device,
        )
        self.mlp_extractor.value_net = critic.value_net


def asymmetric_policy_kwargs(policy_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The config's policy kwargs without the extractor settings the policy fixes."""
    fixed = {"features_extractor_class", "features_extractor_kwargs", "share_features_extractor"}
    return {k: v for k, v in (policy_kwargs or {}).items() if k not in fixed}
