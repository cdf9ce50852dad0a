"""Captum 0.9's private helpers for influence *scores*: pairwise dot products of
per-example vectors and the constant-memory top-``k`` search over a dataloader.

Re-exported under Captum's names by :mod:`whybox.influence._utils.common`.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from whybox._utils.progress import progress
from whybox.influence._data import count_batches
from whybox.influence.base import merge_top_k

__all__ = ["_get_k_most_influential_helper", "_gradient_dot_product", "_tensor_batch_dot"]


def _tensor_batch_dot(t1: Tensor, t2: Tensor) -> Tensor:
    """Pairwise dot products of the rows of two batches.

    Parameters
    ----------
    t1 : Tensor ``(n1, ...)``
    t2 : Tensor ``(n2, ...)``
        Each row of both must hold the same number of elements.

    Returns
    -------
    Tensor ``(n1, n2)``
        Entry ``[i, j]`` is ``<t1[i], t2[j]>`` (rows flattened).

    Raises
    ------
    AssertionError
        When the rows of ``t1`` and ``t2`` hold different numbers of elements.
    """
    n1 = torch.numel(t1) / t1.shape[0]
    n2 = torch.numel(t2) / t2.shape[0]
    assert n1 == n2, (
        "Please ensure each batch member has the same feature dimension. "
        f"First input has {n1} features, and second input has {n2} features."
    )
    return t1.reshape(t1.shape[0], -1) @ t2.reshape(t2.shape[0], -1).T


def _gradient_dot_product(input_grads: tuple[Tensor, ...], src_grads: tuple[Tensor, ...]) -> Tensor:
    """Pairwise dot products of per-example gradients given parameter by parameter.

    Parameters
    ----------
    input_grads, src_grads : tuple of Tensor
        One tensor ``(n, *param.shape)`` per parameter, in the same parameter order.

    Returns
    -------
    Tensor ``(n_input, n_src)``
        The dot products of the whole (concatenated) gradients.

    Raises
    ------
    AssertionError
        When the two tuples cover different numbers of parameters.
    """
    assert len(input_grads) == len(src_grads), "Mismatching gradient parameters."
    pairs = iter(zip(input_grads, src_grads))
    # an empty tuple raises StopIteration, as Captum's does
    total = _tensor_batch_dot(*next(pairs))
    for a, b in pairs:
        total += _tensor_batch_dot(a, b)
    return total


def _get_k_most_influential_helper(
    influence_src_dataloader: DataLoader,
    influence_batch_fn: Callable,
    inputs: Any,
    k: int = 5,
    proponents: bool = True,
    show_progress: bool = False,
    desc: str | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``k`` most (or least) influential training examples per test example, one
    training batch at a time (memory does not grow with the training set).

    Parameters
    ----------
    influence_src_dataloader : DataLoader
        The training batches.
    influence_batch_fn : callable
        ``influence_batch_fn(inputs, batch)`` gives the ``(n_test, batch_size)`` scores.
    inputs : Any
        Passed on as the first argument of ``influence_batch_fn``.
    k : int, default 5
    proponents : bool, default True
        Largest scores (proponents) or smallest (opponents).
    show_progress : bool, default False
        Show the number of batches processed.
    desc : str, optional
        The progress bar's description.

    Returns
    -------
    indices : Tensor ``(n_test, k)`` of long
        Indices into the whole dataloader, best first.
    influence_scores : Tensor ``(n_test, k)``
        The matching scores.
    """
    batches: Iterable[Any] = influence_src_dataloader
    if show_progress:
        total = count_batches(influence_src_dataloader)  # None for an IterableDataset's
        batches = progress(influence_src_dataloader, desc=desc, total=total)
    best: tuple[Tensor, Tensor] | None = None
    seen = 0
    for batch in batches:
        scores = influence_batch_fn(inputs, batch)
        best = merge_top_k(best, scores, seen, k, proponents)
        seen += scores.shape[1]
    if best is None:
        return torch.Tensor().long(), torch.Tensor()
    return best
