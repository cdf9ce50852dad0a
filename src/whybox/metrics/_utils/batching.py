"""Captum 0.9's ``captum.metrics._utils.batching``: ``_divide_and_aggregate_metrics``, the
helper Captum's metrics use to evaluate perturbation samples in slices (whybox's own
metrics use the engine's chunking; this is for code that imports Captum's helper)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["_divide_and_aggregate_metrics"]


def _divide_and_aggregate_metrics(
    inputs: tuple[Tensor, ...],
    n_perturb_samples: int,
    metric_func: Callable[[int], Any],
    agg_func: Callable[[Any, Any], Any] = torch.add,
    max_examples_per_batch: int | None = None,
) -> Any:
    """``metric_func`` over ``n_perturb_samples`` samples per example, in slices, with the
    slices' results folded by ``agg_func``.

    Parameters
    ----------
    inputs : tuple of Tensor, each ``(N, ...)``
        Only their batch size ``N`` is read.
    n_perturb_samples : int
        Samples per example in all.
    metric_func : callable
        ``metric_func(k)``: the metric of ``k`` more samples per example.
    agg_func : callable
        Folds two slices' results (default ``torch.add``).
    max_examples_per_batch : int, optional
        Rows per slice (``N * k``); ``None``: one slice of every sample. A value below
        ``N`` or above ``N * n_perturb_samples`` warns and is clamped to that range.

    Returns
    -------
    The folded result (per example, as ``metric_func`` returns it).
    """
    batch = inputs[0].size(0)
    if max_examples_per_batch is None:
        per_slice = n_perturb_samples
    else:
        wanted = max_examples_per_batch // batch
        if wanted < 1 or wanted > n_perturb_samples:
            warnings.warn(
                "`max_examples_per_batch` must be at least equal to the input batch size "
                "and at most to `input batch size` * `n_perturb_samples`. "
                f"`max_examples_per_batch` is: {max_examples_per_batch} and the input batch "
                f"size is: {batch}. Each sub-batch must hold at least one instance of every "
                "example and no more than its n_perturb_samples.",
                stacklevel=1,
            )
        per_slice = min(max(wanted, 1), n_perturb_samples)
    total = metric_func(per_slice)
    done = per_slice
    while done < n_perturb_samples:
        step = min(per_slice, n_perturb_samples - done)
        total = agg_func(total, metric_func(step))
        done += step
    return total
