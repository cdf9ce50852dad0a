"""Data sources for whole-dataset jobs, read one shard (batch) at a time.

A source is one of:

* a map-style ``torch.utils.data.Dataset`` -- items ``x``, ``(x, label)`` or a dict with
  ``"inputs"`` (and ``"labels"``); cut into shards of ``shard_rows`` examples by index,
  so a resumed job skips written shards without loading them;
* a ``torch.utils.data.DataLoader`` or any iterable of batches -- each batch is one shard;
  written shards are still loaded (an iterator cannot seek) but not attributed again;
* a ``ray.data.Dataset`` -- rows with an ``"inputs"`` column (``"inputs_0"``,
  ``"inputs_1"``, ... for several inputs) and optionally ``"labels"`` and ``"ids"``; read in
  order, in shards of ``shard_rows`` rows (``iter_torch_batches`` here, ``map_batches`` on
  the Ray backend).

A batch is a tensor of inputs, a tuple/list ``(inputs, labels)`` (``inputs`` a tensor or a
tuple of tensors, for several-input models), a one-element tuple ``(inputs,)``, or a dict
``{"inputs": ..., "labels": ...}``. Example ids are the dataset index (map-style) or the
running row number (iterables), unless a dict batch brings ``"ids"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from whybox.core.validation import fail

__all__ = ["Batch", "iter_batches", "describe_source", "is_map_style", "is_ray_dataset",
           "read_shard_rows", "dict_inputs", "ordered"]  # fmt: skip

_OWNER = "attribute_dataset"


@dataclass
class Batch:
    """One shard's examples.

    Attributes
    ----------
    index : int
        The shard's position in the job.
    inputs : Tensor or tuple of Tensor
        Each ``(n, ...)``.
    labels : Tensor or None
        ``(n,)`` labels when the source has them.
    ids : Tensor
        ``(n,)`` int64 example ids.
    """

    index: int
    inputs: Tensor | tuple[Tensor, ...]
    labels: Tensor | None
    ids: Tensor

    @property
    def rows(self) -> int:
        first = self.inputs[0] if isinstance(self.inputs, tuple) else self.inputs
        return int(first.shape[0])


def is_ray_dataset(source: Any) -> bool:
    return type(source).__module__.startswith("ray.data")


def is_map_style(source: Any) -> bool:
    """A map-style torch ``Dataset`` (cut into shards by index)."""
    return (
        isinstance(source, Dataset)
        and hasattr(source, "__len__")
        and not isinstance(source, torch.utils.data.IterableDataset)
    )


def read_shard_rows(source: Any, index: int, shard_rows: int) -> Batch:
    """Shard ``index`` of a map-style dataset (examples ``index * shard_rows`` onwards)."""
    start = index * shard_rows
    stop = min(start + shard_rows, len(source))
    return _make_batch(default_collate([source[i] for i in range(start, stop)]), index, start)


def describe_source(source: Any) -> dict[str, Any]:
    """What the fingerprint records of a source: its type and length where it has one."""
    info: dict[str, Any] = {"type": type(source).__qualname__}
    if isinstance(source, DataLoader):
        info["dataset"] = type(source.dataset).__qualname__
        info["batch_size"] = source.batch_size
    if is_ray_dataset(source):
        info["len"] = source.count()  # from metadata where Ray has it
        return info
    try:
        info["len"] = len(source)
    except TypeError:  # an iterable without a length
        pass
    return info


def dict_inputs(batch: dict[str, Any]) -> Any:
    """The inputs of a dict batch: ``batch["inputs"]``, or the tuple of its ``"inputs_0"``,
    ``"inputs_1"``, ... columns."""
    if "inputs" in batch:
        return batch["inputs"]
    names = []
    while f"inputs_{len(names)}" in batch:
        names.append(f"inputs_{len(names)}")
    if not names:
        fail(_OWNER, "source", "batches with an 'inputs' key (dict batches)", sorted(batch))
    return tuple(batch[name] for name in names)


@contextmanager
def ordered(dataset: Any) -> Iterator[None]:
    """Run a ``ray.data.Dataset`` in order (``preserve_order``) without progress bars, then
    restore its context's settings."""
    context = dataset.context
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved


def _split(batch: Any, index: int) -> tuple[Any, Any, Any]:
    """``batch`` -> (inputs, labels or None, ids or None)."""
    if isinstance(batch, dict):
        labels = batch.get("labels", batch.get("targets"))
        return dict_inputs(batch), labels, batch.get("ids")
    if isinstance(batch, Tensor):
        return batch, None, None
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        inputs = batch[0]
        if isinstance(inputs, list):
            inputs = tuple(inputs)
        return inputs, (batch[1] if len(batch) == 2 else None), None
    fail(
        _OWNER,
        "source",
        "batches of inputs, (inputs, labels), (inputs,) or {'inputs': ..., 'labels': ...}",
        f"batch {index}: {type(batch).__name__}",
        raw=True,
    )
    raise AssertionError  # unreachable: fail raises


def _as_tensor(value: Any, what: str, index: int) -> Tensor:
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        fail(_OWNER, "source", f"{what} convertible to tensors", f"batch {index}: {value!r}")
        raise


def _make_batch(raw: Any, index: int, first_id: int) -> Batch:
    inputs, labels, ids = _split(raw, index)
    if isinstance(inputs, tuple):
        inputs = tuple(_as_tensor(t, "inputs", index) for t in inputs)
    else:
        inputs = _as_tensor(inputs, "inputs", index)
    first = inputs[0] if isinstance(inputs, tuple) else inputs
    rows = int(first.shape[0])
    if labels is not None:
        labels = _as_tensor(labels, "labels", index).reshape(-1)
        if labels.shape[0] != rows:
            fail(_OWNER, "source", "one label per example", f"batch {index}: {labels.shape[0]} "
                 f"labels for {rows} examples", raw=True)  # fmt: skip
    if ids is None:
        ids = torch.arange(first_id, first_id + rows, dtype=torch.int64)
    else:
        ids = _as_tensor(ids, "ids", index).reshape(-1).to(torch.int64)
    return Batch(index=index, inputs=inputs, labels=labels, ids=ids)


def iter_batches(
    source: Any, *, shard_rows: int, skip: frozenset[int] | set[int] = frozenset()
) -> Iterator[tuple[int, Batch | None]]:
    """Each shard of ``source`` in order: ``(index, batch)``, or ``(index, None)`` for an
    index in ``skip`` of a map-style dataset (not loaded: its shard is already written).

    Parameters
    ----------
    source : Dataset, DataLoader, iterable of batches, or ray.data.Dataset
    shard_rows : int
        Examples per shard of a map-style or Ray dataset (an iterable's batches are kept).
    skip : set of int
        Shards already written.
    """
    if is_map_style(source):
        n = len(source)  # type: ignore[arg-type]
        for index in range(-(-n // shard_rows)):
            if index in skip:
                yield index, None
                continue
            yield index, read_shard_rows(source, index, shard_rows)
        return
    if is_ray_dataset(source):
        with ordered(source):  # the same rows in the same shards on every run
            yield from _iter_rows(source.iter_torch_batches(batch_size=shard_rows))
        return
    if not isinstance(source, Iterable):
        fail(
            _OWNER,
            "source",
            "a torch Dataset, a DataLoader, an iterable of batches or a ray.data.Dataset",
            source,
            type_error=True,
        )
        return
    yield from _iter_rows(source)


def _iter_rows(batches: Iterable[Any]) -> Iterator[tuple[int, Batch | None]]:
    next_id = 0
    for index, raw in enumerate(batches):
        batch = _make_batch(raw, index, next_id)
        next_id += batch.rows
        yield index, batch
