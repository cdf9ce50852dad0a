"""Inputs and baselines shared by the DeepLift neuron and layer tests (Captum 0.9).

Each call builds fresh leaf tensors, so tests cannot leak gradients into each other.
"""

from __future__ import annotations

import torch
from torch import Tensor


def create_inps_and_base_for_deeplift_neuron_layer_testing() -> tuple[
    tuple[Tensor, Tensor], tuple[Tensor, Tensor]
]:
    """Two ``(1, 3)`` inputs and two all-zero ``(1, 3)`` baselines.

    Returns
    -------
    tuple
        ``(inputs, baselines)``, each a pair of float tensors that require gradients.
    """
    inputs = (
        torch.tensor([[-10.0, 1.0, -5.0]], requires_grad=True),
        torch.tensor([[3.0, 3.0, 1.0]], requires_grad=True),
    )
    baselines = (
        torch.zeros(1, 3, requires_grad=True),
        torch.zeros(1, 3, requires_grad=True),
    )
    return inputs, baselines


def create_inps_and_base_for_deepliftshap_neuron_layer_testing() -> tuple[
    tuple[Tensor, Tensor], tuple[Tensor, Tensor]
]:
    """Two ``(1, 3)`` inputs and two all-zero ``(3, 3)`` baseline distributions.

    Returns
    -------
    tuple
        ``(inputs, baselines)``, each a pair of float tensors that require gradients.
    """
    inputs = (
        torch.tensor([[-10.0, 1.0, -5.0]], requires_grad=True),
        torch.tensor([[3.0, 3.0, 1.0]], requires_grad=True),
    )
    baselines = (
        torch.zeros(3, 3, requires_grad=True),
        torch.zeros(3, 3, requires_grad=True),
    )
    return inputs, baselines
