"""Methods that only make sense with a layer: activations, Grad-CAM, internal influence,
conductance. Each is its own maths on the engine; the layer comes from the shared scope
(:class:`~whybox.core.scope.LayerSite`)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from whybox.core.call import completeness_delta
from whybox.core.forward import ChunkSize
from whybox.core.gradients import path_gradients, row_gradients, walk_path
from whybox.core.inputs import prepare_baselines
from whybox.core.method import Bool, Choice, Int
from whybox.core.paths import ALL_RULES, path_plan_tensors
from whybox.core.registry import register
from whybox.core.result import Explanation

from .base import Method

__all__ = [
    "LayerActivation",
    "GradCam",
    "InternalInfluence",
    "LayerConductance",
    "grad_cam_map",
]


class _LayerMethod(Method):
    """A method that requires ``layer`` (the template checks it belongs to the model)."""

    needs_layer = True
    parameters = {"n_steps": Int(minimum=1), "rule": Choice(ALL_RULES)}

    def __init__(self, model: Any, layer: Any, *, attribute_to_layer_input: bool = False) -> None:
        super().__init__(model, layer=layer, attribute_to_layer_input=attribute_to_layer_input)


@register("layer_activation")
class LayerActivation(_LayerMethod):
    """The layer's activations (outputs, or inputs with ``attribute_to_layer_input``)."""

    def attribute(
        self,
        inputs: Any,
        *,
        forward_args: Any = None,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Activations of the layer, shape ``(N, ...)`` per layer tensor."""
        scope = self._scope()
        call = scope.prepare(
            inputs, forward_args=forward_args, chunk_size=chunk_size, show_progress=show_progress
        )
        values = scope.activations(call)
        return scope.result(self, call, values)


@register("grad_cam")
class GradCam(_LayerMethod):
    """Grad-CAM (Selvaraju et al., 2017): channel weights = spatially averaged gradients.

    ``cam = sum_c mean_{spatial}(d y / d A_c) * A_c`` over the layer's channels (dim 1).
    """

    parameters = {"relu_attributions": Bool(), "attr_dim_summation": Bool()}

    def _empty_result(self, arguments):
        # a map per layer tensor: one channel when channels are summed
        if not arguments["attr_dim_summation"]:
            return super()._empty_result(arguments)
        scope = self._scope()
        call = scope.prepare(arguments["inputs"], forward_args=arguments.get("forward_args"))
        maps = [z.sum(dim=1, keepdim=True) for z in scope.zeros(call)]
        return scope.result(self, call, maps)

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        relu_attributions: bool = False,
        attr_dim_summation: bool = True,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Grad-CAM map per layer tensor: ``(N, 1, *spatial)`` (``(N, C, *spatial)`` without
        channel summation)."""
        scope = self._scope()
        call = scope.prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
        )
        activations: list[Tensor] = []
        grads, _ = row_gradients(call, tap=scope.tap, record=activations)
        maps = [
            grad_cam_map(grad, activation, relu=relu_attributions, sum_channels=attr_dim_summation)
            for grad, activation in zip(grads, activations)
        ]
        return scope.result(self, call, maps, parameters={"relu_attributions": relu_attributions})


def grad_cam_map(grad: Tensor, activation: Tensor, *, relu: bool, sum_channels: bool) -> Tensor:
    """Grad-CAM of one layer tensor: ``sum_c mean_{spatial}(grad_c) * activation_c``.

    Parameters
    ----------
    grad, activation : Tensor
        ``(N, C, *spatial)`` (or ``(N, C)``: the gradient is its own channel weight), the
        target's gradient with respect to the layer tensor and its values.
    relu : bool
        Keep the positive part of the map.
    sum_channels : bool
        Sum over the channels (dim 1), else keep one map per channel.

    Returns
    -------
    Tensor
        ``(N, 1, *spatial)``, or ``(N, C, *spatial)`` without ``sum_channels``.
    """
    weights = grad.mean(dim=tuple(range(2, grad.dim())), keepdim=True) if grad.dim() > 2 else grad
    cam = weights * activation
    if sum_channels:
        cam = cam.sum(dim=1, keepdim=True)
    return F.relu(cam) if relu else cam


def _path_setup(method: Method, inputs, baselines, target, forward_args, chunk_size, progress):
    # the path runs in input space (real-valued inputs); gradients are the layer's
    scope = method._scope()
    call = scope.prepare(
        inputs,
        target=target,
        forward_args=forward_args,
        chunk_size=chunk_size,
        show_progress=progress,
        float_inputs=True,
    )
    base = prepare_baselines(baselines, call.inputs, owner=method.owner).tensors
    return method.owner, scope, call, base


@register("internal_influence")
class InternalInfluence(_LayerMethod):
    """Integral of the layer's gradients along the straight input path (Leino et al., 2018)."""

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        n_steps: int = 50,
        rule: str = "gausslegendre",
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Layer-shaped ``(N, ...)`` influence of the layer on the target."""
        owner, scope, call, base = _path_setup(
            self, inputs, baselines, target, forward_args, chunk_size, show_progress
        )
        x0 = call.tensors[0]
        alphas, weights = path_plan_tensors(
            rule, n_steps, dtype=x0.dtype, device=x0.device, owner=owner
        )
        totals = path_gradients(call, base, call.tensors, alphas, weights, tap=scope.tap)
        return scope.result(self, call, totals, parameters={"n_steps": n_steps, "rule": rule})


@register("layer_conductance")
class LayerConductance(_LayerMethod):
    """Conductance of the layer's units (Dhamdhere et al., 2018).

    ``sum_s dF/dA(x_s) * (A(x_{s+1}) - A(x_s))`` over ``n_steps + 1`` path points ``x_s``;
    the units' conductances sum to ``F(x) - F(baseline)`` (up to the path discretisation).
    """

    has_delta = True

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        n_steps: int = 50,
        rule: str = "gausslegendre",
        chunk_size: ChunkSize = "auto",
        return_delta: bool = True,
        show_progress: bool = False,
    ) -> Explanation:
        """Layer-shaped ``(N, ...)`` conductance; ``delta`` against ``F(x) - F(baseline)``."""
        owner, scope, call, base = _path_setup(
            self, inputs, baselines, target, forward_args, chunk_size, show_progress
        )
        x0 = call.tensors[0]
        alphas, _ = path_plan_tensors(
            rule, n_steps + 1, dtype=x0.dtype, device=x0.device, owner=owner
        )
        last = len(alphas) - 1
        totals: list[Tensor] = []
        previous: list[Tensor] = []

        batch = call.batch_size

        # Rows are step-major, so row k's previous step is row k - N (in this chunk) or, for
        # the first N rows, the last gradient kept per example from the previous chunk.
        # Each row adds A_s * (grad_{s-1} - grad_s), dropping grad_{s-1} at s = 0 and grad_s
        # at the last point; summed over s this is sum_s grad_s * (A_{s+1} - A_s).
        def consume(steps: Tensor, examples: Tensor, grads, values) -> None:
            if not totals:
                for g in grads:
                    shape = (batch,) + tuple(g.shape[1:])
                    totals.append(torch.zeros(shape, dtype=g.dtype, device=g.device))
                    previous.append(torch.zeros(shape, dtype=g.dtype, device=g.device))
            rows = len(steps)
            carried = min(rows, batch)
            for total, prev, grad, value in zip(totals, previous, grads, values):
                view = (-1,) + (1,) * (grad.dim() - 1)
                before = torch.cat(
                    [prev.index_select(0, examples[:carried]), grad[: rows - carried]]
                )
                before = before * (steps > 0).to(grad.dtype).view(view)
                current = grad * (steps < last).to(grad.dtype).view(view)
                total.index_add_(0, examples, value * (before - current))
                prev.index_copy_(0, examples[rows - carried :], grad[rows - carried :])

        walk_path(call, base, call.tensors, alphas, consume, tap=scope.tap)
        delta = completeness_delta(call, totals, base) if return_delta else None
        return scope.result(
            self, call, totals, delta=delta, parameters={"n_steps": n_steps, "rule": rule}
        )
