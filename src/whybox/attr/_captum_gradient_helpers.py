"""Layer-evaluation helpers of Captum's ``captum._utils.gradient`` that Captum-style code
imports: a layer's tensors recorded per device in one forward (the form a
``DataParallel`` model produces), their concatenation in batch order, and gradients of a
neuron of the layer with respect to the inputs.

The alias module ``whybox._utils.gradient`` re-exports them. whybox's own layer methods
record layers through :mod:`whybox.core.scope`; these helpers keep Captum's per-device
dictionaries for code written against them.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module

from whybox.attr._assertion_errors import fail_assert
from whybox.attr._captum_common_helpers import Selector, _verify_select_neuron
from whybox.attr._captum_utils import (
    _reduce_list,
    _run_forward,
    _sort_key_list,
    apply_gradient_requirements,
)

__all__: list[str] = []

#: per layer, per device, the layer's tensors recorded there
SavedLayers = dict[Module, dict[torch.device, tuple[Tensor, ...]]]


def _neuron_gradients(
    inputs: Tensor | tuple[Tensor, ...],
    saved_layer: dict[torch.device, tuple[Tensor, ...]],
    key_list: list[torch.device],
    gradient_neuron_selector: Selector,
) -> tuple[Tensor, ...]:
    """Gradients of the selected neuron with respect to ``inputs``, summed over devices.

    Parameters
    ----------
    inputs : Tensor or tuple of Tensor
        Tensors the layer's values depend on (requiring gradients).
    saved_layer : dict of torch.device to tuple of Tensor
        The layer's tensors per device, on the autograd graph.
    key_list : list of torch.device
        The devices to use.
    gradient_neuron_selector : int, tuple of int / slice, or callable
        See :func:`whybox.attr._captum_common_helpers._verify_select_neuron`.

    Returns
    -------
    tuple of Tensor
        One gradient per input.
    """
    with torch.autograd.set_grad_enabled(True):
        per_device = []
        for key in key_list:
            neuron = _verify_select_neuron(saved_layer[key], gradient_neuron_selector)
            # one value per example: each is differentiated on its own (summed gradients)
            outputs = torch.unbind(neuron) if neuron.numel() > 1 else neuron
            per_device.append(torch.autograd.grad(outputs, inputs))
        return _reduce_list(per_device, sum)


def _forward_layer_distributed_eval(
    forward_fn: Callable[..., Any],
    inputs: Any,
    layer: Module | list[Module],
    target_ind: Any = None,
    additional_forward_args: Any = None,
    attribute_to_layer_input: bool = False,
    forward_hook_with_return: bool = False,
    require_layer_grads: bool = False,
) -> SavedLayers | tuple[SavedLayers, Tensor]:
    """Run ``forward_fn`` once and record the tensors of ``layer`` per device.

    Parameters
    ----------
    forward_fn : callable
        The model or forward function.
    inputs : Any
        Its inputs.
    layer : nn.Module or list of nn.Module
    target_ind : int, tuple, Tensor or list, optional
        Applied to the forward's output (see :func:`_run_forward`).
    additional_forward_args : Any, optional
    attribute_to_layer_input : bool, default False
        Record the layer's inputs instead of its outputs.
    forward_hook_with_return : bool, default False
        Record the layer's own tensors and feed the rest of the model clones (so gradients
        of the output can be taken with respect to the recorded tensors), and also return
        the output. Otherwise the recorded tensors are clones.
    require_layer_grads : bool, default False
        Make the layer's tensors require gradients.

    Returns
    -------
    dict, or (dict, Tensor)
        ``{layer: {device: tensors}}``, and the output with ``forward_hook_with_return``.

    Raises
    ------
    AssertionError
        When no layer ran in the forward.
    """
    saved: SavedLayers = defaultdict(dict)
    lock = threading.Lock()  # a DataParallel model runs the hooks from several threads
    layers = [layer] if isinstance(layer, Module) else layer

    def recorder(original: Module) -> Callable[..., Any]:
        def hook(module: Module, inp: Any, out: Any = None) -> Any:
            values = inp if attribute_to_layer_input else out
            several = isinstance(values, (tuple, list))
            tensors = tuple(values) if several else (values,)
            if require_layer_grads:
                apply_gradient_requirements(tensors, warn=False)
            with lock:
                if not forward_hook_with_return:
                    saved[original][tensors[0].device] = tuple(t.clone() for t in tensors)
                    return None
                saved[original][tensors[0].device] = tensors
                clones = [t.clone() for t in tensors]
                if not several:
                    return clones[0]
                return clones if isinstance(values, list) else tuple(clones)

        return hook

    handles = []
    try:
        for single in layers:
            if attribute_to_layer_input:
                handles.append(single.register_forward_pre_hook(recorder(single)))
            else:
                handles.append(single.register_forward_hook(recorder(single)))
        output = _run_forward(
            forward_fn, inputs, target=target_ind, additional_forward_args=additional_forward_args
        )
    finally:
        for handle in handles:
            handle.remove()
    if not saved:
        fail_assert(
            "_forward_layer_distributed_eval", "layer", "a module that runs in the forward", layer
        )
    return (saved, output) if forward_hook_with_return else saved


def _gather_distributed_tensors(
    saved_layer: dict[torch.device, tuple[Tensor, ...]],
    device_ids: list[int] | None = None,
    key_list: list[torch.device] | None = None,
) -> tuple[Tensor, ...]:
    """A layer's per-device tensors concatenated along the batch, in ``key_list`` order
    (without it, the devices ordered as ``device_ids`` lists them; see
    :func:`_sort_key_list`)."""
    if key_list is None:
        key_list = _sort_key_list(list(saved_layer), device_ids)
    return _reduce_list([saved_layer[key] for key in key_list])


def _extract_device_ids(
    forward_fn: Callable[..., Any], saved_layer: SavedLayers, device_ids: list[int] | None
) -> list[int] | None:
    """The device order of the batch: ``device_ids`` when given, else (when some layer was
    recorded on several devices) the ``device_ids`` of ``forward_fn`` (a ``DataParallel``
    model).

    Raises
    ------
    AssertionError
        When tensors are on several devices and no device order is available.
    """
    several = max(len(per_device) for per_device in saved_layer.values()) > 1
    if not several or device_ids is not None:
        return device_ids
    found = getattr(forward_fn, "device_ids", None)
    if found is None:
        fail_assert(
            "_extract_device_ids",
            "forward_fn",
            "a model with a 'device_ids' attribute (such as DataParallel) when layer tensors "
            "are on several devices",
            forward_fn,
        )
    return found


def _forward_layer_eval_with_neuron_grads(
    forward_fn: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    layer: Module | list[Module],
    additional_forward_args: Any = None,
    gradient_neuron_selector: Selector | None = None,
    grad_enabled: bool = False,
    device_ids: list[int] | None = None,
    attribute_to_layer_input: bool = False,
) -> Any:
    """A layer's tensors in one forward, and with a neuron selector, the gradients of that
    neuron with respect to ``inputs``.

    Parameters
    ----------
    forward_fn : callable
    inputs : Tensor or tuple of Tensor
    layer : nn.Module or list of nn.Module
        A list only without ``gradient_neuron_selector``.
    additional_forward_args : Any, optional
    gradient_neuron_selector : int, tuple of int / slice, or callable, optional
    grad_enabled : bool, default False
        Run the forward with gradients on (always on with a neuron selector).
    device_ids : list of int, optional
        The device order of the batch for a model replicated over devices.
    attribute_to_layer_input : bool, default False

    Returns
    -------
    tuple of Tensor, list of tuple of Tensor, or (tuple of Tensor, tuple of Tensor)
        The layer's tensors (one tuple per layer for a list); with a neuron selector,
        ``(layer tensors, input gradients)``.

    Raises
    ------
    AssertionError
        With a neuron selector for a list of layers, or when no layer ran.
    """
    grad_enabled = grad_enabled or gradient_neuron_selector is not None
    with torch.autograd.set_grad_enabled(grad_enabled):
        saved = _forward_layer_distributed_eval(
            forward_fn,
            inputs,
            layer,
            additional_forward_args=additional_forward_args,
            attribute_to_layer_input=attribute_to_layer_input,
        )
    device_ids = _extract_device_ids(forward_fn, saved, device_ids)
    key_list = _sort_key_list(list(next(iter(saved.values()))), device_ids)
    if gradient_neuron_selector is None:
        if isinstance(layer, Module):
            return _gather_distributed_tensors(saved[layer], key_list=key_list)
        return [_gather_distributed_tensors(saved[one], key_list=key_list) for one in layer]
    if not isinstance(layer, Module):
        fail_assert(
            "_forward_layer_eval_with_neuron_grads",
            "layer",
            "a single module when gradient_neuron_selector is given",
            layer,
        )
    grads = _neuron_gradients(inputs, saved[layer], key_list, gradient_neuron_selector)
    return _gather_distributed_tensors(saved[layer], key_list=key_list), grads


def construct_neuron_grad_fn(
    layer: Module,
    neuron_selector: Selector,
    device_ids: list[int] | None = None,
    attribute_to_neuron_input: bool = False,
) -> Callable[..., tuple[Tensor, ...]]:
    """A gradient function ``grad_fn(forward_fn, inputs, target_ind=None,
    additional_forward_args=None)`` that returns the gradients of a neuron of ``layer``
    with respect to ``inputs`` (the target is ignored: the neuron is the output), for the
    ``gradient_func`` of a gradient method."""

    def grad_fn(
        forward_fn: Callable[..., Any],
        inputs: Tensor | tuple[Tensor, ...],
        target_ind: Any = None,
        additional_forward_args: Any = None,
    ) -> tuple[Tensor, ...]:
        _, grads = _forward_layer_eval_with_neuron_grads(
            forward_fn,
            inputs,
            layer,
            additional_forward_args,
            gradient_neuron_selector=neuron_selector,
            device_ids=device_ids,
            attribute_to_layer_input=attribute_to_neuron_input,
        )
        return grads

    return grad_fn
