"""Layer-wise Relevance Propagation (Bach et al., "On Pixel-Wise Explanations for Non-Linear
Classifier Decisions by Layer-Wise Relevance Propagation", 2015), with rules as data.

Relevance starts at the explained output (``R = f(x)`` of the target) and is passed down layer
by layer. For a layer with input ``a`` and output ``z = z(a)`` a *z-rule* redistributes the
relevance ``R_out`` arriving at its output as

    R_in = a * J'^T (R_out / s(z')),     s(z') = z' + eps * sign(z')   (sign(0) = 1)

where ``z'`` and ``J'`` are the layer's output and Jacobian under the rule's modified
parameters (the original ones for the epsilon rule). Elementwise activations pass relevance
unchanged (identity rule).

Implementation: one forward, one backward. The backward carries the *normalised* relevance
``c = R / a`` (so ``R = a * c`` at every tensor, and ``c = 1`` at the explained output). Each
ruled module's output is rewritten by :func:`whybox.core.hooks.module_rules` to a tensor with
the same value whose vector-Jacobian product is the rule,

    out.detach() + (z' - z'.detach()) * (out / s(z')).detach()     ->  c_in = J'^T (c * out / s)

(realised as one autograd node, :class:`_Relay`, with the ratio computed once from
detached tensors), and LRP is ``inputs * modified gradient``. Where the gradients are with
respect to the inputs only and the rule keeps the parameters (``z' = out``, the epsilon
rule) on a stock module, the output itself is kept and a pre-hook on its own autograd node
multiplies the gradient arriving there by the ratio (the same numbers, no relay node and no
copy of the output: :meth:`_ZRule._rewrite_on_node`). ReLU, dropout and reshapes
need no rewrite: their ordinary gradient already passes relevance unchanged in this
normalisation (``relu(x) = x * relu'(x)``). Other elementwise activations get the identity rule
(``c_in = c * f(x) / x``).

Defaults (by module type, leaf modules only, as Captum 0.9 where Captum has a default):
:class:`EpsilonRule` for ``Linear``, ``Conv1d/2d/3d``, max / average / adaptive pooling and
``BatchNorm1d/2d/3d``; the identity for ``ReLU``, ``Dropout``, ``Tanh`` and other elementwise
activations, ``Flatten``, ``Unflatten`` and ``Identity``. A module's ``rule`` attribute
(``module.rule = GammaRule()``, as in Captum) or the ``rules`` argument overrides the default;
any other leaf module without a rule is an error. Functions called inside ``forward``
(``torch.relu``, ``x.flatten(1)``, ``+``) are differentiated as usual.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whybox.core.call import Call
from whybox.core.forward import ChunkSize
from whybox.core.gradients import row_gradients
from whybox.core.hooks import Captured, hooks, module_rules
from whybox.core.method import Bool, Check, Choice
from whybox.core.registry import register
from whybox.core.result import Explanation
from whybox.core.scope import Scope
from whybox.core.validation import check_bool, check_choice, check_real, fail

from .base import Method

__all__ = [
    "LRP",
    "RELEVANCE_FLOWS",
    "PropagationRule",
    "EpsilonRule",
    "GammaRule",
    "Alpha1_Beta0_Rule",
    "IdentityRule",
    "default_rule",
    "as_rule",
    "resolve_rules",
    "conservation_delta",
]


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


def _stabilise(z: Tensor, eps: float) -> Tensor:
    # z + eps * sign(z) with sign(0) = 1 (Captum's convention): never divides by zero.
    # One where over the two sums, not a sign tensor: the same values in fewer kernels
    return torch.where(z >= 0, z + eps, z - eps)


#: the smallest normal number per floating dtype (``torch.finfo`` is slow to ask per layer)
_TINY: dict[torch.dtype, float] = {}


def _nonzero_shift(eps: float, dtype: torch.dtype) -> bool:
    """Whether ``z + eps * sign(z)`` is never 0 in ``dtype`` (``eps`` a normal number there)."""
    if eps <= 0 or not dtype.is_floating_point:
        return False
    tiny = _TINY.get(dtype)
    if tiny is None:
        tiny = _TINY[dtype] = torch.finfo(dtype).tiny
    return eps >= tiny


def _safe_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    # with epsilon = 0 (LRP-0) a zero output (e.g. a pool over dead units) carries nothing
    zero = denominator == 0
    return torch.where(zero, 0.0, numerator / torch.where(zero, 1.0, denominator))


def _stabilised_ratio(numerator: Tensor, z: Tensor, eps: float) -> Tensor:
    """``numerator / (z + eps * sign(z))``, 0 where that denominator is 0; same shape."""
    if z is numerator and _nonzero_shift(eps, z.dtype):
        # out / (out + eps * sign(out)) is |out| / (|out| + eps) exactly (IEEE rounding is
        # symmetric in the sign): three kernels instead of a sign tensor, a where and a guard
        magnitude = numerator.abs()
        return magnitude.div_(magnitude + eps)
    denominator = _stabilise(z, eps)
    if _nonzero_shift(eps, z.dtype):
        return numerator / denominator  # the denominator is never 0: no guard needed
    return _safe_ratio(numerator, denominator)


class _Relay(torch.autograd.Function):
    """``value`` forward; backward ``grad * ratio`` to ``z`` (nothing to the others).

    The vector-Jacobian product of ``value.detach() + (z - z.detach()) * ratio`` in one
    autograd node and one kernel each way, instead of three nodes and three kernels.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, value: Tensor, ratio: Tensor) -> Tensor:
        ctx.save_for_backward(ratio)
        # a new tensor: a later in-place module (ReLU(inplace=True)) may overwrite it
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None, None


class _CaptumFlow:
    """What the rewrites of one call under Captum 0.9's flow share.

    ``hooked``: the input tensors given a scaling hook, once per tensor (``id -> (weak ref,
    recorders)``; the recorders get the hook's result, ``grad * input``); ``captured``: the
    live capture of the layers' inputs (the tap of the chunk running); ``cells``: this
    chunk's recorders of tapped layer inputs (``(layer, tensor) -> list``); ``records``:
    per position in the tapped tensors, the cells of every chunk, in order.
    """

    __slots__ = ("hooked", "captured", "cells", "records", "called")

    def __init__(self) -> None:
        self.hooked: dict[int, tuple[Any, list[Any]]] = {}
        self.captured: Any = None
        self.cells: dict[tuple[int, int], list[Tensor]] = {}
        self.records: dict[int, list[list[Tensor]]] = {}
        self.called: set[int] = set()  # the ruled modules run in this forward

    def forward_started(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """A forward pre-hook of the model: a new forward (chunk) begins."""
        self.called.clear()

    def once(self, rewrite: Any) -> Any:
        """``rewrite`` refusing a module run twice in one forward, as Captum 0.9 does (its
        hooks keep one set of activations per module, so its flow has no answer there)."""
        called = self.called

        def checked(module: nn.Module, *args: Any) -> Any:
            if id(module) in called:
                raise RuntimeError(
                    f"Module {module} is being used more than once in the network, which "
                    "is not supported by LRP with Captum's relevance flow (Captum 0.9 "
                    "refuses it too). Use each module once in forward, or "
                    "whybox.methods.LRP with its default relevance_flow='conserving'."
                )
            called.add(id(module))
            return rewrite(module, *args)

        checked.all_inputs = getattr(rewrite, "all_inputs", False)  # type: ignore[attr-defined]
        return checked

    def watch(self, tap: Any) -> Any:
        """``tap`` (a factory of a capture context) that also makes its capture the live one
        while the forward runs, for :meth:`originals`."""

        @contextmanager
        def watched() -> Any:
            self.cells = {}
            with tap() as captured:
                previous, self.captured = self.captured, captured
                try:
                    yield captured
                finally:
                    self.captured = previous
                    self._settle(captured)

        return watched

    def originals(
        self, module: nn.Module, args: tuple[Any, ...]
    ) -> tuple[list[Tensor], list[int]] | None:
        """The tensors ``module``'s positional tensor inputs stand for and the positions of
        ``module`` in the layers, where ``module`` is a layer whose inputs the live capture
        records (it feeds the layer clones and records the originals, in the same order);
        ``None`` otherwise."""
        captured = self.captured
        if (
            not isinstance(captured, Captured)
            or not captured.to_input
            or captured.explicit is not None
        ):
            return None
        tensors = [a for a in args if isinstance(a, Tensor)]
        found: list[Tensor] | None = None
        layers: list[int] = []
        for i, layer in enumerate(captured.layers):
            if layer is not module:
                continue
            recorded = captured.per_layer[i]
            if len(recorded) != len(tensors) or any(
                r.shape != t.shape for r, t in zip(recorded, tensors)
            ):
                return None
            found = list(recorded) if found is None else found
            layers.append(i)
        return None if found is None else (found, layers)

    def cell(self, layer: int, position: int) -> list[Tensor]:
        """A new recorder of this chunk's tapped input ``position`` of layer ``layer`` (the
        last call of the layer in the forward counts, as for the capture)."""
        cell: list[Tensor] = []
        self.cells[(layer, position)] = cell
        return cell

    def _settle(self, captured: Any) -> None:
        """This chunk's cells under their positions in the capture's flattened tensors
        (known once every layer has run)."""
        cells, self.cells = self.cells, {}
        if not cells or not isinstance(captured, Captured):
            return
        offsets = [0]
        for layer_tensors in captured.per_layer:
            offsets.append(offsets[-1] + len(layer_tensors))
        for (i, j), cell in cells.items():
            if j < offsets[i + 1] - offsets[i]:
                self.records.setdefault(offsets[i] + j, []).append(cell)

    def relevance(self, grads: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """``grads`` (the tapped tensors' gradients, chunks joined) with each tapped layer
        input replaced by what its input hook made, ``grad * input``, for every chunk.

        ``autograd.grad`` records a tapped tensor's gradient before its tensor hooks where
        the gradient also flows on to another tapped tensor, and after them where not; the
        hook's own result is Captum's ``relevance_input`` either way.
        """
        if not self.records:
            return grads
        out = list(grads)
        for position, cells in self.records.items():
            if position >= len(out) or not all(cells):
                continue
            parts = [cell[-1] for cell in cells]
            joined = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
            if joined.shape == out[position].shape:
                out[position] = joined
        return tuple(out)


def _input_hook(value: Tensor, recorders: list[Any]) -> Any:
    """Captum's input hook: the gradient times the input ``value`` (given to ``recorders``)."""

    def hook(grad: Tensor) -> Tensor:
        relevance = grad * value
        for record in recorders:
            record(relevance)
        return relevance

    return hook


def _captum_z_rewrite(
    rule: _ZRule, flow: _CaptumFlow, module: nn.Module, args: tuple[Any, ...], out: Tensor
) -> Tensor:
    """A z-rule under Captum 0.9's flow, where the gradient between modules is the
    relevance ``R`` itself (not ``R / a``): ``R_in = a * J'^T (R_out / s(z'))``.

    The output's relay divides by ``s(z')``; each input tensor ``a`` (once per forward,
    ``flow.hooked``) gets a tensor hook multiplying its whole gradient by ``a``, as Captum's
    input hooks do (so a tensor also used outside the module, a residual branch, has the
    sum of its gradients multiplied, as in Captum). For a layer whose inputs are tapped
    (LayerLRP with ``attribute_to_layer_input``) the capture feeds the module clones: the
    hook goes on the tensor each clone stands for (the one Captum hooks), and its result
    is recorded as the layer input's relevance (:meth:`_CaptumFlow.relevance`).
    """
    hooked = flow.hooked
    found = flow.originals(module, args)
    position = -1
    for a in args:
        if not isinstance(a, Tensor):
            continue
        position += 1
        if found is not None:
            a = found[0][position]
        if not a.requires_grad:
            continue
        seen = hooked.get(id(a))
        if seen is None or seen[0]() is not a:
            # a tensor's first module hooks it (an input of two modules keeps that hook)
            recorders: list[Any] = []
            a.register_hook(_input_hook(a.detach(), recorders))
            seen = hooked[id(a)] = (weakref.ref(a), recorders)  # weak: chunks are freed
        if found is not None:
            for i in found[1]:
                seen[1].append(flow.cell(i, position).append)
    parameters = rule._parameters(module)
    value = out.detach()
    if parameters is None:
        z = out
    else:
        z = _forward_with(module, args[0], *parameters)
    ratio = _stabilised_ratio(torch.ones_like(value), z.detach(), rule.epsilon)
    return _Relay.apply(z, value, ratio)


def _captum_pass(module: nn.Module, x: Tensor, out: Tensor) -> None:
    """An activation, an :class:`IdentityRule` or a module without a rule under Captum 0.9's
    flow: the whole gradient of the module's input tensor (all its uses) is replaced by the
    gradient arriving at the module's output, as Captum's activation hooks do (so ``R``
    passes unchanged; a use of that input outside the module adds nothing). The output
    stays the module's own."""
    node = out.grad_fn
    if not x.requires_grad or node is None:
        return None
    if x.numel() != out.numel():
        raise TypeError(
            f"LRP with Captum's flow passes relevance through {type(module).__name__} "
            f"unchanged, which needs its input and output to have the same size; it maps "
            f"{tuple(x.shape)} to {tuple(out.shape)}. Set a rule for it."
        )
    arrived: list[Tensor] = []
    index = out.output_nr

    def keep(grad_outputs: tuple[Tensor | None, ...]) -> None:
        # a node pre-hook runs after the output's tensor hooks: it sees the gradient a
        # later module's input hook made of it (what Captum's ``replace_out`` hands over)
        grad = grad_outputs[index]
        if grad is not None:
            arrived.append(grad)

    node.register_prehook(keep)

    def replace(grad: Tensor) -> Tensor:
        return arrived.pop().reshape(grad.shape) if arrived else grad

    x.register_hook(replace)
    return None


def _captum_rule(rule: PropagationRule | None, flow: _CaptumFlow) -> Any:
    """The rewrite of a leaf module with ``rule`` under Captum's flow (a user's own rule
    class keeps its rewrite); ``flow``: what this call's rewrites share."""
    if rule is None:
        return _captum_pass
    if isinstance(rule, _ZRule):
        bound = functools.partial(_captum_z_rewrite, rule, flow)
        bound.all_inputs = True  # type: ignore[attr-defined]
        return flow.once(bound)
    # a module with a rule (Captum's ruled layers, an IdentityRule or a user's own rule)
    return flow.once(_captum_pass if isinstance(rule, IdentityRule) else rule.rewrite)


def _forward_with(module: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The module's output on ``x`` with replaced parameters, without running its hooks."""
    kind = type(module)
    if kind is nn.Linear:
        return F.linear(x, weight, bias)
    if kind in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        return module._conv_forward(x, weight, bias)
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        # batch statistics without touching the running buffers, or the running statistics
        batch_stats = module.training or module.running_mean is None
        mean = None if batch_stats else module.running_mean
        var = None if batch_stats else module.running_var
        return F.batch_norm(x, mean, var, weight, bias, batch_stats, 0.0, module.eps)
    raise TypeError(
        f"LRP rules that change parameters support Linear, Conv1d/2d/3d and BatchNorm1d/2d/3d "
        f"modules; got {kind.__name__}. Use EpsilonRule or IdentityRule for it."
    )


class PropagationRule:
    """Base of LRP rules: a rule rewrites one module's output so that the backward pass
    realises it (see the module docstring). Rules hold only their options (data)."""

    #: stabiliser added to the denominators (``epsilon`` of :class:`EpsilonRule`)
    epsilon: float = 1e-9

    def rewrite(self, module: nn.Module, x: Tensor, out: Tensor) -> Tensor:  # pragma: no cover
        """Same value as ``out``; the gradient with respect to ``x`` realises the rule."""
        raise NotImplementedError

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({options})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))


class _ZRule(PropagationRule):
    """z-rule with optionally modified parameters (``_parameters``)."""

    set_bias_to_zero: bool = False

    def _weight(self, weight: Tensor) -> Tensor | None:
        return None  # unchanged

    def _parameters(self, module: nn.Module) -> tuple[Tensor, Tensor | None] | None:
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        new_weight = self._weight(weight) if isinstance(weight, Tensor) else None
        new_bias = bias
        if self.set_bias_to_zero and isinstance(bias, Tensor):
            new_bias = torch.zeros_like(bias)
        if new_weight is None and new_bias is bias:
            return None  # nothing changes: z' is the module's own output
        return (weight if new_weight is None else new_weight), new_bias

    def rewrite(self, module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        parameters = self._parameters(module)
        # the ratio from detached tensors: no graph, and no no_grad block to enter per layer
        value = out.detach()
        if parameters is None:
            return _Relay.apply(out, value, _stabilised_ratio(value, value, self.epsilon))
        # z' keeps a graph to x: its vector-Jacobian product is J'^T
        z = _forward_with(module, x, *parameters)
        return _Relay.apply(z, value, _stabilised_ratio(value, z.detach(), self.epsilon))

    def _rewrite_on_node(self, module: nn.Module, x: Tensor, out: Tensor) -> Tensor | None:
        """:meth:`rewrite` for gradients with respect to the inputs only (no tapped layer),
        for a rule that keeps the parameters (``z`` is ``out``): ``out`` is kept and a
        pre-hook on its own autograd node scales the gradient arriving there by the ratio
        (no relay node, no copy of the output). Anything else goes to :meth:`rewrite`.

        The same gradient as the relay's: the module is a stock one and no other hook saw
        ``out``, so every use of ``out`` is a use of the module's output, and the node
        receives the sum of their gradients, as the relay does. An in-place module after
        this one (``ReLU(inplace=True)``) changes ``out`` after the ratio was taken; the node
        still receives the gradient of the value it computed.
        """
        node = out.grad_fn
        if (
            node is None
            or self.set_bias_to_zero
            or out._base is not None
            or not _sole_hooks(module)
        ):
            return self.rewrite(module, x, out)
        value = out.detach()
        ratio = _stabilised_ratio(value, value, self.epsilon)
        node.register_prehook(_scaling(ratio, out.output_nr))
        return None


def _scaling(ratio: Tensor, index: int) -> Any:
    """Node pre-hook: output ``index``'s gradient times ``ratio``.

    The product goes into ``ratio`` itself (``ratio * grad`` is ``grad * ratio`` exactly),
    so the backward allocates nothing, where that is the same tensor: ``grad`` a plain
    dense tensor off the graph (no ``create_graph``), of ``ratio``'s dtype, shape and
    strides. The hook then lets go of it (the node's consumer frees it, as a relay frees
    its saved ratio); a second backward through the node would be an error (the graph is
    not retained past the gradient call that runs the hook).
    """
    held: Tensor | None = ratio
    del ratio

    def scale(grad_outputs: tuple[Tensor | None, ...]) -> tuple[Tensor | None, ...] | None:
        nonlocal held
        grad = grad_outputs[index]
        if grad is None:
            return None
        ratio = held
        if ratio is None:
            raise RuntimeError("LRP: a rule's ratio serves one backward pass")
        if (
            type(grad) is not Tensor
            or grad.requires_grad
            or grad.dtype != ratio.dtype
            or grad.layout != torch.strided
            or grad.shape != ratio.shape
            or grad.stride() != ratio.stride()
        ):
            scaled = grad * ratio
        else:
            held = None
            scaled = ratio.mul_(grad)
        if len(grad_outputs) == 1:
            return (scaled,)
        return grad_outputs[:index] + (scaled,) + grad_outputs[index + 1 :]

    return scale


#: torch's global module hooks (its dicts, changed in place by ``register_module_*_hook``)
_GLOBAL_FORWARD_HOOKS = torch.nn.modules.module._global_forward_hooks
_GLOBAL_BACKWARD_HOOKS = torch.nn.modules.module._global_backward_hooks
_GLOBAL_BACKWARD_PRE_HOOKS = torch.nn.modules.module._global_backward_pre_hooks


def _sole_hooks(module: nn.Module) -> bool:
    """Whether the rule's forward hook is the module's only hook (no global ones either):
    no other hook saw (or could reuse) the output, and none wraps its gradient."""
    return not (
        len(module._forward_hooks) != 1
        or module._backward_hooks
        or module._backward_pre_hooks
        or _GLOBAL_FORWARD_HOOKS
        or _GLOBAL_BACKWARD_HOOKS
        or _GLOBAL_BACKWARD_PRE_HOOKS
    )


class EpsilonRule(_ZRule):
    """LRP-epsilon: ``R_in = a * J^T (R_out / (z + epsilon * sign(z)))``.

    ``epsilon`` absorbs weak or contradictory relevance; ``epsilon -> 0`` is LRP-0.
    """

    def __init__(self, epsilon: float = 1e-9) -> None:
        check_real("EpsilonRule", "epsilon", epsilon, minimum=0.0)
        self.epsilon = float(epsilon)


class GammaRule(_ZRule):
    """LRP-gamma: positive weights enlarged, ``W' = W + gamma * max(W, 0)``.

    As in Captum 0.9 the bias is kept (or set to zero with ``set_bias_to_zero``).
    """

    def __init__(self, gamma: float = 0.25, set_bias_to_zero: bool = False) -> None:
        check_real("GammaRule", "gamma", gamma, minimum=0.0)
        check_bool("GammaRule", "set_bias_to_zero", set_bias_to_zero)
        self.gamma = float(gamma)
        self.set_bias_to_zero = set_bias_to_zero

    def _weight(self, weight: Tensor) -> Tensor:
        return weight + self.gamma * weight.clamp(min=0)


class Alpha1_Beta0_Rule(_ZRule):  # noqa: N801 - Captum's name
    """LRP-alpha1-beta0 (z+): only positive weights, ``W' = max(W, 0)``.

    As in Captum 0.9 the bias is kept (or set to zero with ``set_bias_to_zero``).
    """

    def __init__(self, set_bias_to_zero: bool = False) -> None:
        check_bool("Alpha1_Beta0_Rule", "set_bias_to_zero", set_bias_to_zero)
        self.set_bias_to_zero = set_bias_to_zero

    def _weight(self, weight: Tensor) -> Tensor:
        return weight.clamp(min=0)


class IdentityRule(PropagationRule):
    """Relevance passes unchanged: ``R_in = R_out`` (input and output of the same size).

    ``epsilon`` only stabilises the ratio ``out / x`` where ``x`` is near zero (Captum's
    IdentityRule takes it too, as an EpsilonRule).
    """

    def __init__(self, epsilon: float = 1e-9) -> None:
        check_real("IdentityRule", "epsilon", epsilon, minimum=0.0)
        self.epsilon = float(epsilon)

    def rewrite(self, module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        if x.numel() != out.numel():
            raise ValueError(
                f"IdentityRule needs a module whose input and output have the same size; "
                f"{type(module).__name__} maps {tuple(x.shape)} to {tuple(out.shape)}"
            )
        x = x.reshape(out.shape)
        value = out.detach()
        # c_in = c_out * out / x, so that x * c_in = out * c_out
        return _Relay.apply(x, value, _stabilised_ratio(value, x.detach(), self.epsilon))


#: modules whose ordinary gradient already passes relevance unchanged (no rewrite needed)
_PLAIN: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
)
_EPSILON: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
)
_ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.Tanh,
    nn.Sigmoid,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Softsign,
    nn.Hardswish,
    nn.Hardsigmoid,
)


def default_rule(module: nn.Module) -> PropagationRule | None:
    """The default rule of a leaf module (``None``: its ordinary gradient is the rule).

    Raises ``TypeError`` for module types without a default.
    """
    if isinstance(module, _PLAIN):
        return None
    if isinstance(module, _EPSILON):
        return EpsilonRule()
    if isinstance(module, _ELEMENTWISE):
        return IdentityRule()
    raise TypeError(
        f"LRP has no default rule for modules of type {type(module).__name__} ({module}). "
        "Set one explicitly, e.g. `module.rule = EpsilonRule()` or "
        "`LRP(model, rules={module: IdentityRule()})`, choosing a rule that fits the layer."
    )


def as_rule(value: Any, module: nn.Module, owner: str) -> PropagationRule:
    """A rule given by the user for ``module``, checked to be a :class:`PropagationRule`."""
    if isinstance(value, PropagationRule):
        return value
    fail(
        owner,
        "rules",
        f"LRP rules (EpsilonRule, GammaRule, Alpha1_Beta0_Rule, IdentityRule) for {module}",
        value,
        type_error=True,
    )
    raise AssertionError  # unreachable


def resolve_rules(
    model: nn.Module, rules: Mapping[Any, Any] | None, *, owner: str = "LRP"
) -> list[tuple[nn.Module, PropagationRule | None]]:
    """The rule of every leaf module of ``model``: ``rules[module]``, ``rules[type]``, the
    module's ``rule`` attribute, then the default (in this order)."""
    return [(module, rule) for _, module, rule in _resolve_named(model, rules, owner=owner)]


_ABSENT = object()


def _rule_attribute(module: nn.Module) -> Any:
    """``getattr(module, "rule", None)`` without ``nn.Module.__getattr__``'s exception for
    the usual module that has no ``rule`` (the same lookup, in the same order)."""
    if hasattr(type(module), "rule"):  # a class attribute or property: the ordinary lookup
        return getattr(module, "rule", None)
    own = module.__dict__
    value = own.get("rule", _ABSENT)
    if value is not _ABSENT:
        return value
    for store in ("_parameters", "_buffers", "_modules"):  # where __getattr__ looks
        entries = own.get(store)
        if entries and "rule" in entries:
            return entries["rule"]
    return None


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the leaf modules, in ``model.named_modules()`` order (each
    module once): its pre-order walk, recursing into containers only (no generators)."""
    if not _has_children(model):
        return [("", model)]
    leaves: list[tuple[str, nn.Module]] = []
    seen = {id(model)}

    def visit(prefix: str, module: nn.Module) -> None:
        for key, child in module._modules.items():
            if child is None or id(child) in seen:
                continue
            seen.add(id(child))
            if _has_children(child):
                visit(prefix + key + ".", child)
            else:
                leaves.append((prefix + key, child))

    visit("", model)
    return leaves


def _has_children(module: nn.Module) -> bool:
    children = module._modules
    return bool(children) and any(child is not None for child in children.values())


#: the default rules' shared instances inside :func:`_resolve_named` (rules are data and
#: only read there; the public :func:`default_rule` gives new ones)
_SHARED_DEFAULTS: dict[type, PropagationRule] = {}


#: ``id(rule) -> repr(rule)`` of those shared instances (they live as long as the module
#: and are never changed: their reprs are fixed)
_SHARED_REPRS: dict[int, str] = {}

#: ``type(module) -> its shared default rule`` (:func:`default_rule` reads only the
#: module's type); bounded, for programs that make module classes on the fly
_DEFAULT_OF_TYPE: dict[type, PropagationRule | None] = {}
_DEFAULT_OF_TYPE_LIMIT = 1024


def _shared_default(module: nn.Module) -> PropagationRule | None:
    kind = type(module)
    try:
        return _DEFAULT_OF_TYPE[kind]
    except KeyError:
        pass
    made = default_rule(module)  # the error for a module without a default
    shared = None
    if made is not None:
        shared = _SHARED_DEFAULTS.setdefault(type(made), made)
        if id(shared) not in _SHARED_REPRS:
            _SHARED_REPRS[id(shared)] = repr(shared)
    if len(_DEFAULT_OF_TYPE) >= _DEFAULT_OF_TYPE_LIMIT:
        _DEFAULT_OF_TYPE.clear()
    _DEFAULT_OF_TYPE[kind] = shared
    return shared


def _rule_repr(rule: PropagationRule | None) -> str:
    """``repr(rule)``, looked up for the shared defaults (the same text)."""
    text = _SHARED_REPRS.get(id(rule))
    if text is not None and _SHARED_DEFAULTS.get(type(rule)) is rule:
        return text
    return repr(rule)


def _resolve_named(
    model: nn.Module,
    rules: Mapping[Any, Any] | None,
    *,
    owner: str,
    shared_defaults: bool = False,
) -> list[tuple[str, nn.Module, PropagationRule | None]]:
    """:func:`resolve_rules` with each leaf's qualified name (``""`` for the model itself):
    one walk of the model per call gives both the rules and the names reported.

    With ``shared_defaults`` the default rules are shared instances (for a caller that only
    reads them), not new ones per module.
    """
    rules = dict(rules or {})
    resolved = []
    for name, module in _leaves(model):
        # containers are skipped: their leaves carry the rules (as in Captum)
        if not rules:
            value = _rule_attribute(module)
        elif module in rules:
            value = rules[module]
        elif type(module) in rules:
            value = rules[type(module)]
        else:
            value = _rule_attribute(module)
        if value is None:
            try:
                rule = _shared_default(module) if shared_defaults else default_rule(module)
            except TypeError as error:
                raise TypeError(f"{owner}: {error}") from None
        else:
            rule = as_rule(value, module, owner)
        resolved.append((name, module, rule))
    return resolved


# --------------------------------------------------------------------------------------------
# Method
# --------------------------------------------------------------------------------------------

#: how relevance crosses functions called in ``forward`` (see :class:`LRP`)
RELEVANCE_FLOWS = ("conserving", "captum")


#: module types whose (unpatched) forward returns a fresh tensor computed from the input by
#: one differentiable operation: the output has no other use inside the module
_STOCK: frozenset[type[nn.Module]] = frozenset(_EPSILON)


def _node_rewritable(rule: PropagationRule, module: nn.Module) -> bool:
    """Whether ``rule`` on ``module`` may take :meth:`_ZRule._rewrite_on_node`: a z-rule
    with the base class's rewrite and parameters (the weight kept: ``EpsilonRule``), on a
    stock module whose forward is the class's."""
    kind = type(rule)
    return (
        isinstance(rule, _ZRule)
        and kind.rewrite is _ZRule.rewrite
        and kind._parameters is _ZRule._parameters
        and kind._weight is _ZRule._weight
        and type(module) in _STOCK
        and "forward" not in module.__dict__
    )


def _check_rules(owner: str, name: str, rules: Any) -> None:
    # each rule is checked against its module at the call
    if rules is not None and not isinstance(rules, Mapping):
        fail(owner, name, "a mapping {module or type: rule} or None", rules)


@register("lrp")
class LRP(Method):
    """Layer-wise Relevance Propagation of the target output.

    Parameters
    ----------
    model : nn.Module
        The model; rules are attached to its leaf modules for the call only (nothing is
        written to the model, its parameters are never modified).
    rules : mapping, optional
        ``{module or module type: rule}``, overriding ``module.rule`` attributes and the
        defaults (see :func:`default_rule`).
    layer, attribute_to_layer_input :
        Layer scope (Captum's LayerLRP): the relevance at the layer's output (input),
        ``activation * normalised relevance``, shaped like the layer.
    relevance_flow : {"conserving", "captum"}, default "conserving"
        How relevance crosses functions called in ``forward`` (``x1 + x2``, ``2 * x``,
        residual sums). ``"conserving"``: the normalised relevance ``R / a`` is
        differentiated through them, so each input of a sum gets its share
        (``x_i * gradient``) and relevance is conserved. ``"captum"``: Captum 0.9's flow,
        the relevance itself is differentiated through them (every input of a sum gets the
        sum's whole relevance), activations pass it unchanged and the result is the
        gradient at the inputs (at the layer) times ``f(x)``. The Captum facade
        (``whybox.attr.LRP`` / ``LayerLRP``) uses it, so its numbers are Captum's (with
        ``attribute_to_layer_input``, a ruled layer's input that also feeds other
        computations gets its whole gradient times its value, as in Captum). Like
        Captum, this flow refuses a model that runs a ruled module twice in one forward
        (``RuntimeError``); the conserving flow explains such models.
    """

    has_delta = True
    needs_module = True
    parameters = {
        "rules": Check(_check_rules),
        "verbose": Bool(),
        "relevance_flow": Choice(RELEVANCE_FLOWS),
    }

    def __init__(
        self,
        model: nn.Module,
        *,
        rules: Mapping[Any, Any] | None = None,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
        relevance_flow: str = "conserving",
    ) -> None:
        super().__init__(model, layer=layer, attribute_to_layer_input=attribute_to_layer_input)
        self.rules = rules
        self.relevance_flow = check_choice(
            self.owner, "relevance_flow", relevance_flow, RELEVANCE_FLOWS
        )

    def _empty_delta(self, scope: Scope, call: Call, leaves: tuple[Tensor, ...]) -> Any:
        # one delta per layer, in the attributions' convention (as for a non-empty batch)
        empty = super()._empty_delta(scope, call, leaves)
        return scope.arrange([empty.clone() for _ in scope.groups(call, leaves)])

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        chunk_size: ChunkSize = "auto",
        return_delta: bool = True,
        verbose: bool = False,
        show_progress: bool = False,
    ) -> Explanation:
        """Relevance of every input feature (or layer unit) for the target.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        target : which output to explain (see :mod:`whybox.core.targets`)
        forward_args : extra model arguments
        chunk_size : rows per forward/backward (``"auto"`` picks for throughput)
        return_delta : also return the conservation delta (free: same forward)
        verbose : print the rule applied to each module

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (like the layer with ``layer``; a list
            for several layers); ``delta`` of shape ``(N,)``: ``sum(relevance) - f(x)`` (a
            list per layer for several layers). It is 0 for bias-free models with
            ``epsilon -> 0`` (relevance is conserved).
        """
        owner = self.owner
        scope = self._scope()
        resolved = _resolve_named(self.model, self.rules, owner=owner, shared_defaults=True)
        by_module = {id(module): rule for _, module, rule in resolved if rule is not None}
        if verbose:
            for _, module, rule in resolved:
                print(f"Applied {rule if rule is not None else 'gradient'} on layer {module}")
        call = scope.prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
            float_inputs=True,  # relevance starts from real-valued inputs, also for a layer
        )

        # gradients with respect to the inputs only: no tapped value reads a ruled output,
        # so z-rules on stock modules may scale the gradient at the output's own node
        on_node = scope.tap is None
        captum_flow = self.relevance_flow == "captum"
        leaf_ids = {id(module) for _, module, _ in resolved}
        tap = scope.tap
        flow = _CaptumFlow() if captum_flow else None  # what the rewrites of this call share
        if flow is not None and tap is not None:
            tap = flow.watch(tap)  # a tapped layer input is hooked where Captum hooks it

        def dispatch(module: nn.Module) -> Any:
            rule = by_module.get(id(module))
            if flow is not None:
                return _captum_rule(rule, flow) if id(module) in leaf_ids else None
            if rule is None:
                return None
            if on_node and _node_rewritable(rule, module):
                return rule._rewrite_on_node
            return rule.rewrite

        recorded: list[Tensor] = []
        # Captum's flow: each forward (chunk) starts with no ruled module run (see once)
        starts = [] if flow is None else [(self.model, "forward_pre", flow.forward_started)]
        with module_rules(self.model, dispatch), hooks(starts):
            grads, outputs = row_gradients(call, tap=tap, record=recorded)
        # relevance = activation * normalised relevance (c = 1 at the explained output);
        # the layer's activations come from the same forward as the gradients
        if flow is not None:
            grads = flow.relevance(grads)  # a tapped layer input: its input hook's result
            # the gradient is the relevance normalised by the output (1 there): times f(x)
            leaves = tuple(g * outputs.reshape((-1,) + (1,) * (g.dim() - 1)) for g in grads)
        else:
            values = scope.values(call.tensors, recorded)
            leaves = tuple(v * g for v, g in zip(values, grads))
        parameters = {"rules": {name or "(model)": _rule_repr(r) for name, _, r in resolved}}
        delta = None
        if return_delta:
            # one delta per layer for several layers (LayerLRP), else one
            delta = scope.arrange(self._delta(call, scope.groups(call, leaves), outputs))
        return scope.result(self, call, leaves, delta=delta, parameters=parameters)

    @staticmethod
    def _delta(call: Call, groups: list[tuple[Tensor, ...]], outputs: Tensor) -> list[Tensor]:
        """``sum(relevance) - f(x)`` per example, ``(N,)``, for each group of tensors."""
        batch = call.batch_size
        if outputs.dim() != 1 or outputs.shape[0] != batch:
            raise ValueError(
                f"{call.owner} cannot compute a per-example conservation delta for a model "
                "that does not return one value per example; pass return_delta=False"
            )
        return [conservation_delta(group, outputs) for group in groups]


def conservation_delta(relevance: Tensor | Sequence[Tensor], outputs: Tensor) -> Tensor:
    """How far relevance is from conserved: ``sum(relevance) - f(x)`` per example.

    Parameters
    ----------
    relevance : Tensor or sequence of Tensor
        The relevance of one example batch, each tensor ``(N, ...)`` (the inputs' or a
        layer's); all of them are summed per example.
    outputs : Tensor
        The explained output per example, ``N`` values (any shape with ``N`` elements).

    Returns
    -------
    Tensor
        ``(N,)`` (0 for bias-free models with ``epsilon -> 0``), in the promoted dtype of
        relevance and outputs.
    """
    leaves = (relevance,) if isinstance(relevance, Tensor) else tuple(relevance)
    outputs = outputs.detach().reshape(-1)
    # flatten(1), not reshape(N, -1): an empty batch has no -1 to infer
    total = sum(t.detach().flatten(1).sum(dim=1) if t.dim() > 1 else t.detach() for t in leaves)
    return total - outputs
