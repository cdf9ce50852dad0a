"""DeepLift and DeepLiftShap: one backward pass through rules that give the multipliers.

Shrikumar et al., "Learning Important Features Through Propagating Activation Differences",
2017; DeepLiftShap after Lundberg & Lee, "A Unified Approach to Interpreting Model
Predictions", 2017.

Each input row ``x`` is evaluated together with its reference row ``b`` in one forward: the
rows of a chunk are laid out ``[inputs; references]``. The model's nonlinearity modules keep
their values, but their backward is replaced by the rules of a rule set
(:mod:`whybox.methods.deeplift_rules`; default: the textbook Rescale rules), so one backward
pass gives the multipliers ``m`` of every input row and the attribution is ``(x - b) * m``
(``m`` when ``multiply_by_inputs=False``). With the Rescale rules the multipliers chain to
the difference of outputs, so the convergence delta ``sum(attributions) - (f(x) - f(b))`` is
~0; it costs nothing extra, because the outputs of both halves come out of the same forward.
Nonlinearities called as functions (``torch.relu``) are not seen by module rules.

Large enough calls run the references apart instead (:mod:`whybox.methods.deeplift_apart`,
``reference_pass``): the references first without a backward (each distinct reference once
per call), then the input rows alone, the rules taking each pair's multiplier from the kept
reference values; the same numbers to rounding, half the backward.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from whybox.core.call import Call
from whybox.core.forward import ChunkSize, RowBatch, evaluate, rows_independent
from whybox.core.hooks import module_rules
from whybox.core.inputs import prepare_baselines
from whybox.core.method import Bool, Check, Choice, Real
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.scope import Scope
from whybox.core.validation import fail

from .base import Method
from .deeplift_apart import ReferencePass, ReferencesDiffer, separable_rules
from .deeplift_rules import SUPPORTED_NONLINEARITIES, Rules, RuleSet, as_rule_set

__all__ = ["DeepLift", "DeepLiftShap", "SUPPORTED_NONLINEARITIES"]

_DEFAULT_EPS = 1e-10

#: input elements of all pairs (``N * n_refs * elements per example``) from which
#: ``reference_pass="auto"`` runs the references apart: below it the second forward's fixed
#: cost outweighs half a backward (measured on one CPU thread: a 12-feature MLP is ~17%
#: slower apart at 1 or 32 examples, a 3x32x32 CNN ~4% slower at 4 examples and 8-11%
#: faster from 8; a 3x224x224 one ~25% faster at 1)
APART_MIN_ELEMENTS = 16384

#: models whose forward did not let the references run apart once (see
#: :meth:`DeepLift._reference_pass`): "auto" keeps them paired without trying again
_PAIRED_ONLY: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()

#: a custom attribution function and how many of (multipliers, inputs, baselines) it takes
Custom = tuple[Callable[..., Any], int]


def _custom_arity(func: Callable[..., Any]) -> int:
    try:
        return len(inspect.signature(func).parameters)
    except (TypeError, ValueError):  # builtins without a signature: give it all three
        return 3


def _check_custom(owner: str, name: str, func: Any) -> None:
    if func is None:
        return
    if not callable(func):
        fail(owner, name, "a callable or None", func, type_error=True)
    arity = _custom_arity(func)
    if arity not in (1, 2, 3):
        fail(
            owner,
            name,
            "a callable taking 1 to 3 arguments (multipliers[, inputs[, baselines]])",
            f"a callable taking {arity}",
            raw=True,
        )


def _check_rules(owner: str, name: str, rules: Any) -> None:
    if rules is None or isinstance(rules, RuleSet):
        return
    if isinstance(rules, Mapping):
        bad = [k for k, v in rules.items() if not isinstance(k, type) or not callable(v)]
        if bad:
            fail(
                owner,
                name,
                "a mapping {module type: rule(module, input, output)}",
                f"a mapping with the entry {bad[0]!r}",
                raw=True,
            )
        return
    if not callable(rules):
        fail(
            owner,
            name,
            "None, a RuleSet, a mapping {module type: rule} or a function module -> rule",
            rules,
            type_error=True,
        )


@register("deeplift")
class DeepLift(Method):
    """DeepLift against one reference per example, with rules as data.

    Parameters
    ----------
    model : nn.Module
        The model; the modules its rules match get them for the call only.
    multiply_by_inputs : bool
        Return ``(x - b) * multipliers`` (global attribution) rather than the multipliers.
    eps : float
        Threshold of the default rules: input differences with ``|x - b| < eps`` at a
        nonlinearity use its local gradient. A rule set passed as ``rules`` carries its own
        threshold, so giving both is an error.
    rules : RuleSet, mapping or callable, optional
        Which rule each module gets (see :mod:`whybox.methods.deeplift_rules`): a
        :class:`~whybox.methods.deeplift_rules.RuleSet`, ``{module type: rule}`` (exact type)
        or a function ``module -> rule or None``. Default: the textbook Rescale rules
        (:func:`~whybox.methods.deeplift_rules.rescale_rules`) on ``nn.ReLU``, ``nn.ELU``,
        ``nn.LeakyReLU``, ``nn.Sigmoid``, ``nn.Tanh``, ``nn.Softplus``, ``nn.Softmax`` and
        ``nn.MaxPool1d/2d/3d``: complete, and each example's result is independent of the
        batch. (:mod:`whybox.attr` passes the rule set reproducing Captum 0.9's numbers.)
    layer : nn.Module or list of nn.Module, optional
        Layer scope (Captum's LayerDeepLift): the multipliers are taken at the layer's output
        (input with ``attribute_to_layer_input``) from the same paired forward, and the
        attribution is ``(layer(x) - layer(b)) * multipliers``, shaped like the layer; the
        inputs may then be integer token ids. The layer's own rule is left out when
        attributing to its output (it cannot change the multipliers there).
    attribute_to_layer_input : bool
        With ``layer``, attribute to the layer's input instead of its output.
    delta_forwards : bool
        Take the convergence delta's ``f(x) - f(b)`` from two more forwards, of the inputs
        and of the references alone (Captum's way: the same numbers up to the rounding of
        a different batch, which float32 outputs of 1e6 make visible) instead of from the
        paired forward the multipliers come from (free).
    reference_pass : {"auto", "apart", "paired"}
        How references go through the model. ``"paired"``: each chunk's input rows and
        references in one forward and one backward, ``[inputs; references]``. ``"apart"``:
        the references first, without a backward, then the input rows alone with autograd
        (:mod:`whybox.methods.deeplift_apart`): half the backward, the same numbers up to
        rounding when every nonlinearity of the model has a rule. It needs rules with an
        apart form (the textbook ones, Captum's), input scope and a model in eval mode (an
        error otherwise);
        a forward that does not retrace the references' (data-dependent control flow)
        goes back to the paired layout. ``"auto"``: ``"apart"`` where it may run and the
        pairs hold at least :data:`APART_MIN_ELEMENTS` input elements, else ``"paired"``.
    """

    has_delta = True
    needs_module = True
    parameters = {
        "delta_forwards": Bool(),
        "eps": Real(minimum=0.0),
        "reference_pass": Choice(("auto", "apart", "paired")),
        "rules": Check(_check_rules),
        "custom_attribution_func": Check(_check_custom),
    }

    def __init__(
        self,
        model: nn.Module,
        *,
        multiply_by_inputs: bool = True,
        eps: float = _DEFAULT_EPS,
        rules: RuleSet | Rules | None = None,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
        delta_forwards: bool = False,
        reference_pass: str = "auto",
    ) -> None:
        super().__init__(
            model,
            multiply_by_inputs=multiply_by_inputs,
            layer=layer,
            attribute_to_layer_input=attribute_to_layer_input,
        )
        self.eps = eps
        self.rules = rules
        self.delta_forwards = delta_forwards
        self.reference_pass = reference_pass

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        chunk_size: ChunkSize = "auto",
        return_delta: bool = True,
        custom_attribution_func: Callable[..., Any] | None = None,
        show_progress: bool = False,
    ) -> Explanation:
        """DeepLift attributions of the target.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        baselines : None (zeros), a number, a tensor broadcastable to each input (per example
            ``(N, ...)`` or shared ``(1, ...)`` / ``(...)``), or one such value per input
        target : which output to explain (see :mod:`whybox.core.targets`)
        forward_args : extra model arguments (tensors with batch dimension ``N`` are split
            with the batch)
        chunk_size : input/baseline *pairs* are evaluated ``chunk_size // 2`` at a time (each
            pair is two rows); ``"auto"`` picks for throughput
        return_delta : also return the convergence delta (free: no extra forward)
        custom_attribution_func : ``f(multipliers)``, ``f(multipliers, inputs)`` or
            ``f(multipliers, inputs, baselines)``, each argument a tuple with one ``(k, ...)``
            tensor per input (called once per chunk of ``k`` examples), returning one
            attribution tensor per input; replaces ``(x - b) * multipliers``

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (like the layer with ``layer``); ``delta``
            of shape ``(N,)``.
        """
        scope = self._scope()
        # with a layer the inputs may be token ids (the references too): the scope decides
        call = scope.prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
        )
        refs = prepare_baselines(baselines, call.inputs, owner=call.owner).expanded(call.inputs)
        custom = _custom(custom_attribution_func)
        leaves, delta = self._pairs(scope, call, refs, 1, custom, return_delta)
        parameters = self._parameters(call, custom)
        return scope.result(self, call, leaves, delta=delta, parameters=parameters)

    # -- shared by DeepLift and DeepLiftShap ----------------------------------------------
    def _rule_set(self) -> RuleSet:
        if self.rules is not None and self.eps != _DEFAULT_EPS:
            fail(
                self.owner,
                "eps",
                "left at its default when rules are given (a rule set carries its own eps)",
                self.eps,
            )
        return as_rule_set(self.rules, eps=self.eps)

    def _parameters(self, call: Call, custom: Custom | None) -> dict[str, Any]:
        return {
            "multiply_by_inputs": self.multiply_by_inputs,
            "eps": self.eps,
            "rules": self.rules,  # None: the textbook Rescale rules
            "custom_attribution_func": None if custom is None else custom[0],
            "chunk_size": call.chunk_rows,
        }

    def _attributions(
        self,
        owner: str,
        multipliers: tuple[Tensor, ...],
        xs: tuple[Tensor, ...],
        bs: tuple[Tensor, ...],
        custom: Custom | None,
    ) -> tuple[Tensor, ...]:
        if custom is None:
            if self.multiply_by_inputs:
                return tuple(_times_difference(x, b, m) for x, b, m in zip(xs, bs, multipliers))
            return multipliers
        func, arity = custom
        result = func(*(multipliers, xs, bs)[:arity])
        if isinstance(result, Tensor):
            result = (result,)
        if not isinstance(result, (tuple, list)) or len(result) != len(xs):
            fail(
                owner,
                "custom_attribution_func",
                f"a callable returning a tuple of {len(xs)} tensor(s) shaped like the inputs",
                f"a callable returning {type(result).__name__}",
                raw=True,
            )
        for out, x in zip(result, xs):
            if not isinstance(out, Tensor) or out.shape != x.shape:
                fail(
                    owner,
                    "custom_attribution_func",
                    "a callable returning tensors shaped like the inputs "
                    f"({tuple(x.shape)} for a chunk)",
                    f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}",
                    raw=True,
                )
        return tuple(result)

    def _pairs(
        self,
        scope: Scope,
        call: Call,
        refs: tuple[Tensor, ...],
        n_refs: int,
        custom: Custom | None,
        return_delta: bool,
    ) -> tuple[tuple[Tensor, ...], Tensor | None]:
        """Run every (example, reference) pair through the rules.

        ``refs`` are ``(N, ...)`` per-example references when ``n_refs == 1`` or a
        distribution ``(n_refs, ...)`` paired with every example. Returns the attributions
        averaged over references, ``(N, ...)`` per input (per layer tensor for layer
        scope), and the per-pair delta ``(N * n_refs,)`` ordered example-major.
        """
        rule_set = self._rule_set()
        apart = self._reference_pass(scope, rule_set, call, n_refs)
        if apart is not None:
            try:
                return self._evaluate_pairs(
                    scope, call, refs, n_refs, custom, return_delta, rule_set, apart
                )
            except ReferencesDiffer:
                # the paired layout needs no retracing; this model's later calls go there
                # straight away (its ops, or its control flow, do not change between calls)
                _PAIRED_ONLY[self.model] = True
        return self._evaluate_pairs(scope, call, refs, n_refs, custom, return_delta, rule_set, None)

    def _reference_pass(
        self, scope: Scope, rule_set: RuleSet, call: Call, n_refs: int
    ) -> ReferencePass | None:
        """A :class:`~whybox.methods.deeplift_apart.ReferencePass` when this call may run
        the references apart (see :mod:`whybox.methods.deeplift_apart`), else ``None``:
        the textbook rules (``reference_pass`` not ``"paired"``), input scope, and a model
        whose rows are independent (no batch norm in training mode); under ``"auto"`` also
        a call large enough to gain from it (:data:`APART_MIN_ELEMENTS`)."""
        if self.reference_pass == "paired":
            return None
        if self.reference_pass == "auto":
            if self.model in _PAIRED_ONLY:
                return None
            if n_refs * sum(x.numel() for x in call.tensors) < APART_MIN_ELEMENTS:
                return None
        input_scope = scope.tap is None and not scope.output_layers
        rules = separable_rules(rule_set) if input_scope else None
        if rules is None or not rows_independent(self.model):
            if self.reference_pass == "apart":
                fail(
                    self.owner,
                    "reference_pass",
                    "'auto' or 'paired' for this call (the references run apart only "
                    "under rules with an apart form, such as the textbook ones, in input "
                    "scope, on a model in eval mode)",
                    self.reference_pass,
                )
            return None
        return ReferencePass(rules)

    def _evaluate_pairs(
        self,
        scope: Scope,
        call: Call,
        refs: tuple[Tensor, ...],
        n_refs: int,
        custom: Custom | None,
        return_delta: bool,
        rule_set: RuleSet,
        apart: ReferencePass | None,
    ) -> tuple[tuple[Tensor, ...], Tensor | None]:
        """:meth:`_pairs` in the paired layout (``apart`` ``None``) or with the references
        run apart through ``apart``'s rules."""
        xs = call.tensors
        n_pairs = call.batch_size * n_refs
        delta_dtype = xs[0].dtype if xs[0].is_floating_point() else torch.get_default_dtype()
        # Captum leaves the layer itself unhooked when attributing to its output; its rule
        # cannot change the multipliers there (a stateful rule set may see its neighbours).
        rules, chosen = _rule_plan(rule_set, scope.output_layers)
        # the layer's values of each chunk come from the forward that gives the multipliers
        recorded: list[Tensor] = []
        tap = scope.recording_tap(recorded)
        current: dict[str, Any] = {}
        # one reference per example: pair i is example i, so a chunk's rows are slices
        sliced = n_refs == 1 and all(x.is_contiguous() for x in xs)
        # n_refs == 1: each chunk's attributions, joined at the end; n_refs > 1: each chunk
        # of whole examples as (first example, per-example sums over its references)
        pieces: list[Any] = []
        # n_refs > 1: per-example sums for chunks that split an example's references
        totals: list[Tensor] = []
        delta_parts: list[Tensor] = []

        # apart, with references shared by many pairs (a distribution, or one baseline
        # broadcast to every example) and no per-example forward arguments: one forward of
        # the distinct references for the whole call, each pair's reference picked from it
        shared = None
        if apart is not None:
            shared = _distinct_references(refs, n_refs, call)

        def build(start: int, stop: int) -> RowBatch:
            rule_set.reset()
            if shared is not None:
                examples, x_rows, b_rows = _pair_rows(xs, refs, n_refs, start, stop, sliced)
                current["examples"], current["x"], current["b"] = examples, x_rows, b_rows
                picked = _picked_references(start, stop, n_refs, xs[0].device)
                if shared_outputs.dim() == 0 or shared_outputs.shape[0] != shared[0].shape[0]:
                    # one output for the whole batch (or a batch dimension squeezed away)
                    raise ReferencesDiffer("the model's outputs are not one row per reference")
                current["reference"] = call.evaluator.target.select(
                    shared_outputs.index_select(0, picked), examples
                )
                if n_refs == 1 or (start % n_refs == 0 and (stop - start) % n_refs == 0):
                    apart.take_inputs(tiled=True)  # whole examples: the references repeat
                else:
                    apart.take_inputs(picked)
                return RowBatch(x_rows, examples)
            if apart is not None:
                # the references first, keeping the ruled modules' values (no backward)
                examples, x_rows, b_rows = _pair_rows(xs, refs, n_refs, start, stop, sliced)
                current["examples"], current["x"], current["b"] = examples, x_rows, b_rows
                current["reference"] = apart.reference_outputs(
                    call.evaluator, RowBatch(b_rows, examples)
                )
                apart.take_inputs()
                return RowBatch(x_rows, examples)
            examples, rows = _pair_batch(xs, refs, n_refs, start, stop, sliced)
            current["examples"], current["rows"] = examples, rows
            return RowBatch(rows, torch.cat([examples, examples]))

        def consume(start: int, stop: int, selected: Tensor, grads: Any) -> None:
            k = stop - start
            if apart is not None:
                apart.check_retraced()
                if shared is None:  # shared references serve every chunk
                    apart.clear()
                multipliers = tuple(grads)
                x_rows, b_rows = current["x"], current["b"]
                # f(x) - f(b) from the two forwards, laid out as the paired one's outputs
                if return_delta and selected.dim() == 1 and selected.shape[0] == k:
                    selected = torch.cat([selected, current["reference"]])
            else:
                multipliers = tuple(g[:k] for g in grads)
                # the scope's values (inputs, or the layer's) of the input and reference rows
                values = scope.values(current["rows"], recorded)
                x_rows = tuple(v[:k] for v in values)
                b_rows = tuple(v[k:] for v in values)
            raw = self._attributions(call.owner, multipliers, x_rows, b_rows, custom)
            attrs = tuple(a if a.dtype == v.dtype else a.to(v.dtype) for a, v in zip(raw, x_rows))
            if n_refs == 1:
                pieces.append(attrs)
            elif start % n_refs == 0 and k % n_refs == 0:
                # whole examples: one sum over each example's references, no scatter
                pieces.append(
                    (
                        start // n_refs,
                        tuple(a.reshape((-1, n_refs) + a.shape[1:]).sum(1) for a in attrs),
                    )
                )
            else:
                if not totals:
                    totals.extend(
                        torch.zeros(
                            (call.batch_size,) + a.shape[1:], dtype=a.dtype, device=a.device
                        )
                        for a in attrs
                    )
                for total, attr in zip(totals, attrs):
                    total.index_add_(0, current["examples"], attr)
            if return_delta:
                if selected.dim() != 1 or selected.shape[0] != 2 * k:
                    raise ValueError(
                        f"{call.owner} cannot compute a per-example convergence delta for a "
                        "model that does not return one value per row; pass return_delta=False"
                    )
                summed = _row_sums(raw).to(delta_dtype)
                if not self.delta_forwards:  # else f(x) - f(b) come from two more forwards
                    summed = (summed - (selected[:k] - selected[k:])).to(delta_dtype)
                delta_parts.append(summed)

        try:
            with module_rules(self.model, rules if apart is None else apart.table) as matched:
                chunk_rows, auto = call.chunk_rows, call.chunk_auto
                if any(getattr(chosen(m), "couples_rows", False) for m in matched):
                    if apart is not None:  # each forward would see only some rows
                        raise ReferencesDiffer("a rule mixes the rows of the batch")
                    # a rule mixes rows: every pair at once, never split by the probe
                    chunk_rows, auto = max(2 * n_pairs, 2), False
                if shared is not None:
                    # the raw outputs: each pair's target is selected from its reference's
                    shared_outputs = apart.reference_outputs(
                        call.evaluator, RowBatch(shared, None), select=False
                    )
                evaluate(
                    call.evaluator,
                    n_items=n_pairs,
                    build=build,
                    consume=consume,
                    chunk_rows=chunk_rows,
                    auto=auto,
                    rows_per_item=2,
                    grad=True,
                    tap=tap,
                    progress=call.progress,
                    description=call.owner,
                    on_graph=None if apart is None else apart.check_graph,
                )
        finally:
            rule_set.reset()  # drop references to this call's activations
            recorded.clear()
            current.clear()
            if apart is not None:
                apart.clear()
        deltas = None
        if return_delta:
            deltas = delta_parts[0] if len(delta_parts) == 1 else torch.cat(delta_parts)
            # (apart too: Captum's forwards of the inputs and of every example's reference,
            # so the delta is compute_convergence_delta's to the bit; a shared reference
            # ran as one row there)
            if self.delta_forwards:
                endpoints = self._endpoint_difference(call, refs, n_refs, chunk_rows)
                deltas = (deltas - endpoints).to(delta_dtype)
        if n_refs == 1:
            # ``(x - b) * m`` is a new tensor per chunk; anything else may be a view
            fresh = custom is None and self.multiply_by_inputs
            return tuple(_joined(parts, fresh) for parts in zip(*pieces)), deltas
        if totals:
            for first, sums in pieces:
                for total, part in zip(totals, sums):
                    total[first : first + part.shape[0]] += part
            return tuple(t / n_refs for t in totals), deltas
        return tuple(
            (sums[0] if len(pieces) == 1 else torch.cat(sums)) / n_refs
            for sums in zip(*(p[1] for p in pieces))
        ), deltas

    def _endpoint_difference(
        self, call: Call, refs: tuple[Tensor, ...], n_refs: int, chunk_rows: int
    ) -> Tensor:
        """``f(x) - f(b)`` per (example, reference) pair, ``(N * n_refs,)`` example-major,
        from forwards of the inputs alone and of the references alone (no rules)."""
        xs = call.tensors
        n_pairs = call.batch_size * n_refs
        outputs: dict[str, list[Tensor]] = {"x": [], "b": []}

        def rows_of(side: str) -> Callable[[int, int], RowBatch]:
            def build(start: int, stop: int) -> RowBatch:
                examples, x_rows, b_rows = _pair_rows(xs, refs, n_refs, start, stop, False)
                return RowBatch(x_rows if side == "x" else b_rows, examples)

            return build

        for side in ("x", "b"):

            def consume(start: int, stop: int, selected: Tensor, _: Any, side=side) -> None:
                outputs[side].append(selected.detach())

            evaluate(
                call.evaluator,
                n_items=n_pairs,
                build=rows_of(side),
                consume=consume,
                chunk_rows=chunk_rows,
                grad=False,
            )
        return torch.cat(outputs["x"]) - torch.cat(outputs["b"])


def _distinct_references(
    refs: tuple[Tensor, ...], n_refs: int, call: Call
) -> tuple[Tensor, ...] | None:
    """The distinct reference rows, when every pair's reference is one of a few rows the
    whole call shares: a distribution (``n_refs > 1``) or one baseline row broadcast to
    every example (an expanded tensor), with no per-example forward arguments (pair ``p``
    runs with example ``p // n_refs``'s) and few enough rows to keep their activations for
    the whole call (at most a chunk's pairs). ``None``: each chunk runs its own."""
    if call.evaluator.extra.has_batched or not call.batch_size:
        return None
    if n_refs == 1:
        if not all(r.dim() and r.stride(0) == 0 for r in refs):
            return None
        distinct = tuple(r[:1] for r in refs)
    else:
        distinct = refs
    if distinct[0].shape[0] > max(1, call.chunk_rows // 2):
        return None
    return tuple(r.to(x.dtype) for r, x in zip(distinct, call.tensors))


def _picked_references(start: int, stop: int, n_refs: int, device: torch.device) -> Tensor:
    """``(stop - start,)``: the row of :func:`_distinct_references` paired with each pair."""
    pairs = torch.arange(start, stop, device=device)
    return pairs % n_refs if n_refs > 1 else torch.zeros_like(pairs)


def _pair_rows(
    xs: tuple[Tensor, ...],
    refs: tuple[Tensor, ...],
    n_refs: int,
    start: int,
    stop: int,
    sliced: bool,
) -> tuple[Tensor, tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The example of each pair ``[start, stop)`` and the pairs' input and reference rows.

    Pair ``p`` is example ``p // n_refs`` with reference ``p`` (one reference per example)
    or ``p % n_refs`` (a distribution); ``sliced``: one reference per example and
    contiguous inputs, so the rows are slices (no copy).
    """
    pairs = torch.arange(start, stop, device=xs[0].device)
    examples = pairs // n_refs
    if sliced:
        x_rows = tuple(x[start:stop] for x in xs)
        b_rows = tuple(r[start:stop].to(x.dtype) for r, x in zip(refs, xs))
    else:
        references = examples if n_refs == 1 else pairs % n_refs
        x_rows = tuple(x.index_select(0, examples) for x in xs)
        b_rows = tuple(r.index_select(0, references).to(x.dtype) for r, x in zip(refs, xs))
    return examples, x_rows, b_rows


def _pair_batch(
    xs: tuple[Tensor, ...],
    refs: tuple[Tensor, ...],
    n_refs: int,
    start: int,
    stop: int,
    sliced: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The example of each pair ``[start, stop)`` and the rows ``[inputs; references]``
    (one ``(2 * (stop - start), ...)`` tensor per input) of those pairs.

    As :func:`_pair_rows`, but each input's rows are gathered straight into one new tensor
    (no intermediate copies of the input and reference rows).
    """
    examples = torch.arange(start, stop, device=xs[0].device)
    if sliced:
        rows = tuple(
            torch.cat(
                [x[start:stop], r[start:stop] if r.dtype == x.dtype else r[start:stop].to(x.dtype)]
            )
            for x, r in zip(xs, refs)
        )
        return examples, rows
    references = examples
    if n_refs > 1:
        references = examples % n_refs
        examples = examples // n_refs
    k = stop - start
    built = []
    # the rows are new tensors (the gradients are taken with respect to detached copies)
    with torch.no_grad():
        for x, r in zip(xs, refs):
            rows = x.new_empty((2 * k,) + tuple(x.shape[1:]))
            torch.index_select(x, 0, examples, out=rows[:k])
            if r.dtype == x.dtype:
                torch.index_select(r, 0, references, out=rows[k:])
            else:
                rows[k:] = r.index_select(0, references)
            built.append(rows)
    return examples, tuple(built)


def _rule_plan(
    rule_set: RuleSet, skipped: tuple[nn.Module, ...]
) -> tuple[Any, Callable[[nn.Module], Any]]:
    """What :func:`~whybox.core.hooks.module_rules` gets for ``rule_set``, and a function
    giving the rule it chose for a module.

    A rule set by exact type (a plain ``dict`` and :meth:`RuleSet.rule_for` not overridden)
    goes as the ``dict`` itself: ``module_rules`` then looks each module's type up in its
    one walk of the model, with no per-module call. Otherwise each module's rule is asked
    once per call (``module_rules`` asks once per module) and remembered.
    """
    table = rule_set.rules
    if not skipped and type(table) is dict and type(rule_set).rule_for is RuleSet.rule_for:
        return table, lambda module: table.get(type(module))
    skipped_ids = {id(m) for m in skipped}
    chosen: dict[int, Any] = {}

    def dispatch(module: nn.Module) -> Any:
        if id(module) in skipped_ids:
            return None
        rule = chosen[id(module)] = rule_set.rule_for(module)
        return rule

    return dispatch, lambda module: chosen.get(id(module))


def _times_difference(x: Tensor, b: Tensor, m: Tensor) -> Tensor:
    """``(x - b) * m`` as a new tensor, multiplied in place where the dtypes allow."""
    difference = x - b
    return difference.mul_(m) if difference.dtype == m.dtype else difference * m


def _row_sums(attrs: tuple[Tensor, ...]) -> Tensor:
    """The sum of each row over every attribution tensor, ``(rows,)``."""
    total = None
    for a in attrs:
        part = a.flatten(1).sum(dim=1) if a.dim() > 1 else a
        total = part if total is None else total + part
    assert total is not None
    return total


def _joined(parts: tuple[Tensor, ...], fresh: bool) -> Tensor:
    """The chunks' rows as one new tensor, in order (a single ``fresh`` chunk as it is)."""
    if fresh and len(parts) == 1:
        return parts[0].contiguous()
    return torch.cat(parts)


def _custom(func: Callable[..., Any] | None) -> Custom | None:
    return None if func is None else (func, _custom_arity(func))


@register("deeplift_shap")
class DeepLiftShap(DeepLift):
    """DeepLift against every reference of a distribution, averaged per example.

    Approximates SHAP values (Lundberg & Lee, 2017) under feature independence. Parameters
    as :class:`DeepLift`. A distribution of one reference (a single example, a number, or
    the default ``None``: one all-zero reference) gives DeepLift against that reference.
    """

    def attribute(
        self,
        inputs: Any,
        *,
        baselines: Any = None,
        target: Any = None,
        forward_args: Any = None,
        chunk_size: ChunkSize = "auto",
        return_delta: bool = True,
        custom_attribution_func: Callable[..., Any] | None = None,
        show_progress: bool = False,
    ) -> Explanation:
        """DeepLiftShap attributions of the target.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        baselines : the reference distribution, per input ``(n_refs, ...)``; one example's
            shape ``(...)`` or a number is a single (constant) reference, ``None`` one
            all-zero reference; or a callable returning any of these. References of size 1
            broadcast against the other inputs' ``n_refs``
        target, forward_args, chunk_size, return_delta, custom_attribution_func :
            as :meth:`DeepLift.attribute` (``N * n_refs`` pairs are evaluated)

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (mean over references); ``delta`` of
            shape ``(N * n_refs,)``, one per (example, reference) pair, example-major, as
            Captum reports it.
        """
        scope = self._scope()
        # with a layer the inputs may be token ids (the references too): the scope decides
        call = scope.prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
        )
        owner = call.owner
        refs = prepare_baselines(baselines, call.inputs, owner=owner, distribution=True).tensors
        n_refs = max(r.shape[0] for r in refs)
        if any(r.shape[0] not in (1, n_refs) for r in refs):
            fail(
                owner,
                "baselines",
                "reference distributions with the same number of references for every input",
                f"sizes {[r.shape[0] for r in refs]}",
                raw=True,
            )
        shapes = [tuple(x.shape[1:]) for x in call.tensors]
        if n_refs == 1:  # one reference: DeepLift against it, for every example
            refs = tuple(r.expand((len(x),) + s) for r, x, s in zip(refs, call.tensors, shapes))
        else:
            refs = tuple(r.expand((n_refs,) + s) for r, s in zip(refs, shapes))
        custom = _custom(custom_attribution_func)
        leaves, delta = self._pairs(scope, call, refs, n_refs, custom, return_delta)
        parameters = self._parameters(call, custom)
        parameters["n_refs"] = n_refs
        return scope.result(self, call, leaves, delta=delta, parameters=parameters)
