"""Captum-compatible LayerGradientShap: the native GradientShap with a layer scope."""

from __future__ import annotations

from typing import Any

from whybox import methods as native

from ._adapter import LAYER, MULTIPLY, Spec, run, with_delta
from ._base import GradientAttribution
from ._layer import LayerAttribution, _Multiplying

__all__ = ["LayerGradientShap"]


class LayerGradientShap(_Multiplying, LayerAttribution, GradientAttribution):
    """Captum-compatible LayerGradientShap (native: ``GradientShap(model, layer=...)``).

    Random draws use the global numpy / torch generators in Captum's order, so seeded code
    reproduces Captum's numbers. The inputs must be real-valued (random points between
    inputs and baselines are fed to the model), as in Captum.
    """

    _spec = Spec(
        native.GradientShap, init=MULTIPLY, captum_random=True, returns=with_delta, **LAYER
    )
    _has_delta = True

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
        return run(self, self._spec, locals())
