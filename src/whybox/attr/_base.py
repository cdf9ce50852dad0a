"""Captum-compatible base classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from whybox.core.call import completeness_delta, prepare_call
from whybox.core.inputs import prepare_baselines

__all__ = ["Attribution", "GradientAttribution", "PerturbationAttribution"]


class Attribution:
    """Captum's ``Attribution`` base: holds ``forward_func``."""

    def __init__(self, forward_func: Callable[..., Tensor]) -> None:
        self.forward_func = forward_func

    #: whether ``attribute`` can return a convergence delta (set by subclasses)
    _has_delta = False
    #: set by constructors that take ``multiply_by_inputs``
    _multiply_by_inputs = False

    def has_convergence_delta(self) -> bool:
        return self._has_delta

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

    def attribute(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement attribute")


class GradientAttribution(Attribution):
    """Base of gradient methods; provides Captum's ``compute_convergence_delta``."""

    def compute_convergence_delta(
        self,
        attributions: Tensor | tuple[Tensor, ...],
        start_point: None | int | float | Tensor | tuple = None,
        end_point: Tensor | tuple[Tensor, ...] = None,
        target: Any = None,
        additional_forward_args: Any = None,
    ) -> Tensor:
        """``sum(attributions) - (f(end_point) - f(start_point))`` per example, shape ``(N,)``."""
        owner = f"{type(self).__name__}.compute_convergence_delta"
        call = prepare_call(
            owner,
            self.forward_func,
            end_point,
            target=target,
            forward_args=additional_forward_args,
            require_float=False,
        )
        starts = prepare_baselines(start_point, call.inputs, owner=owner, name="start_point")
        leaves = (attributions,) if isinstance(attributions, Tensor) else tuple(attributions)
        return completeness_delta(call, leaves, starts.tensors)


class PerturbationAttribution(Attribution):
    """Base of perturbation methods."""
