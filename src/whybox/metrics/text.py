"""Faithfulness of token attributions, with tokens *removed*, not masked (as ferret does).

* :func:`comprehensiveness` (DeYoung et al., ERASER, 2020): how much the target's
  probability drops when the top ``q`` of the tokens are removed, averaged over ``q``
  (high is faithful);
* :func:`sufficiency`: how much it drops when *only* the top ``q`` are kept (low is
  faithful);
* :func:`tau_loo`: Kendall's tau-b between the attributions and each token's
  leave-one-out effect (high is faithful).

Removing a token shortens the sequence: the kept tokens move left, in order, and the
tail is padded with ``pad_token_id`` under a zero attention mask. A model that takes an
attention mask (``model(input_ids, attention_mask=...)``, as Hugging Face models do) then
sees exactly the shorter text. ``special_mask`` marks tokens (``[CLS]``, ``[SEP]``) that
are never removed or ranked. Rows are built per chunk and evaluated through the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from whybox.core.call import Call, prepare_call
from whybox.core.chunks import ChunkSize
from whybox.core.forward import RowBatch
from whybox.core.validation import check_bool, check_int, fail
from whybox.metrics._views import MetricViews

from ._common import argsort_rows, as_tensors, counts_for
from .faithfulness import _run

__all__ = ["TextFaithfulnessResult", "comprehensiveness", "sufficiency", "tau_loo"]

DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class TextFaithfulnessResult(MetricViews):
    """A text faithfulness score per example and what it summarises.

    Attributes
    ----------
    score : Tensor, shape ``(N,)``
    drops : Tensor, shape ``(N, Q)`` or ``(N, T)``
        Comprehensiveness / sufficiency: ``p(x) - p(x')`` per threshold; tau-LOO: each
        token's leave-one-out effect (0 for special and padding tokens).
    thresholds : Tensor, shape ``(Q,)`` or None
        The fractions of tokens removed / kept (``None`` for tau-LOO).
    name : str
        ``"comprehensiveness"``, ``"sufficiency"`` or ``"tau_loo"``.
    """

    score: Tensor
    drops: Tensor
    thresholds: Tensor | None
    name: str = ""


def comprehensiveness(
    model: Callable[..., Any],
    input_ids: Tensor,
    attributions: Any,
    *,
    target: Any = None,
    attention_mask: Tensor | None = None,
    special_mask: Tensor | None = None,
    pad_token_id: int = 0,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    probabilities: bool = True,
    chunk_size: ChunkSize = "auto",
    show_progress: bool = False,
) -> TextFaithfulnessResult:
    """Mean drop of the target's probability when the most important tokens are removed.

    Parameters
    ----------
    model : callable
        ``model(input_ids)`` or, with ``attention_mask``,
        ``model(input_ids, attention_mask=...)``; returns ``(N, C)`` scores.
    input_ids : Tensor, long, shape ``(N, T)``
    attributions : Tensor ``(N, T)`` or ``(N, T, D)`` (summed over ``D``), or an Explanation
    target : optional
        The class to explain (an int, or one per example).
    attention_mask : Tensor, shape ``(N, T)``, optional
        Padding of the inputs (0 = padding, never ranked).
    special_mask : Tensor, bool, shape ``(N, T)`` or ``(T,)``, optional
        Tokens never removed nor ranked.
    pad_token_id : int
        Fills the tail of shortened rows.
    thresholds : sequence of float in (0, 1]
        Fractions of the rankable tokens removed (``round(q * n)`` tokens, at least 1).
    probabilities : bool
        Compare softmax probabilities (ferret's choice) rather than raw scores; a model
        with one output per example (``(N,)`` or ``(N, 1)``, a binary classifier's logit)
        gets its sigmoid.
    chunk_size : int, "auto" or None
    show_progress : bool
        A progress bar over the model calls.

    Returns
    -------
    TextFaithfulnessResult
        ``score = mean_q p(x)_c - p(x without its top-q tokens)_c``.
    """
    return _threshold_metric(
        "comprehensiveness",
        model,
        input_ids,
        attributions,
        target,
        attention_mask,
        special_mask,
        pad_token_id,
        thresholds,
        probabilities,
        chunk_size,
        show_progress,
        keep_top=False,
    )


def sufficiency(
    model: Callable[..., Any],
    input_ids: Tensor,
    attributions: Any,
    *,
    target: Any = None,
    attention_mask: Tensor | None = None,
    special_mask: Tensor | None = None,
    pad_token_id: int = 0,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    probabilities: bool = True,
    chunk_size: ChunkSize = "auto",
    show_progress: bool = False,
) -> TextFaithfulnessResult:
    """Mean drop of the target's probability when only the most important tokens are kept.

    Parameters and returns as :func:`comprehensiveness` (``score = mean_q p(x)_c -
    p(top-q tokens only)_c``; special tokens are always kept).
    """
    return _threshold_metric(
        "sufficiency",
        model,
        input_ids,
        attributions,
        target,
        attention_mask,
        special_mask,
        pad_token_id,
        thresholds,
        probabilities,
        chunk_size,
        show_progress,
        keep_top=True,
    )


def tau_loo(
    model: Callable[..., Any],
    input_ids: Tensor,
    attributions: Any,
    *,
    target: Any = None,
    attention_mask: Tensor | None = None,
    special_mask: Tensor | None = None,
    pad_token_id: int = 0,
    probabilities: bool = True,
    chunk_size: ChunkSize = "auto",
    show_progress: bool = False,
) -> TextFaithfulnessResult:
    """Kendall's tau-b between attributions and leave-one-out effects (``N * T`` rows).

    Parameters as :func:`comprehensiveness`.

    Returns
    -------
    TextFaithfulnessResult
        ``score`` in ``[-1, 1]`` (``NaN`` when either ranking is constant); ``drops``
        ``(N, T)`` the leave-one-out effects ``p(x)_c - p(x without token t)_c``.
    """
    owner = "tau_loo"
    setup = _TextSetup.make(
        owner,
        model,
        input_ids,
        attributions,
        target,
        attention_mask,
        special_mask,
        pad_token_id,
        probabilities,
        chunk_size,
        show_progress,
    )
    n, length = setup.ids.shape
    device = setup.ids.device

    def build(start: int, stop: int) -> RowBatch:
        item = torch.arange(start, stop, device=device)
        index, token = item // length, item % length
        keep = torch.ones(stop - start, length, dtype=torch.bool, device=device)
        keep[torch.arange(stop - start, device=device), token] = False
        return setup.rows(index, keep)

    values = _run(setup.call, n * length, build, rows_per_item=1, description=owner)
    effects = setup.original().unsqueeze(1) - values.reshape(n, length)
    effects = torch.where(setup.rankable, effects, torch.zeros_like(effects))
    return TextFaithfulnessResult(
        _kendall_tau_b(setup.scores, effects, setup.rankable), effects, None, owner
    )


# -- internals -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TextSetup:
    call: Call
    ids: Tensor  # (N, T)
    attention: Tensor  # (N, T) bool
    rankable: Tensor  # (N, T) bool
    scores: Tensor  # (N, T) token attributions
    pad_token_id: int

    @staticmethod
    def make(
        owner: str,
        model: Any,
        input_ids: Any,
        attributions: Any,
        target: Any,
        attention_mask: Any,
        special_mask: Any,
        pad_token_id: int,
        probabilities: bool,
        chunk_size: ChunkSize,
        show_progress: bool,
    ) -> _TextSetup:
        if not callable(model):
            fail(owner, "model", "a callable", model, type_error=True)
        if (
            not isinstance(input_ids, Tensor)
            or input_ids.dim() != 2
            or input_ids.is_floating_point()
        ):
            fail(owner, "input_ids", "an integer tensor of shape (N, T)", input_ids)
        check_int(owner, "pad_token_id", pad_token_id)
        check_bool(owner, "probabilities", probabilities)
        n, length = input_ids.shape
        device = input_ids.device
        if n == 0:
            fail(owner, "input_ids", "at least one sequence", input_ids)
        attention = _bool_mask(
            owner, "attention_mask", attention_mask, n, length, device, default=True
        )
        special = _bool_mask(owner, "special_mask", special_mask, n, length, device, default=False)
        tensors = as_tensors(attributions, owner=owner)
        scores = tensors[0]
        if len(tensors) != 1 or scores.shape[:2] != (n, length) or scores.dim() > 3:
            fail(owner, "attributions", f"one tensor of shape ({n}, {length}[, D])", attributions)
        scores = scores.sum(dim=2) if scores.dim() == 3 else scores
        scores = scores.to(
            device, torch.get_default_dtype() if not scores.is_floating_point() else scores.dtype
        )
        with_mask = attention_mask is not None

        def forward(ids: Tensor, mask: Tensor) -> Tensor:
            output = model(ids, attention_mask=mask.long()) if with_mask else model(ids)
            output = getattr(output, "logits", output)  # Hugging Face model outputs
            if not probabilities:
                return output
            if output.dim() < 2 or output.shape[-1] == 1:
                # one logit per example: a softmax over one class is always 1 (every drop
                # would be 0); its probability is the sigmoid
                return output.sigmoid()
            return output.softmax(dim=-1)

        call = prepare_call(
            owner,
            forward,
            (input_ids, attention),
            target=target,
            chunk_size=chunk_size,
            show_progress=show_progress,
            require_float=False,
        )
        return _TextSetup(call, input_ids, attention, attention & ~special, scores, pad_token_id)

    def rows(self, index: Tensor, keep: Tensor) -> RowBatch:
        """Rows of examples ``index`` keeping tokens ``keep`` (``(R, T)``), shortened:
        kept tokens moved left in order, the tail padded under a zero attention mask."""
        keep = keep & self.attention.index_select(0, index)
        order = (~keep).to(torch.uint8).argsort(dim=1, stable=True)  # kept tokens first
        ids = self.ids.index_select(0, index).gather(1, order)
        length = keep.shape[1]
        valid = torch.arange(length, device=keep.device).unsqueeze(0) < keep.sum(
            dim=1, keepdim=True
        )
        ids = torch.where(valid, ids, torch.full_like(ids, self.pad_token_id))
        return RowBatch((ids, valid), index)

    def original(self) -> Tensor:
        n = self.ids.shape[0]
        index = torch.arange(n, device=self.ids.device)

        def build(start: int, stop: int) -> RowBatch:
            return RowBatch((self.ids[start:stop], self.attention[start:stop]), index[start:stop])

        return _run(self.call, n, build, rows_per_item=1, description=self.call.owner)


def _threshold_metric(
    owner: str,
    model: Any,
    input_ids: Any,
    attributions: Any,
    target: Any,
    attention_mask: Any,
    special_mask: Any,
    pad_token_id: int,
    thresholds: Sequence[float],
    probabilities: bool,
    chunk_size: ChunkSize,
    show_progress: bool,
    *,
    keep_top: bool,
) -> TextFaithfulnessResult:
    setup = _TextSetup.make(
        owner,
        model,
        input_ids,
        attributions,
        target,
        attention_mask,
        special_mask,
        pad_token_id,
        probabilities,
        chunk_size,
        show_progress,
    )
    try:
        q = torch.as_tensor([float(t) for t in thresholds], dtype=torch.float64)
    except (TypeError, ValueError):
        q = torch.zeros(0)
    if q.numel() == 0 or bool(((q <= 0) | (q > 1)).any()):
        fail(owner, "thresholds", "a non-empty sequence of fractions in (0, 1]", thresholds)
    n, length = setup.ids.shape
    device = setup.ids.device
    # rank rankable tokens by attribution, most important first
    masked = torch.where(setup.rankable, setup.scores, torch.full_like(setup.scores, -torch.inf))
    order = argsort_rows(masked, descending=True)
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(length, device=device).expand_as(order)
    )
    n_rankable = setup.rankable.sum(dim=1)  # (N,)
    counts = (
        torch.stack([counts_for(q, int(m)) for m in n_rankable.tolist()]).clamp_min(1).to(device)
    )
    points = q.numel()

    def build(start: int, stop: int) -> RowBatch:
        item = torch.arange(start, stop, device=device)
        index, step = item // points, item % points
        top = (
            ranks.index_select(0, index) < counts[index, step].unsqueeze(1)
        ) & setup.rankable.index_select(0, index)
        keep = (top | ~setup.rankable.index_select(0, index)) if keep_top else ~top
        return setup.rows(index, keep)

    values = _run(setup.call, n * points, build, rows_per_item=1, description=owner)
    drops = setup.original().unsqueeze(1) - values.reshape(n, points)
    return TextFaithfulnessResult(drops.mean(dim=1), drops, q.to(drops.dtype), owner)


def _bool_mask(
    owner: str, name: str, value: Any, n: int, length: int, device: Any, *, default: bool
) -> Tensor:
    if value is None:
        return torch.full((n, length), default, dtype=torch.bool, device=device)
    if not isinstance(value, Tensor) or tuple(value.shape) not in ((n, length), (length,)):
        fail(owner, name, f"a tensor of shape ({n}, {length}) or ({length},)", value)
    return value.to(device=device).bool().expand(n, length)


def _kendall_tau_b(a: Tensor, b: Tensor, valid: Tensor) -> Tensor:
    """Kendall's tau-b per row over the ``valid`` positions, ``(N, T) -> (N,)``.

    ``sum_{i<j} s_a s_b / sqrt(sum |s_a| sum |s_b|)`` with ``s = sign(v_i - v_j)``: ties
    drop out of the numerator and the denominators (the tau-b correction).
    """
    pair = valid.unsqueeze(2) & valid.unsqueeze(1)
    pair = torch.triu(pair, diagonal=1)
    sa = (a.unsqueeze(2) - a.unsqueeze(1)).sign() * pair
    sb = (b.unsqueeze(2) - b.unsqueeze(1)).sign() * pair
    numerator = (sa * sb).sum(dim=(1, 2))
    denominator = (sa.abs().sum(dim=(1, 2)) * sb.abs().sum(dim=(1, 2))).sqrt()
    return numerator / denominator
