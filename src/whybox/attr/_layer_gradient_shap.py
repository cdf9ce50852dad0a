"""Captum-compatible LayerGradientShap: the native GradientShap with a layer scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from whybox.core.randomness import GlobalRandom
from whybox.methods.gradient_shap import GradientShap as _NativeGradientShap

from ._base import GradientAttribution, captum_return
from ._layer import LayerAttribution

__all__ = ["LayerGradientShap"]


class LayerGradientShap(LayerAttribution, GradientAttribution):
    """Captum-compatible LayerGradientShap (native: ``GradientShap(model, layer=...)``).

    Random draws use the global numpy / torch generators in Captum's order, so seeded code
    reproduces Captum's numbers. The inputs must be real-valued (random points between
    inputs and baselines are fed to the model), as in Captum.
    """

    _has_delta = True

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: Any,
        device_ids: list[int] | None = None,
        multiply_by_inputs: bool = True,
    ) -> None:
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(
        self,
        inputs: Any,
        baselines: Any,
        n_samples: int = 5,
        stdevs: float | tuple[float, ...] = 0.0,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
    ) -> Any:
        """Layer-shaped ``(N, ...)`` attributions; the delta has one entry per draw,
        ``(N * n_samples,)``, example-major."""
        result = _NativeGradientShap(
            self.forward_func,
            multiply_by_inputs=self._multiply_by_inputs,
            layer=self.layer,
            attribute_to_layer_input=attribute_to_layer_input,
        ).attribute(
            inputs,
            baselines=baselines,
            n_samples=n_samples,
            stdevs=stdevs,
            target=target,
            forward_args=additional_forward_args,
            seed=GlobalRandom(),
            return_delta=return_convergence_delta,
        )
        return captum_return(result, return_convergence_delta)
