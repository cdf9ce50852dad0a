"""Gradients of the selected output with respect to inputs (or tapped layers), chunked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor

from .call import Call
from .forward import RowBatch, evaluate

__all__ = ["row_gradients", "path_gradients"]


def row_gradients(
    call: Call,
    rows: Sequence[Tensor] | None = None,
    *,
    example_index: Tensor | None = None,
    tap: Callable[[], AbstractContextManager] | None = None,
) -> tuple[tuple[Tensor, ...], Tensor]:
    """Gradients at each row (default: the call's inputs), in chunks of ``call.chunk_rows``.

    Returns ``(grads, outputs)``: one gradient tensor per input (or tapped tensor), shaped
    like the rows, and the selected output per row.
    """
    rows = call.tensors if rows is None else tuple(rows)
    n_rows = rows[0].shape[0]
    if example_index is None:
        example_index = torch.arange(n_rows, device=rows[0].device)
    grads: list[list[Tensor]] = []
    outputs: list[Tensor] = []

    def build(start: int, stop: int) -> RowBatch:
        return RowBatch(tuple(r[start:stop] for r in rows), example_index[start:stop])

    def consume(start: int, stop: int, selected: Tensor, chunk_grads) -> None:
        grads.append(list(chunk_grads))
        outputs.append(selected.reshape(-1))

    evaluate(
        call.evaluator,
        n_items=n_rows,
        build=build,
        consume=consume,
        chunk_rows=call.chunk_rows,
        grad=True,
        tap=tap,
        progress=call.progress,
    )
    joined = tuple(torch.cat(parts, dim=0) for parts in zip(*grads))
    return joined, torch.cat(outputs)


def path_gradients(
    call: Call,
    starts: Sequence[Tensor],
    ends: Sequence[Tensor],
    alphas: Tensor,
    weights: Tensor,
    *,
    tap: Callable[[], AbstractContextManager] | None = None,
    site: Any = None,
    layout: Sequence[int] | None = None,
) -> tuple[Tensor, ...]:
    """Weighted sum of gradients along straight paths, per example.

    For every example ``i`` computes ``sum_s weights[s] * grad f(starts[i] + alphas[s] *
    (ends[i] - starts[i]))``. Rows are built lazily, step-major (all examples of step 0,
    then step 1, ...), and evaluated ``call.chunk_rows`` at a time, so memory is bounded by
    the chunk, not by the number of steps.

    Parameters
    ----------
    starts, ends : one tensor per input, each broadcastable to ``(N, ...)``
    alphas, weights : ``(n_steps,)`` points in [0, 1] and their weights

    With ``site`` (a :class:`~whybox.core.scope.LayerSite` and its ``layout``) the path
    runs through the layer instead: ``starts`` / ``ends`` are layer tensors, the model is
    fed the real inputs and the layer's values are substituted by the path points
    (Layer Integrated Gradients).

    Returns
    -------
    tuple of Tensor
        One ``(N, ...)`` tensor per input (or per tapped / substituted tensor).
    """
    batch = call.batch_size
    shapes = [(batch,) + tuple(e.shape[1:]) for e in ends]
    starts = tuple(s.expand(shape) for s, shape in zip(starts, shapes))
    diffs = tuple(e.expand(shape) - s for s, e, shape in zip(starts, ends, shapes))
    totals: list[Tensor | None] = [None] * len(starts) if tap is None else []
    device = call.tensors[0].device
    substituted: list[Tensor] = []
    if site is not None:
        totals = []

        def tap() -> AbstractContextManager:
            return site.substitute(substituted, layout)

    def split(start: int, stop: int) -> tuple[Tensor, Tensor]:
        index = torch.arange(start, stop, device=device)
        return index // batch, index % batch

    def build(start: int, stop: int) -> RowBatch:
        steps, examples = split(start, stop)
        points = []
        for s, d in zip(starts, diffs):
            alpha = alphas.index_select(0, steps).to(s.dtype).view((-1,) + (1,) * (s.dim() - 1))
            points.append(s.index_select(0, examples) + alpha * d.index_select(0, examples))
        if site is None:
            return RowBatch(tuple(points), examples)
        substituted[:] = points
        return RowBatch(tuple(x.index_select(0, examples) for x in call.tensors), examples)

    def consume(start: int, stop: int, selected: Tensor, grads) -> None:
        steps, examples = split(start, stop)
        if not totals:
            totals.extend([None] * len(grads))
        for position, grad in enumerate(grads):
            scale = weights.index_select(0, steps).to(grad.dtype)
            weighted = grad * scale.view((-1,) + (1,) * (grad.dim() - 1))
            if totals[position] is None:
                shape = (batch,) + tuple(grad.shape[1:])
                totals[position] = torch.zeros(shape, dtype=grad.dtype, device=grad.device)
            totals[position].index_add_(0, examples.to(grad.device), weighted)

    evaluate(
        call.evaluator,
        n_items=batch * len(alphas),
        build=build,
        consume=consume,
        chunk_rows=call.chunk_rows,
        grad=True,
        tap=tap,
        progress=call.progress,
    )
    return tuple(totals)
