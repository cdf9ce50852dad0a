"""A private copy of a causal LM tuned for input gradients: fused activations, oneDNN matmuls.

Gradient attribution of ``T`` target tokens runs ``T`` backward passes through the same
graph, each taking gradients with respect to one layer's output only. Two things in a
Hugging Face model make those passes slower than they need be:

* an activation written as a chain of elementwise tensor operations (GPT-2's
  ``gelu_new``: ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``) leaves about ten
  elementwise nodes per layer in the graph, each a full pass over the ``(rows, L, 4 D)``
  MLP activations in every backward pass. :func:`torch.nn.functional.gelu` with
  ``approximate="tanh"`` computes the same function in one kernel each way
  (:class:`TanhGELU`);
* the linear layers' matmuls (``nn.Linear``, transformers' ``Conv1D``) run through the
  BLAS library (MKL), which on some CPUs (AMD's, with AVX-512) takes a narrower code path
  than oneDNN's kernels: about half their speed for float32 on the benchmark's machine,
  whatever the matrix size. On CPU float32 weights, :class:`OneDNNLinear` runs the
  forward and the input-gradient matmul with oneDNN; its weights are detached (the twin
  never yields weight gradients, which attribution never needs), so a backward pass
  stores and computes nothing for them.

:func:`fused_twin` swaps such modules in a private structural copy of the model
(:func:`whybox.attention.capture._private_copy`: modules and configs copied, weights
shared), so the caller's model is never changed; modules carrying hooks are kept. The
numbers agree to float rounding (about 1e-7 relative); the caller checks that on its first
forward and uses the model itself when they do not.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["fused_twin", "TanhGELU", "OneDNNLinear", "onednn_linear_available"]

#: transformers' activation modules that compute ``gelu(x, approximate="tanh")`` in Python
_TANH_GELU = frozenset({"NewGELUActivation", "FastGELUActivation", "AccurateGELUActivation"})


class TanhGELU(nn.Module):
    """``gelu(x, approximate="tanh")`` as one kernel: ``(*) -> (*)``."""

    def forward(self, input: Tensor) -> Tensor:
        return torch.nn.functional.gelu(input, approximate="tanh")


def _linear_kernel(input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """oneDNN's ``input @ weight.T + bias``: ``(N, in), (out, in), (out,) -> (N, out)``."""
    return torch.ops.mkldnn._linear_pointwise(input, weight, bias, "none", [], "")


#: whether oneDNN's linear kernel works here (``None``: not probed yet)
_AVAILABLE: bool | None = None


def onednn_linear_available() -> bool:
    """Whether this torch build runs oneDNN's float32 linear kernel.

    Returns
    -------
    bool
        Checked once per process on a tiny product, as the operator is private to torch
        (``torch.ops.mkldnn._linear_pointwise``).
    """
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            ok = torch.backends.mkldnn.is_available()
            if ok:
                x, w = torch.ones(2, 3), torch.full((4, 3), 0.5)
                ok = bool(torch.equal(_linear_kernel(x, w, None), torch.full((2, 4), 1.5)))
        except (AttributeError, RuntimeError, NotImplementedError):
            ok = False
        _AVAILABLE = ok
    return _AVAILABLE


class _OneDNNLinearFunction(torch.autograd.Function):
    """``y = x W^T + b`` differentiated with respect to ``x`` only."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(weight)
        lead = input.shape[:-1]
        out = _linear_kernel(input.reshape(-1, input.shape[-1]).contiguous(), weight, bias)
        return out.view(*lead, weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (weight,) = ctx.saved_tensors
        lead = grad.shape[:-1]
        # dL/dx = g W, i.e. the linear kernel with weight W^T (a view: no copy kept)
        flat = grad.reshape(-1, grad.shape[-1]).contiguous()
        return _linear_kernel(flat, weight.t(), None).view(*lead, weight.shape[1]), None, None


class OneDNNLinear(nn.Module):
    """A linear layer ``(*, in) -> (*, out)`` on oneDNN kernels, differentiable in its input
    only (the weights are detached).

    Parameters
    ----------
    weight : Tensor, shape ``(out, in)``
        Shared with the module it replaces (a transposed view for ``Conv1D``).
    bias : Tensor, shape ``(out,)``, optional
    """

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        # plain attributes, not parameters: the twin shares (and never trains) the weights
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()

    def forward(self, input: Tensor) -> Tensor:
        if input.device.type != "cpu" or input.dtype != torch.float32:
            return torch.nn.functional.linear(input, self.weight, self.bias)
        return _OneDNNLinearFunction.apply(input, self.weight, self.bias)


def _from_transformers(module: nn.Module, names: frozenset[str]) -> bool:
    kind = type(module)
    return kind.__name__ in names and kind.__module__.startswith("transformers.")


def _has_hooks(module: nn.Module) -> bool:
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or getattr(module, "_backward_pre_hooks", None)
    )


def _cpu_float(*tensors: Tensor | None) -> bool:
    return all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32) for t in tensors)


def _replacement(module: nn.Module, *, linears: bool) -> nn.Module | None:
    """The twin's module for ``module`` (``None``: keep it)."""
    if _has_hooks(module):
        return None  # a hook (the attributed layer's, the user's) must still fire
    if _from_transformers(module, _TANH_GELU):
        return TanhGELU()
    if not linears:
        return None
    if type(module) is nn.Linear and _cpu_float(module.weight, module.bias):
        return OneDNNLinear(module.weight, module.bias)
    if _from_transformers(module, frozenset({"Conv1D"})):
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        if (
            isinstance(weight, Tensor)
            and weight.dim() == 2
            and (bias is None or (isinstance(bias, Tensor) and bias.shape == weight.shape[1:]))
            and _cpu_float(weight, bias)
        ):
            return OneDNNLinear(weight.t(), bias)  # Conv1D: x @ W + b with W (in, out)
    return None


def fused_twin(
    model: nn.Module, layer: nn.Module, *, linears: bool | None = None
) -> tuple[nn.Module, nn.Module] | None:
    """A private copy of ``model`` with fused activations and oneDNN linear layers, and its
    copy of ``layer``.

    Parameters
    ----------
    model : nn.Module
        The causal LM.
    layer : nn.Module
        A submodule of ``model`` (the attributed layer, hooked by the caller; never
        replaced).
    linears : bool or None, keyword-only
        Swap ``nn.Linear`` / ``Conv1D`` layers with CPU float32 weights for
        :class:`OneDNNLinear`; ``None`` (default): where :func:`onednn_linear_available`.

    Returns
    -------
    (nn.Module, nn.Module) or None
        The copy and its counterpart of ``layer``; ``None`` when ``model`` has nothing to
        swap, ``layer`` is not one of its submodules, a module's ``forward`` is replaced on
        the instance, or the model cannot be copied (the caller then runs ``model``
        itself).
    """
    if linears is None:
        linears = onednn_linear_available()
    names = [
        name
        for name, module in model.named_modules()
        if module is not layer and _replacement(module, linears=linears) is not None
    ]
    if not names or any("forward" in vars(module) for module in model.modules()):
        # a forward set on an instance (a wrapper's closure) may call the original modules
        return None
    layer_name = next((name for name, module in model.named_modules() if module is layer), None)
    if layer_name is None or "" in names:  # the model itself would be swapped
        return None
    from whybox.attention.capture import _private_copy

    try:
        twin = _private_copy(model, "fused_twin")
    except TypeError:
        return None
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = twin.get_submodule(parent_name) if parent_name else twin
        new = _replacement(twin.get_submodule(name), linears=linears)
        if new is not None:
            setattr(parent, child, new)
    return twin, twin.get_submodule(layer_name) if layer_name else twin
