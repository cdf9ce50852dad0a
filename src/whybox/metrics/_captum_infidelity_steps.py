"""Captum 0.9's private building blocks of ``infidelity`` (perturbing a repeated batch,
checking the perturbations, one chunk's squared-error terms, and summing them).

:func:`whybox.metrics.infidelity.infidelity` has its own fused loop; these are the
step-by-step pieces Captum-style code imports from ``captum.metrics._core.infidelity``,
re-exported there by :mod:`whybox.metrics._core.infidelity`.
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from whybox._utils.common import (
    ExpansionTypes,
    _expand_additional_forward_args,
    _expand_target,
    _format_tensor_into_tuples,
    _run_forward,
)

__all__ = [
    "_generate_perturbations",
    "_make_next_infidelity_tensors_func",
    "_sum_infidelity_tensors",
    "_validate_inputs_and_perturbations",
]


def _repeat_rows(x: Tensor, k: int) -> Tensor:
    """Each row ``k`` times in a row (example-major, as Captum orders the samples)."""
    return torch.repeat_interleave(x, k, dim=0)


def _generate_perturbations(
    current_n_perturb_samples: int,
    perturb_func: Callable[..., tuple[Any, Any]],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Any, ...] | None,
) -> tuple[Any, Any]:
    """``perturb_func`` called once on the batch with every example repeated
    ``current_n_perturb_samples`` times.

    Parameters
    ----------
    current_n_perturb_samples : int
    perturb_func : callable
        ``perturb_func(inputs[, baselines])`` returning ``(perturbations,
        perturbed_inputs)``; a single input is passed as a tensor, several as a tuple.
    inputs : tuple of Tensor
    baselines : tuple, optional
        Per-input baselines; a tensor with one row per example (more than one) is
        repeated like the inputs, anything else is passed as is. Without baselines
        ``perturb_func`` gets the inputs only.

    Returns
    -------
    tuple
        What ``perturb_func`` returns.
    """
    k = current_n_perturb_samples
    repeated = tuple(_repeat_rows(x, k) for x in inputs)
    repeated_baselines = baselines
    if baselines is not None:
        repeated_baselines = tuple(
            _repeat_rows(b, k)
            if isinstance(b, Tensor) and b.shape[0] == x.shape[0] and b.shape[0] > 1
            else b
            for x, b in zip(inputs, baselines)
        )
    if len(repeated) == 1:
        pert_inputs: Any = repeated[0]
        pert_baselines = None if repeated_baselines is None else repeated_baselines[0]
    else:
        pert_inputs, pert_baselines = repeated, repeated_baselines
    if pert_baselines is None:
        return perturb_func(pert_inputs)
    return perturb_func(pert_inputs, pert_baselines)


def _validate_inputs_and_perturbations(
    inputs: tuple[Tensor, ...],
    inputs_perturbed: tuple[Tensor, ...],
    perturbations: tuple[Tensor, ...],
) -> None:
    """Check one perturbation per input, each shaped like its perturbed input's rows.

    Raises
    ------
    AssertionError
        On a count or (first-row) shape mismatch.
    """
    # Captum's message, which swaps the two counts
    assert len(perturbations) == len(inputs), (
        "The number of perturbed inputs and corresponding perturbations must have the same "
        f"number of elements. Found number of inputs is: {len(perturbations)} and "
        f"perturbations: {len(inputs)}"
    )
    for perturbation, perturbed in zip(perturbations, inputs_perturbed):
        assert perturbation[0].shape == perturbed[0].shape, (
            "Perturbed input and corresponding perturbation must have the same shape and "
            f"dimensionality. Found perturbation shape is: {perturbation[0].shape} and the "
            f"input shape is: {perturbed[0].shape}"
        )


def _make_next_infidelity_tensors_func(
    forward_func: Callable[..., Tensor],
    bsz: int,
    perturb_func: Callable[..., tuple[Any, Any]],
    inputs: tuple[Tensor, ...],
    baselines: tuple[Any, ...] | None,
    attributions: tuple[Tensor, ...],
    additional_forward_args: tuple[object, ...] | None = None,
    target: Any = None,
    normalize: bool = False,
) -> Callable[[int], tuple[Tensor] | tuple[Tensor, Tensor, Tensor]]:
    """A function of ``current_n_perturb_samples`` giving one chunk's per-example terms.

    With ``I`` the perturbations and ``d = f(x) - f(x - I)`` the output drops, the
    function returns ``(sum_s (Phi.I_s - d_s)^2,)``, or for ``normalize`` the three sums
    ``(sum (Phi.I)^2, sum (Phi.I) d, sum d^2)`` from which the scaled error is formed
    once all chunks are summed (:func:`_sum_infidelity_tensors`).

    Parameters
    ----------
    forward_func : callable
    bsz : int
        The number of examples.
    perturb_func : callable
    inputs, baselines, attributions : tuples
    additional_forward_args : tuple, optional
    target : int, tuple, Tensor or list, optional
    normalize : bool, default False

    Returns
    -------
    callable
        ``f(current_n_perturb_samples)`` -> a tuple of ``(bsz,)`` tensors.

    Raises
    ------
    NotImplementedError
        (From the returned function) for a ``forward_func`` returning a future.
    AssertionError
        (From the returned function) for perturbations that do not fit the inputs.
    """

    def _next_infidelity_tensors(
        current_n_perturb_samples: int,
    ) -> tuple[Tensor] | tuple[Tensor, Tensor, Tensor]:
        k = current_n_perturb_samples
        produced = _generate_perturbations(k, perturb_func, inputs, baselines)
        perturbations = _format_tensor_into_tuples(produced[0])
        perturbed = _format_tensor_into_tuples(produced[1])
        _validate_inputs_and_perturbations(inputs, perturbed, perturbations)
        targets = _expand_target(target, k, expansion_type=ExpansionTypes.repeat_interleave)
        extra = _expand_additional_forward_args(
            additional_forward_args, k, expansion_type=ExpansionTypes.repeat_interleave
        )
        perturbed_out = _run_forward(forward_func, perturbed, targets, extra)
        if isinstance(perturbed_out, torch.futures.Future):
            raise NotImplementedError(
                f"Outputs from forward_func of type {type(perturbed_out)} are not yet supported."
            )
        original_out = _run_forward(forward_func, inputs, target, additional_forward_args)
        drops = (_repeat_rows(original_out, k) - perturbed_out).view(bsz, -1)
        explained: Any = sum(
            (_repeat_rows(a, k) * p).view(a.shape[0] * k, -1).sum(dim=1)
            for a, p in zip(attributions, perturbations)
        )
        explained = explained.view(bsz, -1)
        if normalize:
            return (
                explained.pow(2).sum(-1),
                (explained * drops).sum(-1),
                drops.pow(2).sum(-1),
            )
        return ((explained - drops).pow(2).sum(-1),)

    return _next_infidelity_tensors


def _sum_infidelity_tensors(
    agg_tensors: tuple[Tensor, ...], tensors: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    """Element-wise sum of two tuples of running infidelity terms."""
    return tuple(a + t for a, t in zip(agg_tensors, tensors))
