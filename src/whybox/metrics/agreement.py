"""Agreement between two attributions (or an attribution and the truth), per example.

Krishna et al., "The Disagreement Problem in Explainable Machine Learning" (2022):

* :func:`feature_agreement`: share of the top-``k`` features (by magnitude) both share;
* :func:`rank_agreement`: share of the top-``k`` positions holding the same feature;
* :func:`sign_agreement`: share of the top-``k`` features shared with the same sign;
* :func:`signed_rank_agreement`: same feature at the same position with the same sign;
* :func:`rank_correlation`: Spearman correlation of the magnitudes (over ``features``);
* :func:`pairwise_rank_agreement`: share of feature pairs ordered the same way by
  magnitude (over ``features``).

Inputs are ``(N, ...)`` tensors (tuples of tensors and Explanations are read as one
flat map per example); ties in a ranking are broken by feature position (a stable
sort), so results are deterministic. Everything is batched; nothing loops over examples
except :func:`pairwise_rank_agreement`, which bounds its ``(F, F)`` tables by chunking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from whybox.core.validation import check_bool, check_int, fail

from ._common import argsort_rows, as_tensors, per_example, spearman

__all__ = [
    "feature_agreement",
    "rank_agreement",
    "sign_agreement",
    "signed_rank_agreement",
    "rank_correlation",
    "pairwise_rank_agreement",
]

_PAIR_BUDGET = 2**24  # booleans per pairwise chunk


def _tables(a: Any, b: Any, owner: str) -> tuple[Tensor, Tensor]:
    ta = per_example(as_tensors(a, owner=owner, name="a", maps=True))
    tb = per_example(as_tensors(b, owner=owner, name="b", maps=True))
    if ta.shape != tb.shape:
        fail(
            owner,
            "b",
            f"as many examples and features as 'a' {tuple(ta.shape)}",
            f"shape {tuple(tb.shape)}",
            raw=True,
        )
    dtype = torch.promote_types(ta.dtype, tb.dtype)
    dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
    return ta.to(dtype), tb.to(dtype).to(ta.device)


def _top(values: Tensor, k: int, owner: str) -> Tensor:
    check_int(owner, "k", k, minimum=1, maximum=values.shape[1])
    return argsort_rows(values.abs(), descending=True)[:, :k]


def _shared(top_a: Tensor, top_b: Tensor) -> Tensor:
    """``(N, k)`` bool: whether each of ``a``'s top-k features is in ``b``'s top-k."""
    return (top_a.unsqueeze(2) == top_b.unsqueeze(1)).any(dim=2)


def feature_agreement(a: Any, b: Any, *, k: int) -> Tensor:
    """``|top_k(a) & top_k(b)| / k`` per example.

    Parameters
    ----------
    a, b : Tensor, tuple of Tensor or Explanation, ``(N, ...)`` with the same features
    k : int, keyword-only

    Returns
    -------
    Tensor, shape ``(N,)``, in ``[0, 1]``
    """
    ta, tb = _tables(a, b, "feature_agreement")
    top_a, top_b = _top(ta, k, "feature_agreement"), _top(tb, k, "feature_agreement")
    return _shared(top_a, top_b).to(ta.dtype).mean(dim=1)


def rank_agreement(a: Any, b: Any, *, k: int) -> Tensor:
    """Share of the top-``k`` positions where both rank the same feature.

    Returns
    -------
    Tensor, shape ``(N,)``, in ``[0, 1]``
    """
    ta, tb = _tables(a, b, "rank_agreement")
    top_a, top_b = _top(ta, k, "rank_agreement"), _top(tb, k, "rank_agreement")
    return (top_a == top_b).to(ta.dtype).mean(dim=1)


def sign_agreement(a: Any, b: Any, *, k: int) -> Tensor:
    """Share of ``a``'s top-``k`` features that are in ``b``'s top-``k`` with the same sign.

    Returns
    -------
    Tensor, shape ``(N,)``, in ``[0, 1]``
    """
    ta, tb = _tables(a, b, "sign_agreement")
    top_a, top_b = _top(ta, k, "sign_agreement"), _top(tb, k, "sign_agreement")
    same_sign = ta.gather(1, top_a).sign() == tb.gather(1, top_a).sign()
    return (_shared(top_a, top_b) & same_sign).to(ta.dtype).mean(dim=1)


def signed_rank_agreement(a: Any, b: Any, *, k: int) -> Tensor:
    """Share of the top-``k`` positions holding the same feature with the same sign.

    Returns
    -------
    Tensor, shape ``(N,)``, in ``[0, 1]``
    """
    ta, tb = _tables(a, b, "signed_rank_agreement")
    top_a, top_b = _top(ta, k, "signed_rank_agreement"), _top(tb, k, "signed_rank_agreement")
    same_sign = ta.gather(1, top_a).sign() == tb.gather(1, top_a).sign()
    return ((top_a == top_b) & same_sign).to(ta.dtype).mean(dim=1)


def _subset(table: Tensor, features: Sequence[int] | Tensor | None, owner: str) -> Tensor:
    if features is None:
        return table
    index = torch.as_tensor(features, dtype=torch.long, device=table.device).reshape(-1)
    if index.numel() < 2 or bool(((index < 0) | (index >= table.shape[1])).any()):
        fail(
            owner,
            "features",
            f"at least two feature positions in [0, {table.shape[1]})",
            features,
        )
    return table.index_select(1, index)


def rank_correlation(
    a: Any,
    b: Any,
    *,
    features: Sequence[int] | Tensor | None = None,
    absolute: bool = True,
) -> Tensor:
    """Spearman rank correlation per example.

    Parameters
    ----------
    a, b : Tensor, tuple of Tensor or Explanation, ``(N, ...)``
    features : sequence of int or Tensor, optional, keyword-only
        Positions (in the flattened map) to compare; ``None``: all.
    absolute : bool, keyword-only
        Rank magnitudes (the disagreement paper's choice) rather than signed values.

    Returns
    -------
    Tensor, shape ``(N,)``, in ``[-1, 1]`` (``NaN`` for a constant map)
    """
    check_bool("rank_correlation", "absolute", absolute)
    ta, tb = _tables(a, b, "rank_correlation")
    ta, tb = _subset(ta, features, "rank_correlation"), _subset(tb, features, "rank_correlation")
    if absolute:
        ta, tb = ta.abs(), tb.abs()
    return spearman(ta, tb)


def pairwise_rank_agreement(
    a: Any, b: Any, *, features: Sequence[int] | Tensor | None = None
) -> Tensor:
    """Share of feature pairs ``(i, j)``, ``i < j``, that both order the same way by magnitude.

    A pair tied in one map agrees only if it is tied in the other too.

    Parameters
    ----------
    a, b : Tensor, tuple of Tensor or Explanation, ``(N, ...)``
    features : sequence of int or Tensor, optional, keyword-only
        Positions to compare (``None``: all; the work grows with their square).

    Returns
    -------
    Tensor, shape ``(N,)``, in ``[0, 1]``
    """
    owner = "pairwise_rank_agreement"
    ta, tb = _tables(a, b, owner)
    ta, tb = _subset(ta, features, owner).abs(), _subset(tb, features, owner).abs()
    n, f = ta.shape
    if f < 2:
        fail(owner, "a", "maps with at least two features", f"{f} feature(s)", raw=True)
    upper = torch.triu(torch.ones(f, f, dtype=torch.bool, device=ta.device), diagonal=1)
    step = max(1, _PAIR_BUDGET // (f * f))
    parts = []
    for start in range(0, n, step):
        sa, sb = ta[start : start + step], tb[start : start + step]
        order_a = (sa.unsqueeze(2) - sa.unsqueeze(1)).sign()
        order_b = (sb.unsqueeze(2) - sb.unsqueeze(1)).sign()
        parts.append(((order_a == order_b) & upper).sum(dim=(1, 2)))
    pairs = f * (f - 1) // 2
    return torch.cat(parts).to(ta.dtype) / pairs
