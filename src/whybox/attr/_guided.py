"""Captum-compatible GuidedBackprop and Deconvolution: thin translations onto
:mod:`whybox.methods.guided`."""

from __future__ import annotations

from typing import Any

from torch import nn

from whybox.methods.guided import Deconvolution as _NativeDeconvolution
from whybox.methods.guided import GuidedBackprop as _NativeGuidedBackprop

from ._base import GradientAttribution

__all__ = ["GuidedBackprop", "Deconvolution"]


class _ModifiedReluGradient(GradientAttribution):
    _native: type

    def __init__(self, model: nn.Module) -> None:
        GradientAttribution.__init__(self, model)
        self.model = model
        # Captum refuses a non-module here, in the constructor; so does the native check
        self._native(model)._validated()

    def attribute(
        self, inputs: Any, target: Any = None, additional_forward_args: Any = None
    ) -> Any:
        """Modified gradients of the target, shaped like ``inputs``."""
        result = self._native(self.model).attribute(
            inputs, target=target, forward_args=additional_forward_args
        )
        return result.attributions


class GuidedBackprop(_ModifiedReluGradient):
    """Captum-compatible Guided Backpropagation (backward of every ``nn.ReLU`` modified)."""

    _native = _NativeGuidedBackprop
    use_relu_grad_output = False


class Deconvolution(_ModifiedReluGradient):
    """Captum-compatible Deconvolution (backward of every ``nn.ReLU`` = ReLU of the gradient)."""

    _native = _NativeDeconvolution
    use_relu_grad_output = True
