"""Captum-compatible GuidedGradCam: a thin translation onto
:class:`whybox.methods.GuidedGradCam`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from whybox.methods.guided_grad_cam import GuidedGradCam as _NativeGuidedGradCam

from ._base import GradientAttribution
from ._guided import GuidedBackprop
from ._layer import LayerGradCam

__all__ = ["GuidedGradCam"]


def _empty_where_unresized(value: Any) -> Any:
    """Captum's convention: an input the map could not be resized to gets an empty tensor,
    with a warning (the native method gives ``None`` for it)."""
    if value is None:
        warnings.warn(
            "Couldn't appropriately interpolate GradCAM attributions for some input "
            "tensors, returning empty tensor for corresponding attributions.",
            UserWarning,
            stacklevel=3,
        )
        return torch.empty(0)
    if isinstance(value, Tensor):
        return value
    if isinstance(value, Mapping):
        return {key: _empty_where_unresized(item) for key, item in value.items()}
    return type(value)(_empty_where_unresized(item) for item in value)


class GuidedGradCam(GradientAttribution):
    """Captum-compatible Guided Grad-CAM: guided backpropagation times the Grad-CAM map of
    ``layer`` (ReLU applied), upsampled to each input's spatial size.

    Inputs whose shape the map cannot be resized to get an empty tensor and a warning, as in
    Captum. An ``interpolate_mode`` that ``F.interpolate`` does not know is a clear error
    (Captum warns and returns empty tensors for every input).
    """

    def __init__(
        self, model: nn.Module, layer: nn.Module, device_ids: list[int] | None = None
    ) -> None:
        GradientAttribution.__init__(self, model)
        self.grad_cam = LayerGradCam(model, layer, device_ids)
        self.guided_backprop = GuidedBackprop(model)

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        interpolate_mode: str = "nearest",
        attribute_to_layer_input: bool = False,
    ) -> Any:
        """``(N, C, *spatial)`` per input: guided gradients times the upsampled map."""
        result = _NativeGuidedGradCam(
            self.forward_func,
            self.grad_cam.layer,
            attribute_to_layer_input=attribute_to_layer_input,
        ).attribute(
            inputs,
            target=target,
            forward_args=additional_forward_args,
            interpolate_mode=interpolate_mode,
            unresizable="none",
        )
        return _empty_where_unresized(result.attributions)
