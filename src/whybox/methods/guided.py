"""Modified-backprop methods: Guided Backpropagation and Deconvolution.

Both take the gradient of the target with respect to the inputs, but change the backward of
every ``nn.ReLU`` module (matched by exact type, like DeepLift's rules; ReLUs called as
functions are not seen):

* Guided Backpropagation (Springenberg et al., "Striving for Simplicity", 2015):
  ``grad_in = relu(grad_out) * (x > 0)`` -- only positive gradients through active units;
* Deconvolution (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks",
  2014): ``grad_in = relu(grad_out)`` -- the forward activation pattern is ignored.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from whybox.core.forward import ChunkSize
from whybox.core.gradients import row_gradients
from whybox.core.hooks import module_rules
from whybox.core.registry import register
from whybox.core.result import Explanation

from .base import Method

__all__ = ["GuidedBackprop", "Deconvolution"]


class _GuidedRelu(torch.autograd.Function):
    """Value of ReLU; backward passes positive gradients through active units only."""

    @staticmethod
    def forward(ctx, x, out):
        # a bool mask (ReLU's output is positive exactly where its input is) instead of the
        # float input, and a view instead of a copy of the activation
        ctx.save_for_backward(out > 0)
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        (active,) = ctx.saved_tensors
        return grad.clamp_min(0) * active.to(grad.dtype), None


class _DeconvRelu(torch.autograd.Function):
    """Value of ReLU; backward is ReLU applied to the incoming gradient."""

    @staticmethod
    def forward(ctx, x, out):
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp_min(0), None


def _rule(function: type[torch.autograd.Function]) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    def rule(module: nn.Module, x: Tensor, out: Tensor) -> Tensor:
        # ``x`` is the input saved before the module ran (safe for ReLU(inplace=True)).
        return function.apply(x, out.detach())

    return rule


class _ModifiedReluGradient(Method):
    """Gradient of the target with the backward of every ``nn.ReLU`` replaced."""

    needs_module = True
    _function: ClassVar[type[torch.autograd.Function]]

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, multiply_by_inputs=False)

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        forward_args: Any = None,
        chunk_size: ChunkSize = "auto",
        show_progress: bool = False,
    ) -> Explanation:
        """Modified gradients of the target with respect to ``inputs``.

        Parameters
        ----------
        inputs : Tensor or tuple/dict of Tensor, each ``(N, ...)``
        target : which output to explain (see :mod:`whybox.core.targets`)
        forward_args : extra model arguments (tensors with batch dimension ``N`` are split
            with the batch)
        chunk_size : rows per forward/backward (``"auto"`` picks for throughput)

        Returns
        -------
        Explanation
            ``attributions`` shaped like ``inputs`` (``(0, ...)`` for an empty batch), in
            the inputs' dtype; no delta.
        """
        owner = self.owner
        scope = self._scope()
        call = scope.prepare(
            inputs,
            target=target,
            forward_args=forward_args,
            chunk_size=chunk_size,
            show_progress=show_progress,
        )
        with module_rules(self.model, {nn.ReLU: _rule(self._function)}) as matched:
            if not matched:
                warnings.warn(
                    f"{owner} found no nn.ReLU module in the model, so it returns the plain "
                    "gradient; ReLUs called as functions (torch.relu, F.relu) are not modified.",
                    UserWarning,
                    stacklevel=2,
                )
            grads, _ = row_gradients(call)
        return scope.result(self, call, grads, parameters={"chunk_size": call.chunk_rows})


@register("guided_backprop")
class GuidedBackprop(_ModifiedReluGradient):
    """Guided Backpropagation: ``grad_in = relu(grad_out) * (x > 0)`` at every ``nn.ReLU``."""

    _function = _GuidedRelu


@register("deconvolution")
class Deconvolution(_ModifiedReluGradient):
    """Deconvolution: ``grad_in = relu(grad_out)`` at every ``nn.ReLU``."""

    _function = _DeconvRelu
