"""Ablation-style perturbation methods: FeatureAblation, Occlusion, FeaturePermutation.

Each perturbation changes one feature (a mask group, a sliding window, or a feature shuffled
across the batch); its attribution is the drop of the target output,
``f(x) - f(x with the feature perturbed)``, given to every element of the feature.
Rows are built lazily per chunk from compact masks (:mod:`whybox.core.perturbation`). An
empty batch (``N = 0``) gives zero-row attributions shaped like the inputs (the layer).
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

import torch
from torch import Tensor

from whybox.core.call import Call
from whybox.core.forward import ChunkSize, RowBatch
from whybox.core.inputs import prepare_baselines, ragged_inputs
from whybox.core.masks import SlidingWindows, sliding_window_masks
from whybox.core.method import Check, IsCallable
from whybox.core.perturbation import (
    EmptyBatchInBody,
    check_aggregate_masks,
    coalition_rows,
    empty_leaves,
    example_index,
    expand_to_elements,
    feature_order,
    held_features,
    keep_flags,
    keep_or_baseline,
    prepare_masks,
    run_items,
)
from whybox.core.randomness import RandomSource, check_seed, make_random
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.scope import Scope
from whybox.core.validation import fail

from .base import Method

__all__ = ["FeatureAblation", "Occlusion", "FeaturePermutation"]


def _prepare(
    scope: Scope,
    inputs: Any,
    target: Any,
    forward_args: Any,
    chunk_size: ChunkSize,
    show_progress: bool,
    *,
    ragged: bool = False,
) -> Call:
    """The call; with ``ragged``, inputs whose first dimension is not the batch size (sparse
    feature lists, as Captum accepts) are allowed in input space. Such an input is perturbed
    as a whole and fed whole to every forward, so every forward then holds one perturbation
    of the batch, whatever the chunk size (Captum concatenates the lists of several
    perturbations with ``perturbations_per_eval > 1``, which changes what the model sees:
    its results then depend on that knob)."""
    # a layer's values are computed in row chunks of all inputs: batched inputs only there
    with ragged_inputs(ragged and scope.site is None):
        call = scope.prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            float_inputs=False,  # token ids may be ablated to a baseline id
        )
    if any(call.inputs.ragged):
        call = replace(call, chunk_rows=max(call.batch_size, 1), chunk_auto=False)
    return call


def _ablated(features: Tensor, start: int, stop: int, n_features: int, device: Any) -> Tensor:
    """Coalitions ``(stop - start, M)`` of items ``start..stop``: item 0 keeps everything,
    item ``j >= 1`` everything but ``features[j - 1]`` (``features`` on ``device``).

    Which rows are ablated follows from the item range alone, so building a chunk reads
    nothing back from the device.
    """
    coalitions = torch.ones(stop - start, n_features, dtype=torch.bool, device=device)
    first = 1 if start == 0 else 0  # the chunk's first ablated row
    if stop - start > first:
        rows = torch.arange(first, stop - start, device=device)
        coalitions[rows, features[start + first - 1 : stop - 1]] = False
    return coalitions


def _drops(values: Tensor) -> Tensor:
    """``f(original) - f(perturbed)`` per perturbation: item 0 is the original."""
    return values[0:1] - values[1:]


@register("feature_ablation")
class FeatureAblation(EmptyBatchInBody, Method):
    """Replace each feature (group) by its baseline; attribution = drop of the output.

    With ``layer`` the layer's activations are ablated (Captum's LayerFeatureAblation);
    with ``layer`` and ``neuron`` the selected neuron is explained instead of the output
    (NeuronFeatureAblation).

    Parameters
    ----------
    model : callable
        The model or any forward function.
    layer : nn.Module, keyword-only, optional
        Ablate this layer's outputs (inputs with ``attribute_to_layer_input``).
    """

    def __init__(
        self, model: Any, *, layer: Any = None, attribute_to_layer_input: bool = False
    ) -> None:
        super().__init__(model, layer=layer, attribute_to_layer_input=attribute_to_layer_input)

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        feature_mask: Any = None,
        neuron: Any = None,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Ablation attributions.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``; without ``layer``, an
            input may have another first dimension ``L`` (a sparse feature list, possibly
            empty, as Captum accepts): its ``L`` rows are perturbed together with one mask
            of first dimension 1 and it is fed whole to every forward (one perturbation
            per forward then, whatever ``chunk_size``); its attributions are
            ``(N or 1, ...)`` like the others'
        baselines : None (0), a number, a tensor broadcastable to each input, or one per
            input; with ``layer``, broadcastable to the layer's tensors instead
        target : which output to explain (see :mod:`whybox.core.targets`)
        forward_args : extra model arguments
        feature_mask : integer tensor per input (per layer tensor with ``layer``),
            broadcastable to it, ids ``0..M-1``; elements sharing an id are ablated
            together. Ids may span inputs. Default: every scalar is its own feature.
        neuron : with ``layer``, explain this neuron (see
            :func:`whybox.core.scope.select_neuron`)
        chunk_size : rows per forward (``"auto"``: memory-bounded); rounded down to whole
            perturbations of the batch, at least one. Results do not depend on it.

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (like the layer with ``layer``), in the
            output's dtype; first dimension 1 when the model returns one scalar per batch.
        """
        owner = self.owner
        scope = self._scope(neuron)
        call = _prepare(scope, inputs, target, forward_args, chunk_size, show_progress, ragged=True)
        # the inputs, or the layer's values (fed in place of the layer's own)
        space = scope.perturbation(call)
        tensors = space.tensors
        base = prepare_baselines(baselines, space.values, owner=owner).tensors
        masks = prepare_masks(feature_mask, tensors, owner=owner)
        n = tensors[0].shape[0]
        if n == 0:
            return scope.result(
                self, call, empty_leaves(tensors), extras={"aggregate_output": False}
            )
        features = held_features(feature_order(masks), masks, tensors)
        device = tensors[0].device
        on_device = features.to(device)  # once: chunks slice it (no copy, no host sync)

        def build(start: int, stop: int) -> RowBatch:
            # item 0 is the original batch, item j ablates features[j - 1]
            coalitions = _ablated(on_device, start, stop, masks.n_features, device)
            return space.rows(coalition_rows(tensors, base, masks, coalitions))

        outputs = run_items(space.call, n_items=len(features) + 1, build=build, rows_per_item=n)
        check_aggregate_masks(masks, outputs.aggregate, owner, "feature_mask")
        drops = _drops(outputs.values)  # (P, B)
        if masks.starts is not None and features.shape[0] == masks.n_features:
            # the default masks with every feature held: ``features`` is 0..M-1, so the
            # scatter below is a plain (contiguous) transpose
            per_feature = drops.T.contiguous()
        else:
            per_feature = drops.new_zeros(drops.shape[1], masks.n_features)
            per_feature[:, features.to(drops.device)] = drops.T
        leaves = expand_to_elements(per_feature, masks, tensors)
        return scope.result(self, call, leaves, extras={"aggregate_output": outputs.aggregate})


# ---------------------------------------------------------------------------
# Occlusion
# ---------------------------------------------------------------------------


def _per_input(owner: str, name: str, value: Any, n_inputs: int, dims: list[int]) -> list:
    """Captum's forms: one tuple for a single input, or a tuple of per-input entries."""
    if value is None:
        return [1] * n_inputs
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * n_inputs
    if not isinstance(value, (tuple, list)):
        fail(owner, name, "an int, a tuple of ints, or one entry per input", value)
    if n_inputs == 1 and not (len(value) == 1 and isinstance(value[0], (tuple, list))):
        if name == "strides" and len(value) == 1 and dims[0] != 1:
            # Captum's one-entry tuple for a single input: that input's (int) stride
            return list(value)
        if all(isinstance(v, int) for v in value):
            return [tuple(value)]
    if len(value) != n_inputs:
        fail(owner, name, f"one entry per input ({n_inputs})", value)
    return list(value)


@register("occlusion")
class Occlusion(EmptyBatchInBody, Method):
    """Slide a window over each input, replace it by the baseline, record the output drop.

    Each element's attribution is the mean drop over the windows covering it (Zeiler &
    Fergus, 2014; Captum semantics: the last window along a dimension may stick out and is
    clipped, so every element is covered). With ``layer`` the windows slide over the
    layer's values instead (fed in place of the layer's own), shaped like the layer.
    """

    def attribute(
        self,
        inputs: Any,
        *,
        sliding_window_shapes: Any,
        strides: Any = None,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Occlusion attributions.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        sliding_window_shapes : tuple of ints (one entry per non-batch dimension) for a
            single input, or a tuple of such tuples, one per input
        strides : None (1), an int, a tuple per dimension, or one such entry per input
        baselines : as :meth:`FeatureAblation.attribute`

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs``, in the output's dtype (first
            dimension 1 for models returning one scalar per batch).
        """
        owner = self.owner
        scope = self._scope()
        call = _prepare(scope, inputs, target, forward_args, chunk_size, show_progress)
        space = scope.perturbation(call)
        tensors = space.tensors
        base = prepare_baselines(baselines, space.values, owner=owner).tensors
        dims = [x.dim() - 1 for x in tensors]
        shapes = _per_input(
            owner, "sliding_window_shapes", sliding_window_shapes, len(tensors), dims
        )
        steps = _per_input(owner, "strides", strides, len(tensors), dims)
        windows: list[SlidingWindows] = []
        for index, (x, shape, step) in enumerate(zip(tensors, shapes, steps)):
            if not isinstance(shape, (tuple, list)) or len(shape) != x.dim() - 1:
                fail(
                    owner,
                    "sliding_window_shapes",
                    f"a tuple of {x.dim() - 1} ints for input {index} of shape {tuple(x.shape)}",
                    shape,
                )
            try:
                windows.append(_grid(tuple(x.shape[1:]), tuple(shape), step, x.device))
            except ValueError as err:
                # the window helper names its own argument: blame the caller's one
                strides_wrong = getattr(err, "parameter", None) == "strides"
                fail(
                    owner,
                    "strides" if strides_wrong else "sliding_window_shapes",
                    (
                        f"steps >= 1 that fit the windows for input {index}"
                        if strides_wrong
                        else f"windows that fit input {index} of shape {tuple(x.shape)}"
                    ),
                    f"{tuple(shape)} windows with strides {step!r} "
                    f"({str(err).replace(' parameter of sliding_window_masks', '')})",
                    raw=True,
                )
        n = tensors[0].shape[0]
        if n == 0:
            return scope.result(
                self, call, empty_leaves(tensors), extras={"aggregate_output": False}
            )
        counts = [g.windows.n_windows for g in windows]
        offsets = [0]
        for count in counts:
            offsets.append(offsets[-1] + count)
        device = tensors[0].device
        # one input with a small window table: each chunk's keep flags are a slice of it
        table = windows[0].keep if len(windows) == 1 else None

        def build(start: int, stop: int) -> RowBatch:
            k = stop - start
            if table is not None:
                x, b = tensors[0], base[0]
                keep = table[start:stop]
                rows = keep_or_baseline(keep.unsqueeze(1), x, b)
                leaf = rows.reshape((k * n,) + tuple(x.shape[1:]))
                return space.rows(RowBatch((leaf,), example_index(n, k, device)))
            leaves = []
            for i, (x, b, g) in enumerate(zip(tensors, base, windows)):
                keep = torch.ones((k,) + tuple(x.shape[1:]), dtype=torch.bool, device=device)
                # the chunk's global window ids are start - 1 .. stop - 1 (-1: the original);
                # input i's windows are offsets[i] .. offsets[i + 1]
                low, high = max(start - 1, offsets[i]), min(stop - 1, offsets[i + 1])
                if low < high:
                    local = torch.arange(low - offsets[i], high - offsets[i], device=device)
                    first = low - (start - 1)
                    keep[first : first + high - low] = ~g.windows.masks(local, device=device)
                rows = keep_or_baseline(keep.unsqueeze(1), x, b)
                leaves.append(rows.reshape((k * n,) + tuple(x.shape[1:])))
            return space.rows(RowBatch(tuple(leaves), example_index(n, k, device)))

        outputs = run_items(space.call, n_items=offsets[-1] + 1, build=build, rows_per_item=n)
        drops = _drops(outputs.values)  # (P, B)
        leaves = tuple(
            _window_sum(drops[offsets[i] : offsets[i + 1]], g.windows, device, g.dim_masks)
            / g.coverage
            for i, g in enumerate(windows)
        )
        return scope.result(self, call, leaves, extras={"aggregate_output": outputs.aggregate})


#: the most elements (windows x example elements) of an Occlusion keep-flag table built
#: once per input shape and reused (tiny inputs: chunks are slices of it)
_KEEP_TABLE_ELEMENTS = 2**16


class _Grid(NamedTuple):
    """An input's occlusion windows with what every call on that shape reuses.

    Attributes
    ----------
    windows : the windows (:func:`~whybox.core.masks.sliding_window_masks`)
    coverage : ``input_shape`` long: windows covering each element
    dim_masks : per dimension ``(counts[d], input_shape[d])`` bool memberships
    keep : ``(1 + n_windows, *input_shape)`` bool keep flags of item ``i`` (item 0: the
        original, item ``j``: everything but window ``j - 1``), or ``None`` for big tables
    """

    windows: SlidingWindows
    coverage: Tensor
    dim_masks: tuple[Tensor, ...]
    keep: Tensor | None


@functools.lru_cache(maxsize=64)
def _cached_grid(
    shape: tuple[int, ...], window: tuple[int, ...], step: Any, device: torch.device
) -> _Grid:
    windows = _on(sliding_window_masks(shape, window, step), device)
    dims = tuple(windows.dim_masks(k, device=device) for k in range(len(shape)))
    keep = None
    if windows.n_windows * math.prod(shape) <= _KEEP_TABLE_ELEMENTS:
        original = torch.ones((1,) + shape, dtype=torch.bool, device=device)
        keep = torch.cat([original, ~windows.masks(device=device)])
    return _Grid(windows, windows.coverage(device=device), dims, keep)


def _grid(shape: tuple[int, ...], window: tuple, step: Any, device: torch.device) -> _Grid:
    """The windows of one input (cached for plain int shapes and strides: the grid is read
    only, so calls on the same shape share it)."""

    def plain(value: Any) -> bool:
        return type(value) is int or (
            isinstance(value, tuple) and all(type(v) is int for v in value)
        )

    if plain(window) and (step is None or plain(step)):
        return _cached_grid(shape, window, step, device)
    windows = _on(sliding_window_masks(shape, window, step), device)
    dims = tuple(windows.dim_masks(k, device=device) for k in range(len(shape)))
    return _Grid(windows, windows.coverage(device=device), dims, None)


def _on(windows: SlidingWindows, device: torch.device) -> SlidingWindows:
    """The windows with their starts on ``device``: each chunk's masks are built there
    without copying the starts (and the chunk's window ids) from the host."""
    if windows.starts.device == device:
        return windows
    return replace(windows, starts=windows.starts.to(device))


def _window_sum(
    drops: Tensor,
    windows: SlidingWindows,
    device: Any,
    dim_masks: tuple[Tensor, ...] | None = None,
) -> Tensor:
    """``sum_p drops[p] * window_p`` using the separable window grid.

    ``drops`` is ``(P, B)`` with window ids first-dimension-fastest; the sum is a
    contraction of a ``(B, c_1, ..., c_d)`` table with one ``(c_k, size_k)`` membership
    matrix per dimension (``dim_masks``, built when not given) -- no full-size window
    mask is built.
    """
    d = len(windows.input_shape)
    b = drops.shape[1]
    if d == 0:
        return drops.sum(dim=0)  # scalar examples: one window covers the whole example
    table = drops.T.reshape((b,) + tuple(reversed(windows.counts)))
    table = table.permute(0, *range(d, 0, -1))  # (B, c_1, ..., c_d)
    letters = string.ascii_letters
    counts_ix = letters[:d]
    sizes_ix = letters[d : 2 * d]
    if dim_masks is None:
        dim_masks = tuple(windows.dim_masks(k, device=device) for k in range(d))
    operands = [table] + [mask.to(drops.dtype) for mask in dim_masks]
    spec = (
        "Z"
        + counts_ix
        + ","
        + ",".join(c + s for c, s in zip(counts_ix, sizes_ix))
        + "->Z"
        + sizes_ix
    )
    return torch.einsum(spec, *operands)


# ---------------------------------------------------------------------------
# FeaturePermutation
# ---------------------------------------------------------------------------


@register("feature_permutation")
class FeaturePermutation(EmptyBatchInBody, Method):
    """Permutation importance: shuffle one feature across the batch, record the drop.

    Parameters
    ----------
    model : callable
    perm_func : callable, keyword-only, optional
        ``perm_func(x, feature_mask) -> Tensor`` returning ``x`` with the masked elements
        shuffled across the batch (Captum's form). Default: a permutation of the batch
        drawn from ``seed`` (never the identity).
    """

    parameters = {"perm_func": IsCallable(), "seed": Check(check_seed)}

    def __init__(
        self,
        model: Any,
        *,
        perm_func: Callable[[Tensor, Tensor], Tensor] | None = None,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
    ):
        super().__init__(model, layer=layer, attribute_to_layer_input=attribute_to_layer_input)
        self.perm_func = perm_func

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        feature_mask: Any = None,
        seed: int | torch.Generator | RandomSource | None = None,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Permutation attributions; the batch must hold at least 2 examples.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)`` with ``N >= 2``; an
            input may have another first dimension ``L`` (a sparse feature list, as in
            :meth:`FeatureAblation.attribute`): its features are shuffled across its own
            ``L`` rows
        feature_mask : as :meth:`FeatureAblation.attribute`
        seed : int, ``torch.Generator`` or random source for the permutations

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (first dimension 1 for models that
            return one scalar per batch, e.g. a loss).
        """
        owner = self.owner
        scope = self._scope()
        call = _prepare(scope, inputs, target, forward_args, chunk_size, show_progress, ragged=True)
        # the inputs, or the layer's values permuted across the batch (LayerFeaturePermutation)
        space = scope.perturbation(call)
        tensors = space.tensors
        n = tensors[0].shape[0]
        if n == 1:
            fail(
                owner,
                "inputs",
                "a batch of at least 2 examples to permute across (or an empty batch)",
                f"{n}",
                raw=True,
            )
        masks = prepare_masks(feature_mask, tensors, owner=owner)
        if n == 0:
            return scope.result(
                self, call, empty_leaves(tensors), extras={"aggregate_output": False}
            )
        features = held_features(feature_order(masks), masks, tensors)
        device = tensors[0].device
        on_device = features.to(device)
        sources: list[Tensor] = []
        if self.perm_func is None:
            # per input, the source row of every row of every item ((F + 1, rows): item 0
            # is the identity), on the device once: chunks slice it
            sources = [
                torch.cat([torch.arange(x.shape[0]).unsqueeze(0), shuffles]).to(device)
                for x, shuffles in zip(
                    tensors,
                    _shuffles(
                        make_random(seed),
                        features,
                        masks,
                        tensors,
                        getattr(call.chunk_rows, "perturbations", 1),
                    ),
                )
            ]

        def build(start: int, stop: int) -> RowBatch:
            rows = _permuted_rows(start, stop) if self.perm_func is None else _custom(start, stop)
            return space.rows(rows)

        if self.perm_func is not None:
            # read once, not per item: the feature ids and which input holds which
            feature_ids = features.tolist()
            held = [set(mask.reshape(-1).unique().tolist()) for mask in masks.flat]

        def _custom(start: int, stop: int) -> RowBatch:
            leaves = []
            for x, mask, ids in zip(tensors, masks.flat, held):
                shaped = mask.view((mask.shape[0],) + tuple(x.shape[1:]))
                rows = []
                for item in range(start, stop):
                    feature = feature_ids[item - 1] if item else None
                    # Captum calls perm_func only for inputs holding the feature.
                    if feature is None or feature not in ids:
                        rows.append(x)
                        continue
                    rows.append(self.perm_func(x, shaped == feature))
                leaves.append(torch.cat(rows, dim=0))
            index = example_index(n, stop - start, device)
            return RowBatch(tuple(leaves), index)

        def _permuted_rows(start: int, stop: int) -> RowBatch:
            # Vectorised default: row j of item t takes the permuted example's values on
            # feature t's elements (item 0 is the original batch).
            k = stop - start
            coalitions = _ablated(on_device, start, stop, masks.n_features, device)
            leaves = []
            starts = masks.starts or (None,) * len(tensors)
            for x, mask, order, first in zip(tensors, masks.flat, sources, starts):
                # each input's rows: the batch's N, or its own L (a sparse feature list)
                source_index = order[start:stop].reshape(-1)
                keep = keep_flags(coalitions, mask, start=first)
                keep = keep.reshape((k, mask.shape[0]) + tuple(x.shape[1:]))
                source = x.index_select(0, source_index).view((k,) + tuple(x.shape))
                rows = torch.where(keep, x.unsqueeze(0), source)
                leaves.append(rows.reshape((k * x.shape[0],) + tuple(x.shape[1:])))
            return RowBatch(tuple(leaves), example_index(n, k, device))

        outputs = run_items(space.call, n_items=len(features) + 1, build=build, rows_per_item=n)
        check_aggregate_masks(masks, outputs.aggregate, owner, "feature_mask")
        drops = _drops(outputs.values)
        per_feature = drops.new_zeros(drops.shape[1], masks.n_features)
        per_feature[:, features.to(drops.device)] = drops.T
        leaves = expand_to_elements(per_feature, masks, tensors)
        return scope.result(self, call, leaves, extras={"aggregate_output": outputs.aggregate})


def _shuffles(
    random: RandomSource,
    features: Tensor,
    masks: Any,
    tensors: tuple[Tensor, ...],
    per_forward: int = 1,
) -> list[Tensor]:
    """Per input, the ``(F, rows)`` row order of each feature's shuffle (never the identity).

    Drawn as Captum 0.9's default ``perm_func`` draws them, so seeded Captum code gets the
    same permutations: features go ``per_forward`` at a time (``perturbations_per_eval``),
    in feature order; for each such group, every input holding one of its features (in
    input order) draws one shuffle per feature of the group, used where the input holds
    that feature. One input: one shuffle per feature, in feature order. An input with
    another first dimension (a sparse feature list) gets its own shuffle of its rows for
    each feature it holds, drawn right after the feature's batch shuffle; the other rows
    of the table are the identity (those elements are not moved).
    """
    n = tensors[0].shape[0]
    ragged = [x.shape[0] != n for x in tensors]
    if len(tensors) == 1 and not ragged[0]:
        return [random.permutations(len(features), n, exclude_identity=True)]
    if not any(ragged):
        held = [set(mask.reshape(-1).unique().tolist()) for mask in masks.flat]
        ids = features.tolist()
        orders = [torch.arange(n).repeat(len(ids), 1) for _ in tensors]
        step = max(int(per_forward), 1)
        # the draws in Captum's order, (input, feature position) each, then drawn at once
        # (the same permutations as one draw after another)
        plan: list[tuple[int, int]] = []
        for first in range(0, len(ids), step):
            group = range(first, min(first + step, len(ids)))
            for i, own in enumerate(held):
                if any(ids[j] in own for j in group):
                    plan.extend((i, j) for j in group)
        drawn = random.permutations(len(plan), n, exclude_identity=True)
        for row, (i, j) in zip(drawn, plan):
            if ids[j] in held[i]:
                orders[i][j] = row
        return orders
    orders = [torch.arange(x.shape[0]).repeat(len(features), 1) for x in tensors]
    held = [set(mask.reshape(-1).unique().tolist()) for mask in masks.flat]
    for j, feature in enumerate(features.tolist()):
        owners = [i for i in range(len(tensors)) if feature in held[i]]
        batched = [i for i in owners if not ragged[i]]
        if batched:
            shared = random.permutations(1, n, exclude_identity=True)[0]
            for i in batched:
                orders[i][j] = shared
        for i in owners:
            if ragged[i] and tensors[i].shape[0] > 0:
                orders[i][j] = random.permutations(1, tensors[i].shape[0], exclude_identity=True)[0]
    return orders
