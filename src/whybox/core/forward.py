"""The one place that calls the model.

Methods describe the rows they need as *items* (an IG step of one example, a DeepLift
input/baseline pair, a perturbation...) and a ``build(start, stop)`` function that makes the
rows of items ``[start, stop)`` lazily; :func:`evaluate` runs them in chunks under a row
budget, optionally with gradients, and hands each chunk's results to ``consume``. No method
materialises all its rows, so peak memory is bounded by the chunk, not by ``n_steps``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from .inputs import ForwardArgs, Structure
from .targets import Target
from .validation import fail

__all__ = ["RowBatch", "Evaluator", "auto_chunk_rows", "resolve_chunk_rows", "evaluate"]

ChunkSize = int | Literal["auto"] | None

# Input bytes per chunk that "auto" aims for. On CPU small chunks keep activations in cache
# (measured: 8-64 rows of a 224x224 CNN beat bigger ones); on GPU bigger chunks fill the device.
_AUTO_BYTES = {"cpu": 2**20, "other": 32 * 2**20}
_AUTO_MIN_ROWS = 8
_AUTO_MAX_ROWS = {"cpu": 4096, "other": 65536}


@dataclass(frozen=True)
class RowBatch:
    """Rows to feed the model.

    Attributes
    ----------
    inputs
        One tensor per model input, each of shape ``(rows, ...)``.
    example_index
        ``(rows,)`` long tensor: the original example each row belongs to; used to select
        per-example targets and batched extra forward arguments. ``None`` when the rows are
        the original batch in order.
    """

    inputs: tuple[Tensor, ...]
    example_index: Tensor | None = None


def auto_chunk_rows(example_bytes: int, device: torch.device) -> int:
    """Rows per forward chosen for throughput under a memory bound."""
    key = "cpu" if device.type == "cpu" else "other"
    rows = _AUTO_BYTES[key] // max(example_bytes, 1)
    return int(min(max(rows, _AUTO_MIN_ROWS), _AUTO_MAX_ROWS[key]))


def resolve_chunk_rows(chunk_size: ChunkSize, tensors: Sequence[Tensor], *, owner: str) -> int:
    """Turn the batching knob into a row count (``None`` / ``"auto"`` pick one)."""
    if chunk_size is None or chunk_size == "auto":
        example_bytes = sum(t[:1].numel() * t.element_size() for t in tensors)
        return auto_chunk_rows(example_bytes, tensors[0].device)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        fail(owner, "chunk_size", "an int >= 1, 'auto' or None", chunk_size)
    return chunk_size


class Evaluator:
    """Calls ``forward_func`` on rows, selects the target and optionally differentiates.

    Parameters
    ----------
    forward_func
        The model or any callable.
    structure
        How the caller arranged inputs (so the model is called the way it expects).
    extra
        Additional forward arguments, expanded per row by example index.
    target
        Which output scalar to explain.
    owner
        Name used in error messages.
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        structure: Structure,
        extra: ForwardArgs,
        target: Target,
        *,
        owner: str,
    ) -> None:
        self.forward_func = forward_func
        self.structure = structure
        self.extra = extra
        self.target = target
        self.owner = owner
        self.n_calls = 0

    def raw_output(self, rows: RowBatch) -> Tensor:
        self.n_calls += 1
        output = self.structure.call(
            self.forward_func, rows.inputs, self.extra.select(rows.example_index)
        )
        if not isinstance(output, Tensor):
            fail(
                self.owner,
                "forward_func",
                "a callable returning a tensor (wrap models that return tuples or dicts)",
                f"an output of type {type(output).__name__}",
                type_error=True,
                raw=True,
            )
        return output

    def outputs(self, rows: RowBatch) -> Tensor:
        """Selected outputs without gradients: ``(rows,)`` (or 0-d for batch-scalar models)."""
        with torch.no_grad():
            return self.target.select(self.raw_output(rows), rows.example_index)

    def gradients(
        self,
        rows: RowBatch,
        *,
        tap: Callable[[], AbstractContextManager] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Selected outputs and their gradients.

        Without ``tap`` gradients are taken with respect to the input rows; with ``tap`` (a
        factory of a hook context whose ``tensors`` are captured during the forward, such as
        a layer's output) with respect to those tensors.
        """
        with torch.enable_grad():
            if tap is None:
                leaves = tuple(t.detach().requires_grad_(True) for t in rows.inputs)
                rows = RowBatch(leaves, rows.example_index)
                context: AbstractContextManager = nullcontext()
            else:
                # a tapped layer fed directly by the inputs (its input, or an identity
                # layer) needs a graph there too; integer inputs (token ids) cannot have one
                rows = RowBatch(
                    tuple(
                        t.detach().requires_grad_(True) if t.is_floating_point() else t
                        for t in rows.inputs
                    ),
                    rows.example_index,
                )
                context = tap()
            with context as captured:
                selected = self.target.select(self.raw_output(rows), rows.example_index)
                wrt = leaves if tap is None else tuple(captured.tensors)
            grads = torch.autograd.grad(
                selected.sum(), wrt, allow_unused=True, materialize_grads=True
            )
        return selected.detach(), tuple(grads)


def evaluate(
    evaluator: Evaluator,
    *,
    n_items: int,
    build: Callable[[int, int], RowBatch],
    consume: Callable[[int, int, Tensor, tuple[Tensor, ...] | None], None],
    chunk_rows: int,
    rows_per_item: int = 1,
    grad: bool = False,
    tap: Callable[[], AbstractContextManager] | None = None,
    progress: bool = False,
    description: str | None = None,
) -> None:
    """Evaluate ``n_items`` items in chunks of at most ``chunk_rows`` rows.

    ``build(start, stop)`` makes the rows of items ``[start, stop)``;
    ``consume(start, stop, outputs, grads)`` receives the selected outputs and, when ``grad``,
    the gradients (one per input, or per tapped tensor) of those rows.
    """
    items_per_chunk = max(1, chunk_rows // rows_per_item)
    bar = _progress_bar(n_items, progress, description or evaluator.owner)
    try:
        for start in range(0, n_items, items_per_chunk):
            stop = min(n_items, start + items_per_chunk)
            rows = build(start, stop)
            if grad:
                outputs, grads = evaluator.gradients(rows, tap=tap)
            else:
                outputs, grads = evaluator.outputs(rows), None
            consume(start, stop, outputs, grads)
            if bar is not None:
                bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total: int, progress: bool | str, description: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    label = progress if isinstance(progress, str) else description
    return tqdm(total=total, desc=label, unit="item")
