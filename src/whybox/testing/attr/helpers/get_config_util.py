"""Models, inputs and expected gradients for the gradient tests (Captum 0.9's helper)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Module

from whybox._utils.gradient import compute_gradients
from whybox.testing.helpers.basic_models import BasicModel, BasicModel5_MultiArgs


def get_basic_config() -> tuple[Module, Tensor, Tensor, None]:
    """``BasicModel``, a 1-D input of six values and its hand-computed gradients.

    Returns
    -------
    tuple
        ``(model, input, grads, additional_forward_args)``; the last is None.
    """
    input = torch.tensor([1.0, 2.0, 3.0, 0.0, -1.0, 7.0], requires_grad=True).T
    # worked out by hand: the gradient of 1 - relu(1 - x) is 1 where x < 1, else 0
    grads = torch.tensor([-0.0, -0.0, -0.0, 1.0, 1.0, -0.0])
    return BasicModel(), input, grads, None


def get_multiargs_basic_config() -> tuple[
    Module, tuple[Tensor, ...], tuple[Tensor, ...], tuple[list[int], int]
]:
    """``BasicModel5_MultiArgs`` with two ``(2, 3)`` inputs, their gradients and args.

    Returns
    -------
    tuple
        ``(model, inputs, grads, additional_forward_args)`` with
        ``additional_forward_args == ([2, 3], 1)``; ``grads`` come from
        :func:`whybox._utils.gradient.compute_gradients`.
    """
    model = BasicModel5_MultiArgs()
    additional_forward_args = ([2, 3], 1)
    inputs = (
        torch.tensor([[1.5, 2.0, 34.3], [3.4, 1.2, 2.0]], requires_grad=True),
        torch.tensor([[3.0, 3.5, 23.2], [2.3, 1.2, 0.3]], requires_grad=True),
    )
    grads = compute_gradients(model, inputs, additional_forward_args=additional_forward_args)
    return model, inputs, grads, additional_forward_args


def get_multiargs_basic_config_large() -> tuple[
    Module, tuple[Tensor, ...], tuple[Tensor, ...], tuple[list[int], int]
]:
    """As :func:`get_multiargs_basic_config`, with six examples (each row three times).

    Returns
    -------
    tuple
        ``(model, inputs, grads, additional_forward_args)``; the inputs are ``(6, 3)``
        tensors made with ``repeat_interleave`` from leaves that require gradients.
    """
    model = BasicModel5_MultiArgs()
    additional_forward_args = ([2, 3], 1)
    first = torch.tensor([[10.5, 12.0, 34.3], [43.4, 51.2, 32.0]], requires_grad=True)
    second = torch.tensor([[1.0, 3.5, 23.2], [2.3, 1.2, 0.3]], requires_grad=True)
    inputs = (first.repeat_interleave(3, dim=0), second.repeat_interleave(3, dim=0))
    grads = compute_gradients(model, inputs, additional_forward_args=additional_forward_args)
    return model, inputs, grads, additional_forward_args
