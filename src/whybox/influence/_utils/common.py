"""Alias of Captum 0.9's ``captum.influence._utils.common``: its public names, as whybox
objects, and the private helpers Captum-style code (and Captum's tests) import from it,
implemented by :mod:`whybox.influence._linalg` under Captum's underscore names (the loss
Jacobian :func:`_jacobian_loss_wrt_inputs` is defined here)."""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module

from whybox.influence._captum_batches import (
    _dataset_fn,
    _DatasetFromList,
    _format_inputs_dataset,
    _progress_bar_constructor,
    _self_influence_by_batches_helper,
)
from whybox.influence._captum_losses import (
    _check_loss_fn,
    _compute_batch_loss_influence_function_base,
    _compute_jacobian_sample_wise_grads_per_batch,
)
from whybox.influence._captum_params import (
    _del_attr,
    _model_make_functional,
    _model_reinsert_params,
    _parameter_add,
    _parameter_dot,
    _parameter_linear_combination,
    _parameter_multiply,
    _parameter_to,
    _params_to_names,
    _set_active_parameters,
    _set_attr,
)
from whybox.influence._captum_routing import (
    _influence_batch_intermediate_quantities_influence_function,
    _influence_helper_intermediate_quantities_influence_function,
    _influence_route_to_helpers,
    _self_influence_helper_intermediate_quantities_influence_function,
)
from whybox.influence._captum_scores import (
    _get_k_most_influential_helper,
    _gradient_dot_product,
    _tensor_batch_dot,
)
from whybox.influence._data import load_flexible_state_dict
from whybox.influence._linalg import custom_functional_call, functional_call
from whybox.influence._linalg import eig_sorted as _eig_helper
from whybox.influence._linalg import flatten_params as _flatten_params
from whybox.influence._linalg import top_eigen_general as _top_eigen
from whybox.influence._linalg import unflatten_params_factory as _unflatten_params_factory
from whybox.influence.base import KMostInfluentialResults

__all__ = [
    "KMostInfluentialResults",
    "_custom_functional_call",
    "_eig_helper",
    "_flatten_params",
    "_functional_call",
    "_jacobian_loss_wrt_inputs",
    "_load_flexible_state_dict",
    "_top_eigen",
    "_unflatten_params_factory",
    "_DatasetFromList",
    "_check_loss_fn",
    "_compute_batch_loss_influence_function_base",
    "_compute_jacobian_sample_wise_grads_per_batch",
    "_dataset_fn",
    "_del_attr",
    "_format_inputs_dataset",
    "_get_k_most_influential_helper",
    "_gradient_dot_product",
    "_influence_batch_intermediate_quantities_influence_function",
    "_influence_helper_intermediate_quantities_influence_function",
    "_influence_route_to_helpers",
    "_model_make_functional",
    "_model_reinsert_params",
    "_parameter_add",
    "_parameter_dot",
    "_parameter_linear_combination",
    "_parameter_multiply",
    "_parameter_to",
    "_params_to_names",
    "_progress_bar_constructor",
    "_self_influence_by_batches_helper",
    "_self_influence_helper_intermediate_quantities_influence_function",
    "_set_active_parameters",
    "_set_attr",
    "_tensor_batch_dot",
]


# defined (not just bound) under Captum's names: code that names tests or logs after a
# function's ``__name__`` (Captum's parameterized tests do) sees Captum's names
def _functional_call(model: Module, params: dict[str, Tensor], features: Any) -> Any:
    """Captum's name for :func:`whybox.influence._linalg.functional_call`."""
    return functional_call(model, params, features)


def _custom_functional_call(model: Module, params: dict[str, Tensor], features: Any) -> Any:
    """Captum's name for :func:`whybox.influence._linalg.custom_functional_call`."""
    return custom_functional_call(model, params, features)


def _jacobian_loss_wrt_inputs(
    loss_fn: Module | Callable[[Tensor, Tensor], Tensor],
    out: Tensor,
    targets: Tensor,
    vectorize: bool,
    reduction_type: str,
) -> Tensor:
    """The gradient of each example's loss with respect to its row of ``out``.

    ``loss_fn(out, targets)`` reduces the per-example losses of the batch to one value, by
    their sum or their mean (``reduction_type``); the derivative of that value with respect
    to ``out`` holds, row by row, each example's own loss gradient (scaled back by the
    number of rows for a mean). This is how TracInCP-style methods get per-example
    gradients at the model's output from one reduction loss.

    Parameters
    ----------
    loss_fn : nn.Module or callable
        The reduction loss, called as ``loss_fn(out, targets)``. A module with a
        ``reduction`` attribute must reduce as ``reduction_type`` says.
    out : Tensor ``(rows, ...)``
        The batch of loss inputs (typically the model's outputs).
    targets : Tensor
        The labels of the batch.
    vectorize : bool
        Accepted for Captum's signature; as in Captum it does not change the computation.
    reduction_type : str
        ``"sum"`` or ``"mean"``.

    Returns
    -------
    Tensor
        Shaped like ``out`` (for a scalar loss): row ``i`` is example ``i``'s gradient.

    Raises
    ------
    ValueError
        For a ``reduction_type`` other than ``"sum"`` / ``"mean"``.
    AssertionError
        When ``loss_fn.reduction`` differs from ``reduction_type``.
    """
    del vectorize
    if reduction_type not in ("sum", "mean"):
        # Captum's wording, which its tests compare
        raise ValueError(
            f"`{reduction_type}` is not a valid value for reduction_type. "
            "Must be either 'sum' or 'mean'."
        )
    if isinstance(loss_fn, Module) and hasattr(loss_fn, "reduction"):
        if loss_fn.reduction != reduction_type:
            # Captum's wording (with its missing space), which its tests compare
            raise AssertionError(
                f"loss_fn.reduction `{loss_fn.reduction}` does not match"
                f"reduction type `{reduction_type}`. Please ensure they are matching."
            )
    jacobian = torch.autograd.functional.jacobian(lambda rows: loss_fn(rows, targets), out)
    if reduction_type == "mean" and jacobian.dim() > 0:
        jacobian = jacobian * jacobian.shape[0]
    return jacobian


def _load_flexible_state_dict(model: Module, path: str) -> float:
    """Captum's name for :func:`whybox.influence._data.load_flexible_state_dict`: load a
    saved ``state_dict`` into ``model`` (``DataParallel`` prefixes matched either way) and
    return its ``"learning_rate"`` (1.0 if absent)."""
    return load_flexible_state_dict(model, path)
