"""Complexity of an attribution map: is it concentrated on a few features?

* :func:`sparseness` (Chalasani et al., 2020): the Gini index of ``|a|``; 0 for a uniform
  map, ``(n - 1) / n`` for a one-hot map of ``n`` features;
* :func:`entropy` (Bhatt et al., 2020, "complexity"): Shannon entropy of the fractional
  contributions ``|a_i| / sum |a|``; 0 for one-hot, ``log n`` for uniform;
* :func:`effective_complexity` (Nguyen & Martinez, 2020): how many ``|a_i|`` exceed ``eps``.

All take attributions ``(N, ...)`` (a tensor, a tuple of tensors or an Explanation; a
tuple is read as one map of all its elements) and return one number per example, batched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from whybox.core.validation import check_real

from ._common import as_tensors, per_example, safe_log, sorted_values

__all__ = ["sparseness", "entropy", "effective_complexity"]


def _magnitudes(attributions: Any, owner: str) -> Tensor:
    table = per_example(as_tensors(attributions, owner=owner, maps=True)).abs()
    return table if table.is_floating_point() else table.to(torch.get_default_dtype())


def sparseness(attributions: Any) -> Tensor:
    """Gini index of each example's absolute attributions.

    ``G = sum_i (2i - n - 1) a_(i) / (n sum_i a_(i))`` over the ``n`` values sorted
    ascending (``i = 1..n``).

    Parameters
    ----------
    attributions : Tensor, tuple of Tensor or Explanation, each ``(N, ...)``

    Returns
    -------
    Tensor, shape ``(N,)``
        In ``[0, (n - 1) / n]``; 0 for an all-zero map.
    """
    values = sorted_values(_magnitudes(attributions, "sparseness"))
    n = values.shape[1]
    weights = 2 * torch.arange(1, n + 1, device=values.device, dtype=values.dtype) - n - 1
    total = values.sum(dim=1)
    gini = (values * weights).sum(dim=1) / (n * total)
    return torch.where(total > 0, gini, torch.zeros_like(gini))


def entropy(attributions: Any) -> Tensor:
    """Entropy of each example's fractional contributions ``|a_i| / sum |a|`` (nats).

    Parameters
    ----------
    attributions : Tensor, tuple of Tensor or Explanation, each ``(N, ...)``

    Returns
    -------
    Tensor, shape ``(N,)``
        In ``[0, log n]``; 0 for an all-zero map.
    """
    values = _magnitudes(attributions, "entropy")
    total = values.sum(dim=1, keepdim=True)
    shares = values / torch.where(total > 0, total, torch.ones_like(total))
    return 0.0 - (shares * safe_log(shares)).sum(dim=1)  # 0.0 - x: no -0.0


def effective_complexity(attributions: Any, *, eps: float = 1e-5) -> Tensor:
    """Number of features whose absolute attribution exceeds ``eps``.

    Parameters
    ----------
    attributions : Tensor, tuple of Tensor or Explanation, each ``(N, ...)``
    eps : float, keyword-only
        Threshold (>= 0).

    Returns
    -------
    Tensor, shape ``(N,)``, long
    """
    check_real("effective_complexity", "eps", eps, minimum=0.0)
    return (_magnitudes(attributions, "effective_complexity") > eps).sum(dim=1)
