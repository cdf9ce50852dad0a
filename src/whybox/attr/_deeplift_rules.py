"""Captum 0.9's DeepLift as data: a rule set for :class:`whybox.methods.DeepLift`.

The facade's DeepLift classes pass :class:`CaptumRules` to the native method, so their
numbers are Captum 0.9's. It departs from the textbook Rescale rules
(:func:`whybox.methods.deeplift_rules.rescale_rules`) in three ways, each reproduced here:

1. Softmax multipliers are centred by their mean over the WHOLE evaluated tensor (all rows,
   inputs and references), so an example's result depends on its batch mates. The rule says
   so (``couples_rows``) and DeepLift then evaluates all pairs in one forward.
2. When a supported module's output is directly the input of another (ReLU -> MaxPool), the
   downstream module's rule is lost: Captum records a module's output gradient in a tensor
   hook registered *before* the next module's input hook on the same tensor, so the upstream
   rule reads the downstream module's ordinary gradient. Along a chain the rules therefore
   alternate: a module keeps its rule unless its input is the output of a module that kept
   its rule. (Captum additionally uses the downstream rule at the upstream positions with
   ``|x_in - x_ref| < eps``; that case is not reproduced.)
3. Max pools spread the carried differences back with ``max_unpool``, which keeps only ONE of
   the values of overlapping windows sharing an argmax (the chain rule adds them).

And like Captum, a nonlinearity module called more than once in a forward (one ReLU module
reused) is an error when the gradient reaches one of its earlier calls: Captum's hooks keep
one input and output per module and raise ``RuntimeError`` there (the native
:class:`whybox.methods.DeepLift` explains such models).

Completeness does not hold in general under these rules.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whybox.methods.deeplift_apart import register_wrapper_form
from whybox.methods.deeplift_rules import (
    ELEMENTWISE,
    MAX_POOLS,
    MaxPoolRescale,
    Rescale,
    Rule,
    RuleSet,
    SoftmaxRescale,
)

__all__ = ["CaptumRules"]

_UNPOOLS: dict[type[nn.Module], Callable[..., Tensor]] = {
    nn.MaxPool1d: F.max_unpool1d,
    nn.MaxPool2d: F.max_unpool2d,
    nn.MaxPool3d: F.max_unpool3d,
}


def _unpool_spread(values: Tensor, indices: Tensor, module: nn.Module, shape: torch.Size) -> Tensor:
    """Captum's spread: ``max_unpool`` (keeps one of the values sharing an argmax)."""
    unpool = next(_UNPOOLS[cls] for cls in type(module).__mro__ if cls in _UNPOOLS)
    return unpool(values, indices, module.kernel_size, module.stride, module.padding, list(shape))


class _CentredOverBatch(torch.autograd.Function):
    """Identity whose backward subtracts the mean of the gradient over the whole tensor."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad - grad.sum() / max(grad.numel(), 1)


class _BatchCentred:
    """``rule`` with its input multipliers centred over the evaluated batch (quirk 1)."""

    couples_rows = True

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    def __call__(self, module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        return self.rule(module, _CentredOverBatch.apply(x), out)

    def __repr__(self) -> str:
        return f"BatchCentred({self.rule!r})"


class _Adjacent:
    """``rule``, skipped when the module's input is the output of a module that kept its
    rule in this forward (quirk 2); the record lives in ``rules``' per-thread state."""

    def __init__(self, rule: Rule, rules: CaptumRules) -> None:
        self.rule = rule
        self.rules = rules
        self.couples_rows = getattr(rule, "couples_rows", False)

    def __call__(self, module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        # :meth:`applied` with the paired call, written out (no closure per forward)
        kept = self.rules._kept()
        producer = kept.get(id(x))
        keep = producer is None or producer[0] is not x or not producer[1]
        result = self.rule(module, x, out) if keep else out
        kept[id(result)] = (result, keep)
        self.rules._called(module, result)
        return result

    def applied(
        self, module: nn.Module, x: Tensor, out: Tensor, apply: Callable[[Rule], Tensor]
    ) -> Tensor:
        """``apply(self.rule)``, or ``out`` where the rule is skipped; the result is
        remembered for the modules that run on it. ``apply`` is the paired call of the rule
        or, with the references run apart, its apart form
        (:func:`~whybox.methods.deeplift_apart.register_wrapper_form`)."""
        kept = self.rules._kept()
        producer = kept.get(id(x))
        keep = producer is None or producer[0] is not x or not producer[1]
        result = apply(self.rule) if keep else out
        kept[id(result)] = (result, keep)
        self.rules._called(module, result)
        return result


class _ReusedModule:
    """Tensor hook raising Captum's error for a module called more than once."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, grad: Tensor) -> None:
        raise RuntimeError(
            f"DeepLift (Captum 0.9's rules): the module {self.module!r} is called more than "
            "once in the forward (one module instance used at several places), which "
            "Captum's DeepLift cannot explain and refuses. Use a separate instance per "
            "use, or whybox.methods.DeepLift, which explains reused modules."
        )


register_wrapper_form(
    _Adjacent,
    lambda rule, module, x, out, apply: rule.applied(module, x, out, apply),
    inner=lambda rule: rule.rule,
)


class CaptumRules(RuleSet):
    """The rule set reproducing Captum 0.9's DeepLift (see the module docstring).

    Parameters
    ----------
    eps : float
        Input differences with ``|x - b| < eps`` at a nonlinearity use its local gradient.

    It holds per-forward state (which modules kept their rule), kept per thread and cleared
    by :meth:`reset`, which DeepLift calls before every forward.
    """

    def __init__(self, eps: float = 1e-10) -> None:
        # every rule is wrapped once (the wrapper holds no per-module state), so the set
        # is a plain {type: rule} table that DeepLift hands to its hooks as it is
        elementwise = _Adjacent(Rescale(eps), self)
        rules: dict[type, Rule] = {cls: elementwise for cls in ELEMENTWISE}
        rules[nn.Softmax] = _Adjacent(_BatchCentred(SoftmaxRescale(eps)), self)
        pool = _Adjacent(MaxPoolRescale(eps, spread=_unpool_spread), self)
        rules.update({cls: pool for cls in MAX_POOLS})
        super().__init__(rules)
        self.eps = eps
        self._local = threading.local()

    def _kept(self) -> dict[int, tuple[Tensor, bool]]:
        """``id(output) -> (output, whether its module kept its rule)`` for this forward."""
        state = self._local.__dict__
        kept = state.get("kept")
        if kept is None:
            kept = state["kept"] = {}
        return kept

    def _called(self, module: nn.Module, result: Tensor) -> None:
        """Record ``module``'s call in this forward; from its second call on, the gradient
        reaching an earlier call's output raises Captum's reuse error."""
        state = self._local.__dict__
        calls = state.get("calls")
        if calls is None:
            calls = state["calls"] = {}
        earlier = calls.get(id(module))
        calls[id(module)] = (module, result)
        if earlier is not None and earlier[0] is module and earlier[1].requires_grad:
            earlier[1].register_hook(_ReusedModule(module))

    def reset(self) -> None:
        self._kept().clear()
        calls = self._local.__dict__.get("calls")
        if calls:
            calls.clear()

    def in_forward(self) -> bool:
        """Whether a forward of this thread has state here now (a module kept its rule or
        not since the last :meth:`reset`): the set is then in use by a call."""
        return bool(self._local.__dict__.get("kept"))

    def __repr__(self) -> str:
        return f"CaptumRules(eps={self.eps!r})"
