"""Captum 0.9's ``_basic_computation_tracincp_fast``: the two factors of a TracInCPFast
gradient (the loss gradient at the last linear layer's output and that layer's input).

Re-exported under Captum's name by :mod:`whybox.influence._core.tracincp_fast_rand_proj`.
"""

import threading
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.nn import Module

from whybox._utils.common import _sort_key_list
from whybox._utils.gradient import _gather_distributed_tensors
from whybox.influence._utils.common import _jacobian_loss_wrt_inputs

__all__ = ["_basic_computation_tracincp_fast"]


def _basic_computation_tracincp_fast(
    influence_instance: Any,
    inputs: tuple[Any, ...],
    targets: Tensor,
    loss_fn: Module | Callable | None = None,
    reduction_type: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-example loss gradients at, and inputs of, the last linear layer.

    Parameters
    ----------
    influence_instance : TracInCPFast
        Gives ``model``, ``final_fc_layer`` (a module) and ``vectorize``.
    inputs : tuple
        ``model(*inputs)`` is the batch's output.
    targets : Tensor
        The batch's labels.
    loss_fn : nn.Module or callable
        Required: the loss applied to the model's output.
    reduction_type : str
        ``"sum"`` or ``"mean"``: how ``loss_fn`` reduces the batch.

    Returns
    -------
    input_jacobians : Tensor ``(batch, out_features)``
        Each example's loss gradient with respect to the layer's output.
    layer_inputs : Tensor ``(batch, in_features)``
        Each example's input to the layer (gathered over ``DataParallel`` devices).

    Raises
    ------
    AssertionError
        For a ``final_fc_layer`` that is not a module, no ``loss_fn``, or a
        ``reduction_type`` other than ``"sum"`` / ``"mean"``.
    """
    captured: dict[Any, Any] = {}
    lock = threading.Lock()  # DataParallel replicas run the hook from several threads

    def capture(_layer: Module, layer_input: Any, _output: Any) -> None:
        with lock:
            value = (
                tuple(x.detach() for x in layer_input)
                if isinstance(layer_input, tuple)
                else layer_input.detach()
            )
            captured[value[0].device] = value

    layer = influence_instance.final_fc_layer
    assert isinstance(layer, Module)
    handle = layer.register_forward_hook(capture)
    try:
        out = influence_instance.model(*inputs)
        assert loss_fn is not None, "loss function is required"
        assert reduction_type in ["sum", "mean"], 'reduction_type must be either "mean" or "sum"'
        input_jacobians = _jacobian_loss_wrt_inputs(
            loss_fn, out, targets, influence_instance.vectorize, reduction_type
        )
    finally:
        handle.remove()
    device_ids = getattr(influence_instance.model, "device_ids", None)
    keys = _sort_key_list(list(captured.keys()), device_ids)
    layer_inputs = _gather_distributed_tensors(captured, key_list=keys)[0]
    assert len(input_jacobians.shape) == 2
    return input_jacobians, layer_inputs
