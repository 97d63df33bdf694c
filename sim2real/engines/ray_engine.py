"""The ``ray`` engine: the lanes of a workload sharded into Ray tasks (the extra
``sim2real[ray]``).

Each shard is a Ray task running the ``local`` engine (or ``batch``) on its
lanes, a streaming generator that yields each episode as it ends; the caller
waits on all shards at once (``ray.wait``) and hands every episode to
``on_episode`` as it arrives, so ``episodes.jsonl`` and ``--resume`` work as on
one machine. A shard whose worker dies (a killed process, a lost node) is run
again (``max_retries``); Ray drops what a retry yields a second time, and
episodes are also deduplicated here by key, so none is lost or counted twice.
An exception raised by a shard is not retried: it ends the run, and the other
shards are cancelled.

Ray is attached to the cluster at ``RAY_ADDRESS`` when that is set, else a
local one is started (``ray.init(address="local", num_cpus=..., include_dashboard=False)``)
and kept for the rest of the process. Policies travel as bytes
(:meth:`~sim2real.evaluation.policy.PolicySource.portable`) and envs are built
by name on the workers, so every node needs sim2real installed, nothing else.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from sim2real.engines.base import Episode, EpisodeKey, Lane, OnEpisode, Workload

DEFAULT_MAX_RETRIES = 3
SHARD_ENGINES = ("local", "batch")


class RayEngine:
    """Runs a workload as shards on a Ray cluster.

    Args:
        shard_engine: the engine each shard runs: ``"local"`` or ``"batch"``.
        shards: the number of Ray tasks (default: one per CPU of the cluster).
        max_retries: how often a shard whose worker died is run again.
        num_cpus: CPUs of the local Ray started when none is running and
            ``RAY_ADDRESS`` is not set (default: all of this machine's).
        policies: ignored (policies are rebuilt on the workers from their bytes);
            accepted so that every engine is built alike.
    """

    name = "ray"

    def __init__(
        self,
        *,
        shard_engine: str = "local",
        shards: int | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        num_cpus: int | None = None,
        policies: Any = None,
    ) -> None:
        if shard_engine not in SHARD_ENGINES:
            raise ValueError(
                f"shard_engine must be one of {', '.join(SHARD_ENGINES)}, got {shard_engine!r}"
            )
        if shards is not None and (isinstance(shards, bool) or int(shards) != shards or shards < 1):
            raise ValueError(f"shards must be a positive integer, got {shards!r}")
        if isinstance(max_retries, bool) or int(max_retries) != max_retries or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        self.shard_engine, self.shards = shard_engine, shards
        self.max_retries, self.num_cpus = int(max_retries), num_cpus

    def run(self, workload: Workload, on_episode: OnEpisode) -> None:
        ray = ensure_ray(self.num_cpus)
        count = self.shards or max(1, int(ray.cluster_resources().get("CPU", 1)))
        bounds = shard_bounds(workload.lanes, count)
        shared = ray.put(workload)
        task = ray.remote(_run_shard).options(
            num_cpus=1, max_retries=self.max_retries, retry_exceptions=False
        )
        pending = [task.remote(shared, start, stop, self.shard_engine) for start, stop in bounds]
        expected = set(workload.keys())
        done: set[EpisodeKey] = set()
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for generator in ready:
                    try:
                        episode: Episode = ray.get(next(generator))
                    except StopIteration:
                        continue
                    pending.append(generator)
                    if episode.key in done:
                        continue
                    done.add(episode.key)
                    on_episode(episode)
        finally:
            for generator in pending:
                ray.cancel(generator, force=True)
        missing = expected - done
        if missing:
            raise RuntimeError(f"the ray engine lost {len(missing)} episodes, e.g. {min(missing)}")


def shard_bounds(lanes: Sequence[Lane], count: int) -> list[tuple[int, int]]:
    """Cut ``lanes``, in order, into at most ``count`` contiguous ranges ``[start, stop)``
    holding about as many episodes each."""
    sizes = [len(lane.seeds) for lane in lanes]
    total = sum(sizes)
    count = max(1, min(count, len(lanes)))
    bounds, start, running = [], 0, 0
    for index, size in enumerate(sizes):
        running += size
        shards_after = count - len(bounds) - 1  # shards still to cut after this one
        if running * count >= total * (len(bounds) + 1) or len(lanes) - index - 1 <= shards_after:
            bounds.append((start, index + 1))
            start = index + 1
    return bounds


def ensure_ray(num_cpus: int | None = None) -> Any:
    """The ``ray`` module, connected: to a running Ray, else to ``RAY_ADDRESS``, else to a
    local Ray started here with ``num_cpus`` CPUs (default: all of this machine's)."""
    try:
        import ray
    except ImportError:
        raise ImportError("the ray engine needs Ray: pip install 'sim2real[ray]'") from None
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], logging_level="WARNING")
        else:
            ray.init(
                address="local",
                num_cpus=num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                logging_level="WARNING",
            )
    return ray


_DONE = object()


def _run_shard(workload: Workload, start: int, stop: int, engine: str) -> Iterator[Episode]:
    """A Ray task: run lanes ``[start, stop)`` of ``workload`` on ``engine`` and yield each
    episode as it ends. (The engine calls back; it runs in a thread feeding a queue.)"""
    from sim2real.engines import get_engine

    shard = replace(workload, lanes=workload.lanes[start:stop])
    episodes: queue.Queue[Any] = queue.Queue()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            get_engine(engine).run(shard, episodes.put)
        except BaseException as error:  # re-raised in the task, below
            failure.append(error)
        finally:
            episodes.put(_DONE)

    thread = threading.Thread(target=work, name="sim2real-shard", daemon=True)
    thread.start()
    while (item := episodes.get()) is not _DONE:
        yield item
    thread.join()
    if failure:
        raise failure[0]
