"""Captum 0.9's private helpers that turn ``inputs_dataset`` arguments into dataloaders
and run per-batch computations over them (self influence, dataset reductions, progress
bars).

Re-exported under Captum's names by :mod:`whybox.influence._utils.common`.
"""

import warnings
from collections.abc import Callable, Iterable
from functools import reduce
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from whybox._utils.progress import progress
from whybox.influence._data import count_batches

__all__ = [
    "_DatasetFromList",
    "_dataset_fn",
    "_format_inputs_dataset",
    "_progress_bar_constructor",
    "_self_influence_by_batches_helper",
]


class _DatasetFromList(Dataset):
    """A map-style dataset whose item ``i`` is ``_l[i]``.

    Parameters
    ----------
    _l : list
        The items.
    """

    def __init__(self, _l: list[Any]) -> None:
        self._l = _l

    def __getitem__(self, i: int) -> Any:
        return self._l[i]

    def __len__(self) -> int:
        return len(self._l)


def _format_inputs_dataset(inputs_dataset: tuple[Any, ...] | DataLoader) -> DataLoader:
    """``inputs_dataset`` itself if it is a DataLoader, else a DataLoader that yields it
    as its single batch (``batch_size=None`` disables collation, so the batch comes back
    as given)."""
    if isinstance(inputs_dataset, DataLoader):
        return inputs_dataset
    return DataLoader(_DatasetFromList([inputs_dataset]), shuffle=False, batch_size=None)


def _unknown_length_warning(dataset_name: str, quantities_name: str) -> None:
    warnings.warn(
        f"Unable to determine the number of batches in `{dataset_name}`. Therefore, if "
        f"showing the progress of the computation of {quantities_name}, only the number "
        "of batches processed can be displayed, and not the percentage completion of the "
        "computation, nor any time estimates.",
        stacklevel=3,
    )


def _self_influence_by_batches_helper(
    self_influence_batch_fn: Callable,
    instance_name: str,
    inputs_dataset: tuple[Any, ...] | DataLoader,
    show_progress: bool = False,
) -> Tensor:
    """Self influence scores of every example of ``inputs_dataset``, batch by batch.

    Parameters
    ----------
    self_influence_batch_fn : callable
        ``self_influence_batch_fn(batch, show_progress=False)`` gives one batch's 1D
        scores.
    instance_name : str
        Named in the progress bar.
    inputs_dataset : tuple or DataLoader
        One batch, or a DataLoader of batches.
    show_progress : bool, default False
        Show the number of batches processed.

    Returns
    -------
    Tensor
        The 1D scores of all examples, in order.
    """
    loader = _format_inputs_dataset(inputs_dataset)
    batches: Iterable[Any] = loader
    if show_progress:
        total = count_batches(loader)
        if total is None:
            _unknown_length_warning("inputs_dataset", "self influence scores")
        batches = progress(
            loader,
            desc=f"Using {instance_name} to compute self influence. Processing batch",
            total=total,
        )
    # the progress is shown here, per batch, so not again inside each batch
    return torch.cat([self_influence_batch_fn(batch, show_progress=False) for batch in batches])


def _progress_bar_constructor(
    influence_inst: Any,
    inputs_dataset: DataLoader,
    quantities_name: str,
    dataset_name: str = "inputs_dataset",
) -> Any:
    """A progress bar over ``inputs_dataset`` described as ``influence_inst`` computing
    ``quantities_name`` (its length, when the dataset has one).

    Parameters
    ----------
    influence_inst : InfluenceFunctionBase
        Gives the name shown (its ``get_name()``).
    inputs_dataset : DataLoader
    quantities_name : str
    dataset_name : str, default "inputs_dataset"
        Named in the warning given when the length is unknown.

    Returns
    -------
    Iterable
        The progress-wrapped dataset.
    """
    total = count_batches(inputs_dataset)
    if total is None:
        _unknown_length_warning(dataset_name, quantities_name)
    return progress(
        inputs_dataset,
        desc=f"Using {influence_inst.get_name()} to compute {quantities_name}. Processing batch",
        total=total,
    )


def _dataset_fn(
    dataloader: Iterable[Any],
    batch_fn: Callable,
    reduce_fn: Callable,
    *batch_fn_args: Any,
    **batch_fn_kwargs: Any,
) -> Any:
    """``batch_fn`` applied to each batch, folded left to right with ``reduce_fn``.

    Parameters
    ----------
    dataloader : iterable
        The batches (at least one: an empty one raises ``StopIteration``).
    batch_fn : callable
        ``batch_fn(batch, *batch_fn_args, **batch_fn_kwargs)``.
    reduce_fn : callable
        ``reduce_fn(accumulated, batch_result)``.

    Returns
    -------
    Any
        The reduced result.
    """
    batches = iter(dataloader)
    first = batch_fn(next(batches), *batch_fn_args, **batch_fn_kwargs)
    return reduce(
        lambda acc, batch: reduce_fn(acc, batch_fn(batch, *batch_fn_args, **batch_fn_kwargs)),
        batches,
        first,
    )
