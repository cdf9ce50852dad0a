"""The Ray backend: the same shards, computed by a pool of Ray actors.

Each actor holds one :class:`~whybox.scale.job.ShardWorker` (one model, built once from the
module or :class:`~whybox.scale.job.ModelFactory` it is sent), reserving ``num_cpus`` /
``num_gpus``, so it computes exactly what the local backend computes. Two paths:

* :func:`run_ray_data` -- a map-style torch ``Dataset`` or a ``ray.data.Dataset``, through
  ``ray.data``: a map-style dataset becomes a dataset of the pending shards' indices, one
  block each, mapped by the actor pool, each actor holding the source and reading its
  shards' rows itself (:class:`ShardReader`: no read stage moves the rows; the batches are
  the local backend's); a ``ray.data.Dataset`` gets its row numbers by ``zip`` with
  ``ray.data.range``, is cut into the job's shards by a strict streaming ``repartition``
  and mapped by an actor pool (``ActorPoolStrategy(size=num_workers)``), one batch per
  shard (``batch_size=shard_rows``; the method's own
  ``chunk_size`` policy splits it for the forward passes). The results come back in order
  (``preserve_order``) and the driver writes the shards and the summaries, so the files are
  the local backend's, byte for byte.
* :func:`run_ray` -- any other iterable (a ``DataLoader``, a generator): it cannot be read by
  Ray tasks, so the driver reads it and sends each batch to an actor, at most
  ``2 * num_workers`` in flight, results taken in shard order.

A local Ray instance is started when none is running. Ray is the optional ``whybox[ray]``
extra (``ray[data]``), imported only here and only when asked for.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Container, Iterator
from typing import Any

import numpy as np
import torch

from .dataset import Batch, dict_inputs, is_ray_dataset, ordered, read_shard_rows

__all__ = ["require_ray", "start_ray", "run_ray", "run_ray_data", "numbered_by_ray"]

_ROW = "_whybox_row"  # the example's position in the job (shard = row // shard_rows)
_SHARD = "_whybox_shard"
_SHARD_INDEX = "_whybox_shard_index"  # a pending shard handed to an actor that reads it


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


def start_ray(num_workers: int, num_cpus: float) -> bool:
    """Connect to Ray: a running instance, else a local one with the CPUs of the actor pool
    plus one for the reading tasks (no dashboard, worker logs not forwarded).

    Returns
    -------
    bool
        Whether this call started the instance.
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    ray.init(
        num_cpus=max(math.ceil(num_workers * num_cpus), 1) + 1,
        include_dashboard=False,
        ignore_reinit_error=True,
        log_to_driver=False,
    )
    return True


def numbered_by_ray(source: Any) -> bool:
    """Whether ``source`` is a ``ray.data.Dataset`` that Ray can number row by row itself.

    Row numbers come from ``Dataset.zip`` with ``ray.data.range`` (deprecated in newer Ray):
    a Ray without it still runs the job, the driver streaming the dataset to the actors
    (:func:`run_ray`), with the same shards.
    """
    return is_ray_dataset(source) and callable(getattr(source, "zip", None))


def _require_ray_data() -> Any:
    try:
        import ray.data
    except ImportError as error:  # ray without its data extra (pandas, pyarrow)
        raise ImportError(
            "backend='ray' of attribute_dataset needs Ray Data: pip install 'whybox[ray]' "
            "(or pip install 'ray[data]')."
        ) from error
    return ray.data


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
    start_ray(num_workers, num_cpus)
    from .job import ShardWorker

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


# -- the ray.data path ------------------------------------------------------------------
def _drop_done(batch: dict[str, np.ndarray], shard_rows: int, done: frozenset[int]) -> Any:
    keep = ~np.isin(batch[_ROW] // shard_rows, np.fromiter(done, dtype=np.int64))
    return {name: column[keep] for name, column in batch.items()}


def _tensor(column: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(column))  # a writable copy of Ray's read-only column


class ShardMapper:
    """The ``map_batches`` callable class: one :class:`ShardWorker` (one model) per actor.

    Parameters
    ----------
    model : nn.Module, callable or ModelFactory
        Built into the actor's model once, when the actor starts.
    worker_args, worker_kwargs
        The :class:`~whybox.scale.job.ShardWorker` arguments after the model.
    shard_rows, n_rows : int
        Shard size and the job's examples (to check that a batch is whole shards).
    """

    def __init__(
        self,
        model: Any,
        worker_args: tuple[Any, ...],
        worker_kwargs: dict[str, Any],
        shard_rows: int,
        n_rows: int,
    ) -> None:
        from .job import ShardWorker

        self.worker = ShardWorker(model, *worker_args, **worker_kwargs)
        self.shard_rows, self.n_rows = shard_rows, n_rows

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Attribute every shard of ``batch`` (whole shards: Ray Data's blocks are shards)."""
        rows = batch[_ROW]
        parts: list[dict[str, np.ndarray]] = []
        start = 0
        while start < len(rows):
            index = int(rows[start]) // self.shard_rows
            size = min(self.shard_rows, self.n_rows - index * self.shard_rows)
            stop = start + size
            expected = np.arange(index * self.shard_rows, index * self.shard_rows + size)
            if stop > len(rows) or not np.array_equal(rows[start:stop], expected):
                raise RuntimeError(
                    f"whybox: Ray Data handed a batch that is not whole shards (rows "
                    f"{rows[start]}..{rows[-1]} of {len(rows)}, shard {index} has {size}); "
                    "please report it."
                )
            part = {name: column[start:stop] for name, column in batch.items()}
            inputs = dict_inputs(part)
            inputs = (tuple(_tensor(c) for c in inputs) if isinstance(inputs, tuple)
                      else _tensor(inputs))  # fmt: skip
            labels = part.get("labels", part.get("targets"))
            ids = part.get("ids", part[_ROW])
            shard = Batch(
                index=index,
                inputs=inputs,
                labels=None if labels is None else _tensor(labels).reshape(-1),
                ids=_tensor(ids).reshape(-1).to(torch.int64),
            )
            fields = self.worker.compute(shard)
            fields[_SHARD] = np.full(size, index, dtype=np.int64)
            parts.append(fields)
            start = stop
        return _joined(parts)


class ShardReader:
    """The ``map_batches`` callable class for a map-style source: each actor holds the
    source and one :class:`ShardWorker` (one model), and attributes the shards whose
    indices it is handed, reading their rows itself (exactly the local backend's batches).

    Parameters
    ----------
    source : map-style torch Dataset
        Sent to every actor once.
    model : nn.Module, callable or ModelFactory
        Built into the actor's model once, when the actor starts.
    worker_args, worker_kwargs
        The :class:`~whybox.scale.job.ShardWorker` arguments after the model.
    shard_rows : int
        Examples per shard.
    """

    def __init__(
        self,
        source: Any,
        model: Any,
        worker_args: tuple[Any, ...],
        worker_kwargs: dict[str, Any],
        shard_rows: int,
    ) -> None:
        from .job import ShardWorker

        self.source, self.shard_rows = source, shard_rows
        self.worker = ShardWorker(model, *worker_args, **worker_kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Attribute the shards listed in ``batch`` (one index per row), in order."""
        parts = []
        for index in batch[_SHARD_INDEX].tolist():
            fields = self.worker.compute(read_shard_rows(self.source, int(index), self.shard_rows))
            fields[_SHARD] = np.full(len(fields["ids"]), int(index), dtype=np.int64)
            parts.append(fields)
        return _joined(parts)


def run_ray_data(
    source: Any,
    model: Any,
    worker_args: tuple[Any, ...],
    worker_kwargs: dict[str, Any],
    *,
    shard_rows: int,
    done: Container[int],
    num_workers: int,
    num_cpus: float,
    num_gpus: float,
) -> Iterator[tuple[int, dict[str, np.ndarray] | None]]:
    """``(index, fields)`` for every shard, in order (``None`` for a shard in ``done``).

    Parameters
    ----------
    source : map-style torch Dataset or ray.data.Dataset
        The job's examples (see :mod:`whybox.scale.dataset`).
    model : nn.Module, callable or ModelFactory
        Sent to every actor, built there once.
    worker_args, worker_kwargs
        The :class:`~whybox.scale.job.ShardWorker` arguments after the model.
    shard_rows : int
        Examples per shard.
    done : container of int
        Shards already written: not read (map-style) or dropped before the actors.
    num_workers : int
        Actors in the pool.
    num_cpus, num_gpus : float
        Resources each actor reserves.

    Notes
    -----
    When the job fails and it started the local Ray instance, it shuts that instance down.
    """
    data = _require_ray_data()
    started = start_ray(num_workers, num_cpus)
    try:
        yield from _run_ray_data(data, source, model, worker_args, worker_kwargs,
                                 shard_rows=shard_rows, done=done, num_workers=num_workers,
                                 num_cpus=num_cpus, num_gpus=num_gpus)  # fmt: skip
    except BaseException:
        # Ray Data may leave a failed run's actors holding their CPUs (which would starve
        # the next run's reading tasks): drop the instance when this job started it
        if started:
            import ray

            ray.shutdown()
        raise


def _run_ray_data(
    data: Any,
    source: Any,
    model: Any,
    worker_args: tuple[Any, ...],
    worker_kwargs: dict[str, Any],
    *,
    shard_rows: int,
    done: Container[int],
    num_workers: int,
    num_cpus: float,
    num_gpus: float,
) -> Iterator[tuple[int, dict[str, np.ndarray] | None]]:
    if is_ray_dataset(source):
        n = source.count()
    else:
        n = len(source)
    total = math.ceil(n / shard_rows)
    pending = [index for index in range(total) if index not in done]
    if not pending:
        yield from ((index, None) for index in range(total))
        return
    if is_ray_dataset(source):
        numbers = data.range(n).rename_columns({"id": _ROW})
        with warnings.catch_warnings():  # zip is deprecated in newer Ray; exact here, in order
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = source.zip(numbers)  # row numbers, by position (see ordered)
        skipped = frozenset(range(total)) - frozenset(pending)
        if skipped:
            dataset = dataset.map_batches(_drop_done, batch_format="numpy", batch_size=None,
                                          fn_kwargs={"shard_rows": shard_rows,
                                                     "done": skipped})  # fmt: skip
        dataset = dataset.repartition(target_num_rows_per_block=shard_rows, strict=True)
        mapper, args = ShardMapper, (model, worker_args, worker_kwargs, shard_rows, n)
        batch_size = shard_rows  # a block is a shard: one batch per shard
    else:
        # one row per pending shard, one block each: every actor reads its shard's rows
        # from the source itself (sent once to each actor), so no read stage moves them
        indices = [{_SHARD_INDEX: index} for index in pending]
        dataset = data.from_items(indices, override_num_blocks=len(pending))
        mapper, args = ShardReader, (source, model, worker_args, worker_kwargs, shard_rows)
        batch_size = 1
    mapped = dataset.map_batches(
        mapper,
        fn_constructor_args=args,
        batch_size=batch_size,
        batch_format="numpy",
        compute=data.ActorPoolStrategy(size=num_workers),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
    yield from _in_order(mapped, total, done)


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Field dicts of consecutive rows as one (a single part as it is)."""
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _in_order(
    mapped: Any, total: int, done: Container[int]
) -> Iterator[tuple[int, dict[str, np.ndarray] | None]]:
    """``(index, fields)`` of every shard from the mapped dataset, in shard order."""
    with ordered(mapped):
        results = _whole_shards(mapped.iter_batches(batch_size=None, batch_format="numpy"))
        for index in range(total):
            if index in done:
                yield index, None
                continue
            got, fields = next(results)
            if got != index:  # pragma: no cover - preserve_order keeps them in order
                raise RuntimeError(f"whybox: Ray Data returned shard {got} for {index}.")
            yield index, fields


def _whole_shards(
    batches: Iterator[dict[str, np.ndarray]],
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Reassemble shards from Ray's output blocks (a big shard may come in several)."""
    current: int | None = None
    pieces: list[dict[str, np.ndarray]] = []

    def flush() -> tuple[int, dict[str, np.ndarray]]:
        return int(current), _joined(pieces)  # type: ignore[arg-type]

    for batch in batches:
        shard_of = batch.pop(_SHARD)
        start = 0
        while start < len(shard_of):
            index = int(shard_of[start])
            others = np.flatnonzero(shard_of[start:] != index)
            stop = start + int(others[0]) if others.size else len(shard_of)
            if current is not None and index != current:
                yield flush()
                pieces = []
            current = index
            pieces.append({name: np.asarray(column[start:stop]) for name, column in batch.items()})
            start = stop
    if pieces:
        yield flush()
