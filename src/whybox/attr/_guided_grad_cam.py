"""Captum-compatible GuidedGradCam: a spec for :class:`whybox.methods.GuidedGradCam`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from whybox import methods as native
from whybox.core.result import Explanation
from whybox.methods.guided_grad_cam import INTERPOLATE_MODES

from ._adapter import LAYER, Call, Spec, check, run
from ._base import GradientAttribution
from ._guided import GuidedBackprop
from ._layer import LayerGradCam

__all__ = ["GuidedGradCam"]


def _known_mode(mode: Any) -> bool:
    return isinstance(mode, str) and mode in INTERPOLATE_MODES


def _mode_to_run(mode: Any, call: Call) -> Any:
    """The mode the native method runs with: an ``F.interpolate`` mode as it is; for any
    other value the attributions are computed with ``"nearest"`` and then dropped by
    :func:`_empty_where_unresized`, as Captum computes and then fails to interpolate."""
    return mode if _known_mode(mode) else "nearest"


def _empty_where_unresized(result: Explanation, call: Call) -> Any:
    """Captum's convention: an input the map could not be resized to gets an empty tensor,
    with a warning each (the native method, asked for ``unresizable="none"``, gives
    ``None``). An ``interpolate_mode`` that ``F.interpolate`` does not know resizes no
    input: every input gets an empty tensor, and the warning names the mode."""
    values = result.attributions
    many = isinstance(values, (tuple, list))
    items = (
        dict(values)
        if isinstance(values, Mapping)
        else dict(enumerate(values if many else [values]))
    )
    mode = call.arguments.get("interpolate_mode", "nearest")
    unknown = not _known_mode(mode)
    for key in [key for key, value in items.items() if value is None or unknown]:
        reason = (
            f" (interpolate_mode={mode!r} is not one of {sorted(INTERPOLATE_MODES)})"
            if unknown
            else ""
        )
        warnings.warn(
            "Couldn't appropriately interpolate GradCAM attributions for some input "
            f"tensors, returning empty tensor for corresponding attributions{reason}.",
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
    Captum; so does every input for an ``interpolate_mode`` that ``F.interpolate`` does not
    know (Captum's behaviour; the warning names the mode). The native
    :class:`whybox.methods.GuidedGradCam` raises a clear error for both.
    """

    _spec = Spec(
        native.GuidedGradCam,
        renames={"interpolate_mode": ("interpolate_mode", _mode_to_run)},
        fixed={"unresizable": "none"},
        returns=_empty_where_unresized,
        **LAYER,
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
