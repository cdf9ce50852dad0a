"""The influence base class and the k-most-influential result (Captum's names)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = ["DataInfluence", "KMostInfluentialResults", "merge_top_k"]


class DataInfluence(ABC):
    """Base of the training-data influence methods: ``influence(inputs, ...)``."""

    @abstractmethod
    def influence(self, inputs: Any = None, **kwargs: Any) -> Any:
        """The influence of training examples on ``inputs`` (each method says how)."""

    @classmethod
    def get_name(cls) -> str:
        """The class name (progress bars are labelled with it)."""
        return cls.__name__


class KMostInfluentialResults(NamedTuple):
    """The ``k`` most influential training examples of each test example.

    Attributes
    ----------
    indices : Tensor ``(Q, k)``, long
        Training-example indices, most influential first (``proponents=False``: most
        negative first).
    influence_scores : Tensor ``(Q, k)``
        Their influence scores.
    """

    indices: Tensor
    influence_scores: Tensor


def merge_top_k(
    best: tuple[Tensor, Tensor] | None, scores: Tensor, offset: int, k: int, proponents: bool
) -> tuple[Tensor, Tensor]:
    """Fold a block of scores ``(Q, n)`` for training examples ``offset..offset+n-1`` into
    the running top-``k`` ``(indices, scores)`` (largest first; smallest with
    ``proponents=False``)."""
    sign = 1.0 if proponents else -1.0
    values, index = torch.topk(scores * sign, min(k, scores.shape[1]), dim=1)
    index = index + offset
    if best is not None:
        index = torch.cat([best[0].to(index.device), index], dim=1)
        values = torch.cat([best[1].to(values.device) * sign, values], dim=1)
        values, order = torch.topk(values, min(k, values.shape[1]), dim=1)
        index = torch.gather(index, 1, order)
    return index, values * sign
