"""Captum 0.9's DeepLift backward-hook functions, at ``whybox.attr._core.deep_lift``.

Captum's DeepLift calls one of these per nonlinearity from its backward hooks, with the
module's forward values of a ``[inputs; references]`` batch (``chunk(2)`` halves) and the
gradients of that batch. whybox's DeepLift does not use them (its rules are data in
:mod:`whybox.methods.deeplift_rules`); they are here for code that imports or calls them
from Captum's module path, with Captum's signatures and values:

* :func:`nonlinear` -- the Rescale multiplier ``grad_output * dy / dx`` where
  ``|dx| >= eps``, else ``grad_input`` (``dx``, ``dy``: input minus reference, repeated for
  both halves);
* :func:`softmax` -- the same, minus its mean over all elements;
* :func:`maxpool1d` / :func:`maxpool2d` / :func:`maxpool3d` / :func:`maxpool` -- the
  max-pool multiplier: the output differences carried by each window (split at
  ``max(y, y_ref)``) sent back to the argmax positions of ``module.input`` (which Captum's
  forward pre-hook sets), the two halves' spreads summed and divided by ``dx``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "nonlinear",
    "softmax",
    "maxpool1d",
    "maxpool2d",
    "maxpool3d",
    "maxpool",
    "SUPPORTED_NON_LINEAR",
]


def _both_halves(value: Tensor) -> Tensor:
    """``value`` (one half's rows) repeated for the input and the reference half."""
    return torch.cat([value, value])


def _differences(inputs: Tensor, outputs: Tensor) -> tuple[Tensor, Tensor]:
    """``(dx, dy)``, input rows minus reference rows of ``inputs`` and ``outputs``, each
    repeated for both halves (shapes of ``inputs`` and ``outputs``)."""
    x, x_ref = inputs.chunk(2)
    y, y_ref = outputs.chunk(2)
    return _both_halves(x - x_ref), _both_halves(y - y_ref)


def _rescaled(
    dx: Tensor, dy: Tensor, grad_input: Tensor, grad_output: Tensor, eps: float
) -> Tensor:
    """``grad_output * dy / dx``, or ``grad_input`` where ``|dx| < eps``."""
    return torch.where(dx.abs() < eps, grad_input, grad_output * dy / dx)


def nonlinear(
    module: nn.Module,
    inputs: Tensor,
    outputs: Tensor,
    grad_input: Tensor,
    grad_output: Tensor,
    eps: float = 1e-10,
) -> Tensor:
    """The Rescale multiplier of an elementwise nonlinearity.

    Parameters
    ----------
    module : nn.Module
        The nonlinearity (unused: the values say everything).
    inputs, outputs : Tensor, ``(2 k, ...)``
        Its input and output on ``k`` input rows then their ``k`` references.
    grad_input, grad_output : Tensor
        The ordinary gradients at its input and output (shapes of ``inputs`` / ``outputs``).
    eps : float
        Below this input difference the ordinary gradient is kept.

    Returns
    -------
    Tensor
        The new gradient at the input, shaped like ``inputs``.
    """
    dx, dy = _differences(inputs, outputs)
    return _rescaled(dx, dy, grad_input, grad_output, eps)


def softmax(
    module: nn.Module,
    inputs: Tensor,
    outputs: Tensor,
    grad_input: Tensor,
    grad_output: Tensor,
    eps: float = 1e-10,
) -> Tensor:
    """:func:`nonlinear`'s multiplier minus its mean over every element (Captum's
    normalisation for ``nn.Softmax``); arguments as :func:`nonlinear`."""
    dx, dy = _differences(inputs, outputs)
    rescaled = _rescaled(dx, dy, grad_input, grad_output, eps)
    return rescaled - rescaled.sum() / grad_input.numel()


def maxpool(
    module: nn.Module,
    pool_func: Callable[..., tuple[Tensor, Tensor]],
    unpool_func: Callable[..., Tensor],
    inputs: Tensor,
    outputs: Tensor,
    grad_input: Any,
    grad_output: Tensor,
    eps: float = 1e-10,
) -> Tensor:
    """The DeepLift multiplier of a max-pool module.

    Parameters
    ----------
    module : nn.Module
        The max-pool module; its ``input`` attribute (the ``(2 k, ...)`` batch it pooled,
        set by Captum's forward pre-hook) gives the argmax positions, its ``kernel_size``,
        ``stride``, ``padding``, ``dilation`` and ``ceil_mode`` the pooling.
    pool_func, unpool_func : callable
        ``F.max_pool{1,2,3}d`` and ``F.max_unpool{1,2,3}d``.
    inputs, outputs : Tensor, ``(2 k, ...)``
        The module's input and output on ``k`` input rows then their references.
    grad_input : Tensor
        The ordinary gradient at the input (shaped like ``inputs``: an ``AssertionError``
        otherwise, as Captum's, e.g. when attributing to a max pool's output); its first
        element along dim 0 is kept where ``|dx| < eps``, as Captum does.
    grad_output : Tensor
        The gradient at the output.
    eps : float

    Returns
    -------
    Tensor
        The new gradient at the input, shaped like ``inputs``.
    """
    pooled_input = module.input
    with torch.no_grad():
        x, x_ref = inputs.chunk(2)
        y, y_ref = outputs.chunk(2)
        dx = _both_halves(x - x_ref)
        # the window's difference is carried in two parts, split at the larger maximum:
        # by the input rows' argmax and by the references'
        top = torch.max(y, y_ref)
        carried = torch.cat([top - y_ref, y - top])
        _, indices = pool_func(
            pooled_input,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.ceil_mode,
            True,
        )
        spread = unpool_func(
            grad_output * carried,
            indices,
            module.kernel_size,
            module.stride,
            module.padding,
            list(pooled_input.shape),
        )
        from_inputs, from_references = spread.chunk(2)
    summed = _both_halves(from_inputs + from_references)
    if grad_input.shape != inputs.shape:
        raise AssertionError(
            "A problem occurred during the max-pool module's backward pass: the gradient "
            "with respect to its input covers only part of the input. This happens, e.g., "
            "when attributing to the outputs of a MaxPool; attribute to the inputs of the "
            "following layer instead."
        )
    return torch.where(dx.abs() < eps, grad_input[0], summed / dx)


def _pool(pool_func: Callable[..., Any], unpool_func: Callable[..., Any]) -> Callable[..., Tensor]:
    def pool(
        module: nn.Module,
        inputs: Tensor,
        outputs: Tensor,
        grad_input: Any,
        grad_output: Tensor,
        eps: float = 1e-10,
    ) -> Tensor:
        return maxpool(
            module, pool_func, unpool_func, inputs, outputs, grad_input, grad_output, eps=eps
        )

    return pool


maxpool1d = _pool(F.max_pool1d, F.max_unpool1d)
maxpool1d.__name__ = maxpool1d.__qualname__ = "maxpool1d"
maxpool1d.__doc__ = ":func:`maxpool` for ``nn.MaxPool1d``; arguments as :func:`nonlinear`."
maxpool2d = _pool(F.max_pool2d, F.max_unpool2d)
maxpool2d.__name__ = maxpool2d.__qualname__ = "maxpool2d"
maxpool2d.__doc__ = ":func:`maxpool` for ``nn.MaxPool2d``; arguments as :func:`nonlinear`."
maxpool3d = _pool(F.max_pool3d, F.max_unpool3d)
maxpool3d.__name__ = maxpool3d.__qualname__ = "maxpool3d"
maxpool3d.__doc__ = ":func:`maxpool` for ``nn.MaxPool3d``; arguments as :func:`nonlinear`."

#: module type -> its function, Captum 0.9's table
SUPPORTED_NON_LINEAR: dict[type[nn.Module], Callable[..., Tensor]] = {
    **{
        kind: nonlinear
        for kind in (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus)
    },
    nn.MaxPool1d: maxpool1d,
    nn.MaxPool2d: maxpool2d,
    nn.MaxPool3d: maxpool3d,
    nn.Softmax: softmax,
}
