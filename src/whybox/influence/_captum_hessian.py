"""Captum 0.9's private helpers of ``captum.influence._core.influence_function``: a
batch's total loss as a function of the model's flattened parameters (for Hessians and
Hessian-vector products over a dataset), per-example flattened gradients, and dataset
embeddings.

Re-exported under Captum's names by :mod:`whybox.influence._core.influence_function`.
"""

from collections.abc import Callable
from operator import add
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module
from torch.utils.data import DataLoader

from whybox._utils.gradient import _extract_parameters_from_layers
from whybox._utils.progress import progress
from whybox.influence._captum_batches import _dataset_fn
from whybox.influence._captum_losses import (
    _compute_batch_loss_influence_function_base,
    _compute_jacobian_sample_wise_grads_per_batch,
)
from whybox.influence._captum_params import _params_to_names
from whybox.influence._linalg import flatten_params, functional_call, unflatten_params_factory

__all__ = [
    "_basic_computation_naive_influence_function",
    "_compute_dataset_func",
    "_flatten_forward_factory",
    "_get_dataset_embeddings_intermediate_quantities_influence_function",
]


def _flatten_forward_factory(
    model: Module,
    loss_fn: Module | Callable | None,
    reduction_type: str,
    unflatten_fn: Callable,
    param_names: list[str],
) -> Callable[[Any], Callable[[Tensor], Tensor]]:
    """A factory: ``factory(batch)`` is the batch's total loss as a function of the
    flattened parameters named ``param_names``.

    Parameters
    ----------
    model : nn.Module
    loss_fn : nn.Module or callable or None
    reduction_type : str
        The loss's reduction (see :func:`_compute_batch_loss_influence_function_base`).
    unflatten_fn : callable
        Turns the 1D flattened parameters back into the tuple of parameter tensors.
    param_names : list of str
        The names of those parameters in ``model``.

    Returns
    -------
    callable
        ``factory(batch)`` -> ``flattened_forward(flattened_params)`` -> total loss; the
        batch's last element is its labels, the others the model's inputs.
    """

    def flatten_forward_factory_given_batch(batch: Any) -> Callable[[Tensor], Tensor]:
        def flattened_forward(flattened_params: Tensor) -> Tensor:
            features, labels = tuple(batch[0:-1]), batch[-1]
            params = dict(zip(param_names, unflatten_fn(flattened_params)))
            output = functional_call(model, params, features)
            return _compute_batch_loss_influence_function_base(
                loss_fn, output, labels, reduction_type
            )

        return flattened_forward

    return flatten_forward_factory_given_batch


def _compute_dataset_func(
    inputs_dataset: tuple[Tensor, ...] | DataLoader,
    model: Module,
    loss_fn: Module | Callable | None,
    reduction_type: str,
    layer_modules: list[Module] | None,
    f: Callable,
    show_progress: bool,
    **f_kwargs: Any,
) -> Any:
    """``f(flattened_forward, flattened_params, **f_kwargs)`` summed over the batches of
    ``inputs_dataset``, e.g. the dataset's Hessian with
    ``f = torch.autograd.functional.hessian``.

    Parameters
    ----------
    inputs_dataset : DataLoader or iterable of batches
    model : nn.Module
    loss_fn : nn.Module or callable or None
    reduction_type : str
    layer_modules : list of nn.Module, optional
        The layers whose parameters are the variables (all of ``model``'s if ``None``).
    f : callable
        A higher-order function of the batch loss and the flattened parameters.
    show_progress : bool
        Show the batches processed.
    **f_kwargs
        Passed on to ``f`` (e.g. the vector of a Hessian-vector product).

    Returns
    -------
    Any
        The sum over batches of ``f``'s results.
    """
    params = tuple(
        model.parameters()
        if layer_modules is None
        else _extract_parameters_from_layers(layer_modules)
    )
    factory = _flatten_forward_factory(
        model,
        loss_fn,
        reduction_type,
        unflatten_params_factory(tuple(p.shape for p in params)),
        _params_to_names(params, model),
    )
    flattened_params = flatten_params(params)

    def batch_f(batch: Any) -> Any:
        return f(factory(batch), flattened_params, **f_kwargs)

    batches: Any = inputs_dataset
    if show_progress:
        batches = progress(inputs_dataset, desc="processing `hessian_dataset` batch")
    return _dataset_fn(batches, batch_f, add)


def _get_dataset_embeddings_intermediate_quantities_influence_function(
    batch_embeddings_fn: Callable, inputs_dataset: DataLoader, aggregate: bool
) -> Tensor:
    """The embeddings of all examples ``(n, d)``, or with ``aggregate`` their sum as one
    row ``(1, d)``.

    Parameters
    ----------
    batch_embeddings_fn : callable
        ``batch_embeddings_fn(batch)`` -> the batch's ``(batch_size, d)`` embeddings.
    inputs_dataset : DataLoader or iterable of batches
    aggregate : bool

    Returns
    -------
    Tensor
        2D either way.
    """
    if not aggregate:
        return torch.cat([batch_embeddings_fn(batch) for batch in inputs_dataset], dim=0)
    batches = iter(inputs_dataset)
    total = torch.sum(batch_embeddings_fn(next(batches)), dim=0)
    for batch in batches:
        total += torch.sum(batch_embeddings_fn(batch), dim=0)
    return total.unsqueeze(0)


def _basic_computation_naive_influence_function(
    influence_inst: Any,
    inputs: tuple[Any, ...],
    targets: Tensor | None = None,
    loss_fn: Module | Callable | None = None,
    reduction_type: str | None = None,
) -> Tensor:
    """Per-example parameter gradients of a batch, flattened: ``(batch, n_params)``.

    Parameters
    ----------
    influence_inst : InfluenceFunctionBase
        Gives ``model``, ``layer_modules`` and ``sample_wise_grads_per_batch``.
    inputs : tuple
    targets : Tensor, optional
    loss_fn : nn.Module or callable, optional
    reduction_type : str, optional

    Returns
    -------
    Tensor
        Row ``i`` is example ``i``'s gradient over all differentiated parameters.
    """
    jacobians = _compute_jacobian_sample_wise_grads_per_batch(
        influence_inst, inputs, targets, loss_fn, reduction_type
    )
    rows = len(jacobians[0])
    return torch.cat([j.reshape(rows, -1) for j in jacobians], dim=1)
