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
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from whybox.core.call import Call, prepare_call
from whybox.core.forward import ChunkSize, RowBatch
from whybox.core.inputs import prepare_baselines
from whybox.core.masks import Coalitions, kernel_shap_coalitions
from whybox.core.masks.coalitions import (
    coalition_stack_applies,
    code_rows,
    kernel_shap_coalition_stack,
)
from whybox.core.method import Bool, Check, Choice, Int
from whybox.core.perturbation import (
    EmptyBatchInBody,
    FlatMasks,
    Outputs,
    check_aggregate_masks,
    check_finite,
    check_finite_each,
    coalition_rows,
    empty_leaves,
    expand_to_elements,
    prepare_masks,
    run_items,
)
from whybox.core.randomness import RandomSource, check_seed, is_int_seed, make_random
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.surrogate.fit import (
    _NORMAL_MAX_FEATURES,
    NormalFactor,
    _constrained_checked,
    constrained_wls_stack,
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
    """Coalitions over present features ``(k, Mp)`` (or ``(k, N, Mp)``, one per example) ->
    over all ids ``(k, M)`` (``(k, N, M)``); ``keep`` itself when every id is present:
    ``present`` is then ``0..M-1``."""
    if present.numel() == masks.n_features:
        return keep
    shape = (*keep.shape[:-1], masks.n_features)
    full = torch.zeros(shape, dtype=torch.bool, device=keep.device)
    full[..., present.to(keep.device)] = keep
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

#: KernelShap's ``coalitions`` options
COALITION_MODES = ("shared", "per_example")


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
    if small and is_int_seed(seed):
        return _seeded_design(m, budget, int(seed))
    return _draw(m, budget, make_random(seed).generator)


def _draw(m: int, budget: int, generator: torch.Generator | None) -> _Design:
    """One design drawn from ``generator`` (``None``: torch's global one), no factor."""
    coalitions = kernel_shap_coalitions(m, budget, generator)
    return _Design(coalitions, coalitions.masks.to(torch.float64))


def _with_factor(design: _Design) -> _Design:
    """``design`` with its normal-equations factor where the solver would use one (a CPU
    design of ``2..64`` features with rows): for designs that are cached and solved again."""
    m, X = design.X.shape[1], design.X
    if 1 < m <= _NORMAL_MAX_FEATURES and X.device.type == "cpu" and X.shape[0] > 0:
        # the regression's design part, computed once for every call on this design
        factor = normal_factor(X.numpy(), design.coalitions.weights.numpy())
        return design._replace(factor=factor)
    return design


@functools.lru_cache(maxsize=32)
def _seeded_design(m: int, budget: int, seed: int) -> _Design:
    """:func:`_design` for an int seed (cached; callers only read it: KernelShap copies the
    coalitions into its items and its solver reads the weights, ``X`` and the factor)."""
    return _with_factor(_draw(m, budget, make_random(seed).generator))


def _example_designs(
    m: int, budget: int, seed: Any, n: int
) -> tuple[tuple[_Design, ...], Callable[[], None] | None]:
    """One design per example, drawn in sequence from one generator (KernelShap's
    ``coalitions="per_example"``): example ``i``'s design is the source's ``i``-th draw.

    Parameters
    ----------
    m, budget : int
        Present features and coalitions per design (as :func:`_design`).
    seed : None, int, torch.Generator or RandomSource
        An int seeds one fresh generator for all ``n`` draws (small jobs are cached,
        :func:`_seeded_designs`); ``None`` seeds one from torch's global generator.
    n : int
        Examples (``>= 2``).

    Returns
    -------
    designs : tuple of _Design
        ``n`` designs, or one when a design involves no random draw (every coalition
        enumerated, or none to draw): every example's would be that one.
    rewind : callable or None
        Puts a caller's generator (``torch.Generator``, random source, torch's global one)
        back where it stood after the first design, for an aggregate model that explains the
        batch with one design (what ``coalitions="shared"`` draws); ``None`` when the
        generator is private or nothing more was drawn.
    """
    if is_int_seed(seed):
        if m * max(budget, 1) * n <= _CACHED_DESIGN_CELLS:  # the cache's memory stays bounded
            return _seeded_designs(m, budget, int(seed), n), None
        return _draw_designs(m, budget, make_random(seed).generator, n, rewindable=False)
    # ``None``: a fresh generator seeded from the global one, which no caller sees again
    return _draw_designs(m, budget, make_random(seed).generator, n, rewindable=seed is not None)


def _draw_designs(
    m: int, budget: int, generator: torch.Generator | None, n: int, *, rewindable: bool
) -> tuple[tuple[_Design, ...], Callable[[], None] | None]:
    """:func:`_example_designs` from ``generator`` (``None``: torch's global one)."""
    first = _draw(m, budget, generator)
    if first.coalitions.masks.shape[0] == first.coalitions.n_enumerated:
        return (first,), None  # no draw was random: the same design for every example
    rewind = _rewinder(generator) if rewindable else None
    return (first, *(_draw(m, budget, generator) for _ in range(n - 1))), rewind


def _rewinder(generator: torch.Generator | None) -> Callable[[], None]:
    """A function that restores ``generator``'s present state (``None``: torch's global
    CPU generator, where :func:`kernel_shap_coalitions` draws for it)."""
    if generator is None:
        state = torch.get_rng_state()
        return lambda: torch.set_rng_state(state)
    state = generator.get_state()
    return lambda: generator.set_state(state)


@functools.lru_cache(maxsize=32)
def _seeded_designs(m: int, budget: int, seed: int, n: int) -> tuple[_Design, ...]:
    """:func:`_example_designs` for an int seed (cached; only read)."""
    designs, _ = _draw_designs(m, budget, make_random(seed).generator, n, rewindable=False)
    return designs


class _Stack(NamedTuple):
    """Every example's design of KernelShap's ``coalitions="per_example"``, stacked.

    ``blocks``: ``(K, N, Mp)`` bool, row ``j`` of each example's design (the empty
    coalition past a design's rows); ``X`` / ``w``: ``(N, K, Mp)`` float64 design matrices
    and ``(N, K)`` weights (zero past a design's rows: no part in its fit); ``rows``:
    each design's rows; ``n_enumerated``: the enumerated rows (the same in every one).
    """

    blocks: Tensor
    X: np.ndarray
    w: np.ndarray
    rows: list[int]
    n_enumerated: int


def _stacked(designs: tuple[_Design, ...]) -> _Stack:
    """:class:`_Stack` of designs drawn one by one (padded as :func:`_per_example_fit`
    reads them)."""
    m = designs[0].X.shape[1]
    rows = [design.coalitions.masks.shape[0] for design in designs]
    k = max(rows)
    blocks = []
    for design, r in zip(designs, rows):
        block = design.coalitions.masks
        if r < k:
            block = torch.cat([block, block.new_zeros(k - r, m)])
        blocks.append(block)
    n = len(designs)
    if all(r == k for r in rows):
        X = np.stack([_host(design.X) for design in designs])  # (N, K, p)
        w = np.stack([_host(design.coalitions.weights) for design in designs])  # (N, K)
    else:  # zero rows and weights past a design's end: no part in the fit
        X, w = np.zeros((n, k, m)), np.zeros((n, k))
        for i, (design, r) in enumerate(zip(designs, rows)):
            X[i, :r], w[i, :r] = _host(design.X), _host(design.coalitions.weights)
    return _Stack(torch.stack(blocks, dim=1), X, w, rows, designs[0].coalitions.n_enumerated)


def _drawn_stack(
    m: int, budget: int, seed: Any, n: int
) -> tuple[_Stack, Callable[[], _Design]] | None:
    """:func:`_example_designs`' ``n`` designs for a source without an int seed, drawn at
    once (:func:`~whybox.core.masks.coalitions.kernel_shap_coalition_stack`: the same
    designs, the generator left in the same state), or ``None`` where that route does not
    apply (nothing drawn then).

    Returns the stack and ``first``: a function that puts the generator back where it
    stood before the draws and draws the first design alone, :func:`_example_designs`'
    ``designs[0]`` leaving the generator where its ``rewind`` does (for a model returning
    one value per batch).
    """
    if is_int_seed(seed) or not coalition_stack_applies(m, budget):
        return None
    where = seed if isinstance(seed, torch.Generator) else getattr(seed, "generator", None)
    if where is not None and where.device.type != "cpu":
        return None
    generator = make_random(seed).generator  # ``None``: torch's global CPU generator
    state = torch.get_rng_state() if generator is None else generator.get_state()
    drawn = kernel_shap_coalition_stack(m, budget, n, generator)
    if drawn is None:  # pragma: no cover - coalition_stack_applies said it would draw
        raise RuntimeError("kernel_shap_coalition_stack declined a design it applies to")
    masks = code_rows(drawn.codes, m)  # (N, K, m) bool
    stack = _Stack(
        torch.from_numpy(masks).transpose(0, 1),
        masks.astype(np.float64),
        drawn.weights,
        drawn.rows.tolist(),
        drawn.n_enumerated,
    )

    def first() -> _Design:
        if generator is None:
            torch.set_rng_state(state)
        else:
            generator.set_state(state)
        return _draw(m, budget, generator)

    return stack, first


def _per_example_fit(
    call: Call,
    base: tuple[Tensor, ...],
    masks: FlatMasks,
    present: Tensor,
    designs: tuple[_Design, ...] | _Stack,
) -> tuple[Tensor, Tensor, Outputs] | None:
    """Evaluate each example on its own design and solve its own regression.

    Items are shared by the examples, so forwards still hold the rows of every example
    (``N`` rows per item, chunked as the shared route): item 0 is the empty coalition,
    item 1 the full one, item ``2 + j`` row ``j`` of each example's design. A design with
    fewer rows than the longest (sampled duplicates merge) is padded with the empty
    coalition, whose values get no weight in its regression.

    Returns
    -------
    tuple or None
        ``phi`` ``(B, Mp)`` float64 (row ``b`` solved on the design of the example value
        ``b`` belongs to), ``total`` ``(B,)`` float64 (``f(x) - f(baseline)``) and the
        outputs (``values`` ``(2 + K, B)`` for ``K`` the longest design's rows); ``None``
        for a model with one output per batch: an aggregate explains the batch as a whole,
        on one design, which the caller evaluates instead.
    """
    stack = designs if isinstance(designs, _Stack) else _stacked(designs)
    n, m = call.batch_size, present.numel()
    device = call.tensors[0].device
    k = stack.blocks.shape[0]
    ends = _empty_and_full(m, stack.blocks.device).unsqueeze(1).expand(2, n, m)
    keep = torch.cat([ends, stack.blocks])  # (2 + K, N, Mp)
    if keep.device != device:
        keep = keep.to(device)
    items_keep = _on_present(masks, present, keep)  # (2 + K, N, M): once, not per chunk

    def build(start: int, stop: int) -> RowBatch:
        return coalition_rows(call.tensors, base, masks, items_keep[start:stop])

    outputs = run_items(call, n_items=2 + k, build=build, rows_per_item=n)
    if outputs.aggregate:
        return None
    check_finite(call.owner, "forward_func", (outputs.values,), expected=_FINITE_OUTPUTS)
    values = outputs.values.to(torch.float64)
    empty, total = values[0], values[1] - values[0]
    phi = _solve_stacked(stack, values[2:] - empty, total)
    return (phi.to(device) if phi.device != device else phi), total, outputs


def _solve_stacked(stack: _Stack, y: Tensor, total: Tensor) -> Tensor:
    """Every example's constrained Shapley-kernel regression on its own design, at once
    (:func:`~whybox.core.surrogate.fit.constrained_wls_stack`).

    Parameters
    ----------
    stack : _Stack
        ``N`` designs over ``p >= 2`` features.
    y : Tensor, shape (K, B)
        Outputs minus ``f(baseline)`` per item (``K = max(rows)``), value ``b`` belonging to
        example ``b // (B / N)``; rows past an example's design are left out (weight 0).
    total : Tensor, shape (B,)
        ``f(x) - f(baseline)`` per value.

    Returns
    -------
    Tensor, shape (B, p), float64, on the CPU
    """
    n, k, p = stack.X.shape
    per = y.shape[1] // n
    targets = _host(y).reshape(k, n, per).transpose(1, 0, 2)  # (N, K, per)
    totals = _host(total).reshape(n, per)
    coef = constrained_wls_stack(stack.X, stack.w, targets, totals)  # (N, p, per)
    return torch.from_numpy(coef.transpose(0, 2, 1).reshape(n * per, p))


def _host(t: Tensor) -> np.ndarray:
    """``t`` as a numpy array (a view for a CPU tensor without autograd history)."""
    if t.device.type == "cpu" and not t.requires_grad:
        return t.numpy()
    return t.detach().cpu().numpy()


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
        "coalitions": Choice(COALITION_MODES),
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
        coalitions: Literal["shared", "per_example"] = "shared",
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
        seed : int, ``torch.Generator`` or random source, where the coalitions are drawn
        coalitions : {"shared", "per_example"}
            ``"shared"``: one design of coalitions for all examples (one regression with
            ``N`` outputs; results do not depend on the batch layout). ``"per_example"``:
            each example draws its own design, example ``i``'s being the ``i``-th draw
            from the source (an int seed or ``None`` seeds one generator for the batch),
            so a batch gives what calls on its examples one at a time give when they draw
            from one source in turn (Captum's contract). The forwards still hold every
            example's rows; each example's regression is solved on its own design. A
            model returning one value per batch explains the batch on one design (the
            first draw) either way; so does a design without random draws.
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
        # the designs' draws come from the source's torch generator (global for the facade)
        drawn = None
        if coalitions == "per_example" and n > 1:
            # every example's design at once where the source allows (the same designs)
            drawn = _drawn_stack(m, n_samples - 2, seed, n)
        if drawn is not None:
            stack, first = drawn
            fit = _per_example_fit(call, base, masks, present, stack)
            if fit is not None:
                return self._wrap(
                    call, masks, present, *fit, n_samples, stack.n_enumerated, return_input_shape
                )
            design = first()  # as if only the batch's one design had been drawn
        elif coalitions == "per_example" and n > 1:
            designs, rewind = _example_designs(m, n_samples - 2, seed, n)
            if len(designs) > 1:
                fit = _per_example_fit(call, base, masks, present, designs)
                if fit is not None:
                    enumerated = designs[0].coalitions.n_enumerated  # the same in every one
                    return self._wrap(
                        call, masks, present, *fit, n_samples, enumerated, return_input_shape
                    )
                if rewind is not None:
                    rewind()  # as if only the batch's one design had been drawn
            design = designs[0]
        else:
            design = _design(m, n_samples - 2, seed)
        sampled, X, factor = design
        coalitions_keep = (
            sampled.masks if sampled.masks.device == device else sampled.masks.to(device)
        )
        if X.device != device:
            X = X.to(device)  # the regression runs where the inputs are, as the rows
        # item 0: the empty coalition, item 1: the full one, then the design's rows
        items_keep = torch.cat([_empty_and_full(m, device), coalitions_keep])

        def build(start: int, stop: int) -> RowBatch:
            keep = items_keep[start:stop]
            return coalition_rows(call.tensors, base, masks, _on_present(masks, present, keep))

        outputs = run_items(
            call, n_items=2 + coalitions_keep.shape[0], build=build, rows_per_item=n
        )
        check_aggregate_masks(masks, outputs.aggregate, owner, "feature_mask")
        check_finite(owner, "forward_func", (outputs.values,), expected=_FINITE_OUTPUTS)
        values = outputs.values.to(torch.float64)
        empty, full = values[0], values[1]
        total = full - empty  # (B,)
        if coalitions_keep.shape[0] == 0:
            phi = (total / m).unsqueeze(1).expand(-1, m)
        else:
            # solve_constrained_wls without re-checking its data: the outputs were checked
            # above, the design and its weights are finite by construction
            y, totals = values[2:] - empty, total
            if values.device != X.device:
                y, totals = y.to(X.device), totals.to(X.device)
            weights = sampled.weights.to(X.device)
            phi = _constrained_checked(X, y, weights, totals, factor)  # (B, Mp)
        enumerated = sampled.n_enumerated
        return self._wrap(
            call, masks, present, phi, total, outputs, n_samples, enumerated, return_input_shape
        )

    def _wrap(
        self,
        call: Call,
        masks: FlatMasks,
        present: Tensor,
        phi: Tensor,
        total: Tensor,
        outputs: Outputs,
        n_samples: int,
        n_enumerated: int,
        return_input_shape: bool,
    ) -> Explanation:
        """Wrap float64 per-present-feature values ``phi`` ``(B, Mp)`` and ``total``
        ``(B,)`` (``f(x) - f(baseline)``) in the outputs' dtype."""
        dtype = outputs.values.dtype
        delta = (phi.sum(dim=1) - total).to(dtype)
        phi = phi.to(dtype)
        parameters = {"n_samples": n_samples, "n_enumerated": n_enumerated}
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
