"""Captum-compatible DeepLift and DeepLiftShap.

Thin translations onto :class:`whybox.methods.DeepLift` / :class:`whybox.methods.
DeepLiftShap` run with :class:`~whybox.attr._deeplift_rules.CaptumRules`, so the numbers are
Captum 0.9's, including where Captum's hooks deviate from the textbook Rescale rule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from whybox.core.inputs import flatten
from whybox.core.validation import fail
from whybox.methods.deeplift import DeepLift as _NativeDeepLift
from whybox.methods.deeplift import DeepLiftShap as _NativeDeepLiftShap

from ._base import GradientAttribution, captum_return
from ._deeplift_rules import CaptumRules

__all__ = ["DeepLift", "DeepLiftShap", "baselines_distribution"]


class DeepLift(GradientAttribution):
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

    _has_delta = True

    def __init__(
        self, model: nn.Module, multiply_by_inputs: bool = True, eps: float = 1e-10
    ) -> None:
        GradientAttribution.__init__(self, model)
        self.model = model
        self.eps = eps
        self._multiply_by_inputs = multiply_by_inputs

    def _native(self, cls: type = _NativeDeepLift, **scope: Any) -> Any:
        """The native method with Captum's rules (``scope``: ``layer`` options)."""
        return cls(
            self.model,
            multiply_by_inputs=self._multiply_by_inputs,
            rules=CaptumRules(self.eps),
            **scope,
        )

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
        result = self._native().attribute(
            inputs,
            baselines=baselines,
            target=target,
            forward_args=additional_forward_args,
            return_delta=return_convergence_delta,
            custom_attribution_func=custom_attribution_func,
        )
        return captum_return(result, return_convergence_delta)


class DeepLiftShap(DeepLift):
    """Captum-compatible DeepLiftShap: DeepLift against every baseline, averaged.

    ``baselines`` is a distribution: one tensor per input of shape ``(n_baselines, ...)``
    with ``n_baselines > 1`` (as Captum requires), or a callable returning it.
    """

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
        result = self._native(_NativeDeepLiftShap).attribute(
            inputs,
            baselines=baselines_distribution(baselines, inputs),
            target=target,
            forward_args=additional_forward_args,
            return_delta=return_convergence_delta,
            custom_attribution_func=custom_attribution_func,
        )
        return captum_return(result, return_convergence_delta)


def baselines_distribution(baselines: Any, inputs: Any) -> Any:
    """Captum's DeepLiftShap baselines: a factory is called (with the inputs if it takes a
    parameter), and the result must hold more than one baseline example per input."""
    if callable(baselines) and not isinstance(baselines, Tensor):
        try:
            n_params = len(inspect.signature(baselines).parameters)
        except (TypeError, ValueError):
            n_params = 1
        baselines = baselines(inputs) if n_params else baselines()
    try:
        leaves, _ = flatten(baselines, owner="DeepLiftShap", name="baselines")
    except (TypeError, ValueError):
        leaves = ()
    if not leaves or not isinstance(leaves[0], torch.Tensor) or leaves[0].shape[0] < 2:
        fail(
            "DeepLiftShap",
            "baselines",
            "a tensor (or tuple of tensors) holding more than one baseline example; use "
            "DeepLift for a single baseline or scalars",
            baselines,
        )
    return baselines
