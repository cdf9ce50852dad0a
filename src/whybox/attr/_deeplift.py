"""Captum-compatible DeepLift and DeepLiftShap.

Specs for :class:`whybox.methods.DeepLift` / :class:`whybox.methods.DeepLiftShap` run with
:class:`~whybox.attr._deeplift_rules.CaptumRules`, so the numbers are Captum 0.9's,
including where Captum's hooks deviate from the textbook Rescale rule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from whybox import methods as native
from whybox.core.inputs import flatten
from whybox.core.validation import fail

from ._adapter import LAYER, MULTIPLY, Call, Spec, run, with_delta
from ._base import GradientAttribution, NoFuture
from ._deeplift_rules import CaptumRules

__all__ = ["DeepLift", "DeepLiftShap", "baselines_distribution", "deeplift_spec"]


def baselines_distribution(baselines: Any, call: Call) -> Any:
    """Captum's DeepLiftShap baselines: a factory is called (with the inputs if it takes a
    parameter), and the result must hold more than one baseline example per input."""
    if callable(baselines) and not isinstance(baselines, Tensor):
        try:
            n_params = len(inspect.signature(baselines).parameters)
        except (TypeError, ValueError):
            n_params = 1
        baselines = baselines(call.inputs) if n_params else baselines()
    try:
        leaves, _ = flatten(baselines, owner=call.owner, name="baselines")
    except (TypeError, ValueError):
        leaves = ()
    if not leaves or not isinstance(leaves[0], torch.Tensor) or leaves[0].shape[0] < 2:
        fail(
            call.owner,
            "baselines",
            "a tensor (or tuple of tensors) holding more than one baseline example; use "
            "DeepLift for a single baseline or scalars",
            baselines,
        )
    return baselines


#: one :class:`CaptumRules` per ``(type(eps), eps)``, shared by the facade's calls (a set
#: costs microseconds to build, which tiny jobs paid on every call); its per-forward state
#: is per thread and cleared at the end of every call
_SHARED_RULES: dict[tuple[type, Any], CaptumRules] = {}
_MAX_SHARED = 16


def _new_captum_rules(eps: Any) -> CaptumRules:
    # the neuron classes take no ``eps``: Captum uses DeepLift's default there
    return CaptumRules() if eps is None else CaptumRules(eps)


def _captum_rules(facade: Any) -> CaptumRules:
    """The rule set of one facade call: the shared one for the facade's ``eps`` (a Python
    number or ``None``), or a new one for any other ``eps`` or when the shared one is
    inside a forward of this thread (a call made from within a model's forward: it would
    clear that forward's state)."""
    eps = getattr(facade, "eps", None)
    if type(eps) not in (float, int, type(None)):  # kept out of the table (a tensor, ...)
        return _new_captum_rules(eps)
    key = (type(eps), eps)
    rules = _SHARED_RULES.get(key)
    if rules is None:
        rules = _new_captum_rules(eps)
        if len(_SHARED_RULES) < _MAX_SHARED:
            _SHARED_RULES[key] = rules
        return rules
    return _new_captum_rules(eps) if rules.in_forward() else rules


def deeplift_spec(*, shap: bool = False, layer: bool = False, neuron: bool = False) -> Spec:
    """The spec of one of the six Captum DeepLift classes: the native DeepLift (or
    DeepLiftShap, with Captum's baseline distributions) with Captum's rules (shared between
    calls, see :func:`_captum_rules`), in input, layer or neuron scope."""
    return Spec(
        native.DeepLiftShap if shap else native.DeepLift,
        # Captum takes the delta's f(x) - f(b) from forwards of the inputs and baselines
        init={**MULTIPLY, "rules": _captum_rules, "delta_forwards": lambda facade: True},
        renames={"baselines": ("baselines", baselines_distribution)} if shap else {},
        neuron=neuron,
        returns=with_delta,
        **(LAYER if layer else {}),
    )


class DeepLift(NoFuture, GradientAttribution):
    """Captum-compatible DeepLift (Rescale rule, with Captum 0.9's quirks).

    Parameters
    ----------
    model : nn.Module
    multiply_by_inputs : bool
        Multiply the multipliers by ``inputs - baselines`` (ignored with a
        ``custom_attribution_func``).
    eps : float
        Input differences below ``eps`` at a nonlinearity use its local gradient.
    """

    _spec = deeplift_spec()
    _has_delta = True

    def __init__(
        self, model: nn.Module, multiply_by_inputs: bool = True, eps: float = 1e-10
    ) -> None:
        GradientAttribution.__init__(self, model)
        self.model = model
        self.eps = eps
        self._multiply_by_inputs = multiply_by_inputs
        # Captum's hook-handle lists; whybox's hooks live only inside a call, so empty
        self.forward_handles: list[Any] = []
        self.backward_handles: list[Any] = []

    def satisfies_attribute_criteria(self, module: nn.Module) -> bool:
        """Captum's check that a module kept its ``input`` / ``output`` attributes (set by
        its hooks during a call); whybox stores no attributes on modules, so this is
        ``False`` outside Captum's own hooks, as in Captum after a call."""
        return hasattr(module, "input") and hasattr(module, "output")

    def attribute(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        custom_attribution_func: Callable[..., Any] | None = None,
    ) -> Any:
        """DeepLift attributions, shaped like ``inputs``; with
        ``return_convergence_delta=True`` also the delta, shape ``(N,)``."""
        return run(self, self._spec, locals())


class DeepLiftShap(DeepLift):
    """Captum-compatible DeepLiftShap: DeepLift against every baseline, averaged.

    ``baselines`` is a distribution: one tensor per input of shape ``(n_baselines, ...)``
    with ``n_baselines > 1`` (as Captum requires), or a callable returning it.
    """

    _spec = deeplift_spec(shap=True)

    def __init__(self, model: nn.Module, multiply_by_inputs: bool = True) -> None:
        DeepLift.__init__(self, model, multiply_by_inputs=multiply_by_inputs)

    def attribute(  # type: ignore[override]
        self,
        inputs: Any,
        baselines: Any,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        custom_attribution_func: Callable[..., Any] | None = None,
    ) -> Any:
        """Attributions shaped like ``inputs`` (mean over baselines); with
        ``return_convergence_delta=True`` also the delta of every (example, baseline) pair,
        shape ``(N * n_baselines,)``, example-major."""
        return run(self, self._spec, locals())
