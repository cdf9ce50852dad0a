"""Neuron conductance (Dhamdhere et al., "How Important Is a Neuron?", 2018).

The conductance of input feature ``i`` through neuron ``y`` of a layer, for the target ``F``:

    (x_i - b_i) * sum_s w_s * dF/dy(p_s) * dy/dx_i(p_s),    p_s = b + a_s (x - b)

i.e. Integrated Gradients of ``F`` restricted to the paths that pass through the neuron.
Both gradients come from ONE forward per chunk of the engine's straight path walk
(:func:`whybox.core.gradients.walk_path`), as in Captum: a first backward from ``F`` to the
tapped layer gives ``dF/dy`` (one number per row), a second one from the neuron ``y`` to the
inputs, seeded with that number, gives ``dF/dy * dy/dx`` directly. Paths from the inputs to
``F`` that bypass the layer (skip connections) do not count: the second backward starts at
the neuron.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from whybox.core.forward import _AUTOGRAD_OPTIONS, ChunkSize, Evaluator, RowBatch
from whybox.core.gradients import walk_path
from whybox.core.inputs import prepare_baselines
from whybox.core.method import Choice, Int
from whybox.core.paths import ALL_RULES, path_plan_tensors
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
    parameters = {"n_steps": Int(minimum=1), "rule": Choice(ALL_RULES)}

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
        layer_scope = self._scope()
        # the neuron scope checks the neuron's layer (one module of the model) and shapes
        # the result; its model (the neuron as output) is not run
        neuron_scope = self._scope(neuron)
        call = layer_scope.prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            float_inputs=True,  # the path runs in input space
        )
        base = prepare_baselines(baselines, call.inputs, owner=owner).tensors
        x0 = call.tensors[0]
        alphas, weights = path_plan_tensors(
            rule, n_steps, dtype=x0.dtype, device=x0.device, owner=owner
        )
        through = _ThroughNeuron(call.evaluator, layer_scope.tap, neuron)
        totals = [torch.zeros_like(x) for x in call.tensors]

        def accumulate(steps: Tensor, examples: Tensor, grads, values) -> None:
            # grads are dF/dy * dy/dx per row already: only the rule's weight is missing
            scale = weights.index_select(0, steps)
            for total, grad in zip(totals, grads):
                weighted = grad * scale.to(grad.dtype).view((-1,) + (1,) * (grad.dim() - 1))
                total.index_add_(0, examples, weighted)

        walk_path(replace(call, evaluator=through), base, call.tensors, alphas, accumulate)
        leaves: tuple[Tensor, ...] = tuple(totals)
        if self.multiply_by_inputs:
            leaves = tuple((x - b) * t for x, b, t in zip(call.tensors, base, leaves))
        parameters = {"n_steps": n_steps, "rule": rule}
        return neuron_scope.result(self, call, leaves, parameters=parameters)


class _ThroughNeuron(Evaluator):
    """The call's evaluator, with gradients that pass through one neuron of a layer.

    :meth:`gradients` of a chunk runs the model once with the layer tapped, takes
    ``g = dF/dy`` (``F`` the target, ``y`` the layer's tensors) and returns, per float
    input, the gradient of the neuron ``n(y)`` seeded with ``n(g)``: ``n(g) * dn/dx`` per row.
    A callable selector that aggregates the batch gives one seed for the chunk.

    Parameters
    ----------
    base : Evaluator
        The call's evaluator: its model, input structure, extra arguments and target.
    tap : callable
        The layer scope's checked capture of the layer (a fresh context per forward).
    neuron : index tuple, tuple with slices, or callable
        The neuron, as :func:`whybox.core.scope.select_neuron` takes it.
    """

    def __init__(
        self, base: Evaluator, tap: Callable[[], AbstractContextManager], neuron: Any
    ) -> None:
        super().__init__(
            base.forward_func,
            base.structure,
            base.extra,
            base.target,
            owner=base.owner,
            # a row costs one forward and two partial backwards: its own chunk measurements
            signature=("through_neuron", base.signature),
        )
        self._tap = tap
        self._neuron = neuron

    def gradients(
        self,
        rows: RowBatch,
        *,
        tap: Callable[[], AbstractContextManager] | None = None,
        on_graph: Callable[[Tensor], None] | None = None,
        input_pass: Callable[[], AbstractContextManager] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Selected outputs ``(rows,)`` and ``n(dF/dy) * dn/dx`` per input, ``(rows, ...)``.

        ``tap`` and ``input_pass`` are the walk's (always ``None`` here): the layer tap is
        this evaluator's own.
        """
        owner = self.owner
        with torch.enable_grad():
            leaves = tuple(
                t.detach().requires_grad_(True) if t.is_floating_point() else t for t in rows.inputs
            )
            rows = RowBatch(leaves, rows.example_index)
            with self._tap() as captured:
                selected = self.target.select(self.raw_output(rows), rows.example_index)
            if on_graph is not None:
                on_graph(selected)
            # dF/dy, keeping the graph below the layer for the second backward
            layer_grads = self._tapped_gradients(selected, captured, retain=True)
            seed = select_neuron(layer_grads, self._neuron, owner=owner)
            value = select_neuron(tuple(captured.tensors), self._neuron, owner=owner)
            wrt = tuple(t for t in leaves if t.requires_grad)
            grads = torch.autograd.grad(
                (value,),
                wrt,
                grad_outputs=(seed.to(value.dtype),),
                **{
                    "allow_unused": True,
                    "materialize_grads": True,
                    **(_AUTOGRAD_OPTIONS.get() or {}),
                },
            )
        return selected.detach(), tuple(grads)
