"""Captum-compatible neuron methods over DeepLift, guided backpropagation, deconvolution
and conductance.

Each is the native method on :func:`whybox.core.scope.neuron_model` (the neuron is the
model's output; module rules still see the model's modules). The neuron classes over
gradients, integrated gradients and GradientShap are in :mod:`whybox.attr._layer`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from whybox.methods.deeplift import DeepLift as _NativeDeepLift
from whybox.methods.deeplift import DeepLiftShap as _NativeDeepLiftShap
from whybox.methods.guided import Deconvolution as _NativeDeconvolution
from whybox.methods.guided import GuidedBackprop as _NativeGuidedBackprop
from whybox.methods.neuron_conductance import NeuronConductance as _NativeNeuronConductance

from ._base import GradientAttribution, chunk_from_internal_batch_size
from ._deeplift import baselines_distribution
from ._deeplift_rules import CaptumRules
from ._layer import NeuronAttribution, _no_grad_kwargs

__all__ = [
    "NeuronDeepLift",
    "NeuronDeepLiftShap",
    "NeuronGuidedBackprop",
    "NeuronDeconvolution",
    "NeuronConductance",
]


class NeuronDeepLift(NeuronAttribution, GradientAttribution):
    """Captum-compatible NeuronDeepLift: DeepLift of one neuron of ``layer``, with
    Captum's rules."""

    _native: type = _NativeDeepLift

    def __init__(self, model: nn.Module, layer: nn.Module, multiply_by_inputs: bool = True):
        NeuronAttribution.__init__(self, model, layer)
        self.model = model
        self._multiply_by_inputs = multiply_by_inputs

    def _run(self, inputs, neuron_selector, baselines, args, to_input, custom) -> Any:
        # the user's model is checked (not the neuron wrapper), so errors describe it
        self._native(self.model)._validated()
        method = self._native(
            self._neuron(neuron_selector, to_input),
            multiply_by_inputs=self._multiply_by_inputs,
            rules=CaptumRules(),
        )
        return method.attribute(
            inputs,
            baselines=baselines,
            forward_args=args,
            return_delta=False,
            custom_attribution_func=custom,
        ).attributions

    def attribute(
        self,
        inputs: Any,
        neuron_selector: Any,
        baselines: Any = None,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
        custom_attribution_func: Callable[..., Any] | None = None,
    ) -> Any:
        """Attributions of the neuron, shaped like ``inputs``."""
        return self._run(
            inputs,
            neuron_selector,
            baselines,
            additional_forward_args,
            attribute_to_neuron_input,
            custom_attribution_func,
        )


class NeuronDeepLiftShap(NeuronDeepLift):
    """Captum-compatible NeuronDeepLiftShap: NeuronDeepLift averaged over a baseline
    distribution ``(n_baselines, ...)`` (``n_baselines > 1``)."""

    _native = _NativeDeepLiftShap

    def attribute(  # type: ignore[override]
        self,
        inputs: Any,
        neuron_selector: Any,
        baselines: Any,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
        custom_attribution_func: Callable[..., Any] | None = None,
    ) -> Any:
        """Attributions of the neuron, shaped like ``inputs`` (mean over baselines)."""
        return self._run(
            inputs,
            neuron_selector,
            baselines_distribution(baselines, inputs),
            additional_forward_args,
            attribute_to_neuron_input,
            custom_attribution_func,
        )


class _NeuronModifiedGradient(NeuronAttribution, GradientAttribution):
    _native: type

    def __init__(
        self, model: nn.Module, layer: nn.Module, device_ids: list[int] | None = None
    ) -> None:
        NeuronAttribution.__init__(self, model, layer, device_ids)
        self.model = model
        # Captum refuses a non-module here, in the constructor; so does the native check
        self._native(model)._validated()

    def attribute(
        self,
        inputs: Any,
        neuron_selector: Any,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
    ) -> Any:
        """Modified gradients of the neuron, shaped like ``inputs``."""
        model = self._neuron(neuron_selector, attribute_to_neuron_input)
        return (
            self._native(model).attribute(inputs, forward_args=additional_forward_args).attributions
        )


class NeuronGuidedBackprop(_NeuronModifiedGradient):
    """Captum-compatible NeuronGuidedBackprop: guided backpropagation of one neuron."""

    _native = _NativeGuidedBackprop


class NeuronDeconvolution(_NeuronModifiedGradient):
    """Captum-compatible NeuronDeconvolution: deconvolution of one neuron."""

    _native = _NativeDeconvolution


class NeuronConductance(NeuronAttribution, GradientAttribution):
    """Captum-compatible NeuronConductance (native: :class:`whybox.methods.NeuronConductance`).

    ``method="riemann_trapezoid"`` (the default, as in Captum) uses weights that sum to 1,
    unlike Captum 0.9, whose result is smaller by ``(n_steps - 1) / n_steps``.
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: nn.Module,
        device_ids: list[int] | None = None,
        multiply_by_inputs: bool = True,
    ) -> None:
        NeuronAttribution.__init__(self, forward_func, layer, device_ids)
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(
        self,
        inputs: Any,
        neuron_selector: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "riemann_trapezoid",
        internal_batch_size: int | None = None,
        attribute_to_neuron_input: bool = False,
        grad_kwargs: dict | None = None,
    ) -> Any:
        """Conductance through the neuron of every input feature, shaped like ``inputs``."""
        _no_grad_kwargs(type(self).__name__, grad_kwargs)
        if callable(neuron_selector):
            warnings.warn(
                "The neuron_selector provided is a callable. Please ensure that this function "
                "only selects neurons from the given layer; aggregating or performing other "
                "operations on the tensor may lead to inaccurate results.",
                UserWarning,
                stacklevel=2,
            )
        return (
            _NativeNeuronConductance(
                self.forward_func,
                self.layer,
                multiply_by_inputs=self._multiply_by_inputs,
                attribute_to_layer_input=attribute_to_neuron_input,
            )
            .attribute(
                inputs,
                neuron=neuron_selector,
                baselines=baselines,
                target=target,
                forward_args=additional_forward_args,
                n_steps=n_steps,
                rule=method,
                chunk_size=chunk_from_internal_batch_size(internal_batch_size),
            )
            .attributions
        )
