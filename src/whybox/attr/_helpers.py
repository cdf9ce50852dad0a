"""Small public names of Captum 0.9's ``captum.attr`` submodules: noise-tunnel types, the
addition module for LRP, and the feature count of a mask."""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor, nn

__all__ = [
    "NoiseTunnelType",
    "SUPPORTED_NOISE_TUNNEL_TYPES",
    "Addition_Module",
    "get_total_features_from_mask",
]


class NoiseTunnelType(Enum):
    """NoiseTunnel's aggregations (``nt_type`` is the member's name)."""

    smoothgrad = 1
    smoothgrad_sq = 2
    vargrad = 3


#: the ``nt_type`` values NoiseTunnel accepts
SUPPORTED_NOISE_TUNNEL_TYPES: list[str] = list(NoiseTunnelType.__members__)


class Addition_Module(nn.Module):  # noqa: N801 - Captum's name
    """``x1 + x2`` as a module (Captum uses it to give additions an LRP rule)."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Return ``x1 + x2``."""
        return x1 + x2


def get_total_features_from_mask(feature_mask: tuple[Tensor, ...]) -> int:
    """The number of distinct feature indices in a feature mask.

    Parameters
    ----------
    feature_mask : tuple of Tensor
        One integer mask per input.

    Returns
    -------
    int
        How many different values appear across all masks.
    """
    if not feature_mask:
        return 0
    values = [torch.unique(mask).cpu() for mask in feature_mask]
    return int(torch.unique(torch.cat([v.reshape(-1) for v in values])).numel())
