"""Captum-compatible GuidedGradCam: a spec for :class:`whybox.methods.GuidedGradCam`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from whybox import methods as native
from whybox.core.result import Explanation

from ._adapter import LAYER, Call, Spec, check, run
from ._base import GradientAttribution
from ._guided import GuidedBackprop
from ._layer import LayerGradCam

__all__ = ["GuidedGradCam"]


def _empty_where_unresized(result: Explanation, call: Call) -> Any:
    """Captum's convention: an input the map could not be resized to gets an empty tensor,
    with a warning each (the native method, asked for ``unresizable="none"``, gives
    ``None``)."""
    values = result.attributions
    many = isinstance(values, (tuple, list))
    items = (
        dict(values)
        if isinstance(values, Mapping)
        else dict(enumerate(values if many else [values]))
    )
    for key in [key for key, value in items.items() if value is None]:
        warnings.warn(
            "Couldn't appropriately interpolate GradCAM attributions for some input "
            "tensors, returning empty tensor for corresponding attributions.",
            UserWarning,
            stacklevel=4,  # the user's call: here, run, attribute
        )
        items[key] = torch.empty(0)
    if isinstance(values, Mapping):
        return items
    return type(values)(items.values()) if many else items[0]


class GuidedGradCam(GradientAttribution):
    """Captum-compatible Guided Grad-CAM: guided backpropagation times the Grad-CAM map of
    ``layer`` (ReLU applied), upsampled to each input's spatial size.

    Inputs whose shape the map cannot be resized to get an empty tensor and a warning, as in
    Captum. An ``interpolate_mode`` that ``F.interpolate`` does not know is a clear error
    (Captum warns and returns empty tensors for every input).
    """

    _spec = Spec(
        native.GuidedGradCam, fixed={"unresizable": "none"}, returns=_empty_where_unresized, **LAYER
    )

    def __init__(
        self, model: nn.Module, layer: nn.Module, device_ids: list[int] | None = None
    ) -> None:
        GradientAttribution.__init__(self, model)
        # the model is checked now, as guided backpropagation does, and named as ours
        check(self, GuidedBackprop._spec)
        # Captum's parts, as attributes
        self.grad_cam = LayerGradCam(model, layer, device_ids)
        self.guided_backprop = GuidedBackprop(model)

    @property
    def layer(self) -> nn.Module:
        """The Grad-CAM layer (``grad_cam.layer``)."""
        return self.grad_cam.layer

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        interpolate_mode: str = "nearest",
        attribute_to_layer_input: bool = False,
    ) -> Any:
        """``(N, C, *spatial)`` per input: guided gradients times the upsampled map."""
        return run(self, self._spec, locals())
