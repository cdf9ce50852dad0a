"""Long inputs: overlapping token windows, and per-token scores merged back over the text.

A text longer than the model's window (512 tokens for BERT) is cut into windows of at most
``size`` content tokens that overlap by ``overlap`` tokens; each window is explained as its
own input (with the sequence's special tokens around it), and the windows' per-token
scores are merged into one score per token of the whole text. The last window is aligned
to the end of the text, so every window is full and every token is covered.

Merging rules:

* ``"center"`` (default): each token takes its score from the window in which it lies
  furthest from a cut edge (the text's own start and end are not cuts). A token scored
  this way saw as much real context as the windows allow: for a model whose output at a
  token depends on ``r`` neighbours each side, scores equal those of the whole input when
  ``overlap >= 4 r + 1`` (IG of a token depends on tokens up to ``2 r`` away).
* ``"mean"``: the average over every window that covers the token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from whybox.core.validation import check_choice, check_int, fail

__all__ = ["MERGES", "TokenWindows", "plan_windows", "window_weights", "merge_windows"]

MERGES = ("center", "mean")


@dataclass(frozen=True)
class TokenWindows:
    """Overlapping windows over ``length`` tokens.

    Attributes
    ----------
    length : int
        Number of tokens covered (the text's content tokens).
    size : int
        Tokens per window (every window has ``min(size, length)`` tokens).
    overlap : int
        Requested overlap of neighbouring windows (the last one may overlap more).
    starts : tuple of int
        First token of each window, increasing; window ``w`` is
        ``[starts[w], starts[w] + min(size, length))``.
    """

    length: int
    size: int
    overlap: int
    starts: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def spans(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of each window, ``stop`` exclusive."""
        width = min(self.size, self.length)
        return [(s, s + width) for s in self.starts]


def plan_windows(length: int, *, size: int, overlap: int = 0) -> TokenWindows:
    """Windows of ``size`` tokens over ``length`` tokens, neighbours sharing ``overlap``.

    Parameters
    ----------
    length : int
        Tokens to cover (>= 0).
    size : int
        Tokens per window (>= 1).
    overlap : int
        Shared tokens of neighbouring windows, ``0 <= overlap < size``.

    Returns
    -------
    TokenWindows
        One window when ``length <= size``; otherwise
        ``ceil((length - size) / (size - overlap)) + 1`` windows with stride
        ``size - overlap``, the last aligned to the end.
    """
    owner = "plan_windows"
    check_int(owner, "length", length, minimum=0)
    check_int(owner, "size", size, minimum=1)
    check_int(owner, "overlap", overlap, minimum=0)
    if overlap >= size:
        fail(owner, "overlap", f"smaller than the window size ({size})", overlap)
    if length <= size:
        return TokenWindows(length, size, overlap, (0,))
    stride = size - overlap
    count = math.ceil((length - size) / stride) + 1
    starts = [min(w * stride, length - size) for w in range(count)]
    return TokenWindows(length, size, overlap, tuple(starts))


def window_weights(windows: TokenWindows, *, how: str = "center") -> Tensor:
    """How much each window's score counts for each token.

    Parameters
    ----------
    windows : TokenWindows
    how : {"center", "mean"}
        See the module notes.

    Returns
    -------
    Tensor
        ``(n_windows, length)`` float64; each column sums to 1 (zero outside a window).
    """
    check_choice("window_weights", "how", how, MERGES)
    length = windows.length
    positions = torch.arange(length, dtype=torch.float64)
    covers, distances = [], []
    for start, stop in windows.spans:
        inside = (positions >= start) & (positions < stop)
        # distance to the nearest cut; the text's own ends are no cut
        left = positions - start if start > 0 else torch.full_like(positions, math.inf)
        right = (stop - 1) - positions if stop < length else torch.full_like(positions, math.inf)
        covers.append(inside)
        distances.append(torch.where(inside, torch.minimum(left, right), -1.0))
    cover = torch.stack(covers).to(torch.float64)
    if how == "mean":
        return cover / cover.sum(0).clamp(min=1.0)
    best = torch.stack(distances).argmax(0)  # ties: the earlier window
    weights = torch.zeros_like(cover)
    weights[best, torch.arange(length)] = 1.0
    return weights * cover


def merge_windows(
    values: Sequence[Tensor], windows: TokenWindows, *, how: str = "center"
) -> Tensor:
    """Per-token values of every window merged into one value per token of the text.

    Parameters
    ----------
    values : sequence of Tensor
        One per window, shaped ``(window_length, ...)`` (the window's own tokens; any
        trailing dimensions, e.g. ``(W, D)`` embedding attributions).
    windows : TokenWindows
    how : {"center", "mean"}

    Returns
    -------
    Tensor
        ``(length, ...)``, dtype and device of ``values[0]``.
    """
    owner = "merge_windows"
    if len(values) != len(windows):
        fail(
            owner,
            "values",
            f"one tensor per window ({len(windows)})",
            f"{len(values)} tensors",
            raw=True,
        )
    spans = windows.spans
    for value, (start, stop) in zip(values, spans):
        if not isinstance(value, Tensor) or value.dim() < 1 or value.shape[0] != stop - start:
            fail(owner, "values", f"tensors of {stop - start} rows (the window's tokens)", value)
    first = values[0]
    weights = window_weights(windows, how=how).to(device=first.device, dtype=first.dtype)
    merged = first.new_zeros((windows.length, *first.shape[1:]))
    tail = (1,) * (first.dim() - 1)
    for w, (value, (start, stop)) in enumerate(zip(values, spans)):
        merged[start:stop] += weights[w, start:stop].reshape(-1, *tail) * value
    return merged
