"""DeepLift's rules as data: the textbook Rescale rules and the :class:`RuleSet` protocol.

Shrikumar et al., "Learning Important Features Through Propagating Activation Differences",
2017 (Rescale rule); gradient formulation of Ancona et al., "Towards better understanding of
gradient-based attribution methods for deep neural networks", 2018.

DeepLift evaluates each input row ``x`` with its reference row ``b`` in one forward, the rows
of a chunk laid out ``[inputs; references]`` (``k`` input rows, then their ``k`` references).
A *rule* is a callable ``rule(module, x, out) -> Tensor``, applied by
:func:`whybox.core.hooks.module_rules` to a module's input ``x`` and output ``out`` for such a
chunk. It returns a tensor with ``out``'s value whose gradient with respect to ``x`` is the
DeepLift multiplier, so one backward pass gives the multipliers of every input row. The
Rescale multiplier of an elementwise nonlinearity ``f`` is

    m = (f(x_in) - f(x_ref)) / (x_in - x_ref)     (the local derivative where |x_in - x_ref| < eps)

and the input and reference rows of a pair share it.

A rule may set ``couples_rows = True`` when its multipliers mix rows of the evaluated batch;
DeepLift then evaluates all pairs in one chunk, so the result does not depend on the chunk.

A :class:`RuleSet` says which rule each module gets (by exact type, or a function of the
module) and has a :meth:`RuleSet.reset` that DeepLift calls before every forward, for rule
sets that keep per-forward state. :func:`rescale_rules` is the textbook set, DeepLift's
default: it is complete (the attributions sum to ``f(x) - f(b)``) and each example's result
is independent of its batch mates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Rule",
    "Rules",
    "RuleSet",
    "Rescale",
    "SoftmaxRescale",
    "MaxPoolRescale",
    "Spread",
    "scatter_add_spread",
    "rescale_rules",
    "as_rule_set",
    "ELEMENTWISE",
    "MAX_POOLS",
    "SUPPORTED_NONLINEARITIES",
]

#: ``rule(module, module_input, module_output) -> tensor`` (see the module docstring)
Rule = Callable[[nn.Module, Tensor, Tensor], Tensor]
#: ``{module type: rule}`` (exact type) or ``module -> rule or None``
Rules = Mapping[type, Rule] | Callable[[nn.Module], Rule | None]

#: elementwise nonlinearities of the textbook set (exactly Captum 0.9's set)
ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)
#: max-pool type -> (pool function, number of pooled dimensions)
MAX_POOLS: dict[type[nn.Module], tuple[Callable[..., Any], int]] = {
    nn.MaxPool1d: (F.max_pool1d, 1),
    nn.MaxPool2d: (F.max_pool2d, 2),
    nn.MaxPool3d: (F.max_pool3d, 3),
}
#: module types whose backward the textbook rules replace
SUPPORTED_NONLINEARITIES: tuple[type[nn.Module], ...] = (
    ELEMENTWISE + (nn.Softmax,) + tuple(MAX_POOLS)
)


# -- helpers ---------------------------------------------------------------------------------
def _pair_shape(tensor: Tensor, module: nn.Module) -> tuple[int, ...]:
    """``(2, rows // 2, ...)``: the shape viewing a ``[inputs; references]`` tensor as
    pairs; a clear error for a tensor whose first dimension cannot be the rows."""
    if tensor.dim() == 0 or tensor.shape[0] % 2:
        raise ValueError(
            f"DeepLift expects every {type(module).__name__} module to see the batch dimension "
            f"first (rows [inputs; baselines]); got a tensor of shape {tuple(tensor.shape)}. "
            "Models that move the batch dimension before a nonlinearity are not supported."
        )
    return (2, tensor.shape[0] // 2) + tuple(tensor.shape[1:])


def _pairs(tensor: Tensor, module: nn.Module) -> Tensor:
    """A ``[inputs; references]`` tensor viewed as ``(2, rows // 2, ...)`` (no copy).

    ``pairs[0]`` are the input rows, ``pairs[1]`` their references; a tensor of the pairs'
    shared values, ``(rows // 2, ...)`` or ``(1, rows // 2, ...)``, broadcasts against it.
    """
    # splitting the first dimension is a view for any strides
    return tensor.view(_pair_shape(tensor, module))


def _unpaired(pairs: Tensor, shape: torch.Size) -> Tensor:
    """A ``(2, rows // 2, ...)`` tensor back in the ``(rows, ...)`` layout."""
    return pairs.reshape(shape)


def _ratio(x: Tensor, out: Tensor, module: nn.Module, eps: float) -> tuple[Tensor, Tensor | None]:
    """The Rescale ratio ``(out_in - out_ref) / (x_in - x_ref)``, ``(rows // 2, ...)``,
    0 where ``|x_in - x_ref| < eps``, and the mask of those positions (both broadcast
    against the ``(2, rows // 2, ...)`` pairs of :func:`_pairs`).

    Call under ``torch.no_grad()``. Both differences are taken reference minus input (one
    op each on the two halves; the signs cancel exactly). The mask is ``None`` when no
    position is that small: checked on the CPU only (free there; most forwards have no
    such position, and a rule then needs no local-gradient path), so a rule never waits
    for another device.
    """
    half = _pair_shape(x, module)[1]
    if out.shape != x.shape:  # elementwise modules and softmax keep the shape
        _pair_shape(out, module)
    return ratio_between(x[:half], x[half:], out[:half], out[half:], eps)


def ratio_between(
    x_in: Tensor, x_ref: Tensor, out_in: Tensor, out_ref: Tensor, eps: float
) -> tuple[Tensor, Tensor | None]:
    """The Rescale ratio ``(out_in - out_ref) / (x_in - x_ref)`` of rows and their
    references given apart (each ``(rows, ...)``), 0 where ``|x_in - x_ref| < eps``, and
    the mask of those positions (``None`` when there is none), as :func:`_ratio`.

    Call under ``torch.no_grad()``.
    """
    dx = x_ref - x_in
    dy = out_ref - out_in
    ratio = dy.div_(dx) if dy.dtype == dx.dtype else dy / dx
    size = dx.abs_() if dx.is_floating_point() else dx.abs()
    if _none_below(size, eps):
        return ratio, None
    small = size < eps
    # small positions divided by ~0 above; they are overwritten, so no inf/nan leaks
    return ratio.masked_fill_(small, 0), small


def _below(values: Tensor, eps: float) -> Tensor:
    """``1.0`` where ``|values| < eps``, else ``0.0``, in ``values``' dtype (a float mask:
    the sign of ``eps - |v|`` is exact)."""
    return torch.sign(eps - values.abs()).clamp_min_(0)


def _none_below(size: Tensor, eps: float) -> bool:
    """Whether no entry of ``size`` (``>= 0``) is below ``eps``; ``False`` (may be) off the
    CPU, so that no rule waits for the device."""
    if size.device.type != "cpu":
        return False
    # a Python comparison of the minimum: it can only say "may be small" where torch's
    # comparison would not, and the masked path then gives the same numbers
    return size.numel() == 0 or size.amin().item() >= eps


class _PairMultiplier(torch.autograd.Function):
    """The value of ``out``; backward multiplies the gradient by ``multiplier``.

    ``multiplier`` is ``(rows // 2, ...)`` (shared by the two rows of a pair) or
    ``(2, rows // 2, ...)`` (one per row); see :func:`_pairs`. With ``reuse`` (``out`` a
    detached alias of a module's own new output) ``out`` itself becomes the node's output,
    marked dirty, instead of a copy; the module's graph is then left behind, never run, and
    the model may still change the value in place.
    """

    @staticmethod
    def forward(ctx, x, out, multiplier, reuse, paired=True):
        ctx.save_for_backward(multiplier)
        ctx.paired = paired
        if reuse:
            ctx.mark_dirty(out)
            return out
        return out.clone()  # a new tensor: the model may change it in place

    @staticmethod
    def backward(ctx, grad):
        (multiplier,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        if not ctx.paired:  # the input rows alone (deeplift_apart): one multiplier per row
            return grad * multiplier, None, None, None, None
        return _unpaired(_pairs_of(grad) * multiplier, grad.shape), None, None, None, None


def _reusable(x: Tensor, out: Tensor) -> bool:
    """Whether ``out`` is a module's own new output (not its input passed through, not a
    view of another tensor): held by nothing but the module's graph, which a rule's node
    replaces, so the node may return it (marked dirty) instead of a copy."""
    return out is not x and out.grad_fn is not None and not out._is_view()


def _multiplied(x: Tensor, out: Tensor, multiplier: Tensor) -> Tensor:
    """``out``'s value whose gradient with respect to ``x`` is ``multiplier`` times the
    incoming one (see :class:`_PairMultiplier`)."""
    return _PairMultiplier.apply(x, out.detach(), multiplier, _reusable(x, out))


def _pairs_of(tensor: Tensor) -> Tensor:
    # a gradient has the layout its forward value had, already checked by _pairs
    return tensor.view((2, tensor.shape[0] // 2) + tuple(tensor.shape[1:]))


class _RescaleOrLocal(torch.autograd.Function):
    """The value of ``out``; backward: the Rescale multiplier, or where the input barely
    moved (``small``) the module's own gradient, by passing the gradient on to ``out``'s
    graph. ``paired=False``: the input rows alone (:mod:`whybox.methods.deeplift_apart`),
    ``ratio`` and ``small`` shaped like them."""

    @staticmethod
    def forward(ctx, x, out, ratio, small, paired=True):
        ctx.save_for_backward(ratio, small)
        ctx.paired = paired
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        ratio, small = ctx.saved_tensors
        pairs = _pairs_of(grad) if ctx.paired else grad
        grad_x = grad_out = None
        if ctx.needs_input_grad[0]:
            grad_x = _unpaired((pairs * ratio).masked_fill_(small, 0), grad.shape)
        if ctx.needs_input_grad[1]:
            grad_out = _unpaired(pairs.masked_fill(~small, 0), grad.shape)
        return grad_x, grad_out, None, None, None


# -- elementwise -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Rescale:
    """The Rescale rule of an elementwise nonlinearity (ReLU, ELU, Sigmoid, Tanh, ...)."""

    eps: float = 1e-10
    couples_rows: ClassVar[bool] = False

    def __call__(self, module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        # One autograd node: the value of ``out``, and a backward that multiplies by the
        # ratio (shared by both rows of a pair). Where the input barely moved the module's
        # own derivative f'(x) is used instead, row by row.
        with torch.no_grad():
            ratio, small = _ratio(x, out, module, self.eps)
            if small is not None and type(module) is nn.ReLU:
                # ReLU's derivative is the step (out > 0): one multiplier per row
                ratio = torch.where(small, (_pairs(out, module) > 0).to(ratio.dtype), ratio)
                small = None
        if small is None:
            return _multiplied(x, out, ratio)
        return _RescaleOrLocal.apply(x, out, ratio, small)


# -- softmax ---------------------------------------------------------------------------------
def _softmax_dim(module: nn.Softmax, ndim: int) -> int:
    if module.dim is not None:
        return module.dim
    # torch's legacy implicit-dim choice for nn.Softmax(dim=None)
    return 0 if ndim in (0, 1, 3) else 1


class _SoftmaxRescale(torch.autograd.Function):
    """Value of softmax; backward = the Rescale multiplier per element. ``paired=False``: the
    input rows alone (:mod:`whybox.methods.deeplift_apart`), ``ratio`` and ``small`` shaped
    like them."""

    @staticmethod
    def forward(ctx, x, out, ratio, small, dim, paired=True):
        ctx.save_for_backward(out, ratio, small)
        ctx.dim, ctx.paired = dim, paired
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        out, ratio, small = ctx.saved_tensors
        # softmax's exact vector-Jacobian product where the input did not move
        local = out * (grad - (grad * out).sum(ctx.dim, keepdim=True))
        if not ctx.paired:
            return torch.where(small, local, grad * ratio), None, None, None, None, None
        rescaled = torch.where(small, _pairs_of(local), _pairs_of(grad) * ratio)
        return _unpaired(rescaled, grad.shape), None, None, None, None, None


@dataclass(frozen=True)
class SoftmaxRescale:
    """The Rescale rule applied to ``nn.Softmax`` element by element (per example)."""

    eps: float = 1e-10
    couples_rows: ClassVar[bool] = False

    def __call__(self, module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        with torch.no_grad():
            ratio, small = _ratio(x, out, module, self.eps)
        if small is None:
            return _multiplied(x, out, ratio)
        dim = _softmax_dim(module, out.dim())
        return _SoftmaxRescale.apply(x, out.detach(), ratio, small, dim)


# -- max pooling -----------------------------------------------------------------------------
class Spread(Protocol):
    """How pooled values go back to input positions: ``spread(values, indices, module,
    input_shape)``, ``indices`` as ``max_pool*d(return_indices=True)`` gives them."""

    def __call__(
        self, values: Tensor, indices: Tensor, module: nn.Module, shape: torch.Size
    ) -> Tensor: ...


def _pool_of(module: nn.Module) -> tuple[Callable[..., Any], int]:
    for cls in type(module).__mro__:
        if cls in MAX_POOLS:
            return MAX_POOLS[cls]
    raise TypeError(
        f"MaxPoolRescale applies to nn.MaxPool1d/2d/3d modules; got {type(module).__name__}"
    )


def scatter_add_spread(
    values: Tensor, indices: Tensor, module: nn.Module, shape: torch.Size
) -> Tensor:
    """Add pooled ``values`` back at their argmax input positions (the chain rule).

    Overlapping windows that share an argmax add their values, which completeness needs.
    """
    _, n_spatial = _pool_of(module)
    planes = values.shape[:-n_spatial].numel()
    flat = values.new_zeros(planes, torch.Size(shape[-n_spatial:]).numel())
    flat.scatter_add_(1, indices.reshape(planes, -1), values.reshape(planes, -1))
    return flat.view(shape)


#: autograd nodes of max pooling that keep the argmax indices (as ``_saved_result1``)
_POOL_NODES = ("MaxPool2DWithIndicesBackward0", "MaxPool3DWithIndicesBackward0")


def _saved_indices(module: nn.Module, out: Tensor) -> Tensor | None:
    """The argmax indices a max-pool module's own forward saved for its backward.

    Pooling is by far the costliest op of a CNN on the CPU; reading the indices off the
    module's autograd node spares computing them again. ``None`` (compute them) unless
    ``module`` is exactly ``nn.MaxPool1d/2d/3d`` (so its forward is known: one
    ``max_pool*d`` of its input) and that node is there.
    """
    if type(module) not in MAX_POOLS:
        return None
    node = out.grad_fn
    one_d = type(module) is nn.MaxPool1d
    if one_d and node is not None and node.name() == "SqueezeBackward1":
        # max_pool1d is max_pool2d of the input unsqueezed at -2, squeezed back
        node = node.next_functions[0][0]
    if node is None or node.name() not in _POOL_NODES:
        return None
    indices = getattr(node, "_saved_result1", None)
    if not isinstance(indices, Tensor):
        return None
    if one_d:
        indices = indices.squeeze(-2)
    return indices if indices.shape == out.shape else None


def pool_indices(module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
    """A max-pool module's argmax indices for its input ``x`` and output ``out``: read off
    its autograd node where it saved them (:func:`_saved_indices`), else pooled for again
    (a forward without a graph keeps none)."""
    indices = _saved_indices(module, out)
    if indices is not None:
        return indices
    pool, _ = _pool_of(module)
    with torch.no_grad():
        _, indices = pool(
            x.detach(),
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            ceil_mode=module.ceil_mode,
            return_indices=True,
        )
    return indices


class _MaxPoolPairs(torch.autograd.Function):
    """Value of max pooling; backward = DeepLift's max-pool multiplier from per-window weights.

    The chain-rule spread of :class:`_MaxPoolRescale` (``scatter_add_spread``) is linear,
    so dividing by ``x_in - x_ref`` commutes with it: each window's carried differences
    are divided by the input difference at the argmax they land on, read off the pooled
    grid in the forward. The backward is then one product and two scatters of pooled-size
    values, the size of max pooling's own backward, instead of several passes over the
    input. ``index`` is ``(2, planes, P)`` (the argmax of the input rows, then of the
    references, flattened per plane: max pooling's own indices, not copied);
    ``weights[s, t]`` (``(2, 2, planes, P)``) scales the gradient of the window of the rows
    of ``s`` sent to row ``t`` at argmax ``s``.
    """

    @staticmethod
    def forward(ctx, x, out, index, weights, reuse):
        ctx.save_for_backward(index, weights)
        ctx.input_shape = x.shape
        if reuse:  # as in _PairMultiplier: the module's own output becomes this node's
            ctx.mark_dirty(out)
            return out
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        index, weights = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        _, planes, pooled = index.shape
        values = weights * grad.reshape(2, 1, planes, pooled)
        shape = ctx.input_shape
        spread = grad.new_zeros(2, planes, shape.numel() // (2 * planes))
        for side in (0, 1):  # the input rows' argmax, then the references'
            spread.scatter_add_(2, index[side].expand(2, planes, pooled), values[side])
        return spread.view(shape), None, None, None, None


def _window_weights(
    x: Tensor, out: Tensor, indices: Tensor, n_spatial: int, eps: float
) -> tuple[Tensor, Tensor]:
    """``(index, weights)`` of :class:`_MaxPoolPairs` for a max pool's input ``x``, output
    ``out`` and argmax ``indices`` (call under ``torch.no_grad()``).

    For a window with ``y = max x_in`` at ``i`` and ``y_ref = max x_ref`` at ``j``,
    ``top = max(y, y_ref)``, the input rows' part ``top - y_ref`` goes to ``i`` divided by
    ``x_in[i] - x_ref[i]``, the references' part ``y - top`` to ``j`` divided by
    ``x_in[j] - x_ref[j]``: both rows of the pair get it. Where that difference is below
    ``eps`` each row gets its own max-pool gradient instead (weight 1 for its own argmax,
    0 for the other row's), as :class:`_MaxPoolRescale` does.

    Both sides are computed at once, ``(2, planes, P)``, in about a dozen ops (each costs
    microseconds however small the tensor; float masks, not bool ones, which are far
    slower on the CPU).
    """
    planes = out.shape[: out.dim() - n_spatial].numel() // 2
    values = x.reshape(2, planes, -1)
    pooled = out.reshape(2, planes, -1)
    index = indices.reshape(2, planes, -1)
    # indexing, not tuple unpacking: iterating over a tensor costs microseconds per view
    x_in, x_ref, y_in, y_ref = values[0], values[1], pooled[0], pooled[1]
    # x_in - x_ref at each side's argmax, (2, planes, P): x_in at the input rows' argmax
    # is y_in itself (and x_ref at the references' is y_ref)
    dx = pooled.new_empty(pooled.shape)
    dx_in, dx_ref = dx[0], dx[1]
    torch.sub(y_in, torch.gather(x_ref, 1, index[0], out=dx_in), out=dx_in)
    torch.gather(x_in, 1, index[1], out=dx_ref).sub_(y_ref)
    # weights[s, t] as (4, planes, P): [1:3] are (0, 1) and (1, 0), a row's weight for
    # the other row of its pair ("across"); [0::3] are (0, 0) and (1, 1), its own
    weights = pooled.new_empty((4,) + tuple(index.shape[1:]))
    across, own = weights[1:3], weights[0::3]
    # the carried parts max(y - y_ref, 0) (input rows) and min(y - y_ref, 0) (references),
    # y - y_ref written straight into the first (no temporary)
    carried_in, carried_ref = across[0], across[1]
    torch.sub(y_in, y_ref, out=carried_in)
    torch.clamp_max(carried_in, 0, out=carried_ref)
    carried_in.clamp_min_(0)
    # 1.0 where |dx| < eps, else 0.0, kept in the own rows' weights until they are due
    # (no temporary: fewer bytes touched between the model's own ops)
    small = torch.abs(dx, out=own).lt_(eps)
    # dx + 1 where it is below eps: the division stays finite there, and the part is then
    # exactly 0 (a - a * 1); elsewhere dx + 0 and a - a * 0 are exact
    across.div_(dx.add_(small)).addcmul_(across, small, value=-1)
    # its own rows: also their plain max-pool gradient where the input did not move
    # (small + across: the same sum as across + small, exactly)
    own.add_(across)
    return index, weights.view((2, 2) + tuple(index.shape[1:]))


class _MaxPoolRescale(torch.autograd.Function):
    """Value of max pooling; backward = DeepLift's max-pool multiplier.

    For a window with outputs ``y = max x_in`` and ``y_ref = max x_ref`` the output difference
    ``y - y_ref = (max(y, y_ref) - y_ref) + (y - max(y, y_ref))`` is split into a part carried
    by the input's argmax and a part carried by the reference's argmax; the sum of both, per
    input position, divided by ``x_in - x_ref`` is the multiplier.
    """

    @staticmethod
    def forward(ctx, x, out, indices, module, eps, spread):
        ctx.save_for_backward(x, out, indices)
        ctx.module = module
        ctx.eps = eps
        ctx.spread = spread
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        x, out, indices = ctx.saved_tensors
        module = ctx.module
        x_pairs, out_pairs, grad_pairs = _pairs_of(x), _pairs_of(out), _pairs_of(grad)
        out_in, out_ref = out_pairs[0], out_pairs[1]
        top = torch.max(out_in, out_ref)
        carried = torch.cat([grad_pairs[0] * (top - out_ref), grad_pairs[1] * (out_in - top)])
        spread = _pairs_of(ctx.spread(carried, indices, module, x.shape))
        dx = x_pairs[0] - x_pairs[1]
        summed = spread[0].add_(spread[1])
        if _none_below(dx.abs(), ctx.eps):
            multiplier = summed.div_(dx)
            result = multiplier.expand((2,) + tuple(multiplier.shape))
        else:
            # float masks, not bool ones (far slower on the CPU); dx + 1 where it is below
            # eps keeps the division finite there, and those positions are then replaced
            small = _below(dx, ctx.eps)
            multiplier = summed.div_(dx.add_(small)).mul_(1 - small)
            # where the input did not move: the ordinary max-pool gradient of each row
            local = _pairs_of(scatter_add_spread(grad, indices, module, x.shape))
            result = torch.addcmul(multiplier, local, small)
        return _unpaired(result, x.shape), None, None, None, None, None


@dataclass(frozen=True)
class MaxPoolRescale:
    """DeepLift's rule for ``nn.MaxPool1d/2d/3d``.

    ``spread`` sends the output differences carried by each window back to its argmax input
    positions; the default adds them (:func:`scatter_add_spread`), as the chain rule does.
    """

    eps: float = 1e-10
    spread: Spread = scatter_add_spread
    couples_rows: ClassVar[bool] = False

    def __call__(self, module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        _pair_shape(x, module)
        _, n_spatial = _pool_of(module)
        indices = pool_indices(module, x, out)
        with torch.no_grad():
            if self.spread is scatter_add_spread:
                index, weights = _window_weights(x, out, indices, n_spatial, self.eps)
        if self.spread is not scatter_add_spread:
            # another spread may not be linear: spread the carried differences, then divide
            return _MaxPoolRescale.apply(x, out.detach(), indices, module, self.eps, self.spread)
        return _MaxPoolPairs.apply(x, out.detach(), index, weights, _reusable(x, out))


# -- rule sets -------------------------------------------------------------------------------
class RuleSet:
    """Which DeepLift rule each module gets.

    Parameters
    ----------
    rules : mapping or callable
        ``{module type: rule}`` matched by exact type (as :func:`~whybox.core.hooks.
        module_rules` does), or a function ``module -> rule or None``. Modules without a
        rule are differentiated as usual (exact for linear layers).

    Subclasses holding per-forward state (e.g. what an earlier module did in this forward)
    override :meth:`reset`.
    """

    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def rule_for(self, module: nn.Module) -> Rule | None:
        """The rule of ``module`` (``None``: its ordinary gradient)."""
        if isinstance(self.rules, Mapping):
            return self.rules.get(type(module))
        return self.rules(module)

    def reset(self) -> None:
        """Forget per-forward state; DeepLift calls it before every forward and at the end
        of a call. Stateless rule sets do nothing."""

    def __repr__(self) -> str:
        if isinstance(self.rules, Mapping):
            shown = {cls.__name__: rule for cls, rule in self.rules.items()}
            return f"{type(self).__name__}({shown})"
        return f"{type(self).__name__}({self.rules!r})"


def rescale_rules(eps: float = 1e-10) -> RuleSet:
    """The textbook rule set: :class:`Rescale` on every elementwise nonlinearity of
    :data:`ELEMENTWISE`, :class:`SoftmaxRescale` on ``nn.Softmax``, :class:`MaxPoolRescale`
    on ``nn.MaxPool1d/2d/3d``; ``eps`` is the threshold below which an input difference uses
    the local gradient."""
    elementwise = Rescale(eps)
    rules: dict[type, Rule] = {cls: elementwise for cls in ELEMENTWISE}
    rules[nn.Softmax] = SoftmaxRescale(eps)
    pool = MaxPoolRescale(eps)
    rules.update({cls: pool for cls in MAX_POOLS})
    return RuleSet(rules)


@functools.lru_cache(maxsize=16)
def _default_rules(eps: float) -> RuleSet:
    # stateless (frozen rules, no per-forward state), so one set per eps serves every call
    return rescale_rules(eps)


def as_rule_set(rules: RuleSet | Rules | None, *, eps: float) -> RuleSet:
    """``rules`` as a :class:`RuleSet` (``None``: :func:`rescale_rules` with ``eps``, one
    shared set per ``eps``: it is stateless)."""
    if rules is None:
        return _default_rules(float(eps))
    if isinstance(rules, RuleSet):
        return rules
    return RuleSet(rules)
