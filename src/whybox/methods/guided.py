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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from whybox.core.forward import ChunkSize
from whybox.core.gradients import row_gradients
from whybox.core.hooks import module_rules
from whybox.core.registry import register
from whybox.core.result import Explanation

from .base import Method

__all__ = ["GuidedBackprop", "Deconvolution", "Switch", "relu_rule"]


class Switch:
    """Whether the modified backward rules are on (a backward with them off is the plain
    gradient): Guided Grad-CAM takes both from one forward. On unless switched off."""

    def __init__(self, on: bool = True) -> None:
        self.on = on

    @contextmanager
    def turned_on(self) -> Iterator[None]:
        """The rules are on inside the block, off after it."""
        self.on = True
        try:
            yield
        finally:
            self.on = False


_ALWAYS = Switch()


class _GuidedRelu(torch.autograd.Function):
    """Value of ReLU; backward passes positive gradients through active units only (the
    plain ReLU gradient while ``switch`` is off)."""

    @staticmethod
    def forward(ctx, x, out, switch):
        # a bool mask (ReLU's output is positive exactly where its input is) instead of the
        # float input, and a view instead of a copy of the activation
        ctx.save_for_backward(out > 0)
        ctx.switch = switch
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        (active,) = ctx.saved_tensors
        passed = grad.clamp_min(0) if ctx.switch.on else grad
        return passed * active.to(grad.dtype), None, None


class _DeconvRelu(torch.autograd.Function):
    """Value of ReLU; backward is ReLU applied to the incoming gradient."""

    @staticmethod
    def forward(ctx, x, out, switch):
        ctx.save_for_backward(out > 0)
        ctx.switch = switch
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        if ctx.switch.on:
            return grad.clamp_min(0), None, None
        (active,) = ctx.saved_tensors
        return grad * active.to(grad.dtype), None, None


def _guided_node_hook(switch: Switch) -> Callable:
    """``ReluBackward0`` hook: ``relu(grad_out) * (out > 0)``, from ReLU's own
    ``grad_out * (out > 0)``."""

    def hook(grad_inputs: tuple[Tensor | None, ...], grad_outputs: tuple[Tensor | None, ...]):
        passed = grad_inputs[0]
        if not switch.on or passed is None:
            return None
        return (passed.clamp_min(0),)

    return hook


def _deconv_node_hook(switch: Switch) -> Callable:
    """``ReluBackward0`` hook: ``relu(grad_out)``, whatever the activation pattern."""

    def hook(grad_inputs: tuple[Tensor | None, ...], grad_outputs: tuple[Tensor | None, ...]):
        incoming = grad_outputs[0]
        if not switch.on or grad_inputs[0] is None or incoming is None:
            return None
        return (incoming.clamp_min(0),)

    return hook


#: the autograd node ``nn.ReLU``'s output comes from
_RELU_NODE = "ReluBackward0"


def relu_rule(
    kind: str, switch: Switch = _ALWAYS
) -> Callable[[nn.Module, Tensor, Tensor], Tensor | None]:
    """The :func:`~whybox.core.hooks.module_rules` rule of an ``nn.ReLU`` for ``kind``
    (``"guided"`` or ``"deconvolution"``), acting while ``switch`` is on.

    The ReLU's output keeps its own autograd node, whose gradient a hook on that node
    rewrites (no extra operation in the forward, one on the gradient in the backward).
    An output that does not come from ReLU's node (another hook rewrote it) gets the same
    backward from an autograd function instead.

    Parameters
    ----------
    kind : str
        ``"guided"``: ``relu(grad_out) * (out > 0)``; ``"deconvolution"``:
        ``relu(grad_out)``.
    switch : Switch
        Off: the ReLU's plain gradient (the rule is registered but passes it through).

    Returns
    -------
    callable
        ``rule(module, x, out)``: ``None`` (the output is kept, its node hooked) or the
        output to use instead, shaped like ``out``.
    """
    node_hook = (_guided_node_hook if kind == "guided" else _deconv_node_hook)(switch)
    function = _GuidedRelu if kind == "guided" else _DeconvRelu

    def rule(module: nn.Module, x: Tensor, out: Tensor) -> Tensor | None:
        node = out.grad_fn
        if node is not None and node.name() == _RELU_NODE:
            node.register_hook(node_hook)
            return None
        if not x.requires_grad:
            return None  # no gradient flows to the input: nothing to rewrite
        # ``x`` is the input the module ran on (its original for ReLU(inplace=True))
        return function.apply(x, out.detach(), switch)

    return rule


class _ModifiedReluGradient(Method):
    """Gradient of the target with the backward of every ``nn.ReLU`` replaced."""

    needs_module = True
    _kind: ClassVar[str]

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
        with module_rules(self.model, {nn.ReLU: relu_rule(self._kind)}) as matched:
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

    _kind = "guided"


@register("deconvolution")
class Deconvolution(_ModifiedReluGradient):
    """Deconvolution: ``grad_in = relu(grad_out)`` at every ``nn.ReLU``."""

    _kind = "deconvolution"
