"""DeepLift with the references run apart: the textbook rules' separate forms.

The paired layout (:mod:`whybox.methods.deeplift_rules`) runs each input row with its
reference in one forward and one backward, ``[inputs; references]``, and keeps only the
input rows' gradients. Under the textbook rules (:func:`~whybox.methods.deeplift_rules.
rescale_rules`) the two rows of a pair share every multiplier, so the references' half of
that backward is work thrown away. Here the references go through the model first, without
a backward, each ruled module keeping its input and output; then the input rows alone go
through it with autograd, each rule taking the pair's multiplier from the input row's values
and the kept ones of its reference. The backward runs over half the rows. Each textbook rule
has its apart form here; rules that wrap one (Captum's, in :mod:`whybox.attr`) register
theirs with :func:`register_wrapper_form`.

The numbers are the paired layout's (up to the rounding of a different batch size) when the
two rows of a pair reach every ruled max pool with the same gradient: the max-pool rule is
the one rule that mixes the two rows' gradients. :meth:`ReferencePass.check_graph` makes sure
of it before each backward (only ops in :data:`SHARED_GRADIENT_NODES` between the output and
a ruled max pool). Otherwise :class:`ReferencesDiffer` is raised and the caller goes back to
the paired layout; as it does when the input rows do not retrace the references' forward
(another module order, another shape: data-dependent control flow) or a kept value was
changed in place after its module ran.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from whybox.core.forward import Evaluator, RowBatch

from .deeplift_rules import (
    MaxPoolRescale,
    Rescale,
    RuleSet,
    SoftmaxRescale,
    _below,
    _none_below,
    _PairMultiplier,
    _pool_of,
    _RescaleOrLocal,
    _reusable,
    _softmax_dim,
    _SoftmaxRescale,
    pool_indices,
    ratio_between,
    scatter_add_spread,
)

__all__ = [
    "ReferencePass",
    "ReferencesDiffer",
    "WRAPPER_FORMS",
    "register_wrapper_form",
    "separable_rules",
]


class ReferencesDiffer(Exception):
    """The input rows' forward did not retrace the references' (see the module docstring)."""


#: rule wrapper type -> (form, inner): ``form(rule, module, x, out, apply)`` is the
#: wrapper's behaviour in the input rows' forward, where ``apply(inner_rule)`` applies a
#: rule against the module's kept reference values (its apart form), and ``inner(rule)``
#: is the wrapped rule (see :func:`register_wrapper_form`)
WRAPPER_FORMS: dict[type, tuple[Callable[..., Any], Callable[[Any], Any]]] = {}


def register_wrapper_form(
    kind: type, form: Callable[..., Any], inner: Callable[[Any], Any]
) -> None:
    """Let rules of type ``kind``, which wrap another rule, run with the references apart.

    Parameters
    ----------
    kind : type
        The wrapper rule's exact type.
    form : callable
        ``form(rule, module, x, out, apply) -> Tensor``: what the wrapper does in the
        input rows' forward; ``apply(inner_rule)`` gives the inner rule's result there.
    inner : callable
        ``inner(rule)``: the rule it wraps (checked to have an apart form itself).
    """
    WRAPPER_FORMS[kind] = (form, inner)


def _innermost(rule: Any) -> Any:
    while type(rule) in WRAPPER_FORMS:
        rule = WRAPPER_FORMS[type(rule)][1](rule)
    return rule


def _has_form(rule: Any) -> bool:
    """Whether ``rule`` runs apart: a textbook rule, or registered wrappers around one,
    or a rule that mixes rows (it refuses when it runs, see :meth:`ReferencePass._apply`)."""
    if getattr(rule, "couples_rows", False):
        return True
    inner = _innermost(rule)
    return type(inner) in (Rescale, SoftmaxRescale, MaxPoolRescale)


def separable_rules(rule_set: RuleSet) -> dict[type, Any] | None:
    """``{module type: rule}`` when every rule of ``rule_set`` has an apart form here (the
    textbook :class:`Rescale`, :class:`SoftmaxRescale` and :class:`MaxPoolRescale`, by
    exact type, or wrappers of them registered with :func:`register_wrapper_form`), the
    set chosen by exact module type (a ``dict``, :meth:`RuleSet.rule_for` not overridden),
    else ``None``: such rule sets keep the paired layout. Rules that mix rows
    (``couples_rows``) are allowed here; DeepLift keeps the paired layout when the model
    has a module they apply to."""
    table = rule_set.rules
    if type(table) is not dict or type(rule_set).rule_for is not RuleSet.rule_for:
        return None
    if not all(_has_form(rule) for rule in table.values()):
        return None
    return table


class ReferencePass:
    """The rule table :func:`~whybox.core.hooks.module_rules` gets, for both forwards of a
    chunk: while :meth:`keep_references` holds, each ruled module keeps its reference
    values (the output is left as it is); after :meth:`take_inputs`, each ruled module's
    rule is applied to the input row's values against its reference's, in the order the
    modules ran.

    Parameters
    ----------
    rules : dict
        ``{module type: rule}``, from :func:`separable_rules`.
    """

    def __init__(self, rules: Mapping[type, Any]) -> None:
        self.table = {cls: functools.partial(self._hook, rule) for cls, rule in rules.items()}
        self._keeping = True
        self._pooled = False
        self._index: Tensor | None = None
        self._tiled = False
        self._kept: dict[int, list[tuple[Any, ...]]] = {}
        self._taken: dict[int, int] = {}

    def reference_outputs(
        self, evaluator: Evaluator, rows: RowBatch, *, select: bool = True
    ) -> Tensor:
        """The selected outputs of the references' forward (``(rows,)``; the raw outputs
        without ``select``), their ruled modules' values kept. The forward builds a graph
        it never differentiates: a max pool's node keeps the argmax indices its rule needs,
        which a forward without one would pool for again (pooling is the costliest op of a
        CNN on the CPU)."""
        self.keep_references()
        with torch.enable_grad():
            output = evaluator.raw_output(rows)
        n_rows = rows.inputs[0].shape[0] if rows.inputs else 0
        if output.dim() == 0 or output.shape[0] != n_rows:
            # one value for the whole batch, or a batch dimension squeezed away (a batch of
            # one): the paired layout's forward has twice the rows and may not lose it
            raise ReferencesDiffer("the model's outputs are not one row per reference")
        if not select:
            return output.detach()
        with torch.no_grad():
            return evaluator.target.select(output, rows.example_index).detach()

    def keep_references(self) -> None:
        """The next forward runs the references: keep each ruled module's values."""
        self._keeping = True
        self._kept.clear()
        self._taken.clear()

    def take_inputs(self, index: Tensor | None = None, *, tiled: bool = False) -> None:
        """The next forward runs the input rows: apply the rules against the kept values.

        By default input row ``i`` is paired with kept row ``i``. When the references'
        forward ran each distinct reference once (kept for several chunks): ``tiled``, the
        input rows repeat the kept rows in order (input row ``i`` with kept row ``i % R``,
        ``R`` kept rows: the rules broadcast, nothing is copied), else ``index``
        (``(rows,)`` long) gives each input row's kept row (gathered)."""
        self._keeping = False
        self._pooled = False
        self._index = None if tiled else index
        self._tiled = tiled
        self._taken.clear()

    def check_graph(self, selected: Tensor) -> None:
        """Raise :class:`ReferencesDiffer` when the input rows' graph (from their selected
        outputs, before the backward) could have given a reference row another gradient
        than its input row at a ruled max pool (see :func:`_pools_see_shared_gradients`).
        Nothing to check when no max pool ran: the other rules never mix the rows."""
        if self._pooled and not _pools_see_shared_gradients(selected.grad_fn):
            raise ReferencesDiffer(
                "an op between the output and a max pool may treat the rows of a pair apart"
            )

    def check_retraced(self) -> None:
        """Raise :class:`ReferencesDiffer` unless every kept value was used."""
        kept, taken = self._kept, self._taken
        if len(taken) != len(kept) or any(len(v) != taken[k] for k, v in kept.items()):
            raise ReferencesDiffer("the input rows ran fewer ruled modules than the references")

    def clear(self) -> None:
        """Drop the kept values (references to a chunk's activations)."""
        self._kept.clear()
        self._taken.clear()

    def _hook(self, rule: Any, module: nn.Module, x: Tensor, out: Tensor) -> Tensor | None:
        key = id(module)
        if self._keeping:
            pool = type(_innermost(rule)) is MaxPoolRescale
            indices = pool_indices(module, x, out) if pool else None
            # versions (shared with the detached aliases): a value changed in place later in
            # the forward is no reference; detached, the references' graph is not kept
            x, out = x.detach(), out.detach()
            self._kept.setdefault(key, []).append((x, out, x._version, out._version, indices))
            return None
        kept = self._kept.get(key)
        at = self._taken.get(key, 0)
        if kept is None or at >= len(kept):
            raise ReferencesDiffer(f"{type(module).__name__} ran more often on the input rows")
        self._taken[key] = at + 1
        x_ref, out_ref, x_version, out_version, indices = kept[at]
        if x_ref._version != x_version or out_ref._version != out_version:
            raise ReferencesDiffer(f"a {type(module).__name__}'s reference values changed")
        index = self._index
        if index is not None:
            x_ref, out_ref = x_ref.index_select(0, index), out_ref.index_select(0, index)
            if indices is not None:
                indices = indices.index_select(0, index)
        rows, kept_rows = x.shape[0] if x.dim() else 0, x_ref.shape[0] if x_ref.dim() else 0
        if (
            x_ref.shape[1:] != x.shape[1:]
            or out_ref.shape[1:] != out.shape[1:]
            or out_ref.shape[:1] != x_ref.shape[:1]
            or (kept_rows != rows and not (self._tiled and kept_rows and rows % kept_rows == 0))
        ):
            raise ReferencesDiffer(f"a {type(module).__name__} saw other shapes")
        return self._apply(rule, module, x, out, (x_ref, out_ref, indices))

    def _apply(
        self, rule: Any, module: nn.Module, x: Tensor, out: Tensor, kept: tuple[Any, ...]
    ) -> Tensor:
        """``rule``'s apart form for the input rows ``x`` / ``out`` against the kept
        ``(x_ref, out_ref, argmax indices or None)``."""
        x_ref, out_ref, indices = kept
        kind = type(rule)
        if kind is MaxPoolRescale:
            self._pooled = True
            if rule.spread is scatter_add_spread:
                return _max_pool(module, x, out, x_ref, out_ref, indices, rule.eps)
            return _max_pool_spread(module, x, out, x_ref, out_ref, indices, rule)
        if kind is SoftmaxRescale:
            return _softmax(module, x, out, x_ref, out_ref, rule.eps)
        if kind is Rescale:
            return _rescale(module, x, out, x_ref, out_ref, rule.eps)
        if kind in WRAPPER_FORMS:
            form = WRAPPER_FORMS[kind][0]
            return form(
                rule, module, x, out, lambda inner: self._apply(inner, module, x, out, kept)
            )
        # a rule mixing the rows of the evaluated batch (DeepLift checks before a forward)
        raise ReferencesDiffer(f"the rule of {type(module).__name__} mixes rows")


# -- elementwise and softmax ------------------------------------------------------------------
def _tiled_ratio(
    x: Tensor, out: Tensor, x_ref: Tensor, out_ref: Tensor, eps: float
) -> tuple[Tensor, Tensor | None]:
    """:func:`ratio_between` for input rows that repeat ``R`` kept reference rows in order
    (``R`` = all rows, one, or a divisor), shaped like ``x``: the reference rows broadcast
    against the input rows viewed as ``(rows // R, R, ...)``."""
    kept = x_ref.shape[0]
    if kept in (x.shape[0], 1):
        return ratio_between(x, x_ref, out, out_ref, eps)
    groups = x.shape[0] // kept
    ratio, small = ratio_between(
        x.view((groups,) + tuple(x_ref.shape)),
        x_ref.unsqueeze(0),
        out.view((groups,) + tuple(out_ref.shape)),
        out_ref.unsqueeze(0),
        eps,
    )
    return ratio.view(x.shape), None if small is None else small.view(x.shape)


def _rescale(
    module: nn.Module, x: Tensor, out: Tensor, x_ref: Tensor, out_ref: Tensor, eps: float
) -> Tensor:
    with torch.no_grad():
        ratio, small = _tiled_ratio(x, out, x_ref, out_ref, eps)
        if small is not None and type(module) is nn.ReLU:
            # ReLU's derivative is the step (out > 0), as in the paired rule
            ratio = torch.where(small, (out > 0).to(ratio.dtype), ratio)
            small = None
    if small is None:
        return _PairMultiplier.apply(x, out.detach(), ratio, _reusable(x, out), False)
    return _RescaleOrLocal.apply(x, out, ratio, small, False)


def _softmax(
    module: nn.Module, x: Tensor, out: Tensor, x_ref: Tensor, out_ref: Tensor, eps: float
) -> Tensor:
    with torch.no_grad():
        ratio, small = _tiled_ratio(x, out, x_ref, out_ref, eps)
    if small is None:
        return _PairMultiplier.apply(x, out.detach(), ratio, _reusable(x, out), False)
    dim = _softmax_dim(module, out.dim())
    return _SoftmaxRescale.apply(x, out.detach(), ratio, small, dim, False)


# -- max pooling --------------------------------------------------------------------------------


class _MaxPool(torch.autograd.Function):
    """Value of max pooling; backward = DeepLift's max-pool multiplier of the input rows:
    ``weight_in`` scales the gradient sent to each window's input argmax ``index_in``,
    ``weight_ref`` the gradient sent to its reference argmax ``index_ref`` (each
    ``(G, R, planes, P)``, the input rows as ``G`` tiles of ``R``), as the paired rule's
    weights of the input rows."""

    @staticmethod
    def forward(ctx, x, out, index_in, index_ref, weight_in, weight_ref, reuse):
        ctx.save_for_backward(index_in, index_ref, weight_in, weight_ref)
        ctx.input_shape = x.shape
        if reuse:
            ctx.mark_dirty(out)
            return out
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        index_in, index_ref, weight_in, weight_ref = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return (None,) * 7
        tiles = index_in.shape
        flat = grad.reshape(tiles)
        shape = ctx.input_shape
        spread = grad.new_zeros(tiles[:3] + (shape.numel() // tiles[:3].numel(),))
        spread.scatter_add_(3, index_in, weight_in * flat)
        spread.scatter_add_(3, index_ref, weight_ref * flat)
        return (spread.view(shape),) + (None,) * 6


def _max_pool(
    module: nn.Module,
    x: Tensor,
    out: Tensor,
    x_ref: Tensor,
    out_ref: Tensor,
    indices_ref: Tensor,
    eps: float,
) -> Tensor:
    _, n_spatial = _pool_of(module)
    indices_in = pool_indices(module, x, out)
    with torch.no_grad():
        # (G, R, planes, positions): the input rows as G tiles of the R kept references
        kept = x_ref.shape[0]
        groups = x.shape[0] // kept
        planes = out.shape[1 : out.dim() - n_spatial].numel()
        x_in = x.reshape(groups, kept, planes, -1)
        y_in = out.reshape(groups, kept, planes, -1)
        x_r = x_ref.reshape(1, kept, planes, -1).expand(x_in.shape)
        y_ref = out_ref.reshape(1, kept, planes, -1)
        index_in = indices_in.reshape(y_in.shape)
        index_ref = indices_ref.reshape(y_ref.shape).expand(y_in.shape)
        # the paired rule's weights of the input rows (deeplift_rules._window_weights), in
        # the same ops: x_in - x_ref at the input's and at the reference's argmax
        dx = y_in.new_empty((2,) + tuple(y_in.shape))
        torch.sub(y_in, torch.gather(x_r, 3, index_in, out=dx[0]), out=dx[0])
        torch.gather(x_in, 3, index_ref, out=dx[1]).sub_(y_ref)
        # the parts max(y - y_ref, 0) and min(y - y_ref, 0) each argmax carries
        across = torch.empty_like(dx)
        torch.sub(y_in, y_ref, out=across[0])
        torch.clamp_max(across[0], 0, out=across[1])
        across[0].clamp_min_(0)
        small = dx.abs().lt_(eps)
        across.div_(dx.add_(small)).addcmul_(across, small, value=-1)
        # the input row's own argmax also gets its plain max-pool gradient where it did not
        # move (small + across, the paired rule's sum)
        weight_in = small[0].add_(across[0])
    return _MaxPool.apply(
        x, out.detach(), index_in, index_ref, weight_in, across[1], _reusable(x, out)
    )


def _repeated(tensor: Tensor, rows: int) -> Tensor:
    """Kept reference rows repeated in order to ``rows`` rows (input row ``i`` with kept
    row ``i % R``): the layout a spread function sees in the paired layout."""
    kept = tensor.shape[0]
    if kept == rows:
        return tensor
    return tensor.repeat((rows // kept,) + (1,) * (tensor.dim() - 1))


class _MaxPoolSpread(torch.autograd.Function):
    """Value of max pooling; backward = the paired :class:`MaxPoolRescale` multiplier of the
    input rows for a spread other than the chain rule's (which may not be linear: the
    carried differences are spread, then divided), both rows' parts spread apart."""

    @staticmethod
    def forward(ctx, x, out, x_ref, out_ref, index_in, index_ref, module, eps, spread):
        ctx.save_for_backward(x, out, x_ref, out_ref, index_in, index_ref)
        ctx.module, ctx.eps, ctx.spread = module, eps, spread
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        x, out, x_ref, out_ref, index_in, index_ref = ctx.saved_tensors
        module, spread = ctx.module, ctx.spread
        # the paired rule's steps (deeplift_rules._MaxPoolRescale) on each row's part
        top = torch.max(out, out_ref)
        summed = spread(grad * (top - out_ref), index_in, module, x.shape)
        summed = summed.add_(spread(grad * (out - top), index_ref, module, x.shape))
        dx = x - x_ref
        if _none_below(dx.abs(), ctx.eps):
            result = summed.div_(dx)
        else:
            small = _below(dx, ctx.eps)
            multiplier = summed.div_(dx.add_(small)).mul_(1 - small)
            local = scatter_add_spread(grad, index_in, module, x.shape)
            result = torch.addcmul(multiplier, local, small)
        return (result,) + (None,) * 8


def _max_pool_spread(
    module: nn.Module,
    x: Tensor,
    out: Tensor,
    x_ref: Tensor,
    out_ref: Tensor,
    indices_ref: Tensor,
    rule: MaxPoolRescale,
) -> Tensor:
    rows = x.shape[0]
    return _MaxPoolSpread.apply(
        x,
        out.detach(),
        _repeated(x_ref, rows),
        _repeated(out_ref, rows),
        pool_indices(module, x, out),
        _repeated(indices_ref, rows),
        module,
        rule.eps,
        rule.spread,
    )


# -- which ops give both rows of a pair the same gradient -----------------------------------
#: autograd nodes whose gradient with respect to a row does not depend on that row's values:
#: the same incoming gradient on both rows of a pair leaves them with the same outgoing one
#: (linear and shape ops, and this module's rule nodes, whose multiplier is the pair's).
#: Products, divisions, indexing by computed indices and every other nonlinearity are not
#: here: such an op above a max pool sends the paired layout's reference row its own
#: gradient, which the paired max-pool rule mixes into the input row's multiplier.
SHARED_GRADIENT_NODES = frozenset(
    {
        "AddBackward0",
        "AddBackward1",
        "SubBackward0",
        "SubBackward1",
        "RsubBackward1",
        "NegBackward0",
        "MulBackward1",  # by a Python number
        "DivBackward1",
        "AddmmBackward0",  # a row times a matrix shared by every row
        "MmBackward0",
        "ConvolutionBackward0",
        "NativeBatchNormBackward0",  # eval mode (training mode never runs apart)
        "CudnnBatchNormBackward0",
        "ViewBackward0",
        "UnsafeViewBackward0",
        "ReshapeAliasBackward0",
        "PermuteBackward0",
        "TransposeBackward0",
        "TBackward0",
        "ExpandBackward0",
        "SqueezeBackward0",
        "SqueezeBackward1",
        "SqueezeBackward2",
        "UnsqueezeBackward0",
        "CloneBackward0",
        "AliasBackward0",
        "ToCopyBackward0",
        "CatBackward0",
        "StackBackward0",
        "SplitBackward0",
        "SplitWithSizesBackward0",
        "UnbindBackward0",
        "SliceBackward0",
        "SelectBackward0",
        "RepeatBackward0",
        "FlipBackward0",
        "SumBackward0",
        "SumBackward1",
        "MeanBackward0",
        "MeanBackward1",
        "AvgPool2DBackward0",
        "AvgPool3DBackward0",
        "AdaptiveAvgPool2DBackward0",
        "AdaptiveAvgPool3DBackward0",
        "ConstantPadNdBackward0",
        "ReflectionPad1DBackward0",
        "ReflectionPad2DBackward0",
        "ReflectionPad3DBackward0",
        "ReplicationPad1DBackward0",
        "ReplicationPad2DBackward0",
        "ReplicationPad3DBackward0",
        "UpsampleNearest1DBackward0",
        "UpsampleNearest2DBackward0",
        "UpsampleNearest3DBackward0",
        "UpsampleLinear1DBackward0",
        "UpsampleBilinear2DBackward0",
        "UpsampleTrilinear3DBackward0",
        "PixelShuffleBackward0",
        "PixelUnshuffleBackward0",
        "_PairMultiplierBackward",
        "_MaxPoolBackward",
        "_MaxPoolSpreadBackward",
    }
)

#: the nodes of the max-pool rules, which mix the two rows' gradients in the paired layout
_POOL_RULE_NODES = frozenset({"_MaxPoolBackward", "_MaxPoolSpreadBackward"})

#: rule nodes that also pass the gradient, where the input barely moved, to the module's
#: own graph (their second edge): that is the module's own derivative at a point the two
#: rows share to within eps, so only their first edge (the input's graph) is followed
_LOCAL_NODES = frozenset({"_RescaleOrLocalBackward", "_SoftmaxRescaleBackward"})


#: how a per-example target is selected (:meth:`~whybox.core.targets.Target.select`)
_SELECTION_NODES = frozenset({"GatherBackward0", "IndexBackward0"})


def _pools_see_shared_gradients(root: Any) -> bool:
    """Whether every autograd node on a path from ``root`` (the selected outputs' node) to
    a max-pool rule node is in :data:`SHARED_GRADIENT_NODES`: then both rows of a pair
    reach every ruled max pool with the same gradient, and running the references apart
    gives the paired layout's numbers."""
    if root is None:
        return True
    # the target's selection (the same index for both rows of a pair): a view of a gather
    # or an advanced index at the very top of the graph
    selection = {root}
    if root.name() in ("ViewBackward0", "ReshapeAliasBackward0") and root.next_functions:
        selection.add(root.next_functions[0][0])
    # the nodes and their edges, then a topological order (parents first, Kahn's)
    edges: dict[Any, list[Any]] = {}
    names: dict[Any, str] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node in edges:
            continue
        name = names[node] = node.name()
        links = node.next_functions
        if name in _LOCAL_NODES:
            links = links[:1]
        kids = edges[node] = [f for f, _ in links if f is not None]
        stack.extend(k for k in kids if k not in edges)
    parents = dict.fromkeys(edges, 0)
    for kids in edges.values():
        for kid in kids:
            parents[kid] += 1
    order, ready = [], [root]
    while ready:
        node = ready.pop()
        order.append(node)
        for kid in edges[node]:
            parents[kid] -= 1
            if not parents[kid]:
                ready.append(kid)
    # children first: whether a node leads to a max-pool rule node
    leads: dict[Any, bool] = {}
    for node in reversed(order):
        name = names[node]
        leads[node] = name in _POOL_RULE_NODES or any(leads[k] for k in edges[node])
        if leads[node] and name not in SHARED_GRADIENT_NODES and name not in _LOCAL_NODES:
            if not (node in selection and name in _SELECTION_NODES):
                return False
    return True
