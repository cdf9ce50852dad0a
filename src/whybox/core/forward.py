"""The one place that calls the model.

Methods describe the rows they need as *items* (an IG step of one example, a DeepLift
input/baseline pair, a perturbation...) and a ``build(start, stop)`` function that makes the
rows of items ``[start, stop)`` lazily; :func:`evaluate` runs them in chunks under a row
budget, optionally with gradients, and hands each chunk's results to ``consume``. No method
materialises all its rows, so peak memory is bounded by the chunk, not by ``n_steps``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .chunks import (
    ChunkPlan,
    ChunkSize,
    auto_chunk_rows,
    probe_may_split,
    resolve_chunk_rows,
    saved_bytes,
)
from .hooks import Captured, describe_layer
from .inputs import ForwardArgs, Structure
from .targets import Target
from .validation import fail

# the chunk policy lives in core/chunks.py; re-exported for the modules that import it here
__all__ = [
    "RowBatch",
    "Evaluator",
    "ChunkSize",
    "auto_chunk_rows",
    "resolve_chunk_rows",
    "evaluate",
    "autograd_options",
    "progress_bar",
    "to_device",
]

#: extra keyword arguments for ``torch.autograd.grad`` in this context (Captum's
#: ``grad_kwargs``, e.g. ``{"materialize_grads": True}``)
_AUTOGRAD_OPTIONS: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "autograd_options", default=None
)
#: a progress bar that every evaluation in this context advances (one bar per call)
_OUTER_BAR: ContextVar[Any] = ContextVar("outer_progress_bar", default=None)


@contextmanager
def autograd_options(options: Mapping[str, Any] | None) -> Iterator[None]:
    """Pass ``options`` to every ``torch.autograd.grad`` the engine calls in this context.

    Parameters
    ----------
    options
        Keyword arguments of ``torch.autograd.grad`` (``None`` or empty: none). They are
        added to the engine's own (``allow_unused``, ...) and take precedence.
    """
    token = _AUTOGRAD_OPTIONS.set(dict(options or {}))
    try:
        yield
    finally:
        _AUTOGRAD_OPTIONS.reset(token)


@contextmanager
def progress_bar(label: str | None) -> Iterator[Any]:
    """One progress bar for everything evaluated in this context (``None``: no bar).

    Evaluations inside add their items to the bar's total and advance it, so a call that
    runs several evaluations still shows one bar, which ends at 100%.
    """
    if label is None:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=0, desc=label, unit="item")
    token = _OUTER_BAR.set(bar)
    try:
        yield bar
    finally:
        _OUTER_BAR.reset(token)
        bar.close()


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


_new_object = object.__new__


def _row_batch(inputs: tuple[Tensor, ...], example_index: Tensor | None) -> RowBatch:
    """``RowBatch(inputs, example_index)`` without the frozen dataclass's ``__init__`` (an
    ``object.__setattr__`` per field, paid per chunk on tiny jobs): the same fields."""
    made = _new_object(RowBatch)
    made.__dict__.update({"inputs": inputs, "example_index": example_index})
    return made


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
    signature
        What the cost of a row depends on besides the model (e.g. the inputs' shapes without
        the batch dimension, dtypes and device): part of the key under which the chunk probe
        remembers its measurements. ``None``: the model and the automatic chunk only.
    signature_of
        Instead of ``signature``: rows whose one-row shapes, dtypes and devices are the
        signature, worked out when first read (a call evaluated in one chunk never reads it).
    """

    def __init__(
        self,
        forward_func: Callable[..., Any],
        structure: Structure,
        extra: ForwardArgs,
        target: Target,
        *,
        owner: str,
        signature: Hashable = None,
        signature_of: tuple[Tensor, ...] | None = None,
    ) -> None:
        self.forward_func = forward_func
        self.structure = structure
        self.extra = extra
        self.target = target
        self.owner = owner
        self._signature = signature
        self._signature_of = signature_of
        self.n_calls = 0

    @property
    def signature(self) -> Hashable:
        """The chunk probe's key beside the model (see the class parameters)."""
        if self._signature_of is not None:
            tensors, self._signature_of = self._signature_of, None
            self._signature = tuple((tuple(t.shape[1:]), t.dtype, t.device) for t in tensors)
        return self._signature

    def raw_output(self, rows: RowBatch) -> Tensor:
        self.n_calls += 1
        output = self.structure.call(
            self.forward_func, rows.inputs, self.extra.select(rows.example_index)
        )
        if not isinstance(output, Tensor):
            output = _logits_of(output)
        if isinstance(output, (int, float)) and not isinstance(output, bool):
            # a Python number for the whole batch (a loss, a count): int64 / float64, the
            # dtypes Python's number types map to
            output = torch.tensor(
                output, dtype=torch.int64 if isinstance(output, int) else torch.float64
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
        on_graph: Callable[[Tensor], None] | None = None,
        input_pass: Callable[[], AbstractContextManager] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Selected outputs and their gradients.

        ``on_graph`` (optional) is called with the selected outputs, still on their autograd
        graph, between the forward and the backward (the chunk probe measures the saved
        activations there).

        Without ``tap`` gradients are taken with respect to the input rows; an input the
        output does not use gets zeros (as in Captum). With ``tap`` (a factory of a hook
        context yielding a :class:`~whybox.core.hooks.Captured`, such as a layer's capture)
        they are taken with respect to the tapped tensors, which must all be on the output's
        autograd graph: a layer that did not run, or whose values the output does not depend
        on through autograd (a layer inside compiled code or under ``torch.no_grad``), is a
        clear error naming the layer, never a zero gradient.

        With ``tap`` and ``input_pass`` (a factory of a context), the gradients with respect
        to the floating-point input rows follow, from a second backward of the same forward
        run inside ``input_pass()``: a context that changes what the backward computes
        (module rules switched on) gives two kinds of gradients for one forward.

        Returns
        -------
        (Tensor, tuple of Tensor)
            The selected outputs ``(rows,)`` (or 0-d) and one gradient per input / tapped
            tensor, shaped like it (with ``input_pass``: per tapped tensor, then per
            floating-point input).
        """
        with _GRAD_ON if torch.is_grad_enabled() else torch.enable_grad():
            if tap is None:
                inputs = rows.inputs
                if len(inputs) == 1:  # one input: the same leaves, no generator
                    leaves = (inputs[0].detach().requires_grad_(True),)
                else:
                    leaves = tuple(t.detach().requires_grad_(True) for t in inputs)
                rows = _row_batch(leaves, rows.example_index)
                # no hook context to enter (what ``nullcontext()`` would do)
                selected = self.target.select(self.raw_output(rows), rows.example_index)
                wrt = leaves
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
                with tap() as captured:
                    selected = self.target.select(self.raw_output(rows), rows.example_index)
            if not (selected.is_floating_point() or selected.is_complex()):
                # integer outputs (counts, argmax labels) have no gradient: say so, not
                # autograd's "does not require grad" (or a misleading layer error)
                fail(
                    self.owner,
                    "forward_func",
                    "a model with floating-point outputs for a gradient method",
                    f"outputs of dtype {selected.dtype}",
                    raw=True,
                    type_error=True,
                )
            if on_graph is not None:
                on_graph(selected)
            if tap is None:
                grads = _input_gradients(selected, wrt)
            else:
                grads = self._tapped_gradients(selected, captured, retain=input_pass is not None)
                if input_pass is not None:
                    leaves = tuple(t for t in rows.inputs if t.requires_grad)
                    with input_pass():
                        grads = tuple(grads) + _input_gradients(selected, leaves)
        return selected.detach(), tuple(grads)

    def _tapped_gradients(
        self, selected: Tensor, captured: Any, *, retain: bool = False
    ) -> tuple[Tensor, ...]:
        """Gradients of ``selected`` w.r.t. the tapped tensors, each checked to be on the graph.

        ``captured`` normally is a :class:`Captured`; a tap yielding something else must
        give ``tensors``. ``retain`` keeps the graph for another backward.
        """
        is_captured = isinstance(captured, Captured)
        if is_captured:
            captured.check_seen(self.owner)
        wrt = tuple(captured.tensors)
        if not wrt:
            fail(
                self.owner,
                "layer",
                "a module that runs in the model's forward",
                "no tensor",
                raw=True,
            )
        off = [i for i, t in enumerate(wrt) if not t.requires_grad]
        if not off and selected.requires_grad:
            options = {"allow_unused": True, **(_AUTOGRAD_OPTIONS.get() or {})}
            if retain:
                options["retain_graph"] = True
            grads = torch.autograd.grad(
                (selected,), wrt, grad_outputs=(torch.ones_like(selected),), **options
            )
            off = [i for i, g in enumerate(grads) if g is None]
            if not off:
                return grads
        index = off[0] if off else 0
        layer = captured.layer_of(index) if is_captured else None
        tensor = wrt[index]
        why = (
            "an integer tensor, which has no gradient"
            if not (tensor.is_floating_point() or tensor.is_complex())
            else "a tensor the selected output does not depend on through autograd"
        )
        fail(
            self.owner,
            "layer",
            "a module whose "
            + ("inputs" if is_captured and captured.to_input else "output")
            + " the model's output depends on through autograd (a layer run inside "
            "torch.compile'd code or under torch.no_grad is off the graph: explain the "
            "uncompiled module)",
            f"{describe_layer(layer)} giving, as tapped tensor {index}, {why}",
            raw=True,
        )
        raise AssertionError  # unreachable


_BATCH_NORMS = frozenset({"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"})


def rows_independent(forward_func: Any) -> bool:
    """Whether ``forward_func`` is known to treat its rows independently, so a call that
    fits in one chunk may be split by the chunk probe with the same results.

    Only an ``nn.Module`` (or a bound method of one; eager or scripted) qualifies, and
    only without a batch norm in training mode (it normalises with the chunk's own
    statistics). Other callables may mix rows in ways that cannot be seen: their calls
    that fit in one chunk stay one forward, as in Captum.
    """
    owner = getattr(forward_func, "__self__", forward_func)
    if not isinstance(owner, torch.nn.Module):
        return False
    for module in owner.modules():
        if not module.training:
            continue
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            return False
        if getattr(module, "original_name", None) in _BATCH_NORMS:  # scripted
            return False
    return True


#: the context of a backward run where gradients are on already (nothing to switch)
_GRAD_ON = nullcontext()

#: the engine call behind ``torch.autograd.grad`` (``None`` where this torch has no such
#: private function: then ``torch.autograd.grad`` itself is called)
_engine_run_backward: Callable[..., tuple[Tensor | None, ...]] | None = getattr(
    torch.autograd.graph, "_engine_run_backward", None
)
_has_torch_function = torch.overrides.has_torch_function


def _input_gradients(selected: Tensor, leaves: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """``d selected.sum() / d leaves``, zeros for a leaf the output does not use."""
    # ones as the output gradient: the gradient of the sum without a sum in the graph
    ones = torch.ones_like(selected)
    if (
        _engine_run_backward is not None
        and not _AUTOGRAD_OPTIONS.get()
        and not _has_torch_function((selected, *leaves))
    ):
        # what ``torch.autograd.grad`` runs for these arguments (plain tensors, a gradient
        # given for the one output, no options), without its Python argument handling:
        # microseconds per call on tiny jobs; the same engine, so the same gradients
        grads = _engine_run_backward((selected,), (ones,), False, False, leaves, True)
        if any(g is None for g in grads):  # ``materialize_grads=True``
            grads = tuple(
                torch.zeros_like(leaf) if g is None else g for g, leaf in zip(grads, leaves)
            )
        return grads
    return torch.autograd.grad(
        (selected,),
        leaves,
        grad_outputs=(ones,),
        **{"allow_unused": True, "materialize_grads": True, **(_AUTOGRAD_OPTIONS.get() or {})},
    )


def _logits_of(output: Any) -> Any:
    """The ``logits`` of a Hugging Face model output (a ``ModelOutput`` or a dict with a
    ``"logits"`` tensor), the one structured output explained without a wrapper; anything
    else is returned unchanged (and refused by the caller with a clear error)."""
    logits = output.get("logits") if isinstance(output, Mapping) else None
    if logits is None:
        logits = getattr(output, "logits", None)
    return logits if isinstance(logits, Tensor) else output


def one_chunk(
    n_items: int, items_per_chunk: int, *, auto: bool, progress: bool, group: int = 1
) -> bool:
    """Whether :func:`evaluate` runs ``n_items`` items as one plain chunk: they fit in
    ``items_per_chunk``, no progress bar is shown, and the probe may not split them.

    Parameters
    ----------
    n_items, items_per_chunk
        The evaluation's items, and how many fit in a chunk.
    auto, progress, group
        As :func:`evaluate` takes them.

    Returns
    -------
    bool
        ``True``: one ``build(0, n_items)``, one model call, no plan.
    """
    return (
        n_items <= items_per_chunk
        and not progress
        and _OUTER_BAR.get() is None
        and not (auto and probe_may_split(items_per_chunk, n_items, group=group))
    )


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
    auto: bool = False,
    group: int = 1,
    input_pass: Callable[[], AbstractContextManager] | None = None,
    on_graph: Callable[[Tensor], None] | None = None,
) -> None:
    """Evaluate ``n_items`` items in chunks of at most ``chunk_rows`` rows.

    ``build(start, stop)`` makes the rows of items ``[start, stop)``;
    ``consume(start, stop, outputs, grads)`` receives the selected outputs and, when ``grad``,
    the gradients (one per input, or per tapped tensor) of those rows. With
    ``n_items == 0`` there is exactly one chunk, ``build(0, 0)`` / ``consume(0, 0, ...)``,
    so a zero-row batch goes through the model once (most modules accept it) and results
    get their shapes.

    With ``auto`` (the caller's chunk is automatic: ``Call.chunk_auto``) ``chunk_rows`` is
    the byte-sized choice and the chunk size is refined by measured throughput
    (:class:`~whybox.core.chunks.ChunkPlan`): the first chunks are timed at a few sizes and
    the fastest is used for the rest, in whole items and, with ``group > 1``, whole groups
    of ``group`` items. An automatic chunk holding every item is kept (one forward) unless
    the model gave one output per row in an earlier evaluation of this kind: then a split
    into a few equal chunks is timed too. A caller whose rows must share one forward passes
    ``auto=False``. Without ``auto`` every chunk has ``chunk_rows // rows_per_item`` items
    (at least one).
    ``input_pass`` (with ``grad`` and ``tap``): see :meth:`Evaluator.gradients`.
    ``on_graph`` (with ``grad``): called with each chunk's selected outputs, still on their
    autograd graph, before the backward (see :meth:`Evaluator.gradients`).
    """
    items_per_chunk = max(1, chunk_rows // rows_per_item)
    if one_chunk(n_items, items_per_chunk, auto=auto, progress=progress, group=group):
        # one chunk and no bar: nothing to plan, probe or show
        rows = build(0, n_items)
        if grad:
            outputs, grads = evaluator.gradients(
                rows, tap=tap, on_graph=on_graph, input_pass=input_pass
            )
        else:
            outputs, grads = evaluator.outputs(rows), None
        consume(0, n_items, outputs, grads)
        return
    plan = ChunkPlan(
        items_per_chunk,
        forward_func=evaluator.forward_func if auto else None,
        key=(
            getattr(evaluator, "signature", None),
            chunk_rows,
            rows_per_item,
            group,
            grad,
            tap is not None,
        ),
        n_items=n_items,
        rows_per_item=rows_per_item,
        group=group,
    )
    outer = _OUTER_BAR.get()
    if outer is not None:
        # the caller's one bar for the whole call: this evaluation adds its items
        outer.total += n_items
        outer.refresh()
        bar = None
    else:
        bar = _progress_bar(n_items, progress, description or evaluator.owner)
    # zero items still make one empty chunk: its outputs and gradients have the model's
    # (and layers') shapes with 0 rows, so callers assemble correctly shaped empty results
    start = 0
    try:
        while True:
            stop = min(n_items, start + plan.items)
            timing = plan.timing
            if timing:
                _synchronize()
                began = time.perf_counter()
            rows = build(start, stop)
            saved: list[int] = []
            if grad:
                # the first probed chunk: what it saves for backward sets the memory bound
                seen = on_graph
                if timing and plan.measuring:
                    seen = _measure_saved(saved, rows, evaluator.forward_func, on_graph)
                outputs, grads = evaluator.gradients(
                    rows, tap=tap, on_graph=seen, input_pass=input_pass
                )
            else:
                outputs, grads = evaluator.outputs(rows), None
            consume(start, stop, outputs, grads)
            if timing:
                _synchronize()
                n_rows = _n_rows(rows)
                plan.record(
                    stop - start,
                    time.perf_counter() - began,
                    row_bytes=_row_bytes(rows),
                    device=rows.inputs[0].device if rows.inputs else torch.device("cpu"),
                    remaining=n_items - stop,
                    activation_bytes=-(-saved[0] // n_rows) if saved and n_rows else None,
                    per_row=outputs.dim() > 0
                    and outputs.shape[0] == n_rows
                    and rows_independent(evaluator.forward_func),
                )
            if bar is not None:
                bar.update(stop - start)
            elif outer is not None:
                outer.update(stop - start)
            start = stop
            if start >= n_items:
                break
    finally:
        if bar is not None:
            bar.close()


def to_device(tensor: Tensor, device: torch.device | str) -> Tensor:
    """``tensor`` on ``device``; from the host to a CUDA device without a host sync.

    A plain copy from pageable host memory waits for the device's queued work; staged
    through pinned memory and ``non_blocking``, it is queued behind that work instead (the
    pinned block is kept until the copy has run). Anything else is ``tensor.to(device)``,
    so CPU runs are unchanged.

    Parameters
    ----------
    tensor
        Any shape.
    device
        Where it is needed.

    Returns
    -------
    Tensor
        Same shape, dtype and values, on ``device``.
    """
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu" and torch.cuda.is_available():
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _measure_saved(
    store: list[int],
    rows: RowBatch,
    model: Any,
    then: Callable[[Tensor], None] | None = None,
) -> Callable[[Tensor], None]:
    """An ``on_graph`` callback putting the activation bytes of ``rows`` (their saved
    tensors, :func:`~whybox.core.chunks.saved_bytes`) in ``store``, then calling the
    caller's own ``then`` (if any)."""

    def measure(selected: Tensor) -> None:
        store.append(saved_bytes(selected, exclude=rows.inputs, module=model))
        if then is not None:
            then(selected)

    return measure


def _synchronize() -> None:
    """Wait for queued GPU work (only while the chunk probe times a chunk)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _n_rows(rows: RowBatch) -> int:
    """Rows in ``rows`` (0 for none, or no batched tensor)."""
    tensors = [t for t in rows.inputs if isinstance(t, Tensor)]
    return tensors[0].shape[0] if tensors and tensors[0].dim() > 0 else 0


def _row_bytes(rows: RowBatch) -> int:
    """Input bytes of one row of ``rows`` (0 for no rows)."""
    n_rows = _n_rows(rows)
    if n_rows == 0:
        return 0
    tensors = [t for t in rows.inputs if isinstance(t, Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors) // n_rows


def _progress_bar(total: int, progress: bool | str, description: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    label = progress if isinstance(progress, str) else description
    return tqdm(total=total, desc=label, unit="item")
