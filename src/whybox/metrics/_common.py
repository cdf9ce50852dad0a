"""Pieces every metric shares: attribution formats, batched ranks and correlations, and
the one way a metric asks for a (re-)explanation.

Metrics never loop over examples in Python: everything here works on ``(N, D)`` tables
(one row per example, the example's values flattened) on the tensors' device.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from whybox.core.inputs import ForwardArgs, flatten
from whybox.core.perturbation import check_finite
from whybox.core.result import Explanation
from whybox.core.validation import fail

__all__ = [
    "as_tensors",
    "check_like",
    "check_maps",
    "given_maps",
    "check_like_given",
    "per_example",
    "rows2d",
    "average_ranks",
    "sorted_values",
    "argsort_rows",
    "pearson",
    "spearman",
    "resolve_explain",
    "ExplainFn",
    "select_rows",
    "predicted_class",
    "forward_args_rows",
]

#: the host's byte order: an int64's high word is its second int32 on little-endian hosts
_LITTLE_ENDIAN = sys.byteorder == "little"

#: ``explain(model, inputs, target, forward_args[, options]) -> tuple of Tensor`` (one per
#: input); ``options`` replace the fixed options of the same name for one call
ExplainFn = Callable[..., tuple[Tensor, ...]]


def as_tensors(
    value: Any, *, owner: str, name: str = "attributions", maps: bool = False
) -> tuple[Tensor, ...]:
    """Flatten attributions given as a tensor, a tuple / list / dict of tensors or an
    :class:`~whybox.core.result.Explanation` to a tuple of tensors (each ``(N, ...)``).

    ``maps``: the values are ranked, summed or compared as they are, so each tensor must
    have a batch dimension and hold no NaN or inf (a NaN sorts anywhere: a score computed
    from it would be silently arbitrary); a clear error naming ``name`` otherwise.
    """
    if isinstance(value, Explanation):
        value = value.attributions
    tensors, _ = flatten(value, owner=owner, name=name)
    if maps:
        for t in tensors:
            if t.dim() == 0:
                fail(owner, name, "tensors with a batch dimension, each (N, ...)", t)
        check_finite(owner, name, tensors, expected="free of NaN and inf")
    return tensors


def check_norm(owner: str, name: str, value: Any) -> None:
    """``value`` must be a ``p`` :func:`torch.norm` takes over one flattened dimension:
    ``"fro"`` or a number (``inf``: the largest magnitude); a clear error otherwise."""
    if isinstance(value, str) and value == "fro":
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
        return
    fail(
        owner,
        name,
        "'fro' or a number p (each example's p-norm; inf: its largest magnitude)",
        value,
    )


def check_like(
    owner: str,
    name: str,
    tensors: Sequence[Tensor],
    reference: Sequence[Tensor],
    *,
    reference_name: str = "inputs",
) -> None:
    """Raise the library's error unless ``tensors`` has one tensor per reference tensor,
    each of the same shape."""
    if len(tensors) != len(reference):
        fail(
            owner,
            name,
            f"one tensor per tensor of '{reference_name}' ({len(reference)})",
            f"{len(tensors)} tensor(s)",
            raw=True,
        )
    for index, (t, r) in enumerate(zip(tensors, reference)):
        if tuple(t.shape) != tuple(r.shape):
            fail(
                owner,
                name,
                f"shaped like '{reference_name}' (tensor {index} has shape {tuple(r.shape)})",
                f"shape {tuple(t.shape)}",
                raw=True,
            )


def check_maps(
    owner: str,
    maps: Sequence[Tensor],
    *,
    rows: int,
    like: Sequence[Tensor] | None = None,
) -> None:
    """Raise the library's error unless each explanation map has ``rows`` rows and, with
    ``like``, as many maps as ``like`` with the same per-row shapes (maps need not be
    shaped like the inputs: layer methods and CAMs give layer-shaped maps)."""
    for index, m in enumerate(maps):
        if m.dim() == 0 or m.shape[0] != rows:
            fail(
                owner,
                "explain",
                f"a function returning maps with one row per input row ({rows})",
                f"map {index} of shape {tuple(m.shape)}",
                raw=True,
            )
    if like is None:
        return
    shapes = [tuple(m.shape[1:]) for m in maps]
    expected = [tuple(m.shape[1:]) for m in like]
    if shapes != expected:
        fail(
            owner,
            "explain",
            f"a function returning maps of one shape for every call ({expected})",
            f"{shapes}",
            raw=True,
        )


def given_maps(owner: str, attributions: Any, *, rows: int) -> tuple[Tensor, ...]:
    """Explanation maps the caller already has (a metric's ``attributions=``), detached.

    Parameters
    ----------
    owner : str
        Name used in error messages.
    attributions : Tensor, tuple/dict of Tensor or Explanation
        One map per explained input, each ``(rows, ...)``.
    rows : int, keyword-only
        The number of examples.

    Returns
    -------
    tuple of Tensor
    """
    maps = tuple(t.detach() for t in as_tensors(attributions, owner=owner))
    for index, m in enumerate(maps):
        if m.dim() == 0 or m.shape[0] != rows:
            fail(
                owner,
                "attributions",
                f"maps with one row per input row ({rows})",
                f"map {index} of shape {tuple(m.shape)}",
                raw=True,
            )
    return maps


def check_like_given(owner: str, maps: Sequence[Tensor], given: Sequence[Tensor]) -> None:
    """Raise the library's error (naming ``attributions``) unless the maps ``explain``
    returned have the per-row shapes of the caller's ``attributions``."""
    explained = [tuple(m.shape[1:]) for m in maps]
    passed = [tuple(m.shape[1:]) for m in given]
    if explained != passed:
        fail(
            owner,
            "attributions",
            f"shaped like the maps 'explain' returns ({explained} per row)",
            f"{passed} per row",
            raw=True,
        )


def rows2d(t: Tensor) -> Tensor:
    """``(N, ...) -> (N, D)`` (also for ``N = 0``, where ``reshape(0, -1)`` is ambiguous)."""
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))


def per_example(tensors: Sequence[Tensor]) -> Tensor:
    """``(N, D)``: each example's values of every tensor, flattened and concatenated."""
    return torch.cat([rows2d(t) for t in tensors], dim=1)


def sorted_values(values: Tensor) -> Tensor:
    """``values`` sorted ascending along the last dimension.

    On the CPU numpy's sort is used (measured: ~60x faster than ``torch.sort`` for
    ``(64, 3072)`` float32 rows on one thread); the tensor is already on the host, so this
    is no device round trip. Elsewhere, and for dtypes numpy lacks, ``torch.sort``.
    """
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        import numpy as np

        return torch.from_numpy(np.sort(values.detach().numpy(), axis=-1))
    return values.sort(dim=-1).values


def argsort_rows(values: Tensor, *, descending: bool = False) -> Tensor:
    """Stable argsort along the last dimension (ties keep their positions' order).

    Parameters
    ----------
    values : Tensor, shape ``(..., D)``
    descending : bool, keyword-only
        Largest first (ties still in position order; ``NaN`` last either way).

    Returns
    -------
    Tensor, shape ``(..., D)``, long, on ``values``' device
        What ``numpy.argsort(values, kind="stable")`` (of ``-values`` when descending)
        gives on each row.

    Notes
    -----
    On the CPU numpy sorts (see :func:`sorted_values`). Long float32 rows are sorted as
    one int64 key per element, the value's order-preserving bits above its position, by
    numpy's vectorised quicksort: the same order as a stable sort (measured ~7x faster
    than ``kind="stable"`` on ``(8, 3072)`` rows, one thread). Elsewhere, and for dtypes
    numpy lacks, ``torch.argsort(stable=True)``.
    """
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        import numpy as np

        array = values.detach().numpy()
        array = -array if descending else array
        if array.dtype == np.float32 and 256 <= array.shape[-1] < 2**31 and array.size:
            return torch.from_numpy(_packed_argsort(array))
        return torch.from_numpy(np.argsort(array, axis=-1, kind="stable"))
    return values.argsort(dim=-1, descending=descending, stable=True)


def _packed_argsort(array: Any) -> Any:
    """Stable argsort of float32 rows (see :func:`_packed_sorted`)."""
    import numpy as np

    packed = _packed_sorted(array)
    packed &= np.int64(0xFFFFFFFF)
    return packed


def _packed_sorted(array: Any) -> Any:
    """Float32 rows as sorted int64 ``key << 32 | position``: the high words are the
    sorted keys, the low words a stable argsort.

    ``key`` is the float's bit pattern made order-preserving as a signed int32 (negative
    floats have their magnitude bits flipped); every ``NaN`` is made the one positive
    quiet ``NaN`` first, so all sort last, and ``-0.0`` becomes ``+0.0`` (numpy counts
    them equal), so the order is numpy's stable one and equal keys are equal values (or
    both ``NaN``).
    """
    import numpy as np

    clean = array + np.float32(0.0)  # a copy, -0.0 -> +0.0
    nan = np.isnan(clean)
    if nan.any():
        clean[nan] = np.nan
    bits = clean.view(np.int32)
    key = bits >> 31
    key &= np.int32(0x7FFFFFFF)
    key ^= bits
    packed = key.astype(np.int64)
    packed <<= 32
    packed |= np.arange(array.shape[-1], dtype=np.int64)
    packed.sort(axis=-1, kind="quicksort")
    return packed


def _host_average_ranks(array: Any) -> Tensor:
    """``(..., D)`` float32 average ranks of float32 rows from one packed sort: its high
    words are the sorted keys (equal keys are equal values), so no gather of the sorted
    values is needed. The same arithmetic as :func:`average_ranks`' torch path."""
    import numpy as np

    packed = _packed_sorted(array)
    size = array.shape[-1]
    if _LITTLE_ENDIAN:
        # the high words read in place as int32 (every other word), no shifted copy
        high = packed.view(np.int32).reshape(packed.shape + (2,))[..., 1]
        nan_key = np.int32(0x7FC00000)
    else:
        high = packed >> 32
        nan_key = np.int64(0x7FC00000)
    different = high[..., 1:] != high[..., :-1]
    # NaN != NaN: each NaN is a run of its own (all NaNs share one key, the largest, so
    # they sort last: a row has some exactly when its last key is that one)
    if (high[..., -1] == nan_key).any():
        different |= high[..., 1:] == nan_key
    packed &= np.int64(0xFFFFFFFF)  # the order (after the last read of the high words)
    line = np.arange(1, size + 1, dtype=np.float32)
    # torch's scatter (measured ~5x faster than numpy's put_along_axis here)
    ranks = torch.empty(array.shape, dtype=torch.float32)
    order = torch.from_numpy(packed)
    equal = different.size - np.count_nonzero(different)  # equal sorted neighbours
    if not equal:  # no ties: each element's rank is its sorted position + 1
        return ranks.scatter_(-1, order, torch.from_numpy(line).expand(array.shape))
    tied = np.flatnonzero(~different.reshape(-1, size - 1).all(axis=1))  # rows with ties
    if equal * 16 <= tied.size * size:
        # few tied elements (real-valued maps): every rank a position, then the tied
        # ones fixed (measured ~0.09 -> 0.02 ms for 4 of 16 rows of 3072 with a tied
        # pair each, against numbering every run of those rows as below)
        ranks.scatter_(-1, order, torch.from_numpy(line).expand(array.shape))
        pairs = np.flatnonzero(~different.reshape(-1))  # sorted j, j + 1 are equal
        _share_tied_ranks(ranks.numpy().reshape(-1, size), packed.reshape(-1, size), pairs, size)
        return ranks
    # runs of equal keys in the rows that have some, numbered over those rows
    # flattened, each row starting a run
    starts = np.ones((tied.size, size), dtype=bool)
    starts[:, 1:] = different.reshape(-1, size - 1)[tied]
    flat_starts = starts.reshape(-1)
    run = np.cumsum(flat_starts) - 1
    first = np.flatnonzero(flat_starts)
    last = np.empty_like(first)
    last[:-1] = first[1:] - 1
    last[-1] = flat_starts.size - 1
    offset = first - first % size  # each run's row start: positions within the row
    mid = ((first - offset) + (last - offset)).astype(np.float32) / 2 + 1
    table = np.broadcast_to(line, (array.size // size, size)).copy()
    table[tied] = mid[run].reshape(tied.size, size)
    return ranks.scatter_(-1, order, torch.from_numpy(table.reshape(array.shape)))


def _share_tied_ranks(ranks: Any, order: Any, pairs: Any, size: int) -> None:
    """Give the members of each run of equal sorted values their average rank, in place.

    ``ranks`` ``(R, D)`` holds every element's sorted position + 1 and ``order``
    ``(R, D)`` the stable argsort; ``pairs`` (ascending) are the flat indices
    ``r (D - 1) + j`` of the rows' sorted neighbours ``j, j + 1`` that are equal. Only
    the tied elements are touched. A run spanning sorted positions ``first .. last``
    gets ``(first + last) / 2 + 1``: the arithmetic of :func:`average_ranks`' torch
    path, so the same float32 numbers.
    """
    import numpy as np

    row, left = np.divmod(pairs, size - 1)
    # a new run where the previous equal pair is not the one just before in the same row
    fresh = np.ones(pairs.size, dtype=bool)
    fresh[1:] = (pairs[1:] != pairs[:-1] + 1) | (left[1:] == 0)
    heads = np.flatnonzero(fresh)
    first = left[heads]
    last = np.empty_like(first)
    last[:-1] = left[heads[1:] - 1] + 1
    last[-1] = left[-1] + 1
    mid = (first + last).astype(np.float32) / 2 + 1
    lengths = last - first + 1
    member_run = np.repeat(np.arange(heads.size), lengths)
    # each member's sorted position: its run's first plus its place in the run
    place = np.arange(member_run.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    member_row = row[heads][member_run]
    ranks[member_row, order[member_row, first[member_run] + place]] = mid[member_run]


def average_ranks(values: Tensor) -> Tensor:
    """Ranks along the last dimension, 1-based, ties sharing their average rank.

    Parameters
    ----------
    values : Tensor, shape ``(..., D)``

    Returns
    -------
    Tensor, shape ``(..., D)``, floating
        What ``scipy.stats.rankdata(method="average")`` gives on each row.

    Notes
    -----
    On the CPU a table without ties (checked on the host, where the values already are)
    skips the run bookkeeping; long float32 rows are ranked on the host from one packed
    sort (:func:`_packed_sorted`), which gives the order and the runs of equal values at
    once. On other devices the bookkeeping always runs, so there is no device-to-host
    sync.
    """
    dtype = values.dtype if values.is_floating_point() else torch.get_default_dtype()
    size = values.shape[-1] if values.dim() else 1
    if values.device.type == "cpu" and values.dtype == torch.float32 and values.numel():
        if 256 <= size <= 2**24:  # ranks exact in float32
            return _host_average_ranks(values.detach().numpy())
    order = argsort_rows(values)
    ordered = values.gather(-1, order)
    positions = torch.arange(size, device=values.device).expand_as(order)
    different = ordered[..., 1:] != ordered[..., :-1]
    if values.device.type == "cpu" and bool(different.all()):
        # no ties (the usual case for real-valued maps): a run is one position, its
        # middle the position itself (the same arithmetic as below: first = last)
        line = torch.arange(size, device=values.device)
        middle = ((line + line).to(dtype) / 2 + 1).expand(order.shape)
        return torch.empty(order.shape, dtype=dtype).scatter_(-1, order, middle)
    # each run of equal sorted values spans [first, last]; its members share the middle
    starts = torch.ones_like(order, dtype=torch.bool)
    starts[..., 1:] = different
    ends = torch.ones_like(starts)
    ends[..., :-1] = starts[..., 1:]
    first = torch.where(starts, positions, 0).cummax(dim=-1).values
    last = torch.where(ends, positions, size).flip(-1).cummin(dim=-1).values.flip(-1)
    middle = (first + last).to(dtype) / 2 + 1
    return torch.empty_like(middle).scatter_(-1, order, middle)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``.

    Parameters
    ----------
    a, b : Tensor, shape ``(N, D)``

    Returns
    -------
    Tensor, shape ``(N,)``
        ``NaN`` where a row has zero variance (the correlation is undefined).
    """
    dtype = torch.promote_types(a.dtype, b.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return pearson_each(a.to(dtype), [b.to(dtype)])[0]


def pearson_each(base: Tensor, others: Sequence[Tensor]) -> list[Tensor]:
    """``[pearson(base, other) for other in others]``, ``base`` centred once.

    Parameters
    ----------
    base : Tensor, shape ``(N, D)``
    others : sequence of Tensor, each ``(N, D)``

    Returns
    -------
    list of Tensor, each ``(N,)``
        The same numbers as :func:`pearson` of each pair (the same operations on the same
        shapes); pairs of other dtypes go through :func:`pearson`.
    """
    if not base.is_floating_point() or any(o.dtype != base.dtype for o in others):
        return [pearson(base, other) for other in others]
    centred = base - base.mean(dim=-1, keepdim=True)
    squares = centred.square().sum(dim=-1)
    out = []
    for other in others:
        other = other - other.mean(dim=-1, keepdim=True)
        numerator = (centred * other).sum(dim=-1)
        # 0 / 0 -> NaN on a constant row, as scipy does
        out.append(numerator / (squares * other.square().sum(dim=-1)).sqrt())
    return out


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation per row (Pearson of average ranks), ``(N, D) -> (N,)``."""
    return pearson(average_ranks(a), average_ranks(b))


def predicted_class(output: Tensor, *, owner: str, name: str, value: Any) -> Tensor:
    """``(N,)`` long: each row's predicted class, the argmax of its flattened output.

    A model with one score per example has no class to predict (the argmax of one column
    is always 0, so a check built on it would silently always pass): the option ``name``
    (given ``value``) that asked for a prediction gets the library's error instead.
    """
    flat = output.reshape(output.shape[0], -1)
    if flat.shape[1] < 2:
        fail(
            owner,
            name,
            "left at its default for a model with one score per example (a predicted class "
            "needs one score per class)",
            value,
        )
    return flat.argmax(dim=1)


def select_rows(value: Any, example_index: Tensor, batch_size: int) -> Any:
    """``value``'s rows for ``example_index`` when it is a per-example tensor (first
    dimension the batch size), else ``value`` unchanged (shared baselines, numbers...)."""
    if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == batch_size:
        return value.index_select(0, example_index.to(value.device))
    if isinstance(value, tuple):
        return tuple(select_rows(v, example_index, batch_size) for v in value)
    return value


def forward_args_rows(extra: ForwardArgs, index: Tensor, *, owner: str) -> Any:
    """The caller's extra forward arguments for rows ``index`` (per-example tensors follow
    their examples), in the form an explanation call takes them (``None``, one value, a
    tuple of positional values or a dict of keyword ones).

    Parameters
    ----------
    extra : ForwardArgs
        The prepared arguments (:func:`whybox.core.inputs.prepare_forward_args`).
    index : Tensor, shape ``(rows,)``, long
        The example of each row.
    owner : str, keyword-only
        Name used in error messages.
    """
    rows = extra.select(index)
    if not rows.args and not rows.kwargs:
        return None
    if rows.kwargs and not rows.args:
        return dict(rows.kwargs)
    if rows.kwargs:
        fail(owner, "forward_args", "positional or keyword arguments, not both", "both", raw=True)
    return rows.args if len(rows.args) != 1 else rows.args[0]


def resolve_explain(
    explain: str | Callable[..., Any],
    options: Mapping[str, Any] | None,
    *,
    owner: str,
    model: Any = None,
) -> ExplainFn:
    """The one way a metric asks for an explanation.

    Parameters
    ----------
    explain : str or callable
        A registered method name (run through :func:`whybox.explain`), or a callable
        ``explain(model, inputs, **kwargs)`` returning attributions (a tensor, tuple of
        tensors or an :class:`~whybox.core.result.Explanation`), shaped like ``inputs``.
        ``kwargs`` holds ``target=`` and ``forward_args=`` when they are not ``None``,
        and ``options``.
    options : mapping, optional
        Fixed options for every call (``baselines``, ``n_steps``, ``layer``...). A
        ``layer`` given as a module of ``model`` is passed by name, so it still names the
        right module in a copy of the model (randomisation checks).
    owner : str, keyword-only
        Name used in error messages.
    model : optional, keyword-only
        The model ``options``' modules belong to.

    Returns
    -------
    callable
        ``fn(model, inputs, target, forward_args, overrides=None) -> tuple of Tensor``;
        ``overrides`` replace options of the same name for one call (per-row baselines).
    """
    options = dict(options or {})
    if not isinstance(explain, str) and not callable(explain):
        fail(owner, "explain", "a registered method name or a callable", explain, type_error=True)
    if isinstance(explain, str):
        from whybox.core.registry import available_methods

        names = available_methods()
        if explain not in names:
            # up front, in the metric's words (not the registry's, on the first call)
            fail(
                owner, "explain", f"a callable or a registered method name, one of {names}", explain
            )
    layer = options.get("layer")
    if model is not None and isinstance(layer, torch.nn.Module):
        options["layer"] = _module_name(model, layer, owner=owner)

    def run(
        model_: Any,
        inputs: Any,
        target: Any,
        forward_args: Any,
        overrides: Mapping[str, Any] | None = None,
    ) -> tuple[Tensor, ...]:
        kwargs = {**options, **(overrides or {})}
        if target is not None:
            kwargs["target"] = target
        if forward_args is not None:
            kwargs["forward_args"] = forward_args
        if isinstance(explain, str):
            import whybox

            result = whybox.explain(model_, inputs, method=explain, **kwargs)
        else:
            result = explain(model_, inputs, **kwargs)
        return tuple(t.detach() for t in as_tensors(result, owner=owner, name="explain"))

    return run


def _module_name(model: Any, layer: torch.nn.Module, *, owner: str) -> str:
    if isinstance(model, torch.nn.Module):
        for name, module in model.named_modules():
            if module is layer and name:
                return name
    fail(owner, "explain_options['layer']", "a submodule of the model (or its name)", layer)
    raise AssertionError  # unreachable


def fractions_grid(n_steps: int, *, device: Any, dtype: torch.dtype) -> Tensor:
    """``(n_steps + 1,)`` evenly spaced fractions ``0, 1/n_steps, ..., 1``."""
    return torch.linspace(0.0, 1.0, n_steps + 1, device=device, dtype=dtype)


def counts_for(fractions: Tensor, n_features: int) -> Tensor:
    """How many features each fraction covers: ``round(fraction * n_features)`` (long)."""
    return torch.round(fractions.double() * n_features).long()


def safe_log(x: Tensor) -> Tensor:
    """``log(x)`` with ``log(0)`` taken as 0 (so ``0 * log 0 = 0`` in entropies)."""
    return torch.where(x > 0, x, torch.ones_like(x)).log()


def nan_tensor(shape: Sequence[int], *, like: Tensor) -> Tensor:
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    return torch.full(tuple(shape), math.nan, dtype=dtype, device=like.device)
