"""LIME's default sampler of interpretable samples."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["default_perturb_func"]


def default_perturb_func(
    original_inp: Tensor | tuple[Tensor, ...],
    *,
    num_interp_features: int,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> Tensor:
    """LIME's default sampler: each interpretable feature kept with probability 1/2.

    Parameters
    ----------
    original_inp : Tensor or tuple of Tensor
        Only its device is used.
    num_interp_features : int, keyword-only
        Number of interpretable features ``M``.
    generator : torch.Generator, keyword-only, optional
        For reproducible sampling (must live on the CPU).

    Returns
    -------
    Tensor, shape (1, M), long, on the input's device.
    """
    device = original_inp.device if isinstance(original_inp, Tensor) else original_inp[0].device
    probs = torch.full((1, int(num_interp_features)), 0.5)
    return torch.bernoulli(probs, generator=generator).to(device=device, dtype=torch.long)
