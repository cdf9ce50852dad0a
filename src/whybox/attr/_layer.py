"""Captum-compatible layer and neuron methods: the native methods with a layer / neuron scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from whybox import methods as native
from whybox.core.validation import fail

from ._adapter import LAYER, MULTIPLY, Spec, run, with_delta
from ._base import Attribution, GradientAttribution

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


class _Scoped(Attribution):
    """Holds ``forward_func`` and ``layer`` (Captum's layer and neuron bases).

    ``device_ids`` (for ``DataParallel`` models in Captum) is accepted and unused: hooks
    here see every replica's outputs directly.
    """

    def __init__(
        self, forward_func: Callable[..., Tensor], layer: Any, device_ids: list[int] | None = None
    ) -> None:
        super().__init__(forward_func)
        self.layer = layer
        self.device_ids = device_ids


class LayerAttribution(_Scoped):
    """Captum's base for layer methods: holds ``forward_func`` and ``layer``."""

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


class NeuronAttribution(_Scoped):
    """Captum's base for neuron methods: holds ``forward_func`` and ``layer``."""


class _Multiplying:
    """The constructor of Captum's layer / neuron classes taking ``multiply_by_inputs``
    (mixed in before :class:`LayerAttribution` or :class:`NeuronAttribution`)."""

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        layer: Any,
        device_ids: list[int] | None = None,
        multiply_by_inputs: bool = True,
    ) -> None:
        super().__init__(forward_func, layer, device_ids)  # type: ignore[call-arg]
        self._multiply_by_inputs = multiply_by_inputs


class LayerIntegratedGradients(_Multiplying, LayerAttribution, GradientAttribution):
    """Captum-compatible Layer Integrated Gradients (native: ``IntegratedGradients(model,
    layer=...)``). Baselines are input-level (e.g. reference token ids)."""

    _spec = Spec(native.IntegratedGradients, init=MULTIPLY, returns=with_delta, **LAYER)
    _has_delta = True

    @property
    def ig(self) -> Attribution:
        """Captum's inner ``IntegratedGradients`` over the same model (an attribute there)."""
        from ._gradient import IntegratedGradients

        return IntegratedGradients(self.forward_func, self._multiply_by_inputs)

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
        return run(self, self._spec, locals())


class LayerConductance(LayerAttribution, GradientAttribution):
    """Captum-compatible LayerConductance."""

    _spec = Spec(native.LayerConductance, returns=with_delta, **LAYER)
    _has_delta = True
    _multiply_by_inputs = True

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
        return run(self, self._spec, locals())


class InternalInfluence(LayerAttribution, GradientAttribution):
    """Captum-compatible InternalInfluence."""

    _spec = Spec(native.InternalInfluence, **LAYER)

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
        return run(self, self._spec, locals())


class LayerActivation(LayerAttribution):
    """Captum-compatible LayerActivation."""

    _spec = Spec(native.LayerActivation, **LAYER)
    # Captum reports activations as multiplied by inputs
    _multiply_by_inputs = True

    def attribute(
        self,
        inputs: Any,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
    ) -> Any:
        return run(self, self._spec, locals())


class LayerGradientXActivation(LayerAttribution, GradientAttribution):
    """Captum-compatible LayerGradientXActivation (``memory_efficient`` is accepted; whybox
    always takes activations and gradients from the same chunked forward)."""

    _spec = Spec(native.InputXGradient, init=MULTIPLY, **LAYER)

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

    def multiply_gradient_acts(
        self, gradients: tuple[Tensor, ...], evals: tuple[Tensor, ...]
    ) -> tuple[Tensor, ...]:
        """Captum's helper: ``gradient * activation`` per layer tensor when multiplying by
        inputs, the gradients alone otherwise."""
        if not self.multiplies_by_inputs:
            return tuple(gradients)
        return tuple(g * e for g, e in zip(gradients, evals))

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        grad_kwargs: dict | None = None,
    ) -> Any:
        return run(self, self._spec, locals())


class LayerGradCam(LayerAttribution, GradientAttribution):
    """Captum-compatible LayerGradCam."""

    _spec = Spec(native.GradCam, **LAYER)

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
        return run(self, self._spec, locals())


class NeuronGradient(NeuronAttribution, GradientAttribution):
    """Captum-compatible NeuronGradient."""

    _spec = Spec(native.Saliency, neuron=True, fixed={"abs": False})

    def attribute(
        self,
        inputs: Any,
        neuron_selector: Any,
        additional_forward_args: Any = None,
        attribute_to_neuron_input: bool = False,
    ) -> Any:
        return run(self, self._spec, locals())


class NeuronIntegratedGradients(_Multiplying, NeuronAttribution, GradientAttribution):
    """Captum-compatible NeuronIntegratedGradients."""

    _spec = Spec(native.IntegratedGradients, init=MULTIPLY, neuron=True)

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
        return run(self, self._spec, locals())


class NeuronGradientShap(_Multiplying, NeuronAttribution, GradientAttribution):
    """Captum-compatible NeuronGradientShap (global-RNG draws in Captum's order)."""

    _spec = Spec(native.GradientShap, init=MULTIPLY, neuron=True, captum_random=True)

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
        return run(self, self._spec, locals())


class TokenReferenceBase:
    """Reference (baseline) token sequences, e.g. all ``[PAD]``, for text models."""

    def __init__(self, reference_token_idx: int = 0) -> None:
        self.reference_token_idx = reference_token_idx

    def generate_reference(self, sequence_length: int, device: torch.device) -> Tensor:
        """``(sequence_length,)`` long tensor filled with the reference token id."""
        return torch.full(
            (int(sequence_length),), self.reference_token_idx, dtype=torch.long, device=device
        )
