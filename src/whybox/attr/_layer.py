"""Captum-compatible layer and neuron methods: the native methods with a layer / neuron scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whybox import methods as native
from whybox.core.randomness import GlobalRandom
from whybox.core.scope import neuron_model
from whybox.core.validation import fail

from ._base import Attribution, GradientAttribution, captum_return, chunk_from_internal_batch_size

__all__ = [
    "LayerAttribution",
    "NeuronAttribution",
    "LayerIntegratedGradients",
    "LayerConductance",
    "InternalInfluence",
    "LayerActivation",
    "LayerGradientXActivation",
    "LayerGradCam",
    "NeuronGradient",
    "NeuronIntegratedGradients",
    "NeuronGradientShap",
    "TokenReferenceBase",
]


def _no_grad_kwargs(owner: str, grad_kwargs: Any) -> None:
    # whybox takes plain first-order gradients; refusing beats silently ignoring options.
    if grad_kwargs:
        fail(
            owner,
            "grad_kwargs",
            "None or empty (custom autograd options are not supported)",
            grad_kwargs,
        )


class LayerAttribution(Attribution):
    """Captum's base for layer methods: holds ``forward_func`` and ``layer``.

    ``device_ids`` (for ``DataParallel`` models in Captum) is accepted and unused: hooks
    here see every replica's outputs directly.
    """

    def __init__(
        self, forward_func: Callable[..., Tensor], layer: Any, device_ids: list[int] | None = None
    ) -> None:
        super().__init__(forward_func)
        self.layer = layer
        self.device_ids = device_ids

    @staticmethod
    def interpolate(
        layer_attribution: Tensor,
        interpolate_dims: int | tuple[int, ...],
        interpolate_mode: str = "nearest",
    ) -> Tensor:
        """Resize a 3-D, 4-D or 5-D layer attribution ``(N, C, *spatial)`` to
        ``interpolate_dims`` (e.g. the input's spatial size) with ``F.interpolate``."""
        if not isinstance(layer_attribution, Tensor) or not 3 <= layer_attribution.dim() <= 5:
            fail(
                "LayerAttribution.interpolate",
                "layer_attribution",
                "a 3-D, 4-D or 5-D tensor (N, C, *spatial)",
                layer_attribution,
            )
        size = (
            tuple(interpolate_dims)
            if isinstance(interpolate_dims, (tuple, list, torch.Size))
            else interpolate_dims
        )
        return F.interpolate(layer_attribution, size=size, mode=interpolate_mode)


class NeuronAttribution(Attribution):
    """Captum's base for neuron methods: holds ``forward_func`` and ``layer``."""

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: nn.Module,
        device_ids: list[int] | None = None,
    ) -> None:
        super().__init__(forward_func)
        self.layer = layer
        self.device_ids = device_ids

    def _neuron(self, neuron_selector: Any, attribute_to_neuron_input: bool) -> Any:
        return neuron_model(
            self.forward_func,
            self.layer,
            neuron_selector,
            to_input=attribute_to_neuron_input,
            owner=type(self).__name__,
        )


class LayerIntegratedGradients(LayerAttribution, GradientAttribution):
    """Captum-compatible Layer Integrated Gradients (native: ``IntegratedGradients(model,
    layer=...)``). Baselines are input-level (e.g. reference token ids)."""

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
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        grad_kwargs: dict | None = None,
    ) -> Any:
        _no_grad_kwargs(type(self).__name__, grad_kwargs)
        result = native.IntegratedGradients(
            self.forward_func,
            multiply_by_inputs=self._multiply_by_inputs,
            layer=self.layer,
            attribute_to_layer_input=attribute_to_layer_input,
        ).attribute(
            inputs,
            baselines=baselines,
            target=target,
            forward_args=additional_forward_args,
            n_steps=n_steps,
            rule=method,
            chunk_size=chunk_from_internal_batch_size(internal_batch_size),
            return_delta=return_convergence_delta,
        )
        return captum_return(result, return_convergence_delta)


class LayerConductance(LayerAttribution, GradientAttribution):
    """Captum-compatible LayerConductance."""

    _has_delta = True

    @property
    def multiplies_by_inputs(self) -> bool:
        return True

    def attribute(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        grad_kwargs: dict | None = None,
    ) -> Any:
        _no_grad_kwargs(type(self).__name__, grad_kwargs)
        result = native.LayerConductance(
            self.forward_func, self.layer, attribute_to_layer_input=attribute_to_layer_input
        ).attribute(
            inputs,
            baselines=baselines,
            target=target,
            forward_args=additional_forward_args,
            n_steps=n_steps,
            rule=method,
            chunk_size=chunk_from_internal_batch_size(internal_batch_size),
            return_delta=return_convergence_delta,
        )
        return captum_return(result, return_convergence_delta)


class InternalInfluence(LayerAttribution, GradientAttribution):
    """Captum-compatible InternalInfluence."""

    def attribute(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        attribute_to_layer_input: bool = False,
        grad_kwargs: dict | None = None,
    ) -> Any:
        _no_grad_kwargs(type(self).__name__, grad_kwargs)
        return (
            native.InternalInfluence(
                self.forward_func, self.layer, attribute_to_layer_input=attribute_to_layer_input
            )
            .attribute(
                inputs,
                baselines=baselines,
                target=target,
                forward_args=additional_forward_args,
                n_steps=n_steps,
                rule=method,
                chunk_size=chunk_from_internal_batch_size(internal_batch_size),
            )
            .attributions
        )


class LayerActivation(LayerAttribution):
    """Captum-compatible LayerActivation."""

    def attribute(
        self,
        inputs: Any,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
    ) -> Any:
        return (
            native.LayerActivation(
                self.forward_func, self.layer, attribute_to_layer_input=attribute_to_layer_input
            )
            .attribute(inputs, forward_args=additional_forward_args)
            .attributions
        )


class LayerGradientXActivation(LayerAttribution, GradientAttribution):
    """Captum-compatible LayerGradientXActivation (``memory_efficient`` is accepted; whybox
    always takes activations and gradients from the same chunked forward)."""

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: Any,
        device_ids: list[int] | None = None,
        multiply_by_inputs: bool = True,
        memory_efficient: bool = False,
    ) -> None:
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        self._multiply_by_inputs = multiply_by_inputs
        self.memory_efficient = memory_efficient

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        grad_kwargs: dict | None = None,
    ) -> Any:
        _no_grad_kwargs(type(self).__name__, grad_kwargs)
        return (
            native.InputXGradient(
                self.forward_func,
                layer=self.layer,
                attribute_to_layer_input=attribute_to_layer_input,
                multiply_by_inputs=self._multiply_by_inputs,
            )
            .attribute(inputs, target=target, forward_args=additional_forward_args)
            .attributions
        )


class LayerGradCam(LayerAttribution, GradientAttribution):
    """Captum-compatible LayerGradCam."""

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = False,
        attr_dim_summation: bool = True,
        grad_kwargs: dict | None = None,
    ) -> Any:
        _no_grad_kwargs(type(self).__name__, grad_kwargs)
        return (
            native.GradCam(
                self.forward_func, self.layer, attribute_to_layer_input=attribute_to_layer_input
            )
            .attribute(
                inputs,
                target=target,
                forward_args=additional_forward_args,
                relu_attributions=relu_attributions,
                attr_dim_summation=attr_dim_summation,
            )
            .attributions
        )


class NeuronGradient(NeuronAttribution, GradientAttribution):
    """Captum-compatible NeuronGradient."""

    def attribute(
        self,
        inputs: Any,
        neuron_selector: Any,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
    ) -> Any:
        model = self._neuron(neuron_selector, attribute_to_neuron_input)
        return (
            native.Saliency(model)
            .attribute(inputs, abs=False, forward_args=additional_forward_args)
            .attributions
        )


class NeuronIntegratedGradients(NeuronAttribution, GradientAttribution):
    """Captum-compatible NeuronIntegratedGradients."""

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
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        attribute_to_neuron_input: bool = False,
    ) -> Any:
        model = self._neuron(neuron_selector, attribute_to_neuron_input)
        return (
            native.IntegratedGradients(model, multiply_by_inputs=self._multiply_by_inputs)
            .attribute(
                inputs,
                baselines=baselines,
                forward_args=additional_forward_args,
                n_steps=n_steps,
                rule=method,
                chunk_size=chunk_from_internal_batch_size(internal_batch_size),
                return_delta=False,
            )
            .attributions
        )


class NeuronGradientShap(NeuronAttribution, GradientAttribution):
    """Captum-compatible NeuronGradientShap (global-RNG draws in Captum's order)."""

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
        baselines: Any,
        n_samples: int = 5,
        stdevs: float | tuple[float, ...] = 0.0,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
    ) -> Any:
        model = self._neuron(neuron_selector, attribute_to_neuron_input)
        return (
            native.GradientShap(model, multiply_by_inputs=self._multiply_by_inputs)
            .attribute(
                inputs,
                baselines=baselines,
                n_samples=n_samples,
                stdevs=stdevs,
                forward_args=additional_forward_args,
                seed=GlobalRandom(),
                return_delta=False,
            )
            .attributions
        )


class TokenReferenceBase:
    """Reference (baseline) token sequences, e.g. all ``[PAD]``, for text models."""

    def __init__(self, reference_token_idx: int = 0) -> None:
        self.reference_token_idx = reference_token_idx

    def generate_reference(self, sequence_length: int, device: torch.device) -> Tensor:
        """``(sequence_length,)`` long tensor filled with the reference token id."""
        return torch.full(
            (int(sequence_length),), self.reference_token_idx, dtype=torch.long, device=device
        )
