"""Captum-compatible GuidedBackprop and Deconvolution: specs for
:mod:`whybox.methods.guided`."""

from __future__ import annotations

from typing import Any

from torch import nn

from whybox import methods as native

from ._adapter import Spec, check, run
from ._base import GradientAttribution, NoFuture

__all__ = ["GuidedBackprop", "Deconvolution", "ModifiedReluGradientAttribution"]

#: the native method of each backward rule: the gradient (guided backprop) or the
#: output's gradient (deconvolution) through each ReLU, made non-negative
_SPECS = {False: Spec(native.GuidedBackprop), True: Spec(native.Deconvolution)}


class ModifiedReluGradientAttribution(NoFuture, GradientAttribution):
    """Captum's base of :class:`GuidedBackprop` and :class:`Deconvolution`: gradients with
    every ``nn.ReLU``'s backward replaced by the ReLU of its input gradient, or with
    ``use_relu_grad_output`` of its output gradient (deconvolution).

    Parameters
    ----------
    model : nn.Module
    use_relu_grad_output : bool, default False
    """

    _spec: Spec = _SPECS[False]

    def __init__(self, model: nn.Module, use_relu_grad_output: bool = False) -> None:
        GradientAttribution.__init__(self, model)
        self.model = model
        # Captum's hook-handle list: whybox's hooks live only inside a call
        self.backward_hooks: list[Any] = []
        self.use_relu_grad_output = use_relu_grad_output
        self._spec = _SPECS[bool(use_relu_grad_output)]
        # Captum refuses a non-module here, in the constructor
        check(self, self._spec)

    def attribute(
        self, inputs: Any, target: Any = None, additional_forward_args: Any = None
    ) -> Any:
        """Modified gradients of the target, shaped like ``inputs``."""
        return run(self, self._spec, locals())


class GuidedBackprop(ModifiedReluGradientAttribution):
    """Captum-compatible Guided Backpropagation (backward of every ``nn.ReLU`` modified)."""

    _spec = _SPECS[False]

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, use_relu_grad_output=False)


class Deconvolution(ModifiedReluGradientAttribution):
    """Captum-compatible Deconvolution (backward of every ``nn.ReLU`` = ReLU of the gradient)."""

    _spec = _SPECS[True]

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, use_relu_grad_output=True)
