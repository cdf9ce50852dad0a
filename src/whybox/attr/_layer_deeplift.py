"""Captum-compatible LayerDeepLift and LayerDeepLiftShap: the native DeepLift with a layer
scope (``DeepLift(model, layer=...)``) and Captum's rule set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ._adapter import run
from ._deeplift import DeepLift, DeepLiftShap, deeplift_spec
from ._layer import LayerAttribution

__all__ = ["LayerDeepLift", "LayerDeepLiftShap"]


class LayerDeepLift(LayerAttribution, DeepLift):
    """Captum-compatible LayerDeepLift: DeepLift multipliers at ``layer`` times
    ``layer(inputs) - layer(baselines)`` (native: ``DeepLift(model, layer=...)``).

    Parameters
    ----------
    model : nn.Module
    layer : nn.Module
        Attributions are shaped like its output (input with ``attribute_to_layer_input``).
    multiply_by_inputs : bool
        Multiply by the layer's value differences (global attribution).

    Notes
    -----
    Captum's quirks are reproduced (:class:`~whybox.attr._deeplift_rules.CaptumRules`),
    except one: attributing to the *input* of a layer that is itself a DeepLift nonlinearity
    (e.g. a ``ReLU``), Captum takes the plain gradient through that layer; whybox applies its
    Rescale multiplier (so completeness holds).
    """

    _spec = deeplift_spec(layer=True)

    def __init__(self, model: nn.Module, layer: nn.Module, multiply_by_inputs: bool = True):
        LayerAttribution.__init__(self, model, layer)
        DeepLift.__init__(self, model, multiply_by_inputs=multiply_by_inputs)

    def attribute(  # type: ignore[override]
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        custom_attribution_func: Callable[..., Any] | None = None,
        grad_kwargs: dict | None = None,
    ) -> Any:
        """Layer attributions, shaped like the layer's output (input): ``(N, ...)``; with
        ``return_convergence_delta=True`` also ``sum - (f(x) - f(b))`` of shape ``(N,)``."""
        return run(self, self._spec, locals())


class LayerDeepLiftShap(LayerDeepLift, DeepLiftShap):
    """Captum-compatible LayerDeepLiftShap: LayerDeepLift against every baseline of a
    distribution ``(n_baselines, ...)`` (``n_baselines > 1``), averaged."""

    _spec = deeplift_spec(shap=True, layer=True)

    def __init__(self, model: nn.Module, layer: nn.Module, multiply_by_inputs: bool = True):
        LayerDeepLift.__init__(self, model, layer, multiply_by_inputs)

    def attribute(  # type: ignore[override]
        self,
        inputs: Any,
        baselines: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        custom_attribution_func: Callable[..., Any] | None = None,
    ) -> Any:
        """Layer-shaped ``(N, ...)`` attributions (mean over baselines); the delta has one
        entry per (example, baseline) pair, ``(N * n_baselines,)``, example-major."""
        return run(self, self._spec, locals())
