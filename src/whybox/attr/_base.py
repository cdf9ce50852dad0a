"""Captum-compatible base classes."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

from torch import Tensor

from whybox.attr._assertion_errors import raised_as_assertions
from whybox.core.call import completeness_delta, prepare_call
from whybox.core.gradients import row_gradients
from whybox.core.inputs import prepare_baselines

__all__ = [
    "Attribution",
    "GradientAttribution",
    "PerturbationAttribution",
    "NoFuture",
    "compute_gradients",
]


def compute_gradients(
    forward_fn: Callable[..., Any],
    inputs: Tensor | tuple[Tensor, ...],
    target_ind: Any = None,
    additional_forward_args: Any = None,
) -> tuple[Tensor, ...]:
    """Gradients of the selected output with respect to ``inputs`` (Captum's
    ``gradient_func``): one tensor per input, shaped like it.

    Parameters
    ----------
    forward_fn
        The model or any callable.
    inputs
        A tensor or a tuple of tensors, each ``(N, ...)``.
    target_ind
        Which output to differentiate (any Captum target form).
    additional_forward_args
        Extra model arguments.

    Returns
    -------
    tuple of Tensor
        One gradient per input.
    """
    call = prepare_call(
        "compute_gradients",
        forward_fn,
        inputs,
        target=target_ind,
        forward_args=additional_forward_args,
        chunk_size=max(1, (inputs if isinstance(inputs, Tensor) else inputs[0]).shape[0]),
        require_float=False,
    )
    grads, _ = row_gradients(call)
    return grads


class Attribution:
    """Captum's ``Attribution`` base: holds ``forward_func``."""

    def __init__(self, forward_func: Callable[..., Tensor]) -> None:
        self.forward_func = forward_func

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give the ``attribute`` a subclass defines a ``__wrapped__``, as Captum's have.

        Captum decorates every ``attribute`` with its usage logger (``functools.wraps``),
        and Captum code reads the undecorated signature through ``attribute.__wrapped__``
        (``inspect.getfullargspec(m.attribute.__wrapped__)``). whybox's ``attribute`` stays
        undecorated (no extra frame: warnings keep pointing at the caller's line); its
        ``__wrapped__`` is a copy of the same function, so ``inspect.signature`` and the
        argument list are the method's own.
        """
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("attribute")
        if inspect.isfunction(method) and "__wrapped__" not in method.__dict__:
            same = types.FunctionType(
                method.__code__,
                method.__globals__,
                method.__name__,
                method.__defaults__,
                method.__closure__,
            )
            same.__kwdefaults__ = method.__kwdefaults__
            functools.update_wrapper(same, method)
            del same.__wrapped__  # the copy is the innermost function
            method.__wrapped__ = same

    #: whether ``attribute`` can return a convergence delta (set by subclasses)
    _has_delta = False
    #: set by constructors that take ``multiply_by_inputs``
    _multiply_by_inputs = False

    def has_convergence_delta(self) -> bool:
        """Whether ``attribute`` can return a convergence delta (Captum's method)."""
        return self._has_delta

    @property
    def multiplies_by_inputs(self) -> bool:
        """Whether the attributions are multiplied by ``inputs - baselines`` (global
        attribution), as Captum reports it."""
        return self._multiply_by_inputs

    @classmethod
    def get_name(cls) -> str:
        """The class name with a space before every capital but the first
        (``IntegratedGradients`` -> ``"Integrated Gradients"``), as in Captum; progress bars
        are labelled ``f"{get_name()} attribution"``."""
        return "".join(
            char if char.islower() or index == 0 else " " + char
            for index, char in enumerate(cls.__name__)
        )

    def attribute(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement attribute")


class NoFuture:
    """Captum's ``attribute_future`` of the classes that do not implement it."""

    def attribute_future(self, *args: Any, **kwargs: Any) -> Any:
        """Not implemented for this class (as in Captum).

        Raises
        ------
        NotImplementedError
            Always.
        """
        raise NotImplementedError(f"attribute_future is not implemented for {type(self).__name__}")


class GradientAttribution(Attribution):
    """Base of gradient methods; provides Captum's ``compute_convergence_delta`` and
    ``gradient_func``."""

    #: Captum's gradient function attribute: ``gradient_func(forward_fn, inputs,
    #: target_ind=None, additional_forward_args=None)``
    gradient_func = staticmethod(compute_gradients)

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
        with raised_as_assertions():  # Captum asserts these arguments
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
    """Base of perturbation methods (Captum reports them as multiplying by inputs: an
    ablation's drop already is a global attribution)."""

    _multiply_by_inputs = True
