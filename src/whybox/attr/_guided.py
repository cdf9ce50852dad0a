"""Captum-compatible GuidedBackprop and Deconvolution: specs for
:mod:`whybox.methods.guided`."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from whybox import methods as native

from ._adapter import Spec, check, run
from ._base import GradientAttribution, NoFuture

__all__ = ["GuidedBackprop", "Deconvolution"]


class _ModifiedReluGradient(NoFuture, GradientAttribution):
    _spec: ClassVar[Spec]

    def __init__(self, model: nn.Module) -> None:
        GradientAttribution.__init__(self, model)
        self.model = model
        # Captum's hook-handle list: whybox's hooks live only inside a call
        self.backward_hooks: list[Any] = []
        # Captum refuses a non-module here, in the constructor
        check(self, self._spec)

    def attribute(
        self, inputs: Any, target: Any = None, additional_forward_args: Any = None
    ) -> Any:
        """Modified gradients of the target, shaped like ``inputs``."""
        return run(self, self._spec, locals())


class GuidedBackprop(_ModifiedReluGradient):
    """Captum-compatible Guided Backpropagation (backward of every ``nn.ReLU`` modified)."""

    _spec = Spec(native.GuidedBackprop)
    use_relu_grad_output = False


class Deconvolution(_ModifiedReluGradient):
    """Captum-compatible Deconvolution (backward of every ``nn.ReLU`` = ReLU of the gradient)."""

    _spec = Spec(native.Deconvolution)
    use_relu_grad_output = True
