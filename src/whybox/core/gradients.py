"""Gradients of the selected output with respect to inputs (or tapped layers), chunked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor

from .call import Call
from .chunks import counting, whole_groups
from .forward import Evaluator, RowBatch, _row_batch, evaluate, one_chunk

__all__ = ["row_gradients", "walk_path", "path_gradients", "recording"]


def row_gradients(
    call: Call,
    rows: Sequence[Tensor] | None = None,
    *,
    example_index: Tensor | None = None,
    tap: Callable[[], AbstractContextManager] | None = None,
    record: list | None = None,
    input_pass: Callable[[], AbstractContextManager] | None = None,
) -> tuple[tuple[Tensor, ...], Tensor]:
    """Gradients at each row (default: the call's inputs), in chunks of ``call.chunk_rows``.

    Returns ``(grads, outputs)``: one gradient tensor per input (or tapped tensor), shaped
    like the rows, and the selected output per row. With ``tap`` and a ``record`` list, the
    tapped tensors' values (e.g. layer activations, from the same forward) are put there.
    With ``tap`` and ``input_pass``, the gradients with respect to the floating-point
    inputs follow the tapped ones, from a second backward of each chunk's forward run
    inside ``input_pass()`` (see :meth:`~whybox.core.forward.Evaluator.gradients`).
    """
    if (
        rows is None
        and example_index is None
        and tap is None
        and input_pass is None
        and one_chunk(
            call.tensors[0].shape[0],
            max(1, call.chunk_rows),
            auto=call.chunk_auto,
            progress=call.progress,
        )
    ):
        # the call's own rows in one chunk (the common tiny job): what ``evaluate`` runs
        # for them below, without building its closures, lists and joins
        selected, chunk_grads = call.evaluator.gradients(
            _row_batch(call.tensors, None), tap=None, on_graph=None, input_pass=None
        )
        if record is not None:
            record[:] = []  # no tap: nothing recorded
        grads = tuple(_joined_gradients((g,)) for g in chunk_grads)
        return grads, selected if selected.dim() == 1 else selected.reshape(-1)
    rows = call.tensors if rows is None else tuple(rows)
    n_rows = rows[0].shape[0]
    # ``None``: the rows are the batch in order (a chunk holding them all needs no index)
    in_order = example_index is None and n_rows == call.batch_size
    if example_index is None:
        example_index = torch.arange(n_rows, device=rows[0].device) if not in_order else None
    grads: list[list[Tensor]] = []
    outputs: list[Tensor] = []
    values: list[Tensor] = []
    chunks_of_values: list[list[Tensor]] = []
    if tap is not None and record is not None:
        tap = recording(tap, values)

    def build(start: int, stop: int) -> RowBatch:
        nonlocal example_index
        if example_index is None:
            if start == 0 and stop == n_rows:
                return _row_batch(rows, None)
            example_index = torch.arange(n_rows, device=rows[0].device)
        return RowBatch(tuple(r[start:stop] for r in rows), example_index[start:stop])

    def consume(start: int, stop: int, selected: Tensor, chunk_grads) -> None:
        grads.append(chunk_grads)
        outputs.append(selected if selected.dim() == 1 else selected.reshape(-1))
        if record is not None:
            chunks_of_values.append(list(values))

    evaluate(
        call.evaluator,
        n_items=n_rows,
        build=build,
        consume=consume,
        chunk_rows=call.chunk_rows,
        auto=call.chunk_auto,
        grad=True,
        tap=tap,
        progress=call.progress,
        input_pass=input_pass,
    )
    joined = tuple(_joined_gradients(parts) for parts in zip(*grads))
    if record is not None:
        # copies: a recorded value may share memory with the caller's tensors
        record[:] = [torch.cat(parts, dim=0) for parts in zip(*chunks_of_values)]
    # one chunk's outputs as they are (detached by the evaluator; callers only read them)
    return joined, outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _joined_gradients(parts: Sequence[Tensor]) -> Tensor:
    """The chunks' gradients concatenated along rows; one contiguous chunk as it is.

    Skipping the copy is safe for gradients only: autograd computes them (or zeros, or
    the ones the engine passes as the output's gradient), never the caller's tensors.
    """
    if len(parts) == 1 and parts[0].is_contiguous():
        return parts[0]
    return torch.cat(list(parts), dim=0)


class _Recorded:
    """``tap()``, putting the tapped tensors' values in ``store`` on a successful exit."""

    __slots__ = ("_context", "_store", "_captured")

    def __init__(self, context: AbstractContextManager, store: list) -> None:
        self._context, self._store = context, store

    def __enter__(self) -> Any:
        self._captured = self._context.__enter__()
        return self._captured

    def __exit__(self, exc_type: Any, *exc_info: Any) -> Any:
        suppressed = self._context.__exit__(exc_type, *exc_info)
        if exc_type is None:
            self._store[:] = [t.detach() for t in self._captured.tensors]
        return suppressed


def recording(tap: Callable[[], AbstractContextManager], store: list) -> Callable:
    """Wrap a ``tap`` so the tapped tensors' values of the last chunk land in ``store``."""

    def recorded() -> AbstractContextManager:
        return _Recorded(tap(), store)

    return recorded


def walk_path(
    call: Call,
    starts: Sequence[Tensor],
    ends: Sequence[Tensor],
    alphas: Tensor,
    consume: Callable[[Tensor, Tensor, tuple[Tensor, ...], list[Tensor]], None] | None,
    *,
    tap: Callable[[], AbstractContextManager] | None = None,
    site: Any = None,
    layout: Sequence[int] | None = None,
    consume_range: Callable[[int, int, tuple[Tensor, ...]], None] | None = None,
) -> None:
    """Evaluate gradients at ``starts + alphas[s] * (ends - starts)`` for every step and example.

    Rows are built lazily, step-major (all examples of step 0, then step 1, ...), and
    evaluated ``call.chunk_rows`` at a time, so memory is bounded by the chunk, not by the
    number of steps. For each chunk ``consume(steps, examples, grads, values)`` receives the
    ``(rows,)`` step and example indices, the gradients, and (with ``tap``) the tapped
    tensors' values.

    Parameters
    ----------
    starts, ends : one tensor per input, each broadcastable to ``(N, ...)``
    alphas : ``(n_steps,)`` points in [0, 1]
    tap : gradients with respect to tapped tensors (e.g. a layer) instead of the inputs
    site, layout : a :class:`~whybox.core.scope.LayerSite` and its layout: the path runs
        through the layer (``starts`` / ``ends`` are layer tensors, the model is fed the real
        inputs and the layer's values are substituted by the path points)
    consume_range : instead of ``consume``, receives ``(start, stop, grads)`` with the item
        range (item ``i`` is step ``i // N`` of example ``i % N``), no index tensors built
    """
    batch = call.batch_size
    shapes = [(batch,) + tuple(e.shape[1:]) for e in ends]
    # a tensor already of its full shape is used as it is (expanding it to its own shape
    # gives a view with the same values: one dispatch less per input)
    starts = tuple(s if s.shape == shape else s.expand(shape) for s, shape in zip(starts, shapes))
    diffs = tuple(
        (e if e.shape == shape else e.expand(shape)) - s
        for s, e, shape in zip(starts, ends, shapes)
    )
    device = call.tensors[0].device
    substituted: list[Tensor] = []
    values: list[Tensor] = []
    if site is not None:

        def tap() -> AbstractContextManager:
            return site.substitute(substituted, layout)

    elif tap is not None:
        tap = recording(tap, values)

    def split(start: int, stop: int) -> tuple[Tensor, Tensor]:
        index = torch.arange(start, stop, device=device)
        return index // batch, index % batch

    # rows of whole steps, fed as they are, need no example index where nothing reads one
    # (a plain evaluator, a target that ignores it and no batched forward args): then the
    # ``(rows,)`` index tensors are not built at all
    indexless = site is None and _ignores_example_index(call.evaluator)

    def build(start: int, stop: int) -> RowBatch:
        whole = _whole(start, stop, batch)
        if whole and indexless:
            return _row_batch(_whole_points(start, stop), None)
        steps, examples = split(start, stop)
        points: list[Tensor] = []
        if whole:
            points.extend(_whole_points(start, stop))
        else:
            for s, d in zip(starts, diffs):
                alpha = alphas.index_select(0, steps).to(s.dtype)
                alpha = alpha.view((-1,) + (1,) * (s.dim() - 1))
                points.append(s.index_select(0, examples) + alpha * d.index_select(0, examples))
        if site is None:
            return RowBatch(tuple(points), examples)
        substituted[:] = points
        return RowBatch(tuple(x.index_select(0, examples) for x in call.tensors), examples)

    def _whole_points(start: int, stop: int) -> tuple[Tensor, ...]:
        # whole steps: broadcast over the batch instead of gathering rows
        k = (stop - start) // batch
        points = []
        for s, d in zip(starts, diffs):
            alpha = alphas[start // batch : stop // batch].to(s.dtype)
            alpha = alpha.view((k,) + (1,) * s.dim())
            point = s.unsqueeze(0) + alpha * d.unsqueeze(0)
            points.append(point.reshape((k * batch,) + tuple(s.shape[1:])))
        return tuple(points)

    def on_chunk(start: int, stop: int, selected: Tensor, grads) -> None:
        if consume_range is not None:
            consume_range(start, stop, grads)
            return
        steps, examples = split(start, stop)
        consume(steps, examples, grads, substituted if site is not None else values)

    evaluate(
        call.evaluator,
        n_items=batch * len(alphas),
        build=build,
        consume=on_chunk,
        chunk_rows=whole_groups(
            call.chunk_rows
            if site is None
            else counting(
                call.chunk_rows,
                auto=call.chunk_auto,
                tensors=tuple(call.tensors) + tuple(ends),
                owner=call.owner,
            ),
            batch,
        ),
        auto=call.chunk_auto,
        group=batch,
        grad=True,
        tap=tap,
        progress=call.progress,
    )


#: target kinds whose selection never reads a row batch's example index
_INDEX_FREE_TARGETS = frozenset({"none", "all", "index", "callable"})


def _ignores_example_index(evaluator: Any) -> bool:
    """Whether ``evaluator`` gives the same results for a row batch without its example
    index: exactly an :class:`~whybox.core.forward.Evaluator` (subclasses may read it), a
    target that ignores it and no forward argument split by example."""
    return (
        type(evaluator) is Evaluator
        and evaluator.target.kind in _INDEX_FREE_TARGETS
        and not evaluator.extra.has_batched
    )


def _whole(start: int, stop: int, batch: int) -> bool:
    """Whether items ``[start, stop)`` are whole steps (never for an empty batch)."""
    return batch > 0 and start % batch == 0 and stop % batch == 0


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

    For every example ``i``: ``sum_s weights[s] * grad f(starts[i] + alphas[s] * (ends[i] -
    starts[i]))`` (see :func:`walk_path` for ``tap`` / ``site``).

    Returns
    -------
    tuple of Tensor
        One ``(N, ...)`` tensor per input (or per tapped / substituted tensor).
    """
    batch = call.batch_size
    totals: list[Tensor] = []

    def consume(start: int, stop: int, grads) -> None:
        if not totals:
            totals.extend(
                torch.zeros((batch,) + tuple(g.shape[1:]), dtype=g.dtype, device=g.device)
                for g in grads
            )
        for total, grad in zip(totals, grads):
            if _whole(start, stop, batch):
                # whole steps: a weighted sum over the step axis, no scatter
                k = (stop - start) // batch
                scale = weights[start // batch : stop // batch].to(grad.dtype)
                grouped = grad.reshape((k, batch) + tuple(grad.shape[1:]))
                total.add_((grouped * scale.view((k,) + (1,) * grad.dim())).sum(0))
                continue
            index = torch.arange(start, stop, device=grad.device)
            scale = weights.index_select(0, index // batch).to(grad.dtype)
            weighted = grad * scale.view((-1,) + (1,) * (grad.dim() - 1))
            total.index_add_(0, index % batch, weighted)

    walk_path(
        call, starts, ends, alphas, None, tap=tap, site=site, layout=layout, consume_range=consume
    )
    return tuple(totals)
