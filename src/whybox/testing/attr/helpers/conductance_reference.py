"""A literal, slow conductance used as an oracle for ``LayerConductance`` in the tests.

This follows the original paper (https://arxiv.org/abs/1805.12233) step by step: it
computes the gradient of the output with respect to each hidden unit and, separately,
the gradient of every hidden unit with respect to the input, then combines them with
the chain rule. The library's ``LayerConductance`` skips the per-unit input gradients
(https://arxiv.org/abs/1807.09946), so agreement between the two is a real check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from whybox._utils.gradient import apply_gradient_requirements, undo_gradient_requirements
from whybox._utils.typing import ModuleOrModuleList
from whybox.attr._utils.approximation_methods import approximation_parameters
from whybox.attr._utils.attribution import LayerAttribution


def _reshape_and_sum(
    tensor_input: Tensor, num_steps: int, num_examples: int, layer_size: tuple[int, ...]
) -> Tensor:
    # rows are ordered (step, example); summing over steps completes the integral
    return torch.sum(tensor_input.reshape((num_steps, num_examples) + layer_size), dim=0)


class ConductanceReference(LayerAttribution):
    """Reference conductance of every unit of ``layer``, one unit at a time.

    Parameters
    ----------
    forward_func : callable
        The model, or any function of a single input tensor that returns its output.
    layer : Module
        The layer whose output units are attributed; the attributions have the shape
        of its output.
    """

    def __init__(self, forward_func: Callable[..., Tensor], layer: ModuleOrModuleList) -> None:
        super().__init__(forward_func, layer)

    def _conductance_grads(
        self,
        forward_fn: Callable[..., Tensor],
        input: Tensor,
        target_ind: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, int]:
        """Per-unit input gradients and output-to-layer gradients for ``input``.

        Parameters
        ----------
        forward_fn : callable
            Called on a batch of inputs.
        input : Tensor
            The batch, of shape ``(N, ...)``.
        target_ind : Tensor or int, optional
            The output column to differentiate.

        Returns
        -------
        tuple
            ``(input_grads, layer_grads, layer_units)``: ``input_grads`` has
            ``N * layer_units`` rows, row ``i * layer_units + k`` holding the gradient
            of unit ``k`` (flattened) of example ``i`` with respect to that example;
            ``layer_grads`` (``N`` rows) holds the gradient of the output with respect
            to the layer's output; ``layer_units`` is the number of units per example.
        """
        layer: nn.Module = self.layer
        with torch.autograd.set_grad_enabled(True):
            # a first pass, only to learn the layer's output shape (without the batch)
            layer_outputs: list[Tensor] = []

            def record_output(module: nn.Module, inp: Any, out: Tensor) -> None:
                layer_outputs.append(out)

            handle = layer.register_forward_hook(record_output)
            forward_fn(input)
            handle.remove()
            layer_size = tuple(layer_outputs[-1].size())[1:]
            layer_units = int(np.prod(layer_size))

            # In the second pass each example is repeated once per unit. The hook on the
            # layer's output keeps the true incoming gradient (d output / d layer) and
            # sends back a one-hot gradient instead: copy k of every example gets unit
            # k only, so the input gradient of copy k is d unit_k / d input.
            incoming_grads: list[Tensor] = []

            def one_hot_grads(grads: Tensor) -> Tensor:
                incoming_grads.append(grads)
                unit_ids = torch.arange(0, layer_units).view((1,) + layer_size)
                one_hot = torch.zeros((layer_units,) + layer_size).scatter(0, unit_ids, 1)
                repeats = [1] * one_hot.dim()
                repeats[0] = grads.shape[0] // one_hot.shape[0]
                return one_hot.repeat(repeats)

            tensor_hooks: list[RemovableHandle] = []

            def hook_layer_output(module: nn.Module, inp: Any, out: Tensor) -> None:
                tensor_hooks.append(out.register_hook(one_hot_grads))

            handle = layer.register_forward_hook(hook_layer_output)
            expanded_input = torch.repeat_interleave(input, layer_units, dim=0)
            output = forward_fn(expanded_input)
            handle.remove()
            if target_ind is not None:
                output = output[:, target_ind]
            input_grads = torch.autograd.grad(torch.unbind(output), expanded_input)
            for tensor_hook in tensor_hooks:
                tensor_hook.remove()

            # all copies of an example share d output / d layer: keep the first of each
            first_copies = torch.tensor(range(0, input_grads[0].shape[0], layer_units))
            layer_grads = torch.index_select(incoming_grads[-1], 0, first_copies)
        return input_grads[0], layer_grads, layer_units

    def attribute(
        self,
        inputs: Tensor,
        baselines: None | int | Tensor = None,
        target: Tensor | None = None,
        n_steps: int = 500,
        method: str = "riemann_trapezoid",
    ) -> Tensor:
        """Conductance of each unit of the layer, integrated from baseline to input.

        Parameters
        ----------
        inputs : Tensor
            The inputs, dimension 0 being the examples.
        baselines : Tensor or int, optional
            The baseline, broadcastable to ``inputs``; None means 0.
        target : Tensor or int, optional
            The output column (class) to attribute, for classifiers.
        n_steps : int, default 500
            Number of steps of the integral approximation.
        method : str, default "riemann_trapezoid"
            One of ``"riemann_right"``, ``"riemann_left"``, ``"riemann_middle"``,
            ``"riemann_trapezoid"`` or ``"gausslegendre"``.

        Returns
        -------
        Tensor
            The total conductance of every unit, of the layer output's shape.
        """
        if baselines is None:
            baselines = 0
        grad_required = apply_gradient_requirements((inputs,))
        step_sizes_func, alphas_func = approximation_parameters(method)
        step_sizes, alphas = step_sizes_func(n_steps), alphas_func(n_steps)

        # every point of the path, stacked step by step: row = step * N + example
        scaled_features = torch.cat(
            [baselines + alpha * (inputs - baselines) for alpha in alphas], dim=0
        )
        input_grads, layer_grads, hidden_units = self._conductance_grads(
            self.forward_func, scaled_features, target
        )

        # d unit / d input times (input - baseline), summed over the input's features:
        # how much each unit changes along each step of the path
        input_deltas = torch.repeat_interleave(inputs - baselines, hidden_units, dim=0)
        input_deltas = input_deltas.repeat(len(alphas), *([1] * (input_deltas.dim() - 1)))
        weighted_input_grads = input_grads * input_deltas
        unit_changes = torch.sum(
            weighted_input_grads, tuple(range(1, weighted_input_grads.dim()))
        ).view_as(layer_grads)

        # d output / d unit, weighted by each step's size
        step_weights = torch.tensor(step_sizes).view(n_steps, 1).to(layer_grads.device)
        weighted_layer_grads = layer_grads.contiguous().view(n_steps, -1) * step_weights

        undo_gradient_requirements((inputs,), grad_required)

        # chain rule, then the sum over steps
        return _reshape_and_sum(
            weighted_layer_grads.view(layer_grads.shape) * unit_changes,
            n_steps,
            inputs.shape[0],
            tuple(layer_grads.shape[1:]),
        )
