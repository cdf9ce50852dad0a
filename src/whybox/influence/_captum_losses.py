"""Captum 0.9's private helpers around the loss of an influence method: checking its
reduction, per-example parameter Jacobians, and a batch's total loss for Hessians.

Re-exported under Captum's names by :mod:`whybox.influence._utils.common`.
"""

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module

from whybox._utils.gradient import (
    _compute_jacobian_wrt_params,
    _compute_jacobian_wrt_params_with_sample_wise_trick,
)
from whybox.influence._grads import check_loss_fn

__all__ = [
    "_check_loss_fn",
    "_compute_batch_loss_influence_function_base",
    "_compute_jacobian_sample_wise_grads_per_batch",
]


def _check_loss_fn(
    influence_instance: Any,
    loss_fn: Module | Callable | None,
    loss_fn_name: str,
    sample_wise_grads_per_batch: bool = True,
) -> str:
    """The reduction of ``loss_fn`` as an influence method infers it.

    Parameters
    ----------
    influence_instance : TracInCPBase or InfluenceFunctionBase
        The method checking its loss (named in errors).
    loss_fn : nn.Module or callable or None
    loss_fn_name : str
        The argument's name, for messages.
    sample_wise_grads_per_batch : bool, default True
        Whether the per-example gradients come from one reduced loss (the loss must then
        reduce by ``"sum"`` / ``"mean"``) or from per-example losses (``"none"``).

    Returns
    -------
    str
        ``"sum"`` without a loss; else the loss's ``reduction`` (checked against
        ``sample_wise_grads_per_batch``); for a loss without one, ``"sum"`` with the
        sample-wise trick and ``"none"`` without (with a warning about the assumption).

    Raises
    ------
    AssertionError
        For a loss that is not callable or whose reduction does not fit.
    """
    return check_loss_fn(
        type(influence_instance).__name__, loss_fn, loss_fn_name, sample_wise_grads_per_batch
    )


def _compute_jacobian_sample_wise_grads_per_batch(
    influence_inst: Any,
    inputs: tuple[Any, ...],
    targets: Tensor | None = None,
    loss_fn: Module | Callable | None = None,
    reduction_type: str | None = "none",
) -> tuple[Tensor, ...]:
    """Per-example parameter Jacobians of ``influence_inst``'s model on a batch, with the
    sample-wise trick when ``influence_inst.sample_wise_grads_per_batch`` is true.

    Parameters
    ----------
    influence_inst : TracInCP or InfluenceFunctionBase
        Gives ``model``, ``layer_modules`` and ``sample_wise_grads_per_batch``.
    inputs : tuple
        The model's inputs.
    targets : Tensor, optional
    loss_fn : nn.Module or callable, optional
    reduction_type : str, default "none"
        The loss's reduction (used by the sample-wise trick only).

    Returns
    -------
    tuple of Tensor
        One ``(batch, *param.shape)`` tensor per differentiated parameter.
    """
    if influence_inst.sample_wise_grads_per_batch:
        return _compute_jacobian_wrt_params_with_sample_wise_trick(
            influence_inst.model,
            inputs,
            targets,
            loss_fn,
            reduction_type,
            influence_inst.layer_modules,
        )
    return _compute_jacobian_wrt_params(
        influence_inst.model, inputs, targets, loss_fn, influence_inst.layer_modules
    )


def _compute_batch_loss_influence_function_base(
    loss_fn: Module | Callable | None,
    input: Any,
    target: Any,
    reduction_type: str,
) -> Any:
    """The total (summed over examples) loss of a batch, from which Hessians are taken.

    Parameters
    ----------
    loss_fn : nn.Module or callable or None
        Called as ``loss_fn(input, target)``; without one, ``input`` itself is the loss
        (``reduction_type`` must then be ``"none"``).
    input : Any
        The model's output on the batch.
    target : Any
        The batch's labels.
    reduction_type : str
        ``"none"`` (per-example losses, summed here), ``"mean"`` (scaled back by the
        batch size, ``input``'s first dimension) or ``"sum"``.

    Returns
    -------
    Tensor
        The batch's total loss.

    Raises
    ------
    AssertionError
        Without a loss and a reduction other than ``"none"``.
    Exception
        For any other reduction (Captum raises a bare ``Exception``).
    """
    if loss_fn is not None:
        loss = loss_fn(input, target)
    else:
        # as for the Jacobians, no loss means the output itself is differentiated
        assert reduction_type == "none"
        loss = input
    if reduction_type == "none":
        return torch.sum(loss)
    if reduction_type == "mean":
        if isinstance(input, Tensor):
            return loss * input.shape[0]
        warnings.warn(
            "`loss_fn` was inferred to behave as a `reduction='mean'` loss function. "
            "however, the batch size of batches could not be inferred. therefore, the "
            "total loss of a batch, which is needed to compute the Hessian, is "
            "approximated as the output of `loss_fn` for the batch. if this approximation "
            "is not accurate, please change `loss_fn` to behave as a `reduction='sum'` "
            "loss function, or a `reduction='none'` and set `sample_grads_per_batch` to "
            "false.",
            stacklevel=2,
        )
        return loss * 1
    if reduction_type == "sum":
        return loss
    raise Exception(f"reduction_type must be 'none', 'mean' or 'sum'; got {reduction_type!r}")
