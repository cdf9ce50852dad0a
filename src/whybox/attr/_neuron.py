"""Captum-compatible neuron methods over DeepLift, guided backpropagation, deconvolution
and conductance.

Each is the native method on :func:`whybox.core.scope.neuron_model` (the neuron is the
model's output; module rules still see the model's modules), except NeuronConductance,
whose native method takes the neuron itself. The neuron classes over gradients,
integrated gradients and GradientShap are in :mod:`whybox.attr._layer`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

from torch import nn

from whybox import methods as native

from ._adapter import MULTIPLY, Call, Spec, check, run
from ._base import GradientAttribution
from ._deeplift import deeplift_spec
from ._layer import NeuronAttribution, _Multiplying

__all__ = [
    "NeuronDeepLift",
    "NeuronDeepLiftShap",
    "NeuronGuidedBackprop",
    "NeuronDeconvolution",
    "NeuronConductance",
]


def _warn_callable_selector(call: Call) -> None:
    # Captum's warning, word for word
    if callable(call.arguments["neuron_selector"]):
        warnings.warn(
            "The neuron_selector provided is a callable. Please ensure that this function "
            "only selects neurons from the given layer; aggregating or performing other "
            "operations on the tensor may lead to inaccurate results.",
            UserWarning,
            stacklevel=4,  # the user's call: here, run, attribute
        )


class NeuronDeepLift(NeuronAttribution, GradientAttribution):
    """Captum-compatible NeuronDeepLift: DeepLift of one neuron of ``layer``, with
    Captum's rules."""

    _spec = deeplift_spec(neuron=True)

    def __init__(self, model: nn.Module, layer: nn.Module, multiply_by_inputs: bool = True):
        NeuronAttribution.__init__(self, model, layer)
        self.model = model
        self._multiply_by_inputs = multiply_by_inputs

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
        return run(self, self._spec, locals())


class NeuronDeepLiftShap(NeuronDeepLift):
    """Captum-compatible NeuronDeepLiftShap: NeuronDeepLift averaged over a baseline
    distribution ``(n_baselines, ...)`` (``n_baselines > 1``)."""

    _spec = deeplift_spec(shap=True, neuron=True)

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
        return run(self, self._spec, locals())


class _NeuronModifiedGradient(NeuronAttribution, GradientAttribution):
    _spec: ClassVar[Spec]

    def __init__(
        self, model: nn.Module, layer: nn.Module, device_ids: list[int] | None = None
    ) -> None:
        NeuronAttribution.__init__(self, model, layer, device_ids)
        self.model = model
        # Captum refuses a non-module here, in the constructor
        check(self, self._spec)

    def attribute(
        self,
        inputs: Any,
        neuron_selector: Any,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
    ) -> Any:
        """Modified gradients of the neuron, shaped like ``inputs``."""
        return run(self, self._spec, locals())


class NeuronGuidedBackprop(_NeuronModifiedGradient):
    """Captum-compatible NeuronGuidedBackprop: guided backpropagation of one neuron."""

    _spec = Spec(native.GuidedBackprop, neuron=True)

    @property
    def guided_backprop(self) -> Any:
        """Captum's inner ``GuidedBackprop`` over the same model (an attribute there)."""
        from ._guided import GuidedBackprop

        return GuidedBackprop(self.model)


class NeuronDeconvolution(_NeuronModifiedGradient):
    """Captum-compatible NeuronDeconvolution: deconvolution of one neuron."""

    _spec = Spec(native.Deconvolution, neuron=True)

    @property
    def deconv(self) -> Any:
        """Captum's inner ``Deconvolution`` over the same model (an attribute there)."""
        from ._guided import Deconvolution

        return Deconvolution(self.model)


class NeuronConductance(_Multiplying, NeuronAttribution, GradientAttribution):
    """Captum-compatible NeuronConductance (native: :class:`whybox.methods.NeuronConductance`).

    ``method="riemann_trapezoid"`` (the default, as in Captum) integrates with Captum 0.9's
    weights, which sum to ``(n_steps - 1) / n_steps``, so the numbers are Captum's (the
    native ``rule="riemann_trapezoid"`` is the textbook rule, exact on linear models).
    """

    _spec = Spec(
        native.NeuronConductance,
        init=MULTIPLY,
        layer=True,
        renames={
            "neuron_selector": "neuron",
            "attribute_to_neuron_input": "attribute_to_layer_input",
        },
        to_init=("attribute_to_layer_input",),
        before=_warn_callable_selector,
    )

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
        return run(self, self._spec, locals())
