"""Captum-compatible DeepLift, DeepLiftShap, GuidedBackprop and Deconvolution.

Thin translations onto :mod:`whybox.methods.deeplift` and :mod:`whybox.methods.guided`.
DeepLift runs with ``variant="captum"`` so the numbers are Captum 0.9's, including where
Captum's hooks deviate from the textbook Rescale rule (see
:class:`whybox.methods.DeepLift`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from whybox.core.inputs import flatten
from whybox.core.validation import fail
from whybox.methods.deeplift import DeepLift as _NativeDeepLift
from whybox.methods.deeplift import DeepLiftShap as _NativeDeepLiftShap
from whybox.methods.guided import Deconvolution as _NativeDeconvolution
from whybox.methods.guided import GuidedBackprop as _NativeGuidedBackprop

from ._base import GradientAttribution, captum_return

__all__ = ["DeepLift", "DeepLiftShap", "GuidedBackprop", "Deconvolution"]


class DeepLift(GradientAttribution):
    """Captum-compatible DeepLift (Rescale rule).

    Parameters
    ----------
    model : nn.Module
    multiply_by_inputs : bool
        Multiply the multipliers by ``inputs - baselines`` (ignored with a
        ``custom_attribution_func``).
    eps : float
        Input differences below ``eps`` at a nonlinearity use its local gradient.
    """

    def __init__(
        self, model: nn.Module, multiply_by_inputs: bool = True, eps: float = 1e-10
    ) -> None:
        GradientAttribution.__init__(self, model)
        self.model = model
        self.eps = eps
        self._multiply_by_inputs = multiply_by_inputs

    _has_delta = True

    def attribute(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        custom_attribution_func: Callable[..., Any] | None = None,
    ) -> Any:
        """DeepLift attributions, shaped like ``inputs``; with
        ``return_convergence_delta=True`` also the delta, shape ``(N,)``."""
        result = _NativeDeepLift(
            self.model,
            multiply_by_inputs=self._multiply_by_inputs,
            eps=self.eps,
            variant="captum",
        ).attribute(
            inputs,
            baselines=baselines,
            target=target,
            forward_args=additional_forward_args,
            return_delta=return_convergence_delta,
            custom_attribution_func=custom_attribution_func,
        )
        return captum_return(result, return_convergence_delta)


class DeepLiftShap(DeepLift):
    """Captum-compatible DeepLiftShap: DeepLift against every baseline, averaged.

    ``baselines`` is a distribution: one tensor per input of shape ``(n_baselines, ...)``
    with ``n_baselines > 1`` (as Captum requires), or a callable returning it.
    """

    def __init__(self, model: nn.Module, multiply_by_inputs: bool = True) -> None:
        DeepLift.__init__(self, model, multiply_by_inputs=multiply_by_inputs)

    def attribute(  # type: ignore[override]
        self,
        inputs: Any,
        baselines: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        custom_attribution_func: Callable[..., Any] | None = None,
    ) -> Any:
        """Attributions shaped like ``inputs`` (mean over baselines); with
        ``return_convergence_delta=True`` also the delta of every (example, baseline) pair,
        shape ``(N * n_baselines,)``, example-major."""
        if callable(baselines):
            baselines = _call_baselines(baselines, inputs)
        _check_distribution(baselines)
        result = _NativeDeepLiftShap(
            self.model,
            multiply_by_inputs=self._multiply_by_inputs,
            eps=self.eps,
            variant="captum",
        ).attribute(
            inputs,
            baselines=baselines,
            target=target,
            forward_args=additional_forward_args,
            return_delta=return_convergence_delta,
            custom_attribution_func=custom_attribution_func,
        )
        return captum_return(result, return_convergence_delta)


def _call_baselines(factory: Callable[..., Any], inputs: Any) -> Any:
    # Captum's convention: the factory takes the inputs if it has a parameter.
    import inspect

    try:
        n_params = len(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        n_params = 1
    return factory(inputs) if n_params else factory()


def _check_distribution(baselines: Any) -> None:
    """Captum requires a tensor distribution with more than one baseline."""
    try:
        leaves, _ = flatten(baselines, owner="DeepLiftShap", name="baselines")
    except (TypeError, ValueError):
        leaves = ()
    if not leaves or not isinstance(leaves[0], torch.Tensor) or leaves[0].shape[0] < 2:
        fail(
            "DeepLiftShap",
            "baselines",
            "a tensor (or tuple of tensors) holding more than one baseline example; use "
            "DeepLift for a single baseline or scalars",
            baselines,
        )


class GuidedBackprop(GradientAttribution):
    """Captum-compatible Guided Backpropagation (backward of every ``nn.ReLU`` modified)."""

    def __init__(self, model: nn.Module) -> None:
        GradientAttribution.__init__(self, model)
        self.model = model
        self.use_relu_grad_output = False
        _check_module(type(self).__name__, model)

    def attribute(
        self, inputs: Any, target: Any = None, additional_forward_args: Any = None
    ) -> Any:
        """Guided gradients, shaped like ``inputs``."""
        result = _NativeGuidedBackprop(self.model).attribute(
            inputs, target=target, forward_args=additional_forward_args
        )
        return result.attributions


class Deconvolution(GradientAttribution):
    """Captum-compatible Deconvolution (backward of every ``nn.ReLU`` = ReLU of the gradient)."""

    def __init__(self, model: nn.Module) -> None:
        GradientAttribution.__init__(self, model)
        self.model = model
        self.use_relu_grad_output = True
        _check_module(type(self).__name__, model)

    def attribute(
        self, inputs: Any, target: Any = None, additional_forward_args: Any = None
    ) -> Any:
        """Deconvolution attributions, shaped like ``inputs``."""
        result = _NativeDeconvolution(self.model).attribute(
            inputs, target=target, forward_args=additional_forward_args
        )
        return result.attributions


def _check_module(owner: str, model: Any) -> None:
    # Captum checks this in the constructor; so do we (TypeError instead of AssertionError).
    if not isinstance(model, nn.Module):
        fail(
            owner,
            "model",
            "an nn.Module (the gradients of its nn.ReLU modules are replaced)",
            type(model).__name__,
            type_error=True,
            raw=True,
        )
