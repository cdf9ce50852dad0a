"""Localisation: does the attribution fall on the region known to matter?

Each metric takes attributions and a ground-truth mask (``True`` = the region that
matters) and returns one number per example, batched. The mask either has the
attributions' shape, or lacks their channel dimension (``(N, H, W)`` for ``(N, C, H, W)``
maps, ``(N, T)`` for ``(N, T, D)`` token maps): the attributions are then summed over
that dimension first (dimension 1 for images, the last one for tokens, whichever the mask
lacks).

* :func:`pointing_game` (Zhang et al., 2018): is the maximum inside the mask?
* :func:`relevance_mass` (Arras et al., 2022): share of the positive relevance inside;
* :func:`relevance_rank` (Arras et al., 2022): share of the ``K = |mask|`` highest values
  inside;
* :func:`top_k_intersection` (Theiner et al., 2021): share of the ``k`` highest inside;
* :func:`localisation_auc` (Fawcett, 2006): ROC AUC of the attribution as a detector of
  the mask (ties count half).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from whybox.core.validation import check_int, fail

from ._common import argsort_rows, as_tensors, average_ranks, rows2d

__all__ = [
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
    "top_k_intersection",
    "localisation_auc",
]


def _map_and_mask(attributions: Any, mask: Tensor, owner: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(N, D)`` attributions and mask (bool), plus the map before flattening."""
    tensors = as_tensors(attributions, owner=owner, maps=True)
    if len(tensors) != 1:
        fail(
            owner,
            "attributions",
            "one attribution tensor (one input)",
            f"{len(tensors)} tensors",
            raw=True,
        )
    a = tensors[0]
    if not isinstance(mask, Tensor):
        fail(owner, "mask", "a boolean tensor", mask, type_error=True)
    if a.dim() == mask.dim() + 1:
        if tuple(a.shape[:1] + a.shape[2:]) == tuple(mask.shape):
            a = a.sum(dim=1)  # a channel dimension (images)
        elif tuple(a.shape[:-1]) == tuple(mask.shape):
            a = a.sum(dim=-1)  # an embedding dimension (tokens)
    if a.dim() == mask.dim() and mask.shape[0] == 1 and a.shape[0] != 1:
        mask = mask.expand_as(a) if all(m in (1, s) for m, s in zip(mask.shape, a.shape)) else mask
    if tuple(a.shape) != tuple(mask.shape):
        fail(
            owner,
            "mask",
            f"shaped like the attributions {tuple(tensors[0].shape)} (or without their "
            "channel / embedding dimension)",
            f"shape {tuple(mask.shape)}",
            raw=True,
        )
    values = rows2d(a)
    if not values.is_floating_point():
        values = values.to(torch.get_default_dtype())
    return values, rows2d(mask).to(torch.bool).to(values.device), a


def pointing_game(attributions: Any, mask: Tensor, *, tolerance: int = 0) -> Tensor:
    """Whether each example's highest attribution lies in the mask.

    Parameters
    ----------
    attributions : Tensor or Explanation, ``(N, ...)``
    mask : Tensor, bool
    tolerance : int, keyword-only
        Grow a 2-D mask ``(N, H, W)`` by this many pixels first (Zhang et al. use 15).

    Returns
    -------
    Tensor, shape ``(N,)``, bool
        A tie for the maximum counts as a hit if any tied element is inside.
    """
    check_int("pointing_game", "tolerance", tolerance, minimum=0)
    values, flat_mask, spatial = _map_and_mask(attributions, mask, "pointing_game")
    if tolerance:
        if spatial.dim() != 3:
            fail("pointing_game", "tolerance", "0 unless the map is 2-D per example", tolerance)
        grown = F.max_pool2d(
            flat_mask.view(spatial.shape).unsqueeze(1).float(), 2 * tolerance + 1, 1, tolerance
        )
        flat_mask = grown.reshape(flat_mask.shape).bool()
    top = values.max(dim=1, keepdim=True).values
    return ((values == top) & flat_mask).any(dim=1)


def relevance_mass(attributions: Any, mask: Tensor) -> Tensor:
    """Share of each example's positive relevance that falls inside the mask.

    Returns
    -------
    Tensor, shape ``(N,)``
        ``sum_{mask} max(a, 0) / sum max(a, 0)``; 0 where there is no positive relevance.
    """
    values, flat_mask, _ = _map_and_mask(attributions, mask, "relevance_mass")
    positive = values.clamp_min(0)
    total = positive.sum(dim=1)
    inside = (positive * flat_mask).sum(dim=1)
    return torch.where(total > 0, inside / torch.where(total > 0, total, 1), 0)


def relevance_rank(attributions: Any, mask: Tensor) -> Tensor:
    """Share of the ``K`` highest attributions inside the mask, ``K = |mask|`` per example.

    Returns
    -------
    Tensor, shape ``(N,)``
        0 for an empty mask.
    """
    values, flat_mask, _ = _map_and_mask(attributions, mask, "relevance_rank")
    sizes = flat_mask.sum(dim=1)
    order = argsort_rows(values, descending=True)
    positions = torch.arange(values.shape[1], device=values.device)
    in_top = positions.unsqueeze(0) < sizes.unsqueeze(1)  # first K of the order
    hits = (flat_mask.gather(1, order) & in_top).sum(dim=1)
    return torch.where(sizes > 0, hits / sizes.clamp_min(1), 0).to(values.dtype)


def top_k_intersection(attributions: Any, mask: Tensor, *, k: int) -> Tensor:
    """Share of the ``k`` highest attributions that lie inside the mask.

    Returns
    -------
    Tensor, shape ``(N,)``
    """
    values, flat_mask, _ = _map_and_mask(attributions, mask, "top_k_intersection")
    check_int("top_k_intersection", "k", k, minimum=1, maximum=values.shape[1])
    top = values.topk(k, dim=1).indices
    return flat_mask.gather(1, top).sum(dim=1).to(values.dtype) / k


def localisation_auc(attributions: Any, mask: Tensor) -> Tensor:
    """ROC AUC of the attributions as scores for "inside the mask".

    The Mann-Whitney statistic on average ranks: the chance that a random element inside
    outscores a random one outside (ties half).

    Returns
    -------
    Tensor, shape ``(N,)``
        ``NaN`` where the mask is empty or full (the AUC is undefined).
    """
    values, flat_mask, _ = _map_and_mask(attributions, mask, "localisation_auc")
    ranks = average_ranks(values)
    positives = flat_mask.sum(dim=1).to(values.dtype)
    negatives = flat_mask.shape[1] - positives
    rank_sum = (ranks * flat_mask).sum(dim=1)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
