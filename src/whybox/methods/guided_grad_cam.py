"""Guided Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", 2017).

The guided-backpropagation gradients of each input, multiplied elementwise by the layer's
Grad-CAM map (ReLU applied) resized to the input's spatial size:

    guided_grad_cam(x) = guided_backprop(x) * resize(relu(sum_c mean(d y / d A_c) * A_c))

Both factors are what the native methods give (:class:`~whybox.methods.layer.GradCam`,
:class:`~whybox.methods.guided.GuidedBackprop`), from one forward and two backwards: the
layer's plain gradient, then the inputs' gradient with the guided ReLU rule switched on.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from whybox.core.forward import ChunkSize
from whybox.core.gradients import row_gradients
from whybox.core.hooks import module_rules
from whybox.core.method import Choice
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.validation import fail

from .base import Method
from .guided import Switch, relu_rule
from .layer import grad_cam_map

__all__ = ["GuidedGradCam", "INTERPOLATE_MODES"]

#: ``F.interpolate`` modes, and the numbers of spatial dimensions each accepts
INTERPOLATE_MODES: dict[str, tuple[int, ...]] = {
    "nearest": (1, 2, 3),
    "nearest-exact": (1, 2, 3),
    "area": (1, 2, 3),
    "linear": (1,),
    "bilinear": (2,),
    "bicubic": (2,),
    "trilinear": (3,),
}


def _resizable(cam: Tensor, x: Tensor, mode: str) -> bool:
    """Whether the ``(N, 1, *spatial)`` map can be resized to ``x``'s ``(N, C, *spatial)``."""
    n_spatial = cam.dim() - 2
    return x.dim() == cam.dim() and n_spatial in INTERPOLATE_MODES[mode]


@register("guided_grad_cam")
class GuidedGradCam(Method):
    """Guided backpropagation times the upsampled Grad-CAM map of ``layer``.

    Parameters
    ----------
    model : nn.Module
        The model; its ``nn.ReLU`` modules get the guided rule for the guided factor.
    layer : nn.Module
        A layer with one output tensor ``(N, C, *spatial)`` (one to three spatial
        dimensions), typically the last convolution.
    attribute_to_layer_input : bool
        Compute the Grad-CAM map on the layer's input instead of its output.
    """

    needs_module = True
    needs_layer = True
    parameters = {
        "interpolate_mode": Choice(tuple(INTERPOLATE_MODES)),
        "unresizable": Choice(("raise", "none")),
    }

    def __init__(
        self, model: nn.Module, layer: nn.Module, *, attribute_to_layer_input: bool = False
    ) -> None:
        super().__init__(
            model,
            multiply_by_inputs=False,
            layer=layer,
            attribute_to_layer_input=attribute_to_layer_input,
        )

    def _is_empty_batch(self, arguments: Mapping[str, Any]) -> bool:
        # no short cut for N = 0: both factors return their empty results, and the product
        # is then shaped like the inputs (the template's default would be the layer's shape)
        return False

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        interpolate_mode: str = "nearest",
        unresizable: str = "raise",
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Guided Grad-CAM attributions of the target.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, C, *spatial)``
        target : which output to explain (see :mod:`whybox.core.targets`)
        forward_args : extra model arguments
        interpolate_mode : how the map is resized (an ``F.interpolate`` mode:
            ``"nearest"``, ``"bilinear"``, ...)
        unresizable : what to do with an input the map cannot be resized to (another number
            of spatial dimensions than the layer, or a mode that does not fit them):
            ``"raise"`` a clear error, or ``"none"``: its attribution is ``None``
        chunk_size : rows per forward/backward (``"auto"`` picks for throughput)

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (``(0, ...)`` for an empty batch), in
            the inputs' dtype; no delta. ``extras["cam"]``: the ``(N, 1, *layer spatial)``
            Grad-CAM map.
        """
        owner = self.owner
        scope = self._scope()
        # the guided factor is a gradient with respect to the inputs: real-valued inputs
        call = scope.prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            float_inputs=True,
        )
        # One forward, two backwards per chunk: the layer's gradient with the ReLU rules
        # off (Grad-CAM's plain gradient), then the inputs' with them on (guided
        # backpropagation). Each factor is what its own method gives, without a second
        # forward.
        switch = Switch(on=False)
        activations: list[Tensor] = []
        with module_rules(self.model, {nn.ReLU: relu_rule("guided", switch)}) as matched:
            if not matched:
                warnings.warn(
                    f"{owner} found no nn.ReLU module in the model, so its guided factor is "
                    "the plain gradient; ReLUs called as functions (torch.relu, F.relu) are "
                    "not modified.",
                    UserWarning,
                    stacklevel=2,
                )
            grads, _ = row_gradients(
                call, tap=scope.tap, record=activations, input_pass=switch.turned_on
            )
        if len(activations) != 1:
            fail(owner, "layer", "a layer with a single input / output tensor", self.layer)
        cam = grad_cam_map(grads[0], activations[0], relu=True, sum_channels=True)
        leaves = grads[1:]
        out: list[Tensor | None] = []
        for index, grad in enumerate(leaves):
            if _resizable(cam, grad, interpolate_mode):
                size = tuple(grad.shape[2:])
                out.append(grad * F.interpolate(cam, size=size, mode=interpolate_mode))
                continue
            if unresizable == "raise":
                fail(
                    owner,
                    "inputs",
                    f"tensors (N, C, *spatial) with the layer map's {cam.dim() - 2} spatial "
                    f"dimension(s), which interpolate_mode={interpolate_mode!r} can resize "
                    "the map to (or pass unresizable='none')",
                    f"input {index} of shape {tuple(grad.shape)}",
                    raw=True,
                )
            out.append(None)
        return Explanation(
            attributions=call.inputs.restore(out),
            inputs=call.inputs.restore(call.inputs.tensors),
            target=target,
            method=self.name,
            parameters={"layer": str(self.layer), "interpolate_mode": interpolate_mode},
            extras={"cam": cam},
        )
