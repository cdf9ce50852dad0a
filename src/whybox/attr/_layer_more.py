"""Captum-compatible layer / neuron DeepLift, GradientShap, guided methods, conductance,
Guided Grad-CAM and LRP: the native methods with a layer or neuron scope.

* Layer scope: the native method with ``layer=`` (gradients tapped at the layer).
* Neuron scope: the native method on :func:`whybox.core.scope.neuron_model` (the neuron is
  the model's output; hook-based rules still see the model's modules).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from whybox.core.inputs import flatten
from whybox.core.randomness import GlobalRandom
from whybox.core.validation import fail
from whybox.methods.deeplift import DeepLift as _NativeDeepLift
from whybox.methods.deeplift import DeepLiftShap as _NativeDeepLiftShap
from whybox.methods.gradient_shap import GradientShap as _NativeGradientShap
from whybox.methods.guided import Deconvolution as _NativeDeconvolution
from whybox.methods.guided import GuidedBackprop as _NativeGuidedBackprop
from whybox.methods.layer import GradCam as _NativeGradCam
from whybox.methods.lrp import LRP as _NativeLRP
from whybox.methods.lrp import (
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    IdentityRule,
    PropagationRule,
    as_rule,
)
from whybox.methods.neuron_conductance import NeuronConductance as _NativeNeuronConductance

from ._base import GradientAttribution, captum_return, chunk_from_internal_batch_size
from ._deeplift import DeepLift, DeepLiftShap, GuidedBackprop, _call_baselines, _check_distribution
from ._layer import LayerAttribution, LayerGradCam, NeuronAttribution, _no_grad_kwargs

__all__ = [
    "LayerDeepLift",
    "LayerDeepLiftShap",
    "LayerGradientShap",
    "LayerLRP",
    "NeuronDeepLift",
    "NeuronDeepLiftShap",
    "NeuronGuidedBackprop",
    "NeuronDeconvolution",
    "NeuronConductance",
    "GuidedGradCam",
    "LRP",
    "PropagationRule",
    "EpsilonRule",
    "GammaRule",
    "Alpha1_Beta0_Rule",
    "IdentityRule",
]


def _check_module(owner: str, model: Any) -> None:
    # Captum requires an nn.Module here (rules / hooks go on its submodules)
    if not isinstance(model, nn.Module):
        fail(owner, "model", "an nn.Module", type(model).__name__, type_error=True, raw=True)


def _distribution(baselines: Any, inputs: Any) -> Any:
    """Captum's DeepLiftShap baselines: a factory is called, more than one baseline needed."""
    if callable(baselines) and not isinstance(baselines, Tensor):
        baselines = _call_baselines(baselines, inputs)
    _check_distribution(baselines)
    return baselines


# --------------------------------------------------------------------------------------------
# Layer scope
# --------------------------------------------------------------------------------------------


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
    Captum's quirks are reproduced (variant ``"captum"`` of the native DeepLift), except one:
    attributing to the *input* of a layer that is itself a DeepLift nonlinearity (e.g. a
    ``ReLU``), Captum takes the plain gradient through that layer; whybox applies its
    Rescale multiplier (so completeness holds).
    """

    def __init__(self, model: nn.Module, layer: nn.Module, multiply_by_inputs: bool = True):
        LayerAttribution.__init__(self, model, layer)
        DeepLift.__init__(self, model, multiply_by_inputs=multiply_by_inputs)

    def _native(self, cls: type, attribute_to_layer_input: bool) -> Any:
        return cls(
            self.model,
            multiply_by_inputs=self._multiply_by_inputs,
            eps=self.eps,
            variant="captum",
            layer=self.layer,
            attribute_to_layer_input=attribute_to_layer_input,
        )

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
        _no_grad_kwargs(type(self).__name__, grad_kwargs)
        result = self._native(_NativeDeepLift, attribute_to_layer_input).attribute(
            inputs,
            baselines=baselines,
            target=target,
            forward_args=additional_forward_args,
            return_delta=return_convergence_delta,
            custom_attribution_func=custom_attribution_func,
        )
        return captum_return(result, return_convergence_delta)


class LayerDeepLiftShap(LayerDeepLift, DeepLiftShap):
    """Captum-compatible LayerDeepLiftShap: LayerDeepLift against every baseline of a
    distribution ``(n_baselines, ...)`` (``n_baselines > 1``), averaged."""

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
        baselines = _distribution(baselines, inputs)
        result = self._native(_NativeDeepLiftShap, attribute_to_layer_input).attribute(
            inputs,
            baselines=baselines,
            target=target,
            forward_args=additional_forward_args,
            return_delta=return_convergence_delta,
            custom_attribution_func=custom_attribution_func,
        )
        return captum_return(result, return_convergence_delta)


class LayerGradientShap(LayerAttribution, GradientAttribution):
    """Captum-compatible LayerGradientShap (native: ``GradientShap(model, layer=...)``).

    Random draws use the global numpy / torch generators in Captum's order, so seeded code
    reproduces Captum's numbers. The inputs must be real-valued (random points between
    inputs and baselines are fed to the model), as in Captum.
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: Any,
        device_ids: list[int] | None = None,
        multiply_by_inputs: bool = True,
    ) -> None:
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        self._multiply_by_inputs = multiply_by_inputs

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


# --------------------------------------------------------------------------------------------
# Neuron scope
# --------------------------------------------------------------------------------------------


class NeuronDeepLift(NeuronAttribution, GradientAttribution):
    """Captum-compatible NeuronDeepLift: DeepLift of one neuron of ``layer``."""

    def __init__(self, model: nn.Module, layer: nn.Module, multiply_by_inputs: bool = True):
        NeuronAttribution.__init__(self, model, layer)
        self.model = model
        self._multiply_by_inputs = multiply_by_inputs

    def _run(self, cls: type, inputs, neuron_selector, baselines, args, to_input, custom) -> Any:
        _check_module(type(self).__name__, self.model)
        model = self._neuron(neuron_selector, to_input)
        return (
            cls(model, multiply_by_inputs=self._multiply_by_inputs, variant="captum")
            .attribute(
                inputs,
                baselines=baselines,
                forward_args=args,
                return_delta=False,
                custom_attribution_func=custom,
            )
            .attributions
        )

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
            _NativeDeepLift,
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
            _NativeDeepLiftShap,
            inputs,
            neuron_selector,
            _distribution(baselines, inputs),
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

    def attribute(
        self,
        inputs: Any,
        neuron_selector: Any,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
    ) -> Any:
        """Modified gradients of the neuron, shaped like ``inputs``."""
        _check_module(type(self).__name__, self.model)
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


# --------------------------------------------------------------------------------------------
# Guided Grad-CAM
# --------------------------------------------------------------------------------------------


class GuidedGradCam(GradientAttribution):
    """Captum-compatible Guided Grad-CAM: guided backpropagation times the Grad-CAM map of
    ``layer`` (ReLU applied), upsampled to each input's spatial size.

    Inputs whose shape the map cannot be resized to get an empty tensor and a warning, as in
    Captum.
    """

    def __init__(
        self, model: nn.Module, layer: nn.Module, device_ids: list[int] | None = None
    ) -> None:
        GradientAttribution.__init__(self, model)
        self.grad_cam = LayerGradCam(model, layer, device_ids)
        self.guided_backprop = GuidedBackprop(model)

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        interpolate_mode: str = "nearest",
        attribute_to_layer_input: bool = False,
    ) -> Any:
        """``(N, C, *spatial)`` per input: guided gradients times the upsampled map."""
        owner = type(self).__name__
        cam = (
            _NativeGradCam(
                self.forward_func,
                self.grad_cam.layer,
                attribute_to_layer_input=attribute_to_layer_input,
            )
            .attribute(
                inputs, target=target, forward_args=additional_forward_args, relu_attributions=True
            )
            .attributions
        )
        if isinstance(cam, (tuple, list)):
            if len(cam) != 1:
                fail(
                    owner,
                    "layer",
                    "a layer with a single input / output tensor",
                    self.grad_cam.layer,
                )
            cam = cam[0]
        guided = _NativeGuidedBackprop(self.forward_func).attribute(
            inputs, target=target, forward_args=additional_forward_args
        )
        leaves, structure = flatten(guided.attributions, owner=owner)
        inputs_leaves, _ = flatten(inputs, owner=owner)
        out = []
        for grad, x in zip(leaves, inputs_leaves):
            try:
                size = tuple(x.shape[2:])
                out.append(grad * LayerAttribution.interpolate(cam, size, interpolate_mode))
            except Exception:  # Captum's behaviour: warn, return an empty tensor for it
                warnings.warn(
                    "Couldn't appropriately interpolate GradCAM attributions for some input "
                    "tensors, returning empty tensor for corresponding attributions.",
                    UserWarning,
                    stacklevel=2,
                )
                out.append(torch.empty(0))
        return structure.rebuild(out)


# --------------------------------------------------------------------------------------------
# LRP
# --------------------------------------------------------------------------------------------


class LRP(GradientAttribution):
    """Captum-compatible Layer-wise Relevance Propagation (native: :class:`whybox.methods.
    lrp.LRP`).

    Rules per layer come from ``module.rule`` (whybox or Captum rule objects) or Captum's
    defaults; whybox also has defaults for ``Conv1d/3d``, average / adaptive pools,
    ``BatchNorm1d/3d``, elementwise activations and ``Flatten`` (Captum raises for these).
    The model is never modified (no rule attributes are added or removed).
    """

    def __init__(self, model: nn.Module) -> None:
        _check_module(type(self).__name__, model)
        GradientAttribution.__init__(self, model)
        self.model = model
        self._check_rules()

    def _check_rules(self) -> None:
        # Captum checks explicit rules when the object is built
        for module in self.model.modules():
            rule = getattr(module, "rule", None)
            if rule is not None:
                as_rule(rule, module, type(self).__name__)

    _has_delta = True

    @property
    def multiplies_by_inputs(self) -> bool:
        return True

    def _native(self, layer: Any = None, to_input: bool = False) -> _NativeLRP:
        return _NativeLRP(self.model, layer=layer, attribute_to_layer_input=to_input)

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        verbose: bool = False,
    ) -> Any:
        """Relevance shaped like ``inputs``; with ``return_convergence_delta=True`` also
        ``f(x) - sum(relevance)`` (Captum's sign), shape ``(N,)``."""
        result = self._native().attribute(
            inputs,
            target=target,
            forward_args=additional_forward_args,
            return_delta=return_convergence_delta,
            verbose=verbose,
        )
        if return_convergence_delta:
            return result.attributions, -result.delta
        return result.attributions

    def compute_convergence_delta(  # type: ignore[override]
        self, attributions: Tensor | tuple[Tensor, ...], output: Tensor
    ) -> Tensor:
        """``output - sum(attributions)`` per example, shape ``(N,)``."""
        leaves = (attributions,) if isinstance(attributions, Tensor) else tuple(attributions)
        batch = leaves[0].shape[0]
        total = sum(a.reshape(batch, -1).sum(dim=1) for a in leaves)
        return output.flatten() - total.flatten()


class LayerLRP(LRP, LayerAttribution):
    """Captum-compatible LayerLRP: the relevance at ``layer``'s output (or input)."""

    def __init__(self, model: nn.Module, layer: Any) -> None:
        LayerAttribution.__init__(self, model, layer)
        LRP.__init__(self, model)

    def attribute(  # type: ignore[override]
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        verbose: bool = False,
    ) -> Any:
        """Relevance shaped like the layer (a list for a list of layers); with
        ``return_convergence_delta=True`` also ``f(x) - sum(relevance)`` per example (a list
        per layer)."""
        result = self._native(self.layer, attribute_to_layer_input).attribute(
            inputs,
            target=target,
            forward_args=additional_forward_args,
            return_delta=return_convergence_delta,
            verbose=verbose,
        )
        if not return_convergence_delta:
            return result.attributions
        delta = result.delta
        delta = [-d for d in delta] if isinstance(delta, list) else -delta
        return result.attributions, delta
