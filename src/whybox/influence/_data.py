"""Batches for the influence methods: Captum's batch convention, re-chunked for speed.

A batch is a tuple whose last element holds the labels: ``model(*batch[:-1])`` gives the
outputs and ``batch[-1]`` the targets of the loss. ``inputs`` arguments are one such
tuple or a ``DataLoader`` of them.

Per-example work does not depend on how examples are grouped into batches, so batches are
merged into (or split into) chunks of a row budget before gradients are taken (Captum
takes them one ``DataLoader`` batch at a time, one example at a time by default). Training
data are read in groups of at most :data:`GROUP_BYTES` of tensors: each group is read once
and every checkpoint is loaded once per group (once in all, when the data fit).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from whybox.attr._assertion_errors import fail_assert
from whybox.core.chunks import auto_chunk_rows
from whybox.core.validation import describe

__all__ = [
    "GROUP_BYTES",
    "Chunk",
    "BatchList",
    "as_batches",
    "split_batch",
    "chunks",
    "groups",
    "sort_files",
    "checkpoint_list",
    "load_flexible_state_dict",
    "make_dataloader",
    "count_batches",
]

#: tensor bytes of training data held at once (each group is visited by every checkpoint)
GROUP_BYTES = 512 * 2**20


@dataclass
class Chunk:
    """Rows of consecutive examples.

    Attributes
    ----------
    features : tuple
        The model's positional arguments; tensors have ``rows`` in dimension 0, other
        values are passed to every row as they are.
    labels : Any
        The targets (a tensor with ``rows`` in dimension 0, or anything the loss takes).
    rows : int
    """

    features: tuple[Any, ...]
    labels: Any
    rows: int


class BatchList(list):
    """Batches held in memory (a group of training batches): an ``inputs`` value that is
    several batches, not one."""


def as_batches(inputs: Any, *, owner: str, name: str = "inputs") -> Iterable[Any]:
    """``inputs`` as an iterable of batches: a ``DataLoader`` or a :class:`BatchList` as it
    is, a single tuple / list batch as a one-item list."""
    if isinstance(inputs, (DataLoader, BatchList)):
        return inputs
    if isinstance(inputs, (tuple, list)):
        return [tuple(inputs)]
    fail_assert(owner, name, "a batch tuple (features..., labels) or a DataLoader of them", inputs)
    raise AssertionError  # unreachable


def split_batch(batch: Any, *, owner: str) -> tuple[tuple[Any, ...], Any]:
    """``(features, labels)`` of one batch (Captum: ``batch[0:-1]``, ``batch[-1]``)."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        fail_assert(
            owner,
            "inputs",
            "batches that are tuples (features..., labels) of at least two elements",
            batch,
        )
    return tuple(batch[:-1]), batch[-1]


def _rows(features: Sequence[Any], labels: Any) -> int | None:
    """The batch's number of rows, or ``None`` when it cannot be re-chunked (no tensor,
    or tensors disagreeing on dimension 0)."""
    sizes = {int(t.shape[0]) for t in (*features, labels) if isinstance(t, Tensor) and t.dim() > 0}
    return sizes.pop() if len(sizes) == 1 else None


def _take(value: Any, start: int, stop: int, rows: int) -> Any:
    if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == rows:
        return value[start:stop]
    return value


def _mergeable(a: Chunk, b: Chunk) -> bool:
    """Two chunks concatenate when their non-tensor values are the same objects and their
    tensors agree on everything but dimension 0."""
    if len(a.features) != len(b.features):
        return False
    for x, y in zip((*a.features, a.labels), (*b.features, b.labels)):
        if isinstance(x, Tensor) and x.dim() > 0:
            if not (isinstance(y, Tensor) and y.dim() == x.dim() and y.shape[1:] == x.shape[1:]):
                return False
            if y.dtype != x.dtype or y.device != x.device:
                return False
        elif x is not y:
            return False
    return True


def _concat(parts: list[Chunk]) -> Chunk:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]

    def cat(position: int) -> Any:
        values = [(p.features + (p.labels,))[position] for p in parts]
        head = values[0]
        return torch.cat(values) if isinstance(head, Tensor) and head.dim() > 0 else head

    width = len(first.features)
    merged = [cat(i) for i in range(width + 1)]
    return Chunk(tuple(merged[:width]), merged[width], sum(p.rows for p in parts))


def chunks(
    batches: Iterable[Any], rows: int, *, owner: str, by_input: bool = False
) -> Iterator[Chunk]:
    """Consecutive examples of ``batches`` in chunks of at most ``rows`` rows (a batch that
    cannot be split or merged is its own chunk).

    With ``by_input``, ``rows`` is also capped by the engine's automatic chunk for the
    input bytes of one example of the first batch (:func:`whybox.core.chunks.auto_chunk_rows`:
    on CPU, chunks whose activations stay in cache run faster).
    """
    pending: list[Chunk] = []
    pending_rows = 0
    for batch in batches:
        features, labels = split_batch(batch, owner=owner)
        n = _rows(features, labels)
        if by_input and n:
            rows = min(rows, _input_rows(features, n))
            by_input = False
        if n is None:
            if pending:
                yield _concat(pending)
                pending, pending_rows = [], 0
            yield Chunk(features, labels, _count(features, labels))
            continue
        for start in range(0, n, rows) if n else [0]:
            stop = min(n, start + rows)
            piece = Chunk(
                tuple(_take(f, start, stop, n) for f in features),
                _take(labels, start, stop, n),
                stop - start,
            )
            if pending and (pending_rows + piece.rows > rows or not _mergeable(pending[0], piece)):
                yield _concat(pending)
                pending, pending_rows = [], 0
            pending.append(piece)
            pending_rows += piece.rows
    if pending:
        yield _concat(pending)


def _input_rows(features: Sequence[Any], n: int) -> int:
    tensors = [t for t in features if isinstance(t, Tensor)]
    if not tensors:
        return n
    example = sum(t.numel() * t.element_size() for t in tensors) // max(n, 1)
    return auto_chunk_rows(example, tensors[0].device)


def _count(features: Sequence[Any], labels: Any) -> int:
    for t in (*features, labels):
        if isinstance(t, Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return 1


def _nbytes(batch: Any) -> int:
    values = batch if isinstance(batch, (tuple, list)) else (batch,)
    return sum(t.numel() * t.element_size() for t in values if isinstance(t, Tensor))


def groups(batches: Iterable[Any], budget: int = GROUP_BYTES) -> Iterator[BatchList]:
    """Consecutive batches in groups of at most ``budget`` tensor bytes (at least one
    batch each): the data are read once, each group visited by every checkpoint."""
    group = BatchList()
    size = 0
    for batch in batches:
        nbytes = _nbytes(batch)
        if group and size + nbytes > budget:
            yield group
            group, size = BatchList(), 0
        group.append(batch)
        size += nbytes
    if group:
        yield group


def count_batches(batches: Any) -> int | None:
    try:
        return len(batches)
    except TypeError:
        return None


def make_dataloader(
    dataset: Dataset | DataLoader, batch_size: int | None, *, owner: str, name: str
) -> DataLoader:
    """Captum's rule: a ``DataLoader`` is used as it is; a ``Dataset`` is batched by
    ``batch_size`` (an int) without shuffling."""
    if isinstance(dataset, DataLoader):
        return dataset
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        fail_assert(owner, "batch_size", f"an int >= 1 when '{name}' is a Dataset", batch_size)
    return DataLoader(dataset, batch_size, shuffle=False)


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split("([0-9]+)", name)]


def sort_files(files: Iterable[str]) -> list[str]:
    """Natural sort (``ckpt-2`` before ``ckpt-10``), as Captum orders checkpoints."""
    return sorted(files, key=_natural_key)


def checkpoint_list(checkpoints: Any, *, owner: str) -> list[Any]:
    """Captum's ``checkpoints``: a folder (its files, naturally sorted), a list of paths
    (naturally sorted) or any iterable (kept in order); never empty."""
    if isinstance(checkpoints, str):
        found = sort_files(glob.glob(os.path.join(checkpoints, "*")))
    elif (
        isinstance(checkpoints, list)
        and checkpoints
        and all(isinstance(c, str) for c in checkpoints)
    ):
        found = sort_files(checkpoints)
    else:
        try:
            found = list(checkpoints)
        except TypeError:
            found = []
    if not found:
        # Captum's words too, for code that matches them
        fail_assert(
            owner,
            "checkpoints",
            "a folder of checkpoint files, a non-empty list of paths or an iterable of checkpoints",
            f"{describe(checkpoints)} (Invalid checkpoints provided for TracIn class: "
            f"{checkpoints}!)",
            raw=True,
        )
    return found


def load_flexible_state_dict(model: nn.Module, path: str) -> float:
    """Load a saved ``state_dict`` into ``model``; return its ``"learning_rate"`` (1.0 if
    absent). ``DataParallel`` prefixes (``module.``) are matched either way.

    Parameters
    ----------
    model : nn.Module
    path : str

    Returns
    -------
    float
    """
    checkpoint = dict(torch.load(path, map_location=_device_of(model)))
    learning_rate = float(checkpoint.pop("learning_rate", 1.0))
    target = model.module if isinstance(model, nn.DataParallel) else model
    if checkpoint and all(key.startswith("module.") for key in checkpoint):
        checkpoint = {key[len("module.") :]: value for key, value in checkpoint.items()}
    target.load_state_dict(checkpoint)
    return learning_rate


def _device_of(model: nn.Module) -> torch.device | None:
    for tensor in model.parameters():
        return tensor.device
    return None
