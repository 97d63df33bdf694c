"""Policies for the evaluator: saved Stable-Baselines3 models, loaded models, callables.

Everything is turned into a :class:`PolicySource` (which :meth:`~PolicySource.portable`
makes ready for a worker process), and then into a batch policy: a callable
``obs_batch -> action_batch`` with deterministic actions. Observation
normalization saved with a model (``vecnormalize.pkl``) is applied frozen, with
the saved mean, variance and clip, exactly as SB3's ``VecNormalize`` does at
evaluation time.

Accepted forms:

- a training output folder holding ``model.zip`` and, beside it,
  ``vecnormalize.pkl`` and ``metadata.json`` (keys ``algo``, ``task``,
  ``obs_normalization``);
- a model ``.zip`` file (the two other files are looked for beside it);
- a loaded SB3 model (PPO, SAC, TD3, A2C), or any object with SB3's
  ``predict(obs, deterministic=True) -> (actions, state)`` and ``observation_space``
  and ``action_space``; pass ``VecNormalize`` stats as a ``(model, vecnormalize)`` tuple;
- any callable ``obs_batch -> action_batch`` (applied as is).

Every built policy is called as ``policy(obs_batch, episode_start=mask)`` (``mask``: one
bool per row, True on an episode's first observation; ``None``: no episode starts), and
row ``i`` of every call must be the same sub-env. A plain callable that takes no
``episode_start`` is adapted (the mask is dropped). A policy trained with a history
(``metadata.json`` ``history``, see :mod:`sim2real.history`) keeps each row's past
observations and commands and backfills them at an episode start; a recurrent policy
(``algo: rppo``, sb3-contrib's RecurrentPPO) keeps each row's LSTM state and zeroes it at
an episode start. An asymmetric actor-critic (``asymmetric: true``) is evaluated from its
actor's inputs alone: the critic's input is never computed (zeros are passed in its slot).

``vecnormalize.pkl`` is a pickle: load only files you trust.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sim2real.history import History, HistoryBuffer

MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = "vecnormalize.pkl"
METADATA_FILE = "metadata.json"
ALGOS = ("ppo", "sac", "td3", "a2c", "rppo")
NO_HISTORY = History()
# Metadata that changes how a saved network is run (so two such policies are not the same).
_RUNS_AS = ("history", "asymmetric", "latency_compensation")

# Schedules saved with a model may not unpickle across versions; inference needs none.
_CUSTOM_OBJECTS = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}

BatchPolicy = Callable[..., np.ndarray]  # (obs_batch, episode_start=None) -> action_batch


class PolicyError(ValueError):
    """A policy that cannot be evaluated on the task; the message names it and why."""


@dataclass(frozen=True)
class ObsNormalizer:
    """Frozen observation normalization: ``clip((obs - mean) / sqrt(var + epsilon), ±clip)``."""

    mean: np.ndarray
    var: np.ndarray
    clip: float
    epsilon: float

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.clip((obs - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip, self.clip)


@dataclass(frozen=True)
class PolicySource:
    """A policy with what the report says about it; :meth:`portable` makes it picklable.

    Attributes:
        label: the name in reports, unique within one evaluation.
        group: the policies of one group are training seeds of one configuration.
        identity: the key of its episodes in the results file; path-based
            policies are identified by the content of their files, others by label.
        algo: ``"ppo"``, ``"sac"``, ``"td3"``, ``"a2c"``, or ``None`` for a callable.
        origin: the path it was loaded from, ``"object"`` or ``"callable"``.
        trained_on: the task named in ``metadata.json``, if any.
        normalizer: the frozen observation normalization of an SB3 policy.
        network: the SB3 policy network (``model.policy``), or another object with
            SB3's ``predict``, in this process.
        network_bytes: the same pickled (a network without its optimizers), for a worker.
        function: a callable policy, applied as is.
        history: the past observations and commands it sees (from ``metadata.json``).
        recurrent: an LSTM policy (RecurrentPPO): state carried per row.
        asymmetric: trained with a privileged critic; only the actor's input is given.
        compensation: latency compensation applied before the policy (``metadata.json``
            ``latency_compensation``; :mod:`sim2real.training.compensation`).
    """

    label: str
    group: str
    identity: str
    algo: str | None
    origin: str
    trained_on: str | None = None
    normalizer: ObsNormalizer | None = None
    network: Any = field(default=None, repr=False, compare=False)
    network_bytes: bytes | None = field(default=None, repr=False)
    function: BatchPolicy | None = None
    history: History = NO_HISTORY
    recurrent: bool = False
    asymmetric: bool = False
    compensation: Any = None  # a LatencyCompensation (sim2real.training.compensation)

    def build(self, batch_size: int = 1) -> BatchPolicy:
        """The batch policy: deterministic actions, normalization applied.

        An SB3 network is given batches of at least ``batch_size`` observations
        (padded): a float32 network's output for one observation can change in the
        last bit with the batch size, but not with the other observations of a batch
        of the same size. A callable gets the observations as they are.
        """
        if self.function is not None:
            return _with_episode_start(self.function)
        network = self.network
        if network is None:
            network = pickle.loads(self.network_bytes)  # our own bytes, from portable()
        if self.compensation is not None:
            return _Compensated(
                _SB3Policy(
                    network,
                    self.normalizer,
                    batch_size,
                    history=self.history,
                    recurrent=self.recurrent,
                    asymmetric=self.asymmetric,
                ),
                self.trained_on,
                self.compensation,
            )
        return _SB3Policy(
            network,
            self.normalizer,
            batch_size,
            history=self.history,
            recurrent=self.recurrent,
            asymmetric=self.asymmetric,
        )

    def portable(self) -> PolicySource:
        """A copy that can be sent to a worker process.

        An SB3 policy travels as its policy network alone: a worker rebuilds it
        without loading the model file or building optimizers, so it starts
        quickly.

        Raises:
            PolicyError: when the policy is a callable that cannot be pickled.
        """
        if self.function is not None:
            try:
                pickle.dumps(self.function)
            except Exception as error:
                raise PolicyError(
                    f"policy {self.label!r} cannot be sent to a worker process ({error})"
                ) from None
            return self
        if self.network is None:
            return self
        try:
            network_bytes = _without_optimizers(self.network)
        except Exception as error:
            raise PolicyError(
                f"policy {self.label!r} cannot be sent to a worker process ({error})"
            ) from None
        return replace(self, network=None, network_bytes=network_bytes)

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "group": self.group,
            "id": self.identity,
            "algo": self.algo,
            "source": self.origin,
            "obs_normalization": self.normalizer is not None,
            "history": self.history.to_dict(),
            "recurrent": self.recurrent,
            "asymmetric": self.asymmetric,
            "latency_compensation": None
            if self.compensation is None
            else self.compensation.to_dict(),
        }


def _without_optimizers(network: Any) -> bytes:
    """``network`` pickled with every ``optimizer`` attribute of its modules left out."""
    modules = network.modules() if hasattr(network, "modules") else [network]
    holders = [m for m in modules if getattr(m, "optimizer", None) is not None]
    optimizers = [m.optimizer for m in holders]
    try:
        for module in holders:
            module.optimizer = None
        return pickle.dumps(network)
    finally:
        for module, optimizer in zip(holders, optimizers, strict=True):
            module.optimizer = optimizer


def _with_episode_start(function: Callable[..., np.ndarray]) -> BatchPolicy:
    """``function`` callable as ``function(obs, episode_start=mask)``; a plain
    ``obs -> actions`` callable is wrapped and never sees the mask."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        parameters = {}
    if "episode_start" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    ):
        return function
    return _PlainCallable(function)


@dataclass(frozen=True)
class _PlainCallable:
    """A stateless ``obs -> actions`` callable; the episode starts do not concern it."""

    function: Callable[[np.ndarray], np.ndarray]

    def __call__(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        return self.function(obs)


class _Compensated:
    """A batch policy acting on latency-compensated observations (a Smith predictor)."""

    def __init__(self, policy: BatchPolicy, task: str | None, compensation: Any) -> None:
        from sim2real.training.compensation import LatencyPredictor

        if task is None:
            raise PolicyError("latency compensation needs the task in metadata.json")
        self.policy = policy
        self.predictor = LatencyPredictor(task, compensation)

    def __call__(
        self,
        obs: np.ndarray,
        episode_start: np.ndarray | None = None,
        active: np.ndarray | None = None,
    ) -> np.ndarray:
        """``active``: the rows that hold an episode of this policy (default: all); the
        prediction, the costly part, runs on those alone."""
        predicted = self.predictor.predict(obs, episode_start, active)
        actions = self.policy(predicted, episode_start=episode_start)
        self.predictor.record(actions, active)
        return actions


class _SB3Policy:
    """An SB3 policy network as a batch policy: history replayed, frozen normalization,
    deterministic actions, batches padded to ``batch_size``, LSTM state kept per row."""

    def __init__(
        self,
        network: Any,
        normalizer: ObsNormalizer | None,
        batch_size: int,
        *,
        history: History = NO_HISTORY,
        recurrent: bool = False,
        asymmetric: bool = False,
    ) -> None:
        self.network = network
        self.normalizer = normalizer
        self.batch_size = batch_size
        self.recurrent = recurrent
        self.asymmetric = asymmetric
        self._critic_shape: tuple[int, ...] | None = None
        if asymmetric:
            self._critic_shape = tuple(network.observation_space["critic"].shape)
        self.buffer: HistoryBuffer | None = None
        if history.active:
            actor_space = (
                network.observation_space["actor"] if asymmetric else network.observation_space
            )
            act_dim = int(np.prod(network.action_space.shape))
            obs_dim = (int(np.prod(actor_space.shape)) - act_dim * history.commands) // (
                1 + history.observations
            )
            self.buffer = HistoryBuffer(history, obs_dim, act_dim)
        self._state: Any = None  # the LSTM state of every padded row

    def __call__(self, obs: np.ndarray, episode_start: np.ndarray | None = None) -> np.ndarray:
        count = len(obs)
        starts = np.zeros(count, dtype=bool)
        if episode_start is not None:
            starts |= np.asarray(episode_start, dtype=bool).reshape(count)
        if self.buffer is not None:
            obs = self.buffer.observe(obs, starts)
        if self.normalizer is not None:
            obs = self.normalizer(obs)
        rows = max(self.batch_size, count)
        if count < rows:
            obs = np.concatenate([obs, np.zeros((rows - count, *obs.shape[1:]))])
        model_obs: Any = obs
        if self.asymmetric:
            model_obs = {"actor": obs, "critic": np.zeros((rows, *self._critic_shape))}
        if self.recurrent:
            actions = self._recurrent(model_obs, starts, rows)
        else:
            actions, _ = self.network.predict(model_obs, deterministic=True)
        actions = actions[:count]
        if self.buffer is not None:
            self.buffer.record(actions)
        return actions

    def _recurrent(self, obs: Any, starts: np.ndarray, rows: int) -> np.ndarray:
        """RecurrentPPO's predict with each row's state; zeroed where an episode starts."""
        mask = np.ones(rows, dtype=bool)  # rows never seen start afresh
        if self._state is not None:
            known = self._state[0].shape[1]
            mask[: min(known, len(starts))] = starts[:known]
            if known < rows:
                self._state = tuple(
                    np.concatenate([s, np.zeros((s.shape[0], rows - known, s.shape[2]))], axis=1)
                    for s in self._state
                )
            self._state = tuple(s[:, :rows] for s in self._state)
        mask[: len(starts)] |= starts
        actions, self._state = self.network.predict(
            obs, state=self._state, episode_start=mask, deterministic=True
        )
        return actions


# ---------------------------------------------------------------------- resolving
def resolve_policies(policy: Any) -> list[PolicySource]:
    """Every policy given, as sources with unique labels and their groups.

    ``policy`` is one policy, a sequence of policies, or a mapping
    ``{group: policy or sequence}``. Without a mapping, path-based policies
    stored as ``<config>/seed<N>/`` are grouped by ``<config>``; every other
    policy is a group of its own.
    """
    if isinstance(policy, Mapping):
        given = [
            (str(group), item)
            for group, items in policy.items()
            for item in (items if _is_sequence(items) else [items])
        ]
    elif _is_sequence(policy):
        given = [(None, item) for item in policy]
    else:
        given = [(None, policy)]
    if not given:
        raise PolicyError("no policy given")
    sources = [_source(item, group, index) for index, (group, item) in enumerate(given)]
    return _unique_labels(sources)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and not _is_model_with_stats(value)


def _is_model_with_stats(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and hasattr(value[0], "predict")
        and hasattr(value[1], "obs_rms")
    )


def _source(item: Any, group: str | None, index: int) -> PolicySource:
    if isinstance(item, (str, Path)):
        return _from_path(Path(item), group)
    if _is_model_with_stats(item):
        model, stats = item
        return _from_model(model, _normalizer(stats, "the VecNormalize given"), group, index)
    if hasattr(item, "predict") and hasattr(item, "observation_space"):
        return _from_model(item, None, group, index)
    if callable(item):
        label = getattr(item, "__name__", type(item).__name__)
        label = f"policy{index}" if label == "<lambda>" else label
        return PolicySource(
            label=label,
            group=group or label,
            identity=f"callable:{label}",
            algo=None,
            origin="callable",
            function=item,
        )
    raise PolicyError(
        f"policy {item!r} is not a path, a Stable-Baselines3 model or a callable "
        "obs_batch -> action_batch"
    )


def _from_model(
    model: Any, normalizer: ObsNormalizer | None, group: str | None, index: int
) -> PolicySource:
    """An SB3 model acts through its policy network; another object through its own
    ``predict``."""
    algo = type(model).__name__.lower()
    label = f"{algo}{index}"
    return PolicySource(
        label=label,
        group=group or label,
        identity=f"object:{label}",
        algo=algo,
        origin="object",
        normalizer=normalizer,
        network=model.policy if hasattr(getattr(model, "policy", None), "predict") else model,
    )


def _from_path(path: Path, group: str | None) -> PolicySource:
    if not path.exists():
        raise PolicyError(f"policy {str(path)!r}: no such file or directory")
    model_file = path / MODEL_FILE if path.is_dir() else path
    if not model_file.is_file():
        raise PolicyError(
            f"policy {str(path)!r}: no {MODEL_FILE} in this folder; expected a training "
            "output folder or a model .zip"
        )
    folder = model_file.parent
    metadata = _metadata(folder / METADATA_FILE)
    data = _zip_data(model_file)
    algo = _detect_algo(model_file, metadata, data)
    stats_file = folder / VECNORMALIZE_FILE
    normalizer = None
    if stats_file.is_file():
        normalizer = _normalizer(_load_vecnormalize(stats_file), str(stats_file))
    try:
        history = History.load(metadata.get("history"))
        from sim2real.training.compensation import LatencyCompensation

        compensation = LatencyCompensation.load(metadata.get("latency_compensation"))
    except ValueError as error:
        raise PolicyError(f"policy {str(path)!r}: {error} ({METADATA_FILE})") from None
    if metadata.get("obs_normalization") and normalizer is None:
        raise PolicyError(
            f"policy {str(path)!r} was trained with observation normalization "
            f"({METADATA_FILE}) but {stats_file} is missing or does not normalize "
            "observations; refusing to evaluate it with fresh statistics"
        )
    model, algo = _load_model(model_file, algo)
    # <config>/seed<N>/model.zip or <config>/seed<N>.zip: a training seed of <config>.
    run, config = (
        (folder.name, folder.parent.name)
        if model_file.name == MODEL_FILE
        else (model_file.stem, folder.name)
    )
    is_seed = re.fullmatch(r"seed\d+", run) is not None
    label = f"{config}/{run}" if is_seed else run
    if group is None:
        group = config if is_seed else run
    digest = hashlib.sha256(model_file.read_bytes())
    if stats_file.is_file():
        digest.update(stats_file.read_bytes())
    # What the metadata changes about how the network is run is part of the policy.
    runs_as = {k: metadata[k] for k in _RUNS_AS if metadata.get(k)}
    if runs_as:
        digest.update(json.dumps(runs_as, sort_keys=True).encode())
    return PolicySource(
        label=label,
        group=group,
        identity=f"sha256:{digest.hexdigest()[:16]}",
        algo=algo,
        origin=str(path),
        trained_on=metadata.get("task"),
        normalizer=normalizer,
        network=model.policy,
        history=history,
        recurrent=algo == "rppo",
        asymmetric=bool(metadata.get("asymmetric", False)),
        compensation=compensation,
    )


def _metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PolicyError(f"policy metadata {str(path)!r} is not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise PolicyError(f"policy metadata {str(path)!r} must be a JSON object")
    return metadata


def _zip_data(model_file: Path) -> dict[str, Any]:
    """The ``data`` record of an SB3 model zip; a clear error when the file is not one."""
    try:
        with zipfile.ZipFile(model_file) as archive:
            return json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as error:
        raise PolicyError(
            f"policy {str(model_file)!r} is not a Stable-Baselines3 model file ({error})"
        ) from None


def _detect_algo(model_file: Path, metadata: dict[str, Any], data: dict[str, Any]) -> str | None:
    """From ``metadata.json``, else from SB3's own policy classes saved in the zip; ``None``
    when neither tells (a custom policy class): the loaders are then tried in turn."""
    algo = metadata.get("algo")
    if algo is not None:
        if str(algo).lower() not in ALGOS:
            raise PolicyError(
                f"policy {str(model_file)!r}: algo {algo!r} in {METADATA_FILE} is not "
                f"supported; allowed: {', '.join(ALGOS)}"
            )
        return str(algo).lower()
    module = str(data.get("policy_class", {}).get("__module__", ""))
    if module == "sb3_contrib.common.recurrent.policies":
        return "rppo"
    if module == "stable_baselines3.sac.policies":
        return "sac"
    if module == "stable_baselines3.td3.policies":
        return "td3"
    if module == "stable_baselines3.common.policies":  # PPO and A2C share the policy classes
        return "ppo" if "n_epochs" in data else "a2c"
    return None


def _load_model(model_file: Path, algo: str | None) -> tuple[Any, str]:
    """The loaded model and its algorithm; with ``algo=None`` the first loader that works."""
    import stable_baselines3

    failures = []
    for name in [algo] if algo is not None else ALGOS:
        try:
            if name == "rppo":
                from sb3_contrib import RecurrentPPO as algo_class
            else:
                algo_class = getattr(stable_baselines3, name.upper())
            model = algo_class.load(model_file, device="cpu", custom_objects=_CUSTOM_OBJECTS)
        except Exception as error:
            failures.append(f"{name.upper()}: {error}")
            continue
        return model, name
    raise PolicyError(
        f"policy {str(model_file)!r} cannot be loaded as a Stable-Baselines3 "
        f"{'/'.join(n.upper() for n in ([algo] if algo else ALGOS))} model "
        f"({'; '.join(failures)})"
    )


def _load_vecnormalize(path: Path) -> Any:
    try:
        with path.open("rb") as file:
            return pickle.load(file)
    except Exception as error:
        raise PolicyError(
            f"normalization statistics {str(path)!r} cannot be read ({error})"
        ) from None


def _normalizer(stats: Any, what: str) -> ObsNormalizer | None:
    """Frozen copies of VecNormalize's observation statistics (``None`` if it does not
    normalize observations)."""
    if not getattr(stats, "norm_obs", False):
        return None
    rms = getattr(stats, "obs_rms", None)
    if isinstance(rms, dict):  # an asymmetric actor-critic: the actor's statistics
        rms = rms.get("actor")
    if not hasattr(rms, "mean") or not hasattr(rms, "var"):
        raise PolicyError(f"{what} holds no observation statistics (Dict observations?)")
    return ObsNormalizer(
        mean=np.array(rms.mean, dtype=np.float64),
        var=np.array(rms.var, dtype=np.float64),
        clip=float(stats.clip_obs),
        epsilon=float(stats.epsilon),
    )


def _unique_labels(sources: list[PolicySource]) -> list[PolicySource]:
    seen: dict[str, int] = {}
    unique = []
    for source in sources:
        count = seen.get(source.label, 0)
        seen[source.label] = count + 1
        if count:
            label = f"{source.label}#{count + 1}"
            identity = source.identity
            if not identity.startswith("sha256:"):
                identity = f"{identity}#{count + 1}"
            source = replace(source, label=label, identity=identity)
        unique.append(source)
    return unique


# ---------------------------------------------------------------------- checking
def check_fits(source: PolicySource, env: gym.Env, probe: np.ndarray) -> None:
    """Refuse a policy whose spaces do not fit ``env``, or whose actions come out wrong.

    ``probe`` is a small batch of real observations of ``env``; the policy must
    map it to finite actions of the env's action shape.
    """
    obs_shape, action_space = env.observation_space.shape, env.action_space
    act_dim = int(np.prod(action_space.shape))
    input_shape = (source.history.size(int(np.prod(obs_shape)), act_dim),)
    if not source.history.active:
        input_shape = obs_shape
    model = source.network
    if model is not None:
        model_space = model.observation_space
        if source.asymmetric:
            model_space = model_space["actor"]
        if model_space.shape != input_shape:
            raise PolicyError(
                f"policy {source.label!r} expects observations of shape "
                f"{model_space.shape}, the task gives {obs_shape}"
                + (f" ({input_shape} with its history)" if source.history.active else "")
            )
        model_actions = model.action_space
        if model_actions.shape != action_space.shape or not (
            np.allclose(model_actions.low, action_space.low)
            and np.allclose(model_actions.high, action_space.high)
        ):
            raise PolicyError(
                f"policy {source.label!r} acts in {model_actions}, the task expects {action_space}"
            )
    if source.normalizer is not None and source.normalizer.mean.shape != input_shape:
        raise PolicyError(
            f"policy {source.label!r}: normalization statistics of shape "
            f"{source.normalizer.mean.shape} do not fit observations of shape {input_shape}"
        )
    try:
        actions = np.asarray(source.build()(probe, episode_start=np.ones(len(probe), bool)))
    except Exception as error:
        raise PolicyError(
            f"policy {source.label!r} fails on a batch of observations of shape "
            f"{probe.shape} ({type(error).__name__}: {error})"
        ) from None
    expected = (len(probe), *action_space.shape)
    if actions.shape != expected:
        raise PolicyError(
            f"policy {source.label!r} returned actions of shape {actions.shape} for "
            f"{len(probe)} observations; expected {expected}"
        )
    if not np.all(np.isfinite(actions)):
        raise PolicyError(f"policy {source.label!r} returned non-finite actions")


def group_of(sources: Sequence[PolicySource]) -> dict[str, list[PolicySource]]:
    """Sources by group, in order of first appearance."""
    groups: dict[str, list[PolicySource]] = {}
    for source in sources:
        groups.setdefault(source.group, []).append(source)
    return groups
