"""Captum-compatible LRP and LayerLRP: specs for :class:`whybox.methods.LRP`.

Captum reports the convergence delta as ``f(x) - sum(relevance)``; the native method as
``sum(relevance) - f(x)`` (like every other whybox delta), so the facade flips its sign.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from whybox import methods as native
from whybox.core.result import Explanation
from whybox.methods.lrp import (
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    IdentityRule,
    PropagationRule,
    _leaves,
    _rule_attribute,
    as_rule,
    conservation_delta,
)

from ._adapter import LAYER, Call, Spec, check, run
from ._base import GradientAttribution, NoFuture
from ._helpers import Addition_Module
from ._layer import LayerAttribution

__all__ = [
    "LRP",
    "LayerLRP",
    "PropagationRule",
    "EpsilonRule",
    "GammaRule",
    "Alpha1_Beta0_Rule",
    "IdentityRule",
]


def _captum_sign(delta: Any) -> Any:
    return [-d for d in delta] if isinstance(delta, list) else -delta


def _whybox_rule(value: Any, module: nn.Module, owner: str) -> PropagationRule:
    """A ``module.rule``: a whybox rule, or a Captum rule object read by its options (so a
    migrated model's ``module.rule = captum...EpsilonRule()`` keeps working)."""
    name = type(value).__name__
    if isinstance(value, PropagationRule) or name not in _CAPTUM_RULES:
        return as_rule(value, module, owner)  # a whybox rule, or the uniform error
    if name == "EpsilonRule":
        return EpsilonRule(getattr(value, "STABILITY_FACTOR", 1e-9))
    if name == "GammaRule":
        return GammaRule(value.gamma, value.set_bias_to_zero)
    if name == "Alpha1_Beta0_Rule":
        return Alpha1_Beta0_Rule(value.set_bias_to_zero)
    return IdentityRule()


_CAPTUM_RULES = {"EpsilonRule", "GammaRule", "Alpha1_Beta0_Rule", "IdentityRule"}

#: Captum 0.9's default rules, by exact module type (the native defaults agree on these)
SUPPORTED_LAYERS_WITH_RULES: dict[type, type] = {
    nn.MaxPool1d: EpsilonRule,
    nn.MaxPool2d: EpsilonRule,
    nn.MaxPool3d: EpsilonRule,
    nn.Conv2d: EpsilonRule,
    nn.AvgPool2d: EpsilonRule,
    nn.AdaptiveAvgPool2d: EpsilonRule,
    nn.Linear: EpsilonRule,
    nn.BatchNorm2d: EpsilonRule,
    Addition_Module: EpsilonRule,
}
#: the activations Captum 0.9 passes relevance through without a rule
SUPPORTED_NON_LINEAR_LAYERS: list[type] = [nn.ReLU, nn.Dropout, nn.Tanh]
#: modules that only reshape, which Captum refuses (no rule fits it: its IdentityRule
#: fails on a change of shape) and whose relevance can only pass unchanged: the facade
#: passes it, giving what Captum gives for the same model with ``torch.flatten``
_RESHAPES = (nn.Flatten, nn.Unflatten, nn.Identity)


def _check_captum_defaults(call: Call) -> None:
    """Raise ``TypeError`` for a leaf layer without a ``rule`` whose type Captum 0.9 has no
    default for, as Captum does before running the model (the native
    :class:`whybox.methods.LRP` has defaults for more layers). Reshaping modules
    (``Flatten``, ``Unflatten``, ``Identity``) pass: relevance can only pass them unchanged."""
    facade = call.facade
    model = facade.model
    if not isinstance(model, nn.Module):
        return  # the native check words the error
    # the model's leaves (Captum's layer list: a model without children has none)
    for name, layer in _leaves(model):
        if not name:
            continue
        kind = type(layer)
        if _rule_attribute(layer) is not None or kind in SUPPORTED_LAYERS_WITH_RULES:
            continue
        if kind not in SUPPORTED_NON_LINEAR_LAYERS and kind not in _RESHAPES:
            raise TypeError(
                f"{type(facade).__name__}: the layer {layer!r} (type {kind.__qualname__}) has "
                "no rule and Captum 0.9 has no default rule for its type. Set one "
                "(layer.rule = EpsilonRule(), ...), or use whybox.methods.LRP, whose "
                "defaults also cover elementwise activations, Conv1d/3d, other pools, "
                "BatchNorm1d/3d and Flatten."
            )


def _attached_rules(facade: Any) -> dict[nn.Module, PropagationRule] | None:
    """The rules set as ``module.rule`` attributes right now, as whybox rules (data for the
    native method's ``rules``; the model is not modified)."""
    model = facade.model
    if not isinstance(model, nn.Module):
        return None  # the native check words the error
    owner = type(facade).__name__
    rules: dict[nn.Module, PropagationRule] = {}
    for module in model.modules():
        value = _rule_attribute(module)
        if value is not None:
            rules[module] = _whybox_rule(value, module, owner)
        elif type(module) is Addition_Module:  # in Captum's table, not a native type
            rules[module] = EpsilonRule()
    return rules


def _with_captum_delta(result: Explanation, call: Call) -> Any:
    """Captum's LRP returns: the delta as ``f(x) - sum(relevance)``."""
    if call.wants_delta:
        return result.attributions, _captum_sign(result.delta)
    return result.attributions


class LRP(NoFuture, GradientAttribution):
    """Captum-compatible Layer-wise Relevance Propagation (native: :class:`whybox.methods.
    lrp.LRP`).

    Rules per layer come from ``module.rule`` (whybox or Captum rule objects) or Captum's
    defaults (:data:`SUPPORTED_LAYERS_WITH_RULES`, :data:`SUPPORTED_NON_LINEAR_LAYERS`);
    like Captum, a leaf layer of another type without a rule is a ``TypeError`` (the
    native :class:`whybox.methods.LRP` has defaults for ``Conv1d/3d``, other pools,
    ``BatchNorm1d/3d``, elementwise activations and ``Flatten``). The model is never
    modified (no rule attributes are added or removed).
    """

    _spec = Spec(
        native.LRP,
        # Captum's flow: relevance, not normalised relevance, crosses functions in forward
        init={"rules": _attached_rules, "relevance_flow": lambda facade: "captum"},
        before=_check_captum_defaults,
        returns=_with_captum_delta,
    )
    _has_delta = True
    _multiply_by_inputs = True

    def __init__(self, model: nn.Module) -> None:
        GradientAttribution.__init__(self, model)
        self.model = model
        # Captum's attributes: its layer list and hook handles are per call here (the
        # model is never modified), so they stay empty; verbose is set by each call
        self.layers: list[nn.Module] = []
        self.forward_handles: list[Any] = []
        self.backward_handles: list[Any] = []
        self.verbose = False
        # Captum checks the model and its explicit rules when the object is built (the
        # layer is checked when the call runs)
        check(self, LRP._spec)

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        verbose: bool = False,
    ) -> Any:
        """Relevance shaped like ``inputs``; with ``return_convergence_delta=True`` also
        ``f(x) - sum(relevance)`` (Captum's sign), shape ``(N,)``.

        Raises
        ------
        TypeError
            A leaf layer without a rule whose type Captum 0.9 has no default for.
        """
        return run(self, self._spec, locals())

    def compute_convergence_delta(  # type: ignore[override]
        self, attributions: Tensor | tuple[Tensor, ...], output: Tensor
    ) -> Tensor:
        """``output - sum(attributions)`` per example, shape ``(N,)``."""
        return _captum_sign(conservation_delta(attributions, output))


class LayerLRP(LRP, LayerAttribution):
    """Captum-compatible LayerLRP: the relevance at ``layer``'s output (or input)."""

    _spec = replace(LRP._spec, **LAYER)

    def __init__(self, model: nn.Module, layer: Any) -> None:
        LayerAttribution.__init__(self, model, layer)
        LRP.__init__(self, model)
        # Captum's attribute, set by each call there
        self.attribute_to_layer_input = False

    def attribute(  # type: ignore[override]
        self,
        inputs: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        verbose: bool = False,
    ) -> Any:
        """Relevance shaped like the layer (a list for a list of layers); with
        ``return_convergence_delta=True`` also ``f(x) - sum(relevance)`` per example (a list
        per layer).

        Raises
        ------
        TypeError
            A leaf layer without a rule whose type Captum 0.9 has no default for.
        """
        return run(self, self._spec, locals())
