"""Batching of perturbed inputs for the robustness metrics, in Captum's conventions.

:class:`~whybox.robust.AttackComparator` and :class:`~whybox.robust.MinParamPerturbation`
hand the model's raw output to the user's metric / correctness function, and their inputs
may be anything the user's preprocessing accepts (images, strings) when they are evaluated
one at a time. The engine's :class:`~whybox.core.forward.Evaluator` takes tensors and
turns outputs into tensors, so these two call the model here, in :func:`run_model`, the one
model call of this package outside the engine (requested engine change: a pass-through
call in ``core/forward.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from whybox.attr._assertion_errors import fail_assert

__all__ = ["as_args", "repeat_args", "concat", "rows_of", "run_model"]


def as_args(additional_forward_args: Any) -> tuple | None:
    """Captum's convention: ``None``, one value, or a tuple of positional values."""
    if additional_forward_args is None or isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def repeat_args(args: tuple | None, n: int) -> tuple | None:
    """``args`` for ``n`` batches one after the other: tensors with a batch dimension are
    repeated ``n`` times along it (0-d tensors and other values pass unchanged)."""
    if args is None:
        return None
    return tuple(
        torch.cat([a] * n, dim=0) if isinstance(a, Tensor) and a.dim() > 0 else a for a in args
    )


def concat(batches: Sequence[Any], *, owner: str) -> Any:
    """Batches (tensors, or tuples / lists of tensors) joined along dim 0 (a tuple for
    tuples); tensors are moved to the first batch's device."""
    first = batches[0]
    if isinstance(first, Tensor):
        return torch.cat([b.to(first.device) for b in batches])
    if isinstance(first, bool):
        return any(batches)
    if isinstance(first, (tuple, list)):
        return tuple(concat([b[i] for b in batches], owner=owner) for i in range(len(first)))
    fail_assert(
        owner,
        "perturbations_per_eval",
        "1 unless the (preprocessed) inputs are tensors or tuples of tensors",
        f"inputs of type {type(first).__name__}",
        raw=True,
    )


def rows_of(batch: Any) -> int:
    """Examples in one batch: a tensor's first dimension, or its first tensor's."""
    return batch.shape[0] if isinstance(batch, Tensor) else batch[0].shape[0]


def run_model(forward_func: Callable[..., Any], inputs: Any, args: tuple | None) -> Any:
    """``forward_func(inputs, *args)``: the inputs as one argument (a tuple stays a tuple),
    as Captum's robustness metrics call models; the output is returned unchanged."""
    return forward_func(inputs, *(args or ()))
