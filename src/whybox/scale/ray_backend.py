"""The Ray backend: the same shards, computed by a pool of Ray actors.

Each actor holds one :class:`~whybox.scale.job.ShardWorker` (one model, built once from the
module or :class:`~whybox.scale.job.ModelFactory` it is sent), reserving ``num_cpus`` /
``num_gpus``. The driver reads the source, keeps at most ``2 * num_workers`` shards in
flight, and receives the results in shard order, so it writes the same files (and the same
summaries) as the local backend. A local Ray instance is started when none is running.
Ray is the optional ``whybox[ray]`` extra, imported only here and only when asked for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from .dataset import Batch

__all__ = ["require_ray", "run_ray"]


def require_ray() -> Any:
    """Import Ray, or explain how to install it."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "backend='ray' of attribute_dataset needs Ray: pip install 'whybox[ray]' "
            "(or pip install ray)."
        ) from error
    return ray


def run_ray(
    items: Iterator[tuple[int, Batch | None]],
    model: Any,
    worker_args: tuple[Any, ...],
    worker_kwargs: dict[str, Any],
    *,
    num_workers: int,
    num_cpus: float,
    num_gpus: float,
) -> Iterator[tuple[int, dict[str, np.ndarray] | None]]:
    """``(index, fields)`` for every item, in order (``None`` for a resumed shard).

    Parameters
    ----------
    items : iterator of (int, Batch or None)
        The shards to compute (``None``: already written).
    model : nn.Module, callable or ModelFactory
        Sent to every actor once.
    worker_args, worker_kwargs
        The :class:`ShardWorker` arguments after the model.
    num_workers : int
        Actors in the pool.
    num_cpus, num_gpus : float
        Resources each actor reserves.
    """
    ray = require_ray()
    from .job import ShardWorker

    if not ray.is_initialized():
        ray.init(
            num_cpus=max(int(num_workers * num_cpus), 1),
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
        )
    actor_class = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_Actor)
    model_ref = ray.put(model)
    actors = [
        actor_class.remote(ShardWorker, model_ref, worker_args, worker_kwargs)
        for _ in range(num_workers)
    ]
    window = 2 * num_workers  # bounded: memory holds a few shards, not the dataset
    pending: deque[tuple[int, Any]] = deque()
    turn = 0
    try:
        for index, batch in items:
            if batch is None:
                pending.append((index, None))
            else:
                actor = actors[turn % num_workers]
                turn += 1
                pending.append((index, actor.compute.remote(batch)))
            while len(pending) > window:
                yield _collect(ray, pending.popleft())
        while pending:
            yield _collect(ray, pending.popleft())
    finally:
        for actor in actors:
            ray.kill(actor)


def _collect(ray: Any, item: tuple[int, Any]) -> tuple[int, dict[str, np.ndarray] | None]:
    index, ref = item
    return index, None if ref is None else ray.get(ref)


class _Actor:
    """One model per actor (made a Ray actor class by :func:`run_ray`)."""

    def __init__(self, worker_class: Any, model: Any, args: tuple[Any, ...], kwargs: Any) -> None:
        self.worker = worker_class(model, *args, **kwargs)

    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        return self.worker.compute(batch)
