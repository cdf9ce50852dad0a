"""Shared machinery of the perturbation family (ablation, occlusion, Shapley, LIME).

Every perturbation method is the same loop: a list of *items* (one perturbation of every
example of the batch, i.e. ``N`` rows each), rows built lazily per chunk from compact
masks, one scalar per row from the ONE evaluator (:func:`whybox.core.forward.evaluate`),
and the method's own maths on the resulting ``(n_items, N)`` table of outputs.

Conventions used here:

* A *coalition* is a boolean row over the ``M`` interpretable features: ``True`` keeps the
  input's value, ``False`` puts the baseline in.
* Feature masks are stored flat, ``(Nm, D)`` per input with ``Nm`` in ``{1, N}`` and
  ``D`` the number of elements of one example, so building a chunk of rows is a gather
  ``coalitions[:, mask]`` plus a ``torch.where`` -- never a Python loop over features. The
  default masks (every scalar its own feature) are id ranges, so that gather is a slice;
  a mask that broadcasts over some dimensions (one mask for every channel) is gathered at
  its own size and broadcast by the ``torch.where``.
* Building a chunk reads nothing back from the device: which rows a chunk holds follows
  from its item range (``tests/core/test_host_syncs_perturbation.py``).
* Models returning one scalar per *batch* ("aggregate" outputs, e.g. a loss) get one
  whole perturbed batch per forward: a perturbation's rows are never split.
* Chunking has one rule here (:func:`run_items`): ``call.chunk_rows`` rows per forward,
  rounded down to whole perturbations (at least one), one perturbation per forward for
  aggregate models. Methods never size chunks themselves.
* An empty batch (``N = 0``) has nothing to perturb: methods return
  :func:`empty_leaves` early (the engine is never asked for zero-row perturbations).
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .call import Call
from .forward import RowBatch, evaluate
from .masks import validate_feature_mask
from .validation import fail

__all__ = [
    "PerturbationsPerEval",
    "EmptyBatchInBody",
    "check_aggregate_masks",
    "check_finite",
    "check_finite_each",
    "empty_leaves",
    "FlatMasks",
    "Outputs",
    "prepare_masks",
    "run_items",
    "coalition_rows",
    "example_index",
    "held_features",
    "expand_to_elements",
    "full_baselines",
]


class PerturbationsPerEval(int):
    """A ``chunk_size`` given as whole perturbations of the batch: ``perturbations``
    perturbations of ``N`` rows each per forward (Captum's ``perturbations_per_eval``).

    It is the row count (an ``int``) everywhere; :func:`run_items` also keeps Captum's rule
    that a model returning one value per batch cannot be evaluated with more than one
    perturbation per forward, and says so instead of silently evaluating one at a time.
    """

    perturbations: int

    def __new__(cls, rows: int, perturbations: int) -> PerturbationsPerEval:
        value = super().__new__(cls, rows)
        value.perturbations = perturbations
        return value


@dataclass(frozen=True)
class FlatMasks:
    """Feature masks of all inputs, flattened per example.

    Attributes
    ----------
    flat
        One long tensor per input, shape ``(Nm, D_i)`` with ``Nm`` 1 (shared by every
        example) or ``N`` (one mask per example) and ``D_i`` the elements of one example.
    n_features
        ``M = max id + 1`` over all masks.
    present
        ``(M,)`` bool: which ids occur in some mask (absent ids are never perturbed).
    """

    flat: tuple[Tensor, ...]
    n_features: int
    present: Tensor
    #: the default masks (every scalar its own feature): input ``i``'s ids are the range
    #: ``starts[i] .. starts[i] + D_i``, so keep flags and per-element values are slices
    #: of the per-feature tables, not gathers (``None`` for any other mask)
    starts: tuple[int, ...] | None = None
    #: per input, ``(mask, shape)`` when the caller's mask broadcasts over some of the
    #: input's dimensions (e.g. one ``(1, 1, H, W)`` mask for every channel): the mask
    #: flattened at its own ``shape`` (without the batch dimension), so keep flags are
    #: gathered at that size and broadcast by ``torch.where``; ``None`` otherwise
    compact: tuple[tuple[Tensor, tuple[int, ...]] | None, ...] | None = None

    @property
    def present_ids(self) -> Tensor:
        """The ids in some mask, ascending: ``(M',)`` long on the CPU."""
        if self.starts is not None:
            return _all_ids(self.n_features)
        return self.present.nonzero().reshape(-1)

    @property
    def per_example(self) -> bool:
        return any(m.shape[0] > 1 for m in self.flat)


def prepare_masks(
    feature_mask: Any,
    tensors: Sequence[Tensor],
    *,
    owner: str,
    name: str = "feature_mask",
    shift_negative: bool = False,
) -> FlatMasks:
    """Validate ``feature_mask`` (``None``: every scalar its own feature, ids continuing
    across inputs as in Captum) and flatten it to :class:`FlatMasks`.

    ``shift_negative`` subtracts the minimum id when it is not 0, with a warning (Captum's
    LIME behaviour); otherwise negative ids are an error.
    """
    if feature_mask is None:
        # elements of one example per input (also for N = 0)
        sizes = tuple((math.prod(x.shape[1:]), x.device) for x in tensors)
        return _default_masks(sizes)
    try:
        masks = validate_feature_mask(feature_mask, [tuple(x.shape) for x in tensors], name=name)
    except ValueError as err:
        fail(owner, name, "one integer tensor per input, broadcastable to it", str(err), raw=True)
    flat, compact = [], []
    for index, (mask, x) in enumerate(zip(masks, tensors)):
        mask = mask.to(x.device).long()
        mask = mask.reshape((1,) * (x.dim() - mask.dim()) + tuple(mask.shape))
        rows = mask.shape[0]
        if rows != 1 and x.shape[0] != tensors[0].shape[0]:
            # an input that is not batched (a sparse feature list): its rows are not
            # examples, so its mask is one mask for all of them
            fail(
                owner,
                name,
                f"a mask with first dimension 1 for input {index}, whose first dimension "
                f"({x.shape[0]}) is not the batch size ({tensors[0].shape[0]})",
                f"a mask of shape {tuple(mask.shape)}",
                raw=True,
            )
        flat.append(mask.expand((rows,) + tuple(x.shape[1:])).reshape(rows, -1))
        shape = tuple(mask.shape[1:])
        compact.append((mask.reshape(rows, -1), shape) if shape != tuple(x.shape[1:]) else None)
    # the ids' statistics from the masks at their own (possibly smaller) size
    small = [c[0] if c is not None else m for c, m in zip(compact, flat)]
    minimum = min((int(m.min()) for m in small if m.numel()), default=0)
    if minimum != 0 and shift_negative:
        warnings.warn(
            f"{owner}: the smallest feature id in '{name}' is {minimum}, not 0; shifting ids "
            "to start at 0.",
            stacklevel=3,
        )
        flat = [m - minimum for m in flat]
        small = [m - minimum for m in small]
        compact = [None if c is None else (c[0] - minimum, c[1]) for c in compact]
    elif minimum < 0:
        fail(owner, name, "non-negative integer feature ids", f"minimum id {minimum}", raw=True)
    n_features = max((int(m.max()) + 1 for m in small if m.numel()), default=0)
    present = torch.zeros(n_features, dtype=torch.bool)
    for m in small:
        present[m.reshape(-1).unique().cpu()] = True
    broadcast = tuple(compact) if any(c is not None for c in compact) else None
    return FlatMasks(tuple(flat), n_features, present, compact=broadcast)


@functools.lru_cache(maxsize=64)
def _default_masks(sizes: tuple[tuple[int, torch.device], ...]) -> FlatMasks:
    """The default masks for inputs of ``sizes`` elements per example (cached: every call
    on the same shapes shares them; they are only read)."""
    flat, starts, start = [], [], 0
    for size, device in sizes:
        flat.append(torch.arange(start, start + size, device=device).view(1, size))
        starts.append(start)
        start += size
    present = torch.ones(start, dtype=torch.bool)
    return FlatMasks(tuple(flat), start, present, tuple(starts))


@functools.lru_cache(maxsize=64)
def _all_ids(n: int) -> Tensor:
    """``arange(n)`` (cached; only read)."""
    return torch.arange(n)


def empty_leaves(tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Zero-row attributions shaped like ``tensors`` (each ``(0, ...)``), in each tensor's
    floating dtype (the default dtype for integer inputs such as token ids)."""
    return tuple(
        torch.zeros(
            tuple(x.shape),
            dtype=x.dtype if x.is_floating_point() else torch.get_default_dtype(),
            device=x.device,
        )
        for x in tensors
    )


class EmptyBatchInBody:
    """Mixin for methods whose ``attribute`` body returns the right empty result itself.

    The template answers ``N = 0`` inputs before the body runs (``_empty_result``); the
    perturbation methods know their result's shapes and dtypes best (``(0, M)``
    coefficients, float results for token ids, layer shapes), so they run their body,
    which returns early for an empty batch without perturbing anything.
    """

    def _empty_result(self, arguments: Mapping[str, Any]) -> Any:
        body = inspect.unwrap(type(self).attribute)
        # rebuild the call from the template's bound arguments (``**kwargs`` included)
        bound = inspect.signature(body).bind_partial()
        bound.arguments.update(arguments)
        return body(*bound.args, **bound.kwargs)


def check_finite(owner: str, name: str, tensors: Sequence[Tensor], *, expected: str) -> None:
    """Raise the uniform ``ValueError`` when a floating tensor holds NaN or inf.

    One host sync for all tensors on the good path; the counts are only computed for the
    message. Integer tensors (token ids) are always finite and skipped.
    """
    check_finite_each(owner, ((name, tensors, expected),))


def check_finite_each(owner: str, checks: Sequence[tuple[str, Sequence[Tensor], str]]) -> None:
    """:func:`check_finite` for several arguments at once.

    Off the CPU all the flags are read in one host sync; on the CPU, where reading a flag
    costs nothing, each tensor is tested on its own (fewer kernel launches on tiny jobs).

    Parameters
    ----------
    owner : str
        The method, for the message.
    checks : sequence of ``(name, tensors, expected)``
        Each argument's name, its tensors (integer ones are skipped) and what it should be.

    Raises
    ------
    ParameterError
        Naming the first argument that holds NaN or inf, with the counts.
    """
    floats = [
        t for _, tensors, _ in checks for t in tensors if t.is_floating_point() or t.is_complex()
    ]
    if not floats:
        return
    if all(t.device.type == "cpu" for t in floats):
        # a sum is finite only if every element is (one kernel instead of two); a sum that
        # overflows is re-checked element-wise (``_finite_cpu`` inline: this runs twice in
        # every tiny LIME / KernelSHAP call)
        for t in floats:
            if t.is_complex() or not math.isfinite(float(t.sum())):
                if not bool(torch.isfinite(t).all()):
                    break
        else:
            return
    else:
        device = floats[0].device
        flags = torch.stack([torch.isfinite(t).all().to(device) for t in floats])
        if bool(flags.all()):
            return
    # the per-argument groups, only to name the first bad one
    for name, tensors, expected in checks:
        group = [t for t in tensors if t.is_floating_point() or t.is_complex()]
        _report_non_finite(owner, name, group, expected)


def _finite_cpu(t: Tensor) -> bool:
    """Whether a CPU tensor holds no NaN / inf (its sum first: one kernel, not two)."""
    if not t.is_complex() and math.isfinite(float(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def _report_non_finite(owner: str, name: str, floats: Sequence[Tensor], expected: str) -> None:
    """Raise the uniform error for ``floats`` when one holds NaN or inf (else return)."""
    details = []
    for index, t in enumerate(floats):
        nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        if nan or inf:
            where = f" in tensor {index}" if len(floats) > 1 else ""
            details.append(f"{nan} NaN and {inf} infinite value(s){where}")
    if details:
        fail(owner, name, expected, "; ".join(details), raw=True)


def full_baselines(baselines: Sequence[Tensor], tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Baselines broadcast to each input's full shape ``(N, ...)`` (views, no copies)."""
    return tuple(b.expand_as(x) for b, x in zip(baselines, tensors))


@dataclass(frozen=True)
class Outputs:
    """Selected model outputs per item.

    ``values`` has shape ``(n_items, N)``, or ``(n_items, 1)`` when the model returns one
    scalar per batch (``aggregate``). With the :data:`~whybox.core.targets.ALL_OUTPUTS`
    target it is ``(n_items, n_outputs)``: every value of a perturbed batch's output.
    ``shape`` is that output's shape for the unperturbed batch (``(N,)`` for one scalar per
    example, ``(1,)`` for one per batch), so callers can lay results out by output.
    """

    values: Tensor
    aggregate: bool
    shape: tuple[int, ...] = ()


def _detect_aggregate(selected: Tensor, rows: int, owner: str) -> bool:
    if selected.dim() == 0 or (selected.numel() == 1 and rows > 1):
        return True
    if selected.numel() != rows:
        fail(
            owner,
            "forward_func",
            "a model returning one scalar per example, or one scalar per batch (after "
            "'target' selection)",
            f"{selected.numel()} values for {rows} rows",
            raw=True,
        )
    return False


def run_items(
    call: Call,
    *,
    n_items: int,
    build: Callable[[int, int], RowBatch],
    rows_per_item: int,
    description: str | None = None,
    on_rows: Callable[[int, int, RowBatch], None] | None = None,
) -> Outputs:
    """Evaluate ``n_items`` perturbations of ``rows_per_item`` rows each, lazily.

    Per-example models (one scalar per row) get ``call.chunk_rows // rows_per_item`` items
    per forward (at least 1). A first forward returning a single scalar for several rows
    reveals an aggregate model (one scalar per batch): evaluation restarts at that chunk
    with one item per forward, so a perturbation's rows always share a forward.
    ``on_rows(start, stop, rows)`` sees every chunk's rows (e.g. for LIME similarities).
    """
    parts: list[Tensor] = []
    state: dict[str, Any] = {"aggregate": False}

    def build_seen(start: int, stop: int) -> RowBatch:
        rows = build(start, stop)
        if on_rows is not None:
            on_rows(start, stop, rows)
        return rows

    def consume(start: int, stop: int, selected: Tensor, grads: Any) -> None:
        n_rows = (stop - start) * rows_per_item
        if state["aggregate"]:
            if selected.numel() != state.get("width", 1):
                fail(
                    call.owner,
                    "forward_func",
                    "a model returning the same number of values for every perturbed batch",
                    f"{selected.numel()} values for {n_rows} rows",
                    raw=True,
                )
            parts.append(selected.reshape(1, -1).expand(stop - start, -1))
            return
        if call.target.kind == "all" and selected.dim() > 1 and selected.shape[0] == n_rows:
            # several values per row (Captum's target=None): item-major, row-major values
            state.setdefault("row_shape", tuple(selected.shape[1:]))
            parts.append(selected.reshape(stop - start, -1))
            return
        if selected.numel() != n_rows:
            many = call.target.kind == "all" and selected.numel() > 1 and not parts
            if many and (stop - start == 1 or selected.dim() == 0 or selected.shape[0] != n_rows):
                # a fixed number of values for the whole batch (Captum's aggregate output)
                strict = getattr(call.chunk_rows, "perturbations", 1)
                if strict > 1 or stop - start > 1:
                    if strict > 1:
                        fail(
                            call.owner,
                            "forward_func",
                            "a model whose output grows with the batch when "
                            "perturbations_per_eval > 1",
                            f"{selected.numel()} values for {n_rows} rows",
                            raw=True,
                        )
                    raise _Aggregate(
                        start, width=selected.numel(), shape=tuple(selected.shape) or (1,)
                    )
                state["aggregate"], state["width"] = True, selected.numel()
                state["batch_shape"] = tuple(selected.shape) or (1,)
                parts.append(selected.reshape(1, -1))
                return
            if selected.numel() == 1 and (not parts or rows_per_item == 1):
                strict = getattr(call.chunk_rows, "perturbations", 1)
                if strict > 1:
                    fail(
                        call.owner,
                        "perturbations_per_eval",
                        "1 when the model returns one scalar per batch (every perturbation "
                        "needs a forward of its own)",
                        strict,
                    )
                raise _Aggregate(start, shape=(1,))
            _detect_aggregate(selected, n_rows, call.owner)  # raises a clear error
        parts.append(selected.reshape(stop - start, rows_per_item))

    # Without a target the model may return one value per batch (a loss, as permutation
    # importance uses), which a forward of several stacked perturbations can break before
    # its output shows it (labels of the batch's size, say): the first perturbation then
    # runs alone first, as Captum runs each (perturbations_per_eval=1). A scalar there is
    # such a model (one perturbation per forward from then on); anything else is evaluated
    # again with the others (a fixed number of values per batch looks per-row on one
    # perturbation, and only several stacked ones tell them apart).
    first_alone = (
        call.chunk_auto
        and call.target.kind in ("none", "all")
        and n_items > 1
        and rows_per_item > 1  # one row: one value per row and per batch look the same
        and call.chunk_rows // rows_per_item > 1
        and on_rows is None
        and not call.progress
    )
    start = 0
    while start < n_items:
        chunk_rows = rows_per_item if state["aggregate"] else call.chunk_rows
        stop_at = n_items
        if first_alone and start == 0 and not state["aggregate"]:
            chunk_rows, stop_at = rows_per_item, 1
        offset = start

        def build_at(a: int, b: int, _offset: int = offset) -> RowBatch:
            return build_seen(a + _offset, b + _offset)

        def consume_at(a: int, b: int, selected: Tensor, grads: Any, _o: int = offset) -> None:
            consume(a + _o, b + _o, selected, grads)

        try:
            evaluate(
                call.evaluator,
                n_items=stop_at - start,
                build=build_at,
                consume=consume_at,
                chunk_rows=chunk_rows,
                auto=call.chunk_auto and not state["aggregate"] and stop_at == n_items,
                rows_per_item=rows_per_item,
                progress=call.progress,
                description=description or call.owner,
            )
            start = stop_at
            if stop_at < n_items and not state["aggregate"]:
                # the perturbation alone gave no scalar: from the start, stacked
                parts.clear()
                state.pop("row_shape", None)
                first_alone, start = False, 0
        except _Aggregate as switch:
            state["aggregate"] = True
            state["width"] = switch.width
            state["batch_shape"] = switch.shape
            start = switch.start
    # one chunk (tiny jobs): its outputs as they are, no copy
    single = len(parts) == 1 and not state["aggregate"]
    values = parts[0] if single else torch.cat(parts, dim=0)
    if state["aggregate"]:
        shape = state.get("batch_shape", (1,))
    else:
        shape = (rows_per_item, *state.get("row_shape", ()))
    return Outputs(values, state["aggregate"], shape)


class _Aggregate(Exception):
    """Internal: a chunk revealed a model that returns one scalar per forward."""

    def __init__(self, start: int, width: int = 1, shape: tuple[int, ...] = (1,)) -> None:
        super().__init__(start)
        self.start = start
        self.width = width
        self.shape = shape


def coalition_rows(
    tensors: Sequence[Tensor],
    baselines: Sequence[Tensor],
    masks: FlatMasks,
    coalitions: Tensor,
) -> RowBatch:
    """Rows for ``k`` coalitions of every example: ``k * N`` rows, coalition-major.

    Parameters
    ----------
    coalitions
        ``(k, M)`` bool shared by all examples, or ``(k, N, M)`` one per example.
    baselines
        Per input, broadcastable to ``(N, ...)``.

    Returns
    -------
    RowBatch
        Inputs of shape ``(k * N, ...)`` (``(k * L, ...)`` for an input of ``L`` rows that is
        not batched, e.g. a sparse feature list, whose mask is shared by its rows);
        ``example_index`` is ``arange(N)`` repeated.
    """
    k = coalitions.shape[0]
    n = tensors[0].shape[0]
    if _one_flat_input(tensors, baselines, masks, coalitions):
        # one (N, M) input whose default mask is every column (tiny tabular jobs): the
        # coalitions are its keep flags as they are, without the slice and the reshapes
        keep = coalitions if n == 1 else coalitions.unsqueeze(1)  # (k, M) or (k, 1, M)
        rows = keep_or_baseline(keep, tensors[0], baselines[0])
        if n != 1:
            rows = rows.reshape(k * n, rows.shape[-1])
        return RowBatch((rows,), example_index(n, k, tensors[0].device))
    leaves = []
    starts = masks.starts or (None,) * len(masks.flat)
    compact = masks.compact or (None,) * len(masks.flat)
    for x, b, mask, start, small in zip(tensors, baselines, masks.flat, starts, compact):
        if coalitions.device != mask.device:
            coalitions = coalitions.to(mask.device)
        if small is not None:
            # flags at the mask's own shape, broadcast over the dimensions it spans
            keep = keep_flags(coalitions, small[0])
            keep = keep.reshape((k, keep.shape[1]) + small[1])
        else:
            keep = keep_flags(coalitions, mask, start=start)  # (k, Nk, D)
            keep = keep.reshape((k, keep.shape[1]) + tuple(x.shape[1:]))
        rows = keep_or_baseline(keep, x, b)
        # each input's own first dimension: N, or L for an input that is not batched
        leaves.append(rows.reshape((k * x.shape[0],) + tuple(x.shape[1:])))
    return RowBatch(tuple(leaves), example_index(n, k, tensors[0].device))


def _one_flat_input(
    tensors: Sequence[Tensor], baselines: Sequence[Tensor], masks: FlatMasks, coalitions: Tensor
) -> bool:
    """Whether :func:`coalition_rows` may use ``coalitions`` ``(k, M)`` as the keep flags of
    its single 2-D input directly: the default mask (the id range ``0 .. M``), nothing to
    move, a baseline of at most two dimensions (broadcast as ``x``'s)."""
    if len(tensors) != 1 or masks.starts is None or coalitions.dim() != 2:
        return False
    x, mask = tensors[0], masks.flat[0]
    return (
        x.dim() == 2
        and masks.starts[0] == 0
        and mask.shape[1] == coalitions.shape[1] == x.shape[1]
        and (masks.compact is None or masks.compact[0] is None)
        and coalitions.device == mask.device
        and baselines[0].dim() <= 2
    )


def keep_or_baseline(keep: Tensor, x: Tensor, b: Tensor) -> Tensor:
    """``torch.where(keep, x.unsqueeze(0), b.expand_as(x).unsqueeze(0))``: ``x`` where
    ``keep``, its baseline elsewhere, for ``keep`` of shape ``(k, Nk, ...)``.

    Broadcasting does the unsqueezes and the expansion, and a 0-dim baseline of ``x``'s
    dtype stays 0-dim (``where`` then runs on a scalar: fewer ops, a faster kernel). A
    0-dim baseline of another dtype is expanded first: a 0-dim tensor would not take part
    in the dtype promotion the expanded one takes part in.

    Parameters
    ----------
    keep : Tensor, bool, ``(k, Nk, ...)`` with ``Nk`` 1 or ``x``'s first dimension
    x : Tensor, ``(N, ...)``
    b : Tensor, broadcastable to ``x``

    Returns
    -------
    Tensor
        ``(k, N, ...)``, the dtype ``where`` promotes ``x`` and the expanded ``b`` to.
    """
    if b.dim() == 0 and b.dtype != x.dtype:
        b = b.expand_as(x)
    return torch.where(keep, x, b)


def example_index(n: int, k: int, device: Any) -> Tensor:
    """The example of each row of ``k`` perturbations of a batch of ``n``.

    Parameters
    ----------
    n, k : int
        Batch size and number of perturbations.
    device : torch.device
        Where the rows live.

    Returns
    -------
    Tensor, shape ``(k * n,)``, long
        ``arange(n)`` repeated ``k`` times (a broadcast copy, cheaper than
        ``Tensor.repeat`` on tiny jobs).
    """
    if n == 1:
        return torch.zeros(k, dtype=torch.long, device=device)  # the same, in one op
    return torch.arange(n, device=device).expand(k, n).reshape(-1)


def keep_flags(coalitions: Tensor, mask: Tensor, *, start: int | None = None) -> Tensor:
    """Element-wise keep flags: ``(k, Nk, D)`` from coalitions and a flat ``(Nm, D)`` mask.

    ``start`` (:attr:`FlatMasks.starts`): the mask is the id range ``start .. start + D``,
    so the flags are a slice of the coalitions (a view), not a gather.
    """
    if start is not None:
        if coalitions.dim() == 2:
            return coalitions[:, start : start + mask.shape[1]].unsqueeze(1)  # (k, 1, D)
        return coalitions[:, :, start : start + mask.shape[1]]  # (k, N, D)
    if coalitions.dim() == 2:
        return coalitions[:, mask]  # (k, Nm, D)
    k, n, m = coalitions.shape
    index = mask.unsqueeze(0).expand(k, max(n, mask.shape[0]), mask.shape[1])
    return torch.gather(coalitions.expand(k, index.shape[1], m), 2, index)


def expand_to_elements(
    values: Tensor, masks: FlatMasks, tensors: Sequence[Tensor]
) -> tuple[Tensor, ...]:
    """Per-feature values ``(B, M)`` -> per-element tensors ``(max(B, Nm), ...)`` per input.

    Each element gets the value of its feature (``B`` is ``N``, 1 for aggregate models, or
    ``N * O`` for ``O`` values per example under Captum's ``target=None``: example-major,
    so row ``r`` takes example ``r // O``'s mask).
    """
    out = []
    if masks.starts is not None:
        # default masks: each input's values are a column range (copied, so results never
        # share memory with ``values``, which callers may also return)
        for x, mask, start in zip(tensors, masks.flat, masks.starts):
            part = values[:, start : start + mask.shape[1]].clone()
            out.append(part.reshape((values.shape[0],) + tuple(x.shape[1:])))
        return tuple(out)
    for x, mask in zip(tensors, masks.flat):
        rows = max(values.shape[0], mask.shape[0])
        if 1 < mask.shape[0] < rows and rows % mask.shape[0] == 0:
            # several values per example: each example's mask for each of its rows
            mask = mask.repeat_interleave(rows // mask.shape[0], dim=0)
        index = mask.to(values.device).expand(rows, mask.shape[1])
        gathered = torch.gather(values.expand(rows, values.shape[1]), 1, index)
        out.append(gathered.reshape((rows,) + tuple(x.shape[1:])))
    return tuple(out)


def check_aggregate_masks(masks: FlatMasks, aggregate: bool, owner: str, name: str) -> None:
    """Aggregate models explain the batch as a whole, so masks cannot differ per example."""
    if aggregate and masks.per_example:
        fail(
            owner,
            name,
            "shared by all examples (first dimension 1) when the model returns one scalar "
            "per batch",
            "a mask with one entry per example",
            raw=True,
        )


def feature_order(masks: FlatMasks) -> Tensor:
    """Present feature ids in Captum's order: input 0's ids ascending, then ids first
    seen in input 1, and so on (only matters for random draws made per feature)."""
    if masks.starts is not None:
        return _all_ids(masks.n_features)  # the default masks: ids in input order
    seen = torch.zeros(masks.n_features, dtype=torch.bool)
    order = []
    for mask in masks.flat:
        ids = mask.reshape(-1).unique().cpu()
        new = ids[~seen[ids]]
        seen[new] = True
        order.append(new)
    return torch.cat(order) if order else torch.zeros(0, dtype=torch.long)


def held_features(features: Tensor, masks: FlatMasks, tensors: Sequence[Tensor]) -> Tensor:
    """The ``features`` held by at least one input with elements (Captum skips a feature
    whose inputs are all empty, e.g. an empty sparse feature list: nothing to perturb)."""
    empty = [x.numel() == 0 for x in tensors]
    if not any(empty):
        return features
    keep = torch.zeros(masks.n_features, dtype=torch.bool)
    for mask, is_empty in zip(masks.flat, empty):
        if not is_empty:
            keep[mask.reshape(-1).unique().cpu()] = True
    return features[keep[features]]


def single_feature_coalitions(features: Tensor, n_features: int, device: Any) -> Tensor:
    """``(k, M)`` coalitions keeping everything but ``features[j]`` in row ``j``."""
    k = features.shape[0]
    keep = torch.ones(k, n_features, dtype=torch.bool, device=device)
    keep[torch.arange(k, device=device), features.to(device)] = False
    return keep
