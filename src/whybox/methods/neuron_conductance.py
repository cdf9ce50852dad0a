"""Neuron conductance (Dhamdhere et al., "How Important Is a Neuron?", 2018).

The conductance of input feature ``i`` through neuron ``y`` of a layer, for the target ``F``:

    (x_i - b_i) * sum_s w_s * dF/dy(p_s) * dy/dx_i(p_s),    p_s = b + a_s (x - b)

i.e. Integrated Gradients of ``F`` restricted to the paths that pass through the neuron.
Both gradients are taken on the engine's straight path walk
(:func:`whybox.core.gradients.walk_path`): one walk with the layer tapped gives ``dF/dy`` per
path point (one number per row, kept), a second walk on the neuron model
(:func:`whybox.core.scope.neuron_model`, which stops at the layer) gives ``dy/dx``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from whybox.core.forward import ChunkSize
from whybox.core.gradients import walk_path
from whybox.core.inputs import prepare_baselines
from whybox.core.method import Choice, Int
from whybox.core.paths import RULES, path_plan_tensors
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.scope import select_neuron

from .base import Method

__all__ = ["NeuronConductance"]


@register("neuron_conductance")
class NeuronConductance(Method):
    """Conductance of each input feature through one neuron of ``layer``.

    Parameters
    ----------
    model : callable
        The model (any callable; the layer must run in its forward).
    layer : nn.Module
        The layer holding the neuron.
    multiply_by_inputs : bool
        Multiply by ``inputs - baselines`` (global attribution).
    attribute_to_layer_input : bool
        Select the neuron from the layer's input instead of its output.
    """

    needs_layer = True
    parameters = {"n_steps": Int(minimum=1), "rule": Choice(RULES)}

    def __init__(
        self,
        model: Any,
        layer: Any,
        *,
        multiply_by_inputs: bool = True,
        attribute_to_layer_input: bool = False,
    ) -> None:
        super().__init__(
            model,
            multiply_by_inputs=multiply_by_inputs,
            layer=layer,
            attribute_to_layer_input=attribute_to_layer_input,
        )

    def attribute(
        self,
        inputs: Any,
        *,
        neuron: Any,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        n_steps: int = 50,
        rule: str = "gausslegendre",
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Conductance of ``inputs`` through ``neuron`` for the target.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        neuron : the neuron: an index tuple into the layer (an int for 1-D layers), a tuple
            with slices (the block is summed) or a callable (see
            :func:`whybox.core.scope.select_neuron`)
        baselines : as :class:`~whybox.methods.IntegratedGradients`
        target : which model output to explain
        forward_args : extra model arguments
        n_steps, rule : integration points and rule (see :mod:`whybox.core.paths`; weights
            sum to 1)
        chunk_size : rows per forward/backward

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs``.
        """
        owner = self.owner
        # the layer, for dF/dy; the neuron as the model's output (fails for several layers)
        layer_scope = self._scope()
        neuron_scope = self._scope(neuron)
        call = layer_scope.prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            float_inputs=True,  # the path runs in input space
        )
        neuron_call = neuron_scope.prepare(
            inputs,
            forward_args=forward_args,
            chunk_size=call.chunk_rows,
            show_progress=show_progress,
        )
        base = prepare_baselines(baselines, call.inputs, owner=owner).tensors
        x0 = call.tensors[0]
        alphas, weights = path_plan_tensors(
            rule, n_steps, dtype=x0.dtype, device=x0.device, owner=owner
        )
        batch = call.batch_size
        # dF/dy at every path point: one number per (step, example)
        through = torch.zeros(len(alphas), batch, dtype=x0.dtype, device=x0.device)

        def keep_layer_gradient(steps: Tensor, examples: Tensor, grads, values) -> None:
            selected = select_neuron(grads, neuron, owner=owner).to(through.dtype)
            through.index_put_((steps, examples), selected)

        walk_path(call, base, call.tensors, alphas, keep_layer_gradient, tap=layer_scope.tap)

        totals = [torch.zeros_like(x) for x in call.tensors]

        def accumulate(steps: Tensor, examples: Tensor, grads, values) -> None:
            scale = through[steps, examples] * weights.index_select(0, steps)
            for total, grad in zip(totals, grads):
                weighted = grad * scale.to(grad.dtype).view((-1,) + (1,) * (grad.dim() - 1))
                total.index_add_(0, examples, weighted)

        walk_path(neuron_call, base, call.tensors, alphas, accumulate)
        leaves: tuple[Tensor, ...] = tuple(totals)
        if self.multiply_by_inputs:
            leaves = tuple((x - b) * t for x, b, t in zip(call.tensors, base, leaves))
        parameters = {"n_steps": n_steps, "rule": rule}
        return neuron_scope.result(self, call, leaves, parameters=parameters)
