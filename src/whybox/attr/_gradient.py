"""Captum-compatible gradient methods: thin translations onto the native methods."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import Tensor

from whybox import methods as native
from whybox.core.result import Explanation
from whybox.core.validation import fail

from ._adapter import MULTIPLY, Spec, run, with_delta
from ._base import Attribution, GradientAttribution, NoFuture

__all__ = [
    "Saliency",
    "InputXGradient",
    "IntegratedGradients",
    "NoiseTunnel",
    "GradientShap",
]


class Saliency(NoFuture, GradientAttribution):
    """Captum-compatible :class:`whybox.methods.Saliency`."""

    _spec = Spec(native.Saliency)

    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        abs: bool = True,
        additional_forward_args: Any = None,
    ) -> Any:
        return run(self, self._spec, locals())


class InputXGradient(NoFuture, GradientAttribution):
    """Captum-compatible :class:`whybox.methods.InputXGradient`."""

    _spec = Spec(native.InputXGradient)
    _multiply_by_inputs = True

    def attribute(
        self, inputs: Any, target: Any = None, additional_forward_args: Any = None
    ) -> Any:
        return run(self, self._spec, locals())


class _Multiplying(GradientAttribution):
    """The constructor of Captum's gradient classes taking ``multiply_by_inputs``."""

    def __init__(
        self, forward_func: Callable[..., Tensor], multiply_by_inputs: bool = True
    ) -> None:
        super().__init__(forward_func)
        self._multiply_by_inputs = multiply_by_inputs


class IntegratedGradients(NoFuture, _Multiplying):
    """Captum-compatible :class:`whybox.methods.IntegratedGradients`.

    ``internal_batch_size`` is the number of rows per forward; ``None`` lets whybox choose
    (results do not depend on it). ``method="riemann_trapezoid"`` integrates with Captum
    0.9's weights, which sum to ``(n_steps - 1) / n_steps`` (the native
    ``rule="riemann_trapezoid"`` is the textbook rule, exact on linear models).
    """

    _spec = Spec(native.IntegratedGradients, init=MULTIPLY, returns=with_delta)
    _has_delta = True

    def attribute(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
    ) -> Any:
        return run(self, self._spec, locals())


class GradientShap(NoFuture, _Multiplying):
    """Captum-compatible :class:`whybox.methods.GradientShap`.

    Random draws use the global numpy / torch generators in Captum's order, so seeded code
    reproduces Captum's numbers.
    """

    _spec = Spec(native.GradientShap, init=MULTIPLY, captum_random=True, returns=with_delta)
    _has_delta = True

    def attribute(
        self,
        inputs: Any,
        baselines: Any,
        n_samples: int = 5,
        stdevs: float | tuple[float, ...] = 0.0,
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
    ) -> Any:
        return run(self, self._spec, locals())


class _FacadeMethod(native.Method):
    """Presents a Captum-style attribution object as a native method (for NoiseTunnel)."""

    def __init__(self, facade: Attribution) -> None:
        super().__init__(facade.forward_func, multiply_by_inputs=facade.multiplies_by_inputs)
        self.facade = facade
        self.name = type(facade).__name__
        self.has_delta = facade.has_convergence_delta()
        self._parameters = inspect.signature(facade.attribute).parameters
        self.accepts_baselines = "baselines" in self._parameters

    def attribute(self, inputs: Any, *, target: Any = None, forward_args: Any = None, **kwargs):
        if "target" in self._parameters:
            kwargs["target"] = target
        if "additional_forward_args" in self._parameters:
            kwargs["additional_forward_args"] = forward_args
        output = self.facade.attribute(inputs, **kwargs)
        delta = None
        if self.has_delta and kwargs.get("return_convergence_delta"):
            output, delta = output
        return Explanation(attributions=output, inputs=inputs, delta=delta)


def _noise_tunnel(model: Any, *, method: Attribution) -> native.NoiseTunnel:
    """The native NoiseTunnel around a Captum-style object (which carries the model)."""
    return native.NoiseTunnel(_FacadeMethod(method))


class NoiseTunnel(NoFuture, Attribution):
    """Captum-compatible NoiseTunnel around any Captum-style attribution object."""

    _spec = Spec(
        _noise_tunnel,
        init={"method": "attribution_method"},
        captum_random=True,
        # the inner object takes Captum's arguments: only what NoiseTunnel itself reads is
        # translated, the rest reaches the inner ``attribute`` unchanged
        from_kwargs=("target", "additional_forward_args"),
        pass_kwargs=True,
        returns=with_delta,
    )

    def __init__(self, attribution_method: Attribution) -> None:
        if not callable(getattr(attribution_method, "attribute", None)) or not hasattr(
            attribution_method, "forward_func"
        ):
            fail(
                "NoiseTunnel",
                "attribution_method",
                "an attribution object such as Saliency(model) (not the model itself)",
                attribution_method,
                type_error=True,
            )
        super().__init__(attribution_method.forward_func)
        self.attribution_method = attribution_method
        self.is_delta_supported = attribution_method.has_convergence_delta()
        self.is_gradient_method = isinstance(attribution_method, GradientAttribution)

    def has_convergence_delta(self) -> bool:
        return self.is_delta_supported

    @property
    def multiplies_by_inputs(self) -> bool:
        return self.attribution_method.multiplies_by_inputs

    def attribute(
        self,
        inputs: Any,
        nt_type: str = "smoothgrad",
        nt_samples: int = 5,
        nt_samples_batch_size: int | None = None,
        stdevs: float | tuple[float, ...] = 1.0,
        draw_baseline_from_distrib: bool = False,
        **kwargs: Any,
    ) -> Any:
        return run(self, self._spec, locals())
