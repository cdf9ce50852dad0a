"""Captum's inner steps of GradientShap and LayerGradientShap as classes
(``InputBaselineXGradient``, ``LayerInputBaselineXGradient``): one random point between
each example and its baseline, and the gradient there (times ``input - baseline``).

GradientShap is these averaged over noisy inputs and drawn baselines; whybox's
:class:`~whybox.attr.GradientShap` does it in one pass. These classes keep Captum's
single-draw form (``numpy.random`` draws, as Captum) for code that uses them directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import Module

from whybox.attr._base import GradientAttribution, NoFuture
from whybox.attr._captum_attr_common_helpers import _compute_conv_delta_and_format_attrs
from whybox.attr._captum_method_helpers import _scale_input
from whybox.attr._captum_utils import (
    _format_input_baseline,
    _forward_layer_eval,
    compute_layer_gradients_and_eval,
)
from whybox.attr._layer import LayerAttribution, _Multiplying

__all__ = ["InputBaselineXGradient", "LayerInputBaselineXGradient"]


def _scaled_points(inputs: tuple[Tensor, ...], baselines: tuple[Any, ...]) -> tuple[Tensor, ...]:
    # one coefficient per example, drawn as Captum draws it
    coefficient = torch.tensor(
        np.random.uniform(0.0, 1.0, inputs[0].shape[0]),
        device=inputs[0].device,
        dtype=inputs[0].dtype,
    )
    return tuple(_scale_input(x, b, coefficient) for x, b in zip(inputs, baselines))


def _times_differences(
    multiply: bool,
    grads: tuple[Tensor, ...],
    ends: tuple[Tensor, ...],
    starts: tuple[Any, ...],
) -> tuple[Tensor, ...]:
    if not multiply:
        return tuple(grads)
    return tuple((end - start) * grad for end, start, grad in zip(ends, starts, grads))


class InputBaselineXGradient(NoFuture, GradientAttribution):
    """The gradient at one random point between each input and its baseline, times
    ``inputs - baselines`` (Captum's inner step of GradientShap).

    Parameters
    ----------
    forward_func : callable
        The model or forward function.
    multiply_by_inputs : bool, default True
        Multiply the gradients by ``inputs - baselines`` (global attribution).
    """

    _has_delta = True

    def __init__(
        self, forward_func: Callable[..., Tensor], multiply_by_inputs: bool = True
    ) -> None:
        super().__init__(forward_func)
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
    ) -> Any:
        """Attributions at one random point per example.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
        baselines : scalar, Tensor or tuple, optional
            Zero when omitted.
        target : int, tuple, Tensor or list, optional
        additional_forward_args : Any, optional
        return_convergence_delta : bool, default False

        Returns
        -------
        Tensor or tuple of Tensor, or (attributions, delta)
            Shaped like ``inputs``; with ``return_convergence_delta`` also the per-example
            ``sum(attributions) - (f(inputs) - f(baselines))``.
        """
        is_tuple = isinstance(inputs, tuple)
        formatted, baselines = _format_input_baseline(inputs, baselines)
        grads = self.gradient_func(
            self.forward_func, _scaled_points(formatted, baselines), target, additional_forward_args
        )
        attributions = _times_differences(self.multiplies_by_inputs, grads, formatted, baselines)
        return _compute_conv_delta_and_format_attrs(
            self,
            return_convergence_delta,
            attributions,
            baselines,
            inputs,
            additional_forward_args,
            target,
            is_tuple,
        )


class LayerInputBaselineXGradient(_Multiplying, LayerAttribution, GradientAttribution):
    """The gradient with respect to a layer at one random point between each input and
    its baseline, times the layer's ``values(inputs) - values(baselines)`` (Captum's inner
    step of LayerGradientShap).

    Parameters
    ----------
    forward_func : callable
    layer : nn.Module
    device_ids : list of int, optional
        Accepted for Captum's signature.
    multiply_by_inputs : bool, default True
    """

    _has_delta = True

    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        baselines: Tensor | tuple[Tensor, ...],
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        grad_kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """Layer attributions at one random point per example.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
        baselines : Tensor or tuple of Tensor
        target : int, tuple, Tensor or list, optional
        additional_forward_args : Any, optional
        return_convergence_delta : bool, default False
        attribute_to_layer_input : bool, default False
            Attribute to the layer's inputs instead of its outputs.
        grad_kwargs : dict, optional
            Extra keyword arguments of ``torch.autograd.grad``.

        Returns
        -------
        Tensor or tuple of Tensor, or (attributions, delta)
            Shaped like the layer's tensor(s) (a tensor for a layer with one); with
            ``return_convergence_delta`` also the per-example convergence delta.
        """
        formatted, baselines = _format_input_baseline(inputs, baselines)
        layer: Module = self.layer
        grads, _ = compute_layer_gradients_and_eval(
            self.forward_func,
            layer,
            _scaled_points(formatted, baselines),
            target,
            additional_forward_args,
            device_ids=self.device_ids,
            attribute_to_layer_input=attribute_to_layer_input,
            grad_kwargs=grad_kwargs,
        )
        values = {}
        for name, given in (("baselines", baselines), ("inputs", formatted)):
            values[name] = _forward_layer_eval(
                self.forward_func,
                given,
                layer,
                additional_forward_args=additional_forward_args,
                device_ids=self.device_ids,
                attribute_to_layer_input=attribute_to_layer_input,
            )
        attributions = _times_differences(
            self.multiplies_by_inputs, grads, values["inputs"], values["baselines"]
        )
        return _compute_conv_delta_and_format_attrs(
            self,
            return_convergence_delta,
            attributions,
            baselines,
            formatted,
            additional_forward_args,
            target,
            len(attributions) > 1,
        )
