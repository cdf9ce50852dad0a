"""Shapley-value methods: exact ShapleyValues, ShapleyValueSampling and KernelShap.

The game: ``v(S) = f(x with the features outside S set to their baseline)``. All three
methods evaluate coalitions as rows built lazily from compact masks through the one
evaluator, then do their own maths on the ``(n_coalitions, N)`` table of outputs:

* ``ShapleyValues`` enumerates the ``2**M`` coalitions once (Captum walks ``M!``
  permutations, ``M * M!`` forwards) and weights marginal contributions exactly;
* ``ShapleyValueSampling`` averages marginal contributions along random permutations;
* ``KernelShap`` fits the Shapley kernel regression (paired sampling, small coalition
  sizes enumerated exactly, float64 weighted least squares under the efficiency
  constraint ``sum(phi) = f(x) - f(baseline)``).

Random draws come from the random source (``seed=``): orderings from
:meth:`~whybox.core.randomness.RandomSource.permutations`, KernelSHAP's design from the
source's torch generator. An empty batch (``N = 0``) gives zero-row attributions (and a
``(0,)`` delta) without evaluating anything.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from whybox.core.call import Call, prepare_call
from whybox.core.forward import ChunkSize, RowBatch
from whybox.core.inputs import prepare_baselines
from whybox.core.masks import Coalitions, kernel_shap_coalitions
from whybox.core.method import Bool, Check, Int
from whybox.core.perturbation import (
    EmptyBatchInBody,
    FlatMasks,
    check_aggregate_masks,
    check_finite,
    check_finite_each,
    coalition_rows,
    empty_leaves,
    expand_to_elements,
    prepare_masks,
    run_items,
)
from whybox.core.randomness import RandomSource, check_seed, make_random
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.surrogate.fit import (
    _NORMAL_MAX_FEATURES,
    NormalFactor,
    _constrained_checked,
    normal_factor,
)
from whybox.core.validation import fail

from .base import Method

__all__ = ["ShapleyValues", "ShapleyValueSampling", "KernelShap"]

#: Largest number of features ShapleyValues enumerates (2**M coalitions).
MAX_EXACT_FEATURES = 24

_FINITE_INPUTS = "finite (no NaN or inf): the Shapley-kernel regression cannot fit them"
_FINITE_OUTPUTS = (
    "a model returning finite outputs (no NaN or inf) on the perturbed inputs, which the "
    "Shapley-kernel regression fits"
)


def _setup(method: Method, inputs, baselines, target, forward_args, feature_mask, chunk, progress):
    """Call, baselines, masks and the present feature ids (empty only for ``N = 0``)."""
    owner = method.owner
    call = prepare_call(
        owner,
        method.model,
        inputs,
        target=target,
        forward_args=forward_args,
        chunk_size=chunk,
        show_progress=progress,
        require_float=False,
    )
    base = prepare_baselines(baselines, call.inputs, owner=owner).tensors
    masks = prepare_masks(feature_mask, call.tensors, owner=owner, shift_negative=False)
    present = masks.present_ids
    if present.numel() == 0 and call.batch_size > 0:
        fail(owner, "feature_mask", "a mask with at least one feature", feature_mask)
    return owner, call, base, masks, present


def _empty(method: Method, call: Call, masks: FlatMasks, *, input_shape: bool = True):
    """The result for an empty batch (nothing is evaluated): zero-row attributions shaped
    like the inputs, or ``(0, M)`` per-feature values, and a ``(0,)`` delta."""
    leaves = empty_leaves(call.tensors)
    delta = leaves[0].new_zeros(0)
    table = leaves[0].new_zeros(0, masks.n_features)
    extras = {"aggregate_output": False, "feature_attributions": table}
    if input_shape:
        return method._result(call, leaves, delta=delta, extras=extras)
    return Explanation(
        attributions=table,
        inputs=call.inputs.restore(call.tensors),
        target=call.target.raw,
        method=method.name,
        delta=delta,
        extras=extras,
    )


def _on_present(masks: FlatMasks, present: Tensor, keep: Tensor) -> Tensor:
    """Coalitions over present features ``(k, Mp)`` -> over all ids ``(k, M)`` (``keep``
    itself when every id is present: ``present`` is then ``0..M-1``)."""
    if present.numel() == masks.n_features:
        return keep
    full = torch.zeros(keep.shape[0], masks.n_features, dtype=torch.bool, device=keep.device)
    full[:, present.to(keep.device)] = keep
    return full


def _finish(method, call, masks, present, phi_present, outputs, parameters, delta=None):
    """Scatter per-present-feature values to every element and wrap the result."""
    if present.numel() == masks.n_features and phi_present.is_contiguous():
        phi = phi_present  # every id present (``present`` is 0..M-1): nothing to scatter
    else:
        phi = phi_present.new_zeros(phi_present.shape[0], masks.n_features)
        phi[:, present.to(phi.device)] = phi_present
    leaves = expand_to_elements(phi, masks, call.tensors)
    return method._result(
        call,
        leaves,
        delta=delta,
        parameters=parameters,
        extras={
            "aggregate_output": outputs.aggregate,
            "feature_attributions": phi,
            "output_shape": outputs.shape,
        },
    )


@register("shapley_values")
class ShapleyValues(EmptyBatchInBody, Method):
    """Exact Shapley values by enumerating all ``2**M`` coalitions of the features.

    ``phi_i = sum_{S not containing i} |S|! (M - |S| - 1)! / M! * (v(S + i) - v(S))``.
    Exact, so efficiency, symmetry and dummy hold up to rounding; practical up to about
    20 features (``2**M`` perturbations of the batch).
    """

    has_delta = True

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        feature_mask: Any = None,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Exact Shapley values.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        baselines : None (0), a number, a tensor broadcastable to each input, or one per
            input -- the value a feature takes when absent from a coalition
        feature_mask : integer tensor per input, ids ``0..M-1`` (ids may span inputs);
            default every scalar is a feature. Ids absent from every mask are skipped.
        chunk_size : rows per forward (``"auto"``); never changes the result

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (each element gets its feature's
            value); ``delta`` ``(N,)`` = ``sum(phi) - (f(x) - f(baseline))`` (rounding only);
            ``extras["feature_attributions"]`` is ``(N, M)``.
        """
        owner, call, base, masks, present = _setup(
            self, inputs, baselines, target, forward_args, feature_mask, chunk_size, show_progress
        )
        if call.batch_size == 0:
            return _empty(self, call, masks)
        m = present.numel()
        if m > MAX_EXACT_FEATURES:
            fail(
                owner,
                "feature_mask",
                f"at most {MAX_EXACT_FEATURES} features for exact Shapley values (2**M "
                "forwards); group features or use ShapleyValueSampling / KernelShap",
                f"{m} features",
                raw=True,
            )
        device = call.tensors[0].device
        n = call.batch_size
        bits = 2 ** torch.arange(m, device=device)

        def build(start: int, stop: int) -> RowBatch:
            codes = torch.arange(start, stop, device=device)
            keep = (codes[:, None] & bits[None, :]) != 0
            return coalition_rows(call.tensors, base, masks, _on_present(masks, present, keep))

        outputs = run_items(call, n_items=2**m, build=build, rows_per_item=n)
        check_aggregate_masks(masks, outputs.aggregate, owner, "feature_mask")
        values = outputs.values.to(torch.float64)  # (2**M, B)
        codes = torch.arange(2**m, device=values.device)
        sizes = torch.zeros_like(codes)
        for j in range(m):
            sizes += (codes >> j) & 1
        weight_of_size = torch.tensor(
            [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)],
            dtype=torch.float64,
            device=values.device,
        )
        phi = values.new_zeros(values.shape[1], m)
        for j in range(m):
            without = codes[(codes & (1 << j)) == 0]
            gains = values[without | (1 << j)] - values[without]  # (2**(M-1), B)
            phi[:, j] = (weight_of_size[sizes[without]][:, None] * gains).sum(dim=0)
        delta = phi.sum(dim=1) - (values[-1] - values[0])
        # the output's dtype, but never an integer one: Shapley values are weighted means
        dtype = outputs.values.dtype if outputs.values.is_floating_point() else torch.float64
        return _finish(
            self,
            call,
            masks,
            present,
            phi.to(dtype),
            outputs,
            {"n_features": m},
            delta=delta.to(dtype),
        )


@register("shapley_value_sampling")
class ShapleyValueSampling(EmptyBatchInBody, Method):
    """Shapley values estimated from ``n_samples`` random feature orderings.

    Along each ordering, features are added one by one to the baseline; a feature's
    attribution is the mean output increase when it is added (Castro et al., 2009).
    Every ordering ends at ``f(x)``, so efficiency holds exactly for any ``n_samples``.
    """

    has_delta = True
    parameters = {"n_samples": Int(minimum=1), "seed": Check(check_seed)}

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        feature_mask: Any = None,
        n_samples: int = 25,
        seed: int | torch.Generator | RandomSource | None = None,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Sampled Shapley values.

        Parameters
        ----------
        inputs, baselines, target, forward_args, feature_mask :
            as :meth:`ShapleyValues.attribute`
        n_samples : number of random orderings (>= 1); ``n_samples * (M - 1) + 2``
            perturbations of the batch are evaluated
        seed : int, ``torch.Generator`` or random source; the orderings are shared by all
            examples, so results do not depend on the batch layout

        Returns
        -------
        Explanation
            As :meth:`ShapleyValues.attribute`.
        """
        owner, call, base, masks, present = _setup(
            self, inputs, baselines, target, forward_args, feature_mask, chunk_size, show_progress
        )
        if call.batch_size == 0:
            return _empty(self, call, masks)
        m = present.numel()
        device = call.tensors[0].device
        n = call.batch_size
        orders = _permutations(make_random(seed), masks.n_features, n_samples, present)  # (S, Mp)
        positions = orders.argsort(dim=1)  # (S, Mp): step at which each present feature joins
        ranks = positions.to(device)  # rank of each present feature per ordering
        inner = m - 1  # evaluated steps per ordering; the full coalition is shared
        last = 1 + n_samples * inner  # item index of the full coalition (f(x))
        # small jobs: every item's coalition at once (a few ops instead of a dozen per chunk)
        table = _walk_coalitions(ranks, inner) if (last + 1) * m <= _WALK_TABLE_CELLS else None

        def build(start: int, stop: int) -> RowBatch:
            if table is not None:
                keep = table[start:stop]
                return coalition_rows(call.tensors, base, masks, _on_present(masks, present, keep))
            items = torch.arange(start, stop, device=device)
            steps = (items - 1).clamp(min=0)
            ordering = (steps // max(inner, 1)).clamp(max=n_samples - 1)
            added = steps % max(inner, 1) + 1
            keep = ranks[ordering] < added[:, None]
            # the empty and the full coalition, without boolean indexing (a host sync on
            # an accelerator)
            keep &= (items != 0)[:, None]
            keep |= (items == last)[:, None]
            return coalition_rows(call.tensors, base, masks, _on_present(masks, present, keep))

        outputs = run_items(call, n_items=last + 1, build=build, rows_per_item=n)
        check_aggregate_masks(masks, outputs.aggregate, owner, "feature_mask")
        values = outputs.values  # (items, B)
        if not values.is_floating_point():
            values = values.to(torch.float64)  # integer outputs (counts): averaged below
        walk = values[1:last].reshape(n_samples, inner, -1)
        start_v = values[0].expand(n_samples, 1, -1)
        end_v = values[last].expand(n_samples, 1, -1)
        path = torch.cat([start_v, walk, end_v], dim=1)  # (S, Mp + 1, B)
        gains = path[:, 1:] - path[:, :-1]  # (S, Mp, B): gain of adding orders[s, j]
        position = positions.to(gains.device)  # present-feature index -> step
        # gains per present feature: gather along the step axis by each feature's step
        index = position.unsqueeze(-1).expand(-1, -1, gains.shape[2])
        per_feature = torch.gather(gains, 1, index).mean(dim=0).T  # (B, Mp)
        delta = per_feature.sum(dim=1) - (values[last] - values[0])
        return _finish(
            self,
            call,
            masks,
            present,
            per_feature,
            outputs,
            {"n_samples": n_samples},
            delta=delta,
        )


#: ShapleyValueSampling builds every item's coalition up front when there are at most this
#: many (items x features) cells, instead of a dozen small ops per chunk
_WALK_TABLE_CELLS = 2**22


def _walk_coalitions(ranks: Tensor, inner: int) -> Tensor:
    """Every item's coalition of ShapleyValueSampling: ``(2 + S * inner, Mp)`` bool.

    Item 0 is the empty coalition, item ``1 + s * inner + j`` keeps the first ``j + 1``
    features of ordering ``s`` (``ranks[s] < j + 1``), the last item the full coalition:
    the rows :meth:`ShapleyValueSampling.attribute`'s per-chunk build makes.
    """
    m = ranks.shape[1]
    steps = torch.arange(1, inner + 1, device=ranks.device).view(1, inner, 1)
    walk = (ranks.unsqueeze(1) < steps).reshape(-1, m)  # (S * inner, Mp)
    ends = _empty_and_full(m, ranks.device)
    return torch.cat([ends[:1], walk, ends[1:]])


@functools.lru_cache(maxsize=64)
def _empty_and_full(m: int, device: torch.device) -> Tensor:
    """``(2, M)`` bool: the empty and the full coalition (cached; only read)."""
    return torch.arange(2, device=device).bool().unsqueeze(1).expand(2, m).contiguous()


def _permutations(random: RandomSource, n_features: int, n_samples: int, present: Tensor) -> Tensor:
    """``(n_samples, Mp)`` orderings of the present features (as positions in ``present``).

    Orderings are drawn over all ``n_features`` ids (so the facade's source repeats
    Captum's draws, which are over ``max id + 1`` features) and absent ids are then
    dropped, which leaves the relative order of present features unchanged.
    """
    perms = random.permutations(n_samples, n_features)
    if present.numel() == n_features:
        return perms  # every id present (``present`` is 0..M-1): positions are the ids
    position_of = torch.full((n_features,), -1, dtype=torch.long)
    position_of[present.cpu()] = torch.arange(present.numel())
    mapped = position_of[perms]
    return mapped[mapped >= 0].view(n_samples, present.numel())


#: designs of at most this many coalition cells (features x samples) are cached: tiny jobs,
#: where drawing them is a large share of the call; an image's per-pixel design is not kept
_CACHED_DESIGN_CELLS = 2**18


class _Design(NamedTuple):
    """KernelSHAP's coalitions with what its regression reads of them.

    ``X``: the coalitions as float64 (the regression's design matrix); ``factor``: its
    normal-equations factor (:func:`~whybox.core.surrogate.fit.normal_factor`) for a
    cached design on the CPU, ``None`` otherwise (the solver then computes it).
    """

    coalitions: Coalitions
    X: Tensor
    factor: NormalFactor | None = None


def _design(m: int, budget: int, seed: Any) -> _Design:
    """KernelSHAP's coalitions and weights for ``budget`` samples over ``m`` features.

    An int seed gives a fresh generator seeded with it, so the design depends on
    ``(m, budget, seed)`` alone and is drawn once per such triple (:func:`_seeded_design`);
    ``None``, generators and random sources draw a new one from their state. Only small
    designs are cached (``_CACHED_DESIGN_CELLS``).
    """
    small = m * max(budget, 1) <= _CACHED_DESIGN_CELLS  # the cache's memory stays bounded
    if small and isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return _seeded_design(m, budget, int(seed))
    coalitions = kernel_shap_coalitions(m, budget, make_random(seed).generator)
    return _Design(coalitions, coalitions.masks.to(torch.float64))


@functools.lru_cache(maxsize=32)
def _seeded_design(m: int, budget: int, seed: int) -> _Design:
    """:func:`_design` for an int seed (cached; callers only read it: KernelShap copies the
    coalitions into its items and its solver reads the weights, ``X`` and the factor)."""
    coalitions = kernel_shap_coalitions(m, budget, make_random(seed).generator)
    X = coalitions.masks.to(torch.float64)
    factor = None
    if 1 < m <= _NORMAL_MAX_FEATURES and X.device.type == "cpu" and X.shape[0] > 0:
        # the regression's design part, computed once for every call on this design
        factor = normal_factor(X.numpy(), coalitions.weights.numpy())
    return _Design(coalitions, X, factor)


@register("kernel_shap")
class KernelShap(EmptyBatchInBody, Method):
    """KernelSHAP (Lundberg & Lee, 2017): Shapley values as a weighted linear regression.

    Coalitions come from :func:`whybox.core.masks.kernel_shap_coalitions` (coalition sizes
    enumerated exactly from the smallest while the budget allows, the rest sampled in
    complementary pairs); the Shapley-kernel weighted least squares is solved in float64
    with the efficiency constraint enforced exactly. With ``n_samples >= 2**M`` every
    coalition is enumerated and the result equals the exact Shapley values.
    """

    has_delta = True
    parameters = {
        "n_samples": Int(minimum=2),
        "seed": Check(check_seed),
        "return_input_shape": Bool(),
    }

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        feature_mask: Any = None,
        n_samples: int = 25,
        seed: int | torch.Generator | RandomSource | None = None,
        return_input_shape: bool = True,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """KernelSHAP attributions.

        Parameters
        ----------
        inputs, baselines, target, forward_args, feature_mask :
            as :meth:`ShapleyValues.attribute`
        n_samples : model evaluations per example, counting the empty and the full
            coalition (Captum's budget); at least 2
        seed : int, ``torch.Generator`` or random source; coalitions are shared by all
            examples (one regression with ``N`` outputs)
        return_input_shape : ``True``: attributions shaped like ``inputs``; ``False``:
            one coefficient per feature, ``(N, M)``

        Returns
        -------
        Explanation
            ``attributions`` as requested; ``delta`` ``(N,)`` (efficiency residual,
            rounding only).
        """
        owner, call, base, masks, present = _setup(
            self, inputs, baselines, target, forward_args, feature_mask, chunk_size, show_progress
        )
        if call.batch_size == 0:
            return _empty(self, call, masks, input_shape=return_input_shape)
        # the regression cannot fit NaN / inf: say which argument holds them, up front
        check_finite_each(
            owner,
            (
                ("inputs", call.tensors, _FINITE_INPUTS),
                # no baselines: zeros, finite without a look
                ("baselines", () if baselines is None else base, _FINITE_INPUTS),
            ),
        )
        m = present.numel()
        device = call.tensors[0].device
        n = call.batch_size
        # the design's draws come from the source's torch generator (global for the facade)
        design, X, factor = _design(m, n_samples - 2, seed)
        coalitions = design.masks if design.masks.device == device else design.masks.to(device)
        if X.device != device:
            X = X.to(device)  # the regression runs where the inputs are, as the rows
        # item 0: the empty coalition, item 1: the full one, then the design's rows
        items_keep = torch.cat([_empty_and_full(m, device), coalitions])

        def build(start: int, stop: int) -> RowBatch:
            keep = items_keep[start:stop]
            return coalition_rows(call.tensors, base, masks, _on_present(masks, present, keep))

        outputs = run_items(call, n_items=2 + coalitions.shape[0], build=build, rows_per_item=n)
        check_aggregate_masks(masks, outputs.aggregate, owner, "feature_mask")
        check_finite(owner, "forward_func", (outputs.values,), expected=_FINITE_OUTPUTS)
        values = outputs.values.to(torch.float64)
        empty, full = values[0], values[1]
        total = full - empty  # (B,)
        if coalitions.shape[0] == 0:
            phi = (total / m).unsqueeze(1).expand(-1, m)
        else:
            # solve_constrained_wls without re-checking its data: the outputs were checked
            # above, the design and its weights are finite by construction
            y, totals = values[2:] - empty, total
            if values.device != X.device:
                y, totals = y.to(X.device), totals.to(X.device)
            weights = design.weights.to(X.device)
            phi = _constrained_checked(X, y, weights, totals, factor)  # (B, Mp)
        dtype = outputs.values.dtype
        delta = (phi.sum(dim=1) - total).to(dtype)
        phi = phi.to(dtype)
        parameters = {"n_samples": n_samples, "n_enumerated": design.n_enumerated}
        if not return_input_shape:
            full_phi = phi.new_zeros(phi.shape[0], masks.n_features)
            full_phi[:, present.to(phi.device)] = phi
            return Explanation(
                attributions=full_phi,
                inputs=call.inputs.restore(call.tensors),
                target=call.target.raw,
                method=self.name,
                parameters=parameters,
                delta=delta,
                extras={"aggregate_output": outputs.aggregate},
            )
        return _finish(self, call, masks, present, phi, outputs, parameters, delta=delta)
