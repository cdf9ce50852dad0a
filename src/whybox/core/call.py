"""Everything a method needs for one ``attribute`` call, prepared once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .chunks import ChunkSize, is_auto, resolve_chunk_rows
from .forward import Evaluator, RowBatch, evaluate
from .inputs import TENSOR, ForwardArgs, Inputs, prepare_forward_args, prepare_inputs
from .targets import Target, prepare_target
from .validation import check_bool

__all__ = [
    "Call",
    "prepare_call",
    "completeness_delta",
    "rows_outputs",
    "repeat_rows",
]


@dataclass(frozen=True)
class Call:
    owner: str
    inputs: Inputs
    target: Target
    extra: ForwardArgs
    evaluator: Evaluator
    chunk_rows: int
    progress: bool
    #: whether the caller left the chunk size to whybox (``"auto"`` / ``None``)
    chunk_auto: bool = True

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return self.inputs.tensors

    @property
    def batch_size(self) -> int:
        return self.inputs.batch_size


def prepare_call(
    owner: str,
    forward_func: Callable[..., Any],
    inputs: Any,
    *,
    target: Any = None,
    forward_args: Any = None,
    chunk_size: ChunkSize = "auto",
    show_progress: bool = False,
    require_float: bool = True,
) -> Call:
    """Validate and normalise the arguments every method shares.

    The caller's tensors are detached (never modified, never given ``requires_grad``).
    """
    if not callable(forward_func):
        from .validation import fail

        fail(owner, "forward_func", "a callable (a model or a function)", forward_func)
    if (
        type(inputs) is Tensor
        and inputs.dim() > 0
        and (not require_float or inputs.is_floating_point())
    ):
        # one valid tensor, the common case: what ``prepare_inputs`` gives, without flattening
        prepared = _new_object(Inputs)  # ``Inputs((inputs.detach(),), TENSOR)``
        prepared.__dict__.update({"tensors": (inputs.detach(),), "structure": TENSOR})
    else:
        prepared = prepare_inputs(inputs, owner=owner, require_float=require_float)
        prepared = Inputs(tuple(t.detach() for t in prepared.tensors), prepared.structure)
    if show_progress is not False:
        check_bool(owner, "show_progress", show_progress)
    batch_size = prepared.tensors[0].shape[0]
    target_ = prepare_target(target, batch_size, owner=owner)
    extra = prepare_forward_args(forward_args, batch_size)
    # the chunk probe's key: one row's shapes, dtypes and device (worked out when needed)
    evaluator = Evaluator(
        forward_func, prepared.structure, extra, target_, owner=owner, signature_of=prepared.tensors
    )
    chunk_rows = resolve_chunk_rows(chunk_size, prepared.tensors, owner=owner)
    chunk_auto = is_auto(chunk_size)
    # ``Call(...)`` with these fields, in field order, without the frozen dataclass's
    # ``__init__`` (an ``object.__setattr__`` per field: microseconds on tiny jobs)
    made = _new_object(Call)
    made.__dict__.update(
        {
            "owner": owner,
            "inputs": prepared,
            "target": target_,
            "extra": extra,
            "evaluator": evaluator,
            "chunk_rows": chunk_rows,
            "progress": show_progress,
            "chunk_auto": chunk_auto,
        }
    )
    return made


_new_object = object.__new__


def completeness_delta(
    call: Call,
    attributions: Sequence[Tensor],
    baselines: Sequence[Tensor],
    *,
    inputs: Sequence[Tensor] | None = None,
    example_index: Tensor | None = None,
) -> Tensor:
    """Per-row ``sum(attributions) - (f(inputs) - f(baselines))``, in one forward.

    ``inputs`` defaults to the call's inputs; rows of other inputs (e.g. noisy copies) name
    their examples with ``example_index``.
    """
    inputs = call.tensors if inputs is None else tuple(inputs)
    batch = inputs[0].shape[0]
    stacked = tuple(
        torch.cat([x, b.expand_as(x).to(x.dtype)], dim=0) for x, b in zip(inputs, baselines)
    )
    if example_index is None:
        example_index = torch.arange(batch, device=inputs[0].device)
    outputs = rows_outputs(call, stacked, torch.cat([example_index, example_index]))
    if outputs.dim() == 0:
        raise ValueError(
            f"{call.owner} cannot compute a per-example convergence delta for a model that "
            "returns one scalar per batch"
        )
    difference = outputs[:batch] - outputs[batch:]
    total = sum(a.reshape(batch, -1).sum(dim=1) for a in attributions)
    return (total.to(difference.dtype) - difference).detach()


def rows_outputs(call: Call, rows: Sequence[Tensor], example_index: Tensor) -> Tensor:
    """Selected outputs of ``rows`` (no gradients), evaluated ``call.chunk_rows`` at a time.

    Returns ``(rows,)``, or a 0-d tensor for models returning one scalar per batch (then all
    rows go through in one call, since chunking would change what the model sums).
    """
    rows = tuple(rows)
    n_rows = rows[0].shape[0]
    parts: list[Tensor] = []

    def build(start: int, stop: int) -> RowBatch:
        return RowBatch(tuple(r[start:stop] for r in rows), example_index[start:stop])

    def consume(start: int, stop: int, selected: Tensor, grads) -> None:
        parts.append(selected)

    evaluate(
        call.evaluator,
        n_items=n_rows,
        build=build,
        consume=consume,
        chunk_rows=call.chunk_rows,
        auto=call.chunk_auto,
    )
    if len(parts) == 1:
        return parts[0]
    if any(p.dim() == 0 for p in parts):
        return call.evaluator.outputs(RowBatch(rows, example_index))
    return torch.cat(parts)


def repeat_rows(call: Call, n_repeats: int) -> tuple[Any, Any, Tensor]:
    """Target and forward args for rows where each example is repeated ``n_repeats`` times
    consecutively (example-major, like ``repeat_interleave``), in the caller's own forms.

    Returns ``(target, forward_args, example_index)``.
    """
    batch = call.batch_size
    device = call.tensors[0].device
    example_index = torch.arange(batch, device=device).repeat_interleave(n_repeats)
    target = call.target.repeat_for(example_index.to("cpu"), every_example=n_repeats > 0)
    extra = call.extra.select(example_index)
    forward_args = None
    if extra.args or extra.kwargs:
        forward_args = dict(extra.kwargs) if extra.kwargs and not extra.args else extra.args
        if extra.args and extra.kwargs:
            raise ValueError(f"{call.owner} cannot mix positional and keyword forward args here")
    return target, forward_args, example_index
